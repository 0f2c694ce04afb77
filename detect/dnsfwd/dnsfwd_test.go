package dnsfwd

import (
	"net/netip"
	"testing"
	"time"

	"github.com/wardline/wardline/detect"
)

var (
	t0       = time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC)
	client   = netip.MustParseAddr("198.18.0.10")
	resolver = netip.MustParseAddr("198.18.0.53")
	forward  = netip.MustParseAddr("198.18.0.54") // a second resolver in a chain
	upstream = netip.MustParseAddr("203.0.113.53")
)

func q(at time.Duration, from, to netip.Addr, name string) *detect.DNSEvent {
	return &detect.DNSEvent{Time: t0.Add(at), Client: from, Server: to, QName: name, QType: 1}
}

func r(at time.Duration, from, to netip.Addr, name string) *detect.DNSEvent {
	return &detect.DNSEvent{Time: t0.Add(at), Client: to, Server: from, QName: name, QType: 1, Response: true}
}

func TestOrigin(t *testing.T) {
	m := New(0, 0)
	ms := time.Millisecond
	for i, tc := range []struct {
		ev        *detect.DNSEvent
		origin    netip.Addr
		forwarded bool
	}{
		{q(0, client, resolver, "a.example"), client, false},                                                                         // the client asks
		{q(1*ms, resolver, forward, "a.example"), client, true},                                                                      // the resolver forwards
		{q(2*ms, forward, upstream, "a.example"), client, true},                                                                      // and the next one again
		{r(3*ms, upstream, forward, "a.example"), client, true},                                                                      // answers come back
		{r(4*ms, forward, resolver, "a.example"), client, true},                                                                      //
		{r(5*ms, resolver, client, "a.example"), client, false},                                                                      // the client's answer
		{q(6*ms, resolver, upstream, "ns.example"), resolver, false},                                                                 // the resolver's own question
		{r(7*ms, upstream, resolver, "ns.example"), resolver, false},                                                                 //
		{q(8*ms, resolver, upstream, "b.example"), resolver, false},                                                                  // nobody asked b.example
		{&detect.DNSEvent{Time: t0.Add(9 * ms), Client: resolver, Server: upstream, QName: "a.example", QType: 28}, resolver, false}, // other type
		{q(11*time.Second, resolver, forward, "a.example"), resolver, false},                                                         // too late: the resolver's own
	} {
		origin, fwd := m.Origin(tc.ev)
		if origin != tc.origin || fwd != tc.forwarded {
			t.Errorf("message %d (%s -> %s %s): origin %s forwarded %v, want %s %v", i, tc.ev.Client, tc.ev.Server, tc.ev.QName,
				origin, fwd, tc.origin, tc.forwarded)
		}
	}
	if m.Forwarded() != 4 {
		t.Errorf("Forwarded() = %d, want 4", m.Forwarded())
	}
	m.Expire(t0.Add(time.Minute))
	if m.Len() != 0 {
		t.Errorf("Len() = %d after expiry, want 0", m.Len())
	}
}

func TestBounded(t *testing.T) {
	m := New(time.Second, 4)
	for i := range 10 {
		m.Origin(q(0, client, resolver, string(rune('a'+i))+".example"))
	}
	if m.Len() != 4 || m.Dropped() != 6 {
		t.Fatalf("Len %d Dropped %d, want 4 and 6", m.Len(), m.Dropped())
	}
	// Once the old questions expired, new ones are remembered again.
	m.Origin(q(2*time.Second, client, resolver, "z.example"))
	if m.Len() != 1 || m.Dropped() != 6 {
		t.Fatalf("after expiry: Len %d Dropped %d, want 1 and 6", m.Len(), m.Dropped())
	}
}

func BenchmarkOrigin(b *testing.B) {
	m := New(0, 0)
	evs := []*detect.DNSEvent{
		q(0, client, resolver, "www.example.com"), q(0, resolver, upstream, "www.example.com"),
		r(0, upstream, resolver, "www.example.com"), r(0, resolver, client, "www.example.com"),
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		m.Origin(evs[i%len(evs)])
	}
}
