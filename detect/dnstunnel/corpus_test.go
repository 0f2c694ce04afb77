package dnstunnel

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wardline/wardline/dataplane/event"
	"github.com/wardline/wardline/detect"
	"github.com/wardline/wardline/detect/enrich"
	"github.com/wardline/wardline/detect/pcap"
	"github.com/wardline/wardline/detect/proto"
)

// corpus is ../shared/corpus beside the repository (see its README).
const corpus = "../../../shared/corpus"

// replay runs a capture through detect/pcap and proto.ParseDNS into obs,
// building the DNSEvents as the engine does (Len is the DNS payload length),
// with a Tick per second of packet time.
func replay(t *testing.T, path string, obs interface {
	detect.DNSObserver
	detect.Ticker
}) {
	t.Helper()
	var (
		msg  proto.DNSMessage
		ev   detect.DNSEvent
		tick time.Time
	)
	h := event.HandlerFuncs{Snippet: func(s *event.Snippet) {
		if s.Time.Sub(tick) >= time.Second {
			obs.Tick(s.Time)
			tick = s.Time
		}
		if s.Kind != event.SnippetDNS {
			return
		}
		tcp := s.Key.Proto == event.ProtoTCP
		if err := msg.Parse(s.Data, tcp); err != nil && len(msg.Questions) == 0 {
			return
		}
		n := int(s.PayloadLen)
		if tcp {
			n -= 2
		}
		ev = detect.DNSEvent{Time: s.Time, Proto: s.Key.Proto, Response: msg.Response, ID: msg.ID,
			RCode: uint16(msg.RCode), RCodeName: msg.RCode.String(), Len: n, Truncated: s.Truncated, Answers: ev.Answers[:0]}
		if msg.Response {
			ev.Client, ev.ClientPort, ev.Server = s.Key.Dst, s.Key.DstPort, s.Key.Src
		} else {
			ev.Client, ev.ClientPort, ev.Server = s.Key.Src, s.Key.SrcPort, s.Key.Dst
		}
		if len(msg.Questions) > 0 {
			q := msg.Questions[0]
			ev.QName, ev.QType, ev.QTypeName = q.Name, uint16(q.Type), q.Type.String()
		}
		for _, a := range msg.Answers {
			da := detect.DNSAnswer{Name: a.Name, Type: uint16(a.Type), TTL: a.TTL, Addr: a.Addr, Data: a.Target}
			if len(a.TXT) > 0 {
				da.Data = a.TXT[0]
			}
			ev.Answers = append(ev.Answers, da)
		}
		obs.OnDNS(&ev)
	}}
	if _, err := pcap.ReadFile(context.Background(), path, h, pcap.Options{}, nil); err != nil {
		t.Logf("%s: %v (events before the error were used)", filepath.Base(path), err)
	}
}

func homeEnv(alerts *[]*detect.Alert) detect.Env {
	return detect.Env{
		Emit: func(a *detect.Alert) { *alerts = append(*alerts, a) },
		Inv:  enrich.New([]netip.Prefix{netip.MustParsePrefix("198.18.0.0/24")}, nil),
		Logf: func(string, ...any) {},
	}
}

func needCorpus(t *testing.T, rel string) string {
	t.Helper()
	p := filepath.Join(corpus, rel)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("corpus capture %s not found (the corpus lives in ../shared/corpus beside the repository): %v", rel, err)
	}
	return p
}

// TestCorpusGenerated: the iodine scenario is found against the client (not
// the resolver it goes through), once; the benign and DGA scenarios raise
// nothing.
func TestCorpusGenerated(t *testing.T) {
	for _, tc := range []struct {
		pcap string
		want []string // attackers
	}{
		{"generated/dns_tunnel_iodine.pcap", []string{"198.18.0.10"}},
		{"generated/benign_background.pcap", nil},
		{"generated/dga_nxdomain.pcap", nil},
		{"generated/beacon_http.pcap", nil},
	} {
		t.Run(filepath.Base(tc.pcap), func(t *testing.T) {
			path := needCorpus(t, tc.pcap)
			var alerts []*detect.Alert
			d := New(Config{}, homeEnv(&alerts))
			replay(t, path, d)
			var got []string
			for _, a := range alerts {
				got = append(got, a.Attacker.String())
				t.Logf("%s risk %.0f: %s\n  %s\n  evidence %v", a.Attacker, a.Risk, a.Signature, a.Explain(), a.Evidence)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("alerts against %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("alert %d against %s, want %s", i, got[i], tc.want[i])
				}
			}
			t.Logf("stats %v", d.Stats())
		})
	}
}

// TestCorpusPublic runs the public tunnel captures (nDPI's, PCAP-ATTACK's)
// and checks what README.md reports for them.
func TestCorpusPublic(t *testing.T) {
	for _, tc := range []struct {
		pcap     string
		attacker string // "" = nothing expected
	}{
		{"public/ndpi/pcap/dns-tunnel-iodine.pcap", "10.0.2.30"},
		{"public/ndpi/pcap/dns_exfiltration.pcap", "192.168.220.56"},
		{"public/pcap-attack/Command and Control/cmds over dns txt queries and reponses.pcap", ""},
		{"public/ndpi/pcap/dns2tcp_tunnel.pcap", ""}, // DNS over HTTPS: nothing to see
		{"public/ndpi/pcap/dns-exf.pcap", ""},        // one message
	} {
		t.Run(filepath.Base(tc.pcap), func(t *testing.T) {
			path := needCorpus(t, tc.pcap)
			var alerts []*detect.Alert
			d := New(Config{}, homeEnv(&alerts))
			replay(t, path, d)
			for _, a := range alerts {
				t.Logf("%s risk %.0f: %s\n  %s\n  evidence %v", a.Attacker, a.Risk, a.Signature, a.Explain(), a.Evidence)
			}
			t.Logf("stats %v", d.Stats())
			switch {
			case tc.attacker == "" && len(alerts) > 0:
				t.Errorf("%d alerts, want none", len(alerts))
			case tc.attacker != "" && (len(alerts) != 1 || alerts[0].Attacker.String() != tc.attacker):
				t.Errorf("want one alert against %s, got %d", tc.attacker, len(alerts))
			}
		})
	}
}
