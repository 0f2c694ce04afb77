package daemon

import (
	"errors"
	"fmt"
	"time"

	"github.com/vishvananda/netlink"
)

// Release names the build. boards/image.sh stamps it at link time
// (-X github.com/wardline/wardline/appliance/daemon.Release=…); the status
// API and health.json report it so that an updater can tell which build a
// box runs.
var Release = "dev"

// ErrPermanent marks setup failures that a restart cannot heal: an invalid
// configuration, or a kernel without what the configuration needs.
// wardlined exits with ExitPermanent for them, which tells gokrazy's
// supervisor not to restart it (a crash loop would only hide the message).
var ErrPermanent = errors.New("permanent failure")

// Exit codes of wardlined.
const (
	ExitOK        = 0   // stopped by SIGTERM/SIGINT, or a one-shot mode succeeded
	ExitFailure   = 1   // setup or runtime failure that a restart may heal
	ExitUsage     = 2   // bad command-line flags
	ExitPermanent = 125 // ErrPermanent; gokrazy does not restart a service that exits 125
)

// permanent wraps err as ErrPermanent.
func permanent(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w (%w)", err, ErrPermanent)
}

// waitForLinks waits up to timeout for every named interface to exist:
// at boot, NIC drivers (USB NICs in particular) may register after the
// service starts. Every 5 s it logs which are still missing.
func waitForLinks(names []string, timeout time.Duration, logf func(string, ...any)) error {
	start := time.Now()
	lastLog := start
	for {
		var missing []string
		for _, n := range names {
			if n == "" {
				continue
			}
			if _, err := netlink.LinkByName(n); err != nil {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 {
			if waited := time.Since(start); waited > 100*time.Millisecond {
				logf("interfaces %v present after %v", names, waited.Round(time.Millisecond))
			}
			return nil
		}
		if time.Since(start) >= timeout {
			return fmt.Errorf("wait for interfaces: %v still missing after %v", missing, timeout)
		}
		if time.Since(lastLog) >= 5*time.Second {
			logf("waiting for interfaces %v (%v so far)", missing, time.Since(start).Round(time.Second))
			lastLog = time.Now()
		}
		time.Sleep(100 * time.Millisecond)
	}
}
