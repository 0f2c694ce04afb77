package ioc

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/wardline/wardline/dataplane/event"
	"github.com/wardline/wardline/detect"
	"github.com/wardline/wardline/detect/enrich"
)

func TestIndexReload(t *testing.T) {
	x := NewIndex()
	if err := x.Load("a.json", strings.NewReader(`{"ips": ["203.0.113.66", "192.0.2.0/24"], "domains": ["BadC2.test."], "ja3": ["A3AF"]}`)); err != nil {
		t.Fatal(err)
	}
	if k, _ := x.matchIP(netip.MustParseAddr("192.0.2.77")); k != KindCIDR {
		t.Error("CIDR does not match")
	}
	if x.matchDomain("update.badc2.test") != "badc2.test" || x.matchDomain("notbadc2.test") != "" {
		t.Error("subdomain matching wrong")
	}
	long := strings.Repeat("aB3.", 70) + "BADC2.test." // longer than the stack buffer
	for _, n := range []string{"uPdAtE.BadC2.TEST.", long} {
		if got := x.matchDomain(n); got != "badc2.test" {
			t.Errorf("matchDomain(%q) = %q, want badc2.test (case-insensitive)", n, got)
		}
	}
	if got := x.matchDomain(strings.Repeat("x", 300)); got != "" {
		t.Errorf("a long name without the domain matched %q", got)
	}
	// Reload: the CIDR goes, a new IP comes; nothing stale remains.
	if err := x.Load("b.json", strings.NewReader(`{"ips": ["203.0.113.66", "198.51.100.1"], "domains": ["badc2.test"], "ja4": ["t13d1516h2_8daaf6152771_02713d6af862"]}`)); err != nil {
		t.Fatal(err)
	}
	if k, _ := x.matchIP(netip.MustParseAddr("192.0.2.77")); k != "" {
		t.Error("removed CIDR still matches")
	}
	c := x.Counts()
	if c[KindIP] != 2 || c[KindCIDR] != 0 || c[KindJA3] != 0 || c[KindJA4] != 1 || len(x.lens) != 0 {
		t.Errorf("counts after reload %v lens %v", c, x.lens)
	}
	// A broken reload reports where and removes nothing.
	err := x.Load("c.json", strings.NewReader(`{"ips": ["198.51.100.1", "not-an-ip"]}`))
	if err == nil || !strings.Contains(err.Error(), "c.json: byte") || !strings.Contains(err.Error(), "not-an-ip") {
		t.Errorf("bad reload: %v", err)
	}
	if x.Counts()[KindIP] != 2 {
		t.Error("a failed reload removed indicators")
	}
}

func TestDetector(t *testing.T) {
	x := NewIndex()
	x.Load("i.json", strings.NewReader(`{"ips": ["203.0.113.66"], "domains": ["badc2.test"], "ja3": ["a3afc2c46ba4a7d7fbe1cfb7a3031c2f"]}`))
	var got []*detect.Alert
	env := detect.Env{Emit: func(a *detect.Alert) { got = append(got, a) }, Inv: enrich.New(nil, nil)}
	d := New(x, 0, env)
	host := netip.MustParseAddr("198.18.0.10")
	bad := netip.MustParseAddr("203.0.113.66")
	now := time.Unix(1795639458, 0)
	c := detect.Conn{Key: event.FlowKey{Src: host, Dst: bad, SrcPort: 40000, DstPort: 443, Proto: 6}, Start: now, Final: true}
	d.OnConn(&c)
	d.OnConn(&c) // deduplicated
	d.OnDNS(&detect.DNSEvent{Time: now, Client: host, QName: "update.badc2.test"})
	d.OnTLS(&detect.TLSEvent{Time: now, Key: c.Key, SNI: "update.badc2.test", JA3Hash: "a3afc2c46ba4a7d7fbe1cfb7a3031c2f"})
	kinds := map[string]int{}
	for _, a := range got {
		if a.Attacker != host || a.Type != detect.TypeIOC || a.Risk == 0 {
			t.Errorf("alert %+v", a)
		}
		kinds[a.Subtype]++
	}
	if kinds[KindIP] != 1 || kinds[KindDomain] != 1 || kinds[KindJA3] != 1 {
		t.Errorf("alerts by kind %v, want one ip, one domain (dns and sni deduplicated), one ja3", kinds)
	}
}
