package update

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The box-side half of an update: Guard runs on the box (as the gokrazy
// service wardline-guard) and covers the case the updater cannot, the
// updater disappearing after it rebooted the box into a test boot (a
// laptop that sleeps, a link that drops). A test boot is confirmed by the
// updater with a switch and a reboot, so a test boot that is still
// running after GuardOptions.Deadline was never confirmed: the guard
// reboots the box, which then boots the previous root partition, since
// nothing pointed root= at the new one.

// testbootCmdline is what gokrazy's init finds in the command line of a
// test boot (see Image.TestbootBoot).
const testbootCmdline = "gokrazy.try_boot_inactive=1"

// GuardOptions configure Guard.
type GuardOptions struct {
	Cmdline  string        // the running kernel's command line; default /proc/cmdline
	Deadline time.Duration // default 10m: longer than the updater's gate (3m) and a confirming reboot
	// Reboot reboots the box; default: gokrazy's /reboot over its local
	// socket (services stopped, /perm unmounted), and if that fails, a
	// plain reboot(2) after sync.
	Reboot func() error
	Logf   func(format string, args ...any)
}

// Guard returns at once (nil) when the running boot is not a test boot.
// Otherwise it waits for Deadline and reboots; a confirming reboot by the
// updater ends the process before that. It returns ctx's error if ctx
// ends first.
func Guard(ctx context.Context, o GuardOptions) error {
	if o.Cmdline == "" {
		o.Cmdline = "/proc/cmdline"
	}
	if o.Deadline == 0 {
		o.Deadline = 10 * time.Minute
	}
	if o.Reboot == nil {
		o.Reboot = rebootBox
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	cmdline, err := os.ReadFile(o.Cmdline)
	if err != nil {
		return fmt.Errorf("guard: read the kernel command line: %w", err)
	}
	if !bytes.Contains(cmdline, []byte(testbootCmdline)) {
		o.Logf("guard: not a test boot; nothing to guard")
		return nil
	}
	o.Logf("guard: test boot of an update; rebooting into the previous release in %v unless the updater confirms it first", o.Deadline)
	t := time.NewTimer(o.Deadline)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	o.Logf("guard: the test boot was not confirmed within %v; rebooting into the previous release", o.Deadline)
	if err := o.Reboot(); err != nil {
		return fmt.Errorf("guard: reboot: %w", err)
	}
	return nil
}

// rebootBox asks gokrazy to reboot through its local socket (it stops the
// services and unmounts /perm first) and falls back to reboot(2).
func rebootBox() error {
	err := gokrazyReboot()
	if err == nil {
		time.Sleep(time.Minute) // gokrazy is taking the box down
		err = fmt.Errorf("gokrazy accepted /reboot, but the box is still up after a minute")
	}
	unix.Sync()
	if rerr := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); rerr != nil {
		return fmt.Errorf("%v; reboot(2): %w", err, rerr)
	}
	return nil
}

func gokrazyReboot() error {
	const sock = "/run/gokrazy-http.sock"
	pw, err := os.ReadFile("/perm/gokr-pw.txt")
	if err != nil {
		if pw, err = os.ReadFile("/etc/gokr-pw.txt"); err != nil {
			return fmt.Errorf("gokrazy password: %w", err)
		}
	}
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	req, err := http.NewRequest(http.MethodPost, "http://gokrazy/reboot", nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth("gokrazy", strings.TrimSpace(string(pw)))
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("POST /reboot on %s: %w", sock, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /reboot on %s: %s", sock, resp.Status)
	}
	return nil
}
