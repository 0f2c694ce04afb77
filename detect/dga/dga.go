// Package dga detects hosts that run a domain generation algorithm: malware
// that looks for its command server among many machine-made names, most of
// which do not exist. A lexical model (no look-ups: letter n-grams of
// English, entropy, digits, consonant runs; see lexical.go and model.go)
// scores the label of every registered domain a client asks for; per client
// the detector counts, in a window, the distinct names that look generated,
// above all those answered NXDOMAIN, and reports the host with the names,
// the ones that resolved, and whether the host then contacted one of their
// addresses. A resolver's forwarded copies of a client's questions are
// attributed to the client (package dnstunnel/dnsfwd). See README.md.
package dga

import (
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/wardline/wardline/detect"
	"github.com/wardline/wardline/detect/dnsfwd"
)

// Config holds the parameters; zero values take the defaults.
type Config struct {
	// Window: a host's counts cover at most this much time, and an idle
	// host is forgotten after it (default 5m).
	Window time.Duration
	// MinNX: distinct generated-looking names answered NXDOMAIN before a
	// host is scored (default 8).
	MinNX int
	// MinNames: distinct generated-looking names, answered or not, before a
	// host is scored without NXDOMAIN evidence (default 25).
	MinNames int
	// MinScore: the risk at which a host is reported (default 50).
	MinScore float64
	// Threshold: the model probability from which a label looks generated
	// (default: the model's own, 0.63).
	Threshold float64
	// MaxHosts bounds the tracked clients (default 20000); MaxNames the
	// generated-looking names kept per client (default 256).
	MaxHosts, MaxNames int
	// Model: the lexical model (default DefaultModel()).
	Model *Model
	// ForwardTTL: how long a client's question is remembered to recognise
	// the resolver's forwarded copy (default 10s).
	ForwardTTL time.Duration
}

func (c *Config) defaults() {
	if c.Window <= 0 {
		c.Window = 5 * time.Minute
	}
	if c.MinNX <= 0 {
		c.MinNX = 8
	}
	if c.MinNames <= 0 {
		c.MinNames = 25
	}
	if c.MinScore <= 0 {
		c.MinScore = 50
	}
	if c.Model == nil {
		c.Model = DefaultModel()
	}
	if c.Threshold <= 0 {
		c.Threshold = c.Model.Threshold
	}
	if c.MaxHosts <= 0 {
		c.MaxHosts = 20000
	}
	if c.MaxNames <= 0 {
		c.MaxNames = 256
	}
}

// maxSamples: names listed in an alert.
const maxSamples = 20

// Detector is the DGA detector.
type Detector struct {
	cfg   Config
	env   detect.Env
	fwd   *dnsfwd.Matcher
	hosts map[netip.Addr]*host
	seed  maphash.Seed
	cache [4096]cached // judge's answers by name, direct-mapped

	events, forwards, judged, cacheHits, untracked, alerts uint64
}

type cached struct {
	h          uint64
	dlen, llen uint16 // lengths of the registered domain and its label
	ok         bool
	p          float32
}

// host is one client's window.
type host struct {
	start, last time.Time
	lookups     sketch              // distinct registered domains asked for
	names       map[uint64]*genName // generated-looking ones
	dgaNX       int                 // of those, answered NXDOMAIN
	sumP        float64
	tlds        map[string]struct{} // their TLDs (bounded)
	order       []*genName          // first maxSamples, in order
	resolved    []*genName          // those that resolved (bounded)
	alerted     bool
	contacted   map[netip.Addr]bool // resolved addresses contacted (reported)
	port        uint16
	proto       uint8
	server      netip.Addr
}

// genName is a generated-looking registered domain.
type genName struct {
	domain   string
	p        float64
	nx       bool
	resolved bool
	addrs    []netip.Addr
	at       time.Time
}

// New returns a DGA detector.
func New(cfg Config, env detect.Env) *Detector {
	cfg.defaults()
	return &Detector{cfg: cfg, env: env, fwd: dnsfwd.New(cfg.ForwardTTL, 0), hosts: map[netip.Addr]*host{}, seed: maphash.MakeSeed()}
}

// Name implements detect.Detector.
func (d *Detector) Name() string { return "dga" }

// judge returns a name's registered domain, label and model probability,
// through a small direct-mapped cache keyed by the name (names repeat: both
// legs of a resolution, answers, A and AAAA), which saves the public-suffix
// look-up as well as the model.
func (d *Detector) judge(name string) (domain, label string, p float64, ok bool) {
	name = strings.TrimSuffix(name, ".")
	h := maphash.String(d.seed, name) | 1
	c := &d.cache[h%uint64(len(d.cache))]
	if c.h == h && int(c.dlen) <= len(name) && int(c.llen) <= int(c.dlen) {
		d.cacheHits++
		if !c.ok {
			return "", "", 0, false
		}
		domain = name[len(name)-int(c.dlen):]
		return domain, domain[:c.llen], float64(c.p), true
	}
	// Names under a top-level domain that does not exist cannot have
	// been registered by anyone: they are not a DGA's (a tunnel talking
	// to its server directly puts data there; see dnstunnel).
	domain, label, listed, ok := registered(name)
	ok = ok && listed
	if ok {
		d.judged++
		p = d.cfg.Model.Score(label)
	}
	*c = cached{h: h, dlen: uint16(len(domain)), llen: uint16(len(label)), ok: ok, p: float32(p)}
	return domain, label, p, ok
}

// OnDNS implements detect.DNSObserver.
func (d *Detector) OnDNS(ev *detect.DNSEvent) {
	d.events++
	client, forwarded := d.fwd.Origin(ev)
	if forwarded {
		d.forwards++
		return
	}
	domain, _, p, ok := d.judge(ev.QName)
	if !ok {
		return
	}
	h := d.hosts[client]
	if h == nil {
		if len(d.hosts) >= d.cfg.MaxHosts {
			d.untracked++
			return
		}
		h = &host{start: ev.Time}
		d.hosts[client] = h
	}
	if ev.Time.Sub(h.start) > d.cfg.Window {
		*h = host{start: ev.Time}
	}
	h.last = ev.Time
	if !ev.Response {
		h.lookups.add(domain)
	}
	if p < d.cfg.Threshold {
		return
	}
	if h.names == nil {
		h.names = map[uint64]*genName{}
		h.tlds = map[string]struct{}{}
		h.server, h.port, h.proto = ev.Server, ev.ClientPort, ev.Proto
	}
	k := maphash.String(d.seed, domain)
	n := h.names[k]
	if n == nil {
		if len(h.names) >= d.cfg.MaxNames {
			return
		}
		n = &genName{domain: strings.Clone(domain), p: p, at: ev.Time}
		h.names[k] = n
		h.sumP += p
		if len(h.order) < maxSamples {
			h.order = append(h.order, n)
		}
		if len(h.tlds) < 64 {
			h.tlds[tld(n.domain)] = struct{}{}
		}
	}
	if ev.Response {
		switch {
		case ev.RCodeName == "NXDOMAIN" && !n.nx:
			n.nx = true
			h.dgaNX++
		case ev.RCode == 0 && !n.resolved:
			for _, a := range ev.Answers {
				if a.Addr.IsValid() && len(n.addrs) < 4 {
					n.addrs = append(n.addrs, a.Addr)
				}
			}
			if len(n.addrs) > 0 {
				n.resolved = true
				if len(h.resolved) < 8 {
					h.resolved = append(h.resolved, n)
				}
			}
		}
	}
	if !h.alerted && (h.dgaNX >= d.cfg.MinNX || len(h.names) >= d.cfg.MinNames) {
		d.check(client, h, ev.Time)
	}
}

func tld(domain string) string { return domain[strings.LastIndexByte(domain, '.')+1:] }

// OnConn implements detect.ConnObserver: a connection from a host to an
// address that one of its generated-looking names resolved to.
func (d *Detector) OnConn(c *detect.Conn) { d.contact(c.Key.Src, c.Key.Dst, c.Start, "connection") }

// OnTLS implements detect.TLSObserver (the same check, earlier than the
// connection's record).
func (d *Detector) OnTLS(t *detect.TLSEvent) { d.contact(t.Key.Src, t.Key.Dst, t.Time, "TLS") }

// OnHTTP implements detect.HTTPObserver.
func (d *Detector) OnHTTP(r *detect.HTTPEvent) { d.contact(r.Key.Src, r.Key.Dst, r.Time, "HTTP") }

func (d *Detector) contact(src, dst netip.Addr, at time.Time, how string) {
	h := d.hosts[src]
	if h == nil || len(h.resolved) == 0 || h.contacted[dst] {
		return
	}
	for _, n := range h.resolved {
		for _, a := range n.addrs {
			if a != dst {
				continue
			}
			if h.contacted == nil {
				h.contacted = map[netip.Addr]bool{}
			}
			h.contacted[dst] = true
			if h.alerted {
				d.emitContact(src, h, n, dst, at, how)
			}
			return
		}
	}
}

// Tick forgets idle hosts and old questions.
func (d *Detector) Tick(now time.Time) {
	for a, h := range d.hosts {
		if now.Sub(h.last) > d.cfg.Window {
			delete(d.hosts, a)
		}
	}
	d.fwd.Expire(now)
}

// Stats implements detect.Statser.
func (d *Detector) Stats() map[string]float64 {
	return map[string]float64{
		"tracked_hosts":      float64(len(d.hosts)),
		"events":             float64(d.events),
		"forwarded_skipped":  float64(d.forwards),
		"names_judged":       float64(d.judged),
		"score_cache_hits":   float64(d.cacheHits),
		"forward_table":      float64(d.fwd.Len()),
		"forward_dropped":    float64(d.fwd.Dropped()),
		"untracked_messages": float64(d.untracked),
		"alerts":             float64(d.alerts),
	}
}

// ramp maps x linearly from lo (0) to hi (1), clamped.
func ramp(x, lo, hi float64) float64 { return min(1, max(0, (x-lo)/(hi-lo))) }

func (d *Detector) reasons(h *host) ([]detect.Contribution, float64) {
	n := float64(len(h.names))
	nx := float64(h.dgaNX)
	lookups := max(n, h.lookups.count())
	share := n / max(1, lookups)
	meanP := h.sumP / max(1, n)
	perMin := n / max(10, h.last.Sub(h.start).Seconds()) * 60
	minNX := float64(d.cfg.MinNX)
	var rs []detect.Contribution
	risk := 0.0
	add := func(feature string, value, points float64, why string) {
		if points <= 0 {
			return
		}
		rs = append(rs, detect.Contribution{Feature: feature, Value: round2(value), Points: round2(points), Why: why})
		risk += points
	}
	nxPts := 25 * ramp(nx, minNX/2, 2*minNX)
	if nx >= minNX {
		nxPts += 10
	}
	add("dga_nxdomain", nx, nxPts,
		fmt.Sprintf("%.0f generated-looking names do not exist (NXDOMAIN; threshold %d)", nx, d.cfg.MinNX))
	add("dga_names", n, 10+15*ramp(n, minNX, 5*minNX),
		fmt.Sprintf("%.0f distinct generated-looking registered domains asked for", n))
	add("lexical_score", meanP, 15*ramp(meanP, d.cfg.Threshold, 1),
		fmt.Sprintf("their labels look machine-made with probability %.2f on average", meanP))
	add("tld_spread", float64(len(h.tlds)), 10*ramp(float64(len(h.tlds)), 1, 5),
		fmt.Sprintf("spread over %d top-level domains", len(h.tlds)))
	add("dga_share", share, 10*ramp(share, 0.1, 0.5),
		fmt.Sprintf("%.0f%% of the host's distinct domains look generated", 100*share))
	add("name_rate", perMin, 5*ramp(perMin, 2, 30),
		fmt.Sprintf("%.0f generated-looking names per minute", perMin))
	return rs, min(100, risk)
}

func (d *Detector) check(client netip.Addr, h *host, at time.Time) {
	rs, risk := d.reasons(h)
	if risk < d.cfg.MinScore {
		return
	}
	h.alerted = true
	d.alerts++
	names := make([]string, 0, len(h.order))
	for _, n := range h.order {
		s := n.domain
		if n.nx {
			s += " (NXDOMAIN)"
		}
		names = append(names, s)
	}
	ev := map[string]any{
		"names": names, "distinct_names": len(h.names), "nxdomain_names": h.dgaNX, "tlds": sortedKeys(h.tlds),
		"dns_server": h.server.String(), "window_s": round2(h.last.Sub(h.start).Seconds()),
	}
	if len(h.order) > 0 {
		_, label, _ := RegisteredDomain(h.order[0].domain)
		p, terms := d.cfg.Model.Explain(label)
		ev["example"] = map[string]any{"name": h.order[0].domain, "probability": round2(p), "terms": terms[:min(4, len(terms))]}
	}
	if r := resolvedEvidence(h); len(r) > 0 {
		ev["resolved"] = r
	}
	a := &detect.Alert{
		Type: detect.TypeDGA, Detector: d.Name(), Time: at, Attacker: client,
		Signature: fmt.Sprintf("%s looked up %d generated-looking domains, %d of them non-existent (e.g. %s)",
			client, len(h.names), h.dgaNX, h.order[0].domain),
		MITRE:      detect.MITREDGA,
		Confidence: round2(min(0.99, 0.5+risk/200)),
		Reasons:    rs,
		Evidence:   ev,
	}
	if h.server.IsValid() {
		a.Flow = &detect.FlowRef{Proto: protoName(h.proto), Src: client, SrcPort: h.port, Dst: h.server, DstPort: 53}
	}
	a.Score()
	d.env.Emit(a)
	// A contact that happened before the threshold is reported now.
	for dst := range h.contacted {
		for _, n := range h.resolved {
			for _, x := range n.addrs {
				if x == dst {
					d.emitContact(client, h, n, dst, at, "earlier connection")
				}
			}
		}
	}
}

func resolvedEvidence(h *host) []map[string]any {
	var out []map[string]any
	for _, n := range h.resolved {
		addrs := make([]string, len(n.addrs))
		contacted := false
		for i, a := range n.addrs {
			addrs[i] = a.String()
			contacted = contacted || h.contacted[a]
		}
		out = append(out, map[string]any{"name": n.domain, "addrs": addrs, "contacted": contacted})
	}
	return out
}

// emitContact reports that a host which runs a DGA connected to an address
// one of the generated names resolved to: the rendezvous with its server.
func (d *Detector) emitContact(client netip.Addr, h *host, n *genName, dst netip.Addr, at time.Time, how string) {
	rs, _ := d.reasons(h)
	rs = append(rs, detect.Contribution{Feature: "resolved_and_contacted", Value: 1, Points: 30,
		Why: fmt.Sprintf("%s resolved to %s and the host then opened a %s to it", n.domain, dst, how)})
	d.alerts++
	a := &detect.Alert{
		Type: detect.TypeDGA, Subtype: "rendezvous", Detector: d.Name(), Time: at, Attacker: client,
		Victims:    []netip.Addr{dst},
		Signature:  fmt.Sprintf("%s contacted %s, the address of generated domain %s", client, dst, n.domain),
		MITRE:      detect.MITREDGA,
		Confidence: 0.95,
		Reasons:    rs,
		Evidence: map[string]any{"name": n.domain, "lexical_probability": round2(n.p), "address": dst.String(),
			"how": how, "resolved_at": n.at, "distinct_names": len(h.names), "nxdomain_names": h.dgaNX},
	}
	a.Score()
	d.env.Emit(a)
}

func protoName(p uint8) string {
	if p == 6 {
		return "TCP"
	}
	return "UDP"
}

func sortedKeys(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// sketch counts distinct strings in 72 bytes by linear counting over 512
// bits (within a few percent up to ~1500, saturating near 3000).
type sketch struct{ bits [8]uint64 }

func (s *sketch) add(v string) {
	h := maphash.String(sketchSeed, v) % 512
	s.bits[h/64] |= 1 << (h % 64)
}

func (s *sketch) count() float64 {
	ones := 0
	for _, w := range s.bits {
		ones += bits.OnesCount64(w)
	}
	if ones == 512 {
		return 512 * math.Log(512)
	}
	return -512 * math.Log(float64(512-ones)/512)
}

// sketchSeed seeds the sketches' hash (maphash: well mixed in its low
// bits, which the 512-bit map uses).
var sketchSeed = maphash.MakeSeed()
