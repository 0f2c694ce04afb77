package dnstunnel

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/wardline/wardline/detect"
)

// FuzzNames feeds arbitrary query names (tunnels carry binary) through the
// string handling and the detector: no panic, and the invariants of split
// and commonSuffix hold.
func FuzzNames(f *testing.F) {
	for _, s := range []string{"", ".", "..", "a.b", "www.example.com", "a..b.com", "x.co.uk", "co.uk", "1.2.3.4",
		"dnscat.0a1b.2c3d", "z2bqaA0123456789\xe4\xf6\xfc.t.tunnel.test", "xn--p1ai", "a.xn--p1ai", "trailing.dot.",
		"\x00.\xff", strings.Repeat("a.", 130) + "com"} {
		f.Add(s, uint16(10))
	}
	var r recorder
	d := New(Config{MinUnique: 2, MinScore: 1}, r.env())
	at := t0
	f.Fuzz(func(t *testing.T, name string, qtype uint16) {
		domain, sub, invalid, ok := split(name)
		if ok && !invalid {
			if !strings.HasSuffix(name, domain) || (sub != "" && sub+"."+domain != name) {
				t.Fatalf("split(%q) = %q, %q", name, domain, sub)
			}
		}
		if ok && invalid && sub != name {
			t.Fatalf("split(%q) invalid TLD but sub %q", name, sub)
		}
		if i := strings.IndexByte(name, '.'); i >= 0 {
			z := commonSuffix(name[i+1:], name+"x")
			if !strings.HasSuffix(name[i+1:], z) {
				t.Fatalf("commonSuffix not a suffix: %q", z)
			}
		}
		if h := entropy(name); h < 0 || h > 8 || math.IsNaN(h) {
			t.Fatalf("entropy(%q) = %v", name, h)
		}
		_ = printable(name)
		at = at.Add(time.Millisecond)
		d.OnDNS(&detect.DNSEvent{Time: at, Client: client, Server: resolver, QName: name, QType: qtype, Len: len(name) + 20})
		d.OnDNS(&detect.DNSEvent{Time: at, Client: client, Server: resolver, QName: name, QType: qtype, Response: true,
			Len: len(name) + 200, Answers: []detect.DNSAnswer{{Type: typeTXT, Data: name}}})
	})
}
