package proto

// Fuzz targets (make fuzz / go test -fuzz FuzzX); their seeds run in every
// plain go test. Beyond "never panics" they check that every error is a
// *ParseError of one of the two kinds with an offset inside the input.

import (
	"errors"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

func checkErr(t *testing.T, err error, n int) {
	t.Helper()
	if err == nil {
		return
	}
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *ParseError", err, err)
	}
	if pe.Kind != ErrTruncated && pe.Kind != ErrMalformed {
		t.Fatalf("error %v has kind %v", err, pe.Kind)
	}
	if pe.Offset < 0 || pe.Offset > n {
		t.Fatalf("error %v: offset %d outside the %d-byte input", err, pe.Offset, n)
	}
	if errors.Is(err, ErrTruncated) == errors.Is(err, ErrMalformed) {
		t.Fatalf("error %v: want exactly one kind", err)
	}
}

func FuzzParseDNS(f *testing.F) {
	resp := buildResponse(f)
	q := buildQuery(f, "aGVsbG8.t.example.", dnsmessage.Type(10))
	f.Add(resp, false)
	f.Add(withPrefix(resp), true)
	f.Add(withPrefix(resp)[:40], true)
	f.Add(q, false)
	f.Add(resp[:30], false)
	f.Add([]byte{}, false)
	var m DNSMessage
	f.Fuzz(func(t *testing.T, b []byte, tcp bool) {
		err := m.Parse(b, tcp)
		checkErr(t, err, len(b))
		if len(m.Questions) > len(b) || len(m.Answers) > len(b) {
			t.Fatalf("more records than bytes")
		}
		for _, q := range m.Questions {
			_ = q.Type.String()
		}
		_ = m.RCode.String()
	})
}

func FuzzParseClientHello(f *testing.F) {
	f.Add(records(specHello(), 1<<14))
	f.Add(records(specHello(), 61))
	f.Add(records(specHello(), 200)[:150])
	f.Add(goClientHello(f))
	f.Add(records(helloMsg(0x0301, nil, nil), 1<<14))
	f.Add([]byte{0x16, 3, 1, 0, 4, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseClientHello(b)
		checkErr(t, err, len(b))
		if err == nil {
			if n := len(h.JA4(JA4TCP)); n != 36 {
				t.Fatalf("JA4 %q has %d characters", h.JA4(JA4TCP), n)
			}
			_ = h.JA4Raw(JA4TCP)
			_ = h.JA4RawOriginal(JA4QUIC)
			if _, md5 := h.JA3(); len(md5) != 32 {
				t.Fatal("JA3 hash length")
			}
		}
		// The same message without the record layer.
		if len(b) > 5 {
			_, err = ParseClientHelloHandshake(b[5:])
			checkErr(t, err, len(b)-5)
		}
	})
}

func FuzzParseHTTPRequest(f *testing.F) {
	f.Add([]byte(curlRequest))
	f.Add([]byte(curlRequest[:40]))
	f.Add([]byte("POST /x HTTP/1.0\nHost: h\n\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n"))
	f.Add([]byte("\x16\x03\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseHTTPRequest(b)
		checkErr(t, err, len(b))
		if r.HeadLen > len(b) {
			t.Fatalf("HeadLen %d > %d", r.HeadLen, len(b))
		}
		if err == nil && r.HeadLen == 0 {
			t.Fatal("complete head without HeadLen")
		}
	})
}

func FuzzStratum(f *testing.F) {
	f.Add([]byte(`{"id": 1, "method": "mining.subscribe", "params": ["cpuminer/2.5.1"]}` + "\n"))
	f.Add([]byte(`{"id":1,"jsonrpc":"2.0","method":"login","params":{"login":"x","pass":"x"}}`))
	f.Add([]byte(`{"id":1,"params":{"method":"mining.subscribe"},"method":"x"}`))
	f.Add([]byte(`{"a":"\"method\"","method":"mining.notify"}`))
	f.Add([]byte("SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, ok := StratumMethod(b); ok != (m != "") {
			t.Fatalf("method %q ok %v", m, ok)
		}
		_, err := ParseSSHIdent(b)
		checkErr(t, err, len(b))
	})
}

func FuzzQUICInitial(f *testing.F) {
	for _, d := range quicSeeds(f) {
		f.Add(d)
	}
	f.Add([]byte{0xc0, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0x41, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		var c QUICCrypto
		err := c.AddDatagram(b)
		if err != nil && !errors.Is(err, ErrNotQUICInitial) {
			checkErr(t, err, len(b))
		}
		if c.Complete() {
			_, err := ParseClientHelloHandshake(c.Bytes())
			checkErr(t, err, len(c.Bytes()))
		}
	})
}
