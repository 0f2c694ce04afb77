package proto

// Conformance of ClientHello parsing, JA3 and JA4 against the public
// captures in ../shared/corpus/public: the JA4 project's pcaps with the
// fingerprints its Python (expected-python/*.json) and Rust
// (expected-rust/*.snap) implementations print, and the Suricata-verify
// tests whose test.yaml states JA3/JA4/ALPN/cipher expectations.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// hello is one ClientHello found in a capture.
type hello struct {
	flow      string // "src:sport->dst:dport" of the client
	transport byte   // JA4TCP or JA4QUIC
	ch        ClientHello
}

func flowName(t tuple) string {
	return fmt.Sprintf("%s:%d->%s:%d", t.src, t.sport, t.dst, t.dport)
}

// tcpHellos returns the ClientHellos a client sent on a TCP flow, in
// order: the first one starts at the first client segment that begins a TLS
// handshake record (so TLS after an HTTP CONNECT or a SOCKS exchange is
// found too), a second one follows a HelloRetryRequest.
func tcpHellos(t testing.TB, f *flow) []hello {
	data, starts := f.stream(1 << 16)
	var out []hello
	for _, s := range starts {
		if !looksLikeHello(data[s:]) {
			continue
		}
		pos := s
		for pos+5 <= len(data) && len(out) < 4 {
			typ := data[pos]
			rlen := int(data[pos+3])<<8 | int(data[pos+4])
			if typ < 20 || typ > 23 || data[pos+1] != 3 {
				break
			}
			if typ == 23 {
				break // application data: the handshake is encrypted from here
			}
			if typ == tlsRecordHandshake && looksLikeHello(data[pos:]) {
				ch, err := ParseClientHello(data[pos:])
				if err != nil {
					if len(out) == 0 {
						t.Errorf("%s: %v", flowName(f.client), err)
					}
					break
				}
				out = append(out, hello{flowName(f.client), JA4TCP, ch})
				// Skip the records that carried this hello.
				need := 4 + ch.HandshakeLen
				for need > 0 && pos+5 <= len(data) {
					rl := int(data[pos+3])<<8 | int(data[pos+4])
					need -= rl
					pos += 5 + rl
				}
				continue
			}
			pos += 5 + rlen
		}
		break
	}
	return out
}

func looksLikeHello(b []byte) bool {
	return len(b) >= 6 && b[0] == tlsRecordHandshake && b[1] == 3 && b[2] <= 4 && b[5] == tlsClientHello
}

// captureHellos returns every ClientHello of a capture: TCP ones and, from
// UDP flows, those inside QUIC Initial packets.
func captureHellos(t testing.TB, path string) (out []hello, quicErrs []string) {
	for _, f := range flows(readPackets(t, path)) {
		if f.client.proto == 6 {
			out = append(out, tcpHellos(t, f)...)
			continue
		}
		ch, ok, err := quicHello(f.grams)
		if err != nil {
			quicErrs = append(quicErrs, fmt.Sprintf("%s: %v", flowName(f.client), err))
		}
		if ok {
			out = append(out, hello{flowName(f.client), JA4QUIC, ch})
		}
	}
	return out, quicErrs
}

// quicHello decrypts the client's QUIC Initial packets of a UDP flow and
// parses the ClientHello they carry. ok is false for flows that are not
// QUIC.
func quicHello(grams [][]byte) (ClientHello, bool, error) {
	var c QUICCrypto
	isQUIC := false
	for _, g := range grams {
		err := c.AddDatagram(g)
		if errors.Is(err, ErrNotQUICInitial) {
			continue
		}
		if err != nil {
			return ClientHello{}, isQUIC, err
		}
		isQUIC = true
		if c.Complete() {
			break
		}
	}
	if !isQUIC {
		return ClientHello{}, false, nil
	}
	ch, err := ParseClientHelloHandshake(c.Bytes())
	return ch, err == nil, err
}

type counts struct{ checked, matched, skipped, diverged, quic int }

func (c counts) String() string {
	s := fmt.Sprintf("%d checked, %d matched, %d skipped", c.checked, c.matched, c.skipped)
	if c.quic > 0 {
		s += fmt.Sprintf("; %d of the matches are QUIC Initials", c.quic)
	}
	if c.diverged > 0 {
		s += fmt.Sprintf(" (%d of the matches differ only by the documented non-alphanumeric ALPN rule)", c.diverged)
	}
	return s
}

// legacyALPN rewrites the ALPN characters of a JA4 (positions 8 and 9) the
// way the JA4 reference implementations did before the spec's hex rule for
// non-alphanumeric ALPN values: a non-ASCII byte prints as '9'. It returns
// ja4 unchanged when the first ALPN value is alphanumeric at both ends.
func legacyALPN(ch *ClientHello, ja4 string) string {
	if len(ch.ALPN) == 0 || len(ch.ALPN[0]) == 0 || len(ja4) < 10 {
		return ja4
	}
	v := ch.ALPN[0]
	if isAlnum(v[0]) && isAlnum(v[len(v)-1]) {
		return ja4
	}
	c := func(b byte) byte {
		if b >= 0x80 {
			return '9'
		}
		return b
	}
	return ja4[:8] + string([]byte{c(v[0]), c(v[len(v)-1])}) + ja4[10:]
}

func TestJA4PublicCaptures(t *testing.T) {
	dir := filepath.Join(corpusDir(t), "public", "ja4")
	pcaps, _ := filepath.Glob(filepath.Join(dir, "pcap", "*"))
	if len(pcaps) == 0 {
		t.Skipf("no captures in %s/pcap", dir)
	}
	var py, rs counts
	var ja3n int
	for _, p := range pcaps {
		name := filepath.Base(p)
		hellos, qerrs := captureHellos(t, p)
		for _, e := range qerrs {
			t.Errorf("%s: QUIC: %s", name, e)
		}
		byFlow := map[string][]hello{}
		for _, h := range hellos {
			byFlow[h.flow] = append(byFlow[h.flow], h)
			full, _ := h.ch.JA3()
			if full != "" {
				ja3n++
			}
		}

		// Python reference: JA4, JA4_r, JA4_o, JA4_ro per hello (.1, .2).
		if exp, err := os.ReadFile(filepath.Join(dir, "expected-python", name+".json")); err == nil {
			var entries []map[string]any
			if err := json.Unmarshal(exp, &entries); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			for _, e := range entries {
				key := fmt.Sprintf("%v:%v->%v:%v", e["src"], e["srcport"], e["dst"], e["dstport"])
				for n := 1; ; n++ {
					want, ok := e[fmt.Sprintf("JA4.%d", n)].(string)
					if !ok {
						break
					}
					py.checked++
					got := byFlow[key]
					if len(got) < n {
						t.Errorf("%s %s: JA4.%d %s expected, no ClientHello #%d found", name, key, n, want, n)
						continue
					}
					h := got[n-1]
					ok = true
					div := false
					for _, c := range []struct{ field, got string }{
						{"JA4", h.ch.JA4(h.transport)},
						{"JA4_r", h.ch.JA4Raw(h.transport)},
						{"JA4_o", h.ch.JA4Original(h.transport)},
						{"JA4_ro", h.ch.JA4RawOriginal(h.transport)},
					} {
						if w, has := e[fmt.Sprintf("%s.%d", c.field, n)].(string); has && w != c.got {
							if legacyALPN(&h.ch, c.got) == w {
								t.Logf("%s %s %s.%d: %s differs from the reference's %s only by the ALPN characters of a non-alphanumeric ALPN (spec: hex digits; the reference predates that rule and prints '9')", name, key, c.field, n, c.got, w)
								div = true
								continue
							}
							t.Errorf("%s %s %s.%d:\n got %s\nwant %s", name, key, c.field, n, c.got, w)
							ok = false
						}
					}
					if d, has := e["domain"].(string); has && n == 1 && d != h.ch.SNI {
						t.Errorf("%s %s: SNI %q, want %q", name, key, h.ch.SNI, d)
						ok = false
					}
					if ok {
						py.matched++
						if div {
							py.diverged++
						}
					}
				}
			}
		}

		// Rust reference (insta snapshots): one ja4 per stream.
		if snap, err := os.Open(filepath.Join(dir, "expected-rust", "ja4__insta@"+name+".snap")); err == nil {
			for _, e := range readSnap(t, snap) {
				want, ok := e["ja4"]
				if !ok {
					continue
				}
				rs.checked++
				key := fmt.Sprintf("%s:%s->%s:%s", e["src"], e["src_port"], e["dst"], e["dst_port"])
				got := byFlow[key]
				if len(got) == 0 {
					t.Errorf("%s %s (rust): ja4 %s expected, no ClientHello found", name, key, want)
					continue
				}
				// The Rust tool prints the first hello of a stream.
				h := got[0]
				if g := h.ch.JA4(h.transport); g != want {
					if legacyALPN(&h.ch, g) == want {
						t.Logf("%s %s (rust): %s differs from %s only by the ALPN characters of a non-alphanumeric ALPN (see the Python case)", name, key, g, want)
						rs.diverged++
						rs.matched++
						continue
					}
					t.Errorf("%s %s (rust): ja4 %s, want %s", name, key, g, want)
					continue
				}
				if sni, has := e["tls_server_name"]; has && sni != h.ch.SNI {
					t.Errorf("%s %s (rust): SNI %q, want %q", name, key, h.ch.SNI, sni)
					continue
				}
				rs.matched++
				if h.transport == JA4QUIC {
					rs.quic++
				}
			}
			snap.Close()
		}
	}
	t.Logf("JA4 vs the Python reference: %v", py)
	t.Logf("JA4 vs the Rust reference: %v", rs)
	if py.checked == 0 {
		t.Error("no expectation checked")
	}
}

// readSnap reads the list-of-maps YAML of an insta snapshot (flat keys
// only; nested lists such as http: are ignored).
func readSnap(t testing.TB, f *os.File) []map[string]string {
	var out []map[string]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "- "):
			out = append(out, map[string]string{})
			line = "  " + line[2:]
		case !strings.HasPrefix(line, "  ") || strings.HasPrefix(line, "   ") || len(out) == 0:
			continue
		}
		k, v, ok := strings.Cut(strings.TrimSpace(line), ": ")
		if ok {
			out[len(out)-1][k] = strings.Trim(v, `"`)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// svExpect is one expectation read from a Suricata-verify test.yaml.
var svLine = regexp.MustCompile(`^\s+(tls|quic)\.(ja4|ja3\.string|ja3\.hash|client_alpns\[\d+\]|client_handshake\.\w+): (.+)$`)

func TestSuricataVerifyTLS(t *testing.T) {
	root := filepath.Join(corpusDir(t), "public", "suricata-verify")
	dirs, _ := filepath.Glob(filepath.Join(root, "*"))
	var c counts
	for _, d := range dirs {
		yml, err := os.ReadFile(filepath.Join(d, "test.yaml"))
		if err != nil {
			continue
		}
		name := filepath.Base(d)
		if !strings.HasPrefix(name, "ja") && !strings.HasPrefix(name, "tls-") {
			continue
		}
		// Expectations, deduplicated (a test often repeats one per event).
		seen := map[string]bool{}
		var exps [][3]string
		for _, line := range strings.Split(string(yml), "\n") {
			m := svLine.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			k := m[1] + "|" + m[2] + "|" + m[3]
			if !seen[k] {
				seen[k] = true
				exps = append(exps, [3]string{m[1], m[2], strings.Trim(strings.TrimSpace(m[3]), `"`)})
			}
		}
		if len(exps) == 0 {
			continue
		}
		pcap := filepath.Join(d, "input.pcap")
		if m := regexp.MustCompile(`(?m)^pcap: (.+)$`).FindSubmatch(yml); m != nil {
			pcap = filepath.Join(d, strings.TrimSpace(string(m[1])))
		}
		if _, err := os.Stat(pcap); err != nil {
			c.skipped += len(exps)
			t.Logf("%s: skipped %d expectations: its capture %s is not in the corpus", name, len(exps), pcap)
			continue
		}
		hellos, qerrs := captureHellos(t, pcap)
		for _, e := range qerrs {
			t.Errorf("%s: QUIC: %s", name, e)
		}
		for _, e := range exps {
			c.checked++
			transport := byte(JA4TCP)
			if e[0] == "quic" {
				transport = JA4QUIC
			}
			found := false
			var gots []string
			for _, h := range hellos {
				if h.transport != transport {
					continue
				}
				got := svField(&h.ch, transport, e[1])
				gots = append(gots, got)
				if got == e[2] {
					found = true
				}
			}
			if found {
				c.matched++
				if transport == JA4QUIC {
					c.quic++
				}
			} else {
				t.Errorf("%s: %s.%s = %s expected; the capture's %s ClientHellos give %q", name, e[0], e[1], e[2], e[0], gots)
			}
		}
	}
	t.Logf("Suricata-verify TLS/QUIC expectations: %v", c)
}

// svField renders a ClientHello field the way Suricata's EVE test.yaml
// writes it.
func svField(ch *ClientHello, transport byte, field string) string {
	dec := func(l []uint16) string {
		s := make([]string, 0, len(l))
		for _, v := range l {
			if !IsGREASE(v) {
				s = append(s, strconv.Itoa(int(v)))
			}
		}
		return "[" + strings.Join(s, ",") + "]"
	}
	switch {
	case field == "ja4":
		return ch.JA4(transport)
	case field == "ja3.string":
		s, _ := ch.JA3()
		return s
	case field == "ja3.hash":
		_, h := ch.JA3()
		return h
	case strings.HasPrefix(field, "client_alpns["):
		i, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(field, "client_alpns["), "]"))
		if i < len(ch.ALPN) {
			return ch.ALPN[i]
		}
		return ""
	case field == "client_handshake.ciphers":
		return dec(ch.CipherSuites)
	case field == "client_handshake.exts":
		return dec(ch.Extensions)
	case field == "client_handshake.sig_algs":
		return dec(ch.SignatureAlgorithms)
	case field == "client_handshake.version":
		return map[string]string{"13": "TLS 1.3", "12": "TLS 1.2", "11": "TLS 1.1", "10": "TLS 1.0"}[ch.JA4Version()]
	}
	return "unsupported field " + field
}

// keysOf is a test helper for stable error output.
func keysOf[M ~map[string]V, V any](m M) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// TestJA3TShark compares JA3 with TShark's on every ClientHello TShark
// finds in the corpus (testdata/ja3-tshark.tsv, see its header).
func TestJA3TShark(t *testing.T) {
	root := filepath.Join(corpusDir(t), "public")
	f, err := os.Open(filepath.Join("testdata", "ja3-tshark.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type want struct{ full, hash string }
	byPcap := map[string]map[string][]want{} // pcap -> flow -> distinct JA3s
	var pcapOrder []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		c := strings.Split(line, "\t")
		if len(c) != 8 {
			t.Fatalf("bad line %q", line)
		}
		key := fmt.Sprintf("%s:%s->%s:%s", c[2], c[3], c[4], c[5])
		if byPcap[c[0]] == nil {
			byPcap[c[0]] = map[string][]want{}
			pcapOrder = append(pcapOrder, c[0])
		}
		w := want{c[6], c[7]}
		dup := false
		for _, x := range byPcap[c[0]][key] {
			dup = dup || x == w
		}
		if !dup {
			byPcap[c[0]][key] = append(byPcap[c[0]][key], w)
		}
	}
	// Captures copied under several Suricata-verify tests count once.
	seenPcap := map[string]bool{}
	var c counts
	for _, p := range pcapOrder {
		data, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			c.skipped += len(byPcap[p])
			t.Logf("%s: not in the corpus, skipped", p)
			continue
		}
		if seenPcap[string(data)] {
			continue
		}
		seenPcap[string(data)] = true
		hellos, _ := captureHellos(t, filepath.Join(root, p))
		got := map[string][]string{}
		for _, h := range hellos {
			full, hash := h.ch.JA3()
			got[h.flow] = append(got[h.flow], full+" "+hash)
		}
		for _, key := range keysOf(byPcap[p]) {
			for _, w := range byPcap[p][key] {
				c.checked++
				s := w.full + " " + w.hash
				found := false
				for _, g := range got[key] {
					found = found || g == s
				}
				if found {
					c.matched++
				} else {
					t.Errorf("%s %s: JA3 %s expected (TShark), got %q", p, key, s, got[key])
				}
			}
		}
	}
	t.Logf("JA3 vs TShark: %v (distinct ClientHellos per flow)", c)
}
