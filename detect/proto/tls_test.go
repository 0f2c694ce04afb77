package proto

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

type ext struct {
	typ  uint16
	data []byte
}

func u16s(vs ...uint16) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.BigEndian.AppendUint16(b, v)
	}
	return b
}

func vec16(b []byte) []byte { return append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...) }
func vec8(b []byte) []byte  { return append([]byte{byte(len(b))}, b...) }

func sniExt(name string) ext {
	entry := append([]byte{0}, vec16([]byte(name))...)
	return ext{0, vec16(entry)}
}

func alpnExt(protos ...string) ext {
	var l []byte
	for _, p := range protos {
		l = append(l, vec8([]byte(p))...)
	}
	return ext{16, vec16(l)}
}

func listExt(typ uint16, vs ...uint16) ext { return ext{typ, vec16(u16s(vs...))} }

// helloMsg builds a ClientHello handshake message (header included).
func helloMsg(legacy uint16, ciphers []uint16, exts []ext) []byte {
	body := binary.BigEndian.AppendUint16(nil, legacy)
	body = append(body, make([]byte, 32)...) // random
	body = append(body, vec8(bytes.Repeat([]byte{7}, 32))...)
	body = append(body, vec16(u16s(ciphers...))...)
	body = append(body, 1, 0) // compression: null
	var eb []byte
	for _, e := range exts {
		eb = binary.BigEndian.AppendUint16(eb, e.typ)
		eb = append(eb, vec16(e.data)...)
	}
	body = append(body, vec16(eb)...)
	msg := []byte{1, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}
	return append(msg, body...)
}

// records wraps msg into TLS handshake records of at most n bytes each.
func records(msg []byte, n int) []byte {
	var out []byte
	for len(msg) > 0 {
		k := min(n, len(msg))
		out = append(out, 0x16, 3, 1)
		out = binary.BigEndian.AppendUint16(out, uint16(k))
		out = append(out, msg[:k]...)
		msg = msg[k:]
	}
	return out
}

// specHello is the ClientHello of the JA4 specification's example.
func specHello() []byte {
	ciphers := []uint16{0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035}
	var exts []ext
	for _, e := range []uint16{0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012, 0x002b, 0xff01, 0x000b, 0x000a, 0x0015} {
		switch e {
		case 0x0000:
			exts = append(exts, sniExt("example.com"))
		case 0x0010:
			exts = append(exts, alpnExt("h2", "http/1.1"))
		case 0x000d:
			exts = append(exts, listExt(13, 0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601))
		case 0x002b:
			exts = append(exts, ext{43, vec8(u16s(0x2a2a, 0x0304, 0x0303))})
		case 0x000a:
			exts = append(exts, listExt(10, 0x2a2a, 0x001d, 0x0017, 0x0018))
		case 0x000b:
			exts = append(exts, ext{11, vec8([]byte{0})})
		case 0x0033:
			ks := append(append(u16s(0x2a2a, 1), 0), u16s(0x001d, 2)...)
			exts = append(exts, ext{0x33, vec16(append(ks, 1, 2))})
		default:
			exts = append(exts, ext{e, nil})
		}
	}
	// GREASE first, as browsers send it.
	exts = append([]ext{{0x0a0a, nil}}, exts...)
	return helloMsg(0x0303, append([]uint16{0x4a4a}, ciphers...), exts)
}

func TestJA4SpecExample(t *testing.T) {
	for _, rec := range []int{16384, 100, 7} {
		h, err := ParseClientHello(records(specHello(), rec))
		if err != nil {
			t.Fatalf("records of %d: %v", rec, err)
		}
		for _, c := range []struct{ name, got, want string }{
			{"JA4", h.JA4(JA4TCP), "t13d1516h2_8daaf6152771_e5627efa2ab1"},
			{"JA4_r", h.JA4Raw(JA4TCP), "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601"},
			{"JA4_o", h.JA4Original(JA4TCP), "t13d1516h2_acb858a92679_18f69afefd3d"},
			{"JA4_ro", h.JA4RawOriginal(JA4TCP), "t13d1516h2_1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035_001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015_0403,0804,0401,0503,0805,0501,0806,0601"},
			{"JA4 QUIC", h.JA4(JA4QUIC)[:1], "q"},
			{"SNI", h.SNI, "example.com"},
			{"ALPN", strings.Join(h.ALPN, ","), "h2,http/1.1"},
		} {
			if c.got != c.want {
				t.Errorf("records of %d: %s = %s, want %s", rec, c.name, c.got, c.want)
			}
		}
		if !h.GREASE || len(h.KeyShareGroups) != 2 || h.KeyShareGroups[1] != 0x001d || len(h.SupportedGroups) != 4 {
			t.Errorf("GREASE %v key shares %x groups %x", h.GREASE, h.KeyShareGroups, h.SupportedGroups)
		}
		full, md5 := h.JA3()
		if full != "771,4865-4866-4867-49195-49199-49196-49200-52393-52392-49171-49172-156-157-47-53,27-0-51-16-17513-23-45-13-5-35-18-43-65281-11-10-21,29-23-24,0" || len(md5) != 32 {
			t.Errorf("JA3 %s %s", full, md5)
		}
	}
}

func TestJA4Edges(t *testing.T) {
	// The spec's ALPN examples, a one-character ALPN, no ALPN, and
	// no signature algorithms / no extensions.
	for _, c := range []struct {
		alpn []string
		want string
	}{
		{[]string{"\xab"}, "ab"},
		{[]string{"\xab\xcd"}, "ad"},
		{[]string{"\x30\xab"}, "3b"},
		{[]string{"\x30\x31\xab\xcd"}, "3d"},
		{[]string{"\x30\xab\xcd\x31"}, "01"},
		{[]string{"h"}, "hh"},
		{[]string{"http/1.1"}, "h1"},
		{[]string{""}, "00"},
		{nil, "00"},
	} {
		exts := []ext{sniExt("a.b")}
		if c.alpn != nil {
			exts = append(exts, alpnExt(c.alpn...))
		}
		h, err := ParseClientHello(records(helloMsg(0x0303, []uint16{0x1301}, exts), 1<<14))
		if err != nil {
			t.Fatal(err)
		}
		if got := h.JA4(JA4TCP)[8:10]; got != c.want {
			t.Errorf("ALPN %q: %s, want %s", c.alpn, got, c.want)
		}
		// Only SNI and ALPN: the extension hash is twelve zeros.
		if got := h.JA4(JA4TCP)[24:]; got != "000000000000" {
			t.Errorf("ALPN %q: extension hash %s, want zeros", c.alpn, got)
		}
	}
	// No cipher suites at all, no supported_versions, TLS 1.0.
	h, err := ParseClientHello(records(helloMsg(0x0301, nil, []ext{{0x0017, nil}}), 1<<14))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := h.JA4(JA4TCP), "t10i000100_000000000000_"; !strings.HasPrefix(got, want) || strings.Contains(got[len(want):], "_") {
		t.Errorf("JA4 %s, want %s<hash of 0017 without sig algs>", got, want)
	}
}

func TestClientHelloTruncated(t *testing.T) {
	in := records(specHello(), 200)
	want, err := ParseClientHello(in)
	if err != nil {
		t.Fatal(err)
	}
	for cut := 0; cut < len(in); cut++ {
		h, err := ParseClientHello(in[:cut])
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("cut at %d: %v, want ErrTruncated", cut, err)
		}
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Offset > cut {
			t.Fatalf("cut at %d: %v: offset past the cut", cut, err)
		}
		if len(h.CipherSuites) > 0 && len(h.CipherSuites) != len(want.CipherSuites) {
			t.Fatalf("cut at %d: partial cipher list %x", cut, h.CipherSuites)
		}
		if h.SNI != "" && h.SNI != want.SNI {
			t.Fatalf("cut at %d: SNI %q", cut, h.SNI)
		}
	}
}

func TestClientHelloErrors(t *testing.T) {
	hello := records(specHello(), 1<<14)
	for _, c := range []struct {
		name string
		in   []byte
		kind error
		off  int
	}{
		{"application data", append([]byte{0x17}, hello[1:]...), ErrMalformed, 0},
		{"SSLv2", append([]byte{0x16, 2}, hello[2:]...), ErrMalformed, 1},
		{"zero record", []byte{0x16, 3, 1, 0, 0}, ErrMalformed, 3},
		{"server hello", append(hello[:5:5], append([]byte{2}, hello[6:]...)...), ErrMalformed, 5},
		{"odd cipher length", func() []byte {
			b := bytes.Clone(hello)
			b[5+4+2+32+1+32+1]++ // low byte of the cipher suites length
			return b
		}(), ErrMalformed, 5 + 4 + 2 + 32 + 1 + 32},
		{"alert record after a cut hello", append(records(specHello()[:50], 1<<14)[:5+50:5+50], 0x15, 3, 3, 0, 2, 2, 40), ErrMalformed, 55},
	} {
		_, err := ParseClientHello(c.in)
		var pe *ParseError
		if !errors.Is(err, c.kind) || !errors.As(err, &pe) || pe.Offset != c.off {
			t.Errorf("%s: %v, want %v at offset %d", c.name, err, c.kind, c.off)
		}
	}
}

// goClientHello captures the ClientHello that crypto/tls sends.
func goClientHello(t testing.TB) []byte {
	t.Helper()
	c, s := net.Pipe()
	go func() {
		cl := tls.Client(c, &tls.Config{ServerName: "example.org", NextProtos: []string{"h2", "http/1.1"}})
		_ = cl.Handshake()
	}()
	defer c.Close()
	defer s.Close()
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hdr [5]byte
	if _, err := io.ReadFull(s, hdr[:]); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[3:]))
	if _, err := io.ReadFull(s, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr[:], body...)
}

func TestGoClientHello(t *testing.T) {
	h, err := ParseClientHello(goClientHello(t))
	if err != nil {
		t.Fatal(err)
	}
	if h.SNI != "example.org" || strings.Join(h.ALPN, ",") != "h2,http/1.1" || h.JA4Version() != "13" || !strings.HasPrefix(h.JA4(JA4TCP), "t13d") {
		t.Errorf("%+v %s", h, h.JA4(JA4TCP))
	}
	if len(h.KeyShareGroups) == 0 || len(h.SignatureAlgorithms) == 0 || h.GREASE {
		t.Errorf("key shares %x sig algs %x GREASE %v", h.KeyShareGroups, h.SignatureAlgorithms, h.GREASE)
	}
}
