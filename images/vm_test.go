//go:build bootimage

package images

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wardline/wardline/lab"
)

// randomSuffix returns 6 hex characters for namespace names, so parallel
// runs never collide (platform.md, "Addresses for labs").
func randomSuffix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// ipCmd runs ip(8) with args and fails the test on error.
func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
}

// openTap creates tap device name inside namespace ns and returns its file
// descriptor, for QEMU's `-netdev tap,fd=N`. The tap must be created from a
// thread inside ns: a tun device lives in the namespace of the task that
// opened /dev/net/tun. It is not persistent, so it disappears when the last
// descriptor (QEMU's and ours) is closed.
func openTap(t *testing.T, ns, name string) *os.File {
	t.Helper()
	var f *os.File
	err := lab.Do(ns, func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			unix.Close(fd)
			return err
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return fmt.Errorf("TUNSETIFF %s: %w", name, err)
		}
		f = os.NewFile(uintptr(fd), "/dev/net/tun:"+name)
		return nil
	})
	if err != nil {
		t.Fatalf("create tap %s in %s: %v", name, ns, err)
	}
	t.Cleanup(func() { f.Close() })
	ipCmd(t, "-n", ns, "link", "set", name, "up")
	return f
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// serviceLog returns what gokrazy's /log endpoint holds of service path's
// stdout and stderr (its ring buffer), read for up to window. Services'
// output goes there, not to the serial console; gokrazy's web interface
// listens on eth0's link-local address, so it is reached from host h (on
// eth0's network) through h's interface, with the instance's update password.
func serviceLog(h *lab.Host, guestLinkLocal, password, path string, window time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), window)
	defer cancel()
	u := fmt.Sprintf("http://[%s%%25%s]:80/log?stream=both&path=%s", guestLinkLocal, h.Iface, path)
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return "", err
	}
	req.SetBasicAuth("gokrazy", password)
	c := h.HTTPClient()
	c.Timeout = 0 // the log streams until window ends (ctx)
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body) // ends when window expires
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return string(b), nil
}

// logLines keeps the lines of a service log that start with a timestamp
// (Go's log package, gokrazy's supervisor), dropping multi-line details
// such as BPF verifier dumps.
func logLines(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "20") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}
