package bench

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestNFQ runs every reader of the nfq figure on a real wire, small: an
// exact number of frames from trafgen that all fit in the queue (nothing
// passes uninspected), then a short live-frame flood as in the figure. With accept-all traffic every frame
// must be steered, queued, received by the reader, accepted and delivered
// to dst; with the rule's content in every frame every frame must be
// dropped and none delivered. The flood's window figures must come out
// consistent with the counters (check).
func TestNFQ(t *testing.T) {
	skip := t.Skipf
	if os.Getenv("CI") != "" {
		skip = t.Fatalf // CI runs as root with make deps installed: never skip there
	}
	if os.Geteuid() != 0 {
		skip("needs root for network namespaces, nftables and NFQUEUE (CI runs as root)")
	}
	for _, tool := range []string{"ip", "trafgen", "taskset", "nice", "timeout", "ping", "gcc"} {
		if _, err := exec.LookPath(tool); err != nil {
			skip("%s missing (make deps: apt-get install iproute2 netsniff-ng util-linux coreutils iputils-ping gcc libnetfilter-queue-dev): %v", tool, err)
		}
	}
	if _, err := os.Stat("/usr/include/libnetfilter_queue/libnetfilter_queue.h"); err != nil {
		skip("libnetfilter-queue-dev missing (make deps), needed for the C reference reader: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b, err := newBenchRun(ctx, Options{Rounds: 1, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// The figure's setup: in0 GRO on for the live-frame generator.
	if err := b.set(ctx, Bare, SetupGRO); err != nil {
		t.Fatal(err)
	}
	w := b.w
	nb, err := newNFQBench(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := nb.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		out, err := w.Exec(context.Background(), w.Box, "sysctl", "-n", "net.bridge.bridge-nf-call-iptables")
		if err != nil || strings.TrimSpace(out) != "0" {
			t.Errorf("bridge-nf-call-iptables after the figure: %q, %v; want 0", out, err)
		}
	}()

	const frames = 20000
	beacon := []byte("GET /c2/beacon 1.0") // 18 bytes: the content of the rule
	for _, rd := range nfqReaders {
		t.Run(rd, func(t *testing.T) {
			for _, tc := range []struct {
				name    string
				payload []byte
				drop    bool
			}{{"accept", nil, false}, {"drop", beacon, true}} {
				r, err := nb.run(ctx, nfqRunOpts{reader: rd, maxLen: 2 * frames, frames: frames, payload: tc.payload})
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				t.Logf("%s: %+v", tc.name, r)
				c := r.Counts
				verdicts, delivered := c.Accepted, uint64(frames)
				if tc.drop {
					verdicts, delivered = c.Dropped, 0
				}
				if r.Steered != frames || c.Received != frames || verdicts != frames || r.DstRx != delivered {
					t.Errorf("%s: sent %d frames: steered %d, received %d, %d verdicts (%+v), dst received %d (want %d)",
						tc.name, frames, r.Steered, c.Received, verdicts, c, r.DstRx, delivered)
				}
			}
			r, err := nb.run(ctx, nfqRunOpts{reader: rd, maxLen: nfqMaxLen, window: 300 * time.Millisecond, live: b})
			if err != nil {
				t.Fatalf("flood: %v", err)
			}
			t.Logf("flood: %.0f verdicts/s, %+v", float64(r.Verdicts)/r.Secs, r)
			// Accept-all: whatever reached dst was accepted by the
			// reader or passed by fail-open: all of it.
			if c := r.Counts; c.Dropped != 0 || r.DstRx != r.Steered {
				t.Errorf("flood: dropped %d, dst received %d of %d steered", c.Dropped, r.DstRx, r.Steered)
			}
		})
	}
}

// TestNFQReport checks the figure's ratios and target line from known
// values, without a kernel.
func TestNFQReport(t *testing.T) {
	s := func(v ...float64) Sample { return Sample{Values: v} }
	r := &FastpathResult{Rounds: 3, Only: []string{FigNFQ}, NFQ: &NFQResult{Queue: 3, MaxQueueLen: 4096, Content: nfqContent,
		Readers: map[string]*NFQReaderResult{
			ReaderC:      {VPS: s(100e3, 80e3, 120e3), CPUNs: s(8000, 8000, 8000)},
			ReaderCBatch: {VPS: s(150e3, 150e3, 150e3), CPUNs: s(4400, 4400, 4400)},
			ReaderGoNFQ:  {VPS: s(30e3, 30e3, 30e3), CPUNs: s(28000, 28000, 28000)},
			ReaderLean:   {VPS: s(160e3, 170e3, 90e3), CPUNs: s(4000, 4000, 4000)},
		}}}
	if got := r.NFQRatio(); got != 1.6 {
		t.Errorf("NFQRatio = %v, want 160k/100k", got)
	}
	var buf strings.Builder
	r.Report(&buf)
	for _, want := range []string{
		"wardline    160.0k [90.0k–170.0k]        1.60 (rounds 1.60 [0.75–2.12])",
		"enforce/nfq vs C libnetfilter_queue >= 1.0 x:  1.60  MET  [per reader CPU second: 2.00]  (go-nfqueue 0.30; C with batch verdicts 1.50)",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, buf.String())
		}
	}
	r.NFQ.Readers[ReaderLean].VPS = s(90e3)
	buf.Reset()
	r.Report(&buf)
	if !strings.Contains(buf.String(), "0.90  NOT MET") {
		t.Errorf("report of a missed target:\n%s", buf.String())
	}
}
