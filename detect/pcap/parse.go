package pcap

import (
	"encoding/binary"

	"github.com/gopacket/gopacket/layers"
)

// This file is the Go twin of bpf/parse.h: the same headers, bounds,
// results and error reasons, byte for byte. Each check names the line of
// parse.h it mirrors where that is not obvious. Headers are decoded by
// hand rather than with gopacket's DecodingLayerParser: the rules below
// differ from gopacket's in ways that matter for equality with the fast
// path (a TCP data offset past the captured bytes, a short IPv4 total
// length, extension headers bounded at six, ...), and the hand decoder is
// several times faster (see BenchmarkDecode in decode_bench_test.go).

// EtherTypes, IP protocol numbers and bounds from bpf/consts.h.
const (
	ethPIP     = 0x0800
	ethPIPv6   = 0x86DD
	ethPARP    = 0x0806
	ethP8021Q  = 0x8100
	ethP8021AD = 0x88A8
	ethHLen    = 14

	nextHdrHop      = 0
	nextHdrRouting  = 43
	nextHdrFragment = 44
	nextHdrAuth     = 51
	nextHdrDest     = 60
	nextHdrMobility = 135

	protoICMP  = 1
	protoTCP   = 6
	protoUDP   = 17
	protoICMP6 = 58

	vlanMax    = 2 // WL_VLAN_MAX
	ipv6ExtMax = 6 // WL_IPV6_EXT_MAX
)

// result is the outcome of parse: ok, non-IP, ARP, or a parse error whose
// reason mirrors the wl_stat index the fast path counts.
type result uint8

const (
	resOK result = iota
	resNonIP
	resARP
	resErrEth
	resErrVLAN
	resErrIPv4
	resErrIPv6
	resErrIPv6Ext
	resErrL4
)

// flowKey mirrors struct wl_flow_key: 44 bytes without implicit padding,
// so the Go map hashes it as plain memory. Ports are host-order values.
type flowKey struct {
	saddr [16]byte
	daddr [16]byte
	sport uint16
	dport uint16
	vlan  [2]uint16 // outer, inner
	proto uint8
	_     [3]uint8
}

// pkt mirrors struct pkt in parse.h. key is oriented as the packet.
type pkt struct {
	key        flowKey
	payloadOff int    // offset of the L4 payload from the start of the captured data
	payloadLen uint32 // L4 payload bytes (0 for ICMP and fragments), from the IP length
	tcpSeq     uint32
	tcpFlags   uint8
	frag       bool // non-first fragment: no L4 header
	v6         bool
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }

func v4Mapped(dst *[16]byte, a []byte) {
	*dst = [16]byte{10: 0xff, 11: 0xff, 12: a[0], 13: a[1], 14: a[2], 15: a[3]}
}

// icmpFold mirrors icmp_fold: replies fold onto their requests so both
// directions share a key (the mapping Community ID v1 uses).
func icmpFold(typ uint8, v6 bool) uint16 {
	if !v6 {
		switch typ {
		case 0:
			return 8
		case 14:
			return 13
		case 16:
			return 15
		case 18:
			return 17
		}
	} else {
		switch typ {
		case 129:
			return 128
		case 136:
			return 135
		case 131:
			return 130
		}
	}
	return uint16(typ)
}

// linkHeaderLen is the length of the link-layer header that counters
// replace with an Ethernet header's 14 bytes (see wireLen). For Ethernet
// it is 14, so nothing changes.
func linkHeaderLen(lt layers.LinkType) int {
	switch lt {
	case layers.LinkTypeLinuxSLL:
		return 16
	case layers.LinkTypeLinuxSLL2:
		return 20
	case layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6:
		return 0
	case layers.LinkTypeNull, layers.LinkTypeLoop, layers.LinkTypeC_HDLC:
		return 4
	}
	return ethHLen
}

// parse mirrors parse_frame for a frame of link type lt. data holds the
// captured bytes; frameLen is the original length in the same coordinates
// (the fast path's bpf_xdp_get_buff_len), which matters only to where the
// IP datagram ends when its length field is unusable.
func parse(data []byte, frameLen int, lt layers.LinkType, p *pkt) result {
	var proto uint16
	var off int
	switch lt {
	case layers.LinkTypeEthernet:
		if len(data) < ethHLen {
			return resErrEth
		}
		proto, off = be16(data[12:]), ethHLen
	case layers.LinkTypeLinuxSLL: // 16-byte cooked header, protocol at 14
		if len(data) < 16 {
			return resErrEth
		}
		proto, off = be16(data[14:]), 16
	case layers.LinkTypeLinuxSLL2: // 20-byte cooked header, protocol at 0
		if len(data) < 20 {
			return resErrEth
		}
		proto, off = be16(data[0:]), 20
	case layers.LinkTypeC_HDLC: // Cisco HDLC: address, control, EtherType
		if len(data) < 4 {
			return resErrEth
		}
		proto, off = be16(data[2:]), 4
	case layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6:
		if len(data) < 1 {
			return resErrEth
		}
		switch data[0] >> 4 {
		case 4:
			proto = ethPIP
		case 6:
			proto = ethPIPv6
		default:
			return resNonIP
		}
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		if len(data) < 4 {
			return resErrEth
		}
		// The address family, in the capturing host's byte order for
		// NULL and in network order for LOOP: the value is small, so
		// whichever half is non-zero tells the order.
		fam := binary.LittleEndian.Uint32(data)
		if fam > 0xffff {
			fam = binary.BigEndian.Uint32(data)
		}
		switch fam {
		case 2: // AF_INET everywhere
			proto = ethPIP
		case 10, 24, 28, 30: // AF_INET6: Linux, NetBSD/OpenBSD, FreeBSD, Darwin
			proto = ethPIPv6
		default:
			return resNonIP
		}
		off = 4
	default:
		return resNonIP
	}

	for i := 0; i < vlanMax; i++ {
		if proto != ethP8021Q && proto != ethP8021AD {
			break
		}
		if off+4 > len(data) {
			return resErrVLAN
		}
		p.key.vlan[i] = be16(data[off:]) & 0x0fff
		proto = be16(data[off+2:])
		off += 4
	}
	if proto == ethP8021Q || proto == ethP8021AD {
		return resErrVLAN // more tags than WL_VLAN_MAX
	}

	switch proto {
	case ethPIP:
		return parseIPv4(data, off, frameLen, p)
	case ethPIPv6:
		return parseIPv6(data, off, frameLen, p)
	case ethPARP:
		// struct arp_eth_ipv4: 28 bytes; other ARP flavours are non-IP.
		if off+28 > len(data) {
			return resNonIP
		}
		a := data[off : off+28]
		if be16(a[0:]) != 1 || be16(a[2:]) != ethPIP || a[4] != 6 || a[5] != 4 {
			return resNonIP
		}
		v4Mapped(&p.key.saddr, a[14:18])
		v4Mapped(&p.key.daddr, a[24:28])
		p.key.sport = be16(a[6:])
		p.payloadOff = off
		p.payloadLen = 28
		return resARP
	}
	return resNonIP
}

func parseIPv4(data []byte, off, frameLen int, p *pkt) result {
	if off+20 > len(data) {
		return resErrIPv4
	}
	ip := data[off:]
	if ip[0]>>4 != 4 || ip[0]&0x0f < 5 {
		return resErrIPv4
	}
	hlen := int(ip[0]&0x0f) * 4
	l4 := off + hlen
	if l4 > len(data) {
		return resErrIPv4
	}
	v4Mapped(&p.key.saddr, ip[12:16])
	v4Mapped(&p.key.daddr, ip[16:20])
	p.key.proto = ip[9]
	if be16(ip[6:])&0x1fff != 0 {
		p.frag = true
	}
	// End of the datagram: tot_len, unless it is 0 or short (GSO
	// super-packets); then the frame end.
	tot := int(be16(ip[2:]))
	ipEnd := frameLen
	if tot >= hlen && off+tot < frameLen {
		ipEnd = off + tot
	}
	return parseL4(data, l4, ipEnd, false, p)
}

func isExtHdr(nh uint8) bool {
	return nh == nextHdrHop || nh == nextHdrRouting || nh == nextHdrDest ||
		nh == nextHdrMobility || nh == nextHdrAuth || nh == nextHdrFragment
}

func parseIPv6(data []byte, off, frameLen int, p *pkt) result {
	if off+40 > len(data) {
		return resErrIPv6
	}
	ip := data[off:]
	if ip[0]>>4 != 6 {
		return resErrIPv6
	}
	copy(p.key.saddr[:], ip[8:24])
	copy(p.key.daddr[:], ip[24:40])
	p.v6 = true

	nh := ip[6]
	pos := off + 40
	done := false
	for i := 0; i < ipv6ExtMax && !done; i++ {
		switch nh {
		case nextHdrHop, nextHdrRouting, nextHdrDest, nextHdrMobility:
			if pos+8 > len(data) {
				return resErrIPv6Ext
			}
			nh = data[pos]
			pos += (int(data[pos+1]) + 1) * 8
			if pos > len(data) {
				return resErrIPv6Ext
			}
		case nextHdrAuth:
			if pos+8 > len(data) {
				return resErrIPv6Ext
			}
			nh = data[pos]
			pos += (int(data[pos+1]) + 2) * 4
			if pos > len(data) {
				return resErrIPv6Ext
			}
		case nextHdrFragment:
			if pos+8 > len(data) {
				return resErrIPv6Ext
			}
			if be16(data[pos+2:])&0xfff8 != 0 {
				p.frag = true
			}
			nh = data[pos]
			pos += 8
		default:
			done = true
		}
	}
	if !done && isExtHdr(nh) {
		return resErrIPv6Ext // still an extension header after WL_IPV6_EXT_MAX
	}
	p.key.proto = nh
	plen := int(be16(ip[4:]))
	ipEnd := frameLen
	if plen != 0 && off+40+plen < frameLen {
		ipEnd = off + 40 + plen
	}
	return parseL4(data, pos, ipEnd, true, p)
}

func parseL4(data []byte, pos, ipEnd int, v6 bool, p *pkt) result {
	if p.frag {
		p.payloadOff = pos // non-first fragment: tracked by addresses
		return resOK
	}
	switch p.key.proto {
	case protoTCP:
		if pos+20 > len(data) {
			return resErrL4
		}
		th := data[pos:]
		doff := int(th[12]>>4) * 4
		if doff < 20 {
			return resErrL4
		}
		p.key.sport = be16(th[0:])
		p.key.dport = be16(th[2:])
		p.tcpFlags = th[13]
		p.tcpSeq = binary.BigEndian.Uint32(th[4:])
		p.payloadOff = pos + doff
	case protoUDP:
		if pos+8 > len(data) {
			return resErrL4
		}
		p.key.sport = be16(data[pos:])
		p.key.dport = be16(data[pos+2:])
		p.payloadOff = pos + 8
	case protoICMP, protoICMP6:
		if pos+4 > len(data) {
			return resErrL4
		}
		if (p.key.proto == protoICMP) == v6 {
			return resOK // ICMP in IPv6 / ICMPv6 in IPv4: no ports
		}
		p.key.sport = icmpFold(data[pos], v6)
		p.key.dport = uint16(data[pos+1])
		p.payloadOff = pos + 4
		return resOK
	default:
		p.payloadOff = pos
		return resOK
	}
	// TCP/UDP payload length from the IP length, which ignores Ethernet
	// padding of short frames.
	if ipEnd > p.payloadOff {
		p.payloadLen = uint32(ipEnd - p.payloadOff)
	}
	return resOK
}
