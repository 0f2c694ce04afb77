package beacon

import (
	"math/rand"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/wardline/wardline/dataplane/event"
	"github.com/wardline/wardline/detect"
)

func TestDetect(t *testing.T) {
	type want struct {
		alerts   int
		attacker netip.Addr
		victims  []netip.Addr
		dest     string // Evidence "destination"
		maxConn  int    // the alert must come by this check-in (0: any)
	}
	for _, tc := range []struct {
		name  string
		cfg   Config
		conns func(rng *rand.Rand) []spec
		want  want
	}{
		{
			name: "HTTP beacon every 60s ±20% jitter, fixed request",
			conns: func(rng *rand.Rand) []spec {
				return series(40, t0, jittered(rng, time.Minute, 0.2), func(i int, at time.Time) spec {
					return spec{src: client, dst: server, dport: 80, start: at, orig: 612, host: "cdn-update.c2.test"}
				})
			},
			want: want{alerts: 1, attacker: client, victims: []netip.Addr{server}, dest: "cdn-update.c2.test (203.0.113.10:80)", maxConn: 14},
		},
		{
			name: "TLS beacon every 5m ±30% jitter, sizes ±10%, SNI spread over two CDN addresses",
			conns: func(rng *rand.Rand) []spec {
				return series(60, t0, jittered(rng, 5*time.Minute, 0.3), func(i int, at time.Time) spec {
					dst := server
					if i%2 == 1 {
						dst = server2
					}
					return spec{src: client, dst: dst, start: at, orig: uint64(1500 + rng.Intn(300)), sni: "Updates.Example.NET."}
				})
			},
			want: want{alerts: 1, attacker: client, victims: []netip.Addr{server, server2}, dest: "updates.example.net (203.0.113.10:443)", maxConn: 30},
		},
		{
			name: "UDP beacon every 30s ±10%, answered",
			conns: func(rng *rand.Rand) []spec {
				return series(30, t0, jittered(rng, 30*time.Second, 0.1), func(i int, at time.Time) spec {
					return spec{src: client, dst: server, dport: 8443, proto: event.ProtoUDP, start: at, orig: 300}
				})
			},
			want: want{alerts: 1, attacker: client, victims: []netip.Addr{server}, dest: "203.0.113.10:8443", maxConn: 14},
		},
		{
			name: "beacon with two connections per check-in (merged)",
			conns: func(rng *rand.Rand) []spec {
				return series(60, t0, func(i int) time.Duration {
					if i%2 == 0 {
						return 100 * time.Millisecond
					}
					return jittered(rng, time.Minute, 0.2)(i)
				}, func(i int, at time.Time) spec {
					return spec{src: client, dst: server, start: at, orig: 700}
				})
			},
			want: want{alerts: 1, attacker: client, victims: []netip.Addr{server}},
		},
		{
			name: "beacon among browsing to other sites is still found",
			conns: func(rng *rand.Rand) []spec {
				b := series(30, t0, jittered(rng, time.Minute, 0.2), func(i int, at time.Time) spec {
					return spec{src: client, dst: server, start: at, sni: "c2.example"}
				})
				var noise []spec
				at := t0
				for i := 0; i < 200; i++ {
					at = at.Add(time.Duration(rng.ExpFloat64() * float64(10*time.Second)))
					noise = append(noise, spec{src: client, dst: server2, start: at, orig: uint64(400 + rng.Intn(4000)),
						sni: []string{"news.example", "mail.example", "docs.example"}[rng.Intn(3)]})
				}
				return merge(b, noise)
			},
			want: want{alerts: 1, attacker: client, victims: []netip.Addr{server}},
		},
		{
			name: "human browsing: irregular exponential gaps with bursts",
			conns: func(rng *rand.Rand) []spec {
				var out []spec
				at := t0
				for i := 0; i < 150; i++ {
					gap := time.Duration(rng.ExpFloat64() * float64(40*time.Second))
					if rng.Intn(3) == 0 {
						gap = time.Duration(rng.Intn(3000)) * time.Millisecond // a page pulls more
					}
					at = at.Add(gap)
					out = append(out, spec{src: client, dst: server, start: at, orig: uint64(500 + rng.Intn(3000)), sni: "www.example.com"})
				}
				return out
			},
		},
		{
			name: "human polling the same page at irregular 1-6s gaps (corpus background host)",
			conns: func(rng *rand.Rand) []spec {
				var out []spec
				sites := []string{"www.example.com", "cdn.example.org", "static.example.net", "api.example.com"}
				at := t0
				for i := 0; i < 200; i++ {
					at = at.Add(time.Second + time.Duration(rng.Int63n(int64(5*time.Second))))
					out = append(out, spec{src: client2, dst: server2, dport: 80, start: at, orig: 520, host: sites[rng.Intn(len(sites))]})
				}
				return out
			},
		},
		{
			name: "client retrying a dead server with exponential backoff (S0)",
			conns: func(rng *rand.Rand) []spec {
				return series(40, t0, func(i int) time.Duration { return time.Second << min(i, 8) }, func(i int, at time.Time) spec {
					return spec{src: client, dst: server, start: at, state: detect.StateS0}
				})
			},
		},
		{
			name: "client retrying a closed port every 10s exactly (REJ): failures are not check-ins",
			conns: func(rng *rand.Rand) []spec {
				return series(100, t0, func(int) time.Duration { return 10 * time.Second }, func(i int, at time.Time) spec {
					return spec{src: client, dst: server, start: at, state: detect.StateREJ}
				})
			},
		},
		{
			name: "retries with backoff between successful beacons do not break the beacon",
			conns: func(rng *rand.Rand) []spec {
				ok := series(30, t0, jittered(rng, time.Minute, 0.15), func(i int, at time.Time) spec {
					return spec{src: client, dst: server, start: at}
				})
				var fails []spec
				for i := 0; i < 20; i++ {
					fails = append(fails, spec{src: client, dst: server, start: t0.Add(time.Duration(i*i) * 7 * time.Second), state: detect.StateS0})
				}
				return merge(ok, fails)
			},
			want: want{alerts: 1, attacker: client, victims: []netip.Addr{server}},
		},
		{
			name: "regular internal polling (monitoring) is out of scope by default",
			conns: func(rng *rand.Rand) []spec {
				return series(60, t0, jittered(rng, time.Minute, 0.05), func(i int, at time.Time) spec {
					return spec{src: client, dst: intra, dport: 8080, start: at}
				})
			},
		},
		{
			name: "regular internal polling alerts with Internal set",
			cfg:  Config{Internal: true},
			conns: func(rng *rand.Rand) []spec {
				return series(60, t0, jittered(rng, time.Minute, 0.05), func(i int, at time.Time) spec {
					return spec{src: client, dst: intra, dport: 8080, start: at}
				})
			},
			want: want{alerts: 1, attacker: client, victims: []netip.Addr{intra}},
		},
		{
			name: "inbound connections are not beacons",
			conns: func(rng *rand.Rand) []spec {
				return series(60, t0, jittered(rng, time.Minute, 0.05), func(i int, at time.Time) spec {
					return spec{src: server, dst: client, dport: 22, start: at}
				})
			},
		},
		{
			name: "NTP polls on a fixed schedule are ignored",
			conns: func(rng *rand.Rand) []spec {
				return series(60, t0, jittered(rng, 64*time.Second, 0.02), func(i int, at time.Time) spec {
					return spec{src: client, dst: server, dport: 123, proto: event.ProtoUDP, start: at, orig: 90}
				})
			},
		},
		{
			name: "too few check-ins",
			conns: func(rng *rand.Rand) []spec {
				return series(13, t0, jittered(rng, time.Minute, 0.1), func(i int, at time.Time) spec {
					return spec{src: client, dst: server, start: at}
				})
			},
		},
		{
			name: "sub-second request bursts are one session, not a beacon",
			conns: func(rng *rand.Rand) []spec {
				return series(300, t0, func(int) time.Duration { return 200 * time.Millisecond }, func(i int, at time.Time) spec {
					return spec{src: client, dst: server, start: at}
				})
			},
		},
		{
			name: "one alert per pair per window, again after the window",
			cfg:  Config{Window: time.Hour},
			conns: func(rng *rand.Rand) []spec {
				return series(100, t0, jittered(rng, time.Minute, 0.1), func(i int, at time.Time) spec {
					return spec{src: client, dst: server, start: at}
				})
			},
			want: want{alerts: 2, attacker: client, victims: []netip.Addr{server}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.cfg)
			specs := tc.conns(rand.New(rand.NewSource(42)))
			firstAt := 0
			for i := range specs {
				h.feed(specs[i : i+1])
				if firstAt == 0 && len(h.alerts) > 0 {
					firstAt = i + 1
				}
			}
			if got := len(h.alerts); got != tc.want.alerts {
				for _, a := range h.alerts {
					t.Logf("alert: %s: %s", a.Signature, a.Explain())
				}
				t.Fatalf("got %d alerts, want %d (stats %v)", got, tc.want.alerts, h.d.Stats())
			}
			if tc.want.alerts == 0 {
				return
			}
			a := h.alerts[0]
			t.Logf("alert at connection %d: %s\n%s", firstAt, a.Signature, a.Explain())
			if a.Type != detect.TypeBeaconing || a.Detector != "beacon" || a.MITRE != detect.MITREC2AppLayer {
				t.Errorf("type/detector/mitre = %q/%q/%v", a.Type, a.Detector, a.MITRE)
			}
			if a.Attacker != tc.want.attacker {
				t.Errorf("attacker %v, want %v", a.Attacker, tc.want.attacker)
			}
			if got, want := a.Victims, tc.want.victims; len(got) != len(want) || (len(want) > 0 && got[0] != want[0]) {
				t.Errorf("victims %v, want %v", got, want)
			}
			if tc.want.dest != "" && a.Evidence["destination"] != tc.want.dest {
				t.Errorf("destination %v, want %s", a.Evidence["destination"], tc.want.dest)
			}
			if tc.want.maxConn > 0 && firstAt > tc.want.maxConn {
				t.Errorf("alerted at connection %d, want by %d", firstAt, tc.want.maxConn)
			}
			checkExplained(t, a)
		})
	}
}

// checkExplained: every sub-score is a contribution, the risk is their
// sum, and the alert is complete.
func checkExplained(t *testing.T, a *detect.Alert) {
	t.Helper()
	want := []string{"ts_dispersion", "ts_on_schedule", "ts_skew", "ds_dispersion", "ds_skew", "conn_count", "coverage"}
	if len(a.Reasons) != len(want) {
		t.Fatalf("reasons %v, want %v", a.Reasons, want)
	}
	sum := 0.0
	for i, r := range a.Reasons {
		if r.Feature != want[i] || r.Why == "" || r.Points < 0 {
			t.Errorf("reason %d = %+v, want feature %s with an explanation", i, r, want[i])
		}
		if _, ok := a.Evidence[r.Feature]; !ok && r.Feature != "conn_count" {
			t.Errorf("evidence lacks %s: %v", r.Feature, a.Evidence)
		}
		sum += r.Points
	}
	if diff := a.Risk - min(100, sum); diff > 1e-9 || diff < -1e-9 || a.Risk < 65 {
		t.Errorf("risk %v, sum of contributions %v (threshold 65)", a.Risk, sum)
	}
	if a.Severity == 0 || a.Confidence <= 0 || a.Flow == nil || a.Time.IsZero() || !strings.Contains(a.Signature, "beacons to") {
		t.Errorf("incomplete alert: %+v", a)
	}
}

// TestStatistical runs many seeded series: timers with up to ±30% jitter
// are found (mostly within 20 check-ins), irregular traffic never alerts, and a
// person (or script) with uniform 1-6s gaps, which is a timer with ±71%
// jitter, alerts in under 2% of 80-connection series (a documented limit).
func TestStatistical(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	const runs = 150
	for _, tc := range []struct {
		name     string
		gap      func() func(int) time.Duration
		vary     bool
		minEarly float64 // detection rate within 20 check-ins
		minRate  float64 // alert rate within 80 connections, at least
		maxRate  float64 // and at most
	}{
		{"timer ±10%", func() func(int) time.Duration { return jittered(rng, time.Minute, 0.1) }, false, 1, 1, 1},
		{"timer ±20% (corpus)", func() func(int) time.Duration { return jittered(rng, 2*time.Second, 0.2) }, false, 1, 1, 1},
		{"timer ±30%", func() func(int) time.Duration { return jittered(rng, time.Minute, 0.3) }, false, 0.8, 0.99, 1},
		{"timer ±20%, random sizes", func() func(int) time.Duration { return jittered(rng, time.Minute, 0.2) }, true, 0.8, 0.99, 1},
		{"exponential gaps (Poisson)", func() func(int) time.Duration { return expGap(rng, 30*time.Second) }, false, 0, 0, 0},
		{"uniform 1-6s gaps, random sizes", func() func(int) time.Duration { return uniformGap(rng, time.Second, 6*time.Second) }, true, 0, 0, 0.01},
		{"uniform 1-6s gaps, same request", func() func(int) time.Duration { return uniformGap(rng, time.Second, 6*time.Second) }, false, 0, 0, 0.02},
	} {
		early, hits := 0, 0
		for r := 0; r < runs; r++ {
			h := newHarness(t, Config{})
			g := tc.gap()
			specs := series(80, t0, g, func(i int, at time.Time) spec {
				o := uint64(600)
				if tc.vary {
					o = uint64(300 + rng.Intn(2000))
				}
				return spec{src: client, dst: server, start: at, orig: o}
			})
			for i, s := range specs {
				h.feed([]spec{s})
				if len(h.alerts) > 0 {
					hits++
					if i < 20 {
						early++
					}
					break
				}
			}
		}
		rate, earlyRate := float64(hits)/runs, float64(early)/runs
		t.Logf("%-34s alerted %5.1f%% (%5.1f%% within 20 check-ins)", tc.name, 100*rate, 100*earlyRate)
		if earlyRate < tc.minEarly || rate < tc.minRate || rate > tc.maxRate {
			t.Errorf("%s: alert rate %.3f (within 20: %.3f), want %.2f..%.2f (within 20: >= %.2f)",
				tc.name, rate, earlyRate, tc.minRate, tc.maxRate, tc.minEarly)
		}
	}
}

func TestOutOfOrderRecords(t *testing.T) {
	// Records arrive in end order; long check-ins end after later short
	// ones started. The start times still line up.
	h := newHarness(t, Config{})
	rng := rand.New(rand.NewSource(3))
	specs := series(30, t0, jittered(rng, time.Minute, 0.1), func(i int, at time.Time) spec {
		d := time.Second
		if i%5 == 0 {
			d = 90 * time.Second // ends after the next one started
		}
		return spec{src: client, dst: server, start: at, dur: d}
	})
	// Deliver by end time.
	for i := 1; i < len(specs); i++ {
		for j := i; j > 0 && specs[j].start.Add(specs[j].dur).Before(specs[j-1].start.Add(specs[j-1].dur)); j-- {
			specs[j], specs[j-1] = specs[j-1], specs[j]
		}
	}
	for _, s := range specs {
		h.d.OnConn(h.conn(s))
	}
	if len(h.alerts) != 1 {
		t.Fatalf("got %d alerts, want 1", len(h.alerts))
	}
	if st := h.d.Stats(); st["checkins_out_of_order"] == 0 {
		t.Errorf("out-of-order check-ins not counted: %v", st)
	}
	if d := h.alerts[0].Evidence["ts_dispersion"].(float64); d > 0.1 {
		t.Errorf("ts_dispersion %v: out-of-order records were not put back in place", d)
	}
}

func TestBoundedState(t *testing.T) {
	h := newHarness(t, Config{MaxPairs: 100, Samples: 32, Window: time.Hour})
	// A repeated pair first, then a flood of one-off pairs.
	for i := 0; i < 3; i++ {
		h.d.OnConn(h.conn(spec{src: client, dst: server, start: t0.Add(time.Duration(i) * time.Minute)}))
	}
	for i := 0; i < 1000; i++ {
		dst := netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})
		h.d.OnConn(h.conn(spec{src: client2, dst: dst, start: t0.Add(3*time.Minute + time.Duration(i)*time.Millisecond)}))
	}
	st := h.d.Stats()
	if st["pairs_tracked"] != 100 || st["pairs_evicted"] != 901 {
		t.Errorf("tracked %v evicted %v, want 100 and 901", st["pairs_tracked"], st["pairs_evicted"])
	}
	if _, ok := h.d.index[pairKey{src: client, dst: server}]; !ok {
		t.Errorf("the repeated pair was evicted before the one-off pairs")
	}
	// A long series keeps at most Samples check-ins.
	for i := 0; i < 100; i++ {
		h.d.OnConn(h.conn(spec{src: client, dst: server, start: t0.Add(time.Duration(4+i) * time.Minute)}))
	}
	p := &h.d.pairs[h.d.index[pairKey{src: client, dst: server}]]
	if len(p.times) != 32 || cap(p.times) > 64 {
		t.Errorf("kept %d check-ins (cap %d), want 32", len(p.times), cap(p.times))
	}
	for i := 1; i < len(p.times); i++ {
		if p.times[p.idx(i)] <= p.times[p.idx(i-1)] {
			t.Fatalf("ring out of order at %d", i)
		}
	}
	// Idle pairs expire after the window.
	h.d.Tick(t0.Add(110 * time.Minute))
	if st := h.d.Stats(); st["pairs_tracked"] != 1 || st["pairs_expired"] != 99 {
		t.Errorf("after the window: tracked %v expired %v, want 1 and 99", st["pairs_tracked"], st["pairs_expired"])
	}
	h.d.Tick(t0.Add(5 * time.Hour))
	if st := h.d.Stats(); st["pairs_tracked"] != 0 {
		t.Errorf("tracked %v, want 0", st["pairs_tracked"])
	}
}

func TestDestName(t *testing.T) {
	for _, tc := range []struct {
		app  *detect.AppInfo
		want string
	}{
		{nil, ""},
		{&detect.AppInfo{SNI: "Example.COM."}, "example.com"},
		{&detect.AppInfo{HTTPHost: "c2.test:8080"}, "c2.test"},
		{&detect.AppInfo{HTTPHost: "[2001:db8::1]:80"}, "[2001:db8::1]"},
		{&detect.AppInfo{HTTPHost: "[2001:db8::1]"}, "[2001:db8::1]"},
		{&detect.AppInfo{HTTPHost: "2001:db8::1"}, "2001:db8::1"},
		{&detect.AppInfo{SNI: "a.example", HTTPHost: "b.example"}, "a.example"},
	} {
		if got := destName(&detect.Conn{App: tc.app}); got != tc.want {
			t.Errorf("destName(%+v) = %q, want %q", tc.app, got, tc.want)
		}
	}
}

// BenchmarkOnConn measures the per-connection cost in a steady state
// (event time moving forward, state at its bounds):
//   - busy: 2000 pairs with irregular timing and full rings, scored as
//     their check-ins come (the common case: browsers, updaters, APIs);
//   - new: every connection opens a pair, the table is full, so each one
//     also evicts one;
//   - mix: three quarters busy, one quarter new.
func BenchmarkOnConn(b *testing.B) {
	for _, bc := range []struct {
		name    string
		newFrac int // one in newFrac connections opens a new pair (0: none)
		busy    bool
	}{{"busy", 0, true}, {"new", 1, false}, {"mix", 4, true}} {
		b.Run(bc.name, func(b *testing.B) {
			h := newHarness(b, Config{MaxPairs: 4096})
			rng := rand.New(rand.NewSource(1))
			const pairs = 2000
			srcs := make([]netip.Addr, pairs)
			dsts := make([]netip.Addr, pairs)
			for i := range srcs {
				srcs[i] = netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
				dsts[i] = netip.AddrFrom4([4]byte{203, 0, 113, byte(rng.Intn(256))})
			}
			seq := make([]int, 1<<16) // random pair order: irregular intervals
			for i := range seq {
				seq[i] = rng.Intn(pairs)
			}
			c := h.conn(spec{src: client, dst: server, start: t0})
			at := t0
			step := func(i int) {
				at = at.Add(10 * time.Millisecond)
				c.Start, c.End = at, at.Add(50*time.Millisecond)
				if !bc.busy || (bc.newFrac > 0 && i%bc.newFrac == 0) {
					c.Key.Src = srcs[i%pairs]
					c.Key.Dst = netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})
				} else {
					j := seq[i%len(seq)]
					c.Key.Src, c.Key.Dst = srcs[j], dsts[j]
				}
				c.OrigBytes = uint64(500 + i%700)
				h.d.OnConn(c)
			}
			if bc.busy {
				for i := 0; i < 300*pairs; i++ { // fill the rings
					step(i)
				}
			}
			evals := h.d.st.evaluations
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				step(i)
			}
			b.StopTimer()
			b.ReportMetric(float64(h.d.st.evaluations-evals)/float64(b.N), "evals/op")
			if len(h.alerts) > 0 {
				b.Fatalf("%d alerts on irregular traffic", len(h.alerts))
			}
		})
	}
}
