package proto

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

// TestQUICInitialKeys checks the key schedule against RFC 9001 appendix
// A.1 (client Initial keys for DCID 0x8394c8f03e515708).
func TestQUICInitialKeys(t *testing.T) {
	var c QUICCrypto
	dcid, _ := hex.DecodeString("8394c8f03e515708")
	if err := c.derive(&quicV1Params, dcid); err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(c.iv[:]); got != "fa044b2f42a3fd3b46fb255c" {
		t.Errorf("iv %s", got)
	}
	var mask [16]byte
	// RFC 9001 A.2: sample d1b1c98dd7689fb8ec11d242b123dc9b gives the mask
	// 437b9aec36.
	sample, _ := hex.DecodeString("d1b1c98dd7689fb8ec11d242b123dc9b")
	c.hp.Encrypt(mask[:], sample)
	if got := hex.EncodeToString(mask[:5]); got != "437b9aec36" {
		t.Errorf("header protection mask %s", got)
	}
}

// sealInitial builds a client Initial packet carrying frames, protected as
// RFC 9001 section 5 says (the inverse of QUICCrypto.addPacket).
func sealInitial(t testing.TB, v uint32, dcid []byte, pn uint32, frames []byte) []byte {
	t.Helper()
	params, _ := quicParams(v)
	var c QUICCrypto
	if err := c.derive(params, dcid); err != nil {
		t.Fatal(err)
	}
	const pnLen = 4
	hdr := []byte{0xc0 | params.initialType<<4 | (pnLen - 1), byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
	hdr = append(hdr, byte(len(dcid)))
	hdr = append(hdr, dcid...)
	hdr = append(hdr, 0) // SCID length
	hdr = append(hdr, 0) // token length
	length := pnLen + len(frames) + 16
	hdr = append(hdr, 0x40|byte(length>>8), byte(length)) // 2-byte varint
	pnOff := len(hdr)
	hdr = append(hdr, byte(pn>>24), byte(pn>>16), byte(pn>>8), byte(pn))
	nonce := c.iv
	for i := 0; i < 4; i++ {
		nonce[11-i] ^= byte(pn >> (8 * i))
	}
	pkt := c.aead.Seal(bytes.Clone(hdr), nonce[:], frames, hdr)
	var mask [16]byte
	c.hp.Encrypt(mask[:], pkt[pnOff+4:pnOff+4+16])
	pkt[0] ^= mask[0] & 0x0f
	for i := 0; i < pnLen; i++ {
		pkt[pnOff+i] ^= mask[1+i]
	}
	return pkt
}

func cryptoFrame(off int, data []byte) []byte {
	f := []byte{0x06, 0x80 | byte(off>>24), byte(off >> 16), byte(off >> 8), byte(off), 0x40 | byte(len(data)>>8), byte(len(data))}
	return append(f, data...)
}

// quicSeeds returns client datagrams carrying specHello: a v1 datagram
// with the hello in two out-of-order CRYPTO frames, PING and PADDING, and
// the same over two v2 datagrams.
func quicSeeds(t testing.TB) [][]byte {
	hello := specHello()
	dcid := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	half := len(hello) / 2
	frames := append(cryptoFrame(half, hello[half:]), 0x01)
	frames = append(frames, cryptoFrame(0, hello[:half])...)
	frames = append(frames, make([]byte, 200)...) // PADDING
	d1 := sealInitial(t, QUICv1, dcid, 0, frames)
	d2a := sealInitial(t, QUICv2, dcid, 0, append(cryptoFrame(0, hello[:half]), make([]byte, 40)...))
	d2b := sealInitial(t, QUICv2, dcid, 1, append(cryptoFrame(half, hello[half:]), make([]byte, 40)...))
	return [][]byte{d1, d2a, d2b}
}

func TestQUICClientHello(t *testing.T) {
	d := quicSeeds(t)
	tcp, err := ParseClientHello(records(specHello(), 1<<14))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		grams [][]byte
		ver   uint32
	}{
		{"v1 one datagram", d[:1], QUICv1},
		{"v2 two datagrams", d[1:], QUICv2},
		// a short-header packet coalesced after the Initial is ignored
		{"v1 coalesced", [][]byte{append(bytes.Clone(d[0]), 0x40, 1, 2, 3)}, QUICv1},
	} {
		var q QUICCrypto
		for i, g := range c.grams {
			if err := q.AddDatagram(g); err != nil {
				t.Fatalf("%s: datagram %d: %v", c.name, i, err)
			}
		}
		if !q.Complete() || q.Version != c.ver {
			t.Fatalf("%s: complete %v version %#x", c.name, q.Complete(), q.Version)
		}
		h, err := ParseClientHelloHandshake(q.Bytes())
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got, want := h.JA4(JA4QUIC), "q"+tcp.JA4(JA4TCP)[1:]; got != want {
			t.Errorf("%s: %s, want %s", c.name, got, want)
		}
	}
	// Not QUIC, a corrupted tag, a cut packet.
	var q QUICCrypto
	if err := q.AddDatagram([]byte("GET / HTTP/1.1\r\n")); !errors.Is(err, ErrNotQUICInitial) {
		t.Errorf("HTTP: %v", err)
	}
	bad := bytes.Clone(d[0])
	bad[len(bad)-1] ^= 1
	if err := q.AddDatagram(bad); !errors.Is(err, ErrMalformed) {
		t.Errorf("bad tag: %v", err)
	}
	if err := q.AddDatagram(d[0][:100]); !errors.Is(err, ErrTruncated) {
		t.Errorf("cut: %v", err)
	}
}
