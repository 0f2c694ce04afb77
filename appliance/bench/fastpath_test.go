package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHarness runs one short measurement of every kind on a real wire and
// checks that the counters tell one story: every frame the generator sent
// entered the box, a drop rule counted every one of them and none reached
// dst, a forwarding config delivered them. It exercises the harness in CI
// (make test) without the cost of make bench, and checks the cleanup.
func TestHarness(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root for network namespaces and XDP (CI runs as root)")
	}
	if err := checkTools(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err) // CI installs them (make deps): a missing tool is a failure there
		}
		t.Skipf("skipping: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := newBenchRun(ctx, Options{Rounds: 1, Duration: time.Second, PktDuration: 300 * time.Millisecond, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	id := b.w.ID
	defer func() {
		if err := b.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if ns := leftNamespaces(t, id); len(ns) > 0 {
			t.Errorf("namespaces left after Close: %v", ns)
		}
	}()

	for _, tc := range []struct {
		cfg   Config
		setup Setup
		gen   Generator
		drop  bool
	}{
		{XDPDropNative, SetupGRO, Live, true},
		{NftDrop, SetupGRO, Live, true},
		{Native, SetupGRO, Live, false},
		{XDPDrop, SetupDefault, Trafgen, true},
		{NftDrop, SetupDefault, Trafgen, true},
		{Bare, SetupDefault, Trafgen, false},
	} {
		if err := b.set(ctx, tc.cfg, tc.setup); err != nil {
			t.Fatalf("set %s: %v", tc.cfg, err)
		}
		n, err := b.pkts(ctx, tc.gen, b.opts.PktDuration, !tc.drop)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.gen, tc.cfg, err)
		}
		t.Logf("%-8s %-16s %+v", tc.gen, tc.cfg, n)
		if err := n.check(tc.cfg, tc.drop); err != nil {
			t.Errorf("%s %s: %v", tc.gen, tc.cfg, err)
		}
		switch {
		case n.Delivered == 0 || n.Offered != n.Delivered+n.XmitErr:
			t.Errorf("%s %s: offered %d, delivered %d, refused %d", tc.gen, tc.cfg, n.Offered, n.Delivered, n.XmitErr)
		case tc.drop && (n.Dropped != n.Delivered || n.Forwarded != 0):
			t.Errorf("%s %s: %d frames into the box, %d counted as dropped, %d reached dst", tc.gen, tc.cfg, n.Delivered, n.Dropped, n.Forwarded)
		case !tc.drop && n.Forwarded < n.Delivered*99/100:
			t.Errorf("%s %s: %d frames into the box, only %d reached dst", tc.gen, tc.cfg, n.Delivered, n.Forwarded)
		case n.SoftirqNs <= 0:
			t.Errorf("%s %s: no softirq time measured on CPU %d", tc.gen, tc.cfg, genCPU)
		}
	}

	if err := b.set(ctx, Pass, SetupWire); err != nil {
		t.Fatal(err)
	}
	tr, err := b.tcp(ctx, 1)
	if err != nil || tr.Gbps <= 0 || tr.KernelNsPerMB <= 0 {
		t.Fatalf("tcp through xdp-pass: %+v, %v", tr, err)
	}
	t.Logf("tcp xdp-pass (wire-mtu): %+v", tr)
}

func leftNamespaces(t *testing.T, id string) []string {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return nil
	}
	var left []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), id) {
			left = append(left, e.Name())
		}
	}
	return left
}

// TestCheck feeds the consistency check counters that must be refused.
func TestCheck(t *testing.T) {
	good := PktCount{Offered: 1000, Delivered: 1000, Dropped: 1000, XDPDrops: 1000}
	if err := good.check(XDPDropNative, true); err != nil {
		t.Fatalf("consistent drop counters refused: %v", err)
	}
	fwd := PktCount{Offered: 1000, XmitErr: 10, Delivered: 990, Forwarded: 990}
	if err := fwd.check(Bare, false); err != nil {
		t.Fatalf("consistent forwarding counters refused: %v", err)
	}
	for name, n := range map[string]PktCount{
		"leak":            {Offered: 1000, Delivered: 1000, Dropped: 999, XDPDrops: 999, Forwarded: 1},
		"uncounted drops": {Offered: 1000, Delivered: 1000, Dropped: 900, XDPDrops: 900},
		"lost at sender":  {Offered: 1000, Delivered: 900, Dropped: 900, XDPDrops: 900},
		"entry vs stat":   {Offered: 1000, Delivered: 1000, Dropped: 1000, XDPDrops: 10},
		"nothing":         {},
	} {
		if err := n.check(XDPDropNative, true); err == nil {
			t.Errorf("%s: inconsistent counters %+v accepted", name, n)
		}
	}
	if err := (PktCount{Offered: 10, Delivered: 10, Forwarded: 11}).check(Bare, false); err == nil {
		t.Error("more frames at dst than into the box accepted")
	}
}

// TestReport checks that the report states the targets with their verdicts.
func TestReport(t *testing.T) {
	r := &FastpathResult{Rounds: 2, Seconds: 3, PktSeconds: 2, Only: AllFigures(),
		TCP: map[string]map[Config]*TCPResult{FigTCP: {
			// The third round was disturbed (steal 30%) and the
			// fourth had too much steal for Bare only: the steady
			// medians use rounds 1, 2 and 5.
			Bare:    {Gbps: Sample{Values: []float64{10, 12, 4, 5, 11}}, Steal: Sample{Values: []float64{0, 0, 0.3, 0.2, 0}}},
			Pass:    {Gbps: Sample{Values: []float64{9, 10, 4, 9, 9.5}}, Steal: Sample{Values: []float64{0, 0, 0.3, 0, 0}}},
			Generic: {Gbps: Sample{Values: []float64{8.5, 10, 4, 9, 9}}, Steal: Sample{Values: []float64{0, 0.01, 0.3, 0, 0}}},
		}},
		Pkts: map[string]map[Config]*PPSResult{FigDrop: {
			XDPDropNative: {PPS: Sample{Values: []float64{2e6, 2e6}}, SoftirqN: Sample{Values: []float64{200, 200}}},
			NftDrop:       {PPS: Sample{Values: []float64{1e6, 1e6}}, SoftirqN: Sample{Values: []float64{700, 700}}},
		}},
	}
	if got, steady := r.TCPGenericRatio(); !steady || fmt.Sprintf("%.3f", got) != "0.818" {
		t.Errorf("TCPGenericRatio = %.3f, %v; want 9/11 from the steady rounds", got, steady)
	}
	var buf bytes.Buffer
	r.Report(&buf)
	out := buf.String()
	for _, want := range []string{
		"command: bin/wardline bench -rounds 2 -duration 3s -pkt-duration 2s",
		"TCP, wl_xdp generic vs bare bridge >= 0.90:   0.82  NOT MET  (an empty generic program: 0.84)  [steady measurements]",
		"drop capacity, XDP vs nft set >= 3 x:         3.50  MET",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// TestSweepStale checks that what a killed run left behind is removed and
// what a live run owns is not.
func TestSweepStale(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root for network namespaces (CI runs as root)")
	}
	dead := WirePrefix + "999999999-0000" // above pid_max: no such process
	live := fmt.Sprintf("%s%d-0000", WirePrefix, os.Getpid())
	for _, id := range []string{dead, live} {
		if _, err := run(context.Background(), "ip", "netns", "add", id+"-src"); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(os.TempDir(), id+".trafgen"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		run(context.Background(), "ip", "netns", "del", live+"-src")
		os.Remove(filepath.Join(os.TempDir(), live+".trafgen"))
	})
	if err := SweepStale(); err != nil {
		t.Fatal(err)
	}
	if len(leftNamespaces(t, dead)) != 0 {
		t.Error("the dead run's namespace is still there")
	}
	if _, err := os.Stat(filepath.Join(os.TempDir(), dead+".trafgen")); err == nil {
		t.Error("the dead run's temporary file is still there")
	}
	if len(leftNamespaces(t, live)) != 1 {
		t.Error("the live run's namespace was removed")
	}
	if _, err := os.Stat(filepath.Join(os.TempDir(), live+".trafgen")); err != nil {
		t.Error("the live run's temporary file was removed")
	}
}
