// Package dnstunnel detects data carried inside DNS: tunnels such as iodine,
// dnscat2 or dns2tcp, and C2 channels that fetch commands from TXT records.
// Per (client, registered domain) it keeps a few counters in bounded memory
// (a 512-bit sketch of the unique names, label lengths, character entropy,
// query types, bytes and rate) and scores them explainably once the client
// has asked for enough unique names under one domain. A resolver's
// forwarded copies of a client's questions are recognised (package dnsfwd)
// and attributed to the client. See README.md for parameters and scores.
package dnstunnel

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
	"golang.org/x/net/publicsuffix"
)

// Config holds the parameters; zero values take the defaults.
type Config struct {
	// Window: the counters of a (client, domain) pair cover at most this
	// much time, and a pair idle for this long is forgotten (default 10m).
	Window time.Duration
	// MinUnique: unique names under one domain before it is scored at all
	// (default 30).
	MinUnique int
	// MinScore: the risk at which a pair is reported (default 60).
	MinScore float64
	// MaxPairs bounds the tracked (client, domain) pairs (default 50000);
	// new pairs beyond it are counted in Stats and not tracked.
	MaxPairs int
	// Allow lists registered domains (and their subdomains) that are never
	// reported; nil takes DefaultAllow, an empty non-nil slice allows none.
	Allow []string
	// ForwardTTL: how long a client's question is remembered to recognise
	// the resolver's forwarded copy (default 10s).
	ForwardTTL time.Duration
}

// DefaultAllow are services that answer lookups of encoded data by design:
// reverse DNS, DNS block lists and anti-virus / reputation look-ups.
var DefaultAllow = []string{
	"arpa",
	"spamhaus.org", "spamcop.net", "sorbs.net", "barracudacentral.org", "surbl.org", "uribl.com",
	"dnswl.org", "mailspike.net", "senderscore.com", "senderbase.org",
	"sophosxl.net", "mcafee.com", "e5.sk", "trendmicro.com",
}

func (c *Config) defaults() {
	if c.Window <= 0 {
		c.Window = 10 * time.Minute
	}
	if c.MinUnique <= 0 {
		c.MinUnique = 30
	}
	if c.MinScore <= 0 {
		c.MinScore = 60
	}
	if c.MaxPairs <= 0 {
		c.MaxPairs = 50000
	}
	if c.Allow == nil {
		c.Allow = DefaultAllow
	}
}

// Detector is the DNS tunnel detector.
type Detector struct {
	cfg   Config
	env   detect.Env
	fwd   *dnsfwd.Matcher
	pairs map[pairKey]*pair
	seed  maphash.Seed
	// splits caches split's answer by name (names repeat: both legs,
	// answers, retries); the public-suffix look-up is most of a miss.
	splits [4096]splitEntry

	// counters for Stats
	events, forwards, untracked, alerts uint64
}

type splitEntry struct {
	h       uint64
	dlen    uint16 // length of the registered domain
	invalid bool
	ok      bool
}

// pairKey is a client and a registered domain. invalidTLD marks the
// bucket of names whose top-level label cannot exist (it holds a digit):
// tools that talk to their server directly (dnscat2 without a domain) put
// data in every label, so all such names of a client count together.
type pairKey struct {
	client     netip.Addr
	domain     string
	invalidTLD bool
}

// Query types that carry data well and that ordinary clients rarely ask for
// in bulk. SRV is not one: Active Directory clients ask many.
const (
	typeCNAME = 5
	typeNULL  = 10
	typeMX    = 15
	typeTXT   = 16
	// RFC 6895 private use.
	typePrivateLo = 65280
	typePrivateHi = 65534
)

func unusualType(t uint16) bool {
	switch t {
	case typeCNAME, typeNULL, typeMX, typeTXT:
		return true
	}
	return t >= typePrivateLo && t <= typePrivateHi
}

// typeSlots: the query types counted one by one for evidence; the rest is
// "other".
var typeSlots = [...]struct {
	t    uint16
	name string
}{{1, "A"}, {28, "AAAA"}, {typeNULL, "NULL"}, {typeTXT, "TXT"}, {typeCNAME, "CNAME"}, {typeMX, "MX"}, {0, "other"}}

func typeSlot(t uint16) int {
	for i, s := range typeSlots[:len(typeSlots)-1] {
		if s.t == t {
			return i
		}
	}
	return len(typeSlots) - 1
}

// pair is what is known about one client's use of one domain in the
// current window. About 300 bytes.
type pair struct {
	start, last time.Time
	allowed     bool
	alerted     bool
	zone        string // longest common suffix of the names (evidence)
	samples     [3]string

	uniq                 sketch
	queries, responses   int
	subLen, maxLabel     int     // sum of subdomain lengths, longest label
	entropy              float64 // sum over queries of the subdomain's entropy
	oddChars             int     // queries with bytes outside [a-z0-9-_.]
	unusual              int     // queries of an unusual type
	types                [len(typeSlots)]int
	upBytes, downBytes   int
	payloadN, payloadSum int     // answered responses of unusual types, their estimated rdata bytes
	txtN                 int     // TXT answers with text
	txtEntropy           float64 // sum of their entropies
	nxdomain             int
	server, upstream     netip.Addr
	port                 uint16
	proto                uint8
}

// New returns a DNS tunnel detector.
func New(cfg Config, env detect.Env) *Detector {
	cfg.defaults()
	return &Detector{cfg: cfg, env: env, fwd: dnsfwd.New(cfg.ForwardTTL, 0), pairs: map[pairKey]*pair{}, seed: maphash.MakeSeed()}
}

// Name implements detect.Detector.
func (d *Detector) Name() string { return "dns_tunnel" }

// split returns the registered domain of a name and the part in front of it
// (the subdomain). For a name whose top-level label cannot exist, domain is
// "" and invalid is true: the whole name is the subdomain. ok is false for
// names not worth tracking (single labels, public suffixes, IP literals).
func split(name string) (domain, sub string, invalid, ok bool) {
	if strings.IndexByte(name, '.') <= 0 || strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
		return "", "", false, false
	}
	ps, icann := publicsuffix.PublicSuffix(name)
	if len(name) <= len(ps) || name[len(name)-len(ps)-1] != '.' {
		return "", "", false, false
	}
	if !icann && strings.IndexByte(ps, '.') < 0 && !validTLD(ps) {
		return "", name, true, true
	}
	rest := name[:len(name)-len(ps)-1]
	i := strings.LastIndexByte(rest, '.')
	if i < 0 {
		return name, "", false, true
	}
	return name[i+1:], rest[:i], false, true
}

// split is the package function through the cache.
func (d *Detector) split(name string) (domain, sub string, invalid, ok bool) {
	h := maphash.String(d.seed, name) | 1
	e := &d.splits[h%uint64(len(d.splits))]
	if e.h != h {
		domain, sub, invalid, ok = split(name)
		*e = splitEntry{h: h, dlen: uint16(len(domain)), invalid: invalid, ok: ok}
		return domain, sub, invalid, ok
	}
	switch {
	case !e.ok:
		return "", "", false, false
	case e.invalid:
		return "", name, true, true
	case int(e.dlen) >= len(name):
		return name, "", false, true
	}
	return name[len(name)-int(e.dlen):], name[:len(name)-int(e.dlen)-1], false, true
}

// validTLD: letters only, or an IDN A-label.
func validTLD(s string) bool {
	if strings.HasPrefix(s, "xn--") {
		return true
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 'a' || c > 'z' {
			return false
		}
	}
	return s != ""
}

// OnDNS implements detect.DNSObserver.
func (d *Detector) OnDNS(ev *detect.DNSEvent) {
	d.events++
	client, forwarded := d.fwd.Origin(ev)
	if forwarded {
		// The resolver's copy of a question already counted for the
		// client; only learn where the resolver sends it.
		d.forwards++
		if !ev.Response {
			if p := d.lookup(client, ev.QName); p != nil {
				p.upstream = ev.Server
			}
		}
		return
	}
	domain, sub, invalid, ok := d.split(ev.QName)
	if !ok {
		return
	}
	k := pairKey{client: client, domain: domain, invalidTLD: invalid}
	p := d.pairs[k]
	if p == nil {
		if len(d.pairs) >= d.cfg.MaxPairs {
			d.untracked++
			return
		}
		k.domain = strings.Clone(domain)
		p = &pair{start: ev.Time, allowed: d.allowed(domain)}
		d.pairs[k] = p
	}
	p.last = ev.Time
	if p.allowed {
		return
	}
	if ev.Time.Sub(p.start) > d.cfg.Window {
		*p = pair{start: ev.Time}
		p.last = ev.Time
	}
	if ev.Response {
		p.responses++
		p.downBytes += ev.Len
		if ev.RCodeName == "NXDOMAIN" {
			p.nxdomain++
		}
		if unusualType(ev.QType) && len(ev.Answers) > 0 {
			// rdata ≈ message - header - question - answer's fixed part
			p.payloadN++
			p.payloadSum += max(0, ev.Len-12-(len(ev.QName)+6)-12)
			if a := &ev.Answers[0]; a.Type == typeTXT && len(a.Data) >= 16 {
				p.txtN++
				p.txtEntropy += entropy(a.Data)
			}
		}
		return
	}
	p.queries++
	p.upBytes += ev.Len
	p.types[typeSlot(ev.QType)]++
	if unusualType(ev.QType) {
		p.unusual++
	}
	if p.server == (netip.Addr{}) {
		p.server, p.port, p.proto = ev.Server, ev.ClientPort, ev.Proto
	}
	if !p.uniq.add(ev.QName) {
		return // a repeated name tells nothing new
	}
	if p.zone == "" {
		if i := strings.IndexByte(ev.QName, '.'); i >= 0 {
			p.zone = strings.Clone(ev.QName[i+1:])
		}
	} else {
		p.zone = commonSuffix(p.zone, ev.QName)
	}
	for i := range p.samples {
		if p.samples[i] == "" {
			p.samples[i] = strings.Clone(ev.QName)
			break
		}
	}
	p.subLen += len(sub)
	p.maxLabel = max(p.maxLabel, longestLabel(sub))
	p.entropy += entropy(sub)
	if oddBytes(sub) {
		p.oddChars++
	}
	if !p.alerted && p.uniq.count() >= float64(d.cfg.MinUnique) {
		d.check(k, p, ev)
	}
}

// lookup finds the pair a name of client belongs to.
func (d *Detector) lookup(client netip.Addr, name string) *pair {
	domain, _, invalid, ok := d.split(name)
	if !ok {
		return nil
	}
	return d.pairs[pairKey{client, domain, invalid}]
}

func (d *Detector) allowed(domain string) bool {
	for _, a := range d.cfg.Allow {
		if domain == a || strings.HasSuffix(domain, "."+a) {
			return true
		}
	}
	return false
}

// Tick forgets idle pairs and old questions.
func (d *Detector) Tick(now time.Time) {
	for k, p := range d.pairs {
		if now.Sub(p.last) > d.cfg.Window {
			delete(d.pairs, k)
		}
	}
	d.fwd.Expire(now)
}

// Stats implements detect.Statser.
func (d *Detector) Stats() map[string]float64 {
	return map[string]float64{
		"tracked_pairs":      float64(len(d.pairs)),
		"events":             float64(d.events),
		"forwarded_skipped":  float64(d.forwards),
		"forward_table":      float64(d.fwd.Len()),
		"forward_dropped":    float64(d.fwd.Dropped()),
		"untracked_messages": float64(d.untracked),
		"alerts":             float64(d.alerts),
	}
}

// scored is one pair's features and their points.
type scored struct {
	unique, meanLen, meanEntropy, oddShare, unusualShare, payload, txtEntropy, bytes, perMin float64
	reasons                                                                                  []detect.Contribution
	risk                                                                                     float64
}

// ramp maps x linearly from lo (0) to hi (1), clamped.
func ramp(x, lo, hi float64) float64 { return min(1, max(0, (x-lo)/(hi-lo))) }

// score computes a pair's features and risk; with explain it also writes
// the contributions (formatting them is most of the cost, so the check on
// every new name of a busy domain does without).
func (d *Detector) score(p *pair, explain bool) scored {
	q := float64(max(1, p.queries))
	u := float64(max(1, p.uniq.n))
	s := scored{
		unique:       p.uniq.count(),
		meanLen:      float64(p.subLen) / u,
		meanEntropy:  p.entropy / u,
		oddShare:     float64(p.oddChars) / u,
		unusualShare: float64(p.unusual) / q,
		bytes:        float64(p.upBytes + p.downBytes),
	}
	if p.payloadN > 0 {
		s.payload = float64(p.payloadSum) / float64(p.payloadN)
	}
	if p.txtN >= 3 {
		s.txtEntropy = p.txtEntropy / float64(p.txtN)
	}
	// Rates over at least 10 s, so that a burst is not extrapolated.
	s.perMin = q / max(10, p.last.Sub(p.start).Seconds()) * 60
	lo := float64(d.cfg.MinUnique)
	add := func(feature string, value, points float64, why func() string) {
		if points <= 0 {
			return
		}
		s.risk += points
		if explain {
			s.reasons = append(s.reasons, detect.Contribution{Feature: feature, Value: round2(value), Points: round2(points), Why: why()})
		}
	}
	add("unique_subdomains", s.unique, 15+20*ramp(s.unique, lo, 5*lo), func() string {
		return fmt.Sprintf("~%.0f unique names under one domain (threshold %d)", s.unique, d.cfg.MinUnique)
	})
	add("subdomain_length", s.meanLen, 20*ramp(s.meanLen, 12, 40), func() string {
		return fmt.Sprintf("subdomains average %.0f characters (longest label %d)", s.meanLen, p.maxLabel)
	})
	add("subdomain_entropy", s.meanEntropy, 15*ramp(s.meanEntropy, 3, 4), func() string {
		return fmt.Sprintf("subdomain characters carry %.2f bits each (encoded data: 4 to 6)", s.meanEntropy)
	})
	add("non_hostname_bytes", s.oddShare, 15*ramp(s.oddShare, 0, 0.5), func() string {
		return fmt.Sprintf("%.0f%% of the names hold bytes no host name has (raw binary encoding)", 100*s.oddShare)
	})
	add("record_types", s.unusualShare, 20*s.unusualShare, func() string {
		return fmt.Sprintf("%.0f%% of the queries ask for NULL/TXT/CNAME/MX/private types", 100*s.unusualShare)
	})
	add("answer_payload", s.payload, 15*ramp(s.payload, 40, 220), func() string {
		return fmt.Sprintf("answers of those types carry %.0f bytes of data on average", s.payload)
	})
	add("answer_entropy", s.txtEntropy, 10*ramp(s.txtEntropy, 4.5, 5.5), func() string {
		return fmt.Sprintf("TXT answers carry %.2f bits per character (base64 data: ~6, text: ~4)", s.txtEntropy)
	})
	add("dns_bytes", s.bytes, 10*ramp(math.Log2(max(1, s.bytes/8192)), 0, 5), func() string {
		return fmt.Sprintf("%.0f kB of DNS messages for one domain", s.bytes/1000)
	})
	add("query_rate", s.perMin, 10*ramp(s.perMin, 10, 300), func() string {
		return fmt.Sprintf("%.0f queries per minute to one domain", s.perMin)
	})
	s.risk = min(100, s.risk)
	return s
}

func (d *Detector) check(k pairKey, p *pair, ev *detect.DNSEvent) {
	if d.score(p, false).risk < d.cfg.MinScore {
		return
	}
	s := d.score(p, true)
	p.alerted = true
	d.alerts++
	domain, where := k.domain, printable(p.zone)
	if k.invalidTLD {
		domain, where = "(no valid TLD)", "no valid top-level domain"
	}
	types := map[string]int{}
	for i, n := range p.types {
		if n > 0 {
			types[typeSlots[i].name] = n
		}
	}
	var samples []string
	for _, n := range p.samples {
		if n != "" {
			samples = append(samples, printable(n))
		}
	}
	ev2 := map[string]any{
		"domain": domain, "zone": printable(p.zone), "unique_names": math.Round(s.unique),
		"queries": p.queries, "responses": p.responses, "nxdomain": p.nxdomain, "query_types": types,
		"mean_subdomain_len": round2(s.meanLen), "max_label_len": p.maxLabel, "mean_entropy": round2(s.meanEntropy),
		"bytes_up": p.upBytes, "bytes_down": p.downBytes, "duration_s": round2(p.last.Sub(p.start).Seconds()),
		"sample_names": samples, "dns_server": p.server.String(),
	}
	if p.upstream.IsValid() {
		ev2["upstream_server"] = p.upstream.String()
	}
	proto := "UDP"
	if p.proto == 6 {
		proto = "TCP"
	}
	a := &detect.Alert{
		Type: detect.TypeDNSTunnel, Detector: d.Name(), Time: ev.Time, Attacker: k.client,
		Signature: fmt.Sprintf("%s tunnels data through DNS names under %s: %.0f unique names, %s", k.client, where,
			s.unique, dominantType(types)),
		Flow:       &detect.FlowRef{Proto: proto, Src: k.client, SrcPort: p.port, Dst: p.server, DstPort: 53},
		MITRE:      detect.MITREDNSTunnel,
		Confidence: round2(min(0.99, 0.5+s.risk/200)),
		Reasons:    s.reasons,
		Evidence:   ev2,
	}
	a.Score()
	d.env.Emit(a)
}

func dominantType(types map[string]int) string {
	names := make([]string, 0, len(types))
	for n := range types {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		return types[names[i]] > types[names[j]] || types[names[i]] == types[names[j]] && names[i] < names[j]
	})
	if len(names) == 0 {
		return "no queries"
	}
	return "mostly " + names[0] + " queries"
}

func round2(x float64) float64 { return math.Round(x*100) / 100 }

// commonSuffix shrinks zone to the longest suffix of whole labels it shares
// with name. It does not allocate.
func commonSuffix(zone, name string) string {
	if name == zone || strings.HasSuffix(name, "."+zone) {
		return zone
	}
	best := len(zone) // where the common suffix starts in zone
	i, j := len(zone), len(name)
	for i > 0 && j > 0 {
		zi := strings.LastIndexByte(zone[:i], '.') + 1
		nj := strings.LastIndexByte(name[:j], '.') + 1
		if zone[zi:i] != name[nj:j] {
			break
		}
		best = zi
		i, j = zi-1, nj-1
	}
	return zone[min(best, len(zone)):]
}

// longestLabel is the longest dot-separated label of s.
func longestLabel(s string) int {
	best, cur := 0, 0
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			cur = 0
			continue
		}
		cur++
		best = max(best, cur)
	}
	return best
}

// entropy is the Shannon entropy of the bytes of s (dots excluded), in bits
// per byte. It does not allocate.
func entropy(s string) float64 {
	var counts [256]uint16
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] != '.' {
			counts[s[i]]++
			n++
		}
	}
	if n == 0 {
		return 0
	}
	// H = log2(n) - Σ c·log2(c) / n; each distinct byte once (its count is
	// cleared), so the cost follows len(s), not the alphabet.
	sum := 0.0
	for i := 0; i < len(s); i++ {
		if c := counts[s[i]]; c > 1 {
			sum += float64(c) * math.Log2(float64(c))
		}
		counts[s[i]] = 0
	}
	return max(0, math.Log2(float64(n))-sum/float64(n))
}

// oddBytes reports bytes outside what host names and service labels use.
func oddBytes(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c >= 'A' && c <= 'Z') {
			return true
		}
	}
	return false
}

// printable quotes non-printable bytes (tunnel names carry binary).
func printable(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			q := fmt.Sprintf("%+q", s)
			return q[1 : len(q)-1]
		}
	}
	return s
}

// sketch counts distinct names in 72 bytes by linear counting over a
// 512-bit map: within a few percent up to about 1500 names, saturating near
// 3000 (far above the thresholds). add reports whether the name set a new
// bit, i.e. is new (a colliding new name is taken for a repeat, which only
// thins the per-name averages).
type sketch struct {
	bits [8]uint64
	n    int // names that set a new bit
}

func (s *sketch) add(name string) bool {
	h := maphash.String(sketchSeed, name)
	i := h % 512
	w, b := i/64, uint64(1)<<(i%64)
	if s.bits[w]&b != 0 {
		return false
	}
	s.bits[w] |= b
	s.n++
	return true
}

// count estimates the distinct names: -m ln(zero bits / m).
func (s *sketch) count() float64 {
	ones := 0
	for _, w := range s.bits {
		ones += bits.OnesCount64(w)
	}
	zeros := 512 - ones
	if zeros == 0 {
		return 512 * math.Log(512)
	}
	return -512 * math.Log(float64(zeros)/512)
}

// sketchSeed seeds the sketches' hash (maphash: well mixed in its low
// bits, which the 512-bit map uses).
var sketchSeed = maphash.MakeSeed()
