package beacon

import (
	"math/rand"
	"net/netip"
	"testing"
	"time"

	"github.com/wardline/wardline/dataplane/event"
	"github.com/wardline/wardline/detect"
	"github.com/wardline/wardline/detect/enrich"
)

var (
	home    = netip.MustParsePrefix("10.1.0.0/16")
	client  = netip.MustParseAddr("10.1.0.10")
	client2 = netip.MustParseAddr("10.1.0.11")
	server  = netip.MustParseAddr("203.0.113.10")
	server2 = netip.MustParseAddr("203.0.113.11")
	intra   = netip.MustParseAddr("10.1.0.20")
	t0      = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
)

// harness runs a detector and collects its alerts.
type harness struct {
	d      *Detector
	alerts []*detect.Alert
	inv    *enrich.Inventory
}

func newHarness(tb testing.TB, cfg Config) *harness {
	tb.Helper()
	h := &harness{inv: enrich.New([]netip.Prefix{home}, nil)}
	h.d = New(cfg, detect.Env{Inv: h.inv, Emit: func(a *detect.Alert) { h.alerts = append(h.alerts, a) },
		Logf: tb.Logf})
	return h
}

func (h *harness) direction(src, dst netip.Addr) detect.Direction {
	sh, dh := h.inv.IsHome(src), h.inv.IsHome(dst)
	switch {
	case sh && dh:
		return detect.Internal
	case sh:
		return detect.Outbound
	case dh:
		return detect.Inbound
	}
	return detect.External
}

// spec describes one synthetic connection.
type spec struct {
	src, dst  netip.Addr
	dport     uint16
	proto     uint8
	start     time.Time
	dur       time.Duration
	orig      uint64 // client bytes
	resp      uint64
	state     detect.ConnState // SF when empty
	sni, host string
}

var sport uint16 = 40000

// conn builds a final connection record the way the engine would.
func (h *harness) conn(s spec) *detect.Conn {
	if s.proto == 0 {
		s.proto = event.ProtoTCP
	}
	if s.dport == 0 {
		s.dport = 443
	}
	if s.dur == 0 {
		s.dur = 50 * time.Millisecond
	}
	if s.orig == 0 {
		s.orig = 600
	}
	if s.resp == 0 {
		s.resp = 700
	}
	if s.state == "" {
		s.state = detect.StateSF
	}
	sport++
	c := &detect.Conn{
		Key:   event.FlowKey{Src: s.src, Dst: s.dst, SrcPort: sport, DstPort: s.dport, Proto: s.proto},
		Start: s.start, End: s.start.Add(s.dur), Final: true, Reason: event.ReasonFIN,
		OrigPkts: 6, OrigBytes: s.orig, RespPkts: 6, RespBytes: s.resp,
		State: s.state, Direction: h.direction(s.src, s.dst),
	}
	const est = event.TCPSyn | event.TCPAck | event.TCPPsh | event.TCPFin
	switch s.state {
	case detect.StateSF:
		c.OrigFlags, c.RespFlags = est, est
	case detect.StateS0:
		c.OrigFlags, c.RespFlags, c.RespPkts, c.RespBytes, c.OrigPkts = event.TCPSyn, 0, 0, 0, 1
		c.OrigBytes = 74
		c.End = c.Start
	case detect.StateREJ:
		c.OrigFlags, c.RespFlags, c.RespPkts, c.RespBytes, c.OrigPkts = event.TCPSyn, event.TCPRst|event.TCPAck, 1, 60, 1
		c.OrigBytes = 74
	}
	if s.proto == event.ProtoUDP {
		c.OrigFlags, c.RespFlags, c.State = 0, 0, detect.StateOTH
	}
	if s.sni != "" {
		c.App = &detect.AppInfo{Service: "tls", SNI: s.sni}
	} else if s.host != "" {
		c.App = &detect.AppInfo{Service: "http", HTTPHost: s.host}
	}
	return c
}

// feed sends the connections to the detector, in end order, ticking
// every second of event time as the engine does.
func (h *harness) feed(specs []spec) {
	var last time.Time
	for _, s := range specs {
		c := h.conn(s)
		if !last.IsZero() {
			for t := last.Add(time.Second); !t.After(c.End); t = t.Add(time.Second) {
				h.d.Tick(t)
			}
		}
		last = c.End
		h.d.OnConn(c)
	}
}

// series makes n connections from src to dst with gaps drawn from gap.
func series(n int, start time.Time, gap func(i int) time.Duration, mk func(i int, t time.Time) spec) []spec {
	out := make([]spec, 0, n)
	t := start
	for i := 0; i < n; i++ {
		out = append(out, mk(i, t))
		t = t.Add(gap(i))
	}
	return out
}

func jittered(rng *rand.Rand, period time.Duration, jitter float64) func(int) time.Duration {
	return func(int) time.Duration {
		return time.Duration(float64(period) * (1 - jitter + 2*jitter*rng.Float64()))
	}
}

func uniformGap(rng *rand.Rand, lo, hi time.Duration) func(int) time.Duration {
	return func(int) time.Duration { return lo + time.Duration(rng.Int63n(int64(hi-lo))) }
}

func expGap(rng *rand.Rand, mean time.Duration) func(int) time.Duration {
	return func(int) time.Duration { return time.Duration(rng.ExpFloat64() * float64(mean)) }
}

// merge interleaves several connection lists by start time.
func merge(lists ...[]spec) []spec {
	var out []spec
	for _, l := range lists {
		out = append(out, l...)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].start.Before(out[j-1].start); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}
