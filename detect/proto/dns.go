package proto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/net/dns/dnsmessage"
)

// DNSMessage is one parsed DNS message. Names are lower-cased (ASCII only;
// other bytes are kept as they are, so a tunnelling detector sees the raw
// labels) and carry no trailing dot; the root name is "".
type DNSMessage struct {
	ID       uint16
	Response bool // QR
	Opcode   uint8
	RCode    DNSRCode // the 4-bit header RCODE
	AA       bool     // authoritative answer
	TC       bool     // truncated (the TC bit, not a cut snippet)
	RD       bool     // recursion desired
	RA       bool     // recursion available
	AD       bool     // authentic data
	CD       bool     // checking disabled

	// Header section counts as announced (the slices below may be shorter
	// when the message was cut).
	QDCount, ANCount, NSCount, ARCount uint16

	Questions   []DNSQuestion
	Answers     []DNSRecord
	Authorities []DNSRecord
	Additionals []DNSRecord

	// WireLen is the length of the message in the input, including the
	// 2-byte length prefix over TCP: input[WireLen:] is the next message of a
	// TCP stream that carries several. When the input was cut it is the
	// announced length (> len(input)).
	WireLen int

	scratch []byte // names before they become one string; reused by Parse
}

// DNSQuestion is one entry of the question section.
type DNSQuestion struct {
	Name  string
	Type  DNSType
	Class uint16

	nameOff, nameLen uint32
}

// DNSRecord is one resource record. Which data field is set depends on Type:
// Addr for A and AAAA; Target for CNAME, NS, PTR, DNAME, MX (exchange, with
// Pref), SRV (with Port and Pref = priority) and SOA (the primary name
// server, mname); TXT for TXT. Length is the RDATA length for every type,
// known or not.
type DNSRecord struct {
	Name   string
	Type   DNSType
	Class  uint16
	TTL    uint32
	Length uint16
	Addr   netip.Addr
	Target string
	Pref   uint16
	Port   uint16
	TXT    []string

	nameOff, nameLen, tgtOff, tgtLen uint32
}

// ParseDNS parses one DNS message. Over TCP (tcp true) the input starts with
// the 2-byte length prefix. A message cut short (a truncated snippet) yields
// the header and every question and record that was complete, with an error
// wrapping ErrTruncated; other errors wrap ErrMalformed.
func ParseDNS(b []byte, tcp bool) (DNSMessage, error) {
	var m DNSMessage
	err := m.Parse(b, tcp)
	return m, err
}

// Parse is ParseDNS into m, reusing m's slices: a caller that parses many
// messages keeps one DNSMessage per goroutine and allocates (almost) nothing
// per message. Strings from an earlier Parse stay valid, its slices do not
// (copy a record to keep it).
func (m *DNSMessage) Parse(b []byte, tcp bool) error {
	*m = DNSMessage{
		Questions:   m.Questions[:0],
		Answers:     m.Answers[:0],
		Authorities: m.Authorities[:0],
		Additionals: m.Additionals[:0],
		scratch:     m.scratch[:0],
	}
	base := 0
	msg := b
	if tcp {
		if len(b) < 2 {
			m.WireLen = 2
			return truncErr("dns", "TCP length prefix", 0, fmt.Sprintf("%d of 2 bytes", len(b)))
		}
		n := int(binary.BigEndian.Uint16(b))
		base = 2
		m.WireLen = 2 + n
		if len(b)-2 < n {
			msg = b[2:] // cut: parse what is there
		} else {
			msg = b[2 : 2+n]
		}
	} else {
		m.WireLen = len(b)
	}
	err := m.parse(msg)
	m.fixNames()
	if err == nil {
		return nil
	}
	var pe *ParseError
	if errors.As(err, &pe) {
		pe.Offset += base // offsets count from the start of the input
	}
	return err
}

// dnsSection numbers the sections for error messages and the locator.
type dnsSection int

const (
	secQuestion dnsSection = iota
	secAnswer
	secAuthority
	secAdditional
)

var dnsSectionNames = [...]string{"question", "answer", "authority", "additional"}

func (m *DNSMessage) parse(msg []byte) error {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil {
		return truncErr("dns", "header", 0, fmt.Sprintf("%d of 12 bytes", len(msg)))
	}
	m.ID = h.ID
	m.Response = h.Response
	m.Opcode = uint8(h.OpCode)
	m.RCode = DNSRCode(h.RCode)
	m.AA = h.Authoritative
	m.TC = h.Truncated
	m.RD = h.RecursionDesired
	m.RA = h.RecursionAvailable
	m.AD = h.AuthenticData
	m.CD = h.CheckingDisabled
	m.QDCount = binary.BigEndian.Uint16(msg[4:])
	m.ANCount = binary.BigEndian.Uint16(msg[6:])
	m.NSCount = binary.BigEndian.Uint16(msg[8:])
	m.ARCount = binary.BigEndian.Uint16(msg[10:])
	m.reserve(len(msg))
	for i := 0; ; i++ {
		q, err := p.Question()
		if err == dnsmessage.ErrSectionDone {
			break
		}
		if err != nil {
			return dnsFail(msg, secQuestion, i, err)
		}
		off, n := m.addName(&q.Name)
		m.Questions = append(m.Questions, DNSQuestion{
			Type: DNSType(q.Type), Class: uint16(q.Class), nameOff: off, nameLen: n,
		})
	}
	if m.Answers, err = m.records(&p, msg, secAnswer, m.Answers); err != nil {
		return err
	}
	if m.Authorities, err = m.records(&p, msg, secAuthority, m.Authorities); err != nil {
		return err
	}
	if m.Additionals, err = m.records(&p, msg, secAdditional, m.Additionals); err != nil {
		return err
	}
	return nil
}

// reserve sizes the slices once from the header counts, bounded by what a
// message of n bytes can hold (a question takes at least 5 bytes, a record
// 11), so that a lying header cannot make it allocate much.
func (m *DNSMessage) reserve(n int) {
	qd := min(int(m.QDCount), (n-12)/5)
	rr := min(int(m.ANCount)+int(m.NSCount)+int(m.ARCount), (n-12)/11)
	if cap(m.Questions) < qd {
		m.Questions = make([]DNSQuestion, 0, qd)
	}
	if cap(m.scratch) < 64 {
		m.scratch = make([]byte, 0, min(n+64, 1024))
	}
	if rr <= 0 || cap(m.Answers)+cap(m.Authorities)+cap(m.Additionals) >= rr {
		return
	}
	// One backing array for the three record sections.
	all := make([]DNSRecord, rr)
	an := min(int(m.ANCount), rr)
	ns := min(int(m.NSCount), rr-an)
	if cap(m.Answers) < an {
		m.Answers = all[:0:an]
	}
	if cap(m.Authorities) < ns {
		m.Authorities = all[an : an : an+ns]
	}
	if cap(m.Additionals) < rr-an-ns {
		m.Additionals = all[an+ns : an+ns : rr]
	}
}

func (m *DNSMessage) records(p *dnsmessage.Parser, msg []byte, sec dnsSection, out []DNSRecord) ([]DNSRecord, error) {
	for i := 0; ; i++ {
		var h dnsmessage.ResourceHeader
		var err error
		switch sec {
		case secAnswer:
			h, err = p.AnswerHeader()
		case secAuthority:
			h, err = p.AuthorityHeader()
		default:
			h, err = p.AdditionalHeader()
		}
		if err == dnsmessage.ErrSectionDone {
			return out, nil
		}
		if err != nil {
			return out, dnsFail(msg, sec, i, err)
		}
		r := DNSRecord{Type: DNSType(h.Type), Class: uint16(h.Class), TTL: h.TTL, Length: h.Length}
		r.nameOff, r.nameLen = m.addName(&h.Name)
		typ := h.Type
		if typ == dnsmessage.TypeA && h.Length != 4 || typ == dnsmessage.TypeAAAA && h.Length != 16 {
			// A bad RDLENGTH (seen in the wild, e.g. 0 in inverse
			// queries): keep the record without an address and skip
			// its body by its length, as Wireshark does.
			typ = 0
		}
		switch typ {
		case dnsmessage.TypeA:
			var a dnsmessage.AResource
			if a, err = p.AResource(); err == nil {
				r.Addr = netip.AddrFrom4(a.A)
			}
		case dnsmessage.TypeAAAA:
			var a dnsmessage.AAAAResource
			if a, err = p.AAAAResource(); err == nil {
				r.Addr = netip.AddrFrom16(a.AAAA)
			}
		case dnsmessage.TypeCNAME:
			var c dnsmessage.CNAMEResource
			if c, err = p.CNAMEResource(); err == nil {
				r.tgtOff, r.tgtLen = m.addName(&c.CNAME)
			}
		case dnsmessage.TypeNS:
			var c dnsmessage.NSResource
			if c, err = p.NSResource(); err == nil {
				r.tgtOff, r.tgtLen = m.addName(&c.NS)
			}
		case dnsmessage.TypePTR:
			var c dnsmessage.PTRResource
			if c, err = p.PTRResource(); err == nil {
				r.tgtOff, r.tgtLen = m.addName(&c.PTR)
			}
		case dnsmessage.TypeMX:
			var c dnsmessage.MXResource
			if c, err = p.MXResource(); err == nil {
				r.tgtOff, r.tgtLen = m.addName(&c.MX)
				r.Pref = c.Pref
			}
		case dnsmessage.TypeSRV:
			var c dnsmessage.SRVResource
			if c, err = p.SRVResource(); err == nil {
				r.tgtOff, r.tgtLen = m.addName(&c.Target)
				r.Pref, r.Port = c.Priority, c.Port
			}
		case dnsmessage.TypeSOA:
			var c dnsmessage.SOAResource
			if c, err = p.SOAResource(); err == nil {
				r.tgtOff, r.tgtLen = m.addName(&c.NS)
			}
		case dnsmessage.TypeTXT:
			var c dnsmessage.TXTResource
			if c, err = p.TXTResource(); err == nil {
				r.TXT = c.TXT
			}
		default:
			switch sec {
			case secAnswer:
				err = p.SkipAnswer()
			case secAuthority:
				err = p.SkipAuthority()
			default:
				err = p.SkipAdditional()
			}
		}
		if err != nil {
			return out, dnsFail(msg, sec, i, err)
		}
		out = append(out, r)
	}
}

// addName appends the lower-cased name without its trailing dot to the
// message's name buffer and returns where it is.
func (m *DNSMessage) addName(n *dnsmessage.Name) (off, length uint32) {
	d := n.Data[:n.Length]
	if len(d) > 0 && d[len(d)-1] == '.' {
		d = d[:len(d)-1]
	}
	start := len(m.scratch)
	for _, c := range d {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		m.scratch = append(m.scratch, c)
	}
	return uint32(start), uint32(len(d))
}

// fixNames turns the name offsets into strings of one shared allocation.
func (m *DNSMessage) fixNames() {
	s := string(m.scratch)
	for i := range m.Questions {
		q := &m.Questions[i]
		q.Name = s[q.nameOff : q.nameOff+q.nameLen]
	}
	for _, rs := range [...][]DNSRecord{m.Answers, m.Authorities, m.Additionals} {
		for i := range rs {
			r := &rs[i]
			r.Name = s[r.nameOff : r.nameOff+r.nameLen]
			r.Target = s[r.tgtOff : r.tgtOff+r.tgtLen]
		}
	}
}

// dnsFail turns a dnsmessage error on element idx of section sec into a
// *ParseError. dnsmessage does not report offsets, so dnsLocate walks the
// message (on this error path only) to find where the element starts and
// whether it runs past the end of the input (truncation) or not (malformed).
func dnsFail(msg []byte, sec dnsSection, idx int, err error) error {
	off, trunc := dnsLocate(msg, sec, idx)
	kind := ErrMalformed
	if trunc {
		kind = ErrTruncated
	}
	return &ParseError{
		Proto:  "dns",
		What:   fmt.Sprintf("%s %d", dnsSectionNames[sec], idx),
		Offset: off,
		Kind:   kind,
		Err:    err,
	}
}

// dnsLocate returns the offset of element idx of section sec and whether
// that element extends past the end of msg. It only measures (labels,
// fixed fields and RDLENGTH); it never interprets names or data.
func dnsLocate(msg []byte, sec dnsSection, idx int) (off int, truncated bool) {
	counts := [4]int{
		int(binary.BigEndian.Uint16(msg[4:])),
		int(binary.BigEndian.Uint16(msg[6:])),
		int(binary.BigEndian.Uint16(msg[8:])),
		int(binary.BigEndian.Uint16(msg[10:])),
	}
	off = 12
	for s := secQuestion; s <= secAdditional; s++ {
		for i := 0; i < counts[s]; i++ {
			end, status := dnsElementEnd(msg, off, s == secQuestion)
			if s == sec && i == idx {
				return off, status == elemTrunc
			}
			if status != elemOK {
				// An earlier element that dnsmessage accepted: cannot
				// happen, but report where the walk stopped.
				return off, status == elemTrunc
			}
			off = end
		}
	}
	return off, off >= len(msg)
}

type elemStatus int

const (
	elemOK elemStatus = iota
	elemTrunc
	elemBad
)

// dnsElementEnd measures one question or resource record starting at off.
func dnsElementEnd(msg []byte, off int, question bool) (int, elemStatus) {
	// The owner name: labels up to a zero byte or a 2-byte pointer.
	for {
		if off >= len(msg) {
			return off, elemTrunc
		}
		c := int(msg[off])
		switch c & 0xc0 {
		case 0x00:
			off += 1 + c
			if c == 0 {
				goto fixed
			}
		case 0xc0:
			off += 2
			goto fixed
		default:
			return off, elemBad
		}
	}
fixed:
	if question {
		off += 4
		if off > len(msg) {
			return off, elemTrunc
		}
		return off, elemOK
	}
	off += 10 // type, class, TTL, RDLENGTH
	if off > len(msg) {
		return off, elemTrunc
	}
	off += int(binary.BigEndian.Uint16(msg[off-2:]))
	if off > len(msg) {
		return off, elemTrunc
	}
	return off, elemOK
}
