// Package dnsfwd tells a resolver's forwarded copies of DNS messages apart
// from the messages of the host that asked first, so that DNS detectors
// attribute a query to the client behind an internal resolver and count it
// once.
//
// A sensor that sees both legs of a resolution (client -> resolver and
// resolver -> upstream, as on a SPAN of the office segment) sees every
// question twice. The second copy would make the resolver look like the
// client: an iodine tunnel through the office resolver would be reported
// twice, once against the resolver. A Matcher remembers, for a bounded
// time, which client asked which server which question; when that server
// then asks the same question (or gets the answer to it), the message is a
// forward and belongs to the client. A resolver's own questions (cache
// refreshes, NS lookups, a resolver that is itself compromised) match no
// client's question and stay the resolver's.
//
// The engine runs one Matcher and annotates every DNSEvent (Origin,
// Forwarded) before the DNS observers see it; detectors that run without
// the engine (their unit tests) keep a Matcher of their own, which passes
// annotated events through untouched.
package dnsfwd

import (
	"hash/maphash"
	"net/netip"
	"time"

	"github.com/wardline/wardline/detect"
)

// Matcher remembers recent questions. Not safe for concurrent use (the
// engine calls detectors from one goroutine).
type Matcher struct {
	ttl     time.Duration
	max     int
	seed    maphash.Seed
	pending map[key]asked

	forwarded uint64 // messages recognised as forwards
	dropped   uint64 // questions not remembered because the table was full
}

// key is a question as put to one server: (server asked, hash of name and
// type).
type key struct {
	via netip.Addr
	h   uint64
}

type asked struct {
	client netip.Addr // the original asker
	at     int64      // unix nanoseconds
}

// New returns a Matcher that remembers a question for ttl (default 10 s)
// and at most max questions (default 65536).
func New(ttl time.Duration, max int) *Matcher {
	if ttl <= 0 {
		ttl = 10 * time.Second
	}
	if max <= 0 {
		max = 65536
	}
	return &Matcher{ttl: ttl, max: max, seed: maphash.MakeSeed(), pending: map[key]asked{}}
}

func (m *Matcher) hash(ev *detect.DNSEvent) uint64 {
	return maphash.String(m.seed, ev.QName) ^ uint64(ev.QType)*0x9E3779B97F4A7C15
}

// Origin classifies one DNS message. forwarded is true when the message is a
// server's copy of a question a client put to it within the TTL: the
// server's own query upstream, or the upstream's answer to it. origin is
// then the first client (through chains of resolvers), otherwise ev.Client.
// It does not allocate once the table has grown. An event the engine has
// already annotated (Origin set) is returned as annotated: the engine runs
// one Matcher for every DNS observer.
func (m *Matcher) Origin(ev *detect.DNSEvent) (origin netip.Addr, forwarded bool) {
	if ev.Origin.IsValid() {
		return ev.Origin, ev.Forwarded
	}
	h := m.hash(ev)
	now := ev.Time.UnixNano()
	if a, ok := m.pending[key{ev.Client, h}]; ok && a.client != ev.Client && now-a.at <= int64(m.ttl) {
		origin, forwarded = a.client, true
		m.forwarded++
	} else {
		origin = ev.Client
	}
	if !ev.Response {
		// Remember who is behind this question at the server it was put
		// to, so that the server's own copy upstream is recognised.
		m.remember(key{ev.Server, h}, asked{origin, now}, ev.Time)
	}
	return origin, forwarded
}

// Annotate sets ev.Origin and ev.Forwarded.
func (m *Matcher) Annotate(ev *detect.DNSEvent) {
	ev.Origin, ev.Forwarded = m.Origin(ev)
}

func (m *Matcher) remember(k key, a asked, now time.Time) {
	if _, ok := m.pending[k]; !ok && len(m.pending) >= m.max {
		m.Expire(now)
		if len(m.pending) >= m.max {
			m.dropped++
			return
		}
	}
	m.pending[k] = a
}

// Expire forgets questions older than the TTL.
func (m *Matcher) Expire(now time.Time) {
	limit := now.UnixNano() - int64(m.ttl)
	for k, a := range m.pending {
		if a.at < limit {
			delete(m.pending, k)
		}
	}
}

// Len is the number of remembered questions.
func (m *Matcher) Len() int { return len(m.pending) }

// Forwarded is the number of messages recognised as forwards so far.
func (m *Matcher) Forwarded() uint64 { return m.forwarded }

// Dropped is the number of questions not remembered because the table was
// full of unexpired ones (their forwards are then counted twice).
func (m *Matcher) Dropped() uint64 { return m.dropped }
