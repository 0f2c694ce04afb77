package dga

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/wardline/wardline/detect"
)

// FuzzNames feeds arbitrary names through RegisteredDomain, the feature
// extraction, the model and the detector: no panic, probabilities in
// [0, 1], finite features, and results that are parts of the input.
func FuzzNames(f *testing.F) {
	for _, s := range []string{"", ".", "..", "a.b", "www.example.com", "zaqqxtqteoosazqoge.xyz", "a..b.com", "co.uk",
		"1.2.3.4", "xn--80ak6aa92e.com", "x.mooo.com", "\x00\xff.com", "ab12-cd.info", strings.Repeat("q", 300) + ".ru",
		"trailing.dot.", "dnscat.0a1b.2c3d"} {
		f.Add(s)
	}
	m := DefaultModel()
	var r recorder
	d := New(Config{MinNX: 1, MinNames: 1, MinScore: 1}, r.env())
	at := t0
	f.Fuzz(func(t *testing.T, name string) {
		domain, label, ok := RegisteredDomain(name)
		if ok && (!strings.Contains(name, domain) || !strings.HasPrefix(domain, label) || label == "") {
			t.Fatalf("RegisteredDomain(%q) = %q, %q", name, domain, label)
		}
		feats := Extract(name)
		for i, v := range feats {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("Extract(%q)[%s] = %v", name, Feature(i), v)
			}
		}
		p := m.Score(name)
		if p < 0 || p > 1 || math.IsNaN(p) {
			t.Fatalf("Score(%q) = %v", name, p)
		}
		if q, _ := m.Explain(name); q != p {
			t.Fatalf("Explain(%q) = %v, Score %v", name, q, p)
		}
		at = at.Add(time.Second)
		d.OnDNS(&detect.DNSEvent{Time: at, Client: client, Server: resolver, QName: name, QType: 1})
		d.OnDNS(&detect.DNSEvent{Time: at, Client: client, Server: resolver, QName: name, QType: 1, Response: true,
			RCode: 3, RCodeName: "NXDOMAIN"})
	})
}
