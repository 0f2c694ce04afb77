// Package communityid computes the Community ID v1 flow hash
// (https://github.com/corelight/community-id-spec) of Wardline's flow keys,
// so that the detection engine's flows and alerts (package detect) can be
// joined with Zeek, Suricata and any other tool that logs it. It runs on
// every flow: ID allocates only its result and AppendID nothing at all.
//
// # ICMP and ICMPv6
//
// Community ID gives ICMP "ports" the way Zeek does: for the request/reply
// types (echo, timestamp, information, address mask, router solicitation /
// advertisement; for ICMPv6 echo, MLD query/report, neighbor and router
// solicitation/advertisement, node information (who-are-you) and home agent
// address discovery) the source port is the type and the destination port
// its counterpart type, and the endpoints are ordered like a TCP flow, so a
// request and its reply share one ID. Every other type is one-way: the ports
// are type and code, and the endpoints are NOT reordered.
//
// A Wardline flow key (event.FlowKey) carries the ICMP type in SrcPort, with
// replies folded onto their requests by the fast path (echo reply 0 -> 8,
// timestamp reply 14 -> 13, information reply 16 -> 15, mask reply 18 -> 17;
// ICMPv6 129 -> 128, 136 -> 135, 131 -> 130), and the code in DstPort, with
// Src the sender of the flow's first packet. ID maps such a key back to the
// Community ID tuple: for a request/reply type it replaces the code by the
// counterpart type (the code plays no part for those types) and orders the
// endpoints; for a one-way type it hashes Src, Dst, type and code as they
// are. Folding loses one bit: a flow whose first packet was a reply (the
// request was never seen) has the reply's sender as Src and the request type
// in SrcPort, so its ID is that of a request in the other direction,
// different from what Zeek or Suricata report for those reply packets. Flows
// that start with their request (the normal case) get the same ID as theirs.
//
// # Other details
//
// TCP, UDP and SCTP hash both ports; any other protocol hashes addresses and
// protocol only. IPv4 addresses must be 4-byte or IPv4-mapped netip.Addrs
// (the dataplane unmaps them): both hash as 4 bytes. A key without valid
// addresses has no Community ID: ID returns "". Non-first IP fragments
// (event.Flow.Frag) have no ports; their keys hash ports 0, which other
// monitors do not do consistently either.
package communityid

import (
	"crypto/sha1"
	"encoding/base64"
	"net/netip"

	"github.com/wardline/wardline/dataplane/event"
)

// Protocol numbers that Community ID treats specially.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
	protoSCTP   = 132
)

// Len is the length of an ID: "1:" and 28 characters of base64.
const Len = 30

// ID returns the Community ID v1 of the flow k, "1:" followed by the
// base64 SHA-1 of the ordered tuple, for the given seed (0 unless the
// operator configured one). See the package doc for ICMP.
func ID(seed uint16, k event.FlowKey) string {
	var b [Len]byte
	return string(AppendID(b[:0], seed, k))
}

// AppendID appends the Community ID of k to dst and returns the extended
// slice; dst is returned unchanged when k has no valid addresses.
func AppendID(dst []byte, seed uint16, k event.FlowKey) []byte {
	// The fast path folds ICMP replies onto request types, which map the
	// same way as the packet-level tuple.
	return AppendTuple(dst, seed, k.Proto, k.Src, k.Dst, k.SrcPort, k.DstPort)
}

// TupleID returns the Community ID of one packet's tuple, for callers that
// have packets rather than flow keys: for ICMP and ICMPv6, sport is the
// message type and dport the code, unfolded (an echo reply is type 0/129).
// Ports are ignored for protocols without them.
func TupleID(seed uint16, proto uint8, src, dst netip.Addr, sport, dport uint16) string {
	var b [Len]byte
	return string(AppendTuple(b[:0], seed, proto, src, dst, sport, dport))
}

// AppendTuple is TupleID appending to dst.
func AppendTuple(dst []byte, seed uint16, proto uint8, src, daddr netip.Addr, sport, dport uint16) []byte {
	ports, oneWay := true, false
	switch proto {
	case protoTCP, protoUDP, protoSCTP:
	case protoICMP:
		sport, dport, oneWay = icmpPorts(icmp4Counterpart, sport, dport)
	case protoICMPv6:
		sport, dport, oneWay = icmpPorts(icmp6Counterpart, sport, dport)
	default:
		ports = false
	}
	if !ports {
		sport, dport = 0, 0
	}
	sum, ok := digest(seed, proto, src, daddr, sport, dport, ports, oneWay)
	if !ok {
		return dst
	}
	dst = append(dst, '1', ':')
	return base64.StdEncoding.AppendEncode(dst, sum[:])
}

// icmpPorts maps a type (in the key's source port) and code to the port
// equivalents and whether the type is one-way.
func icmpPorts(counterpart func(uint8) (uint8, bool), typ, code uint16) (sport, dport uint16, oneWay bool) {
	if typ <= 0xff {
		if c, ok := counterpart(uint8(typ)); ok {
			return typ, uint16(c), false
		}
	}
	return typ, code, true
}

// icmp4Counterpart is Zeek's ICMP4_counterpart (pycommunityid icmp.py).
func icmp4Counterpart(t uint8) (uint8, bool) {
	switch t {
	case 8: // echo -> echo reply
		return 0, true
	case 0:
		return 8, true
	case 13: // timestamp
		return 14, true
	case 14:
		return 13, true
	case 15: // information
		return 16, true
	case 16:
		return 15, true
	case 10: // router solicitation -> advertisement
		return 9, true
	case 9:
		return 10, true
	case 17: // address mask
		return 18, true
	case 18:
		return 17, true
	}
	return 0, false
}

// icmp6Counterpart is Zeek's ICMP6_counterpart (pycommunityid icmp6.py).
func icmp6Counterpart(t uint8) (uint8, bool) {
	switch t {
	case 128: // echo request -> reply
		return 129, true
	case 129:
		return 128, true
	case 130: // MLD listener query -> report
		return 131, true
	case 131:
		return 130, true
	case 133: // router solicitation -> advertisement
		return 134, true
	case 134:
		return 133, true
	case 135: // neighbor solicitation -> advertisement
		return 136, true
	case 136:
		return 135, true
	case 139: // node information (who-are-you) query -> reply
		return 140, true
	case 140:
		return 139, true
	case 144: // home agent address discovery request -> reply
		return 145, true
	case 145:
		return 144, true
	}
	return 0, false
}

// digest hashes the tuple as the spec lays it out: seed (2 bytes), source
// and destination address (4 or 16 bytes each), protocol, a zero byte, and,
// for protocols with ports, source and destination port (2 bytes each), all
// in network byte order, with the endpoints ordered so that the smaller
// (address, port) comes first unless oneWay.
func digest(seed uint16, proto uint8, src, dst netip.Addr, sport, dport uint16, ports, oneWay bool) ([sha1.Size]byte, bool) {
	if !src.IsValid() || !dst.IsValid() {
		return [sha1.Size]byte{}, false
	}
	src, dst = src.Unmap(), dst.Unmap()
	if src.Is4() != dst.Is4() {
		return [sha1.Size]byte{}, false
	}
	if !oneWay {
		c := src.Compare(dst) // same family: byte-wise order
		if c > 0 || c == 0 && sport > dport {
			src, dst = dst, src
			sport, dport = dport, sport
		}
	}
	var buf [2 + 16 + 16 + 2 + 4]byte
	buf[0], buf[1] = byte(seed>>8), byte(seed)
	n := 2
	if src.Is4() {
		a, b := src.As4(), dst.As4()
		n += copy(buf[n:], a[:])
		n += copy(buf[n:], b[:])
	} else {
		a, b := src.As16(), dst.As16()
		n += copy(buf[n:], a[:])
		n += copy(buf[n:], b[:])
	}
	buf[n], buf[n+1] = proto, 0
	n += 2
	if ports {
		buf[n], buf[n+1], buf[n+2], buf[n+3] = byte(sport>>8), byte(sport), byte(dport>>8), byte(dport)
		n += 4
	}
	return sha1.Sum(buf[:n]), true
}
