package proto

import (
	"errors"
	"testing"
)

const curlRequest = "GET /index.html?q=1 HTTP/1.1\r\n" +
	"Host: Example.COM\r\n" +
	"User-Agent: curl/7.88.1\r\n" +
	"Accept: */*\r\n" +
	"X-Folded: one\r\n  two\r\n" +
	"Content-Length: 42\r\n" +
	"\r\n" +
	"body"

func TestParseHTTPRequest(t *testing.T) {
	r, err := ParseHTTPRequest([]byte(curlRequest))
	if err != nil {
		t.Fatal(err)
	}
	if r.Method != "GET" || r.URI != "/index.html?q=1" || r.Version != "HTTP/1.1" || r.Host != "Example.COM" ||
		r.UserAgent != "curl/7.88.1" || r.ContentLength != 42 || r.HeadLen != len(curlRequest)-len("body") {
		t.Errorf("%+v", r)
	}
	want := []HTTPHeader{{"host", "Example.COM"}, {"user-agent", "curl/7.88.1"}, {"accept", "*/*"}, {"x-folded", "one two"}, {"content-length", "42"}}
	if len(r.Headers) != len(want) {
		t.Fatalf("headers %q", r.Headers)
	}
	for i := range want {
		if r.Headers[i] != want[i] {
			t.Errorf("header %d: %q, want %q", i, r.Headers[i], want[i])
		}
	}
	if v, ok := r.Header("accept"); !ok || v != "*/*" {
		t.Errorf("Header(accept) = %q %v", v, ok)
	}
}

func TestParseHTTPRequestTruncated(t *testing.T) {
	in := []byte(curlRequest[:len(curlRequest)-len("body")])
	for cut := 0; cut < len(in); cut++ {
		r, err := ParseHTTPRequest(in[:cut])
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		if cut > len("GET /index.html?q=1 HTTP/1.1\r\nHost: Example.COM\r\n") && r.Host != "Example.COM" {
			t.Fatalf("cut at %d: Host %q", cut, r.Host)
		}
		if cut >= 4 && r.Method != "GET" {
			t.Fatalf("cut at %d: method %q", cut, r.Method)
		}
	}
	// Bare LF line ends.
	r, err := ParseHTTPRequest([]byte("POST /x HTTP/1.0\nHost: h\n\n"))
	if err != nil || r.Host != "h" || r.Method != "POST" {
		t.Errorf("LF only: %v %+v", err, r)
	}
}

func TestParseHTTPRequestMalformed(t *testing.T) {
	for _, c := range []struct {
		in  string
		off int
	}{
		{"\x16\x03\x01\x02\x00\x01", 0},
		{"GET / SSH-2.0\r\n\r\n", 6},
		{"GET  HTTP/1.1\r\n\r\n", 4},
		{"GET /\r\n\r\n", 3},
		{"GET / HTTP/1.1\r\nNo colon here\r\n\r\n", 16},
		{"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 19},
		{"GET / HTTP/1.1\r\n folded first\r\n\r\n", 16},
		{"GET /a\x00b HTTP/1.1\r\n\r\n", 6},
	} {
		_, err := ParseHTTPRequest([]byte(c.in))
		var pe *ParseError
		if !errors.Is(err, ErrMalformed) || !errors.As(err, &pe) || pe.Offset != c.off {
			t.Errorf("%q: %v, want malformed at %d", c.in, err, c.off)
		}
	}
}

func TestParseHTTPAllocs(t *testing.T) {
	in := []byte(curlRequest)
	if n := testing.AllocsPerRun(100, func() { _, _ = ParseHTTPRequest(in) }); n > 3 {
		t.Errorf("%v allocations, want ≤ 3", n)
	}
}
