package anomaly

import (
	"net/netip"
	"testing"
	"time"

	"github.com/wardline/wardline/dataplane/event"
	"github.com/wardline/wardline/detect"
	"github.com/wardline/wardline/detect/enrich"
)

func TestAnomalies(t *testing.T) {
	var got []*detect.Alert
	inv := enrich.New([]netip.Prefix{netip.MustParsePrefix("198.18.0.0/24")}, nil)
	d := New(Config{}, detect.Env{Emit: func(a *detect.Alert) { got = append(got, a) }, Inv: inv})
	src, dst := netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("198.18.0.20")
	t0 := time.Unix(1795639458, 0)
	mk := func(first uint8, port uint16, dur time.Duration) *detect.Conn {
		f := event.Flow{Key: event.FlowKey{Src: src, Dst: dst, SrcPort: 1, DstPort: port, Proto: event.ProtoTCP}, Final: true,
			FirstSeen: t0, LastSeen: t0.Add(dur), FirstFlags: first, TCPFlags: [2]uint8{first, event.TCPRst}}
		c := detect.NewConn(&f)
		return &c
	}
	for _, f := range []uint8{event.TCPSyn, event.TCPSyn | event.TCPAck, event.TCPAck} {
		d.OnConn(mk(f, 80, time.Second))
	}
	if len(got) != 0 {
		t.Fatalf("ordinary flags raised %v", got)
	}
	for _, f := range []uint8{0, event.TCPFin | event.TCPPsh | event.TCPUrg, event.TCPSyn | event.TCPFin} {
		d.OnConn(mk(f, 22, time.Second))
	}
	if len(got) != 1 || got[0].Subtype != "invalid_tcp_flag_combinations" {
		t.Fatalf("alerts %+v", got)
	}
	d.OnConn(mk(event.TCPSyn, 443, 3*time.Hour))
	if len(got) != 2 || got[1].Type != detect.TypeLongConnection {
		t.Fatalf("long connection: %+v", got)
	}
	k := event.FlowKey{Src: src, Dst: netip.MustParseAddr("203.0.113.9"), DstPort: 8081, Proto: 6}
	d.OnTLS(&detect.TLSEvent{Time: t0, Key: k, SNI: "x.example"})
	k.DstPort = 443
	d.OnTLS(&detect.TLSEvent{Time: t0, Key: k, SNI: "x.example"})
	if len(got) != 3 || got[2].Subtype != "tls_on_nonstandard_port" {
		t.Fatalf("tls on 8081: %+v", got)
	}
}
