// Package eval measures the detection engine against the labelled corpus
// (../shared/corpus/generated, labels.json): for every scenario and every
// detector, the expected detections found (type and attacker IP), those
// missed, the alerts that match nothing expected, and any alert on a
// benign scenario. `make eval` prints it; a test fails below target.
package eval

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wardline/wardline/detect"
	"github.com/wardline/wardline/detect/engine"
	"github.com/wardline/wardline/detect/enrich"
	"github.com/wardline/wardline/detect/pcap"
)

// Expected is one labelled detection.
type Expected struct {
	Type     string `json:"type"`
	Subtype  string `json:"subtype"`
	Attacker string `json:"attacker_ip"`
}

// Scenario is one labelled capture.
type Scenario struct {
	Name          string     `json:"scenario"`
	Pcap          string     `json:"pcap"`
	Malicious     bool       `json:"malicious"`
	Expected      []Expected `json:"expected_detections"`
	MustNotDetect []string   `json:"must_not_detect"`
	Background    struct {
		Host string `json:"host"`
	} `json:"background"`
}

// HomeNet is the corpus's internal segment (its "internet" is
// 198.19.0.0/24 and 203.0.113.0/24, see the corpus README).
var HomeNet = netip.MustParsePrefix("198.18.0.0/24")

// LoadScenarios reads dir/labels.json.
func LoadScenarios(dir string) ([]Scenario, error) {
	b, err := os.ReadFile(filepath.Join(dir, "labels.json"))
	if err != nil {
		return nil, fmt.Errorf("read corpus labels: %w", err)
	}
	var s []Scenario
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("parse %s: %w", filepath.Join(dir, "labels.json"), err)
	}
	return s, nil
}

// Result is one scenario's outcome.
type Result struct {
	Scenario Scenario
	Alerts   []*detect.Alert
	Found    []Expected
	Missed   []Expected
	False    []*detect.Alert // alerts matching no expected detection
	Elapsed  time.Duration
	Packets  uint64
	Engine   engine.Stats
}

// Benign reports whether the scenario expects no detection.
func (r *Result) Benign() bool { return !r.Scenario.Malicious }

// Run analyses one scenario's capture with the engine configured as for
// the corpus: home network 198.18.0.0/24, the scenario's indicator file
// when it has one (<scenario>.indicators.json), assets from assets (may be
// nil).
func Run(ctx context.Context, dir string, sc Scenario, assets []enrich.Asset) (Result, error) {
	res := Result{Scenario: sc}
	cfg := engine.Config{HomeNets: []netip.Prefix{HomeNet}, Assets: assets}
	if p := filepath.Join(dir, sc.Name+".indicators.json"); fileExists(p) {
		cfg.IndicatorsFile = p
	}
	eng, err := engine.New(cfg, engine.Sinks{Alert: func(a *detect.Alert) { res.Alerts = append(res.Alerts, a) }}, nil)
	if err != nil {
		return res, err
	}
	start := time.Now()
	st, err := pcap.ReadFiles(ctx, []string{filepath.Join(dir, sc.Pcap)}, eng, pcap.Options{}, nil)
	eng.Flush()
	res.Elapsed = time.Since(start)
	res.Packets = st.Packets
	res.Engine = eng.Stats()
	if err != nil {
		return res, fmt.Errorf("scenario %s: %w", sc.Name, err)
	}
	res.score()
	return res, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func (r *Result) score() {
	matched := make([]bool, len(r.Alerts))
	for _, e := range r.Scenario.Expected {
		hit := false
		for i, a := range r.Alerts {
			if a.Type == e.Type && a.Attacker.String() == e.Attacker {
				hit, matched[i] = true, true
			}
		}
		if hit {
			r.Found = append(r.Found, e)
		} else {
			r.Missed = append(r.Missed, e)
		}
	}
	for i, a := range r.Alerts {
		if !matched[i] {
			r.False = append(r.False, a)
		}
	}
}

// Check returns an error describing every way results miss the target:
// every expected detection found with the right type and attacker, no
// alert at all on benign scenarios, and no alert naming a scenario's
// benign background host as the attacker.
func Check(results []Result) error {
	var problems []string
	for _, r := range results {
		for _, m := range r.Missed {
			problems = append(problems, fmt.Sprintf("%s: missed %s (%s) by %s", r.Scenario.Name, m.Type, m.Subtype, m.Attacker))
		}
		for _, a := range r.False {
			if r.Benign() || a.Attacker.String() == r.Scenario.Background.Host {
				problems = append(problems, fmt.Sprintf("%s: false alert %s/%s by %s: %s", r.Scenario.Name, a.Type, a.Subtype, a.Attacker, a.Signature))
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%d problem(s):\n  %s", len(problems), strings.Join(problems, "\n  "))
	}
	return nil
}

// Report prints a table per scenario and per detector.
func Report(w io.Writer, results []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tEXPECTED\tFOUND\tMISSED\tOTHER ALERTS\tBENIGN-HOST ALERTS\tPACKETS\tTIME")
	for _, r := range results {
		bg := 0
		for _, a := range r.False {
			if r.Benign() || a.Attacker.String() == r.Scenario.Background.Host {
				bg++
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%v\n", r.Scenario.Name, len(r.Scenario.Expected), len(r.Found), len(r.Missed),
			len(r.False), bg, r.Packets, r.Elapsed.Round(time.Millisecond))
	}
	tw.Flush()

	type det struct{ found, missed, other int }
	per := map[string]*det{}
	get := func(n string) *det {
		if per[n] == nil {
			per[n] = &det{}
		}
		return per[n]
	}
	for _, r := range results {
		for _, a := range r.Alerts {
			_ = get(a.Detector)
		}
		for _, e := range r.Found {
			for _, a := range r.Alerts {
				if a.Type == e.Type && a.Attacker.String() == e.Attacker {
					get(a.Detector).found++
					break
				}
			}
		}
		for _, e := range r.Missed {
			get("("+e.Type+")").missed++
		}
		for _, a := range r.False {
			get(a.Detector).other++
		}
	}
	names := make([]string, 0, len(per))
	for n := range per {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DETECTOR\tEXPECTED FOUND\tMISSED\tOTHER ALERTS")
	for _, n := range names {
		d := per[n]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", n, d.found, d.missed, d.other)
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, r := range results {
		for _, a := range r.False {
			fmt.Fprintf(w, "other alert in %s: %s/%s by %s (risk %.0f): %s\n", r.Scenario.Name, a.Type, a.Subtype, a.Attacker, a.Risk, a.Signature)
		}
		for _, m := range r.Missed {
			fmt.Fprintf(w, "MISSED in %s: %s/%s by %s\n", r.Scenario.Name, m.Type, m.Subtype, m.Attacker)
		}
	}
}
