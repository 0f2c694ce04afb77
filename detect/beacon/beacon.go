// Package beacon detects command-and-control beaconing: an inside host
// that calls the same outside destination again and again on a timer, in
// the spirit of RITA's beacon analysis, but streaming. For every (source,
// destination) pair it keeps the start times and client byte counts of the
// last connections (bounded), and as each new connection arrives it scores
// how regular the intervals and the sizes are, how many check-ins there
// were and how much of the observed time they span. Every sub-score is in
// the alert's risk contributions. It is for the detection engine
// (detect/engine); see README.md for the model, parameters and limits.
package beacon

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/wardline/wardline/dataplane/event"
	"github.com/wardline/wardline/detect"
)

// Config holds the parameters; zero values take the defaults.
type Config struct {
	// MinConns is how many check-ins a pair needs before it is scored
	// (default 12, at least 4).
	MinConns int
	// FullConns is the check-in count at which the count sub-score is
	// full (default 48).
	FullConns int
	// Samples is how many recent check-ins are kept per pair (default 256).
	Samples int
	// MaxPairs bounds the tracked pairs; beyond it the least recently seen
	// pair with a single check-in is evicted first (default 20000).
	MaxPairs int
	// Window: a pair alerts at most once per Window, and a pair idle for a
	// whole Window is forgotten (default 24h).
	Window time.Duration
	// MergeGap: connections of a pair starting within this of the previous
	// one belong to the same check-in (their bytes add up) (default 500ms).
	MergeGap time.Duration
	// MinInterval: pairs whose median interval is shorter are sessions,
	// not beacons, and are not scored (default 1s).
	MinInterval time.Duration
	// Jitter is the largest jitter, as a fraction of the period, that a
	// beacon is expected to add: intervals within ±Jitter of the median
	// count as on schedule (default 0.3).
	Jitter float64
	// MaxDispersion is the largest MAD/median of the intervals a beacon may
	// have (default 0.25; uniform jitter of ±j gives j/2).
	MaxDispersion float64
	// MinOnSchedule is the smallest share of intervals within ±Jitter of
	// the median (default 0.85).
	MinOnSchedule float64
	// Threshold is the risk (0..100) at which a pair alerts (default 65).
	Threshold float64
	// Confirm is how many consecutive check-ins must each meet the
	// threshold and the periodicity rules before the pair alerts (default
	// 3): a chance run of even gaps in irregular traffic rarely lasts,
	// a timer does.
	Confirm int
	// IgnorePorts are destination ports never scored (default 53, 123,
	// 5353: DNS has its own detectors, NTP polls on a fixed schedule by
	// design). Set to an empty non-nil slice to score every port.
	IgnorePorts []uint16
	// Internal also scores pairs inside the home networks (default off:
	// only home -> outside is beaconing).
	Internal bool
}

func (c *Config) defaults() {
	if c.MinConns == 0 {
		c.MinConns = 12
	}
	c.MinConns = max(4, c.MinConns)
	if c.FullConns <= c.MinConns {
		c.FullConns = max(48, 2*c.MinConns)
	}
	if c.Samples == 0 {
		c.Samples = 256
	}
	c.Samples = max(c.Samples, c.MinConns)
	if c.MaxPairs == 0 {
		c.MaxPairs = 20000
	}
	if c.Window == 0 {
		c.Window = 24 * time.Hour
	}
	if c.MergeGap == 0 {
		c.MergeGap = 500 * time.Millisecond
	}
	if c.MinInterval == 0 {
		c.MinInterval = time.Second
	}
	if c.Jitter == 0 {
		c.Jitter = 0.3
	}
	if c.MaxDispersion == 0 {
		c.MaxDispersion = 0.25
	}
	if c.MinOnSchedule == 0 {
		c.MinOnSchedule = 0.85
	}
	if c.Threshold == 0 {
		c.Threshold = 65
	}
	if c.Confirm == 0 {
		c.Confirm = 3
	}
	if c.IgnorePorts == nil {
		c.IgnorePorts = []uint16{53, 123, 5353}
	}
}

// Detector is the beaconing detector. Like every detector it is called
// from one goroutine.
type Detector struct {
	cfg Config
	env detect.Env

	index map[pairKey]int32
	pairs []pair  // slab; index -1 means none
	free  []int32 // reusable slab slots
	lists [2]lru  // probation (one check-in), protected (two or more)

	// Scratch for evaluations (allocation-free scoring).
	ivals, sizes, dev []float64

	first, now int64 // event time (unix ns) of the first and latest event

	st counters
}

type counters struct {
	conns, failed, outOfScope, merged, outOfOrder uint64
	evicted, expired, evaluations, alerts         uint64
}

const (
	probation = 0
	protected = 1
	none      = -1
)

type lru struct {
	head, tail int32
	n          int
}

// pairKey names a pair: the source and either the destination's name (TLS
// SNI, HTTP Host) or, when there is none, its address.
type pairKey struct {
	src  netip.Addr
	dst  netip.Addr // zero when name is set
	name string
}

type pair struct {
	key        pairKey
	prev, next int32
	list       uint8
	// Check-ins, oldest first from head once the ring is full.
	times []int64 // start, unix ns
	sizes []uint32
	head  int

	lastConn  int64 // start of the latest connection (for merging)
	lastSeen  int64 // event time of the latest record (for expiry)
	conns     uint64
	added     uint64 // check-ins ever added
	nextEval  uint64
	streak    int   // consecutive evaluations that met the rules
	alertedAt int64 // 0: never

	victims [4]netip.Addr
	nvict   uint8
	port    uint16
	proto   uint8
}

// New returns a beaconing detector.
func New(cfg Config, env detect.Env) *Detector {
	cfg.defaults()
	d := &Detector{cfg: cfg, env: env, index: make(map[pairKey]int32),
		ivals: make([]float64, cfg.Samples), sizes: make([]float64, cfg.Samples), dev: make([]float64, cfg.Samples)}
	d.lists[0] = lru{head: none, tail: none}
	d.lists[1] = lru{head: none, tail: none}
	return d
}

// Name is "beacon".
func (d *Detector) Name() string { return "beacon" }

// inScope reports whether a connection can be a check-in: TCP that
// completed its handshake or UDP that got an answer, to a port not
// ignored, home -> outside (the engine's Direction, derived from the
// inventory when unset; with no home networks nothing is outbound and the
// detector stays quiet, as the engine documents). Failed attempts (Zeek
// S0, REJ, RSTOS0, SH) are not check-ins: a client retrying a dead server
// with backoff is not a beacon.
func (d *Detector) inScope(c *detect.Conn) bool {
	switch c.Key.Proto {
	case event.ProtoTCP:
		if c.Failed() || !c.Established() {
			d.st.failed++
			return false
		}
	case event.ProtoUDP:
		if c.RespPkts == 0 {
			d.st.failed++
			return false
		}
	default:
		d.st.outOfScope++
		return false
	}
	for _, p := range d.cfg.IgnorePorts {
		if c.Key.DstPort == p {
			d.st.outOfScope++
			return false
		}
	}
	dir := c.Direction
	if dir == "" && d.env.Inv != nil { // not set by the caller: derive it
		switch sh, dh := d.env.Inv.IsHome(c.Key.Src), d.env.Inv.IsHome(c.Key.Dst); {
		case sh && dh:
			dir = detect.Internal
		case sh:
			dir = detect.Outbound
		}
	}
	if dir == detect.Outbound || (dir == detect.Internal && d.cfg.Internal) {
		return true
	}
	d.st.outOfScope++
	return false
}

// destName returns the name a connection was addressed to: the TLS SNI or
// the HTTP Host without port, lower case; "" when there is none.
func destName(c *detect.Conn) string {
	if c.App == nil {
		return ""
	}
	n := c.App.SNI
	if n == "" {
		n = c.App.HTTPHost
		if strings.HasPrefix(n, "[") { // [IPv6]:port
			if i := strings.IndexByte(n, ']'); i > 0 {
				n = n[:i+1]
			}
		} else if i := strings.LastIndexByte(n, ':'); i >= 0 && strings.IndexByte(n, ':') == i {
			n = n[:i] // host:port (a bare IPv6 address has more colons)
		}
	}
	n = strings.TrimSuffix(n, ".")
	for i := 0; i < len(n); i++ {
		if 'A' <= n[i] && n[i] <= 'Z' {
			return strings.ToLower(n)
		}
	}
	return n
}

// OnConn adds a final connection record to its pair and scores the pair.
func (d *Detector) OnConn(c *detect.Conn) {
	if !c.Final {
		return // interim records: the connection counts once, at its end
	}
	t := c.End.UnixNano()
	if d.first == 0 {
		d.first = c.Start.UnixNano()
	}
	d.now = max(d.now, t)
	if !d.inScope(c) {
		return
	}
	d.st.conns++
	k := pairKey{src: c.Key.Src, name: destName(c)}
	if k.name == "" {
		k.dst = c.Key.Dst
	}
	i, ok := d.index[k]
	if !ok {
		i = d.alloc(k)
	}
	p := &d.pairs[i]
	p.lastSeen = max(p.lastSeen, t)
	p.conns++
	p.port, p.proto = c.Key.DstPort, c.Key.Proto
	p.addVictim(c.Key.Dst)
	d.unlink(i)
	if d.add(p, c.Start.UnixNano(), c.OrigBytes) && p.list == probation && len(p.times) >= 2 {
		p.list = protected // a second check-in: evicted only after every one-off pair
	}
	d.pushFront(i)

	if len(p.times) < d.cfg.MinConns || p.added < p.nextEval {
		return
	}
	if p.alertedAt != 0 && t-p.alertedAt < int64(d.cfg.Window) {
		return // once per pair per window
	}
	f, periodic := d.evaluate(p)
	if periodic && f.total() >= d.cfg.Threshold {
		p.streak++
		if p.streak >= d.cfg.Confirm {
			p.alertedAt, p.streak = t, 0
			d.alert(p, c, &f, f.total())
			return
		}
	} else {
		p.streak = 0
	}
	// When the intervals are far from periodic, one more check-in cannot
	// make them periodic: at least (MinOnSchedule - on-schedule share) x n
	// on-schedule check-ins are needed. Look again after half of that, so
	// that busy irregular pairs cost little; near or periodic: every
	// check-in.
	p.nextEval = p.added + 1
	if gap := d.cfg.MinOnSchedule - f.ts.within; gap > 0 {
		p.nextEval = p.added + uint64(max(1, int(gap*float64(len(p.times))/2)))
	}
}

func (p *pair) addVictim(a netip.Addr) {
	for i := range p.nvict {
		if p.victims[i] == a {
			return
		}
	}
	if int(p.nvict) < len(p.victims) {
		p.victims[p.nvict] = a
		p.nvict++
	}
}

// add records a connection start and its client bytes as a check-in, or
// merges it into the previous check-in when it started within MergeGap of
// the previous connection. It reports whether a new check-in was added.
func (d *Detector) add(p *pair, start int64, bytes uint64) bool {
	b := uint32(min(bytes, 1<<32-1))
	n := len(p.times)
	if n > 0 {
		gap := start - p.lastConn
		if gap < 0 {
			gap = -gap
		}
		if gap < int64(d.cfg.MergeGap) {
			j := p.idx(n - 1)
			p.sizes[j] = uint32(min(uint64(p.sizes[j])+uint64(b), 1<<32-1))
			p.lastConn = max(p.lastConn, start)
			d.st.merged++
			return false
		}
	}
	p.lastConn = max(p.lastConn, start)
	if n < d.cfg.Samples {
		if p.times == nil {
			p.times = make([]int64, 0, 8)
			p.sizes = make([]uint32, 0, 8)
		}
		p.times = append(p.times, start)
		p.sizes = append(p.sizes, b)
	} else {
		p.times[p.head], p.sizes[p.head] = start, b
		p.head = (p.head + 1) % n
	}
	p.added++
	// Records arrive in end order: a connection that started earlier but
	// ended later goes back to its place.
	n = len(p.times)
	for i := n - 1; i > 0; i-- {
		a, b := p.idx(i-1), p.idx(i)
		if p.times[a] <= p.times[b] {
			break
		}
		if i == n-1 {
			d.st.outOfOrder++
		}
		p.times[a], p.times[b] = p.times[b], p.times[a]
		p.sizes[a], p.sizes[b] = p.sizes[b], p.sizes[a]
	}
	return true
}

// idx maps a logical position (0 = oldest) to a slice index.
func (p *pair) idx(i int) int {
	if p.head == 0 {
		return i
	}
	return (p.head + i) % len(p.times)
}

// alloc creates the state of a new pair, evicting if the table is full.
func (d *Detector) alloc(k pairKey) int32 {
	if len(d.index) >= d.cfg.MaxPairs {
		victim := d.lists[probation].tail
		if victim == none {
			victim = d.lists[protected].tail
		}
		d.drop(victim)
		d.st.evicted++
	}
	k.name = strings.Clone(k.name) // do not pin the engine's buffers
	var i int32
	if n := len(d.free); n > 0 {
		i = d.free[n-1]
		d.free = d.free[:n-1]
		p := &d.pairs[i]
		*p = pair{key: k, times: p.times[:0], sizes: p.sizes[:0]}
	} else {
		d.pairs = append(d.pairs, pair{key: k})
		i = int32(len(d.pairs) - 1)
	}
	d.pairs[i].prev, d.pairs[i].next = none, none
	d.pushFront(i)
	d.index[k] = i
	return i
}

// drop forgets a pair and keeps its slot (and buffers) for reuse.
func (d *Detector) drop(i int32) {
	p := &d.pairs[i]
	d.unlink(i)
	delete(d.index, p.key)
	p.key = pairKey{}
	d.free = append(d.free, i)
}

func (d *Detector) pushFront(i int32) {
	p := &d.pairs[i]
	l := &d.lists[p.list]
	p.prev, p.next = none, l.head
	if l.head != none {
		d.pairs[l.head].prev = i
	}
	l.head = i
	if l.tail == none {
		l.tail = i
	}
	l.n++
}

func (d *Detector) unlink(i int32) {
	p := &d.pairs[i]
	l := &d.lists[p.list]
	if p.prev == none && l.head != i {
		return // not linked
	}
	l.n--
	if p.prev != none {
		d.pairs[p.prev].next = p.next
	} else if l.head == i {
		l.head = p.next
	}
	if p.next != none {
		d.pairs[p.next].prev = p.prev
	} else if l.tail == i {
		l.tail = p.prev
	}
	p.prev, p.next = none, none
}

// Tick forgets pairs idle for a whole Window. Both lists are ordered by
// last activity, so this costs only the pairs it removes.
func (d *Detector) Tick(now time.Time) {
	t := now.UnixNano()
	d.now = max(d.now, t)
	for l := range d.lists {
		for {
			i := d.lists[l].tail
			if i == none || t-d.pairs[i].lastSeen <= int64(d.cfg.Window) {
				break
			}
			d.drop(i)
			d.st.expired++
		}
	}
}

// Stats reports the state sizes and what the detector skipped or dropped.
func (d *Detector) Stats() map[string]float64 {
	return map[string]float64{
		"pairs_tracked":          float64(len(d.index)),
		"pairs_repeated":         float64(d.lists[protected].n),
		"pairs_evicted":          float64(d.st.evicted),
		"pairs_expired":          float64(d.st.expired),
		"conns_scored":           float64(d.st.conns),
		"conns_failed_ignored":   float64(d.st.failed),
		"conns_out_of_scope":     float64(d.st.outOfScope),
		"conns_merged":           float64(d.st.merged),
		"checkins_out_of_order":  float64(d.st.outOfOrder),
		"evaluations":            float64(d.st.evaluations),
		"alerts":                 float64(d.st.alerts),
		"samples_per_pair_limit": float64(d.cfg.Samples),
	}
}

// label names the pair's destination for people.
func (p *pair) label() string {
	ap := netip.AddrPortFrom(p.victims[0], p.port).String()
	if p.key.name != "" {
		return fmt.Sprintf("%s (%s)", p.key.name, ap)
	}
	return ap
}
