package proto

import (
	"bytes"
	"fmt"
	"strings"
)

// httpMaxHeaders bounds the headers kept from one request head.
const httpMaxHeaders = 128

// HTTPRequest is the head of an HTTP/1.x request. All strings share one
// allocation (a copy of the parsed head).
type HTTPRequest struct {
	Method  string // as sent, e.g. "GET"
	URI     string // request target as sent
	Version string // e.g. "HTTP/1.1"
	// Headers in wire order, names lower-cased, values without
	// surrounding whitespace; an obsolete folded continuation line is
	// joined to its header's value with one space.
	Headers   []HTTPHeader
	Host      string // value of the first Host header
	UserAgent string // value of the first User-Agent header
	// ContentLength is the value of the first valid Content-Length
	// header, -1 without one.
	ContentLength int64
	// HeadLen is the length of the head including the blank line that
	// ends it; 0 when the head was cut before that line.
	HeadLen int
}

// HTTPHeader is one header field.
type HTTPHeader struct {
	Name, Value string
}

// Header returns the value of the first header named name (lower case),
// and whether there is one.
func (r *HTTPRequest) Header(name string) (string, bool) {
	for _, h := range r.Headers {
		if h.Name == name {
			return h.Value, true
		}
	}
	return "", false
}

// hdrSpan is a header's name and value in the input.
type hdrSpan struct{ no, ne, vo, ve int }

// ParseHTTPRequest parses the request line and header block at the start
// of b. A head cut short (no blank line yet) yields the request line and
// every complete header line with an error wrapping ErrTruncated. Bare LF
// line ends are accepted. Input that does not start with an HTTP/1.x request
// line is ErrMalformed.
func ParseHTTPRequest(b []byte) (HTTPRequest, error) {
	r := HTTPRequest{ContentLength: -1}

	// Request line: method SP request-target SP HTTP-version.
	lineEnd, next, complete := httpLine(b, 0)
	line := b[:lineEnd]
	sp1 := bytes.IndexByte(line, ' ')
	mEnd := sp1
	if sp1 < 0 {
		mEnd = len(line)
	}
	if mEnd == 0 {
		if len(b) == 0 {
			return r, truncErr("http", "request line", 0, "no data")
		}
		return r, malErr("http", "method", 0, "empty")
	}
	for i, c := range line[:mEnd] {
		if !isTChar(c) {
			return r, malErr("http", "method", i, fmt.Sprintf("byte %#02x is not a token character", c))
		}
	}
	if mEnd > 32 {
		return r, malErr("http", "method", 0, fmt.Sprintf("%d bytes long", mEnd))
	}
	if !complete {
		if sp1 > 0 {
			r.Method = string(line[:sp1])
		}
		return r, truncErr("http", "request line", 0, "no line end")
	}
	if sp1 < 0 {
		return r, malErr("http", "request line", mEnd, "no space after the method")
	}
	sp2 := bytes.LastIndexByte(line, ' ')
	if sp2 <= sp1 {
		return r, malErr("http", "request line", sp1, "one space only: want METHOD SP TARGET SP VERSION")
	}
	ver := line[sp2+1:]
	if !bytes.HasPrefix(ver, []byte("HTTP/")) || len(ver) != 8 || ver[6] != '.' ||
		ver[5] < '0' || ver[5] > '9' || ver[7] < '0' || ver[7] > '9' {
		return r, malErr("http", "version", sp2+1, fmt.Sprintf("%q is not HTTP/x.y", truncate(ver, 16)))
	}
	if sp2 == sp1+1 {
		return r, malErr("http", "request target", sp1+1, "empty")
	}
	// Spaces inside the target are invalid but real (the version is found
	// from the last space, as Suricata and Zeek do); control bytes are not.
	for i, c := range line[sp1+1 : sp2] {
		if c < ' ' || c == 0x7f {
			return r, malErr("http", "request target", sp1+1+i, fmt.Sprintf("byte %#02x in the target", c))
		}
	}

	// Header lines until the blank line.
	var spanBuf [32]hdrSpan
	spans := spanBuf[:0]
	var folded []int // indexes of headers with continuation lines (rare)
	off := next
	end := next // end of the last complete line kept
	var err error
	for {
		le, nx, ok := httpLine(b, off)
		if !ok {
			err = truncErr("http", fmt.Sprintf("header line %d", len(spans)+1), off, "head ends before its blank line")
			break
		}
		if le == off { // blank line: end of the head
			r.HeadLen = nx
			end = nx
			break
		}
		if c := b[off]; c == ' ' || c == '\t' {
			if len(spans) == 0 {
				err = malErr("http", "header line 1", off, "starts with whitespace")
				break
			}
			// obs-fold: extend the previous value over this line.
			spans[len(spans)-1].ve = trimRight(b, off, le)
			if len(folded) == 0 || folded[len(folded)-1] != len(spans)-1 {
				folded = append(folded, len(spans)-1)
			}
			off, end = nx, nx
			continue
		}
		colon := bytes.IndexByte(b[off:le], ':')
		if colon <= 0 {
			err = malErr("http", fmt.Sprintf("header line %d", len(spans)+1), off, "no field name before ':'")
			break
		}
		for i, c := range b[off : off+colon] {
			if !isTChar(c) {
				err = malErr("http", fmt.Sprintf("header line %d name", len(spans)+1), off+i, fmt.Sprintf("byte %#02x is not a token character", c))
				break
			}
		}
		if err != nil {
			break
		}
		if len(spans) == httpMaxHeaders {
			err = malErr("http", "header block", off, fmt.Sprintf("more than %d header lines", httpMaxHeaders))
			break
		}
		vo := off + colon + 1
		for vo < le && (b[vo] == ' ' || b[vo] == '\t') {
			vo++
		}
		spans = append(spans, hdrSpan{off, off + colon, vo, trimRight(b, vo, le)})
		off, end = nx, nx
	}

	// One copy of the head, names lower-cased; every string points into it.
	var sb strings.Builder
	sb.Grow(end)
	sb.Write(b[:next])
	pos := next
	for _, h := range spans {
		sb.Write(b[pos:h.no])
		name := b[h.no:h.ne]
		if hasUpper(name) {
			for _, c := range name {
				if 'A' <= c && c <= 'Z' {
					c += 'a' - 'A'
				}
				sb.WriteByte(c)
			}
		} else {
			sb.Write(name)
		}
		pos = h.ne
	}
	sb.Write(b[pos:end])
	s := sb.String()

	r.Method = s[:sp1]
	r.URI = s[sp1+1 : sp2]
	r.Version = s[sp2+1 : lineEnd]
	if len(spans) > 0 {
		r.Headers = make([]HTTPHeader, len(spans))
	}
	for i, h := range spans {
		v := s[h.vo:h.ve]
		if h.ve < h.vo {
			v = ""
		}
		r.Headers[i] = HTTPHeader{Name: s[h.no:h.ne], Value: v}
	}
	for _, i := range folded {
		r.Headers[i].Value = unfold(r.Headers[i].Value)
	}
	for _, h := range r.Headers {
		switch h.Name {
		case "host":
			if r.Host == "" {
				r.Host = h.Value
			}
		case "user-agent":
			if r.UserAgent == "" {
				r.UserAgent = h.Value
			}
		case "content-length":
			if r.ContentLength < 0 {
				r.ContentLength = parseContentLength(h.Value)
			}
		}
	}
	return r, err
}

// httpLine finds the line starting at off: it returns the end of its
// content (before CRLF or LF), the start of the next line, and false when
// the input ends before a line end.
func httpLine(b []byte, off int) (end, next int, ok bool) {
	i := bytes.IndexByte(b[off:], '\n')
	if i < 0 {
		return len(b), len(b), false
	}
	end = off + i
	next = end + 1
	if end > off && b[end-1] == '\r' {
		end--
	}
	return end, next, true
}

func hasUpper(b []byte) bool {
	for _, c := range b {
		if 'A' <= c && c <= 'Z' {
			return true
		}
	}
	return false
}

func trimRight(b []byte, from, to int) int {
	for to > from && (b[to-1] == ' ' || b[to-1] == '\t') {
		to--
	}
	return to
}

// unfold replaces each obs-fold (line end plus leading whitespace) in v by
// one space.
func unfold(v string) string {
	var sb strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\r' || c == '\n' {
			for i+1 < len(v) && (v[i+1] == '\r' || v[i+1] == '\n' || v[i+1] == ' ' || v[i+1] == '\t') {
				i++
			}
			sb.WriteByte(' ')
			continue
		}
		sb.WriteByte(c)
	}
	return sb.String()
}

func parseContentLength(v string) int64 {
	if v == "" || len(v) > 18 {
		return -1
	}
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// tchar marks the RFC 9110 token characters.
var tchar = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", byte(c)) >= 0
	}
	return
}()

// isTChar reports whether c is an RFC 9110 token character.
func isTChar(c byte) bool { return tchar[c] }

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
