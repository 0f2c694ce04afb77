package engine

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/wardline/wardline/dataplane/event"
	"github.com/wardline/wardline/detect"
	"github.com/wardline/wardline/detect/eve"
)

var (
	client = netip.MustParseAddr("198.18.0.10")
	server = netip.MustParseAddr("198.18.0.20")
	t0     = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	home   = []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24")}
)

// scan feeds a vertical SYN scan of n ports starting at t.
func feedScan(e *Engine, src netip.Addr, n int, t time.Time) {
	for p := 1; p <= n; p++ {
		f := event.Flow{Key: event.FlowKey{Src: src, Dst: server, SrcPort: 40000, DstPort: uint16(p), Proto: event.ProtoTCP},
			Reason: event.ReasonRST, Final: true, FirstFlags: event.TCPSyn, TCPFlags: [2]uint8{event.TCPSyn, event.TCPRst | event.TCPAck},
			FirstSeen: t, LastSeen: t.Add(time.Millisecond), Packets: [2]uint64{1, 1}, Bytes: [2]uint64{60, 54}}
		e.HandleFlow(&f)
	}
}

func TestDedupeIncidentsSuppression(t *testing.T) {
	var got []*detect.Alert
	e, err := New(Config{HomeNets: home, Suppress: []SuppressRule{{Name: "pentest", Type: detect.TypePortScan, Attacker: netip.MustParsePrefix("198.18.0.66/32")}},
		Maintenance: []MaintenanceWindow{{Name: "patch-night", From: t0.Add(time.Hour), To: t0.Add(2 * time.Hour)}}},
		Sinks{Alert: func(a *detect.Alert) { got = append(got, a) }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	feedScan(e, client, 30, t0)
	if len(got) != 1 {
		t.Fatalf("%d alerts, want 1", len(got))
	}
	a := got[0]
	if a.Fingerprint == "" || a.Incident == "" || a.Count != 1 || a.TimeToDetect <= 0 || a.Flow != nil && a.Flow.CommunityID == "" {
		t.Errorf("bookkeeping missing: %+v", a)
	}
	// The same scan again a minute later: the detector has already
	// reported this victim, nothing new; a scan of another victim by the
	// same attacker joins the same incident.
	feedScan(e, client, 30, t0.Add(time.Minute))
	if len(got) != 1 {
		t.Fatalf("repeat scan gave %d alerts", len(got))
	}
	feedScan(e, netip.MustParseAddr("198.18.0.66"), 30, t0.Add(2*time.Minute))
	feedScan(e, netip.MustParseAddr("198.18.0.77"), 30, t0.Add(90*time.Minute))
	st := e.Stats()
	if st.Suppressed["rule:pentest"] != 1 || st.Suppressed["maintenance:patch-night"] != 1 || len(got) != 1 {
		t.Errorf("suppressed %v, alerts %d; want one per rule and still 1 alert", st.Suppressed, len(got))
	}
	if st.TimeToDetectP95 <= 0 || st.TimeToDetectP95 > time.Second {
		t.Errorf("time to detect P95 %v", st.TimeToDetectP95)
	}
	if _, err := New(Config{Disabled: []string{"nope"}}, Sinks{}, nil); err == nil || !strings.Contains(err.Error(), "no such detector") {
		t.Errorf("unknown detector accepted: %v", err)
	}
}

func dnsSnippet(t *testing.T, resp bool, name string) *event.Snippet {
	d := &layers.DNS{ID: 7, RD: true, QR: resp, QDCount: 1, Questions: []layers.DNSQuestion{{Name: []byte(name), Type: layers.DNSTypeA, Class: layers.DNSClassIN}}}
	if resp {
		d.ANCount = 1
		d.Answers = []layers.DNSResourceRecord{{Name: []byte(name), Type: layers.DNSTypeA, Class: layers.DNSClassIN, TTL: 60, IP: netip.MustParseAddr("203.0.113.10").AsSlice()}}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := d.SerializeTo(buf, gopacket.SerializeOptions{FixLengths: true}); err != nil {
		t.Fatal(err)
	}
	k := event.FlowKey{Src: client, Dst: netip.MustParseAddr("203.0.113.53"), SrcPort: 5353, DstPort: 53, Proto: event.ProtoUDP}
	dir := event.DirOrig
	if resp {
		k = event.FlowKey{Src: k.Dst, Dst: k.Src, SrcPort: 53, DstPort: 5353, Proto: event.ProtoUDP}
		dir = event.DirResp
	}
	b := buf.Bytes()
	return &event.Snippet{Key: k, Kind: event.SnippetDNS, Dir: dir, Time: t0, Data: b, PayloadLen: uint16(len(b))}
}

func TestEVEOutput(t *testing.T) {
	var out bytes.Buffer
	w := eve.NewWriter(&out, eve.AllTypes, "in0")
	e, err := New(Config{HomeNets: home}, Sinks{EVE: w}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.HandleSnippet(dnsSnippet(t, false, "web.example.com"))
	e.HandleSnippet(dnsSnippet(t, true, "web.example.com"))
	if e.Inventory().Name(netip.MustParseAddr("203.0.113.10")) != "web.example.com" {
		t.Error("DNS answer did not name the address")
	}
	feedScan(e, client, 30, t0)
	e.Flush()
	types := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		typ, _ := m["event_type"].(string)
		types[typ]++
		for _, f := range []string{"timestamp", "src_ip", "dest_ip", "proto"} {
			if _, ok := m[f]; !ok {
				t.Errorf("%s event lacks %s: %s", typ, f, line)
			}
		}
		switch typ {
		case "dns":
			d := m["dns"].(map[string]any)
			if d["version"] != 2.0 || d["rrname"] != "web.example.com" || d["rrtype"] != "A" {
				t.Errorf("dns event %v", d)
			}
		case "alert":
			w := m["wardline"].(map[string]any)
			if w["risk_score"].(float64) <= 0 || len(w["risk_contributions"].([]any)) == 0 || m["alert"].(map[string]any)["signature_id"].(float64) == 0 {
				t.Errorf("alert lacks its explanation: %s", line)
			}
		case "flow":
			if _, ok := m["community_id"]; !ok {
				t.Errorf("flow without community_id: %s", line)
			}
		}
	}
	if types["dns"] != 2 || types["flow"] != 30 || types["alert"] != 1 {
		t.Errorf("EVE event counts %v, want dns 2, flow 30, alert 1", types)
	}
}

// TestDHCPNamesTheAttacker: passive discovery from a DHCP request names
// the host in later alerts.
func TestDHCPNamesTheAttacker(t *testing.T) {
	var got []*detect.Alert
	e, _ := New(Config{HomeNets: home}, Sinks{Alert: func(a *detect.Alert) { got = append(got, a) }}, nil)
	d := &layers.DHCPv4{Operation: layers.DHCPOpRequest, HardwareType: layers.LinkTypeEthernet, HardwareLen: 6,
		ClientHWAddr: []byte{2, 0, 0, 0, 0, 0x10},
		Options: layers.DHCPOptions{
			layers.NewDHCPOption(layers.DHCPOptMessageType, []byte{byte(layers.DHCPMsgTypeRequest)}),
			layers.NewDHCPOption(layers.DHCPOptRequestIP, client.AsSlice()),
			layers.NewDHCPOption(layers.DHCPOptHostname, []byte("reception-pc")),
		}}
	buf := gopacket.NewSerializeBuffer()
	if err := d.SerializeTo(buf, gopacket.SerializeOptions{FixLengths: true}); err != nil {
		t.Fatal(err)
	}
	e.HandleSnippet(&event.Snippet{Kind: event.SnippetDHCP, Time: t0, Data: buf.Bytes(),
		Key: event.FlowKey{Src: netip.IPv4Unspecified(), Dst: netip.AddrFrom4([4]byte{255, 255, 255, 255}), SrcPort: 68, DstPort: 67, Proto: event.ProtoUDP}})
	feedScan(e, client, 30, t0.Add(time.Second))
	if len(got) != 1 || got[0].AttackerAsset != "reception-pc" {
		t.Fatalf("alerts %+v, want one naming reception-pc", got)
	}
}

func BenchmarkHandleFlow(b *testing.B) {
	e, _ := New(Config{HomeNets: home}, Sinks{}, nil)
	f := event.Flow{Key: event.FlowKey{Src: client, Dst: netip.MustParseAddr("203.0.113.10"), SrcPort: 40000, DstPort: 443, Proto: event.ProtoTCP},
		Reason: event.ReasonFIN, Final: true, FirstFlags: event.TCPSyn, TCPFlags: [2]uint8{0x1b, 0x1b},
		Packets: [2]uint64{10, 12}, Bytes: [2]uint64{1500, 15000}}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		f.Key.SrcPort = uint16(i)
		f.FirstSeen = t0.Add(time.Duration(i) * time.Millisecond)
		f.LastSeen = f.FirstSeen.Add(50 * time.Millisecond)
		e.HandleFlow(&f)
	}
}
