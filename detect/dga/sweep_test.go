package dga

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/wardline/wardline/detect"
)

// TestCorpusSweep runs the public captures with DNS in them (nDPI's,
// PCAP-ATTACK's, suricata-verify's dns-* tests) and the generated ones, and
// allows DGA alerts only where README.md says they are expected.
func TestCorpusSweep(t *testing.T) {
	if testing.Short() {
		t.Skip("corpus sweep skipped in -short mode")
	}
	root := needCorpus(t, ".")
	expected := map[string]string{
		"dga_nxdomain.pcap": "198.18.0.10",
	}
	var files []string
	filepath.WalkDir(root, func(p string, de os.DirEntry, err error) error {
		rel, _ := filepath.Rel(root, p)
		dnsish := strings.HasPrefix(rel, "generated/") || strings.HasPrefix(rel, "public/ndpi/") ||
			strings.HasPrefix(rel, "public/pcap-attack/") || strings.HasPrefix(rel, "public/suricata-verify/dns")
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
			t.Errorf("%s: DGA host %s not found", f, want)
		}
	}
	t.Logf("%d captures", len(files))
}
