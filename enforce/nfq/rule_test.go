package nfq

import (
	"encoding/binary"
	"strings"
	"testing"
)

// ipv4 builds an IPv4 packet with a TCP (proto 6) or UDP (17) header to
// dport, or no L4 header for other protocols, then payload.
func ipv4(proto uint8, dport uint16, payload string) []byte {
	var l4 []byte
	switch proto {
	case ProtoTCP:
		l4 = make([]byte, 20)
		binary.BigEndian.PutUint16(l4[0:], 40000)
		binary.BigEndian.PutUint16(l4[2:], dport)
		l4[12] = 5 << 4
	case ProtoUDP:
		l4 = make([]byte, 8)
		binary.BigEndian.PutUint16(l4[0:], 40000)
		binary.BigEndian.PutUint16(l4[2:], dport)
		binary.BigEndian.PutUint16(l4[4:], uint16(8+len(payload)))
	}
	l4 = append(l4, payload...)
	ip := make([]byte, 20, 20+len(l4))
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
	ip[8], ip[9] = 64, proto
	copy(ip[12:], []byte{198, 18, 0, 10})
	copy(ip[16:], []byte{198, 51, 100, 66})
	return append(ip, l4...)
}

// ipv6 builds an IPv6 packet, optionally behind a hop-by-hop header.
func ipv6(proto uint8, dport uint16, payload string, hopByHop bool) []byte {
	v4 := ipv4(proto, dport, payload)[20:]
	hdr := make([]byte, 40)
	hdr[0] = 0x60
	hdr[6], hdr[7] = proto, 64
	var ext []byte
	if hopByHop {
		ext = make([]byte, 8)
		ext[0], hdr[6] = proto, 0
	}
	binary.BigEndian.PutUint16(hdr[4:], uint16(len(ext)+len(v4)))
	return append(append(hdr, ext...), v4...)
}

func TestMatch(t *testing.T) {
	rules := []Rule{
		{Name: "beacon", Content: []byte("/c2/beacon"), Proto: ProtoTCP, DstPort: 80, Action: Drop},
		{Name: "stratum", Content: []byte(`"method":"mining.subscribe"`), NoCase: true, Action: Drop},
		{Name: "early-get", Content: []byte("GET "), Depth: 4, Action: Accept},
		{Name: "offset", Content: []byte("XY"), Offset: 2, Depth: 2, Proto: ProtoUDP, Action: Drop},
	}
	m, err := Compile(rules)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		pkt  []byte
		want int
	}{
		{"beacon tcp/80", ipv4(ProtoTCP, 80, "GET /c2/beacon HTTP/1.1\r\n"), 0},
		{"beacon wrong port", ipv4(ProtoTCP, 8080, "POST /c2/beacon HTTP/1.1\r\n"), -1},
		{"beacon udp", ipv4(ProtoUDP, 80, "x /c2/beacon"), -1},
		{"beacon ipv6", ipv6(ProtoTCP, 80, "GET /c2/beacon HTTP/1.1\r\n", false), 0},
		{"beacon ipv6 hop-by-hop", ipv6(ProtoTCP, 80, "GET /c2/beacon HTTP/1.1\r\n", true), 0},
		{"beacon case differs", ipv4(ProtoTCP, 80, "POST /C2/Beacon HTTP/1.1\r\n"), -1},
		{"nocase", ipv4(ProtoTCP, 3333, `{"id":1,"METHOD":"Mining.Subscribe"}`), 1},
		{"nocase at end", ipv4(ProtoUDP, 1, `x"method":"mining.subscribE"`), 1},
		{"nocase absent", ipv4(ProtoTCP, 3333, `{"method":"mining.notify"}`), -1},
		{"depth hit", ipv4(ProtoTCP, 80, "GET / HTTP/1.1"), 2},
		{"depth miss", ipv4(ProtoTCP, 80, "xGET / HTTP/1.1"), -1},
		{"offset hit", ipv4(ProtoUDP, 9, "abXYcd"), 3},
		{"offset before", ipv4(ProtoUDP, 9, "XYabcd"), -1},
		{"offset after depth", ipv4(ProtoUDP, 9, "abcXYd"), -1},
		{"offset beyond payload", ipv4(ProtoUDP, 9, "a"), -1},
		{"no l4 header", ipv4(1, 0, "/c2/beacon"), -1},
		{"truncated tcp", ipv4(ProtoTCP, 80, "GET /c2/beacon")[:30], -1},
		{"not ip", []byte{0x00, 0x01}, -1},
		{"empty", nil, -1},
	} {
		if got := m.Match(tc.pkt); got != tc.want {
			t.Errorf("%s: Match = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestMatchFragmentAndPadding(t *testing.T) {
	m, err := Compile([]Rule{{Name: "r", Content: []byte("zz"), Action: Drop}})
	if err != nil {
		t.Fatal(err)
	}
	// Link padding after the IP total length is not payload.
	p := append(ipv4(ProtoUDP, 9, "ab"), 'z', 'z')
	if got := m.Match(p); got != -1 {
		t.Errorf("padding matched: %d", got)
	}
	// A later fragment has no UDP header: its bytes are the payload.
	f := ipv4(ProtoUDP, 9, "")
	f = append(f[:20], []byte("zzzzzzzzzz")...)
	binary.BigEndian.PutUint16(f[2:], uint16(len(f)))
	binary.BigEndian.PutUint16(f[6:], 100) // fragment offset 800
	if got := m.Match(f); got != 0 {
		t.Errorf("later fragment: Match = %d, want 0", got)
	}
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		rule Rule
		want string
	}{
		{Rule{Content: []byte("x")}, "no name"},
		{Rule{Name: "a"}, "empty content"},
		{Rule{Name: "a", Content: []byte("abc"), Depth: 2}, "depth 2 is shorter"},
		{Rule{Name: "a", Content: []byte("abc"), Offset: -1}, "negative offset"},
		{Rule{Name: "a", Content: []byte("abc"), DstPort: 80}, "needs proto tcp"},
		{Rule{Name: "a", Content: []byte("abc"), Action: 7}, "unknown action"},
	} {
		_, err := Compile([]Rule{tc.rule})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "rule 0") {
			t.Errorf("%+v: err = %v, want %q with the rule's position", tc.rule, err, tc.want)
		}
	}
	_, err := Compile([]Rule{{Name: "a", Content: []byte("x")}, {Name: "a", Content: []byte("y")}})
	if err == nil || !strings.Contains(err.Error(), `rule 1 ("a"): name used twice`) {
		t.Errorf("duplicate name: err = %v", err)
	}
}

func TestIndexFold(t *testing.T) {
	for _, tc := range []struct {
		s, pat string
		want   int
	}{
		{"Hello World", "world", 6},
		{"WWWorld", "world", 2},
		{"abc", "abcd", -1},
		{"xx1ABC", "1abc", 2},
		{"\xc3\x84x", "\xc3\x84x", 0}, // bytes ≥ 0x80 compare as they are
		{"", "a", -1},
	} {
		if got := indexFold([]byte(tc.s), []byte(tc.pat)); got != tc.want {
			t.Errorf("indexFold(%q, %q) = %d, want %d", tc.s, tc.pat, got, tc.want)
		}
	}
}

func TestMatchAllocs(t *testing.T) {
	m, err := Compile([]Rule{
		{Name: "a", Content: []byte("/c2/beacon"), Action: Drop},
		{Name: "b", Content: []byte("MINING"), NoCase: true, Action: Drop},
	})
	if err != nil {
		t.Fatal(err)
	}
	p := ipv4(ProtoUDP, 9, strings.Repeat("x", 1000))
	if n := testing.AllocsPerRun(100, func() { m.Match(p) }); n != 0 {
		t.Errorf("Match allocates %v times per packet", n)
	}
}
