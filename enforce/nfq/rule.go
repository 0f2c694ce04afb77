package nfq

import (
	"bytes"
	"errors"
	"fmt"
)

// Action is what a rule does with a packet it matches.
type Action uint8

const (
	Accept Action = iota // let the packet continue (the default for packets no rule matches)
	Drop                 // drop the packet
)

func (a Action) String() string {
	switch a {
	case Accept:
		return "accept"
	case Drop:
		return "drop"
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// IP protocol numbers a rule can name.
const (
	ProtoTCP = 6
	ProtoUDP = 17
)

// Rule is one payload rule. A packet matches when every field that is set
// matches; the first matching rule of a Matcher decides.
type Rule struct {
	Name string // for counters and logs; unique within a rule set
	// Content must occur in the transport payload (after the TCP or UDP
	// header; after the IP header for other protocols).
	Content []byte
	NoCase  bool // ASCII case-insensitive Content match
	// Offset is the first payload byte searched, Depth how many bytes
	// from Offset are searched (0: to the end of the packet). As in
	// Suricata's content modifiers, Content must lie entirely inside.
	Offset, Depth int
	Proto         uint8  // IP protocol (ProtoTCP, ProtoUDP, …); 0: any
	DstPort       uint16 // TCP or UDP destination port; 0: any. Needs Proto TCP or UDP.
	Action        Action
}

// Matcher is a validated, compiled rule set. It is safe for concurrent use
// and allocates nothing per packet.
type Matcher struct {
	rules []compiled
}

type compiled struct {
	Rule
	lower []byte // Content in lower case, for NoCase
}

// Compile validates rules and prepares them for matching. Errors name the
// rule by position and name.
func Compile(rules []Rule) (*Matcher, error) {
	m := &Matcher{}
	names := map[string]bool{}
	var errs []error
	for i, r := range rules {
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("rule %d (%q): %s", i, r.Name, fmt.Sprintf(format, args...)))
		}
		switch {
		case r.Name == "":
			bad("no name")
		case names[r.Name]:
			bad("name used twice")
		}
		names[r.Name] = true
		if len(r.Content) == 0 {
			bad("empty content")
		}
		if r.Offset < 0 || r.Depth < 0 {
			bad("negative offset %d or depth %d", r.Offset, r.Depth)
		}
		if r.Depth > 0 && r.Depth < len(r.Content) {
			bad("depth %d is shorter than the content (%d bytes)", r.Depth, len(r.Content))
		}
		if r.DstPort != 0 && r.Proto != ProtoTCP && r.Proto != ProtoUDP {
			bad("destination port %d needs proto tcp (6) or udp (17), not %d", r.DstPort, r.Proto)
		}
		if r.Action != Accept && r.Action != Drop {
			bad("unknown action %d", r.Action)
		}
		c := compiled{Rule: r}
		c.Content = bytes.Clone(r.Content)
		if r.NoCase {
			c.lower = make([]byte, len(c.Content)) // ASCII folding only: bytes ≥ 0x80 stay as they are
			for j, b := range c.Content {
				c.lower[j] = lower(b)
			}
		}
		m.rules = append(m.rules, c)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// Len returns the number of rules.
func (m *Matcher) Len() int { return len(m.rules) }

// Rule returns rule i as compiled.
func (m *Matcher) Rule(i int) Rule { return m.rules[i].Rule }

// Match returns the index of the first rule that matches the IPv4 or IPv6
// packet pkt (starting at its IP header, as NFQUEUE delivers it from ip,
// ip6 and inet tables), or -1.
func (m *Matcher) Match(pkt []byte) int {
	if len(m.rules) == 0 {
		return -1
	}
	p := parse(pkt)
	for i := range m.rules {
		if m.rules[i].match(&p) {
			return i
		}
	}
	return -1
}

// Verdict returns the action for pkt and the index of the deciding rule
// (-1: no rule matched, the default accept).
func (m *Matcher) Verdict(pkt []byte) (Action, int) {
	i := m.Match(pkt)
	if i < 0 {
		return Accept, -1
	}
	return m.rules[i].Action, i
}

func (r *compiled) match(p *packet) bool {
	if !p.ok {
		return false
	}
	if r.Proto != 0 && r.Proto != p.proto {
		return false
	}
	if r.DstPort != 0 && (!p.hasPorts || r.DstPort != p.dport) {
		return false
	}
	data := p.payload
	if r.Offset > 0 {
		if r.Offset >= len(data) {
			return false
		}
		data = data[r.Offset:]
	}
	if r.Depth > 0 && r.Depth < len(data) {
		data = data[:r.Depth]
	}
	if r.NoCase {
		return indexFold(data, r.lower) >= 0
	}
	return bytes.Index(data, r.Content) >= 0
}

func lower(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + ('a' - 'A')
	}
	return b
}

// indexFold is bytes.Index with ASCII case folding; pat is lower case.
// It finds candidates for the first byte with bytes.IndexByte for both
// cases, so a payload without them costs two vectorised scans.
func indexFold(s, pat []byte) int {
	if len(pat) == 0 {
		return 0
	}
	first, firstUp := pat[0], pat[0]
	if 'a' <= first && first <= 'z' {
		firstUp = first - ('a' - 'A')
	}
	for i := 0; i+len(pat) <= len(s); {
		j := indexEither(s[i:len(s)-len(pat)+1], first, firstUp)
		if j < 0 {
			return -1
		}
		i += j
		if equalFold(s[i+1:i+len(pat)], pat[1:]) {
			return i
		}
		i++
	}
	return -1
}

// indexEither returns the first index of a or b in s, or -1.
func indexEither(s []byte, a, b byte) int {
	i := bytes.IndexByte(s, a)
	if a == b {
		return i
	}
	if i >= 0 {
		s = s[:i] // b only matters before the first a
	}
	if j := bytes.IndexByte(s, b); j >= 0 {
		return j
	}
	return i
}

func equalFold(s, lowerPat []byte) bool {
	for i, c := range lowerPat {
		if lower(s[i]) != c {
			return false
		}
	}
	return true
}
