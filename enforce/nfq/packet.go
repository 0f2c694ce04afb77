package nfq

import "encoding/binary"

// packet is what the rules look at: the transport protocol, the
// destination port and the transport payload.
type packet struct {
	ok       bool // an IPv4 or IPv6 header was parsed
	proto    uint8
	hasPorts bool // a whole TCP or UDP header was found (not a later fragment)
	dport    uint16
	payload  []byte
}

// maxExtHeaders bounds the IPv6 extension-header walk.
const maxExtHeaders = 8

// parse finds the transport payload of an IP packet. It never panics on
// short or malformed input: what it cannot parse does not match rules
// that need it.
func parse(b []byte) packet {
	var p packet
	if len(b) < 1 {
		return p
	}
	var l4 []byte
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return p
		}
		ihl := int(b[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(b[2:4]))
		if ihl < 20 || len(b) < ihl {
			return p
		}
		// GSO packets (NFQA_CFG_F_GSO) may carry a zero total length;
		// otherwise trim link padding.
		if total >= ihl && total < len(b) {
			b = b[:total]
		}
		p.ok, p.proto, l4 = true, b[9], b[ihl:]
		if binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 { // a later fragment: no L4 header
			p.payload = l4
			return p
		}
	case 6:
		if len(b) < 40 {
			return p
		}
		if pl := int(binary.BigEndian.Uint16(b[4:6])); pl > 0 && 40+pl < len(b) {
			b = b[:40+pl]
		}
		next, rest := b[6], b[40:]
	walk:
		for range maxExtHeaders {
			switch next {
			case 0, 43, 60: // hop-by-hop, routing, destination options
				if len(rest) < 8 {
					return p
				}
				n := (int(rest[1]) + 1) * 8
				if len(rest) < n {
					return p
				}
				next, rest = rest[0], rest[n:]
				continue
			case 51: // AH
				if len(rest) < 8 {
					return p
				}
				n := (int(rest[1]) + 2) * 4
				if len(rest) < n {
					return p
				}
				next, rest = rest[0], rest[n:]
				continue
			case 44: // fragment
				if len(rest) < 8 {
					return p
				}
				frag := binary.BigEndian.Uint16(rest[2:4]) &^ 7
				next, rest = rest[0], rest[8:]
				if frag != 0 {
					p.ok, p.proto, p.payload = true, next, rest
					return p
				}
				continue
			}
			break walk
		}
		p.ok, p.proto, l4 = true, next, rest
	default:
		return p
	}
	switch p.proto {
	case ProtoTCP:
		if len(l4) < 20 {
			return p
		}
		off := int(l4[12]>>4) * 4
		if off < 20 || len(l4) < off {
			return p
		}
		p.hasPorts, p.dport, p.payload = true, binary.BigEndian.Uint16(l4[2:4]), l4[off:]
	case ProtoUDP:
		if len(l4) < 8 {
			return p
		}
		p.hasPorts, p.dport, p.payload = true, binary.BigEndian.Uint16(l4[2:4]), l4[8:]
	default:
		p.payload = l4
	}
	return p
}
