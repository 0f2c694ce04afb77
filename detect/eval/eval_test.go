package eval

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// corpusDir finds ../shared/corpus/generated from the repository (or
// $WARDLINE_CORPUS/generated).
func corpusDir(t *testing.T) string {
	t.Helper()
	for _, d := range []string{os.Getenv("WARDLINE_CORPUS"), "../../../shared/corpus"} {
		if d == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "generated", "labels.json")); err == nil {
			return filepath.Join(d, "generated")
		}
	}
	t.Skip("skipping: the labelled corpus is not at ../shared/corpus (or $WARDLINE_CORPUS)")
	return ""
}

// TestCorpusMeetsTarget is the acceptance test: every attack
// scenario detected with the right type and attacker, no alert on the
// benign scenarios or against the benign background host.
func TestCorpusMeetsTarget(t *testing.T) {
	dir := corpusDir(t)
	scs, err := LoadScenarios(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(scs) < 14 {
		t.Fatalf("%d scenarios in labels.json, want at least 14", len(scs))
	}
	var results []Result
	for _, sc := range scs {
		r, err := Run(context.Background(), dir, sc, nil)
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, r)
	}
	var b strings.Builder
	Report(&b, results)
	t.Log("\n" + b.String())
	if err := Check(results); err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		for _, a := range r.Alerts {
			if a.Risk <= 0 || len(a.Reasons) == 0 || a.MITRE.TechniqueID == "" || a.Fingerprint == "" || a.Incident == "" {
				t.Errorf("%s: alert without explanation or bookkeeping: %+v", r.Scenario.Name, a)
			}
		}
	}
}
