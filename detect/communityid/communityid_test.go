package communityid

import (
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/wardline/wardline/dataplane/event"
)

type baselineRow struct {
	Proto       uint8   `json:"proto"`
	Saddr       string  `json:"saddr"`
	Daddr       string  `json:"daddr"`
	Sport       *uint16 `json:"sport"`
	Dport       *uint16 `json:"dport"`
	CommunityID string  `json:"communityid"`
}

func readBaseline(t *testing.T, name string) []baselineRow {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var rows []baselineRow
	if err := json.Unmarshal(b, &rows); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return rows
}

func (r baselineRow) tuple() (src, dst netip.Addr, sport, dport uint16) {
	src, dst = netip.MustParseAddr(r.Saddr), netip.MustParseAddr(r.Daddr)
	if r.Sport != nil {
		sport = *r.Sport
	}
	if r.Dport != nil {
		dport = *r.Dport
	}
	return
}

// TestSpecBaseline checks the specification's baseline data: default seed,
// seed 1, and the SHA-1 behind the base64 (the "no base64" variant).
func TestSpecBaseline(t *testing.T) {
	n := 0
	for _, c := range []struct {
		file string
		seed uint16
		hex  bool
	}{
		{"baseline_deflt.json", 0, false},
		{"baseline_seed1.json", 1, false},
		{"baseline_nob64.json", 0, true},
	} {
		for _, r := range readBaseline(t, c.file) {
			src, dst, sp, dp := r.tuple()
			var got string
			if c.hex {
				sp2, dp2, ports, oneWay := mapPorts(r.Proto, sp, dp)
				sum, ok := digest(c.seed, r.Proto, src, dst, sp2, dp2, ports, oneWay)
				if !ok {
					t.Fatalf("%s: %+v: no digest", c.file, r)
				}
				got = "1:" + hex.EncodeToString(sum[:])
			} else {
				got = TupleID(c.seed, r.Proto, src, dst, sp, dp)
			}
			if got != r.CommunityID {
				t.Errorf("%s: proto %d %s:%d -> %s:%d: got %s, want %s", c.file, r.Proto, src, sp, dst, dp, got, r.CommunityID)
			}
			n++
		}
	}
	t.Logf("%d baseline rows checked", n)
}

// mapPorts mirrors AppendTuple's protocol switch for the digest-level test.
func mapPorts(proto uint8, sp, dp uint16) (uint16, uint16, bool, bool) {
	switch proto {
	case protoICMP:
		a, b, ow := icmpPorts(icmp4Counterpart, sp, dp)
		return a, b, true, ow
	case protoICMPv6:
		a, b, ow := icmpPorts(icmp6Counterpart, sp, dp)
		return a, b, true, ow
	case protoTCP, protoUDP, protoSCTP:
		return sp, dp, true, false
	}
	return 0, 0, false, false
}

// TestSpecTables checks the tables of the spec's baseline README and the
// pycommunityid unit tests, whose ICMP rows give (type, code).
func TestSpecTables(t *testing.T) {
	a := netip.MustParseAddr
	v6a, v6b := a("fe80:0001:0203:0405:0607:0809:0A0B:0C0D"), a("fe80:1011:1213:1415:1617:1819:1A1B:1C1D")
	for _, c := range []struct {
		proto            uint8
		src, dst         netip.Addr
		sport, dport     uint16
		seed0, seed1, hx string
	}{
		{6, a("1.2.3.4"), a("5.6.7.8"), 1122, 3344, "1:wCb3OG7yAFWelaUydu0D+125CLM=", "1:HhA1B+6CoLbiKPEs5nhNYN4XWfk=", "c026f7386ef200559e95a53276ed03fb5db908b3"},
		{6, a("5.6.7.8"), a("1.2.3.4"), 3344, 1122, "1:wCb3OG7yAFWelaUydu0D+125CLM=", "1:HhA1B+6CoLbiKPEs5nhNYN4XWfk=", "c026f7386ef200559e95a53276ed03fb5db908b3"},
		{17, a("1.2.3.4"), a("5.6.7.8"), 1122, 3344, "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg=", "1:OShq+iKDAMVouh/4bMxB9Sz4amw=", "d0cbbd227431eb3e1988264cffb1d78b658c84e8"},
		{132, a("5.6.7.8"), a("1.2.3.4"), 3344, 1122, "1:EKt4MsxuyaE6mL+hmrEkQ9csDD8=", "1:uitchpn5MMGAQKBJh7bIr/bAr7s=", "10ab7832cc6ec9a13a98bfa19ab12443d72c0c3f"},
		{1, a("1.2.3.4"), a("5.6.7.8"), 8, 0, "1:crodRHL2FEsHjbv3UkRrfbs4bZ0=", "1:9pr4ZGTICiuZoIh90RRYE2RyXpU=", "72ba1d4472f6144b078dbbf752446b7dbb386d9d"},
		{1, a("5.6.7.8"), a("1.2.3.4"), 0, 0, "1:crodRHL2FEsHjbv3UkRrfbs4bZ0=", "1:9pr4ZGTICiuZoIh90RRYE2RyXpU=", "72ba1d4472f6144b078dbbf752446b7dbb386d9d"},
		{1, a("1.2.3.4"), a("5.6.7.8"), 11, 0, "1:f/YiSyWqczrTgfUCZlBUnvHRcPk=", "1:1DD7cWGC/Yg91YGsQeni8du3pIA=", "7ff6224b25aa733ad381f5026650549ef1d170f9"},
		{58, v6a, v6b, 128, 0, "1:0bf7hyMJUwt3fMED7z8LIfRpBeo=", "1:IO27GQzPuCtNnwFvjWALMHu5tJE=", "d1b7fb872309530b777cc103ef3f0b21f46905ea"},
		{58, v6b, v6a, 129, 0, "1:0bf7hyMJUwt3fMED7z8LIfRpBeo=", "1:IO27GQzPuCtNnwFvjWALMHu5tJE=", "d1b7fb872309530b777cc103ef3f0b21f46905ea"},
		{58, v6a, v6b, 146, 0, "1:fYC8+pz24E+EhANP1EZhpX0Dw10=", "1:Cv4IKJe56BNkF0MBW2YxQ3Nwc3s=", "7d80bcfa9cf6e04f8484034fd44661a57d03c35d"},
		{46, a("5.6.7.8"), a("1.2.3.4"), 0, 0, "1:ikv3kmf89luf73WPz1jOs49S768=", "1:/buhqeOmaRCopOZFy9HnoJd5XW8=", "8a4bf79267fcf65b9fef758fcf58ceb38f52efaf"},
		{46, v6b, v6a, 0, 0, "1:wQ/2mwrnXP4lmJcHdGL5ePjR+e0=", "1:j6EyyfBzL4vWKHFXgUqb5Az3OxM=", "c10ff69b0ae75cfe259897077462f978f8d1f9ed"},
		// pycommunityid tests: type 20 is one-way, so its code counts;
		// echo reply ignores its code.
		{1, a("192.168.0.89"), a("192.168.0.1"), 20, 0, "1:3o2RFccXzUgjl7zDpqmY7yJi8rI=", "1:lCXHHxavE1Vq3oX9NH5ladQg02o=", "de8d9115c717cd482397bcc3a6a998ef2262f2b2"},
		{1, a("192.168.0.89"), a("192.168.0.1"), 20, 1, "1:tz/fHIDUHs19NkixVVoOZywde+I=", "1:Ie3wmFyxiEyikbsbcO03d2nh+PM=", "b73fdf1c80d41ecd7d3648b1555a0e672c1d7be2"},
		{1, a("192.168.0.1"), a("192.168.0.89"), 0, 20, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=", "1:03g6IloqVBdcZlPyX8r0hgoE7kA=", "5f4b27617a60c22bfd4d9b6a83ae2c833527e839"},
		{58, a("3ffe:507:0:1:260:97ff:fe07:69ea"), a("3ffe:507:0:1:200:86ff:fe05:80da"), 3, 0, "1:NdobDX8PQNJbAyfkWxhtL2Pqp5w=", "1:OlOWx9psIbBFi7lOCw/4MhlKR9M=", "35da1b0d7f0f40d25b0327e45b186d2f63eaa79c"},
		{58, a("3ffe:507:0:1:200:86ff:fe05:80da"), a("3ffe:507:0:1:260:97ff:fe07:69ea"), 3, 0, "1:/OGBt9BN1ofenrmSPWYicpij2Vc=", "1:Ij4ZxnC87/MXzhOjvH2vHu7LRmE=", "fce181b7d04dd687de9eb9923d66227298a3d957"},
		{6, a("10.0.0.1"), a("10.0.0.2"), 10, 11569, "1:SXBGMX1lBOwhhoDrZynfROxnhnM=", "1:HmBRGR+fUyXF4t8WEtal7Y0gEAo=", "497046317d6504ec218680eb6729df44ec678673"},
	} {
		if got := TupleID(0, c.proto, c.src, c.dst, c.sport, c.dport); got != c.seed0 {
			t.Errorf("proto %d %s:%d -> %s:%d seed 0: got %s, want %s", c.proto, c.src, c.sport, c.dst, c.dport, got, c.seed0)
		}
		if got := TupleID(1, c.proto, c.src, c.dst, c.sport, c.dport); got != c.seed1 {
			t.Errorf("proto %d %s:%d -> %s:%d seed 1: got %s, want %s", c.proto, c.src, c.sport, c.dst, c.dport, got, c.seed1)
		}
		sp, dp, ports, oneWay := mapPorts(c.proto, c.sport, c.dport)
		sum, _ := digest(0, c.proto, c.src, c.dst, sp, dp, ports, oneWay)
		if got := hex.EncodeToString(sum[:]); got != c.hx {
			t.Errorf("proto %d %s:%d -> %s:%d sha1: got %s, want %s", c.proto, c.src, c.sport, c.dst, c.dport, got, c.hx)
		}
	}
}

// TestFlowKeys checks ID on keys as the fast path builds them: ICMP types
// folded to the request, the code in DstPort, IPv4 unmapped or not.
func TestFlowKeys(t *testing.T) {
	a := netip.MustParseAddr
	for _, c := range []struct {
		name string
		k    event.FlowKey
		want string
	}{
		{"tcp out", event.FlowKey{Src: a("128.232.110.120"), Dst: a("66.35.250.204"), SrcPort: 34855, DstPort: 80, Proto: 6}, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="},
		{"tcp back", event.FlowKey{Src: a("66.35.250.204"), Dst: a("128.232.110.120"), SrcPort: 80, DstPort: 34855, Proto: 6}, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="},
		{"tcp 4in6", event.FlowKey{Src: a("::ffff:128.232.110.120"), Dst: a("::ffff:66.35.250.204"), SrcPort: 34855, DstPort: 80, Proto: 6}, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="},
		{"vlan ignored", event.FlowKey{Src: a("192.168.1.52"), Dst: a("8.8.8.8"), SrcPort: 54585, DstPort: 53, Proto: 17, VLAN: [2]uint16{10, 20}}, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="},
		// echo request flow: type 8, code 0
		{"icmp echo", event.FlowKey{Src: a("192.168.0.89"), Dst: a("192.168.0.1"), SrcPort: 8, DstPort: 0, Proto: 1}, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="},
		// a non-zero code on a two-way type does not change the ID
		{"icmp echo code 3", event.FlowKey{Src: a("192.168.0.89"), Dst: a("192.168.0.1"), SrcPort: 8, DstPort: 3, Proto: 1}, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="},
		{"icmp time exceeded", event.FlowKey{Src: a("10.0.0.1"), Dst: a("10.0.0.2"), SrcPort: 11, DstPort: 0, Proto: 1}, "1:YHxtAirCG//0OzkcVAukqKQN9xM="},
		// neighbor advert folded onto solicit by the fast path
		{"icmp6 NS", event.FlowKey{Src: a("fe80::200:86ff:fe05:80da"), Dst: a("fe80::260:97ff:fe07:69ea"), SrcPort: 135, DstPort: 0, Proto: 58}, "1:dGHyGvjMfljg6Bppwm3bg0LO8TY="},
		{"icmp6 echo", event.FlowKey{Src: a("3ffe:507:0:1:200:86ff:fe05:80da"), Dst: a("3ffe:501:0:1001::2"), SrcPort: 128, DstPort: 0, Proto: 58}, "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg="},
		{"icmp6 unreachable one-way", event.FlowKey{Src: a("3ffe:501:410:0:2c0:dfff:fe47:33e"), Dst: a("3ffe:507:0:1:200:86ff:fe05:80da"), SrcPort: 1, DstPort: 4, Proto: 58}, "1:hLZd0XGWojozrvxqE0dWB1iM6R0="},
		{"rsvp", event.FlowKey{Src: a("10.1.12.2"), Dst: a("10.1.12.1"), SrcPort: 7, DstPort: 9, Proto: 46}, "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw="},
		{"no addresses", event.FlowKey{Proto: 6}, ""},
	} {
		if got := ID(0, c.k); got != c.want {
			t.Errorf("%s: ID(%v) = %q, want %q", c.name, c.k, got, c.want)
		}
	}
}

func TestAllocs(t *testing.T) {
	k := event.FlowKey{Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"), SrcPort: 1234, DstPort: 443, Proto: 6}
	buf := make([]byte, 0, Len)
	if n := testing.AllocsPerRun(100, func() { buf = AppendID(buf[:0], 0, k) }); n != 0 {
		t.Errorf("AppendID allocates %v times, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = ID(0, k) }); n != 1 {
		t.Errorf("ID allocates %v times, want 1", n)
	}
}

func BenchmarkID(b *testing.B) {
	for _, c := range []struct {
		name string
		k    event.FlowKey
	}{
		{"tcp4", event.FlowKey{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("198.51.100.7"), SrcPort: 51515, DstPort: 443, Proto: 6}},
		{"tcp6", event.FlowKey{Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"), SrcPort: 51515, DstPort: 443, Proto: 6}},
		{"icmp4", event.FlowKey{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("198.51.100.7"), SrcPort: 8, Proto: 1}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = ID(0, c.k)
			}
		})
		b.Run(c.name+"/append", func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]byte, 0, Len)
			for b.Loop() {
				buf = AppendID(buf[:0], 0, c.k)
			}
		})
	}
}
