package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

func TestMain(m *testing.M) {
	// TestMissingHook sets this to play a binary that forgot the call.
	if os.Getenv("LAB_TEST_NO_HOOK") == "" {
		RunServiceIfRequested()
	}
	os.Exit(m.Run())
}

// needTools skips (or, under CI, fails) when a tool the test drives is
// missing: ping (iputils-ping), curl, dig (dnsutils).
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s not found: %v", tool, err)
			}
			t.Skipf("%s not found (apt-get install iputils-ping curl dnsutils): %v", tool, err)
		}
	}
}

func run(t *testing.T, h *Host, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := h.Run(ctx, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// boxCounters returns the packets received on in0 and out0.
func boxCounters(t *testing.T, l *Lab) (in, out uint64) {
	t.Helper()
	err := l.Box.Do(func() error {
		for _, c := range []struct {
			name string
			n    *uint64
		}{{l.Box.Inside, &in}, {l.Box.Outside, &out}} {
			link, err := netlink.LinkByName(c.name)
			if err != nil {
				return err
			}
			*c.n = link.Attrs().Statistics.RxPackets
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return in, out
}

// assertGone checks that nothing of lab l is left on the machine.
func assertGone(t *testing.T, l *Lab, procs []*Process) {
	t.Helper()
	left, err := namespacesWithPrefix(l.ID + "-")
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("namespaces left after Down: %v", left)
	}
	for _, p := range procs {
		if p.Alive() {
			t.Errorf("process left after Down: %v", p)
		}
		if err := syscall.Kill(p.PID, 0); err == nil {
			if st, state, err := procStat(p.PID); err == nil && st == p.StartTime && state != 'Z' {
				t.Errorf("process %v still exists (state %c)", p, state)
			}
		}
	}
	if _, err := os.Stat(l.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory %s left after Down (%v)", l.Dir, err)
	}
}

func TestUpDown(t *testing.T) {
	needTools(t, "ping", "curl", "dig")
	start := time.Now()
	l := ForTest(t, Config{})
	t.Logf("Up took %v", time.Since(start))
	c1 := l.Host("client1")

	if st, err := l.Status(context.Background()); err != nil || !st.OK() {
		t.Errorf("Status = %v, problems %q", err, st.Problems)
	}

	// Office traffic stays on the office switch.
	run(t, c1, "ping", "-c1", "-W2", l.Host("server1").IPv4.String())
	run(t, c1, "ping", "-6", "-c1", "-W2", l.Host("server1").IPv6.String())

	// Internet traffic crosses the box bridge.
	in0, out0 := boxCounters(t, l)
	web := l.Host("web")
	run(t, c1, "ping", "-c2", "-i0.2", "-W2", web.IPv4.String())
	run(t, c1, "ping", "-6", "-c2", "-i0.2", "-W2", web.IPv6.String())
	in1, out1 := boxCounters(t, l)
	if in1-in0 < 4 || out1-out0 < 4 {
		t.Errorf("pings to web did not cross the box: in0 rx %d -> %d, out0 rx %d -> %d", in0, in1, out0, out1)
	}

	// DNS through the resolver, which asks the dns host across the box.
	r := l.Resolver.String()
	if got := strings.TrimSpace(run(t, c1, "dig", "+short", "+time=2", "+tries=2", "@"+r, WebName)); got != "203.0.113.10" {
		t.Errorf("dig %s = %q, want 203.0.113.10", WebName, got)
	}
	if got := strings.TrimSpace(run(t, c1, "dig", "+short", "+time=2", "+tries=2", "@"+r, "AAAA", C2Name)); got != "2001:db8:113::66" {
		t.Errorf("dig AAAA %s = %q", C2Name, got)
	}
	if got := strings.TrimSpace(run(t, c1, "dig", "+short", "+time=2", "+tries=2", "@"+l.Host("resolver").IPv6.String(), Server1Name)); got != "198.18.0.20" {
		t.Errorf("dig %s over IPv6 = %q", Server1Name, got)
	}
	if out := run(t, c1, "dig", "+time=2", "+tries=2", "@"+r, "nosuchname.example.com"); !strings.Contains(out, "status: NXDOMAIN") {
		t.Errorf("unknown name: want NXDOMAIN, got\n%s", out)
	}

	// HTTP and HTTPS on web, across the box.
	if got := run(t, c1, "curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{size_download}", "http://203.0.113.10/bytes?n=1000"); got != "1000" {
		t.Errorf("curl /bytes?n=1000 downloaded %q bytes", got)
	}
	if got := run(t, c1, "curl", "-sS", "-k", "--max-time", "10", "--resolve", WebName+":443:203.0.113.10", "https://"+WebName+"/"); !strings.Contains(got, "<h1>"+WebName+"</h1>") {
		t.Errorf("curl https://%s/ = %q", WebName, got)
	}
	if got := run(t, c1, "curl", "-sS", "-g", "--max-time", "10", "http://[2001:db8:113::10]/beacon"); !strings.Contains(got, `"host":"web"`) {
		t.Errorf("curl beacon over IPv6 = %q", got)
	}
	if got := run(t, c1, "curl", "-sS", "-k", "--max-time", "10", "https://198.51.100.66:8443/beacon"); !strings.Contains(got, `"host":"c2"`) {
		t.Errorf("curl c2:8443 = %q", got)
	}
	// Echo from Go inside client1's namespace.
	err := c1.Do(func() error {
		c, err := net.DialTimeout("tcp", "198.18.0.20:7", 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return err
		}
		buf := make([]byte, 5)
		if _, err := c.Read(buf); err != nil || string(buf) != "ping\n" {
			return fmt.Errorf("echo answered %q, %v", buf, err)
		}
		return nil
	})
	if err != nil {
		t.Errorf("echo on server1: %v", err)
	}

	// A process started by the test is tracked and stopped by Down.
	sleeper, err := l.Host("client2").Start(context.Background(), "sleep", "600")
	if err != nil {
		t.Fatal(err)
	}
	procs := l.Processes()
	if len(procs) != 6 {
		t.Errorf("%d tracked processes, want 6 (5 services + sleep): %v", len(procs), procs)
	}
	start = time.Now()
	if err := l.Down(); err != nil {
		t.Fatalf("Down: %v", err)
	}
	t.Logf("Down took %v", time.Since(start))
	assertGone(t, l, procs)
	if sleeper.Alive() {
		t.Errorf("sleep still alive")
	}
	if err := l.Down(); err != nil {
		t.Errorf("second Down: %v", err)
	}
}

func TestTwoLabs(t *testing.T) {
	needTools(t, "curl")
	a := ForTest(t, Config{Clients: 1})
	b := ForTest(t, Config{Clients: 2})
	if a.ID == b.ID {
		t.Fatalf("two labs with ID %s", a.ID)
	}
	for _, l := range []*Lab{a, b} {
		got := run(t, l.Host("client1"), "curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{size_download}", "http://203.0.113.10/bytes?n=12345")
		if got != "12345" {
			t.Errorf("lab %s: downloaded %q bytes", l.ID, got)
		}
	}
	procs := a.Processes()
	if err := a.Down(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, a, procs)
	// b is untouched by a's Down.
	if st, err := b.Status(context.Background()); err != nil || !st.OK() {
		t.Errorf("lab %s after the other's Down: %v %q", b.ID, err, st.Problems)
	}
	got := run(t, b.Host("client2"), "curl", "-sS", "-k", "--max-time", "10", "https://203.0.113.10/bytes?n=7")
	if len(got) != 7 {
		t.Errorf("lab %s after the other's Down: got %d bytes", b.ID, len(got))
	}
}

func randomID(t *testing.T) string {
	var b [3]byte
	rand.Read(b[:])
	return "wlt" + hex.EncodeToString(b[:])
}

// TestFailedUp fails Up at every stage and checks that nothing is left.
func TestFailedUp(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	defer func() { testHook = nil }()
	for _, stage := range []string{"namespaces", "links", "topology", "services"} {
		t.Run(stage, func(t *testing.T) {
			var got *Lab
			testHook = func(l *Lab, s string) error {
				got = l
				if s == stage {
					return errors.New("injected failure")
				}
				return nil
			}
			l, err := Up(context.Background(), Config{ID: randomID(t), StateDir: t.TempDir()})
			if err == nil {
				l.Down()
				t.Fatal("Up succeeded")
			}
			if l != nil {
				t.Errorf("Up returned a lab with its error")
			}
			if !strings.Contains(err.Error(), "stage "+stage+": injected failure") {
				t.Errorf("error %q does not name the stage", err)
			}
			assertGone(t, got, got.Processes())
			if stage == "services" && len(got.Processes()) != 5 {
				t.Errorf("%d services were started, want 5", len(got.Processes()))
			}
		})
	}
}

// TestServiceFailure makes the web server fail (its port is taken) and
// checks that Up names the service, shows its log and leaves nothing.
func TestServiceFailure(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	defer func() { testHook = nil }()
	var (
		got  *Lab
		busy net.Listener
	)
	testHook = func(l *Lab, s string) error {
		got = l
		if s != "topology" {
			return nil
		}
		return l.Host("web").Do(func() error {
			var err error
			busy, err = net.Listen("tcp", ":443")
			return err
		})
	}
	_, err := Up(context.Background(), Config{ID: randomID(t), StateDir: t.TempDir(), ReadyTimeout: 10 * time.Second})
	if busy != nil {
		busy.Close()
	}
	if err == nil {
		t.Fatal("Up succeeded with web's port 443 taken")
	}
	t.Logf("Up failed as expected:\n%v", err)
	for _, want := range []string{"service httpd on web", "exited before it was ready", "address already in use"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q", want)
		}
	}
	if strings.Contains(err.Error(), "RunServiceIfRequested") {
		t.Errorf("error blames a missing RunServiceIfRequested call")
	}
	assertGone(t, got, got.Processes())
}

// TestMissingHook plays a test binary whose TestMain lacks the
// RunServiceIfRequested call: the re-executed child must run no tests (no
// recursion into Up) and Up must say what is missing.
func TestMissingHook(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	t.Setenv("LAB_TEST_NO_HOOK", "1")
	defer func() { testHook = nil }()
	var got *Lab
	testHook = func(l *Lab, s string) error { got = l; return nil }
	_, err := Up(context.Background(), Config{ID: randomID(t), StateDir: t.TempDir(), ReadyTimeout: 10 * time.Second})
	if err == nil {
		t.Fatal("Up succeeded without the service hook")
	}
	t.Logf("Up failed as expected:\n%v", err)
	if !strings.Contains(err.Error(), "call lab.RunServiceIfRequested() first") {
		t.Errorf("error does not name the missing call")
	}
	assertGone(t, got, got.Processes())
}

// TestUpInService checks the guard against recursion.
func TestUpInService(t *testing.T) {
	t.Setenv(envService, "httpd")
	if _, err := Up(context.Background(), Config{}); err == nil || !strings.Contains(err.Error(), "RunServiceIfRequested") {
		t.Errorf("Up in a service process: %v", err)
	}
}

// TestNoPinnedNamespaces checks that services of one lab do not keep the
// namespaces of another lab alive after its Down (see ensureNetnsDir).
func TestNoPinnedNamespaces(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	b, err := Up(context.Background(), Config{NoServices: true, Clients: 1, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Down()
	a := ForTest(t, Config{Clients: 1}) // its services see b's namespaces
	if err := b.Down(); err != nil {
		t.Fatal(err)
	}
	for _, p := range a.Processes() {
		mi, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", p.PID))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(mi), b.ID+"-") {
			t.Errorf("%v still mounts namespaces of the deleted lab %s", p, b.ID)
		}
	}
}

// TestNoBoxBridge checks that without br0 the box cuts the office off, and
// that a bridge made later (as the daemon will) joins it again.
func TestNoBoxBridge(t *testing.T) {
	needTools(t, "ping")
	l := ForTest(t, Config{NoBoxBridge: true, NoServices: true, Clients: 1})
	c1, web := l.Host("client1"), l.Host("web")
	ctx := context.Background()
	if _, err := c1.Run(ctx, "ping", "-c1", "-W1", web.IPv4.String()); err == nil {
		t.Fatal("client1 reached web without a box bridge")
	}
	for _, args := range [][]string{
		{"link", "add", "br0", "type", "bridge"},
		{"link", "set", "in0", "master", "br0"},
		{"link", "set", "out0", "master", "br0"},
		{"link", "set", "br0", "up"},
	} {
		if _, err := l.Box.Run(ctx, "ip", args...); err != nil {
			t.Fatal(err)
		}
	}
	if out, _ := l.Box.Run(ctx, "cat", "/proc/sys/net/ipv6/conf/br0/disable_ipv6"); strings.TrimSpace(out) != "1" {
		t.Errorf("br0 made later has disable_ipv6 %q, want 1", out)
	}
	run(t, c1, "ping", "-c1", "-W2", web.IPv4.String())
	run(t, c1, "ping", "-6", "-c1", "-W2", web.IPv6.String())
	if st, err := l.Status(ctx); err != nil || !st.OK() {
		t.Errorf("Status = %v %q", err, st.Problems)
	}
}

// TestLoad tears a lab down from its state file, as `wardline lab down` does.
func TestLoad(t *testing.T) {
	l := ForTest(t, Config{Clients: 1})
	ids, err := List(l.Config.StateDir)
	if err != nil || len(ids) != 1 || ids[0] != l.ID {
		t.Fatalf("List = %v, %v; want [%s]", ids, err, l.ID)
	}
	loaded, err := Load(l.Config.StateDir, l.ID)
	if err != nil {
		t.Fatal(err)
	}
	st, err := loaded.Status(context.Background())
	if err != nil || !st.OK() {
		t.Errorf("loaded Status = %v %q", err, st.Problems)
	}
	if got, want := len(st.Processes), 5; got != want {
		t.Errorf("loaded lab has %d processes, want %d", got, want)
	}
	procs := l.Processes()
	if err := loaded.Down(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, l, procs)
	if ids, _ := List(l.Config.StateDir); len(ids) != 0 {
		t.Errorf("List after Down = %v", ids)
	}
}

// TestSweep removes a lab whose state was lost.
func TestSweep(t *testing.T) {
	l := ForTest(t, Config{Clients: 1, NoServices: true})
	sleeper, err := l.Host("web").Start(context.Background(), "sleep", "600")
	if err != nil {
		t.Fatal(err)
	}
	// A namespace of someone else with a lab-like name but no lab mark.
	foreign := l.ID + "x-box"
	if err := createNamespace(foreign); err != nil {
		t.Fatal(err)
	}
	defer deleteNamespace(foreign)
	if err := Sweep(l.ID); err != nil {
		t.Fatal(err)
	}
	if !namespaceExists(foreign) {
		t.Errorf("Sweep deleted %s, which has no lab mark", foreign)
	}
	if left, _ := namespacesWithPrefix(l.ID + "-"); len(left) > 0 {
		t.Errorf("namespaces left after Sweep: %v", left)
	}
	done := make(chan error, 1)
	go func() { done <- sleeper.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("sleep exited cleanly, want killed")
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("Sweep left %v running", sleeper)
	}
	for _, bad := range []string{"", "wl-x"} {
		if err := Sweep(bad); err == nil {
			t.Errorf("Sweep(%q) succeeded", bad)
		}
	}
}
