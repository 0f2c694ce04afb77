package beacon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wardline/wardline/dataplane/event"
	"github.com/wardline/wardline/detect"
	"github.com/wardline/wardline/detect/beacon"
	"github.com/wardline/wardline/detect/enrich"
	"github.com/wardline/wardline/detect/pcap"
	"github.com/wardline/wardline/detect/proto"
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

// feeder turns the offline source's events into connections for one
// detector, as the engine does: Direction from the home networks, the
// TLS SNI and HTTP Host of the flow's first client payload, a Tick per
// second of event time.
type feeder struct {
	inv  *enrich.Inventory
	det  *beacon.Detector
	apps map[event.FlowKey]*detect.AppInfo
	now  time.Time
	tick time.Time
}

func (f *feeder) advance(t time.Time) {
	if t.After(f.now) {
		f.now = t
	}
	if f.tick.IsZero() {
		f.tick = f.now
	}
	if f.now.Sub(f.tick) >= time.Second {
		f.tick = f.now
		f.det.Tick(f.now)
	}
}

func (f *feeder) HandleFlow(fl *event.Flow) {
	f.advance(fl.LastSeen)
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
	c.App = f.apps[c.Key]
	if c.Final {
		delete(f.apps, c.Key)
	}
	f.det.OnConn(&c)
}

func (f *feeder) HandleSnippet(s *event.Snippet) {
	f.advance(s.Time)
	if s.Dir != event.DirOrig || s.Continuation {
		return
	}
	switch s.Kind {
	case event.SnippetTLS:
		if ch, err := proto.ParseClientHello(s.Data); err == nil || ch.SNI != "" {
			f.apps[s.Key] = &detect.AppInfo{Service: "tls", SNI: ch.SNI}
		}
	case event.SnippetHTTP:
		host := ""
		for _, line := range bytes.Split(s.Data, []byte("\r\n")) {
			if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte("host")) {
				host = string(bytes.TrimSpace(v))
				break
			}
		}
		f.apps[s.Key] = &detect.AppInfo{Service: "http", HTTPHost: host}
	}
}

// TestCorpus runs every generated scenario through the offline source
// into the beacon detector alone: beacon_http must alert on its attacker
// and C2 server, nothing else may alert (in particular never the benign
// background host 198.18.0.11).
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
	for _, l := range labels {
		t.Run(l.Scenario, func(t *testing.T) {
			inv := enrich.New([]netip.Prefix{corpusHome}, nil)
			var alerts []*detect.Alert
			f := &feeder{inv: inv, apps: map[event.FlowKey]*detect.AppInfo{}}
			f.det = beacon.New(beacon.Config{}, detect.Env{Inv: inv, Logf: t.Logf,
				Emit: func(a *detect.Alert) { alerts = append(alerts, a) }})
			if _, err := pcap.ReadFile(context.Background(), filepath.Join(dir, l.PCAP), f, pcap.Options{}, nil); err != nil {
				t.Fatalf("read %s: %v", l.PCAP, err)
			}
			found := map[int]bool{}
			for _, a := range alerts {
				t.Logf("alert: %s\n  %s", a.Signature, a.Explain())
				match := false
				for i, e := range l.Expected {
					if e.Type == a.Type && e.Attacker == a.Attacker.String() {
						match, found[i] = true, true
						for _, p := range e.Peers {
							if len(a.Victims) == 0 || a.Victims[0].String() != p {
								t.Errorf("alert victims %v, want %s", a.Victims, p)
							}
						}
					}
				}
				if !match {
					t.Errorf("false alert in %s: %s", l.Scenario, a.Signature)
				}
			}
			for i, e := range l.Expected {
				if e.Type == detect.TypeBeaconing && !found[i] {
					t.Errorf("missed %s by %s", e.Type, e.Attacker)
				}
			}
			t.Logf("stats: %v", f.det.Stats())
		})
	}
}
