// Package ioc matches traffic against intelligence lists: IP addresses,
// CIDRs, domains (a listed domain matches its subdomains too, in DNS
// queries and answers, TLS SNI and HTTP Host), JA3 and JA4 client
// fingerprints. Lists reload without a restart and without holding two
// copies: a reload streams the new file into the live index and then
// removes what the file no longer lists. See README.md.
package ioc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/wardline/wardline/dataplane/event"
	"github.com/wardline/wardline/detect"
)

// Kinds of indicators.
const (
	KindIP     = "ip"
	KindCIDR   = "cidr"
	KindDomain = "domain"
	KindJA3    = "ja3"
	KindJA4    = "ja4"
)

// Index holds the indicators. It is safe for concurrent use: the engine
// looks up while an operator reloads.
type Index struct {
	mu      sync.RWMutex
	gen     uint32
	ips     map[netip.Addr]uint32   // value: generation that last listed it
	cidrs   map[netip.Prefix]uint32 // looked up once per prefix length present
	lens    map[int]int             // prefix length -> CIDRs of that length
	domains map[string]uint32
	ja3     map[string]uint32
	ja4     map[string]uint32
	source  string
	loaded  time.Time
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{ips: map[netip.Addr]uint32{}, cidrs: map[netip.Prefix]uint32{}, lens: map[int]int{}, domains: map[string]uint32{},
		ja3: map[string]uint32{}, ja4: map[string]uint32{}}
}

// Counts returns how many indicators of each kind are loaded.
func (x *Index) Counts() map[string]int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return map[string]int{KindIP: len(x.ips), KindCIDR: len(x.cidrs), KindDomain: len(x.domains), KindJA3: len(x.ja3), KindJA4: len(x.ja4)}
}

// LoadFile (re)loads the indicators from a JSON file of the form
// {"ips": [...], "cidrs": [...], "domains": [...], "ja3": [...], "ja4": [...]}
// ("ips" may hold CIDRs too). The file is decoded as a stream and applied
// to the live index entry by entry; afterwards the entries the file no
// longer lists are removed. On a decoding error nothing is removed (the
// entries already applied stay: the old list plus part of the new one is
// a safer state than an empty one) and the error names the file and byte
// offset.
func (x *Index) LoadFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load indicators: %w", err)
	}
	defer f.Close()
	return x.Load(path, f)
}

// Load is LoadFile from a reader; name is used in errors.
func (x *Index) Load(name string, r io.Reader) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.gen++
	gen := x.gen
	dec := json.NewDecoder(r)
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%s: byte %d: %s", name, dec.InputOffset(), fmt.Sprintf(format, args...))
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return fail("want a JSON object of indicator lists (%v)", err)
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return fail("%v", err)
		}
		key, _ := t.(string)
		if t, err := dec.Token(); err != nil || t != json.Delim('[') {
			return fail("%q: want a list (%v)", key, err)
		}
		for dec.More() {
			var v string
			if err := dec.Decode(&v); err != nil {
				return fail("%q: %v", key, err)
			}
			v = strings.TrimSpace(v)
			switch key {
			case "ips", "cidrs":
				if strings.Contains(v, "/") {
					p, err := netip.ParsePrefix(v)
					if err != nil {
						return fail("%q: %q is not a CIDR", key, v)
					}
					if _, ok := x.cidrs[p.Masked()]; !ok {
						x.lens[p.Bits()]++
					}
					x.cidrs[p.Masked()] = gen
				} else {
					a, err := netip.ParseAddr(v)
					if err != nil {
						return fail("%q: %q is not an IP address", key, v)
					}
					x.ips[a.Unmap()] = gen
				}
			case "domains":
				d := strings.TrimSuffix(strings.ToLower(v), ".")
				if d == "" || strings.ContainsAny(d, " /") {
					return fail("%q: %q is not a domain", key, v)
				}
				x.domains[d] = gen
			case "ja3":
				x.ja3[strings.ToLower(v)] = gen
			case "ja4":
				x.ja4[v] = gen
			default:
				return fail("unknown list %q (want ips, cidrs, domains, ja3, ja4)", key)
			}
		}
		if _, err := dec.Token(); err != nil {
			return fail("%v", err)
		}
	}
	for k, g := range x.ips {
		if g != gen {
			delete(x.ips, k)
		}
	}
	for k, g := range x.cidrs {
		if g != gen {
			delete(x.cidrs, k)
			if x.lens[k.Bits()]--; x.lens[k.Bits()] == 0 {
				delete(x.lens, k.Bits())
			}
		}
	}
	for _, m := range []map[string]uint32{x.domains, x.ja3, x.ja4} {
		for k, g := range m {
			if g != gen {
				delete(m, k)
			}
		}
	}
	x.source, x.loaded = name, time.Now()
	return nil
}

// matchIP returns the indicator matching a ("" if none).
func (x *Index) matchIP(a netip.Addr) (kind, value string) {
	a = a.Unmap()
	x.mu.RLock()
	defer x.mu.RUnlock()
	if _, ok := x.ips[a]; ok {
		return KindIP, a.String()
	}
	for bits := range x.lens {
		if bits > a.BitLen() {
			continue
		}
		p, _ := a.Prefix(bits)
		if _, ok := x.cidrs[p]; ok {
			return KindCIDR, p.String()
		}
	}
	return "", ""
}

// matchDomain returns the listed domain name matches (itself or a parent).
func (x *Index) matchDomain(name string) string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if len(x.domains) == 0 {
		return ""
	}
	name = strings.TrimSuffix(name, ".")
	// Lower-case ASCII into a stack buffer: names on the wire are ASCII
	// (IDNs travel as punycode) and often mixed case (0x20 randomisation,
	// tunnels), and strings.ToLower would allocate for each of them.
	var buf [256]byte
	if len(name) > len(buf) {
		name = strings.ToLower(name)
	} else {
		b := buf[:len(name)]
		for i := 0; i < len(name); i++ {
			c := name[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			b[i] = c
		}
		for {
			if _, ok := x.domains[string(b)]; ok {
				return string(b)
			}
			i := bytes.IndexByte(b, '.')
			if i < 0 {
				return ""
			}
			b = b[i+1:]
		}
	}
	for {
		if _, ok := x.domains[name]; ok {
			return name
		}
		i := strings.IndexByte(name, '.')
		if i < 0 {
			return ""
		}
		name = name[i+1:]
	}
}

func (x *Index) matchFP(m map[string]uint32, v string) bool {
	if v == "" {
		return false
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok := m[v]
	return ok
}

// Detector raises ioc_match alerts.
type Detector struct {
	x       *Index
	env     detect.Env
	alerted map[string]time.Time
	window  time.Duration
	matches uint64
}

// New returns the detector over index x; a (host, indicator) pair alerts
// once per window (default an hour).
func New(x *Index, window time.Duration, env detect.Env) *Detector {
	if window == 0 {
		window = time.Hour
	}
	return &Detector{x: x, env: env, alerted: map[string]time.Time{}, window: window}
}

func (d *Detector) Name() string { return "ioc" }

func (d *Detector) emit(t time.Time, host, peer netip.Addr, kind, value, where string, flow *event.FlowKey) {
	d.matches++
	k := host.String() + "|" + kind + "|" + value
	if at, ok := d.alerted[k]; ok && t.Sub(at) < d.window {
		return
	}
	d.alerted[k] = t
	points := map[string]float64{KindIP: 55, KindCIDR: 45, KindDomain: 60, KindJA3: 40, KindJA4: 45}[kind]
	a := &detect.Alert{
		Type: detect.TypeIOC, Subtype: kind, Detector: d.Name(), Time: t, Attacker: host,
		Signature:  fmt.Sprintf("%s matched %s indicator %s in %s", host, kind, value, where),
		MITRE:      detect.MITREC2AppLayer,
		Confidence: 0.9,
		Reasons: []detect.Contribution{
			{Feature: "indicator_" + kind, Value: 1, Points: points, Why: fmt.Sprintf("%s %s is on the intelligence list", kind, value)},
		},
		Evidence: map[string]any{"indicator_type": kind, "indicator": value, "where": where},
	}
	if peer.IsValid() {
		a.Victims = []netip.Addr{peer}
	}
	if flow != nil {
		a.Flow = detect.NewFlowRef(*flow)
	}
	a.Score()
	d.env.Emit(a)
}

// OnConn matches both ends of every connection. The internal end is the
// one reported as acting ("attacker"): it talked to a listed address.
func (d *Detector) OnConn(c *detect.Conn) {
	if kind, v := d.x.matchIP(c.Key.Dst); kind != "" {
		d.emit(c.Start, c.Key.Src, c.Key.Dst, kind, v, fmt.Sprintf("a connection to port %d", c.Key.DstPort), &c.Key)
	} else if kind, v := d.x.matchIP(c.Key.Src); kind != "" {
		d.emit(c.Start, c.Key.Dst, c.Key.Src, kind, v, "a connection from it", &c.Key)
	}
}

// OnDNS matches queried names and answered names.
func (d *Detector) OnDNS(e *detect.DNSEvent) {
	if e.QName == "" {
		return
	}
	if e.Response || e.Forwarded {
		return // a resolver's copy belongs to the client that asked first
	}
	if v := d.x.matchDomain(e.QName); v != "" {
		d.emit(e.Time, e.Client, e.Server, KindDomain, v, "a DNS query for "+e.QName, nil)
	}
}

// OnTLS matches SNI, JA3 and JA4.
func (d *Detector) OnTLS(t *detect.TLSEvent) {
	if v := d.x.matchDomain(t.SNI); v != "" {
		d.emit(t.Time, t.Key.Src, t.Key.Dst, KindDomain, v, "TLS SNI "+t.SNI, &t.Key)
	}
	if d.x.matchFP(d.x.ja3, t.JA3Hash) {
		d.emit(t.Time, t.Key.Src, t.Key.Dst, KindJA3, t.JA3Hash, "a TLS ClientHello", &t.Key)
	}
	if d.x.matchFP(d.x.ja4, t.JA4) {
		d.emit(t.Time, t.Key.Src, t.Key.Dst, KindJA4, t.JA4, "a TLS ClientHello", &t.Key)
	}
}

// OnHTTP matches the Host header.
func (d *Detector) OnHTTP(h *detect.HTTPEvent) {
	host := h.Host
	if i := strings.LastIndexByte(host, ':'); i > 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	if v := d.x.matchDomain(host); v != "" {
		d.emit(h.Time, h.Key.Src, h.Key.Dst, KindDomain, v, "HTTP Host "+h.Host, &h.Key)
	}
}

// Tick forgets old alert marks.
func (d *Detector) Tick(now time.Time) {
	for k, t := range d.alerted {
		if now.Sub(t) > d.window {
			delete(d.alerted, k)
		}
	}
}

// Stats reports list sizes and matches.
func (d *Detector) Stats() map[string]float64 {
	out := map[string]float64{"matches": float64(d.matches)}
	for k, n := range d.x.Counts() {
		out["indicators_"+k] = float64(n)
	}
	return out
}
