package dnstunnel

import (
	"encoding/base32"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/wardline/wardline/detect"
)

var (
	t0       = time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC)
	client   = netip.MustParseAddr("198.18.0.10")
	other    = netip.MustParseAddr("198.18.0.11")
	resolver = netip.MustParseAddr("198.18.0.53")
	upstream = netip.MustParseAddr("203.0.113.53")
	public   = netip.MustParseAddr("8.8.8.8")
)

// msg builds a query (or, with resp, its answer) as the engine would.
func msg(at time.Time, from, to netip.Addr, name string, qtype uint16, resp bool, size int) *detect.DNSEvent {
	ev := &detect.DNSEvent{Time: at, Proto: 17, QName: name, QType: qtype, Response: resp, Len: size, RCodeName: "NOERROR"}
	if resp {
		ev.Client, ev.Server = to, from
		ev.Answers = []detect.DNSAnswer{{Name: name, Type: qtype}}
	} else {
		ev.Client, ev.Server, ev.ClientPort = from, to, 40000
	}
	return ev
}

// tunnelNames returns n iodine-like names: base32 of random bytes under zone.
func tunnelNames(n int, zone string, seed uint64) []string {
	r := rand.New(rand.NewPCG(seed, 1))
	enc := base32.StdEncoding.WithPadding(base32.NoPadding)
	out := make([]string, n)
	for i := range out {
		b := make([]byte, 60)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		s := strings.ToLower(enc.EncodeToString(b))
		out[i] = s[:50] + "." + s[50:] + "." + zone
	}
	return out
}

type recorder struct{ alerts []*detect.Alert }

func (r *recorder) env() detect.Env {
	return detect.Env{Emit: func(a *detect.Alert) { r.alerts = append(r.alerts, a) }, Logf: func(string, ...any) {}}
}

// exchange feeds one question and its answer, through the resolver when
// via is valid (both legs, as on a SPAN of the office segment).
func exchange(d *Detector, at time.Time, from netip.Addr, via netip.Addr, server netip.Addr, name string, qtype uint16, qlen, rlen int) {
	if via.IsValid() {
		d.OnDNS(msg(at, from, via, name, qtype, false, qlen))
		d.OnDNS(msg(at.Add(time.Millisecond), via, server, name, qtype, false, qlen))
		d.OnDNS(msg(at.Add(2*time.Millisecond), server, via, name, qtype, true, rlen))
		d.OnDNS(msg(at.Add(3*time.Millisecond), via, from, name, qtype, true, rlen))
		return
	}
	d.OnDNS(msg(at, from, server, name, qtype, false, qlen))
	d.OnDNS(msg(at.Add(time.Millisecond), server, from, name, qtype, true, rlen))
}

func TestTunnelThroughResolver(t *testing.T) {
	var r recorder
	d := New(Config{}, r.env())
	for i, n := range tunnelNames(100, "t.tunnel.example", 1) {
		exchange(d, t0.Add(time.Duration(i)*50*time.Millisecond), client, resolver, upstream, n, typeNULL, 140, 900)
		if i%20 == 0 {
			d.Tick(t0.Add(time.Duration(i) * 50 * time.Millisecond))
		}
	}
	if len(r.alerts) != 1 {
		t.Fatalf("got %d alerts, want 1", len(r.alerts))
	}
	a := r.alerts[0]
	if a.Type != detect.TypeDNSTunnel || a.Attacker != client || a.MITRE != detect.MITREDNSTunnel {
		t.Errorf("alert %s against %s (%v), want dns_tunnel against %s", a.Type, a.Attacker, a.MITRE, client)
	}
	if got, want := a.Evidence["domain"], "tunnel.example"; got != want {
		t.Errorf("evidence domain %v, want %v", got, want)
	}
	if got, want := a.Evidence["zone"], "t.tunnel.example"; got != want {
		t.Errorf("evidence zone %v, want %v", got, want)
	}
	if got := a.Evidence["upstream_server"]; got != upstream.String() {
		t.Errorf("upstream_server %v, want %v", got, upstream)
	}
	if a.Risk < 60 || a.Severity != detect.SeverityHigh && a.Severity != detect.SeverityMedium {
		t.Errorf("risk %.0f severity %d", a.Risk, a.Severity)
	}
	sum := 0.0
	for _, c := range a.Reasons {
		sum += c.Points
		if c.Why == "" || c.Feature == "" {
			t.Errorf("contribution without explanation: %+v", c)
		}
	}
	if min(100, sum) != a.Risk {
		t.Errorf("risk %.1f is not the sum of its contributions %.1f", a.Risk, sum)
	}
	if a.Flow == nil || a.Flow.Src != client || a.Flow.Dst != resolver || a.Flow.DstPort != 53 {
		t.Errorf("flow %+v, want client -> resolver:53", a.Flow)
	}
	st := d.Stats()
	if st["forwarded_skipped"] != 200 || st["alerts"] != 1 {
		t.Errorf("stats %v: want 200 forwarded messages skipped and 1 alert", st)
	}
}

// TestResolverOwnQueries: without a client's question before it, a
// resolver's query is its own.
func TestResolverOwnQueries(t *testing.T) {
	var r recorder
	d := New(Config{}, r.env())
	for i, n := range tunnelNames(80, "x.exfil.example", 2) {
		exchange(d, t0.Add(time.Duration(i)*100*time.Millisecond), resolver, netip.Addr{}, upstream, n, typeTXT, 140, 400)
	}
	if len(r.alerts) != 1 || r.alerts[0].Attacker != resolver {
		t.Fatalf("alerts %v, want one against the resolver", r.alerts)
	}
}

// TestDirectTunnelInvalidTLD: dnscat2 without a domain puts data in every
// label, the top one included.
func TestDirectTunnelInvalidTLD(t *testing.T) {
	var r recorder
	d := New(Config{}, r.env())
	rnd := rand.New(rand.NewPCG(3, 3))
	types := []uint16{typeTXT, typeMX, typeCNAME}
	for i := range 60 {
		name := fmt.Sprintf("dnscat.%016x%016x%016x.%08x", rnd.Uint64(), rnd.Uint64(), rnd.Uint64(), rnd.Uint32()|1)
		exchange(d, t0.Add(time.Duration(i)*time.Second), client, netip.Addr{}, upstream, name, types[i%3], 120, 200)
	}
	if len(r.alerts) != 1 || r.alerts[0].Attacker != client || r.alerts[0].Evidence["domain"] != "(no valid TLD)" {
		t.Fatalf("alerts %v, want one against %s for names without a valid TLD", r.alerts, client)
	}
}

// TestBenign: heavy but ordinary use of one domain, reverse lookups and a
// block-list look-up flood raise nothing.
func TestBenign(t *testing.T) {
	var r recorder
	d := New(Config{}, r.env())
	at := t0
	words := []string{"www", "mail", "docs", "drive", "apis", "accounts", "fonts", "play", "news", "maps", "photos", "calendar",
		"meet", "chat", "ssl", "static", "img", "video", "support", "store", "cloud", "pay", "ads", "translate", "books",
		"scholar", "sites", "keep", "jamboard", "classroom", "earth", "lens", "one", "podcasts", "domains", "groups", "alerts",
		"trends", "fi", "ipv6"}
	for rep := range 3 {
		for i, w := range words {
			at = at.Add(700 * time.Millisecond)
			exchange(d, at, client, resolver, public, fmt.Sprintf("%s%d.example.com", w, i%4+rep), 1, 40, 120)
			exchange(d, at, client, resolver, public, fmt.Sprintf("%s%d.example.com", w, i%4+rep), 28, 40, 140)
		}
	}
	for i := range 300 {
		at = at.Add(100 * time.Millisecond)
		exchange(d, at, other, resolver, public, fmt.Sprintf("%d.%d.168.192.in-addr.arpa", i%250, i/250), 12, 45, 90)
		exchange(d, at, other, resolver, public, fmt.Sprintf("%d.%d.113.203.zen.spamhaus.org", i%250, i/250), 1, 50, 60)
	}
	// A CDN: many short hashed host names, A records.
	for i := range 80 {
		at = at.Add(2 * time.Second)
		exchange(d, at, client, resolver, public, fmt.Sprintf("d%07x.cloudfront.net", i*7919), 1, 45, 200)
	}
	if len(r.alerts) != 0 {
		for _, a := range r.alerts {
			t.Errorf("unexpected alert: %s (%s)", a.Signature, a.Explain())
		}
	}
}

// TestWindowAndExpiry: a slow trickle spread over more than the window is
// not added up; idle pairs are forgotten at Tick.
func TestWindowAndExpiry(t *testing.T) {
	var r recorder
	d := New(Config{Window: time.Minute}, r.env())
	for i, n := range tunnelNames(60, "t.slow.example", 4) {
		exchange(d, t0.Add(time.Duration(i)*5*time.Second), client, netip.Addr{}, upstream, n, typeNULL, 140, 900)
	}
	if len(r.alerts) != 0 {
		t.Fatalf("a trickle of 12 names a minute raised %d alerts", len(r.alerts))
	}
	if d.Stats()["tracked_pairs"] != 1 {
		t.Fatalf("stats %v, want 1 pair", d.Stats())
	}
	d.Tick(t0.Add(10 * time.Minute))
	if st := d.Stats(); st["tracked_pairs"] != 0 || st["forward_table"] != 0 {
		t.Fatalf("after an idle window: %v, want nothing tracked", st)
	}
}

func TestMaxPairs(t *testing.T) {
	var r recorder
	d := New(Config{MaxPairs: 10}, r.env())
	for i := range 25 {
		d.OnDNS(msg(t0, client, resolver, fmt.Sprintf("www.site%d.example", i), 1, false, 40))
	}
	if st := d.Stats(); st["tracked_pairs"] != 10 || st["untracked_messages"] != 15 {
		t.Fatalf("stats %v, want 10 tracked pairs and 15 untracked messages", st)
	}
}

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		name, domain, sub string
		invalid, ok       bool
	}{
		{"a.b.tunnel.test", "tunnel.test", "a.b", false, true},
		{"www.bbc.co.uk", "bbc.co.uk", "www", false, true},
		{"bbc.co.uk", "bbc.co.uk", "", false, true},
		{"x.y.user.ddns.net", "user.ddns.net", "x.y", false, true},
		{"dnscat.0a1b2c.3d4e5f", "", "dnscat.0a1b2c.3d4e5f", true, true},
		{"host.xn--p1ai", "host.xn--p1ai", "", false, true},
		{"co.uk", "", "", false, false},
		{"localhost", "", "", false, false},
		{"", "", "", false, false},
		{"1.2.3.4", "", "", false, false},
		{"a..b.com", "", "", false, false},
		{"trailing.dot.com.", "", "", false, false},
	} {
		domain, sub, invalid, ok := split(tc.name)
		if domain != tc.domain || sub != tc.sub || invalid != tc.invalid || ok != tc.ok {
			t.Errorf("split(%q) = %q, %q, %v, %v; want %q, %q, %v, %v", tc.name, domain, sub, invalid, ok,
				tc.domain, tc.sub, tc.invalid, tc.ok)
		}
	}
}

func TestCommonSuffix(t *testing.T) {
	for _, tc := range []struct{ zone, name, want string }{
		{"t.tunnel.test", "abc.t.tunnel.test", "t.tunnel.test"},
		{"t.tunnel.test", "abc.u.tunnel.test", "tunnel.test"},
		{"b.t.tunnel.test", "a.b.t.tunnel.test", "b.t.tunnel.test"},
		{"xt.tunnel.test", "yt.tunnel.test", "tunnel.test"},
		{"tunnel.test", "other.example", ""},
		{"t.tunnel.test", "t.tunnel.test", "t.tunnel.test"},
	} {
		if got := commonSuffix(tc.zone, tc.name); got != tc.want {
			t.Errorf("commonSuffix(%q, %q) = %q, want %q", tc.zone, tc.name, got, tc.want)
		}
	}
}

func TestFeatures(t *testing.T) {
	if got := entropy("aaaa"); got != 0 {
		t.Errorf("entropy(aaaa) = %v", got)
	}
	if got := entropy("ab.ab"); got != 1 {
		t.Errorf("entropy(ab.ab) = %v, want 1 (dots ignored)", got)
	}
	if got := longestLabel("ab.abcd.a"); got != 4 {
		t.Errorf("longestLabel = %d", got)
	}
	if !oddBytes("a\x80b") || oddBytes("a-b_c.d9") {
		t.Error("oddBytes")
	}
	if got := printable("a\x00b"); got != `a\x00b` {
		t.Errorf("printable = %q", got)
	}
	var s sketch
	for i := range 1000 {
		s.add(fmt.Sprint(i))
		s.add(fmt.Sprint(i)) // repeats do not count
	}
	if c := s.count(); c < 900 || c > 1100 {
		t.Errorf("sketch counts %.0f for 1000 names", c)
	}
}

// TestOnDNSAllocs: a name of a pair already tracked costs no allocation
// beyond the public-suffix look-up's.
func TestOnDNSAllocs(t *testing.T) {
	var r recorder
	d := New(Config{}, r.env())
	ev := msg(t0, client, public, "www.example.com", 1, false, 40)
	d.OnDNS(ev)
	allocs := testing.AllocsPerRun(1000, func() { d.OnDNS(ev) })
	if allocs > 1 {
		t.Errorf("OnDNS allocates %.1f times per repeated query, want <= 1", allocs)
	}
}

// benchEvents is a mix: ordinary browsing through a resolver (both legs)
// and a tunnel, about 1 tunnel message in 4.
func benchEvents() []*detect.DNSEvent {
	var evs []*detect.DNSEvent
	tunnel := tunnelNames(2000, "t.tunnel.example", 9)
	at := t0
	for i := range 8000 {
		at = at.Add(10 * time.Millisecond)
		var name string
		var qt uint16 = 1
		if i%4 == 0 {
			name, qt = tunnel[i/4%len(tunnel)], typeNULL
		} else {
			name = fmt.Sprintf("www%d.site%d.example.com", i%7, i%300)
		}
		evs = append(evs, msg(at, client, resolver, name, qt, false, 60),
			msg(at, resolver, public, name, qt, false, 60),
			msg(at, public, resolver, name, qt, true, 200),
			msg(at, resolver, client, name, qt, true, 200))
	}
	return evs
}

func BenchmarkOnDNS(b *testing.B) {
	evs := benchEvents()
	var r recorder
	d := New(Config{}, r.env())
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ev := evs[i%len(evs)]
		d.OnDNS(ev)
		if i%len(evs) == len(evs)-1 {
			b.StopTimer()
			d.Tick(t0.Add(time.Hour)) // forget everything, start the round again
			b.StartTimer()
		}
	}
}
