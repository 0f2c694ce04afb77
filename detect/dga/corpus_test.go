package dga

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

func needCorpus(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(corpus, rel)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("corpus file %s not found (the corpus lives in ../shared/corpus beside the repository): %v", rel, err)
	}
	return p
}

// replay runs a capture through detect/pcap and proto.ParseDNS into the
// detector, building DNSEvents as the engine does (Len is the DNS payload
// length) and Conns from the flow records, with a Tick per second of
// packet time.
func replay(t *testing.T, path string, d *Detector) {
	t.Helper()
	var (
		msg  proto.DNSMessage
		ev   detect.DNSEvent
		tick time.Time
	)
	advance := func(now time.Time) {
		if now.Sub(tick) >= time.Second {
			d.Tick(now)
			tick = now
		}
	}
	h := event.HandlerFuncs{
		Flow: func(f *event.Flow) {
			advance(f.Time)
			d.OnConn(&detect.Conn{Key: f.Key, Start: f.FirstSeen, End: f.LastSeen, Final: f.Final, Reason: f.Reason,
				OrigPkts: f.Packets[0], RespPkts: f.Packets[1], OrigBytes: f.Bytes[0], RespBytes: f.Bytes[1]})
		},
		Snippet: func(s *event.Snippet) {
			advance(s.Time)
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
			d.OnDNS(&ev)
		},
	}
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

// TestCorpusGenerated: the DGA scenario is found against the client (not
// the resolver), with the rendezvous name flagged as resolved and
// contacted; the other scenarios raise nothing.
func TestCorpusGenerated(t *testing.T) {
	for _, tc := range []struct {
		pcap string
		want []string // attacker/subtype of each alert
	}{
		{"generated/dga_nxdomain.pcap", []string{"198.18.0.10/", "198.18.0.10/rendezvous"}},
		{"generated/benign_background.pcap", nil},
		{"generated/dns_tunnel_iodine.pcap", nil},
		{"generated/beacon_http.pcap", nil},
		{"generated/ioc_tls.pcap", nil},
	} {
		t.Run(filepath.Base(tc.pcap), func(t *testing.T) {
			path := needCorpus(t, tc.pcap)
			var alerts []*detect.Alert
			d := New(Config{}, homeEnv(&alerts))
			replay(t, path, d)
			var got []string
			for _, a := range alerts {
				got = append(got, a.Attacker.String()+"/"+a.Subtype)
				t.Logf("%s risk %.0f: %s\n  %s\n  evidence %v", a.Attacker, a.Risk, a.Signature, a.Explain(), a.Evidence)
			}
			t.Logf("stats %v", d.Stats())
			if len(got) != len(tc.want) {
				t.Fatalf("alerts %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("alert %d: %s, want %s", i, got[i], tc.want[i])
				}
			}
			if tc.want == nil {
				return
			}
			r := alerts[len(alerts)-1]
			if r.Evidence["name"] != "zaqqxtqteoosazqoge.xyz" || len(r.Victims) != 1 || r.Victims[0].String() != "203.0.113.10" {
				t.Errorf("rendezvous alert names %v -> %v, want zaqqxtqteoosazqoge.xyz -> 203.0.113.10", r.Evidence["name"], r.Victims)
			}
		})
	}
}
