package dga

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/wardline/wardline/dataplane/event"
	"github.com/wardline/wardline/detect"
)

var (
	t0       = time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC)
	client   = netip.MustParseAddr("198.18.0.10")
	other    = netip.MustParseAddr("198.18.0.11")
	resolver = netip.MustParseAddr("198.18.0.53")
	upstream = netip.MustParseAddr("198.19.0.53")
	c2       = netip.MustParseAddr("203.0.113.10")
)

func TestRegisteredDomain(t *testing.T) {
	for _, tc := range []struct {
		name, domain, label string
		ok                  bool
	}{
		{"www.example.com", "example.com", "example", true},
		{"example.com", "example.com", "example", true},
		{"a.b.bbc.co.uk", "bbc.co.uk", "bbc", true},
		{"hqxf.com.jm", "hqxf.com.jm", "hqxf", true},
		{"x.cvyh1po636avyrsxebwbkn7.ddns.net", "cvyh1po636avyrsxebwbkn7.ddns.net", "cvyh1po636avyrsxebwbkn7", true}, // PSL private
		{"svneascvmk.mooo.com", "svneascvmk.mooo.com", "svneascvmk", true},                                          // sharedParents
		{"mooo.com", "mooo.com", "mooo", true},
		{"www.example.com.", "example.com", "example", true},
		{"com", "", "", false},
		{"co.uk", "", "", false},
		{"localhost", "", "", false},
		{"", "", "", false},
		{"a..b.com", "", "", false},
		{".example.com", "", "", false},
		{"10.1.2.3", "", "", false},
	} {
		domain, label, ok := RegisteredDomain(tc.name)
		if domain != tc.domain || label != tc.label || ok != tc.ok {
			t.Errorf("RegisteredDomain(%q) = %q, %q, %v; want %q, %q, %v", tc.name, domain, label, ok, tc.domain, tc.label, tc.ok)
		}
	}
}

// TestModelExamples: well-known names pass, generated ones from the corpus
// scenario and from several families do not, short names are not judged.
func TestModelExamples(t *testing.T) {
	m := DefaultModel()
	for _, l := range []string{"google", "facebook", "wikipedia", "microsoft", "stackoverflow", "plasticbags", "weather",
		"nytimes", "booking", "instagram", "linkedin", "wordpress", "cloudflare", "theguardian", "mercadolibre"} {
		if p := m.Score(l); p >= m.Threshold {
			t.Errorf("%s scores %.2f >= %.2f", l, p, m.Threshold)
		}
	}
	for _, l := range []string{"zaqqxtqteoosazqoge", "ophwefbvtraksu", "xgpoaklwcawvw", "kq0qw6o2siwq", "rjyuosmhfnaedlyg",
		"cvyh1po636avyrsxebwbkn7", "qkgogwauessomcqa", "ftjumvh34dyfqhugtpudteukqm69j46i25l58"} {
		if p := m.Score(l); p < m.Threshold {
			t.Errorf("%s scores %.2f < %.2f", l, p, m.Threshold)
		}
	}
	for _, l := range []string{"qq", "jd", "xkcd1", "xn--80ak6aa92e"} {
		if p := m.Score(l); p != 0 {
			t.Errorf("%s is not judged but scores %.2f", l, p)
		}
	}
	p, terms := m.Explain("zaqqxtqteoosazqoge")
	if p < 0.9 || len(terms) == 0 || terms[0].Feature == "" {
		t.Errorf("Explain = %.2f %v", p, terms)
	}
	for i := 1; i < len(terms); i++ {
		if math.Abs(terms[i].LogOdds) > math.Abs(terms[i-1].LogOdds) {
			t.Errorf("terms not sorted by size: %v", terms)
		}
	}
}

func TestExtract(t *testing.T) {
	f := Extract("ab12-cd")
	if f[FLength] != 7 || f[FDigitRatio] != 2.0/7 || f[FHyphens] != 1 || f[FSwitches] != 2 {
		t.Errorf("Extract(ab12-cd) = %v", f)
	}
	if f := Extract("aaaa"); f[FEntropy] != 0 || f[FUniqueRatio] != 0.25 {
		t.Errorf("Extract(aaaa) = %v", f)
	}
	// English-like letters cost fewer bits than random ones.
	if e, r := Extract("thunderstorm")[FTrigram], Extract("xqzvkwjpbfgh")[FTrigram]; e >= r {
		t.Errorf("trigram surprisal english %.2f >= random %.2f", e, r)
	}
	if n := testing.AllocsPerRun(100, func() { DefaultModel().Score("zaqqxtqteoosazqoge") }); n > 1 {
		t.Errorf("Score allocates %.0f times", n)
	}
}

type recorder struct{ alerts []*detect.Alert }

func (r *recorder) env() detect.Env {
	return detect.Env{Emit: func(a *detect.Alert) { r.alerts = append(r.alerts, a) }, Logf: func(string, ...any) {}}
}

// resolve feeds a lookup through the resolver, both legs.
func resolve(d *Detector, at time.Time, from netip.Addr, name, rcode string, addr netip.Addr) {
	var ans []detect.DNSAnswer
	var code uint16
	if rcode == "NXDOMAIN" {
		code = 3
	}
	if addr.IsValid() {
		ans = []detect.DNSAnswer{{Name: name, Type: 1, Addr: addr}}
	}
	q := func(c, s netip.Addr) *detect.DNSEvent {
		return &detect.DNSEvent{Time: at, Client: c, Server: s, Proto: 17, ClientPort: 5353, QName: name, QType: 1, Len: 40}
	}
	a := func(c, s netip.Addr) *detect.DNSEvent {
		return &detect.DNSEvent{Time: at, Client: c, Server: s, Proto: 17, QName: name, QType: 1, Response: true,
			RCode: code, RCodeName: rcode, Answers: ans, Len: 80}
	}
	d.OnDNS(q(from, resolver))
	d.OnDNS(q(resolver, upstream))
	d.OnDNS(a(resolver, upstream))
	d.OnDNS(a(from, resolver))
}

// dgaNames generates letters-only labels of 10-18 characters, like the
// corpus scenario.
func dgaNames(n int, seed uint64) []string {
	r := rand.New(rand.NewPCG(seed, 7))
	tlds := []string{"com", "net", "org", "info", "biz", "ru", "top", "xyz"}
	out := make([]string, n)
	for i := range out {
		b := make([]byte, 10+r.IntN(9))
		for j := range b {
			b[j] = byte('a' + r.IntN(26))
		}
		out[i] = string(b) + "." + tlds[r.IntN(len(tlds))]
	}
	return out
}

func TestDGAThroughResolver(t *testing.T) {
	var r recorder
	d := New(Config{}, r.env())
	names := dgaNames(40, 1)
	at := t0
	for i, n := range names {
		at = at.Add(250 * time.Millisecond)
		if i == 30 {
			resolve(d, at, client, n, "NOERROR", c2)
			continue
		}
		resolve(d, at, client, n, "NXDOMAIN", netip.Addr{})
	}
	if len(r.alerts) != 1 {
		t.Fatalf("%d alerts, want 1", len(r.alerts))
	}
	a := r.alerts[0]
	if a.Type != detect.TypeDGA || a.Attacker != client || a.MITRE != detect.MITREDGA || a.Risk < 50 {
		t.Fatalf("alert %s against %s risk %.0f", a.Type, a.Attacker, a.Risk)
	}
	if ns := a.Evidence["names"].([]string); len(ns) < 8 || !strings.HasSuffix(ns[0], "(NXDOMAIN)") {
		t.Errorf("evidence names %v", ns)
	}
	sum := 0.0
	for _, c := range a.Reasons {
		sum += c.Points
	}
	if min(100, sum) != a.Risk {
		t.Errorf("risk %.1f is not the sum of its contributions %.1f", a.Risk, sum)
	}
	// The host then connects to the address the resolved name gave.
	d.OnConn(&detect.Conn{Key: keyTo(client, c2, 80), Start: at, End: at.Add(time.Second), Final: true})
	d.OnConn(&detect.Conn{Key: keyTo(client, c2, 80), Start: at, End: at.Add(time.Second), Final: true}) // once only
	if len(r.alerts) != 2 {
		t.Fatalf("%d alerts after the contact, want 2", len(r.alerts))
	}
	rv := r.alerts[1]
	if rv.Subtype != "rendezvous" || len(rv.Victims) != 1 || rv.Victims[0] != c2 || rv.Evidence["name"] != names[30] {
		t.Errorf("rendezvous alert %s victims %v name %v, want %v -> %s", rv.Subtype, rv.Victims, rv.Evidence["name"], names[30], c2)
	}
	if st := d.Stats(); st["forwarded_skipped"] != 80 || st["alerts"] != 2 {
		t.Errorf("stats %v", st)
	}
}

// TestContactBeforeAlert: a contact that happens before the threshold is
// reported together with the alert.
func TestContactBeforeAlert(t *testing.T) {
	var r recorder
	d := New(Config{}, r.env())
	names := dgaNames(12, 2)
	resolve(d, t0, client, names[0], "NOERROR", c2)
	d.OnHTTP(&detect.HTTPEvent{Time: t0, Key: keyTo(client, c2, 80), Host: names[0]})
	for i, n := range names[1:] {
		resolve(d, t0.Add(time.Duration(i+1)*time.Second), client, n, "NXDOMAIN", netip.Addr{})
	}
	if len(r.alerts) != 2 || r.alerts[1].Subtype != "rendezvous" {
		t.Fatalf("alerts %d, want the DGA alert and the rendezvous", len(r.alerts))
	}
	if res := r.alerts[0].Evidence["resolved"].([]map[string]any); len(res) != 1 || res[0]["contacted"] != true {
		t.Errorf("resolved evidence %v", res)
	}
}

// TestBenign: a busy ordinary host (many names, a few typos that do not
// exist) raises nothing; nor do a few generated-looking names.
func TestBenign(t *testing.T) {
	var r recorder
	d := New(Config{}, r.env())
	at := t0
	ordinary := []string{"google.com", "wikipedia.org", "github.com", "nytimes.com", "bbc.co.uk", "amazon.de", "booking.com",
		"stackoverflow.com", "microsoft.com", "apple.com", "weather.com", "cloudflare.com", "mozilla.org", "debian.org",
		"example.com", "reddit.com", "linkedin.com", "paypal.com", "netflix.com", "spotify.com"}
	for rep := range 10 {
		for i, n := range ordinary {
			at = at.Add(300 * time.Millisecond)
			name := fmt.Sprintf("www%d.%s", rep, n)
			rc := "NOERROR"
			if i%7 == 0 {
				rc = "NXDOMAIN"
			}
			resolve(d, at, other, name, rc, netip.Addr{})
		}
	}
	for _, n := range dgaNames(5, 3) { // below MinNX
		at = at.Add(time.Second)
		resolve(d, at, other, n, "NXDOMAIN", netip.Addr{})
	}
	for _, a := range r.alerts {
		t.Errorf("unexpected alert: %s (%s)", a.Signature, a.Explain())
	}
}

func TestExpiry(t *testing.T) {
	var r recorder
	d := New(Config{Window: time.Minute}, r.env())
	for i, n := range dgaNames(20, 4) { // one every 20 s: never 8 in a minute
		resolve(d, t0.Add(time.Duration(i)*20*time.Second), client, n, "NXDOMAIN", netip.Addr{})
	}
	if len(r.alerts) != 0 {
		t.Errorf("%d alerts for a slow trickle", len(r.alerts))
	}
	d.Tick(t0.Add(time.Hour))
	if st := d.Stats(); st["tracked_hosts"] != 0 || st["forward_table"] != 0 {
		t.Errorf("after an idle window: %v", st)
	}
	d2 := New(Config{MaxHosts: 2}, r.env())
	for i := range 5 {
		resolve(d2, t0, netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), "www.example.com", "NOERROR", netip.Addr{})
	}
	if st := d2.Stats(); st["tracked_hosts"] != 2 || st["untracked_messages"] != 6 {
		t.Errorf("MaxHosts: %v", st)
	}
}

func keyTo(src, dst netip.Addr, port uint16) (k event.FlowKey) {
	k.Src, k.Dst, k.SrcPort, k.DstPort, k.Proto = src, dst, 40000, port, 6
	return k
}

// BenchmarkOnDNS: a mix of ordinary repeated names through the resolver and
// a stream of new generated names, 1 in 8.
func BenchmarkOnDNS(b *testing.B) {
	var evs []*detect.DNSEvent
	gen := dgaNames(1000, 5)
	for i := range 8000 {
		name := fmt.Sprintf("www.site%d.example.com", i%500)
		rc, code := "NOERROR", uint16(0)
		if i%8 == 0 {
			name, rc, code = gen[i/8%len(gen)], "NXDOMAIN", 3
		}
		at := t0.Add(time.Duration(i) * 10 * time.Millisecond)
		evs = append(evs,
			&detect.DNSEvent{Time: at, Client: client, Server: resolver, QName: name, QType: 1},
			&detect.DNSEvent{Time: at, Client: resolver, Server: upstream, QName: name, QType: 1},
			&detect.DNSEvent{Time: at, Client: resolver, Server: upstream, QName: name, QType: 1, Response: true, RCode: code, RCodeName: rc},
			&detect.DNSEvent{Time: at, Client: client, Server: resolver, QName: name, QType: 1, Response: true, RCode: code, RCodeName: rc})
	}
	var r recorder
	d := New(Config{MinNX: 1 << 30, MinNames: 1 << 30}, r.env()) // measure the counting, not alerting
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d.OnDNS(evs[i%len(evs)])
	}
}

func BenchmarkScore(b *testing.B) {
	m := DefaultModel()
	labels := []string{"google", "zaqqxtqteoosazqoge", "stackoverflow", "kq0qw6o2siwq"}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		m.Score(labels[i%len(labels)])
	}
}
