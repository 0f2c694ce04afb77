package dnstunnel

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/wardline/wardline/detect"
)

// TestCorpusSweep runs every public capture with DNS in it (nDPI's,
// PCAP-ATTACK's, suricata-verify's dns-* tests) and allows alerts only on
// the known tunnels.
func TestCorpusSweep(t *testing.T) {
	if testing.Short() {
		t.Skip("corpus sweep skipped in -short mode")
	}
	root := needCorpus(t, "public")
	expected := map[string]string{
		"dns-tunnel-iodine.pcap": "10.0.2.30",
		"dns_exfiltration.pcap":  "192.168.220.56",
		"bad-dns-traffic.pcap":   "192.168.43.91", // dnscat2 to skullseclabs.org (nDPI flags it too)
	}
	var files []string
	filepath.WalkDir(root, func(p string, de os.DirEntry, err error) error {
		rel, _ := filepath.Rel(root, p)
		dnsish := strings.HasPrefix(rel, "ndpi/") || strings.HasPrefix(rel, "pcap-attack/") || strings.HasPrefix(rel, "suricata-verify/dns")
		if err == nil && dnsish && !de.IsDir() && (strings.HasSuffix(p, ".pcap") || strings.HasSuffix(p, ".pcapng")) {
			files = append(files, p)
		}
		return nil
	})
	sort.Strings(files)
	for _, f := range files {
		var alerts []*detect.Alert
		d := New(Config{}, homeEnv(&alerts))
		replay(t, f, d)
		want := expected[filepath.Base(f)]
		for _, a := range alerts {
			if a.Attacker.String() != want {
				t.Errorf("%s: unexpected alert against %s: %s (%s)", f, a.Attacker, a.Signature, a.Explain())
			}
		}
		if want != "" && len(alerts) == 0 {
			t.Errorf("%s: tunnel from %s not found", f, want)
		}
	}
	t.Logf("%d captures", len(files))
}
