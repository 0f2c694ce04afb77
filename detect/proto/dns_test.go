package proto

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

func mustName(s string) dnsmessage.Name { return dnsmessage.MustNewName(s) }

// buildResponse is a response with one record of each kind the parser
// decodes, an unknown type and an OPT record, compressed.
func buildResponse(t testing.TB) []byte {
	t.Helper()
	bld := dnsmessage.NewBuilder(nil, dnsmessage.Header{
		ID: 0xbeef, Response: true, Authoritative: true, RecursionDesired: true,
		RecursionAvailable: true, RCode: dnsmessage.RCodeSuccess,
	})
	bld.EnableCompression()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(bld.StartQuestions())
	must(bld.Question(dnsmessage.Question{Name: mustName("WWW.Example.COM."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}))
	must(bld.StartAnswers())
	hdr := func(name string, ttl uint32) dnsmessage.ResourceHeader {
		return dnsmessage.ResourceHeader{Name: mustName(name), Class: dnsmessage.ClassINET, TTL: ttl}
	}
	must(bld.CNAMEResource(hdr("www.example.com.", 300), dnsmessage.CNAMEResource{CNAME: mustName("Edge.Example.NET.")}))
	must(bld.AResource(hdr("edge.example.net.", 60), dnsmessage.AResource{A: [4]byte{192, 0, 2, 7}}))
	must(bld.AAAAResource(hdr("edge.example.net.", 60), dnsmessage.AAAAResource{AAAA: netip.MustParseAddr("2001:db8::7").As16()}))
	must(bld.TXTResource(hdr("example.com.", 5), dnsmessage.TXTResource{TXT: []string{"v=spf1 -all", "x"}}))
	must(bld.MXResource(hdr("example.com.", 5), dnsmessage.MXResource{Pref: 10, MX: mustName("mx.example.com.")}))
	must(bld.UnknownResource(dnsmessage.ResourceHeader{Name: mustName("t.example.com."), Type: 10, Class: dnsmessage.ClassINET, TTL: 1},
		dnsmessage.UnknownResource{Type: 10, Data: []byte("nullnullnull")}))
	must(bld.StartAuthorities())
	must(bld.SOAResource(hdr("example.com.", 900), dnsmessage.SOAResource{NS: mustName("ns1.example.com."), MBox: mustName("hostmaster.example.com."), Serial: 1}))
	must(bld.StartAdditionals())
	var opt dnsmessage.ResourceHeader
	must(opt.SetEDNS0(1232, dnsmessage.RCodeSuccess, false))
	must(bld.OPTResource(opt, dnsmessage.OPTResource{}))
	b, err := bld.Finish()
	must(err)
	return b
}

func buildQuery(t testing.TB, name string, typ dnsmessage.Type) []byte {
	t.Helper()
	bld := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 7, RecursionDesired: true})
	if err := bld.StartQuestions(); err != nil {
		t.Fatal(err)
	}
	if err := bld.Question(dnsmessage.Question{Name: mustName(name), Type: typ, Class: dnsmessage.ClassINET}); err != nil {
		t.Fatal(err)
	}
	b, err := bld.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func withPrefix(b []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...)
}

func TestParseDNSResponse(t *testing.T) {
	b := buildResponse(t)
	for _, tcp := range []bool{false, true} {
		in := b
		if tcp {
			in = withPrefix(b)
		}
		m, err := ParseDNS(in, tcp)
		if err != nil {
			t.Fatalf("tcp=%v: %v", tcp, err)
		}
		if m.ID != 0xbeef || !m.Response || !m.AA || !m.RD || !m.RA || m.TC || m.RCode.String() != "NOERROR" {
			t.Errorf("header: %+v", m)
		}
		if m.WireLen != len(in) {
			t.Errorf("WireLen %d, want %d", m.WireLen, len(in))
		}
		if len(m.Questions) != 1 || m.Questions[0].Name != "www.example.com" || m.Questions[0].Type != DNSTypeA || m.Questions[0].Type.String() != "A" {
			t.Errorf("questions: %+v", m.Questions)
		}
		want := []struct {
			name, typ, target, addr string
			ttl                     uint32
		}{
			{"www.example.com", "CNAME", "edge.example.net", "invalid IP", 300},
			{"edge.example.net", "A", "", "192.0.2.7", 60},
			{"edge.example.net", "AAAA", "", "2001:db8::7", 60},
			{"example.com", "TXT", "", "invalid IP", 5},
			{"example.com", "MX", "mx.example.com", "invalid IP", 5},
			{"t.example.com", "NULL", "", "invalid IP", 1},
		}
		if len(m.Answers) != len(want) {
			t.Fatalf("%d answers, want %d: %+v", len(m.Answers), len(want), m.Answers)
		}
		for i, w := range want {
			a := m.Answers[i]
			if a.Name != w.name || a.Type.String() != w.typ || a.Target != w.target || a.Addr.String() != w.addr || a.TTL != w.ttl {
				t.Errorf("answer %d: %+v, want %+v", i, a, w)
			}
		}
		if got := m.Answers[3].TXT; !slices.Equal(got, []string{"v=spf1 -all", "x"}) {
			t.Errorf("TXT %q", got)
		}
		if m.Answers[4].Pref != 10 || m.Answers[5].Length != 12 {
			t.Errorf("MX pref %d, NULL length %d", m.Answers[4].Pref, m.Answers[5].Length)
		}
		if len(m.Authorities) != 1 || m.Authorities[0].Type != DNSTypeSOA || m.Authorities[0].Target != "ns1.example.com" || m.Authorities[0].TTL != 900 {
			t.Errorf("authorities: %+v", m.Authorities)
		}
		if len(m.Additionals) != 1 || m.Additionals[0].Type != DNSTypeOPT || m.Additionals[0].Name != "" || m.Additionals[0].Class != 1232 {
			t.Errorf("additionals: %+v", m.Additionals)
		}
		if m.QDCount != 1 || m.ANCount != 6 || m.NSCount != 1 || m.ARCount != 1 {
			t.Errorf("counts %d %d %d %d", m.QDCount, m.ANCount, m.NSCount, m.ARCount)
		}
	}
}

func TestParseDNSTruncated(t *testing.T) {
	b := buildResponse(t)
	// Cut inside the third answer (the AAAA record): header, question and
	// two answers survive.
	for cut := 0; cut < len(b); cut++ {
		m, err := ParseDNS(b[:cut], false)
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("cut at %d: err %v, want ErrTruncated", cut, err)
		}
		if cut >= 12 && m.ID != 0xbeef {
			t.Fatalf("cut at %d: header lost", cut)
		}
		if cut >= 12+21 && len(m.Questions) != 1 {
			t.Fatalf("cut at %d: %d questions", cut, len(m.Questions))
		}
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Offset > cut {
			t.Fatalf("cut at %d: %v: offset past the cut", cut, err)
		}
	}
	// Over TCP the length prefix announces more than the snippet holds.
	in := withPrefix(b)[:2+40]
	m, err := ParseDNS(in, true)
	if !errors.Is(err, ErrTruncated) || len(m.Questions) != 1 || m.WireLen != 2+len(b) {
		t.Errorf("TCP cut: %v, %d questions, WireLen %d", err, len(m.Questions), m.WireLen)
	}
	t.Log(err)
	if _, err := ParseDNS([]byte{0}, true); !errors.Is(err, ErrTruncated) {
		t.Errorf("1-byte TCP: %v", err)
	}
}

func TestParseDNSMalformed(t *testing.T) {
	q := buildQuery(t, "a.example.", dnsmessage.TypeTXT)
	// Replace the first label length with a reserved 0x80 prefix.
	bad := slices.Clone(q)
	bad[12] = 0x80
	_, err := ParseDNS(bad, false)
	var pe *ParseError
	if !errors.Is(err, ErrMalformed) || !errors.As(err, &pe) || pe.Offset != 12 || pe.What != "question 0" {
		t.Errorf("reserved label: %v", err)
	}
	// A compression pointer to itself: malformed, not truncated.
	loop := slices.Clone(q)
	loop[12], loop[13] = 0xc0, 12
	if _, err := ParseDNS(loop, false); !errors.Is(err, ErrMalformed) {
		t.Errorf("pointer loop: %v", err)
	}
	t.Log(err)
}

func TestParseDNSPipelinedTCP(t *testing.T) {
	a, b := buildQuery(t, "one.example.", dnsmessage.TypeA), buildQuery(t, "two.example.", dnsmessage.TypeAAAA)
	in := append(withPrefix(a), withPrefix(b)...)
	m, err := ParseDNS(in, true)
	if err != nil || m.Questions[0].Name != "one.example" {
		t.Fatalf("%v %+v", err, m.Questions)
	}
	m2, err := ParseDNS(in[m.WireLen:], true)
	if err != nil || m2.Questions[0].Name != "two.example" || m2.Questions[0].Type.String() != "AAAA" {
		t.Fatalf("%v %+v", err, m2.Questions)
	}
}

func TestDNSStrings(t *testing.T) {
	for c, want := range map[DNSRCode]string{0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED", 9: "NOTAUTH", 13: "13"} {
		if c.String() != want {
			t.Errorf("rcode %d: %s, want %s", c, c, want)
		}
	}
	for ty, want := range map[DNSType]string{1: "A", 10: "NULL", 16: "TXT", 28: "AAAA", 65: "HTTPS", 255: "ANY", 4242: "4242"} {
		if ty.String() != want {
			t.Errorf("type %d: %s, want %s", ty, ty, want)
		}
	}
}

func TestParseDNSAllocs(t *testing.T) {
	b := buildQuery(t, "www.example.com.", dnsmessage.TypeA)
	var m DNSMessage
	if n := testing.AllocsPerRun(100, func() { _ = m.Parse(b, false) }); n > 1 {
		t.Errorf("Parse of a query allocates %v times, want ≤ 1", n)
	}
}

func TestParseDNSBadAddressLength(t *testing.T) {
	// An inverse query (opcode 1) whose A record has RDLENGTH 0, as in
	// nDPI's dns_invert_query capture: the record is kept, without an
	// address, and the parse goes on.
	b := []byte{0x77, 0xfc, 0x09, 0x00, 0, 0, 0, 1, 0, 0, 0, 0,
		3, '2', '1', '6', 2, '5', '8', 3, '2', '0', '2', 1, '4', 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0}
	m, err := ParseDNS(b, false)
	if err != nil || m.Opcode != 1 || len(m.Answers) != 1 || m.Answers[0].Addr.IsValid() || m.Answers[0].Name != "216.58.202.4" {
		t.Errorf("%v %+v", err, m)
	}
}
