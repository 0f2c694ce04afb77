package scan

import (
	"net/netip"
	"testing"
	"time"

	"github.com/wardline/wardline/dataplane/event"
	"github.com/wardline/wardline/detect"
	"github.com/wardline/wardline/detect/enrich"
)

var (
	attacker = netip.MustParseAddr("198.18.0.10")
	victim   = netip.MustParseAddr("198.18.0.20")
	t0       = time.Unix(1795639458, 0)
)

func newDet(t testing.TB) (*Detector, *[]*detect.Alert) {
	var got []*detect.Alert
	env := detect.Env{Emit: func(a *detect.Alert) { got = append(got, a) }, Inv: enrich.New([]netip.Prefix{netip.MustParsePrefix("198.18.0.0/24")}, nil)}
	return New(Config{}, env), &got
}

func conn(src, dst netip.Addr, dport uint16, orig, resp, first uint8, at time.Time) *detect.Conn {
	f := event.Flow{Key: event.FlowKey{Src: src, Dst: dst, SrcPort: 40000, DstPort: dport, Proto: event.ProtoTCP},
		Final: true, FirstSeen: at, LastSeen: at.Add(time.Millisecond), FirstFlags: first, TCPFlags: [2]uint8{orig, resp},
		Packets: [2]uint64{1, 1}}
	if resp == 0 {
		f.Packets[1] = 0
	}
	c := detect.NewConn(&f)
	return &c
}

func TestVerticalSynScan(t *testing.T) {
	d, got := newDet(t)
	for p := uint16(1); p <= 40; p++ {
		if p%10 == 0 { // open: SYN, SYN-ACK, attacker RST
			d.OnConn(conn(attacker, victim, p, event.TCPSyn|event.TCPRst, event.TCPSyn|event.TCPAck, event.TCPSyn, t0))
		} else { // closed: SYN, RST-ACK
			d.OnConn(conn(attacker, victim, p, event.TCPSyn, event.TCPRst|event.TCPAck, event.TCPSyn, t0))
		}
	}
	if len(*got) != 1 {
		t.Fatalf("%d alerts, want 1", len(*got))
	}
	a := (*got)[0]
	if a.Type != detect.TypePortScan || a.Subtype != "vertical_syn" || a.Attacker != attacker || a.Risk < 40 || len(a.Reasons) < 2 {
		t.Errorf("alert %+v", a)
	}
}

func TestConnectScanAndNoFalsePositiveForBrowsing(t *testing.T) {
	d, got := newDet(t)
	web := netip.MustParseAddr("203.0.113.10")
	// A browser: many connections, few ports, with data.
	for i := 0; i < 200; i++ {
		d.OnConn(conn(attacker, web, 443, event.TCPSyn|event.TCPAck|event.TCPPsh|event.TCPFin, event.TCPSyn|event.TCPAck|event.TCPPsh|event.TCPFin, event.TCPSyn, t0))
	}
	if len(*got) != 0 {
		t.Fatalf("browsing raised %d alerts", len(*got))
	}
	for p := uint16(1000); p < 1030; p++ { // connect scan: handshake then RST
		d.OnConn(conn(attacker, victim, p, event.TCPSyn|event.TCPAck|event.TCPRst, event.TCPSyn|event.TCPAck, event.TCPSyn, t0))
	}
	if len(*got) != 1 || (*got)[0].Subtype != "vertical_connect" {
		t.Fatalf("alerts %+v, want one vertical_connect", *got)
	}
}

func TestHorizontalSweepStealth(t *testing.T) {
	d, got := newDet(t)
	for i := 0; i < 20; i++ {
		h := netip.AddrFrom4([4]byte{198, 18, 0, byte(100 + i)})
		d.OnConn(conn(attacker, h, 445, event.TCPSyn, 0, event.TCPSyn, t0))
		d.OnARP(&detect.ARPEvent{Time: t0, Op: 1, SenderIP: attacker, TargetIP: h})
		icmp := event.Flow{Key: event.FlowKey{Src: attacker, Dst: h, SrcPort: 8, Proto: event.ProtoICMP}, Final: true, FirstSeen: t0, LastSeen: t0}
		c := detect.NewConn(&icmp)
		d.OnConn(&c)
	}
	for p := uint16(1); p <= 12; p++ {
		d.OnConn(conn(attacker, victim, p, event.TCPFin|event.TCPPsh|event.TCPUrg, event.TCPRst, event.TCPFin|event.TCPPsh|event.TCPUrg, t0))
	}
	d.Tick(t0.Add(2 * time.Second)) // the ARP requests went unanswered
	subs := map[string]bool{}
	for _, a := range *got {
		subs[a.Type+"/"+a.Subtype] = true
	}
	for _, want := range []string{"port_scan/horizontal_445", "host_sweep/arp_ping_sweep", "host_sweep/icmp_tcp_ping_sweep", "port_scan/stealth_xmas_null_fin"} {
		if !subs[want] {
			t.Errorf("missing %s in %v", want, subs)
		}
	}
	d.Tick(t0.Add(time.Hour))
	if len(d.hosts) != 0 {
		t.Error("state not expired")
	}
}

// TestARPNeighbourRefresh: a router re-resolving the hosts that talked to
// it (they ARPed it first) is not sweeping; requests for addresses that
// never announced themselves still are, even mixed with refreshes.
func TestARPNeighbourRefresh(t *testing.T) {
	d, got := newDet(t)
	router := netip.MustParseAddr("198.18.0.1")
	host := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 0, byte(100 + i)}) }
	for i := 0; i < 40; i++ {
		d.OnARP(&detect.ARPEvent{Time: t0, Op: 1, SenderIP: host(i), TargetIP: router})
		d.OnARP(&detect.ARPEvent{Time: t0, Op: 2, SenderIP: router, TargetIP: host(i)})
	}
	for i := 0; i < 40; i++ {
		d.OnARP(&detect.ARPEvent{Time: t0.Add(5 * time.Second), Op: 1, SenderIP: router, TargetIP: host(i)})
	}
	if len(*got) != 0 {
		t.Fatalf("router refreshing its neighbours raised %+v", *got)
	}
	// 39 hosts asked for the router after its first reply, then the
	// router's 40 refreshes.
	if st := d.Stats(); st["arp_refreshes_ignored"] != 79 || st["arp_neighbours"] != 41 {
		t.Errorf("stats %v", st)
	}
	// The attacker asks for the 40 live hosts and 20 silent addresses.
	for i := 0; i < 60; i++ {
		d.OnARP(&detect.ARPEvent{Time: t0.Add(6 * time.Second), Op: 1, SenderIP: attacker, TargetIP: host(i)})
	}
	if len(*got) != 0 {
		t.Fatalf("alert before the requests could be answered: %+v", *got)
	}
	d.Tick(t0.Add(7 * time.Second))
	if len(*got) != 1 || (*got)[0].Subtype != "arp_ping_sweep" || (*got)[0].Attacker != attacker {
		t.Fatalf("alerts %+v, want the attacker's arp_ping_sweep", *got)
	}
	// After a window of silence the router re-resolves hosts the box has
	// not seen announce themselves (as after a restart): they answer, so
	// it is no sweep.
	late := t0.Add(10 * time.Minute)
	d.Tick(late)
	if n := d.Stats()["arp_neighbours"]; n != 0 {
		t.Errorf("%v neighbours left after the window", n)
	}
	for i := 0; i < 20; i++ {
		d.OnARP(&detect.ARPEvent{Time: late, Op: 1, SenderIP: router, TargetIP: host(i)})
		d.OnARP(&detect.ARPEvent{Time: late.Add(time.Millisecond), Op: 2, SenderIP: host(i), TargetIP: router})
	}
	d.Tick(late.Add(2 * time.Second))
	if len(*got) != 1 || d.Stats()["arp_answered"] != 21 { // 20, and the first client's request for the router
		t.Fatalf("alerts %+v (answered %v), want none for answered requests", *got, d.Stats()["arp_answered"])
	}
	// Requests nobody answers are a sweep, whoever sends them.
	for i := 100; i < 120; i++ {
		d.OnARP(&detect.ARPEvent{Time: late.Add(3 * time.Second), Op: 1, SenderIP: router, TargetIP: host(i)})
	}
	d.Tick(late.Add(5 * time.Second))
	if len(*got) != 2 || (*got)[1].Attacker != router {
		t.Errorf("alerts %+v, want a sweep by the router too", *got)
	}
}

func BenchmarkOnConn(b *testing.B) {
	d, _ := newDet(nil)
	c := conn(attacker, victim, 80, event.TCPSyn, event.TCPRst, event.TCPSyn, t0)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		c.Key.DstPort = uint16(i)
		d.OnConn(c)
	}
}
