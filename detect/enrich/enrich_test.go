package enrich

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestInventory(t *testing.T) {
	dir := t.TempDir()
	csvPath := filepath.Join(dir, "assets.csv")
	os.WriteFile(csvPath, []byte("# office assets\nprefix,name,owner,role,criticality\n198.18.0.20,fileserver,it,server,4\n198.18.0.0/24,office-lan,it,segment,2\n"), 0o644)
	as, err := LoadAssets(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	inv := New([]netip.Prefix{netip.MustParsePrefix("198.18.0.0/16")}, as)
	srv := netip.MustParseAddr("198.18.0.20")
	if !inv.IsHome(srv) || inv.IsHome(netip.MustParseAddr("203.0.113.1")) {
		t.Error("home nets wrong")
	}
	if a, ok := inv.Asset(srv); !ok || a.Name != "fileserver" || a.Criticality != 4 {
		t.Errorf("longest prefix: %+v", a)
	}
	if inv.Name(netip.MustParseAddr("198.18.0.99")) != "office-lan" {
		t.Error("covering prefix not used")
	}
	web := netip.MustParseAddr("203.0.113.10")
	inv.Learn(web, "Web.Example.com.", "dns", time.Now())
	if inv.Name(web) != "web.example.com" {
		t.Errorf("learned name %q", inv.Name(web))
	}
	inv.Learn(web, "laptop-7", "dhcp", time.Now())
	inv.Learn(web, "other.example", "dns", time.Now())
	if inv.Name(web) != "laptop-7" {
		t.Errorf("dhcp name should win over later dns answers: %q", inv.Name(web))
	}
	inv.maxLearn = 16
	for i := 0; i < 100; i++ {
		inv.Learn(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), "h", "dns", time.Now())
	}
	if inv.Learned() > 16 {
		t.Errorf("learned %d names with a bound of 16", inv.Learned())
	}
}

func TestLoadAssetsErrors(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct{ body, want string }{
		"a.csv":  {"prefix,name\n198.18.0.300,x\n", "a.csv:2: prefix"},
		"b.csv":  {"addr,name\n1.2.3.4,x\n", `lacks the "prefix" column`},
		"c.csv":  {"prefix,name,criticality\n1.2.3.4,x,9\n", "c.csv:2: criticality 9"},
		"d.json": {`[{"prefix": "1.2.3.4", "name": ""}]`, "d.json: entry 0: name is empty"},
		"e.json": {`[{"prefix": "1.2.3.4", "nmae": "x"}]`, "unknown field"},
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(tc.body), 0o644)
		if _, err := LoadAssets(p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}
