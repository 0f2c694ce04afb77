package detect

import (
	"strings"
	"time"

	"github.com/wardline/wardline/dataplane/event"
)

// ConnState is a Zeek-style summary of how a connection went.
type ConnState string

// The states, as Zeek names them.
const (
	StateS0     ConnState = "S0"     // SYN seen, no reply
	StateS1     ConnState = "S1"     // established, not terminated (interim record)
	StateSF     ConnState = "SF"     // established and closed normally
	StateREJ    ConnState = "REJ"    // SYN answered by a reset
	StateS2     ConnState = "S2"     // established, only the originator closed
	StateS3     ConnState = "S3"     // established, only the responder closed
	StateRSTO   ConnState = "RSTO"   // established, the originator reset it
	StateRSTR   ConnState = "RSTR"   // established, the responder reset it
	StateRSTOS0 ConnState = "RSTOS0" // originator sent SYN then RST, no SYN-ACK
	StateRSTRH  ConnState = "RSTRH"  // responder sent SYN-ACK then RST, no SYN seen
	StateSH     ConnState = "SH"     // originator sent SYN then FIN, no SYN-ACK
	StateSHR    ConnState = "SHR"    // responder sent SYN-ACK then FIN, no SYN seen
	StateOTH    ConnState = "OTH"    // no SYN: midstream traffic, or not TCP
)

// Direction says where a connection goes relative to the home networks.
type Direction string

const (
	Outbound Direction = "outbound" // home -> outside
	Inbound  Direction = "inbound"  // outside -> home
	Internal Direction = "internal" // home -> home (east-west)
	External Direction = "external" // neither end at home
)

// Conn is a connection as the detectors see it: a flow record plus what
// the engine derived from it.
type Conn struct {
	Key        event.FlowKey // Src is the originator
	Start, End time.Time
	Final      bool         // false for interim records of long flows
	Reason     event.Reason // why the record was written
	OrigPkts   uint64
	OrigBytes  uint64 // frame bytes, headers included
	RespPkts   uint64
	RespBytes  uint64
	OrigFlags  uint8 // TCP flags seen from the originator (OR)
	RespFlags  uint8
	FirstFlags uint8 // TCP flags of the first packet
	Frag       bool

	State       ConnState
	History     string // Zeek-like letters for the flags seen (a set, not an order)
	CommunityID string
	Direction   Direction
	// Application facts from payload snippets of this flow, when any.
	App *AppInfo
}

// AppInfo holds what payload snippets revealed about a connection.
type AppInfo struct {
	Service   string // "tls", "http", "dns", "ssh", "stratum", ...
	SNI       string
	JA3       string // md5
	JA4       string
	HTTPHost  string
	UserAgent string
	HTTPURI   string
}

// Duration is End - Start.
func (c *Conn) Duration() time.Duration { return c.End.Sub(c.Start) }

// Established reports whether the TCP handshake was seen from both sides.
func (c *Conn) Established() bool {
	return c.OrigFlags&event.TCPSyn != 0 && c.RespFlags&event.TCPSyn != 0
}

// Failed reports whether a TCP connection attempt got no usable answer:
// no reply at all, a reset, or a half-open abort.
func (c *Conn) Failed() bool {
	switch c.State {
	case StateS0, StateREJ, StateRSTOS0, StateSH:
		return true
	}
	return false
}

// NewConn derives a Conn from a flow record.
func NewConn(f *event.Flow) Conn {
	c := Conn{
		Key: f.Key, Start: f.FirstSeen, End: f.LastSeen, Final: f.Final, Reason: f.Reason,
		OrigPkts: f.Packets[0], OrigBytes: f.Bytes[0], RespPkts: f.Packets[1], RespBytes: f.Bytes[1],
		OrigFlags: f.TCPFlags[0], RespFlags: f.TCPFlags[1], FirstFlags: f.FirstFlags, Frag: f.Frag,
	}
	c.State, c.History = connState(&c)
	return c
}

// connState derives the Zeek state from the flags each side sent. The
// fast path reports which flags each side used, not their order, so the
// states that depend on order (S1 vs S2) are read from the flag sets and
// the record's finality.
func connState(c *Conn) (ConnState, string) {
	if c.Key.Proto != event.ProtoTCP {
		return StateOTH, ""
	}
	o, r := c.OrigFlags, c.RespFlags
	var h strings.Builder
	for _, x := range []struct {
		f    uint8
		orig byte
		resp byte
	}{{event.TCPSyn, 'S', 'h'}, {event.TCPAck, 'A', 'a'}, {event.TCPPsh, 'D', 'd'}, {event.TCPFin, 'F', 'f'}, {event.TCPRst, 'R', 'r'}} {
		if o&x.f != 0 {
			h.WriteByte(x.orig)
		}
		if r&x.f != 0 {
			h.WriteByte(x.resp)
		}
	}
	has := func(v, f uint8) bool { return v&f != 0 }
	oSyn, rSyn := has(o, event.TCPSyn), has(r, event.TCPSyn)
	switch {
	case oSyn && rSyn:
		switch {
		case has(o, event.TCPRst):
			return StateRSTO, h.String()
		case has(r, event.TCPRst):
			return StateRSTR, h.String()
		case has(o, event.TCPFin) && has(r, event.TCPFin):
			return StateSF, h.String()
		case has(o, event.TCPFin):
			return StateS2, h.String()
		case has(r, event.TCPFin):
			return StateS3, h.String()
		}
		return StateS1, h.String()
	case oSyn:
		switch {
		case has(r, event.TCPRst):
			return StateREJ, h.String()
		case has(o, event.TCPRst):
			return StateRSTOS0, h.String()
		case has(o, event.TCPFin):
			return StateSH, h.String()
		case c.RespPkts == 0:
			return StateS0, h.String()
		}
		return StateOTH, h.String()
	case rSyn:
		switch {
		case has(r, event.TCPRst):
			return StateRSTRH, h.String()
		case has(r, event.TCPFin):
			return StateSHR, h.String()
		}
	}
	return StateOTH, h.String()
}
