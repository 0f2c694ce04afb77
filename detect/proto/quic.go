package proto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
)

// ErrNotQUICInitial: a datagram that does not start with a client Initial
// packet of a QUIC version this package knows (v1, v2, draft-23..29).
var ErrNotQUICInitial = errors.New("not a QUIC Initial packet")

// QUIC versions whose Initial packets can be decrypted.
const (
	QUICv1 = 0x00000001
	QUICv2 = 0x6b3343cf
)

// quicMaxCrypto bounds the CRYPTO stream kept per connection: a ClientHello
// with post-quantum key shares is a few KiB.
const quicMaxCrypto = 1 << 16

type quicVersion struct {
	salt                   []byte
	keyLabel, ivLabel, hp  string
	initialType, retryType byte // long-header packet types
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

var (
	quicV1Params = quicVersion{mustHex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a"), "quic key", "quic iv", "quic hp", 0, 3}
	quicV2Params = quicVersion{mustHex("0dede3def700a6db819381be6e269dcbf9bd2ed9"), "quicv2 key", "quicv2 iv", "quicv2 hp", 1, 0}
	quicD29      = quicVersion{mustHex("afbfec289993d24c9e9786f19c6111e04390a899"), "quic key", "quic iv", "quic hp", 0, 3}
	quicD23      = quicVersion{mustHex("c3eef712c72ebb5a11a7d2432bb46365bef9f502"), "quic key", "quic iv", "quic hp", 0, 3}
)

func quicParams(v uint32) (*quicVersion, bool) {
	switch {
	case v == QUICv1:
		return &quicV1Params, true
	case v == QUICv2:
		return &quicV2Params, true
	case v == 0xff00001d:
		return &quicD29, true
	case v >= 0xff000017 && v <= 0xff00001c:
		return &quicD23, true
	}
	return nil, false
}

// QUICCrypto collects the CRYPTO stream that a client's QUIC Initial
// packets carry (its ClientHello), decrypting them with the Initial keys
// derived from the first Initial's destination connection ID (RFC 9001
// section 5, RFC 9369 for v2). Feed it the client's datagrams in order with
// AddDatagram until Complete; Bytes is then the ClientHello handshake
// message for ParseClientHelloHandshake. It is for the offline pcap path and
// any future QUIC snippet; the zero value is ready to use.
type QUICCrypto struct {
	Version uint32 // QUIC version of the first Initial
	DCID    []byte // original destination connection ID (key derivation)

	aead   cipher.AEAD
	iv     [12]byte
	hp     cipher.Block
	frames []quicFrame
	buf    []byte // contiguous stream from offset 0, rebuilt by Bytes
	dirty  bool
}

type quicFrame struct {
	off  int
	data []byte
}

// AddDatagram decrypts the Initial packets of one client datagram
// (coalesced packets included; 0-RTT and Handshake packets are skipped) and
// keeps their CRYPTO frames. It returns ErrNotQUICInitial when the datagram
// does not start with a known-version Initial, and a *ParseError for a
// malformed or undecryptable packet.
func (c *QUICCrypto) AddDatagram(d []byte) error {
	off := 0
	first := true
	for off < len(d) {
		n, err := c.addPacket(d[off:], off, first)
		if err != nil {
			return err
		}
		if n == 0 {
			break // short header or padding after the long-header packets
		}
		off += n
		first = false
	}
	return nil
}

// addPacket handles one long-header packet at the start of p (base is its
// offset in the datagram) and returns its length, or 0 to stop.
func (c *QUICCrypto) addPacket(p []byte, base int, first bool) (int, error) {
	bad := func(what string, off int, reason string) error {
		return malErr("quic", what, base+off, reason)
	}
	if len(p) < 7 || p[0]&0x80 == 0 {
		if first {
			return 0, ErrNotQUICInitial
		}
		return 0, nil
	}
	version := binary.BigEndian.Uint32(p[1:])
	params, ok := quicParams(version)
	if !ok {
		if first {
			return 0, ErrNotQUICInitial
		}
		return 0, nil
	}
	ptype := p[0] >> 4 & 3
	off := 5
	dcidLen := int(p[off])
	off++
	if dcidLen > 20 || off+dcidLen >= len(p) {
		return 0, bad("destination connection ID", off-1, fmt.Sprintf("length %d", dcidLen))
	}
	dcid := p[off : off+dcidLen]
	off += dcidLen
	scidLen := int(p[off])
	off++
	if scidLen > 20 || off+scidLen > len(p) {
		return 0, bad("source connection ID", off-1, fmt.Sprintf("length %d", scidLen))
	}
	off += scidLen
	if ptype != params.initialType {
		if first {
			return 0, ErrNotQUICInitial
		}
		if ptype == params.retryType {
			return 0, nil // Retry has no length: nothing follows it
		}
		// 0-RTT or Handshake: skip it by its length.
		n, m, ok := quicVarint(p[off:])
		if !ok || uint64(len(p)-off-m) < n {
			return 0, nil
		}
		return off + m + int(n), nil
	}
	tokLen, m, ok := quicVarint(p[off:])
	if !ok || uint64(len(p)-off-m) < tokLen {
		return 0, bad("token", off, "length runs past the datagram")
	}
	off += m + int(tokLen)
	length, m, ok := quicVarint(p[off:])
	if !ok {
		return 0, bad("length", off, "truncated varint")
	}
	off += m
	pnOff := off
	if uint64(len(p)-pnOff) < length {
		return 0, truncErr("quic", "Initial packet", base, fmt.Sprintf("length %d, %d bytes left", length, len(p)-pnOff))
	}
	if length < 20 { // 4 bytes of packet number space + 16 of sample
		return 0, bad("Initial packet", base, fmt.Sprintf("length %d too short for header protection", length))
	}
	end := pnOff + int(length)

	if c.aead == nil {
		if err := c.derive(params, dcid); err != nil {
			return 0, err
		}
		c.Version = version
	}

	// Remove header protection (RFC 9001 5.4) on a copy of the header.
	hdr := make([]byte, end)
	copy(hdr, p[:end])
	var mask [16]byte
	c.hp.Encrypt(mask[:], hdr[pnOff+4:pnOff+4+16])
	hdr[0] ^= mask[0] & 0x0f
	pnLen := int(hdr[0]&3) + 1
	var pn uint64
	for i := 0; i < pnLen; i++ {
		hdr[pnOff+i] ^= mask[1+i]
		pn = pn<<8 | uint64(hdr[pnOff+i])
	}
	nonce := c.iv
	for i := 0; i < 8; i++ {
		nonce[11-i] ^= byte(pn >> (8 * i))
	}
	payload := hdr[pnOff+pnLen : end]
	plain, err := c.aead.Open(payload[:0], nonce[:], payload, hdr[:pnOff+pnLen])
	if err != nil {
		return 0, &ParseError{Proto: "quic", What: "Initial packet", Offset: base, Kind: ErrMalformed,
			Reason: "cannot decrypt with the client Initial keys", Err: err}
	}
	if err := c.frames1(plain, base+pnOff+pnLen); err != nil {
		return 0, err
	}
	return end, nil
}

// derive computes the client Initial AEAD key, IV and header protection
// key from the original destination connection ID.
func (c *QUICCrypto) derive(v *quicVersion, dcid []byte) error {
	initial, err := hkdf.Extract(sha256.New, dcid, v.salt)
	if err != nil {
		return err
	}
	secret, err := expandLabel(initial, "client in", 32)
	if err != nil {
		return err
	}
	key, err := expandLabel(secret, v.keyLabel, 16)
	if err != nil {
		return err
	}
	iv, err := expandLabel(secret, v.ivLabel, 12)
	if err != nil {
		return err
	}
	hpKey, err := expandLabel(secret, v.hp, 16)
	if err != nil {
		return err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return err
	}
	if c.aead, err = cipher.NewGCM(block); err != nil {
		return err
	}
	if c.hp, err = aes.NewCipher(hpKey); err != nil {
		return err
	}
	copy(c.iv[:], iv)
	c.DCID = append([]byte(nil), dcid...)
	return nil
}

// expandLabel is TLS 1.3's HKDF-Expand-Label with an empty context.
func expandLabel(secret []byte, label string, n int) ([]byte, error) {
	info := make([]byte, 0, 4+6+len(label))
	info = append(info, byte(n>>8), byte(n), byte(6+len(label)))
	info = append(info, "tls13 "...)
	info = append(info, label...)
	info = append(info, 0)
	return hkdf.Expand(sha256.New, secret, string(info), n)
}

// frames1 walks the frames of a decrypted Initial payload (base: its offset
// in the datagram) and keeps the CRYPTO data.
func (c *QUICCrypto) frames1(p []byte, base int) error {
	bad := func(off int, reason string) error {
		return malErr("quic", "frame", base+off, reason)
	}
	off := 0
	varint := func() (uint64, bool) {
		v, m, ok := quicVarint(p[off:])
		off += m
		return v, ok
	}
	for off < len(p) {
		start := off
		typ := p[off]
		off++
		switch {
		case typ == 0x00 || typ == 0x01: // PADDING, PING
		case typ == 0x02 || typ == 0x03: // ACK
			if _, ok := varint(); !ok {
				return bad(start, "ACK largest")
			}
			if _, ok := varint(); !ok {
				return bad(start, "ACK delay")
			}
			n, ok := varint()
			if !ok || n > 256 {
				return bad(start, "ACK range count")
			}
			if _, ok := varint(); !ok {
				return bad(start, "ACK first range")
			}
			for i := uint64(0); i < 2*n; i++ {
				if _, ok := varint(); !ok {
					return bad(start, "ACK range")
				}
			}
			if typ == 0x03 {
				for i := 0; i < 3; i++ {
					if _, ok := varint(); !ok {
						return bad(start, "ACK ECN counts")
					}
				}
			}
		case typ == 0x06: // CRYPTO
			o, ok1 := varint()
			n, ok2 := varint()
			if !ok1 || !ok2 || uint64(len(p)-off) < n {
				return bad(start, "CRYPTO frame runs past the packet")
			}
			if o+n <= quicMaxCrypto {
				c.frames = append(c.frames, quicFrame{int(o), p[off : off+int(n)]})
				c.dirty = true
			}
			off += int(n)
		case typ == 0x1c || typ == 0x1d: // CONNECTION_CLOSE
			if _, ok := varint(); !ok {
				return bad(start, "CONNECTION_CLOSE error code")
			}
			if typ == 0x1c {
				if _, ok := varint(); !ok {
					return bad(start, "CONNECTION_CLOSE frame type")
				}
			}
			n, ok := varint()
			if !ok || uint64(len(p)-off) < n {
				return bad(start, "CONNECTION_CLOSE reason")
			}
			off += int(n)
		default:
			return bad(start, fmt.Sprintf("frame type %#x is not allowed in an Initial packet", typ))
		}
	}
	return nil
}

// quicVarint decodes a QUIC variable-length integer: value, bytes used, ok.
func quicVarint(b []byte) (uint64, int, bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	n := 1 << (b[0] >> 6)
	if len(b) < n {
		return 0, 0, false
	}
	v := uint64(b[0] & 0x3f)
	for i := 1; i < n; i++ {
		v = v<<8 | uint64(b[i])
	}
	return v, n, true
}

// Bytes returns the CRYPTO stream from offset 0 up to the first gap.
func (c *QUICCrypto) Bytes() []byte {
	if !c.dirty {
		return c.buf
	}
	c.dirty = false
	slices.SortStableFunc(c.frames, func(a, b quicFrame) int { return a.off - b.off })
	c.buf = c.buf[:0]
	for _, f := range c.frames {
		if f.off > len(c.buf) {
			break // gap
		}
		if end := f.off + len(f.data); end > len(c.buf) {
			c.buf = append(c.buf, f.data[len(c.buf)-f.off:]...)
		}
	}
	return c.buf
}

// Complete reports whether Bytes holds a whole handshake message (the
// ClientHello: 4-byte header plus its announced length).
func (c *QUICCrypto) Complete() bool {
	b := c.Bytes()
	if len(b) < 4 {
		return false
	}
	return len(b) >= 4+(int(b[1])<<16|int(b[2])<<8|int(b[3]))
}
