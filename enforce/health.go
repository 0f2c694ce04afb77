package enforce

import (
	"fmt"
	"maps"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wardline/wardline/dataplane/event"
	"github.com/wardline/wardline/detect"
)

// The health signals a rollout is judged by, counted per one-second
// bucket from the fast path's events (and the backends' drop counters):
//   - TCP handshakes of allowed traffic (neither end under a decision):
//     attempts and failures (no answer, refused, reset before data);
//   - DNS: responses, and failures (SERVFAIL, REFUSED);
//   - flows to and from never-block addresses: attempts and failures;
//   - drops by the decisions: of the target's own traffic (a blocked
//     source's packets: the point) and of others' traffic towards a
//     blocked destination (collateral), per policy.

// Sample is the signals over some span.
type Sample struct {
	Seconds         float64 `json:"seconds"`
	TCPAttempts     uint64  `json:"tcp_attempts"`
	TCPFailed       uint64  `json:"tcp_failed"`
	DNSResponses    uint64  `json:"dns_responses"`
	DNSFailed       uint64  `json:"dns_failed"`
	NeverBlockFlows uint64  `json:"never_block_flows"`
	NeverBlockFail  uint64  `json:"never_block_failed"`
	Drops           uint64  `json:"drops"`            // packets dropped by decisions
	CollateralDrops uint64  `json:"collateral_drops"` // of them: others' packets to a blocked destination
	// TCPFailSources: distinct originators of the failed handshakes.
	TCPFailSources int `json:"tcp_fail_sources"`

	// bySrc: TCP attempts and failures per originator (up to maxSrcs per
	// second; the rest only in the totals), so that the attackers of
	// alerts raised later can still be taken out (see excluding).
	bySrc map[netip.Addr]srcCount
}

type srcCount struct{ attempts, failed uint64 }

// excluding returns s without the TCP handshakes of the given originators.
func (s Sample) excluding(sus map[netip.Addr]struct{}) Sample {
	out := s
	out.bySrc = nil
	out.TCPFailSources = 0
	for a, c := range s.bySrc {
		if _, ok := sus[a]; ok {
			out.TCPAttempts -= c.attempts
			out.TCPFailed -= c.failed
			continue
		}
		if c.failed > 0 {
			out.TCPFailSources++
		}
	}
	return out
}

func ratio(n, d uint64) float64 {
	if d == 0 {
		return 0
	}
	return float64(n) / float64(d)
}

// TCPFailRatio, DNSFailRatio, NeverBlockFailRatio are the failure ratios.
func (s Sample) TCPFailRatio() float64        { return ratio(s.TCPFailed, s.TCPAttempts) }
func (s Sample) DNSFailRatio() float64        { return ratio(s.DNSFailed, s.DNSResponses) }
func (s Sample) NeverBlockFailRatio() float64 { return ratio(s.NeverBlockFail, s.NeverBlockFlows) }

func (s *Sample) add(o *Sample) {
	s.Seconds += o.Seconds
	s.TCPAttempts += o.TCPAttempts
	s.TCPFailed += o.TCPFailed
	s.DNSResponses += o.DNSResponses
	s.DNSFailed += o.DNSFailed
	s.NeverBlockFlows += o.NeverBlockFlows
	s.NeverBlockFail += o.NeverBlockFail
	s.Drops += o.Drops
	s.CollateralDrops += o.CollateralDrops
	for a, c := range o.bySrc {
		if s.bySrc == nil {
			s.bySrc = map[netip.Addr]srcCount{}
		}
		x := s.bySrc[a]
		x.attempts += c.attempts
		x.failed += c.failed
		s.bySrc[a] = x
	}
	s.TCPFailSources = 0
	for _, c := range s.bySrc {
		if c.failed > 0 {
			s.TCPFailSources++
		}
	}
}

// Thresholds decide a breach: a signal breaches when its current value
// over Window exceeds the pre-rollout baseline by the margin, with enough
// events to judge.
type Thresholds struct {
	Window time.Duration `json:"window"` // the span judged (default 10s)
	// TCP: failure ratio above max(2 × baseline, baseline + TCPMargin)
	// with at least TCPMin attempts in the window, from at least
	// TCPMinSources hosts (one host failing is that host's problem).
	TCPMargin     float64 `json:"tcp_margin"`
	TCPMin        uint64  `json:"tcp_min"`
	TCPMinSources int     `json:"tcp_min_sources"`
	// DNS: failure ratio above baseline + DNSMargin with DNSMin responses.
	DNSMargin float64 `json:"dns_margin"`
	DNSMin    uint64  `json:"dns_min"`
	// Never-block: failure ratio above baseline + NeverBlockMargin with
	// NeverBlockMin flows.
	NeverBlockMargin float64 `json:"never_block_margin"`
	NeverBlockMin    uint64  `json:"never_block_min"`
	// Collateral drops of one policy above this rate (packets/s): its
	// blocks are dropping other hosts' traffic to a destination.
	CollateralPPS float64 `json:"collateral_pps"`
}

// DefaultThresholds are used for zero fields.
var DefaultThresholds = Thresholds{Window: 10 * time.Second, TCPMargin: 0.10, TCPMin: 20, TCPMinSources: 2, DNSMargin: 0.15, DNSMin: 10,
	NeverBlockMargin: 0.10, NeverBlockMin: 5, CollateralPPS: 20}

func (t *Thresholds) defaults() {
	d := DefaultThresholds
	if t.Window == 0 {
		t.Window = d.Window
	}
	if t.TCPMargin == 0 {
		t.TCPMargin = d.TCPMargin
	}
	if t.TCPMin == 0 {
		t.TCPMin = d.TCPMin
	}
	if t.TCPMinSources == 0 {
		t.TCPMinSources = d.TCPMinSources
	}
	if t.DNSMargin == 0 {
		t.DNSMargin = d.DNSMargin
	}
	if t.DNSMin == 0 {
		t.DNSMin = d.DNSMin
	}
	if t.NeverBlockMargin == 0 {
		t.NeverBlockMargin = d.NeverBlockMargin
	}
	if t.NeverBlockMin == 0 {
		t.NeverBlockMin = d.NeverBlockMin
	}
	if t.CollateralPPS == 0 {
		t.CollateralPPS = d.CollateralPPS
	}
}

// Breach is one signal over its threshold.
type Breach struct {
	Signal    string  `json:"signal"`
	Current   float64 `json:"current"`
	Baseline  float64 `json:"baseline"`
	Threshold float64 `json:"threshold"`
	Detail    string  `json:"detail"`
}

func (b Breach) String() string { return b.Detail }

// breaches compares cur with base (box-wide signals).
func (t *Thresholds) breaches(cur, base Sample) []Breach {
	var out []Breach
	if cur.TCPAttempts >= t.TCPMin && cur.TCPFailSources >= t.TCPMinSources {
		c, b := cur.TCPFailRatio(), base.TCPFailRatio()
		lim := max(2*b, b+t.TCPMargin)
		if c > lim {
			out = append(out, Breach{"tcp_failed_handshakes", c, b, lim,
				fmt.Sprintf("%.0f%% of %d TCP handshakes of allowed traffic from %d hosts failed in the last %s (baseline %.0f%%, limit %.0f%%)",
					100*c, cur.TCPAttempts, cur.TCPFailSources, t.Window, 100*b, 100*lim)})
		}
	}
	if cur.DNSResponses >= t.DNSMin {
		c, b := cur.DNSFailRatio(), base.DNSFailRatio()
		if lim := b + t.DNSMargin; c > lim {
			out = append(out, Breach{"dns_failures", c, b, lim,
				fmt.Sprintf("%.0f%% of %d DNS responses were failures (baseline %.0f%%, limit %.0f%%)", 100*c, cur.DNSResponses, 100*b, 100*lim)})
		}
	}
	if cur.NeverBlockFlows >= t.NeverBlockMin {
		c, b := cur.NeverBlockFailRatio(), base.NeverBlockFailRatio()
		if lim := b + t.NeverBlockMargin; c > lim {
			out = append(out, Breach{"never_block_failures", c, b, lim,
				fmt.Sprintf("%.0f%% of %d connections to never-block assets failed (baseline %.0f%%, limit %.0f%%)", 100*c, cur.NeverBlockFlows, 100*b, 100*lim)})
		}
	}
	return out
}

// bucket is one second of signals; the reader goroutine adds to the
// current one with atomics.
type bucket struct {
	tcpAttempts, tcpFailed, dnsResp, dnsFailed, nbFlows, nbFailed atomic.Uint64

	mu    sync.Mutex
	bySrc map[netip.Addr]srcCount // at most maxSrcs originators
}

const maxSrcs = 256

// Monitor counts the health signals from the fast path's events. It is an
// event.Handler: subscribe it to the dataplane.
type Monitor struct {
	cur atomic.Pointer[bucket]

	mu      sync.Mutex
	history []histEntry // closed seconds, oldest first
	keep    int
	// The decisions in force and the never-block list, swapped whole by
	// the Manager; read on the reader goroutine.
	blocked    atomic.Pointer[prefixSet]
	neverBlock atomic.Pointer[prefixSet]
	// suspects: attackers of recent alerts. Their failures are the attack
	// (a scan is a burst of failed handshakes), not damage to allowed
	// traffic.
	suspects atomic.Pointer[map[netip.Addr]struct{}]
}

type histEntry struct {
	t time.Time
	s Sample
	// per policy: collateral drops in this second
	collateral map[string]uint64
}

// prefixSet answers "is this address covered" for the reader goroutine:
// single addresses by map, wider prefixes by a (short) list.
type prefixSet struct {
	hosts map[netip.Addr]struct{}
	nets  []netip.Prefix
}

func newPrefixSet(ps []netip.Prefix) *prefixSet {
	s := &prefixSet{hosts: make(map[netip.Addr]struct{}, len(ps))}
	for _, p := range ps {
		if p.IsSingleIP() {
			s.hosts[p.Addr().Unmap()] = struct{}{}
		} else {
			s.nets = append(s.nets, p)
		}
	}
	return s
}

func (s *prefixSet) contains(a netip.Addr) bool {
	if s == nil {
		return false
	}
	a = a.Unmap()
	if _, ok := s.hosts[a]; ok {
		return true
	}
	return inPrefixes(a, s.nets)
}

// NewMonitor keeps keep seconds of history.
func NewMonitor(keep time.Duration) *Monitor {
	m := &Monitor{keep: int(keep / time.Second)}
	m.cur.Store(&bucket{})
	return m
}

func (m *Monitor) setBlocked(p []netip.Prefix)    { m.blocked.Store(newPrefixSet(p)) }
func (m *Monitor) setNeverBlock(p []netip.Prefix) { m.neverBlock.Store(newPrefixSet(p)) }

// HandleFlow counts final TCP flow records.
func (m *Monitor) HandleFlow(f *event.Flow) {
	if !f.Final || f.Key.Proto != event.ProtoTCP {
		return
	}
	if f.FirstFlags&event.TCPSyn == 0 {
		return // no handshake seen (mid-stream)
	}
	c := detect.NewConn(f)
	failed := c.Failed()
	b := m.cur.Load()
	if nb := m.neverBlock.Load(); nb.contains(f.Key.Src) || nb.contains(f.Key.Dst) {
		b.nbFlows.Add(1)
		if failed {
			b.nbFailed.Add(1)
		}
	}
	if bl := m.blocked.Load(); bl.contains(f.Key.Src) || bl.contains(f.Key.Dst) {
		return // traffic a decision is meant to stop
	}
	if sp := m.suspects.Load(); sp != nil {
		if _, ok := (*sp)[f.Key.Dst.Unmap()]; ok {
			return // traffic to a known attacker
		}
	}
	b.tcpAttempts.Add(1)
	if failed {
		b.tcpFailed.Add(1)
	}
	src := f.Key.Src.Unmap()
	b.mu.Lock()
	if b.bySrc == nil {
		b.bySrc = map[netip.Addr]srcCount{}
	}
	if c, ok := b.bySrc[src]; ok || len(b.bySrc) < maxSrcs {
		c.attempts++
		if failed {
			c.failed++
		}
		b.bySrc[src] = c
	}
	b.mu.Unlock()
}

// setSuspects sets the attackers of recent alerts.
func (m *Monitor) setSuspects(s map[netip.Addr]struct{}) { m.suspects.Store(&s) }

// HandleSnippet ignores snippets: DNS outcomes come parsed, through OnDNS.
func (m *Monitor) HandleSnippet(*event.Snippet) {}

// OnDNS counts DNS responses and their failures (the detection engine's
// parsed messages: engine.Sinks.DNS).
func (m *Monitor) OnDNS(ev *detect.DNSEvent) {
	if !ev.Response {
		return
	}
	b := m.cur.Load()
	b.dnsResp.Add(1)
	if rc := ev.RCode; rc == 2 || rc == 5 { // SERVFAIL, REFUSED
		b.dnsFailed.Add(1)
	}
}

// tick closes the current second with the drops the backends counted in
// it (total and collateral per policy).
func (m *Monitor) tick(now time.Time, drops uint64, collateral map[string]uint64) {
	b := m.cur.Swap(&bucket{})
	s := Sample{Seconds: 1, TCPAttempts: b.tcpAttempts.Load(), TCPFailed: b.tcpFailed.Load(),
		DNSResponses: b.dnsResp.Load(), DNSFailed: b.dnsFailed.Load(),
		NeverBlockFlows: b.nbFlows.Load(), NeverBlockFail: b.nbFailed.Load(), Drops: drops}
	b.mu.Lock() // a HandleFlow that loaded b before the swap may still add
	s.bySrc = maps.Clone(b.bySrc)
	b.mu.Unlock()
	for _, c := range s.bySrc {
		if c.failed > 0 {
			s.TCPFailSources++
		}
	}
	for _, n := range collateral {
		s.CollateralDrops += n
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.history = append(m.history, histEntry{now, s, collateral})
	if over := len(m.history) - m.keep; over > 0 {
		m.history = append(m.history[:0:0], m.history[over:]...)
	}
}

// span sums the seconds in (from, to].
func (m *Monitor) span(from, to time.Time) (Sample, map[string]uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var s Sample
	coll := map[string]uint64{}
	for _, h := range m.history {
		if h.t.After(from) && !h.t.After(to) {
			s.add(&h.s)
			for p, n := range h.collateral {
				coll[p] += n
			}
		}
	}
	return s, coll
}

// Recent sums the last d, without the current suspects' handshakes.
func (m *Monitor) Recent(now time.Time, d time.Duration) Sample {
	s, _ := m.span(now.Add(-d), now)
	if sp := m.suspects.Load(); sp != nil {
		s = s.excluding(*sp)
	}
	return s
}
