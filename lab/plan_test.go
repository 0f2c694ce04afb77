package lab

import (
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestPlan(t *testing.T) {
	for _, clients := range []int{1, 3, 9, 10, MaxClients} {
		p := newPlan("wl3fa2", clients, true)
		l := p.lab
		if got, want := len(l.Clients()), clients; got != want {
			t.Errorf("clients=%d: %d clients, want %d", clients, got, want)
		}
		// 2 switches, clients, resolver, 2 servers, 4 internet hosts, router, mgmt, box
		if got, want := len(p.namespaces), 2+clients+3+4+3; got != want {
			t.Errorf("clients=%d: %d namespaces, want %d", clients, got, want)
		}
		seen := map[string]string{}
		unique := func(kind, v, who string) {
			if prev, ok := seen[kind+v]; ok {
				t.Errorf("clients=%d: %s %s used by %s and %s", clients, kind, v, prev, who)
			}
			seen[kind+v] = who
		}
		for _, ns := range p.namespaces {
			unique("namespace", ns, ns)
			if !labNSRE.MatchString(ns) {
				t.Errorf("Sweep would not find namespace %s", ns)
			}
			if !strings.HasPrefix(ns, "wl3fa2-") {
				t.Errorf("namespace %s lacks the lab ID", ns)
			}
		}
		for role, h := range l.Hosts {
			if h.Role != role || h.NS != "wl3fa2-"+role {
				t.Errorf("host %q: role %q ns %q", role, h.Role, h.NS)
			}
			unique("ipv4", h.IPv4.String(), role)
			if h.IPv6.IsValid() {
				unique("ipv6", h.IPv6.String(), role)
			}
			unique("mac", h.MAC.String(), role)
			if len(role) > 15 || len(h.Iface) > 15 {
				t.Errorf("host %q: interface name too long (switch port %q, iface %q)", role, role, h.Iface)
			}
			if !h.IPv4.IsValid() || !netip.MustParsePrefix("198.18.0.0/15").Contains(h.IPv4) &&
				!netip.MustParsePrefix("192.0.2.0/24").Contains(h.IPv4) &&
				!netip.MustParsePrefix("198.51.100.0/24").Contains(h.IPv4) &&
				!netip.MustParsePrefix("203.0.113.0/24").Contains(h.IPv4) {
				t.Errorf("host %q: IPv4 %v outside the lab ranges", role, h.IPv4)
			}
			if h.IPv6.IsValid() && !netip.MustParsePrefix("2001:db8::/32").Contains(h.IPv6) {
				t.Errorf("host %q: IPv6 %v outside 2001:db8::/32", role, h.IPv6)
			}
			if h.Gateway4.IsValid() && netip.PrefixFrom(h.IPv4, bits4).Masked() != netip.PrefixFrom(h.Gateway4, bits4).Masked() {
				t.Errorf("host %q: gateway %v not in %v/%d", role, h.Gateway4, h.IPv4, bits4)
			}
		}
	}

	l := newPlan("wl3fa2", 3, true).lab
	for role, want := range map[string][2]string{
		"client1":  {"198.18.0.11", "2001:db8:18::11"},
		"client3":  {"198.18.0.13", "2001:db8:18::13"},
		"resolver": {"198.18.0.53", "2001:db8:18::53"},
		"server1":  {"198.18.0.20", "2001:db8:18::20"},
		"router":   {"198.18.0.1", "2001:db8:18::1"},
		"web":      {"203.0.113.10", "2001:db8:113::10"},
		"c2":       {"198.51.100.66", "2001:db8:113::66"},
		"mirror":   {"192.0.2.10", "2001:db8:113::a"},
	} {
		h := l.Host(role)
		if got := [2]string{h.IPv4.String(), h.IPv6.String()}; got != want {
			t.Errorf("%s: addresses %v, want %v", role, got, want)
		}
	}
	if got, want := l.Host("client1").MAC.String(), "02:00:c6:12:00:0b"; got != want {
		t.Errorf("client1 MAC %s, want %s", got, want)
	}
	if got, want := l.Host("c2").Gateway4.String(), "198.51.100.1"; got != want {
		t.Errorf("c2 gateway %s, want %s", got, want)
	}
	if l.Host("nope") != nil {
		t.Errorf("Host(nope) != nil")
	}
	for _, ns := range []string{"wlx-a", "wlx-b", "wl3fa2", "wl3fa2-", "wl3fa2-client0", "x-box"} {
		if labNSRE.MatchString(ns) {
			t.Errorf("Sweep would delete %s, which no lab creates", ns)
		}
	}
	if got := newPlan("wl3fa2", 3, false).lab.Box.Bridge; got != "" {
		t.Errorf("NoBoxBridge: Box.Bridge = %q, want empty", got)
	}
}

func TestValidateID(t *testing.T) {
	for id, ok := range map[string]bool{
		"wl3fa2": true, "ab": true, "wlabcdef0123": true,
		"": false, "w": false, "3fa2": false, "wl-3fa2": false, "WL3FA2": false, "wlabcdef01234": false,
	} {
		if err := validateID(id); (err == nil) != ok {
			t.Errorf("validateID(%q) = %v, want ok=%v", id, err, ok)
		}
	}
}

func TestStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	l := newPlan("wl3fa2", 2, true).lab
	l.Dir = filepath.Join(dir, l.ID)
	l.Config = Config{ID: l.ID, Clients: 2, StateDir: dir}
	l.procs = []*Process{{PID: 42, StartTime: 7, NS: "wl3fa2-web", Role: "web", Name: "httpd", Log: "/x.log"}}
	l.bind()
	if err := os.MkdirAll(l.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := l.save(true); err != nil {
		t.Fatal(err)
	}
	ids, err := List(dir)
	if err != nil || !reflect.DeepEqual(ids, []string{"wl3fa2"}) {
		t.Fatalf("List = %v, %v; want [wl3fa2]", ids, err)
	}
	got, err := Load(dir, "wl3fa2")
	if err != nil {
		t.Fatal(err)
	}
	for role, h := range l.Hosts {
		g := got.Host(role)
		if g == nil || g.IPv4 != h.IPv4 || g.IPv6 != h.IPv6 || g.MAC.String() != h.MAC.String() || g.Gateway6 != h.Gateway6 || g.lab != got {
			t.Errorf("host %s: loaded %+v, want %+v", role, g, h)
		}
	}
	if got.Box.host != got.Host("box") || got.Box.MgmtAddr != l.Box.MgmtAddr || got.Box.InsidePeer != l.Box.InsidePeer {
		t.Errorf("box: loaded %+v, want %+v", got.Box, l.Box)
	}
	if !reflect.DeepEqual(got.Namespaces, l.Namespaces) || got.Resolver != l.Resolver || got.incomplete {
		t.Errorf("loaded lab differs: %+v", got)
	}
	if ps := got.Processes(); len(ps) != 1 || *ps[0] != *l.procs[0] {
		t.Errorf("processes: loaded %+v", ps)
	}
	if _, err := Load(dir, "wl0000"); err == nil {
		t.Errorf("Load of a missing lab succeeded")
	}
	if ids, err := List(filepath.Join(dir, "missing")); err != nil || ids != nil {
		t.Errorf("List(missing) = %v, %v", ids, err)
	}
}

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(newHandler("web", nil))
	defer srv.Close()
	get := func(path string) (int, []byte) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b
	}
	if code, b := get("/"); code != 200 || !strings.Contains(string(b), "<html>") {
		t.Errorf("GET / = %d %q", code, b)
	}
	for _, n := range []int{0, 1, 1000, 200000} {
		code, b := get("/bytes?n=" + strconv.Itoa(n))
		if code != 200 || len(b) != n {
			t.Errorf("GET /bytes?n=%d = %d, %d bytes", n, code, len(b))
		}
	}
	for _, q := range []string{"", "?n=-1", "?n=x", "?n=1073741825"} {
		if code, _ := get("/bytes" + q); code != http.StatusBadRequest {
			t.Errorf("GET /bytes%s = %d, want 400", q, code)
		}
	}
	if code, _ := get("/nope"); code != http.StatusNotFound {
		t.Errorf("GET /nope = %d, want 404", code)
	}
	resp, err := http.Post(srv.URL+"/upload", "application/octet-stream", strings.NewReader(strings.Repeat("x", 12345)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := strings.TrimSpace(string(b)); got != "12345" {
		t.Errorf("POST /upload answered %q, want 12345", got)
	}
	for want := 1; want <= 2; want++ {
		code, b := get("/beacon")
		var m map[string]any
		if err := json.Unmarshal(b, &m); code != 200 || err != nil || m["host"] != "web" || m["seq"] != float64(want) {
			t.Errorf("GET /beacon = %d %s (%v)", code, b, err)
		}
	}
}

func TestSelfSigned(t *testing.T) {
	a := httpdArgs{Role: "web", Names: []string{WebName}, IPs: []netip.Addr{netip.MustParseAddr("203.0.113.10"), netip.MustParseAddr("2001:db8:113::10")}}
	now := time.Now()
	cert, err := selfSigned(a, now)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	for _, name := range []string{WebName, "203.0.113.10", "2001:db8:113::10"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool, CurrentTime: now}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
}

func TestDNSQuery(t *testing.T) {
	got := dnsQuery(0x1234, "web.example.com")
	want := []byte{0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0,
		3, 'w', 'e', 'b', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 1, 0, 1}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("dnsQuery = %x, want %x", got, want)
	}
}

func TestProcStat(t *testing.T) {
	st, state, err := procStat(os.Getpid())
	if err != nil || st == 0 || state == 'Z' {
		t.Fatalf("procStat(self) = %d %c %v", st, state, err)
	}
	p := &Process{PID: os.Getpid(), StartTime: st}
	if !p.Alive() {
		t.Errorf("self not alive")
	}
	p.StartTime++
	if p.Alive() {
		t.Errorf("self alive with another start time (PID reuse check broken)")
	}
}
