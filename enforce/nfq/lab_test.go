package nfq

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wardline/wardline/lab"
)

// childEnv makes the test binary a reader process (for the kill test):
// "<namespace>:<queue>".
const childEnv = "WARDLINE_NFQ_TEST_READER"

func TestMain(m *testing.M) {
	lab.RunServiceIfRequested()
	if v := os.Getenv(childEnv); v != "" {
		os.Exit(runChild(v))
	}
	os.Exit(m.Run())
}

// beaconRules drop HTTP requests for the lab's C2 beacon path.
var beaconRules = []Rule{
	{Name: "c2-beacon", Content: []byte("/c2/beacon"), Proto: ProtoTCP, DstPort: 80, Action: Drop},
	{Name: "c2-beacon-nocase", Content: []byte("/C2/Beacon"), NoCase: true, Proto: ProtoTCP, DstPort: 80, Action: Drop},
}

func runChild(v string) int {
	ns, q, _ := strings.Cut(v, ":")
	queue, _ := strconv.Atoi(q)
	in, err := New(Config{NetNS: ns, Queue: uint16(queue), Rules: beaconRules})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	if err := in.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

const testQueue = 7

// get fetches url from host and returns the status code, or an error
// when no response came within timeout.
func get(h *lab.Host, url string, timeout time.Duration) (int, error) {
	c := h.HTTPClient()
	c.Timeout = timeout
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

func sysctlIn(t *testing.T, ns, key string) string {
	t.Helper()
	var v []byte
	err := lab.Do(ns, func() error {
		var err error
		v, err = os.ReadFile("/proc/sys/" + strings.ReplaceAll(key, ".", "/"))
		return err
	})
	if err != nil {
		t.Fatalf("read %s in %s: %v", key, ns, err)
	}
	return strings.TrimSpace(string(v))
}

// TestInspectLab is the NFQUEUE test in the lab: office client →
// box (bridge, br_netfilter on while steering) → router → c2.
func TestInspectLab(t *testing.T) {
	l := lab.ForTest(t, lab.Config{Clients: 2})
	box, client, other, c2 := l.Box, l.Host("client1"), l.Host("client2"), l.Host("c2")
	c2v4 := "http://" + c2.IPv4.String()
	c2v6 := "http://[" + c2.IPv6.String() + "]"
	ctx := t.Context()

	first, err := Steer(SteerConfig{NetNS: box.NS, Queue: testQueue})
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, box)
	// Applying twice replaces the table with the same ruleset.
	st, err := Steer(SteerConfig{NetNS: box.NS, Queue: testQueue})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	checkGolden(t, box)
	unix.Close(first.nsfd) // the table is st's now: release first without deleting it
	for _, k := range []string{"net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables"} {
		if v := sysctlIn(t, box.NS, k); v != "1" {
			t.Errorf("%s = %s while steering, want 1", k, v)
		}
	}

	// client1's IPv4 by source, c2's IPv6 by destination.
	err = st.Add(Element{Prefix: netip.PrefixFrom(client.IPv4, 32), Dir: Src, TTL: time.Hour},
		Element{Prefix: netip.MustParsePrefix(c2.IPv6.String() + "/128"), Dir: Dst, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	els, err := st.Elements()
	if err != nil {
		t.Fatal(err)
	}
	if len(els) != 2 || els[0].Prefix != netip.PrefixFrom(client.IPv4, 32) || els[0].Dir != Src ||
		els[1].Dir != Dst || els[0].TTL <= 59*time.Minute || els[0].TTL > time.Hour {
		t.Errorf("elements read back: %v", els)
	}

	in, err := New(Config{NetNS: box.NS, Queue: testQueue, Rules: beaconRules, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- in.Run(ctx) }()

	t.Run("verdicts", func(t *testing.T) {
		for _, tc := range []struct {
			host *lab.Host
			url  string
			pass bool
		}{
			{client, c2v4 + "/", true},
			{client, c2v4 + "/beacon", true},
			{client, c2v4 + "/c2/beacon", false},
			{client, c2v4 + "/x/C2/BEACON?id=1", false}, // the case-insensitive rule
			{client, c2v6 + "/", true},
			{client, c2v6 + "/c2/beacon", false},
			{other, c2v4 + "/c2/beacon", true}, // client2 is not steered
		} {
			code, err := get(tc.host, tc.url, 3*time.Second)
			switch {
			case tc.pass && err != nil:
				t.Errorf("%s GET %s: %v, want a response", tc.host.Role, tc.url, err)
			case !tc.pass && err == nil:
				t.Errorf("%s GET %s: status %d, want no response (dropped)", tc.host.Role, tc.url, code)
			}
		}
	})

	t.Run("counters", func(t *testing.T) {
		s := waitIdle(t, in)
		t.Logf("inspector %+v", s)
		var drops uint64
		for _, r := range s.Rules {
			if r.Action == Drop {
				drops += r.Matches
			}
		}
		// Three dropped requests, each sent at least twice (the
		// original and a retransmission within 3 s).
		if s.Rules[0].Matches < 4 || s.Rules[1].Matches < 2 {
			t.Errorf("rule matches %+v, want ≥4 and ≥2", s.Rules)
		}
		if s.Dropped != drops || s.Received != s.Accepted+s.Dropped || s.Accepted != s.Default {
			t.Errorf("verdicts do not add up: %+v", s)
		}
		if s.Errors != 0 || s.Missed != 0 || s.Overruns != 0 {
			t.Errorf("errors %d, missed %d, overruns %d", s.Errors, s.Missed, s.Overruns)
		}
		k := s.Kernel
		if k.PortID != in.PortID() || k.Waiting != 0 || k.QueueDropped != 0 || k.UserDropped != 0 || uint64(k.IDSequence) != s.Received {
			t.Errorf("kernel %+v, reader received %d", k, s.Received)
		}
		steered, err := st.Steered()
		if err != nil {
			t.Fatal(err)
		}
		if steered != s.Received {
			t.Errorf("the rules steered %d packets, the reader received %d", steered, s.Received)
		}
	})

	t.Run("close-bypass", func(t *testing.T) {
		if err := in.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-runDone; err != nil {
			t.Errorf("Run: %v", err)
		}
		if _, err := QueueStats(box.NS, testQueue); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("queue still bound after Close: %v", err)
		}
		before, _ := st.Steered()
		if _, err := get(client, c2v4+"/c2/beacon", 3*time.Second); err != nil {
			t.Errorf("with no reader (bypass): %v", err)
		}
		if after, _ := st.Steered(); after <= before {
			t.Errorf("steered %d → %d: the request did not cross the rule", before, after)
		}
	})

	t.Run("kill-bypass", func(t *testing.T) {
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(ctx, exe)
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s:%d", childEnv, filepath.Join("/run/netns", box.NS), testQueue))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || line != "ready\n" {
			t.Fatalf("reader process: %q, %v", line, err)
		}
		if _, err := get(client, c2v4+"/c2/beacon", 2*time.Second); err == nil {
			t.Error("the reader process does not drop the beacon")
		}
		if _, err := get(client, c2v4+"/", 3*time.Second); err != nil {
			t.Errorf("reader process: %v", err)
		}
		cmd.Process.Kill()
		cmd.Wait()
		if _, err := get(client, c2v4+"/c2/beacon", 3*time.Second); err != nil {
			t.Errorf("after kill -9 of the reader (bypass): %v", err)
		}
	})

	t.Run("fail-open", func(t *testing.T) {
		// A reader that binds but never reads: the first two packets
		// wait in the queue, the rest pass because the queue is full.
		// (One of the two may be a late retransmission of an earlier
		// dropped request, so replies are counted as at least 8.)
		stuck, err := New(Config{NetNS: box.NS, Queue: testQueue, Rules: beaconRules, MaxQueueLen: 2})
		if err != nil {
			t.Fatal(err)
		}
		defer stuck.Close()
		out, err := client.Run(ctx, "ping", "-c", "10", "-i", "0.1", "-W", "1", c2.IPv4.String())
		t.Logf("%s", lastLine(out))
		var sent, recv int
		fmt.Sscanf(out[strings.Index(out, "---"):], "--- %s ping statistics ---\n%d packets transmitted, %d received", new(string), &sent, &recv)
		if sent != 10 || recv < 8 {
			t.Errorf("ping through a stuck reader: %d of %d replies, want ≥8 of 10 (%v)", recv, sent, err)
		}
		k, err := QueueStats(box.NS, testQueue)
		if err != nil {
			t.Fatal(err)
		}
		if k.Waiting != 2 || k.IDSequence != 2 || k.QueueDropped != 0 {
			t.Errorf("kernel %+v, want 2 waiting, 2 queued, none dropped", k)
		}
		// Reading now gives the two their verdicts.
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- stuck.Run(runCtx) }()
		s := waitIdle(t, stuck)
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if s.Received != 2 || s.Accepted+s.Dropped != 2 || s.Kernel.Waiting != 0 {
			t.Errorf("after reading: %+v", s)
		}
	})

	t.Run("ttl", func(t *testing.T) {
		p := netip.PrefixFrom(other.IPv4, 32)
		if err := st.Add(Element{Prefix: p, Dir: Src, TTL: time.Second}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		els, err := st.Elements()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range els {
			if e.Prefix == p {
				t.Errorf("element %v still there after its TTL", e)
			}
		}
		before, _ := st.Steered()
		if _, err := get(other, c2v4+"/", 3*time.Second); err != nil {
			t.Error(err)
		}
		if after, _ := st.Steered(); after != before {
			t.Errorf("expired element still steers: %d → %d", before, after)
		}
		if err := st.Remove(Element{Prefix: netip.PrefixFrom(client.IPv4, 32), Dir: Src}, Element{Prefix: p, Dir: Src}); err != nil {
			t.Fatal(err)
		}
		if els, _ := st.Elements(); len(els) != 1 {
			t.Errorf("after Remove: %v", els)
		}
	})

	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables"} {
		if v := sysctlIn(t, box.NS, k); v != "0" {
			t.Errorf("%s = %s after steering off, want 0", k, v)
		}
	}
	if out, err := box.Run(ctx, "nft", "list", "tables"); err != nil || strings.Contains(out, DefaultTable) {
		t.Errorf("after Close: nft list tables: %q, %v", out, err)
	}
}

// waitIdle waits until the kernel has no packet waiting for a verdict and
// returns the stats.
func waitIdle(t *testing.T, in *Inspector) Stats {
	t.Helper()
	var s Stats
	var err error
	for range 50 {
		if s, err = in.Stats(); err == nil && s.Kernel.Waiting == 0 && uint64(s.Kernel.IDSequence) == s.Received {
			return s
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("queue not idle: %+v, %v", s, err)
	return s
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// checkGolden compares the steering table with testdata/steer.golden;
// WARDLINE_GOLDEN=update rewrites it. nft prints the xt NFQUEUE target
// through libxtables' plugin (Debian package iptables); in an inet table
// it also warns "unhandled NFPROTO" on stderr, which is not compared.
func checkGolden(t *testing.T, box lab.Box) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "ip", "netns", "exec", box.NS, "nft", "list", "table", "inet", DefaultTable)
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("nft list table: %v", err)
	}
	out := string(b)
	if strings.Contains(out, "XT target NFQUEUE not found") {
		skip := t.Skipf
		if os.Getenv("CI") != "" {
			skip = t.Fatalf
		}
		skip("nft cannot print the NFQUEUE target: install iptables (make deps) for its libxtables plugin")
	}
	path := filepath.Join("testdata", "steer.golden")
	if os.Getenv("WARDLINE_GOLDEN") == "update" {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (WARDLINE_GOLDEN=update records it)", err)
	}
	if out != string(want) {
		t.Errorf("nft list table inet %s:\n%s\nwant (%s):\n%s", DefaultTable, out, path, want)
	}
}
