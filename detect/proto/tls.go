package proto

import (
	"encoding/binary"
	"fmt"
)

// TLS extension types the parser reads.
const (
	extServerName          = 0x0000
	extSupportedGroups     = 0x000a
	extECPointFormats      = 0x000b
	extSignatureAlgorithms = 0x000d
	extALPN                = 0x0010
	extSupportedVersions   = 0x002b
	extKeyShare            = 0x0033
)

// Record and handshake constants.
const (
	tlsRecordHandshake = 0x16
	tlsClientHello     = 0x01
	tlsRecordHeaderLen = 5
	// tlsMaxRecord bounds a record's length field: 2^14 plaintext plus
	// the 2048 bytes RFC 8446 allows for expansion.
	tlsMaxRecord = 1<<14 + 2048
)

// ClientHello is a parsed TLS ClientHello. Lists keep the wire order and
// include GREASE values (IsGREASE tells them apart); the fingerprint methods
// drop GREASE as their specifications require.
type ClientHello struct {
	RecordVersion     uint16   // version field of the first record header
	LegacyVersion     uint16   // legacy_version (client_version) of the hello
	SessionIDLen      int      // length of legacy_session_id
	CipherSuites      []uint16 // in wire order
	Compression       []uint8  // compression methods
	Extensions        []uint16 // extension types in wire order
	SNI               string   // first host_name of server_name, as sent
	ALPN              []string // protocol names in order, as sent (may be binary; the first 16)
	SupportedVersions []uint16 // supported_versions (0x002b)
	SupportedGroups   []uint16 // supported_groups (0x000a)
	ECPointFormats    []uint8  // ec_point_formats (0x000b)
	// SignatureAlgorithms is signature_algorithms (0x000d).
	SignatureAlgorithms []uint16
	KeyShareGroups      []uint16 // groups of the key_share entries (0x0033)
	GREASE              bool     // a GREASE value appeared in any list above
	// HasSNI / HasALPN: the extension was present (even if empty).
	HasSNI, HasALPN bool
	// HandshakeLen is the length of the ClientHello body as announced in
	// the handshake header.
	HandshakeLen int
}

// IsGREASE reports whether v is one of the reserved GREASE values
// (RFC 8701): 0x0a0a, 0x1a1a, ..., 0xfafa.
func IsGREASE(v uint16) bool {
	return v&0x0f0f == 0x0a0a && v>>8 == v&0xff
}

// ParseClientHello parses a TLS ClientHello from the start of a client's
// TCP stream: one or more TLS records (content type 22, handshake) whose
// fragments carry the ClientHello handshake message, which may span several
// records. If the input ends before the message does, the fields that were
// complete are returned with an error wrapping ErrTruncated; fingerprints of
// a truncated hello are not meaningful. Offsets in errors count from b[0].
func ParseClientHello(b []byte) (ClientHello, error) {
	var h ClientHello
	if len(b) < tlsRecordHeaderLen {
		return h, truncErr("tls", "record header", 0, fmt.Sprintf("%d of 5 bytes", len(b)))
	}
	if err := checkRecordHeader(b, 0); err != nil {
		return h, err
	}
	h.RecordVersion = binary.BigEndian.Uint16(b[1:])

	// Fast path: the whole handshake message sits in the first record.
	rlen := int(binary.BigEndian.Uint16(b[3:]))
	frag := b[tlsRecordHeaderLen:min(len(b), tlsRecordHeaderLen+rlen)]
	if len(frag) >= 4 {
		mlen := int(frag[1])<<16 | int(frag[2])<<8 | int(frag[3])
		if 4+mlen <= len(frag) {
			return h, h.parseHandshake(frag[:4+mlen], offsetMap{{0, tlsRecordHeaderLen}})
		}
	}

	// The message spans records (or was cut): collect the fragments of
	// consecutive handshake records until the announced length is there.
	var msg []byte
	var omBuf [8]offsetPair
	om := offsetMap(omBuf[:0])
	off := 0
	want := -1 // total handshake message length once known
	for off < len(b) {
		if want >= 0 && len(msg) >= want {
			break
		}
		if len(b)-off < tlsRecordHeaderLen {
			break // cut inside a record header
		}
		if err := checkRecordHeader(b, off); err != nil {
			if want < 0 {
				return h, err
			}
			// Another content type after a cut handshake message.
			return h, malErr("tls", "record", off, fmt.Sprintf(
				"content type %#x before the ClientHello's %d bytes were complete (have %d)", b[off], want, len(msg)))
		}
		rlen := int(binary.BigEndian.Uint16(b[off+3:]))
		start := off + tlsRecordHeaderLen
		end := min(len(b), start+rlen)
		if len(om) < len(omBuf) {
			om = append(om, offsetPair{len(msg), start})
		}
		if msg == nil {
			msg = make([]byte, 0, max(rlen*2, 512))
		}
		msg = append(msg, b[start:end]...)
		if want < 0 && len(msg) >= 4 {
			want = 4 + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]))
		}
		off = start + rlen
	}
	if want >= 0 && len(msg) > want {
		msg = msg[:want]
	}
	return h, h.parseHandshake(msg, om)
}

func checkRecordHeader(b []byte, off int) error {
	if b[off] != tlsRecordHandshake {
		return malErr("tls", "record header", off, fmt.Sprintf("content type %#02x, want handshake (0x16)", b[off]))
	}
	if b[off+1] != 3 {
		return malErr("tls", "record header", off+1, fmt.Sprintf("record version %#04x is not SSL 3.0/TLS", binary.BigEndian.Uint16(b[off+1:])))
	}
	if n := int(binary.BigEndian.Uint16(b[off+3:])); n == 0 || n > tlsMaxRecord {
		return malErr("tls", "record header", off+3, fmt.Sprintf("record length %d out of range 1..%d", n, tlsMaxRecord))
	}
	return nil
}

// ParseClientHelloHandshake parses a ClientHello handshake message without
// the record layer (as QUIC carries it in CRYPTO frames): b starts with the
// handshake header (type 1, 24-bit length). Truncation and errors as in
// ParseClientHello; offsets count from b[0].
func ParseClientHelloHandshake(b []byte) (ClientHello, error) {
	var h ClientHello
	return h, h.parseHandshake(b, nil)
}

// offsetMap maps offsets in a reassembled handshake message back to the
// input: each pair says message byte msg is input byte in. Only the first
// few records are kept; later offsets are then approximate.
type offsetMap []offsetPair

type offsetPair struct{ msg, in int }

func (m offsetMap) input(off int) int {
	if len(m) == 0 {
		return off
	}
	p := m[0]
	for _, q := range m[1:] {
		if q.msg > off {
			break
		}
		p = q
	}
	return p.in + off - p.msg
}

// parseHandshake parses a handshake message (header included) that may be
// cut short.
func (h *ClientHello) parseHandshake(msg []byte, om offsetMap) error {
	if len(msg) < 4 {
		return truncErr("tls", "handshake header", om.input(0), fmt.Sprintf("%d of 4 bytes", len(msg)))
	}
	if msg[0] != tlsClientHello {
		return malErr("tls", "handshake header", om.input(0), fmt.Sprintf("handshake type %d, want ClientHello (1)", msg[0]))
	}
	h.HandshakeLen = int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])
	body := msg[4:]
	cut := len(body) < h.HandshakeLen
	if !cut {
		body = body[:h.HandshakeLen]
	}
	var strBuf [256]byte // SNI and ALPN names, on the stack unless longer
	p := helloParser{h: h, b: body, cut: cut, om: om, str: strBuf[:0]}
	err := p.parse()
	p.finish()
	return err
}

// helloParser reads the ClientHello body. Every read checks its bounds;
// running past the end is truncation when the body was cut and a malformed
// length otherwise.
type helloParser struct {
	h   *ClientHello
	b   []byte
	cut bool
	om  offsetMap

	u16   []uint16 // one arena for all uint16 lists
	bytes []byte   // one arena for the uint8 lists
	str   []byte   // SNI and ALPN names, turned into one string at the end
	sni   [2]int   // start and end of the SNI in str
	// Start and end offsets in str of the first tlsMaxALPN ALPN names.
	alpn  [2 * tlsMaxALPN]int
	nALPN int
}

// tlsMaxALPN bounds the ALPN names kept (browsers send two or three).
const tlsMaxALPN = 16

func (p *helloParser) fail(what string, off int, reason string) error {
	in := p.om.input(4 + off) // +4: the handshake header
	if p.cut {
		return truncErr("tls", what, in, reason)
	}
	return malErr("tls", what, in, reason)
}

// vec returns the n bytes at off, or an error naming what.
func (p *helloParser) vec(what string, off, n int) ([]byte, error) {
	if off+n > len(p.b) {
		// Report where the data ran out, not where the field would end.
		return nil, p.fail(what, min(off, len(p.b)), fmt.Sprintf("needs %d bytes, %d left", n, max(len(p.b)-off, 0)))
	}
	return p.b[off : off+n], nil
}

func (p *helloParser) takeU16(v []byte) []uint16 {
	start := len(p.u16)
	for i := 0; i+1 < len(v); i += 2 {
		x := uint16(v[i])<<8 | uint16(v[i+1])
		if IsGREASE(x) {
			p.h.GREASE = true
		}
		p.u16 = append(p.u16, x)
	}
	return p.u16[start:len(p.u16):len(p.u16)]
}

func (p *helloParser) takeBytes(v []byte) []byte {
	start := len(p.bytes)
	p.bytes = append(p.bytes, v...)
	return p.bytes[start:len(p.bytes):len(p.bytes)]
}

func (p *helloParser) parse() (err error) {
	h := p.h
	// The arenas never need more than the body itself.
	p.u16 = make([]uint16, 0, len(p.b)/2+1)
	p.bytes = make([]byte, 0, 16)

	v, err := p.vec("legacy_version", 0, 2)
	if err != nil {
		return err
	}
	h.LegacyVersion = binary.BigEndian.Uint16(v)
	off := 2 + 32 // random
	if v, err = p.vec("session id length", off, 1); err != nil {
		return err
	}
	h.SessionIDLen = int(v[0])
	if h.SessionIDLen > 32 {
		return malErr("tls", "session id length", p.om.input(4+off), fmt.Sprintf("%d > 32", h.SessionIDLen))
	}
	off += 1 + h.SessionIDLen
	if v, err = p.vec("cipher suites length", off, 2); err != nil {
		return err
	}
	n := int(binary.BigEndian.Uint16(v))
	if n%2 != 0 {
		return malErr("tls", "cipher suites length", p.om.input(4+off), fmt.Sprintf("%d is odd", n))
	}
	off += 2
	if v, err = p.vec("cipher suites", off, n); err != nil {
		return err
	}
	h.CipherSuites = p.takeU16(v)
	off += n
	if v, err = p.vec("compression methods length", off, 1); err != nil {
		return err
	}
	n = int(v[0])
	off++
	if v, err = p.vec("compression methods", off, n); err != nil {
		return err
	}
	h.Compression = p.takeBytes(v)
	off += n
	if off == len(p.b) && !p.cut {
		return nil // no extensions (SSL 3.0 / early TLS)
	}
	if v, err = p.vec("extensions length", off, 2); err != nil {
		return err
	}
	n = int(binary.BigEndian.Uint16(v))
	off += 2
	end := off + n
	if end > len(p.b) {
		if !p.cut {
			return p.fail("extensions", off, fmt.Sprintf("length %d exceeds the %d bytes left", n, len(p.b)-off))
		}
		end = len(p.b)
	}
	// Bytes after the extensions block are ignored, as TLS stacks do.
	// Pass 1: the extension types, contiguous in the arena; pass 2: their
	// contents (which append other lists to the arena).
	start := len(p.u16)
	var failed error
	extStart := off
	for off < end {
		if off+4 > end {
			failed = p.fail("extension header", off, fmt.Sprintf("%d of 4 bytes", end-off))
			break
		}
		typ := binary.BigEndian.Uint16(p.b[off:])
		elen := int(binary.BigEndian.Uint16(p.b[off+2:]))
		if off+4+elen > end {
			failed = p.fail(fmt.Sprintf("extension %#04x", typ), off, fmt.Sprintf("length %d exceeds the %d bytes left", elen, end-off-4))
			break
		}
		if IsGREASE(typ) {
			h.GREASE = true
		}
		p.u16 = append(p.u16, typ)
		off += 4 + elen
	}
	h.Extensions = p.u16[start:len(p.u16):len(p.u16)]
	for i, off := 0, extStart; i < len(h.Extensions); i++ {
		elen := int(binary.BigEndian.Uint16(p.b[off+2:]))
		if err := p.extension(h.Extensions[i], off+4, p.b[off+4:off+4+elen]); err != nil {
			return err
		}
		off += 4 + elen
	}
	if failed != nil {
		return failed
	}
	if p.cut {
		return p.fail("ClientHello", len(p.b), fmt.Sprintf("%d of %d bytes", len(p.b), h.HandshakeLen))
	}
	return nil
}

// extension parses the extensions the fingerprints and detectors need; off
// is the offset of d in the body.
func (p *helloParser) extension(typ uint16, off int, d []byte) error {
	h := p.h
	bad := func(reason string) error {
		return malErr("tls", fmt.Sprintf("extension %#04x", typ), p.om.input(4+off), reason)
	}
	// list16 returns the vector behind a 2-byte length covering all of d.
	list16 := func() ([]byte, error) {
		if len(d) < 2 || int(binary.BigEndian.Uint16(d)) != len(d)-2 {
			return nil, bad("list length does not match the extension length")
		}
		return d[2:], nil
	}
	switch typ {
	case extServerName:
		h.HasSNI = true
		l, err := list16()
		if err != nil {
			return err
		}
		for len(l) >= 3 {
			nt, n := l[0], int(binary.BigEndian.Uint16(l[1:]))
			if 3+n > len(l) {
				return bad("server name longer than the list")
			}
			if nt == 0 && p.sni[1] == 0 && n > 0 {
				p.sni[0] = len(p.str)
				p.str = append(p.str, l[3:3+n]...)
				p.sni[1] = len(p.str)
			}
			l = l[3+n:]
		}
	case extALPN:
		h.HasALPN = true
		l, err := list16()
		if err != nil {
			return err
		}
		for len(l) > 0 {
			n := int(l[0])
			if 1+n > len(l) {
				return bad("protocol name longer than the list")
			}
			if p.nALPN < tlsMaxALPN {
				p.alpn[2*p.nALPN] = len(p.str)
				p.str = append(p.str, l[1:1+n]...)
				p.alpn[2*p.nALPN+1] = len(p.str)
				p.nALPN++
			}
			l = l[1+n:]
		}
	case extSignatureAlgorithms:
		l, err := list16()
		if err != nil {
			return err
		}
		h.SignatureAlgorithms = p.takeU16(l)
	case extSupportedGroups:
		l, err := list16()
		if err != nil {
			return err
		}
		h.SupportedGroups = p.takeU16(l)
	case extECPointFormats:
		if len(d) < 1 || int(d[0]) != len(d)-1 {
			return bad("list length does not match the extension length")
		}
		h.ECPointFormats = p.takeBytes(d[1:])
	case extSupportedVersions:
		if len(d) < 1 || int(d[0]) != len(d)-1 || len(d)%2 != 1 {
			return bad("list length does not match the extension length")
		}
		h.SupportedVersions = p.takeU16(d[1:])
	case extKeyShare:
		l, err := list16()
		if err != nil {
			return err
		}
		start := len(p.u16)
		for len(l) >= 4 {
			g, n := binary.BigEndian.Uint16(l), int(binary.BigEndian.Uint16(l[2:]))
			if 4+n > len(l) {
				return bad("key share entry longer than the list")
			}
			if IsGREASE(g) {
				h.GREASE = true
			}
			p.u16 = append(p.u16, g)
			l = l[4+n:]
		}
		h.KeyShareGroups = p.u16[start:len(p.u16):len(p.u16)]
	}
	return nil
}

// finish turns the collected names into strings sharing one allocation.
func (p *helloParser) finish() {
	if len(p.str) == 0 && p.nALPN == 0 {
		return
	}
	s := string(p.str)
	p.h.SNI = s[p.sni[0]:p.sni[1]]
	if p.nALPN > 0 {
		p.h.ALPN = make([]string, p.nALPN)
		for i := range p.h.ALPN {
			p.h.ALPN[i] = s[p.alpn[2*i]:p.alpn[2*i+1]]
		}
	}
}
