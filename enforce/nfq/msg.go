package nfq

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// The nfnetlink_queue protocol (include/uapi/linux/netfilter/
// nfnetlink_queue.h). Netlink and attribute headers are in host byte
// order, nfgenmsg's res_id and every attribute payload in network order.
const (
	subsysQueue = 3 // NFNL_SUBSYS_QUEUE

	msgPacket       = 0 // NFQNL_MSG_PACKET, kernel → us
	msgVerdict      = 1 // NFQNL_MSG_VERDICT
	msgConfig       = 2 // NFQNL_MSG_CONFIG
	msgVerdictBatch = 3 // NFQNL_MSG_VERDICT_BATCH: every queued id ≤ id

	attrPacketHdr  = 1  // NFQA_PACKET_HDR: be32 id, be16 hw_protocol, u8 hook
	attrVerdictHdr = 2  // NFQA_VERDICT_HDR: be32 verdict, be32 id
	attrPayload    = 10 // NFQA_PAYLOAD: the packet from its network header
	attrCapLen     = 13 // NFQA_CAP_LEN: original length when the payload was cut at copy_range
	attrSkbInfo    = 14 // NFQA_SKB_INFO

	cfgCmd      = 1 // NFQA_CFG_CMD: u8 command, u8 pad, be16 pf
	cfgParams   = 2 // NFQA_CFG_PARAMS: be32 copy_range, u8 copy_mode
	cfgMaxLen   = 3 // NFQA_CFG_QUEUE_MAXLEN: be32
	cfgMask     = 4 // NFQA_CFG_MASK: be32, which flags to change
	cfgFlags    = 5 // NFQA_CFG_FLAGS: be32
	cmdBind     = 1 // NFQNL_CFG_CMD_BIND
	cmdUnbind   = 2 // NFQNL_CFG_CMD_UNBIND
	copyPacket  = 2 // NFQNL_COPY_PACKET
	maxCopyLen  = 0xffff
	nfDrop      = 0 // NF_DROP
	nfAccept    = 1 // NF_ACCEPT
	verdictSize = unix.SizeofNlMsghdr + 4 + 4 + 8

	// NFQA_CFG_F_*.
	flagFailOpen = 1 << 0 // the kernel accepts packets when the queue is full
	flagGSO      = 1 << 2 // GSO packets are queued whole, not segmented first
)

// nlaTypeMask strips NLA_F_NESTED and NLA_F_NET_BYTEORDER from an
// attribute type.
const nlaTypeMask = ^uint16(unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)

var ne = binary.NativeEndian

func msgType(m uint16) uint16 { return subsysQueue<<8 | m }

// appendHeader appends a netlink header and nfgenmsg for queue; the
// caller appends attributes and then calls finish.
func appendHeader(b []byte, typ, flags uint16, seq uint32, queue uint16) []byte {
	b = ne.AppendUint32(b, 0) // length, set by finish
	b = ne.AppendUint16(b, typ)
	b = ne.AppendUint16(b, flags)
	b = ne.AppendUint32(b, seq)
	b = ne.AppendUint32(b, 0)              // port ID: the kernel
	b = append(b, unix.AF_UNSPEC, 0, 0, 0) // nfgenmsg: family, version 0
	binary.BigEndian.PutUint16(b[len(b)-2:], queue)
	return b
}

// finish sets the length of the message that starts at start.
func finish(b []byte, start int) []byte {
	ne.PutUint32(b[start:], uint32(len(b)-start))
	return b
}

func appendAttr(b []byte, typ uint16, data ...byte) []byte {
	b = ne.AppendUint16(b, uint16(unix.SizeofNlAttr+len(data)))
	b = ne.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%unix.NLA_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// appendBind appends the one config message that binds queue and sets
// copy mode, queue length and flags: one message, so that the queue never
// runs with the kernel's defaults (metadata only, no fail-open).
func appendBind(b []byte, seq uint32, queue uint16, maxLen, flags uint32) []byte {
	start := len(b)
	b = appendHeader(b, msgType(msgConfig), unix.NLM_F_REQUEST|unix.NLM_F_ACK, seq, queue)
	b = appendAttr(b, cfgCmd, cmdBind, 0, 0, 0)
	b = appendAttr(b, cfgParams, append(be32(maxCopyLen), copyPacket)...)
	b = appendAttr(b, cfgMaxLen, be32(maxLen)...)
	b = appendAttr(b, cfgMask, be32(flagFailOpen|flagGSO)...)
	b = appendAttr(b, cfgFlags, be32(flags)...)
	return finish(b, start)
}

// appendMaxLen appends a config message that changes the queue length.
func appendMaxLen(b []byte, seq uint32, queue uint16, maxLen uint32) []byte {
	start := len(b)
	b = appendHeader(b, msgType(msgConfig), unix.NLM_F_REQUEST|unix.NLM_F_ACK, seq, queue)
	b = appendAttr(b, cfgMaxLen, be32(maxLen)...)
	return finish(b, start)
}

// appendVerdict appends a verdict for packet id, or with batch for every
// packet of the queue with an id up to id. It is the hot path's encoder:
// it writes verdictSize bytes and allocates only when b must grow.
func appendVerdict(b []byte, seq uint32, queue uint16, batch bool, verdict, id uint32) []byte {
	typ := msgType(msgVerdict)
	if batch {
		typ = msgType(msgVerdictBatch)
	}
	n := len(b)
	b = append(b, make([]byte, verdictSize)...) // no allocation when cap suffices
	m := b[n:]
	ne.PutUint32(m[0:], verdictSize)
	ne.PutUint16(m[4:], typ)
	ne.PutUint16(m[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(m[8:], seq)
	ne.PutUint32(m[12:], 0)
	m[16], m[17] = unix.AF_UNSPEC, 0
	binary.BigEndian.PutUint16(m[18:], queue)
	ne.PutUint16(m[20:], 12)
	ne.PutUint16(m[22:], attrVerdictHdr)
	binary.BigEndian.PutUint32(m[24:], verdict)
	binary.BigEndian.PutUint32(m[28:], id)
	return b
}

// kind of a message from the kernel.
type kind uint8

const (
	kindOther  kind = iota // anything else: ignored
	kindPacket             // a queued packet
	kindError              // NLMSG_ERROR with a non-zero code
	kindAck                // NLMSG_ERROR with code 0
)

// message is one parsed netlink message.
type message struct {
	kind    kind
	seq     uint32
	id      uint32 // packet ID (kindPacket)
	payload []byte // kindPacket: the packet from its IP header, into the read buffer
	capLen  uint32 // kindPacket: original length if the payload was cut, else 0
	errno   unix.Errno
}

var errShort = errors.New("short netlink message")

// nextMessage parses the first netlink message of b and returns it with
// the rest of b.
func nextMessage(b []byte) (message, []byte, error) {
	var m message
	if len(b) < unix.SizeofNlMsghdr {
		return m, nil, fmt.Errorf("%w: %d bytes", errShort, len(b))
	}
	l := int(ne.Uint32(b[0:]))
	if l < unix.SizeofNlMsghdr || l > len(b) {
		return m, nil, fmt.Errorf("%w: length %d of %d bytes", errShort, l, len(b))
	}
	typ := ne.Uint16(b[4:])
	m.seq = ne.Uint32(b[8:])
	body := b[unix.SizeofNlMsghdr:l]
	rest := b[min(len(b), (l+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1)):]
	switch typ {
	case unix.NLMSG_ERROR:
		if len(body) < 4 {
			return m, rest, fmt.Errorf("%w: netlink error without code", errShort)
		}
		code := -int32(ne.Uint32(body))
		if code == 0 {
			m.kind = kindAck
		} else {
			m.kind, m.errno = kindError, unix.Errno(code)
		}
		// The echoed request's sequence number.
		if len(body) >= 4+unix.SizeofNlMsghdr {
			m.seq = ne.Uint32(body[4+8:])
		}
		return m, rest, nil
	case msgType(msgPacket):
	default:
		return m, rest, nil
	}
	if len(body) < 4 {
		return m, rest, fmt.Errorf("%w: packet message without nfgenmsg", errShort)
	}
	attrs := body[4:]
	seenHdr := false
	for len(attrs) >= unix.SizeofNlAttr {
		al := int(ne.Uint16(attrs[0:]))
		at := ne.Uint16(attrs[2:]) & nlaTypeMask
		if al < unix.SizeofNlAttr || al > len(attrs) {
			return m, rest, fmt.Errorf("%w: attribute %d length %d of %d bytes", errShort, at, al, len(attrs))
		}
		data := attrs[unix.SizeofNlAttr:al]
		switch at {
		case attrPacketHdr:
			if len(data) < 4 {
				return m, rest, fmt.Errorf("%w: packet header of %d bytes", errShort, len(data))
			}
			m.id, seenHdr = binary.BigEndian.Uint32(data), true
		case attrPayload:
			m.payload = data
		case attrCapLen:
			if len(data) >= 4 {
				m.capLen = binary.BigEndian.Uint32(data)
			}
		}
		attrs = attrs[min(len(attrs), (al+unix.NLA_ALIGNTO-1)&^(unix.NLA_ALIGNTO-1)):]
	}
	if !seenHdr {
		return m, rest, fmt.Errorf("packet message without packet header")
	}
	m.kind = kindPacket
	return m, rest, nil
}
