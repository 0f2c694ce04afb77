package exfil_test

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wardline/wardline/dataplane/event"
	"github.com/wardline/wardline/detect"
	"github.com/wardline/wardline/detect/enrich"
	"github.com/wardline/wardline/detect/exfil"
	"github.com/wardline/wardline/detect/pcap"
)

// corpusHome is the corpus lab's inside segment (the "internet" is
// 198.19.0.0/24 and 203.0.113.0/24, see ../shared/corpus/README.md).
var corpusHome = netip.MustParsePrefix("198.18.0.0/24")

// corpusDir finds the shared evaluation corpus: $WARDLINE_CORPUS,
// ../../../shared/corpus from this directory, or /work/shared/corpus.
func corpusDir(t testing.TB) string {
	t.Helper()
	var cands []string
	if d := os.Getenv("WARDLINE_CORPUS"); d != "" {
		cands = append(cands, d)
	}
	cands = append(cands, "../../../shared/corpus", "/work/shared/corpus")
	for _, d := range cands {
		if fi, err := os.Stat(filepath.Join(d, "generated", "labels.json")); err == nil && !fi.IsDir() {
			return d
		}
	}
	t.Skipf("skipping: the evaluation corpus is not here (looked for %v; set WARDLINE_CORPUS to its directory)", cands)
	return ""
}

type label struct {
	Scenario string `json:"scenario"`
	PCAP     string `json:"pcap"`
	Expected []struct {
		Type     string   `json:"type"`
		Subtype  string   `json:"subtype"`
		Attacker string   `json:"attacker_ip"`
		Peers    []string `json:"peer_ips"`
	} `json:"expected_detections"`
}

// feeder turns the offline source's flow records into connections for
// the detector, as the engine does (Direction from the home networks, a
// Tick per second of event time). Payload snippets do not matter here.
type feeder struct {
	inv  *enrich.Inventory
	det  *exfil.Detector
	now  time.Time
	tick time.Time
}

func (f *feeder) HandleFlow(fl *event.Flow) {
	if fl.LastSeen.After(f.now) {
		f.now = fl.LastSeen
	}
	if f.tick.IsZero() {
		f.tick = f.now
	}
	if f.now.Sub(f.tick) >= time.Second {
		f.tick = f.now
		f.det.Tick(f.now)
	}
	c := detect.NewConn(fl)
	sh, dh := f.inv.IsHome(c.Key.Src), f.inv.IsHome(c.Key.Dst)
	switch {
	case sh && dh:
		c.Direction = detect.Internal
	case sh:
		c.Direction = detect.Outbound
	case dh:
		c.Direction = detect.Inbound
	default:
		c.Direction = detect.External
	}
	f.det.OnConn(&c)
}

func (f *feeder) HandleSnippet(*event.Snippet) {}

// TestCorpus runs every generated scenario through the offline source into
// the exfiltration detector alone. Both exfil scenarios must alert on
// 198.18.0.10 and the upload server; nothing else may alert (the ~45 MB
// internal iperf3 transfer in particular).
//
// Subtypes: the labels call the upload at 20:46 UTC (a Wednesday)
// "large_outbound_upload", i.e. in business hours, which the default
// (08:00-18:00 UTC) does not say; so the subtypes are checked with the
// business day the labels assume, 08:00-22:00 UTC, and the default run
// checks type and attacker only.
func TestCorpus(t *testing.T) {
	dir := filepath.Join(corpusDir(t), "generated")
	raw, err := os.ReadFile(filepath.Join(dir, "labels.json"))
	if err != nil {
		t.Fatal(err)
	}
	var labels []label
	if err := json.Unmarshal(raw, &labels); err != nil {
		t.Fatalf("labels.json: %v", err)
	}
	labHours, err := exfil.ParseBusinessHours("Mon-Fri", "08:00-22:00", "UTC")
	if err != nil {
		t.Fatal(err)
	}
	for _, run := range []struct {
		name     string
		cfg      exfil.Config
		subtypes bool
	}{{"default", exfil.Config{}, false}, {"labels-hours", exfil.Config{Hours: labHours}, true}} {
		for _, l := range labels {
			t.Run(run.name+"/"+l.Scenario, func(t *testing.T) {
				inv := enrich.New([]netip.Prefix{corpusHome}, nil)
				var alerts []*detect.Alert
				f := &feeder{inv: inv}
				f.det = exfil.New(run.cfg, detect.Env{Inv: inv, Logf: t.Logf,
					Emit: func(a *detect.Alert) { alerts = append(alerts, a) }})
				if _, err := pcap.ReadFile(context.Background(), filepath.Join(dir, l.PCAP), f, pcap.Options{}, nil); err != nil {
					t.Fatalf("read %s: %v", l.PCAP, err)
				}
				found := map[int]bool{}
				for _, a := range alerts {
					t.Logf("alert %s/%s: %s\n  %s", a.Type, a.Subtype, a.Signature, a.Explain())
					match := false
					for i, e := range l.Expected {
						if e.Type != a.Type || e.Attacker != a.Attacker.String() {
							continue
						}
						match, found[i] = true, true
						if run.subtypes && e.Subtype != "" && e.Subtype != a.Subtype {
							t.Errorf("subtype %s, want %s", a.Subtype, e.Subtype)
						}
						if len(e.Peers) > 0 && (len(a.Victims) == 0 || a.Victims[0].String() != e.Peers[0]) {
							t.Errorf("victims %v, want %v", a.Victims, e.Peers)
						}
					}
					if !match {
						t.Errorf("false alert in %s: %s", l.Scenario, a.Signature)
					}
				}
				for i, e := range l.Expected {
					if e.Type == detect.TypeExfiltration && !found[i] {
						t.Errorf("missed %s/%s by %s (stats %v)", e.Type, e.Subtype, e.Attacker, f.det.Stats())
					}
				}
			})
		}
	}
}
