package lab

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"
)

// ForTest builds a lab for a test and tears it down in t.Cleanup, which
// runs even when the test fails. It skips the test when the process is not
// root or `ip` (iproute2) or, with services, `dnsmasq` is missing, except
// under CI (CI set in the environment), where these are failures: CI must
// not skip the lab silently. A failed Up is fatal. Unless cfg.StateDir is
// set, the lab's state and logs go to a t.TempDir. Progress lines go to
// t.Logf unless cfg.Logf is set; when the test has failed, the cleanup logs
// the tail of every service log before tearing down.
//
// The test binary must call RunServiceIfRequested in TestMain.
func ForTest(t testing.TB, cfg Config) *Lab {
	t.Helper()
	skip := t.Skipf
	if os.Getenv("CI") != "" {
		skip = t.Fatalf
	}
	if os.Geteuid() != 0 {
		skip("lab: needs root for network namespaces (euid %d)", os.Geteuid())
	}
	tools := []string{"ip"}
	if !cfg.NoServices {
		tools = append(tools, "dnsmasq")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			skip("lab: %s not found (apt-get install iproute2 dnsmasq): %v", tool, err)
		}
	}
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	if cfg.Logf == nil {
		cfg.Logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := Up(ctx, cfg)
	if err != nil {
		t.Fatalf("lab.Up: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range l.Processes() {
				t.Logf("--- %v, alive %v, tail of %s:\n%s", p, p.Alive(), p.Log, p.logTail(20))
			}
		}
		if err := l.Down(); err != nil {
			t.Errorf("lab.Down: %v", err)
		}
	})
	return l
}
