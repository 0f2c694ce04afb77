package pcap

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/wardline/wardline/dataplane/event"
)

// TestPacketTable mirrors dataplane/xdp_test.go's TestPacketTable: the
// same frames, the same counter deltas and the same table and event
// contents. Its block/allow list rows have no offline counterpart.
func TestPacketTable(t *testing.T) {
	var ev collected
	tr := newTracker(t, Options{}, &ev)

	syn4 := tcpFrame(t, client4, server4, 40000, 80, tcpSeg{flags: "S", seq: 1000})
	udp6 := udpFrame(t, client6, server6, 40001, 5000, []byte("hello"))
	dnsMsg := dnsQuery(t, 0x1234, "web.example.com")
	hello := clientHello(t, "web.example.com")
	httpReq := []byte("GET /index.html HTTP/1.1\r\nHost: web.example.com\r\nUser-Agent: wl-test\r\n\r\n")

	ipv4Trunc := append([]byte{}, syn4[:14+20+10]...)
	badIHL := append([]byte{}, syn4...)
	badIHL[14] = 0x44
	arp := serialize(t, eth(layers.EthernetTypeARP), &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest, SourceHwAddress: macA, SourceProtAddress: client4.AsSlice(),
		DstHwAddress: make([]byte, 6), DstProtAddress: server4.AsSlice()})
	ethOnly := append([]byte{}, syn4[:14]...)

	frag4 := func(offset uint16) []byte {
		ip := ip4(client4, server4, layers.IPProtocolUDP)
		ip.FragOffset = offset
		ip.Flags = layers.IPv4MoreFragments
		return serialize(t, eth(layers.EthernetTypeIPv4), ip, gopacket.Payload(bytes.Repeat([]byte{0xaa}, 64)))
	}
	icmp4 := func(typ uint8, src, dst netip.Addr) []byte {
		ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: 7, Seq: 1}
		return serialize(t, eth(layers.EthernetTypeIPv4), ip4(src, dst, layers.IPProtocolICMPv4), ic, gopacket.Payload([]byte("ping")))
	}
	icmp6 := func(typ uint8, src, dst netip.Addr) []byte {
		ip := ip6(src, dst, layers.IPProtocolICMPv6)
		ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
		ic.SetNetworkLayerForChecksum(ip)
		return serialize(t, eth(layers.EthernetTypeIPv6), ip, ic, &layers.ICMPv6Echo{Identifier: 7, SeqNumber: 1})
	}

	tests := []struct {
		name   string
		frames [][]byte
		stats  map[string]uint64
		check  func(t *testing.T, ev collected)
	}{
		{
			name: "ipv4 tcp syn creates a flow", frames: [][]byte{syn4},
			stats: map[string]uint64{"Packets": 1, "Bytes": uint64(len(syn4)), "FlowsCreated": 1},
			check: func(t *testing.T, ev collected) {
				e := onlyEntry(t, tr)
				if e.f.packets != [2]uint64{1, 0} || e.f.bytes != [2]uint64{uint64(len(syn4)), 0} {
					t.Errorf("counters %v/%v, want [1 0]/[%d 0]", e.f.packets, e.f.bytes, len(syn4))
				}
				if e.f.firstFlags != event.TCPSyn || e.state&0xff != event.TCPSyn {
					t.Errorf("flags first=%#x state=%#x, want SYN", e.f.firstFlags, e.state)
				}
				if e.key.Proto != event.ProtoTCP || e.key.Src != client4 || e.key.DstPort != 80 {
					t.Errorf("key %v", e.key)
				}
			},
		},
		{
			name: "ipv6 udp", frames: [][]byte{udp6},
			stats: map[string]uint64{"FlowsCreated": 1},
			check: func(t *testing.T, ev collected) {
				if k := onlyEntry(t, tr).key; k.Src != client6 || k.SrcPort != 40001 {
					t.Errorf("key %v, want originator %v:40001", k, client6)
				}
			},
		},
		{
			name:   "single 802.1Q tag",
			frames: [][]byte{vlanFrame([]uint16{100}, []layers.EthernetType{layers.EthernetTypeDot1Q}, syn4)},
			stats:  map[string]uint64{"FlowsCreated": 1, "ErrVLAN": 0},
			check: func(t *testing.T, ev collected) {
				if k := onlyEntry(t, tr).key; k.VLAN != [2]uint16{100, 0} {
					t.Errorf("vlan %v, want [100 0]", k.VLAN)
				}
			},
		},
		{
			name:   "QinQ 802.1ad + 802.1Q",
			frames: [][]byte{vlanFrame([]uint16{200, 100}, []layers.EthernetType{layers.EthernetTypeQinQ, layers.EthernetTypeDot1Q}, udp6)},
			stats:  map[string]uint64{"FlowsCreated": 1},
			check: func(t *testing.T, ev collected) {
				if k := onlyEntry(t, tr).key; k.VLAN != [2]uint16{200, 100} || k.Proto != event.ProtoUDP {
					t.Errorf("key %v, want vlan [200 100] udp", k)
				}
			},
		},
		{
			name:   "three VLAN tags fail open",
			frames: [][]byte{vlanFrame([]uint16{1, 2, 3}, []layers.EthernetType{layers.EthernetTypeQinQ, layers.EthernetTypeDot1Q, layers.EthernetTypeDot1Q}, syn4)},
			stats:  map[string]uint64{"ErrVLAN": 1, "FlowsCreated": 0},
		},
		{
			name:   "truncated VLAN tag",
			frames: [][]byte{append(append([]byte{}, syn4[:12]...), 0x81, 0x00, 0x00)},
			stats:  map[string]uint64{"ErrVLAN": 1},
		},
		{name: "ethernet header only", frames: [][]byte{ethOnly}, stats: map[string]uint64{"ErrIPv4": 1, "FlowsCreated": 0}},
		{name: "ipv4 IHL below 5", frames: [][]byte{badIHL}, stats: map[string]uint64{"ErrIPv4": 1, "FlowsCreated": 0}},
		{name: "truncated TCP header", frames: [][]byte{ipv4Trunc}, stats: map[string]uint64{"ErrL4": 1, "FlowsCreated": 0}},
		{name: "truncated IPv6 header", frames: [][]byte{udp6[:14+30]}, stats: map[string]uint64{"ErrIPv6": 1}},
		{name: "truncated Ethernet header", frames: [][]byte{syn4[:13]}, stats: map[string]uint64{"ErrEth": 1}},
		{
			name: "ipv6 with 3 extension headers", frames: [][]byte{ipv6ExtFrame(t, 3, []byte("x"))},
			stats: map[string]uint64{"FlowsCreated": 1, "ErrIPv6Ext": 0},
			check: func(t *testing.T, ev collected) {
				if k := onlyEntry(t, tr).key; k.Proto != event.ProtoUDP || k.DstPort != 5000 {
					t.Errorf("key %v, want udp port 5000 after extension headers", k)
				}
			},
		},
		{name: "ipv6 with 6 extension headers", frames: [][]byte{ipv6ExtFrame(t, 6, []byte("x"))}, stats: map[string]uint64{"FlowsCreated": 1, "ErrIPv6Ext": 0}},
		{name: "ipv6 with too many extension headers", frames: [][]byte{ipv6ExtFrame(t, 7, []byte("x"))}, stats: map[string]uint64{"ErrIPv6Ext": 1, "FlowsCreated": 0}},
		{
			name: "ipv4 non-first fragment tracked without ports", frames: [][]byte{frag4(10)},
			stats: map[string]uint64{"Fragments": 1, "FlowsCreated": 1},
			check: func(t *testing.T, ev collected) {
				e := onlyEntry(t, tr)
				if e.key.SrcPort != 0 || e.key.DstPort != 0 || e.state&stFrag == 0 {
					t.Errorf("fragment flow key %v state %#x, want no ports and FRAG", e.key, e.state)
				}
			},
		},
		{
			name:   "icmp echo request and reply share a flow",
			frames: [][]byte{icmp4(8, client4, server4), icmp4(0, server4, client4)},
			stats:  map[string]uint64{"FlowsCreated": 1},
			check: func(t *testing.T, ev collected) {
				e := onlyEntry(t, tr)
				if e.key.Proto != event.ProtoICMP || e.f.packets != [2]uint64{1, 1} || e.key.SrcPort != 8 || e.key.Src != client4 {
					t.Errorf("key %v packets %v, want icmp type 8 from %v, [1 1]", e.key, e.f.packets, client4)
				}
			},
		},
		{
			name:   "icmpv6 echo request and reply share a flow",
			frames: [][]byte{icmp6(128, client6, server6), icmp6(129, server6, client6)},
			stats:  map[string]uint64{"FlowsCreated": 1},
			check: func(t *testing.T, ev collected) {
				if e := onlyEntry(t, tr); e.key.Proto != event.ProtoICMPv6 || e.f.packets != [2]uint64{1, 1} {
					t.Errorf("key %v packets %v, want icmp6 [1 1]", e.key, e.f.packets)
				}
			},
		},
		{
			name: "arp is reported", frames: [][]byte{arp},
			stats: map[string]uint64{"NonIP": 1, "FlowsCreated": 0, "Snippets": 1},
			check: func(t *testing.T, ev collected) {
				if len(ev.snippets) != 1 {
					t.Fatalf("%d snippets, want 1", len(ev.snippets))
				}
				s := ev.snippets[0]
				if s.Kind != event.SnippetARP || s.Key.Src != client4 || s.Key.Dst != server4 || s.Key.SrcPort != 1 || !bytes.Equal(s.Data, arp[14:42]) {
					t.Errorf("arp snippet %+v", s)
				}
			},
		},
		{
			name: "other first client payload becomes a payload snippet",
			frames: [][]byte{
				tcpFrame(t, client4, server4, 40400, 22, tcpSeg{flags: "AP", seq: 1, payload: []byte("SSH-2.0-OpenSSH_9.2p1\r\n")}),
				tcpFrame(t, client4, server4, 40401, 3333, tcpSeg{flags: "AP", seq: 1, payload: []byte("{}")}),
			},
			stats: map[string]uint64{"Snippets": 2},
			check: func(t *testing.T, ev collected) {
				if len(ev.snippets) != 2 || ev.snippets[0].Kind != event.SnippetPayload || string(ev.snippets[0].Data) != "SSH-2.0-OpenSSH_9.2p1\r\n" ||
					ev.snippets[1].Kind != event.SnippetPayload || string(ev.snippets[1].Data) != "{}" {
					t.Fatalf("snippets %+v", ev.snippets)
				}
			},
		},
		{
			name:   "dns query becomes a snippet",
			frames: [][]byte{udpFrame(t, client4, netip.MustParseAddr("198.18.0.53"), 53000, 53, dnsMsg)},
			stats:  map[string]uint64{"Snippets": 1, "FlowsCreated": 1},
			check: func(t *testing.T, ev collected) {
				if len(ev.snippets) != 1 {
					t.Fatalf("%d snippets, want 1", len(ev.snippets))
				}
				s := ev.snippets[0]
				if s.Kind != event.SnippetDNS || s.Dir != event.DirOrig || !bytes.Equal(s.Data, dnsMsg) ||
					int(s.PayloadLen) != len(dnsMsg) || s.Key.Src != client4 || s.Key.DstPort != 53 || !s.Time.Equal(t0) {
					t.Errorf("snippet %+v, want dns orig %x at %v", s, dnsMsg, t0)
				}
			},
		},
		{
			name: "tls clienthello becomes a snippet",
			frames: [][]byte{
				tcpFrame(t, client4, server4, 40100, 443, tcpSeg{flags: "S", seq: 1}),
				tcpFrame(t, client4, server4, 40100, 443, tcpSeg{flags: "AP", seq: 2, payload: hello}),
			},
			stats: map[string]uint64{"Snippets": 1},
			check: func(t *testing.T, ev collected) {
				if len(ev.snippets) != 1 {
					t.Fatalf("%d snippets, want 1", len(ev.snippets))
				}
				if s := ev.snippets[0]; s.Kind != event.SnippetTLS || !bytes.Equal(s.Data, hello) || s.Continuation {
					t.Errorf("snippet kind %v len %d cont %v, want tls %d bytes", s.Kind, len(s.Data), s.Continuation, len(hello))
				}
			},
		},
		{
			name: "clienthello over two segments arrives as snippet + continuation",
			frames: [][]byte{
				tcpFrame(t, client6, server6, 40101, 443, tcpSeg{flags: "S", seq: 99}),
				tcpFrame(t, client6, server6, 40101, 443, tcpSeg{flags: "AP", seq: 100, payload: hello[:300]}),
				tcpFrame(t, client6, server6, 40101, 443, tcpSeg{flags: "AP", seq: 400, payload: hello[300:]}),
			},
			stats: map[string]uint64{"Snippets": 2},
			check: func(t *testing.T, ev collected) {
				if len(ev.snippets) != 2 {
					t.Fatalf("%d snippets, want 2", len(ev.snippets))
				}
				a, b := ev.snippets[0], ev.snippets[1]
				if a.Offset != 0 || a.Continuation || !bytes.Equal(a.Data, hello[:300]) {
					t.Errorf("first snippet offset %d cont %v len %d", a.Offset, a.Continuation, len(a.Data))
				}
				if b.Offset != 300 || !b.Continuation || !bytes.Equal(b.Data, hello[300:]) {
					t.Errorf("continuation offset %d cont %v len %d, want 300 true %d", b.Offset, b.Continuation, len(b.Data), len(hello)-300)
				}
			},
		},
		{
			name: "http request becomes a snippet, later payload does not",
			frames: [][]byte{
				tcpFrame(t, client4, server4, 40200, 8080, tcpSeg{flags: "AP", seq: 1, payload: httpReq}),
				tcpFrame(t, client4, server4, 40200, 8080, tcpSeg{flags: "AP", seq: 1 + uint32(len(httpReq)), payload: httpReq}),
			},
			stats: map[string]uint64{"Snippets": 1},
			check: func(t *testing.T, ev collected) {
				if len(ev.snippets) != 1 || ev.snippets[0].Kind != event.SnippetHTTP || !bytes.Equal(ev.snippets[0].Data, httpReq) {
					t.Fatalf("snippets %+v, want one http snippet", ev.snippets)
				}
			},
		},
		{
			name: "tcp reset emits the final record and frees the entry",
			frames: [][]byte{
				tcpFrame(t, client4, server4, 40300, 22, tcpSeg{fromClient: true, flags: "S", seq: 1}),
				tcpFrame(t, server4, client4, 22, 40300, tcpSeg{flags: "RA", seq: 0}),
			},
			stats: map[string]uint64{"FlowRecords": 1, "FlowsCreated": 1, "FlowsDeleted": 1},
			check: func(t *testing.T, ev collected) {
				if len(ev.flows) != 1 {
					t.Fatalf("%d flow records, want 1", len(ev.flows))
				}
				f := ev.flows[0]
				if f.Reason != event.ReasonRST || !f.Final || f.Key.Src != client4 || f.Key.DstPort != 22 ||
					f.Packets != [2]uint64{1, 1} || f.TCPFlags[1] != event.TCPRst|event.TCPAck ||
					!f.Time.Equal(t0.Add(time.Millisecond)) || !f.FirstSeen.Equal(t0) || !f.LastSeen.Equal(f.Time) {
					t.Errorf("record %+v", f)
				}
				if n := tr.Flows(); n != 0 {
					t.Errorf("%d flow entries left, want 0", n)
				}
			},
		},
		{
			name: "snippets are cut at the snippet length",
			frames: [][]byte{
				tcpFrame(t, client4, server4, 40500, 8080, tcpSeg{flags: "AP", seq: 1, payload: append([]byte("POST /x HTTP/1.1\r\n"), bytes.Repeat([]byte{'a'}, 3000)...)}),
			},
			stats: map[string]uint64{"Snippets": 1, "SnippetsTruncated": 1},
			check: func(t *testing.T, ev collected) {
				if s := ev.snippets[0]; s.Kind != event.SnippetHTTP || !s.Truncated || len(s.Data) != DefaultSnippetLen || s.PayloadLen != 3018 {
					t.Errorf("snippet kind %v truncated %v len %d payload %d", s.Kind, s.Truncated, len(s.Data), s.PayloadLen)
				}
			},
		},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A fresh table per row, as resetFlows gives the dataplane's.
			ev.reset()
			tr = newTracker(t, Options{}, &ev)
			before := tr.Stats()
			feed(tr, 0, tc.frames...)
			after := tr.Stats()
			for name, want := range tc.stats {
				if got := statDelta(before, after, name); got != want {
					t.Errorf("%s: +%d, want +%d", name, got, want)
				}
			}
			// Every frame is counted once.
			if got := statDelta(before, after, "Packets"); got != uint64(len(tc.frames)) {
				t.Errorf("Packets: +%d, want +%d", got, len(tc.frames))
			}
			if tc.check != nil {
				tc.check(t, ev)
			}
		})
	}
}

// TestTCPConversation mirrors dataplane's: exact per-direction accounting
// and the final record of a normally closed TCP connection, in both
// orientations of the canonical key.
func TestTCPConversation(t *testing.T) {
	for _, pair := range [][2]netip.Addr{{client4, server4}, {server4, client4}, {client6, server6}} {
		c, s := pair[0], pair[1]
		t.Run(c.String()+"->"+s.String(), func(t *testing.T) {
			var ev collected
			tr := newTracker(t, Options{}, &ev)
			req := bytes.Repeat([]byte("q"), 100)
			resp := bytes.Repeat([]byte("r"), 1000)
			segs := []tcpSeg{
				{true, "S", 0, nil},
				{false, "SA", 0, nil},
				{true, "A", 1, nil},
				{true, "AP", 1, req},
				{false, "A", 1, nil},
				{false, "AP", 1, resp},
				{true, "A", 101, nil},
				{true, "FA", 101, nil},
				{false, "FA", 1001, nil},
				{true, "A", 102, nil}, // final ACK: ends the flow
			}
			var want, wantBytes [2]uint64
			var frames [][]byte
			for _, sg := range segs {
				var f []byte
				dir := 1
				if sg.fromClient {
					f = tcpFrame(t, c, s, 50000, 8443, sg)
					dir = 0
				} else {
					f = tcpFrame(t, s, c, 8443, 50000, sg)
				}
				want[dir]++
				wantBytes[dir] += uint64(len(f))
				frames = append(frames, f)
			}
			feed(tr, 0, frames...)
			if len(ev.flows) != 1 {
				t.Fatalf("%d flow records, want 1: %+v", len(ev.flows), ev.flows)
			}
			f := ev.flows[0]
			if f.Reason != event.ReasonFIN || !f.Final || f.Seq != 0 {
				t.Errorf("reason %v final %v seq %d, want fin final 0", f.Reason, f.Final, f.Seq)
			}
			if f.Key.Src != c || f.Key.SrcPort != 50000 || f.Key.Dst != s || f.Key.DstPort != 8443 {
				t.Errorf("key %v, want originator %v:50000", f.Key, c)
			}
			if f.Packets != want || f.Bytes != wantBytes {
				t.Errorf("packets %v bytes %v, want %v %v", f.Packets, f.Bytes, want, wantBytes)
			}
			all := uint8(event.TCPSyn | event.TCPAck | event.TCPPsh | event.TCPFin)
			if f.FirstFlags != event.TCPSyn || f.TCPFlags[0] != all || f.TCPFlags[1] != all {
				t.Errorf("flags first %#x orig %#x resp %#x", f.FirstFlags, f.TCPFlags[0], f.TCPFlags[1])
			}
			if !f.FirstSeen.Equal(t0) || !f.LastSeen.Equal(t0.Add(9*time.Millisecond)) || !f.Time.Equal(f.LastSeen) {
				t.Errorf("times first %v last %v record %v", f.FirstSeen, f.LastSeen, f.Time)
			}
			if n := tr.Flows(); n != 0 {
				t.Errorf("%d flow entries left after close, want 0", n)
			}
			// The client's first payload: a payload snippet.
			if len(ev.snippets) != 1 || ev.snippets[0].Kind != event.SnippetPayload || !bytes.Equal(ev.snippets[0].Data, req) {
				t.Errorf("snippets %+v, want the request as a payload snippet", ev.snippets)
			}
		})
	}
}

// TestSynAckFirstFlipsOriginator: a flow first seen at its SYN-ACK was
// originated by the SYN-ACK's receiver.
func TestSynAckFirstFlipsOriginator(t *testing.T) {
	var ev collected
	tr := newTracker(t, Options{}, &ev)
	feed(tr, 0,
		tcpFrame(t, server4, client4, 443, 50001, tcpSeg{flags: "SA"}),
		tcpFrame(t, client4, server4, 50001, 443, tcpSeg{flags: "A", seq: 1}),
		tcpFrame(t, client4, server4, 50001, 443, tcpSeg{flags: "R", seq: 1}))
	if len(ev.flows) != 1 {
		t.Fatalf("%d records", len(ev.flows))
	}
	if f := ev.flows[0]; f.Key.Src != client4 || f.Key.SrcPort != 50001 || f.Packets != [2]uint64{2, 1} || f.FirstFlags != event.TCPSyn|event.TCPAck {
		t.Errorf("record %+v, want originator %v:50001 with [2 1] packets", f, client4)
	}
}

// TestCloseTimeoutAndSecondFinAck: the final record comes at the ACK of
// the second FIN from the side opposite to its sender; a closed flow
// without that ACK leaves with reason fin after the close timeout.
func TestCloseTimeoutAndSecondFinAck(t *testing.T) {
	var ev collected
	tr := newTracker(t, Options{}, &ev)
	feed(tr, 0,
		tcpFrame(t, client4, server4, 50002, 80, tcpSeg{flags: "S"}),
		tcpFrame(t, server4, client4, 80, 50002, tcpSeg{flags: "SA"}),
		tcpFrame(t, server4, client4, 80, 50002, tcpSeg{flags: "FA", seq: 1}), // server closes first
		tcpFrame(t, client4, server4, 50002, 80, tcpSeg{flags: "FA", seq: 1}), // second FIN from the client
		tcpFrame(t, client4, server4, 50002, 80, tcpSeg{flags: "A", seq: 2}),  // same side as the second FIN: not the end
	)
	if len(ev.flows) != 0 {
		t.Fatalf("records %+v before the server's ACK of the second FIN", ev.flows)
	}
	feed(tr, 10*time.Millisecond, tcpFrame(t, server4, client4, 80, 50002, tcpSeg{flags: "A", seq: 2}))
	if len(ev.flows) != 1 || ev.flows[0].Reason != event.ReasonFIN || ev.flows[0].Packets != [2]uint64{3, 3} {
		t.Fatalf("records %+v, want one fin record with [3 3] packets", ev.flows)
	}

	// Without the last ACK: the sweeper, 5 s of packet time later.
	ev.reset()
	feed(tr, time.Minute,
		tcpFrame(t, client4, server4, 50003, 80, tcpSeg{flags: "FA", seq: 1}),
		tcpFrame(t, server4, client4, 80, 50003, tcpSeg{flags: "FA", seq: 1}))
	other := udpFrame(t, client4, server4, 1234, 9, nil)
	feed(tr, time.Minute+4*time.Second, other)
	if len(ev.flows) != 0 {
		t.Fatalf("records %+v before the close timeout", ev.flows)
	}
	feed(tr, time.Minute+6*time.Second, other)
	if len(ev.flows) != 1 || ev.flows[0].Reason != event.ReasonFIN || !ev.flows[0].Final || ev.flows[0].Key.SrcPort != 50003 {
		t.Fatalf("records %+v, want the closed flow's fin record", ev.flows)
	}
	// Stamped with the sweep tick that reached it: the grid starts at the
	// first packet (t0), ticks every second; the flow's last packet was
	// at t0+1m+1ms, so the close timeout expires at t0+1m5.001s and the
	// tick that saw it is t0+1m6s.
	if got, want := ev.flows[0].Time, t0.Add(time.Minute+6*time.Second); !got.Equal(want) {
		t.Errorf("record time %v, want %v", got, want)
	}
}

// TestSweepAndTimeouts mirrors dataplane's: the idle sweep, the interim
// record of a long flow, sweeping by hand (negative SweepInterval) as that
// test does.
func TestSweepAndTimeouts(t *testing.T) {
	var ev collected
	tr := newTracker(t, Options{IdleTimeout: time.Second, ActiveTimeout: time.Second, CloseTimeout: time.Second, SweepInterval: -1}, &ev)
	u := udpFrame(t, client4, server4, 41000, 9999, []byte("a"))
	back := udpFrame(t, server4, client4, 9999, 41000, []byte("bb"))
	feed(tr, 0, u)
	if n := tr.Sweep(); n != 0 || tr.Flows() != 1 {
		t.Fatalf("sweep right away: expired %d live %d, want 0 1", n, tr.Flows())
	}
	feed(tr, 1100*time.Millisecond, back) // past the active timeout: interim record
	if len(ev.flows) != 1 || ev.flows[0].Reason != event.ReasonActive || ev.flows[0].Final || ev.flows[0].Packets != [2]uint64{1, 1} || ev.flows[0].Seq != 0 {
		t.Fatalf("want one interim record with [1 1] packets, got %+v", ev.flows)
	}
	ev.reset()
	tr.AdvanceTo(t0.Add(2200 * time.Millisecond))
	if n := tr.Sweep(); n != 1 {
		t.Fatalf("sweep after idle: %d expired, want 1", n)
	}
	if len(ev.flows) != 1 || ev.flows[0].Reason != event.ReasonIdle || !ev.flows[0].Final || ev.flows[0].Seq != 1 ||
		ev.flows[0].Packets != [2]uint64{1, 1} || ev.flows[0].Key.Src != client4 || !ev.flows[0].Time.Equal(t0.Add(2200*time.Millisecond)) {
		t.Fatalf("want final idle record seq 1, got %+v", ev.flows)
	}
	if n := tr.Flows(); n != 0 {
		t.Fatalf("%d entries after idle sweep", n)
	}
	if st := tr.Stats(); st.FlowsEvicted != 0 || st.SweepExpired != 1 || st.Sweeps != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestPacketTimeSweeps: with the default sweeper, flows time out as
// packet time passes, interim records come every active timeout, and
// records carry the tick that wrote them even across a gap in the capture.
func TestPacketTimeSweeps(t *testing.T) {
	var ev collected
	tr := newTracker(t, Options{IdleTimeout: 10 * time.Second, ActiveTimeout: 20 * time.Second}, &ev)
	long := udpFrame(t, client4, server4, 5000, 5001, []byte("x"))
	short := udpFrame(t, client6, server6, 6000, 6001, []byte("y"))
	feed(tr, 0, long, short)
	for s := 5; s <= 45; s += 5 {
		feed(tr, time.Duration(s)*time.Second, long)
	}
	var active, idle []event.Flow
	for _, f := range ev.flows {
		switch f.Reason {
		case event.ReasonActive:
			active = append(active, f)
		case event.ReasonIdle:
			idle = append(idle, f)
		}
	}
	// short idles out at the tick t0+11s (last seen t0+1ms, idle 10s).
	if len(idle) != 1 || idle[0].Key.Src != client6 || !idle[0].Time.Equal(t0.Add(11*time.Second)) {
		t.Errorf("idle records %+v, want short's at t0+11s", idle)
	}
	// long: interim records at 20 s and 40 s of packet time, Seq 0 and 1.
	if len(active) != 2 || active[0].Seq != 0 || active[1].Seq != 1 || !active[0].Time.Equal(t0.Add(20*time.Second)) ||
		active[1].Packets[0] != 9 {
		t.Errorf("interim records %+v", active)
	}

	// A gap of an hour: long expires at the first tick after 45+10 s,
	// not at the time of the packet that ended the gap.
	ev.reset()
	feed(tr, time.Hour, short)
	if len(ev.flows) != 1 || ev.flows[0].Reason != event.ReasonIdle || ev.flows[0].Seq != 2 || !ev.flows[0].Time.Equal(t0.Add(55*time.Second)) {
		t.Errorf("after the gap: %+v, want long's idle record seq 2 at t0+55s", ev.flows)
	}

	// Out of order: a packet from before the clock counts at the clock.
	ev.reset()
	feed(tr, 30*time.Minute, long)
	if st := tr.Stats(); st.TimeBackwards != 1 {
		t.Errorf("TimeBackwards %d, want 1", st.TimeBackwards)
	}
	tr.Flush()
	for _, f := range ev.flows {
		if f.Reason != event.ReasonIdle || !f.Time.Equal(t0.Add(time.Hour)) || f.FirstSeen.Before(t0.Add(time.Hour)) {
			t.Errorf("flushed %+v, want idle records at the clock (t0+1h)", f)
		}
	}
	if len(ev.flows) != 2 || tr.Flows() != 0 || tr.Stats().Flushed != 2 {
		t.Errorf("flush: %d records, %d left", len(ev.flows), tr.Flows())
	}
}

// TestEvictionsAreCounted mirrors dataplane's: an overfull table evicts
// the least recently used flows and counts them.
func TestEvictionsAreCounted(t *testing.T) {
	var ev collected
	tr := newTracker(t, Options{FlowTableSize: 1024}, &ev)
	const n = 5000
	for i := 0; i < n; i++ {
		feed(tr, 0, udpFrame(t, client4, server4, uint16(10000+i), 7, nil))
	}
	st := tr.Stats()
	if st.FlowsCreated != n || st.LiveFlows != 1024 || st.FlowsEvicted != n-1024 || st.FlowsDeleted != 0 {
		t.Fatalf("created %d live %d evicted %d deleted %d", st.FlowsCreated, st.LiveFlows, st.FlowsEvicted, st.FlowsDeleted)
	}
	// The survivors are the most recent flows.
	tr.Flush()
	if len(ev.flows) != 1024 || ev.flows[0].Key.SrcPort != 10000+n-1024 {
		t.Errorf("flushed %d, first %v", len(ev.flows), ev.flows[0].Key)
	}
}

// TestFlowSampling mirrors dataplane's, and checks that sampling follows
// the fast path's key hash.
func TestFlowSampling(t *testing.T) {
	tr := newTracker(t, Options{FlowSample: 1 << 31}, nil)
	feed(tr, 0, udpFrame(t, client4, server4, 12345, 7, nil))
	st := tr.Stats()
	if st.FlowSampledOut+st.FlowsCreated != 1 || st.Packets != 1 {
		t.Fatalf("sampled out %d new %d", st.FlowSampledOut, st.FlowsCreated)
	}
	tr = newTracker(t, Options{FlowSample: 4}, nil)
	kept := 0
	for i := 0; i < 1000; i++ {
		feed(tr, 0, udpFrame(t, client4, server4, uint16(20000+i), 7, nil))
		var p pkt
		f := udpFrame(t, client4, server4, uint16(20000+i), 7, nil)
		parse(f, len(f), layers.LinkTypeEthernet, &p)
		var ck flowKey
		canonical(&ck, &p.key)
		if keyHash(&ck)%4 == 0 {
			kept++
		}
	}
	if st := tr.Stats(); int(st.FlowsCreated) != kept || st.FlowSampledOut != uint64(1000-kept) || kept < 150 || kept > 350 {
		t.Errorf("created %d sampled out %d, want %d kept of 1000", st.FlowsCreated, st.FlowSampledOut, kept)
	}
}

// TestClientHelloContinuations: a ClientHello over five segments is
// followed with continuations by sequence offset; retransmissions and
// bytes past the hello are not. At most WL_SNIPPET_CONT_MAX continuations
// follow the first snippet.
func TestClientHelloContinuations(t *testing.T) {
	var ev collected
	tr := newTracker(t, Options{}, &ev)
	hello := clientHello(t, "many.segments.example")
	// A 1995-byte record body: want = 2000 bytes, below SnippetLen, in
	// eight segments.
	if len(hello) > 2000 {
		t.Fatalf("ClientHello of %d bytes", len(hello))
	}
	rec := append([]byte{0x16, 0x03, 0x01, 1995 >> 8, 1995 & 0xff}, hello[5:]...)
	rec = append(rec, make([]byte, 2000-len(rec))...)
	const seg = 250
	var frames [][]byte
	frames = append(frames, tcpFrame(t, client4, server4, 40600, 443, tcpSeg{flags: "S", seq: 999}))
	for off := 0; off < len(rec); off += seg {
		end := min(off+seg, len(rec))
		frames = append(frames, tcpFrame(t, client4, server4, 40600, 443, tcpSeg{flags: "AP", seq: 1000 + uint32(off), payload: rec[off:end]}))
		if off == seg {
			// a retransmission of the first segment: ignored
			frames = append(frames, tcpFrame(t, client4, server4, 40600, 443, tcpSeg{flags: "AP", seq: 1000, payload: rec[:seg]}))
		}
	}
	feed(tr, 0, frames...)
	if len(ev.snippets) != 1+snippetContMax {
		t.Fatalf("%d snippets, want the hello and %d continuations", len(ev.snippets), snippetContMax)
	}
	for i, s := range ev.snippets {
		if s.Kind != event.SnippetTLS || s.Offset != uint32(i*seg) || s.Continuation != (i > 0) || !bytes.Equal(s.Data, rec[i*seg:(i+1)*seg]) {
			t.Errorf("snippet %d: kind %v offset %d cont %v len %d", i, s.Kind, s.Offset, s.Continuation, len(s.Data))
		}
	}
}

// TestLinkTypes: the same IPv4 packet behind each supported link-layer
// header gives the same flow, with bytes counted as an Ethernet frame.
func TestLinkTypes(t *testing.T) {
	frame := udpFrame(t, client4, server4, 1111, 53, dnsQuery(t, 7, "example.org"))
	ipPkt := frame[14:]
	sll := append(append(make([]byte, 14), 0x08, 0x00), ipPkt...)
	sll2 := append(append([]byte{0x08, 0x00}, make([]byte, 18)...), ipPkt...)
	nullLE := append([]byte{2, 0, 0, 0}, ipPkt...)
	loopBE := append([]byte{0, 0, 0, 2}, ipPkt...)
	hdlc := append([]byte{0x0f, 0x00, 0x08, 0x00}, ipPkt...)
	for _, tc := range []struct {
		lt   layers.LinkType
		data []byte
	}{
		{layers.LinkTypeEthernet, frame},
		{layers.LinkTypeLinuxSLL, sll},
		{layers.LinkTypeLinuxSLL2, sll2},
		{layers.LinkTypeRaw, ipPkt},
		{layers.LinkTypeIPv4, ipPkt},
		{layers.LinkTypeNull, nullLE},
		{layers.LinkTypeLoop, loopBE},
		{layers.LinkTypeC_HDLC, hdlc},
	} {
		var ev collected
		tr := newTracker(t, Options{}, &ev)
		tr.Packet(&Packet{Time: t0, Data: tc.data, Length: len(tc.data), LinkType: tc.lt})
		tr.Flush()
		if len(ev.flows) != 1 || ev.flows[0].Bytes[0] != uint64(len(frame)) || ev.flows[0].Key.Src != client4 || ev.flows[0].Key.DstPort != 53 {
			t.Errorf("%v: records %+v, want one flow of %d bytes", tc.lt, ev.flows, len(frame))
		}
		if len(ev.snippets) != 1 || !bytes.Equal(ev.snippets[0].Data, frame[42:]) {
			t.Errorf("%v: snippets %+v", tc.lt, ev.snippets)
		}
	}
}

// TestSnapLength: a packet captured short counts its original length; its
// snippet holds what was captured and says it is truncated.
func TestSnapLength(t *testing.T) {
	var ev collected
	tr := newTracker(t, Options{}, &ev)
	req := append([]byte("POST /upload HTTP/1.1\r\n"), bytes.Repeat([]byte{'z'}, 1200)...)
	f := tcpFrame(t, client4, server4, 40700, 80, tcpSeg{flags: "AP", seq: 1, payload: req})
	tr.Packet(&Packet{Time: t0, Data: f[:200], Length: len(f), LinkType: layers.LinkTypeEthernet})
	tr.Flush()
	st := tr.Stats()
	if st.Bytes != uint64(len(f)) || st.CapturedBytes != 200 || st.ShortCaptures != 1 || st.SnippetsShort != 1 {
		t.Errorf("stats %+v", st)
	}
	if ev.flows[0].Bytes[0] != uint64(len(f)) {
		t.Errorf("flow bytes %v, want %d", ev.flows[0].Bytes, len(f))
	}
	if s := ev.snippets[0]; s.Kind != event.SnippetHTTP || !s.Truncated || len(s.Data) != 200-54 || int(s.PayloadLen) != len(req) {
		t.Errorf("snippet kind %v truncated %v len %d payload %d", s.Kind, s.Truncated, len(s.Data), s.PayloadLen)
	}
}

// TestTrackerAllocations: steady-state packets, and new flows once the
// table has had them, allocate nothing.
func TestTrackerAllocations(t *testing.T) {
	var n int
	tr := newTracker(t, Options{FlowTableSize: 1024}, event.HandlerFuncs{Flow: func(*event.Flow) { n++ }, Snippet: func(*event.Snippet) { n++ }})
	hello := clientHello(t, "alloc.example")
	var frames []*Packet
	for i := 0; i < 64; i++ {
		for _, f := range [][]byte{
			tcpFrame(t, client4, server4, uint16(30000+i), 443, tcpSeg{flags: "S", seq: 1}),
			tcpFrame(t, client4, server4, uint16(30000+i), 443, tcpSeg{flags: "AP", seq: 2, payload: hello}),
			udpFrame(t, client6, server6, uint16(30000+i), 53, dnsQuery(t, 1, "a.example")),
			tcpFrame(t, client4, server4, uint16(30000+i), 443, tcpSeg{flags: "R", seq: 2}),
		} {
			frames = append(frames, &Packet{Data: f, Length: len(f), LinkType: layers.LinkTypeEthernet})
		}
	}
	ts := t0
	run := func() {
		for _, p := range frames {
			ts = ts.Add(time.Millisecond)
			p.Time = ts
			tr.Packet(p)
		}
	}
	run() // warm up: table and map grow
	if allocs := testing.AllocsPerRun(50, run); allocs != 0 {
		t.Errorf("%.1f allocations per %d packets", allocs, len(frames))
	}
	if n == 0 {
		t.Fatal("no events")
	}
}
