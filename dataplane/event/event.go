// Package event is Wardline's neutral event model: the typed flow records and
// payload snippets that the XDP fast path produces (package dataplane) and
// that the detection engine consumes (package detect), live or rebuilt from a
// pcap. It imports nothing kernel-specific, so detect builds and runs offline
// on any machine.
//
// The wire layout of these events is defined in bpf/structs.h; Version must
// equal WL_EVENT_VERSION there (a dataplane test checks it).
package event

import (
	"fmt"
	"net/netip"
	"time"
)

// Version is the event layout version this package understands.
const Version = 1

// Reason says why a flow record was emitted.
type Reason uint8

const (
	ReasonFIN    Reason = 1 // TCP closed by FIN in both directions
	ReasonRST    Reason = 2 // TCP reset
	ReasonIdle   Reason = 3 // no packet for the idle timeout
	ReasonActive Reason = 4 // interim record of a long flow (Final is false)
)

func (r Reason) String() string {
	switch r {
	case ReasonFIN:
		return "fin"
	case ReasonRST:
		return "rst"
	case ReasonIdle:
		return "idle"
	case ReasonActive:
		return "active"
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Dir is the direction of a packet relative to the flow originator.
type Dir uint8

const (
	DirOrig Dir = 0 // from the originator
	DirResp Dir = 1 // from the responder
)

func (d Dir) String() string {
	if d == DirOrig {
		return "orig"
	}
	return "resp"
}

// SnippetKind says what a payload snippet holds.
type SnippetKind uint8

const (
	SnippetDNS  SnippetKind = 1 // a DNS message (over TCP with its 2-byte length prefix)
	SnippetTLS  SnippetKind = 2 // the start of a TLS ClientHello, or a continuation of it
	SnippetHTTP SnippetKind = 3 // the start of an HTTP/1.x request
	// SnippetPayload is the first client payload of any other TCP flow
	// (an SSH banner, SMB, a JSON-RPC call, ...).
	SnippetPayload SnippetKind = 4
	// SnippetARP is an Ethernet/IPv4 ARP frame: Key.Src and Key.Dst are
	// the sender and target protocol addresses, Key.SrcPort the opcode.
	SnippetARP SnippetKind = 5
	// SnippetDHCP is a DHCPv4 message (UDP port 67 or 68).
	SnippetDHCP SnippetKind = 6
)

func (k SnippetKind) String() string {
	switch k {
	case SnippetDNS:
		return "dns"
	case SnippetTLS:
		return "tls"
	case SnippetHTTP:
		return "http"
	case SnippetPayload:
		return "payload"
	case SnippetARP:
		return "arp"
	case SnippetDHCP:
		return "dhcp"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Protocol numbers used in FlowKey.Proto.
const (
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
)

// TCP flag bits as in the TCP header.
const (
	TCPFin = 0x01
	TCPSyn = 0x02
	TCPRst = 0x04
	TCPPsh = 0x08
	TCPAck = 0x10
	TCPUrg = 0x20
	TCPEce = 0x40
	TCPCwr = 0x80
)

// FlowKey identifies a flow. For ICMP and ICMPv6, SrcPort holds the type
// (echo reply folded onto echo request, as Community ID v1 does) and DstPort
// the code. VLAN holds the outer and inner VLAN IDs (0 = none).
type FlowKey struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Proto            uint8
	VLAN             [2]uint16
}

func (k FlowKey) String() string {
	s := fmt.Sprintf("%s %s -> %s", protoName(k.Proto),
		netip.AddrPortFrom(k.Src, k.SrcPort), netip.AddrPortFrom(k.Dst, k.DstPort))
	if k.VLAN[0] != 0 {
		s += fmt.Sprintf(" vlan %d", k.VLAN[0])
		if k.VLAN[1] != 0 {
			s += fmt.Sprintf("/%d", k.VLAN[1])
		}
	}
	return s
}

func protoName(p uint8) string {
	switch p {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoICMP:
		return "icmp"
	case ProtoICMPv6:
		return "icmp6"
	}
	return fmt.Sprintf("proto%d", p)
}

// Flow is a flow record. Counters are cumulative since the flow started and
// indexed by Dir; interim records (ReasonActive) are followed by more
// records for the same flow with a higher Seq, the last one has Final set.
// Bytes are real frame lengths including the Ethernet header (a GSO
// super-packet counts once, with its full length).
type Flow struct {
	Key        FlowKey // Src is the originator
	Reason     Reason
	Final      bool
	Seq        uint32 // 0-based number of this record within the flow
	Frag       bool   // a flow of non-first IP fragments (no ports)
	FirstFlags uint8  // TCP flags of the first packet seen
	TCPFlags   [2]uint8
	Ifindex    [2]uint32 // ingress interface of the last packet per direction
	FirstSeen  time.Time
	LastSeen   time.Time
	Packets    [2]uint64
	Bytes      [2]uint64
	Time       time.Time // when the record was written
	CPU        uint32
}

// Snippet is a bounded copy of the start of a packet payload.
type Snippet struct {
	Key          FlowKey // oriented as the packet: Src is the sender
	Kind         SnippetKind
	Dir          Dir
	Truncated    bool   // the payload was longer than the snippet length
	Continuation bool   // a later segment of a ClientHello; see Offset
	Offset       uint32 // byte offset in the client stream (0 for the first snippet)
	PayloadLen   uint16 // L4 payload length of the packet
	Ifindex      uint32
	Time         time.Time
	CPU          uint32
	// Data is only valid during the Handler call; copy it to keep it.
	Data []byte
}

// Handler receives events. Events passed to it are reused after the call
// returns: a handler that keeps one must copy it (and Snippet.Data).
type Handler interface {
	HandleFlow(*Flow)
	HandleSnippet(*Snippet)
}

// HandlerFuncs adapts two functions to a Handler; nil functions ignore
// their events.
type HandlerFuncs struct {
	Flow    func(*Flow)
	Snippet func(*Snippet)
}

func (h HandlerFuncs) HandleFlow(f *Flow) {
	if h.Flow != nil {
		h.Flow(f)
	}
}

func (h HandlerFuncs) HandleSnippet(s *Snippet) {
	if h.Snippet != nil {
		h.Snippet(s)
	}
}
