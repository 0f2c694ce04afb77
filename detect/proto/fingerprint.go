package proto

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
)

// JA4 transport characters (the first character of a JA4).
const (
	JA4TCP  = 't' // TLS over TCP
	JA4QUIC = 'q' // QUIC
	JA4DTLS = 'd' // DTLS
)

// JA3 returns the JA3 string of the hello (SSLVersion,Ciphers,Extensions,
// EllipticCurves,EllipticCurvePointFormats; decimal values joined by '-',
// GREASE values removed) and its MD5 in lower-case hex.
func (h *ClientHello) JA3() (full, hash string) {
	var arr [1024]byte
	b := strconv.AppendUint(arr[:0], uint64(h.LegacyVersion), 10)
	b = append(b, ',')
	b = appendDecList(b, h.CipherSuites)
	b = append(b, ',')
	b = appendDecList(b, h.Extensions)
	b = append(b, ',')
	b = appendDecList(b, h.SupportedGroups)
	b = append(b, ',')
	for i, f := range h.ECPointFormats {
		if i > 0 {
			b = append(b, '-')
		}
		b = strconv.AppendUint(b, uint64(f), 10)
	}
	sum := md5.Sum(b)
	return string(b), hex.EncodeToString(sum[:])
}

func appendDecList(b []byte, l []uint16) []byte {
	first := true
	for _, v := range l {
		if IsGREASE(v) {
			continue
		}
		if !first {
			b = append(b, '-')
		}
		first = false
		b = strconv.AppendUint(b, uint64(v), 10)
	}
	return b
}

// JA4 returns the JA4 fingerprint (FoxIO JA4, the BSD-3 licensed part of
// JA4+) of the hello; transport is JA4TCP, JA4QUIC or JA4DTLS. Example:
// t13d1516h2_8daaf6152771_e5627efa2ab1.
func (h *ClientHello) JA4(transport byte) string { return h.ja4(transport, false, false) }

// JA4Raw returns JA4_r: the JA4 with the sorted lists in clear instead of
// their hashes (for debugging a mismatch).
func (h *ClientHello) JA4Raw(transport byte) string { return h.ja4(transport, true, false) }

// JA4Original returns JA4_o: ciphers and extensions in wire order (SNI and
// ALPN included) before hashing.
func (h *ClientHello) JA4Original(transport byte) string { return h.ja4(transport, false, true) }

// JA4RawOriginal returns JA4_ro: JA4_o with the lists in clear.
func (h *ClientHello) JA4RawOriginal(transport byte) string { return h.ja4(transport, true, true) }

// JA4Version returns the two-character TLS version of a JA4: the highest
// non-GREASE supported_versions entry if the extension lists one, else the
// legacy version.
func (h *ClientHello) JA4Version() string {
	v := h.LegacyVersion
	var best uint16
	found := false
	for _, sv := range h.SupportedVersions {
		if IsGREASE(sv) {
			continue
		}
		if !found || sv > best {
			best, found = sv, true
		}
	}
	if found {
		v = best
	}
	switch v {
	case 0x0304:
		return "13"
	case 0x0303:
		return "12"
	case 0x0302:
		return "11"
	case 0x0301:
		return "10"
	case 0x0300:
		return "s3"
	case 0x0002:
		return "s2"
	case 0xfeff:
		return "d1"
	case 0xfefd:
		return "d2"
	case 0xfefc:
		return "d3"
	}
	return "00"
}

func (h *ClientHello) ja4(transport byte, raw, original bool) string {
	var cbuf, ebuf, sbuf [64]uint16
	ciphers := withoutGREASE(cbuf[:0], h.CipherSuites)
	exts := ebuf[:0]
	nExt, nHashed := 0, 0 // all non-GREASE extensions; those without SNI and ALPN
	for _, e := range h.Extensions {
		if IsGREASE(e) {
			continue
		}
		nExt++
		if e == extServerName || e == extALPN {
			if !original {
				continue
			}
		} else {
			nHashed++
		}
		exts = append(exts, e)
	}
	sigs := withoutGREASE(sbuf[:0], h.SignatureAlgorithms)
	if !original {
		slices.Sort(ciphers)
		slices.Sort(exts)
	}

	var arr [1024]byte
	b := append(arr[:0], transport)
	b = append(b, h.JA4Version()...)
	if h.HasSNI {
		b = append(b, 'd')
	} else {
		b = append(b, 'i')
	}
	b = append2Digits(b, len(ciphers))
	b = append2Digits(b, nExt)
	b = appendALPNChars(b, h.ALPN)
	b = append(b, '_')

	var tbuf [512]byte
	t := appendHexList(tbuf[:0], ciphers)
	b = appendSection(b, t, raw, len(ciphers) == 0)
	b = append(b, '_')
	t = appendHexList(tbuf[:0], exts)
	if len(sigs) > 0 {
		t = append(t, '_')
		t = appendHexList(t, sigs)
	}
	// "No extensions in the sorted list" (SNI and ALPN do not count) gives
	// twelve zeros, in the original-order variant too, as the reference
	// implementation prints it.
	b = appendSection(b, t, raw, nHashed == 0)
	return string(b)
}

func withoutGREASE(dst, l []uint16) []uint16 {
	for _, v := range l {
		if !IsGREASE(v) {
			dst = append(dst, v)
		}
	}
	return dst
}

func append2Digits(b []byte, n int) []byte {
	n = min(n, 99)
	return append(b, byte('0'+n/10), byte('0'+n%10))
}

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// appendALPNChars appends the first and last character of the first ALPN
// value, "00" without one, or the first and last hex digit of the value
// when either end is not alphanumeric.
func appendALPNChars(b []byte, alpn []string) []byte {
	if len(alpn) == 0 || len(alpn[0]) == 0 {
		return append(b, "00"...)
	}
	v := alpn[0]
	f, l := v[0], v[len(v)-1]
	if isAlnum(f) && isAlnum(l) {
		return append(b, f, l)
	}
	const digits = "0123456789abcdef"
	return append(b, digits[f>>4], digits[l&0x0f])
}

func appendHexList(b []byte, l []uint16) []byte {
	const digits = "0123456789abcdef"
	for i, v := range l {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, digits[v>>12], digits[v>>8&0xf], digits[v>>4&0xf], digits[v&0xf])
	}
	return b
}

// appendSection appends t in clear (raw) or as its truncated SHA-256;
// an empty list hashes to twelve zeros, as the JA4 spec says.
func appendSection(b, t []byte, raw, empty bool) []byte {
	if raw {
		return append(b, t...)
	}
	if empty {
		return append(b, "000000000000"...)
	}
	sum := sha256.Sum256(t)
	return hex.AppendEncode(b, sum[:6])
}
