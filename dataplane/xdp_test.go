package dataplane

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/wardline/wardline/dataplane/event"
)

const (
	xdpDrop = 1
	xdpPass = 2
)

// resetFlows empties the flow table between table rows.
func resetFlows(t *testing.T, d *Dataplane) {
	t.Helper()
	var k bpfWlFlowKey
	var keys []bpfWlFlowKey
	it := d.FlowsMap().Iterate()
	var v bpfWlFlow
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	for _, k := range keys {
		_ = d.FlowsMap().Delete(k)
	}
}

// flowEntries returns the flow table as oriented keys -> value.
func flowEntries(t *testing.T, d *Dataplane) map[event.FlowKey]bpfWlFlow {
	t.Helper()
	out := map[event.FlowKey]bpfWlFlow{}
	var k bpfWlFlowKey
	var v bpfWlFlow
	it := d.FlowsMap().Iterate()
	for it.Next(&k, &v) {
		var ek event.FlowKey
		decodeKey(&ek, &k)
		out[ek] = v
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func onlyFlow(t *testing.T, d *Dataplane) (event.FlowKey, bpfWlFlow) {
	t.Helper()
	m := flowEntries(t, d)
	if len(m) != 1 {
		t.Fatalf("flow table has %d entries, want 1: %v", len(m), m)
	}
	for k, v := range m {
		return k, v
	}
	panic("unreachable")
}

func vlanFrame(t *testing.T, tags []uint16, tpids []layers.EthernetType, inner []byte) []byte {
	// inner is a complete untagged Ethernet frame; re-encapsulate its
	// payload behind the tags.
	out := append([]byte{}, inner[:12]...)
	for i, tag := range tags {
		var b [4]byte
		binary.BigEndian.PutUint16(b[:2], uint16(tpids[i]))
		binary.BigEndian.PutUint16(b[2:], tag)
		out = append(out, b[:]...)
	}
	return append(out, inner[12:]...)
}

func ipv6ExtFrame(t *testing.T, nExt int, payload []byte) []byte {
	// nExt destination-options headers (8 bytes each), then UDP.
	udp := &layers.UDP{SrcPort: 40000, DstPort: 5000}
	ip := ip6(client6, server6, layers.IPProtocolIPv6Destination)
	udp.SetNetworkLayerForChecksum(ip)
	udpBytes := serialize(t, udp, gopacket.Payload(payload))
	var ext []byte
	for i := 0; i < nExt; i++ {
		next := byte(layers.IPProtocolIPv6Destination)
		if i == nExt-1 {
			next = byte(layers.IPProtocolUDP)
		}
		// next header, hdr ext len 0 (8 bytes), PadN option filling 6 bytes.
		ext = append(ext, next, 0, 1, 4, 0, 0, 0, 0)
	}
	ip.Length = 0
	body := append(ext, udpBytes...)
	return serialize(t, eth(layers.EthernetTypeIPv6), ip, gopacket.Payload(body))
}

// set puts prefix into list with an expiry, failing the test on error.
func set(t *testing.T, d *Dataplane, list List, prefix string, expires time.Time) {
	t.Helper()
	if err := d.Lists().Set(list, netip.MustParsePrefix(prefix), expires); err != nil {
		t.Fatal(err)
	}
}

func TestPacketTable(t *testing.T) {
	d := loadTestDataplane(t, Options{})
	r, err := d.NewReader()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	syn4 := tcpFrame(t, client4, server4, 40000, 80, tcpSeg{flags: "S", seq: 1000})
	udp6 := udpFrame(t, client6, server6, 40001, 5000, []byte("hello"))
	dnsMsg := dnsQuery(t, 0x1234, "web.example.com")
	hello := clientHello(t, "web.example.com")
	httpReq := []byte("GET /index.html HTTP/1.1\r\nHost: web.example.com\r\nUser-Agent: wl-test\r\n\r\n")

	ipv4Trunc := append([]byte{}, syn4[:14+20+10]...) // TCP header cut at 10 bytes
	badIHL := append([]byte{}, syn4...)
	badIHL[14] = 0x44 // version 4, IHL 4
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
		setup  func(t *testing.T)
		frames [][]byte
		want   uint32 // verdict for every frame
		stats  map[Stat]uint64
		check  func(t *testing.T, ev collected)
	}{
		{
			name: "ipv4 tcp syn creates a flow", frames: [][]byte{syn4}, want: xdpPass,
			stats: map[Stat]uint64{StatRxPackets: 1, StatRxBytes: uint64(len(syn4)), StatPass: 1, StatFlowNew: 1},
			check: func(t *testing.T, ev collected) {
				k, v := onlyFlow(t, d)
				if v.Packets != [2]uint64{1, 0} || v.Bytes != [2]uint64{uint64(len(syn4)), 0} {
					t.Errorf("counters %v/%v, want [1 0]/[%d 0]", v.Packets, v.Bytes, len(syn4))
				}
				if v.FirstFlags != event.TCPSyn || v.State&0xff != event.TCPSyn {
					t.Errorf("flags first=%#x state=%#x, want SYN", v.FirstFlags, v.State)
				}
				if k.Proto != event.ProtoTCP || (k.SrcPort != 80 && k.DstPort != 80) {
					t.Errorf("key %v", k)
				}
			},
		},
		{
			name: "ipv6 udp", frames: [][]byte{udp6}, want: xdpPass,
			stats: map[Stat]uint64{StatFlowNew: 1, StatPass: 1},
			check: func(t *testing.T, ev collected) {
				k, _ := onlyFlow(t, d)
				if !(k.Src == client6 && k.SrcPort == 40001) && !(k.Dst == client6 && k.DstPort == 40001) {
					t.Errorf("key %v does not hold %v:40001", k, client6)
				}
			},
		},
		{
			name: "single 802.1Q tag", want: xdpPass,
			frames: [][]byte{vlanFrame(t, []uint16{100}, []layers.EthernetType{layers.EthernetTypeDot1Q}, syn4)},
			stats:  map[Stat]uint64{StatFlowNew: 1, StatErrVLAN: 0},
			check: func(t *testing.T, ev collected) {
				if k, _ := onlyFlow(t, d); k.VLAN != [2]uint16{100, 0} {
					t.Errorf("vlan %v, want [100 0]", k.VLAN)
				}
			},
		},
		{
			name: "QinQ 802.1ad + 802.1Q", want: xdpPass,
			frames: [][]byte{vlanFrame(t, []uint16{200, 100}, []layers.EthernetType{layers.EthernetTypeQinQ, layers.EthernetTypeDot1Q}, udp6)},
			stats:  map[Stat]uint64{StatFlowNew: 1},
			check: func(t *testing.T, ev collected) {
				if k, _ := onlyFlow(t, d); k.VLAN != [2]uint16{200, 100} || k.Proto != event.ProtoUDP {
					t.Errorf("key %v, want vlan [200 100] udp", k)
				}
			},
		},
		{
			name: "three VLAN tags fail open", want: xdpPass,
			frames: [][]byte{vlanFrame(t, []uint16{1, 2, 3}, []layers.EthernetType{layers.EthernetTypeQinQ, layers.EthernetTypeDot1Q, layers.EthernetTypeDot1Q}, syn4)},
			stats:  map[Stat]uint64{StatErrVLAN: 1, StatPass: 1, StatFlowNew: 0},
		},
		{
			name: "truncated VLAN tag", want: xdpPass,
			frames: [][]byte{append(append([]byte{}, syn4[:12]...), 0x81, 0x00, 0x00)},
			stats:  map[Stat]uint64{StatErrVLAN: 1, StatPass: 1},
		},
		{
			name: "ethernet header only", frames: [][]byte{ethOnly}, want: xdpPass,
			stats: map[Stat]uint64{StatErrIPv4: 1, StatPass: 1, StatFlowNew: 0},
		},
		{
			name: "ipv4 IHL below 5", frames: [][]byte{badIHL}, want: xdpPass,
			stats: map[Stat]uint64{StatErrIPv4: 1, StatPass: 1, StatFlowNew: 0},
		},
		{
			name: "truncated TCP header", frames: [][]byte{ipv4Trunc}, want: xdpPass,
			stats: map[Stat]uint64{StatErrL4: 1, StatPass: 1, StatFlowNew: 0},
		},
		{
			name: "truncated IPv6 header", frames: [][]byte{udp6[:14+30]}, want: xdpPass,
			stats: map[Stat]uint64{StatErrIPv6: 1, StatPass: 1},
		},
		{
			name: "ipv6 with 3 extension headers", frames: [][]byte{ipv6ExtFrame(t, 3, []byte("x"))}, want: xdpPass,
			stats: map[Stat]uint64{StatFlowNew: 1, StatErrIPv6Ext: 0},
			check: func(t *testing.T, ev collected) {
				k, _ := onlyFlow(t, d)
				if k.Proto != event.ProtoUDP || (k.SrcPort != 5000 && k.DstPort != 5000) {
					t.Errorf("key %v, want udp port 5000 after extension headers", k)
				}
			},
		},
		{
			name: "ipv6 with too many extension headers", frames: [][]byte{ipv6ExtFrame(t, 7, []byte("x"))}, want: xdpPass,
			stats: map[Stat]uint64{StatErrIPv6Ext: 1, StatFlowNew: 0, StatPass: 1},
		},
		{
			name: "ipv4 non-first fragment tracked without ports", frames: [][]byte{frag4(10)}, want: xdpPass,
			stats: map[Stat]uint64{StatFragments: 1, StatFlowNew: 1},
			check: func(t *testing.T, ev collected) {
				k, v := onlyFlow(t, d)
				if k.SrcPort != 0 || k.DstPort != 0 || v.State&(1<<22) == 0 {
					t.Errorf("fragment flow key %v state %#x, want no ports and FRAG", k, v.State)
				}
			},
		},
		{
			name: "icmp echo request and reply share a flow", want: xdpPass,
			frames: [][]byte{icmp4(8, client4, server4), icmp4(0, server4, client4)},
			stats:  map[Stat]uint64{StatFlowNew: 1},
			check: func(t *testing.T, ev collected) {
				k, v := onlyFlow(t, d)
				if k.Proto != event.ProtoICMP || v.Packets != [2]uint64{1, 1} {
					t.Errorf("key %v packets %v, want icmp [1 1]", k, v.Packets)
				}
				if k.SrcPort != 8 && k.DstPort != 8 {
					t.Errorf("key %v: echo type 8 not in ports", k)
				}
			},
		},
		{
			name: "icmpv6 echo request and reply share a flow", want: xdpPass,
			frames: [][]byte{icmp6(128, client6, server6), icmp6(129, server6, client6)},
			stats:  map[Stat]uint64{StatFlowNew: 1},
			check: func(t *testing.T, ev collected) {
				if k, v := onlyFlow(t, d); k.Proto != event.ProtoICMPv6 || v.Packets != [2]uint64{1, 1} {
					t.Errorf("key %v packets %v, want icmp6 [1 1]", k, v.Packets)
				}
			},
		},
		{
			name: "arp passes and is reported", frames: [][]byte{arp}, want: xdpPass,
			stats: map[Stat]uint64{StatNonIP: 1, StatPass: 1, StatFlowNew: 0, StatEvSnippet: 1},
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
			name: "dhcp becomes a snippet", want: xdpPass,
			frames: [][]byte{udpFrame(t, netip.IPv4Unspecified(), netip.AddrFrom4([4]byte{255, 255, 255, 255}), 68, 67, make([]byte, 300))},
			stats:  map[Stat]uint64{StatEvSnippet: 1},
			check: func(t *testing.T, ev collected) {
				if len(ev.snippets) != 1 || ev.snippets[0].Kind != event.SnippetDHCP || len(ev.snippets[0].Data) != 300 {
					t.Fatalf("snippets %+v", ev.snippets)
				}
			},
		},
		{
			name: "blocklisted ARP sender still passes", frames: [][]byte{arp}, want: xdpPass,
			setup: func(t *testing.T) {
				if err := d.Lists().Add(BlockSrc, netip.PrefixFrom(client4, 32)); err != nil {
					t.Fatal(err)
				}
			},
			stats: map[Stat]uint64{StatDrop: 0, StatPass: 1},
		},
		{
			name: "other first client payload becomes a payload snippet", want: xdpPass,
			frames: [][]byte{
				tcpFrame(t, client4, server4, 40400, 22, tcpSeg{flags: "AP", seq: 1, payload: []byte("SSH-2.0-OpenSSH_9.2p1\r\n")}),
				tcpFrame(t, client4, server4, 40401, 3333, tcpSeg{flags: "AP", seq: 1, payload: []byte("{}")}),
			},
			stats: map[Stat]uint64{StatEvSnippet: 2},
			check: func(t *testing.T, ev collected) {
				if len(ev.snippets) != 2 || ev.snippets[0].Kind != event.SnippetPayload || string(ev.snippets[0].Data) != "SSH-2.0-OpenSSH_9.2p1\r\n" ||
					ev.snippets[1].Kind != event.SnippetPayload || string(ev.snippets[1].Data) != "{}" {
					t.Fatalf("snippets %+v", ev.snippets)
				}
			},
		},
		{
			name: "dns query becomes a snippet", want: xdpPass,
			frames: [][]byte{udpFrame(t, client4, netip.MustParseAddr("198.18.0.53"), 53000, 53, dnsMsg)},
			stats:  map[Stat]uint64{StatEvSnippet: 1, StatFlowNew: 1},
			check: func(t *testing.T, ev collected) {
				if len(ev.snippets) != 1 {
					t.Fatalf("%d snippets, want 1", len(ev.snippets))
				}
				s := ev.snippets[0]
				if s.Kind != event.SnippetDNS || s.Dir != event.DirOrig || !bytes.Equal(s.Data, dnsMsg) ||
					int(s.PayloadLen) != len(dnsMsg) || s.Key.Src != client4 || s.Key.DstPort != 53 {
					t.Errorf("snippet %+v, want dns orig %x", s, dnsMsg)
				}
			},
		},
		{
			name: "tls clienthello becomes a snippet", want: xdpPass,
			frames: [][]byte{
				tcpFrame(t, client4, server4, 40100, 443, tcpSeg{flags: "S", seq: 1}),
				tcpFrame(t, client4, server4, 40100, 443, tcpSeg{flags: "AP", seq: 2, payload: hello}),
			},
			stats: map[Stat]uint64{StatEvSnippet: 1},
			check: func(t *testing.T, ev collected) {
				if len(ev.snippets) != 1 {
					t.Fatalf("%d snippets, want 1", len(ev.snippets))
				}
				s := ev.snippets[0]
				if s.Kind != event.SnippetTLS || !bytes.Equal(s.Data, hello) || s.Continuation {
					t.Errorf("snippet kind %v len %d cont %v, want tls %d bytes", s.Kind, len(s.Data), s.Continuation, len(hello))
				}
			},
		},
		{
			name: "clienthello over two segments arrives as snippet + continuation", want: xdpPass,
			frames: [][]byte{
				tcpFrame(t, client6, server6, 40101, 443, tcpSeg{flags: "S", seq: 99}),
				tcpFrame(t, client6, server6, 40101, 443, tcpSeg{flags: "AP", seq: 100, payload: hello[:300]}),
				tcpFrame(t, client6, server6, 40101, 443, tcpSeg{flags: "AP", seq: 400, payload: hello[300:]}),
			},
			stats: map[Stat]uint64{StatEvSnippet: 2},
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
			name: "http request becomes a snippet, later payload does not", want: xdpPass,
			frames: [][]byte{
				tcpFrame(t, client4, server4, 40200, 8080, tcpSeg{flags: "AP", seq: 1, payload: httpReq}),
				tcpFrame(t, client4, server4, 40200, 8080, tcpSeg{flags: "AP", seq: 1 + uint32(len(httpReq)), payload: httpReq}),
			},
			stats: map[Stat]uint64{StatEvSnippet: 1},
			check: func(t *testing.T, ev collected) {
				if len(ev.snippets) != 1 || ev.snippets[0].Kind != event.SnippetHTTP || !bytes.Equal(ev.snippets[0].Data, httpReq) {
					t.Fatalf("snippets %+v, want one http snippet", ev.snippets)
				}
			},
		},
		{
			name: "tcp reset emits the final record and frees the entry", want: xdpPass,
			frames: [][]byte{
				tcpFrame(t, client4, server4, 40300, 22, tcpSeg{fromClient: true, flags: "S", seq: 1}),
				tcpFrame(t, server4, client4, 22, 40300, tcpSeg{flags: "RA", seq: 0}),
			},
			stats: map[Stat]uint64{StatEvFlow: 1, StatFlowNew: 1, StatFlowDeleted: 1},
			check: func(t *testing.T, ev collected) {
				if len(ev.flows) != 1 {
					t.Fatalf("%d flow records, want 1", len(ev.flows))
				}
				f := ev.flows[0]
				if f.Reason != event.ReasonRST || !f.Final || f.Key.Src != client4 || f.Key.DstPort != 22 ||
					f.Packets != [2]uint64{1, 1} || f.TCPFlags[1] != event.TCPRst|event.TCPAck {
					t.Errorf("record %+v", f)
				}
				if n := len(flowEntries(t, d)); n != 0 {
					t.Errorf("%d flow entries left, want 0", n)
				}
			},
		},
		{
			name: "blocklisted source /24 is dropped and counted",
			setup: func(t *testing.T) {
				if err := d.Lists().Add(BlockSrc, netip.MustParsePrefix("198.18.0.0/24")); err != nil {
					t.Fatal(err)
				}
			},
			frames: [][]byte{syn4, tcpFrame(t, netip.MustParseAddr("198.18.0.255"), server4, 1, 2, tcpSeg{flags: "S"})},
			want:   xdpDrop,
			stats:  map[Stat]uint64{StatDrop: 2, StatBlockSrc: 2, StatPass: 0, StatFlowNew: 0},
			check: func(t *testing.T, ev collected) {
				e, err := d.Lists().Get(BlockSrc, netip.MustParsePrefix("198.18.0.0/24"))
				if err != nil || e.Packets != 2 {
					t.Errorf("entry %+v err %v, want 2 hits", e, err)
				}
			},
		},
		{
			name: "blocklisted source is dropped even with a truncated L4 header", want: xdpDrop,
			setup: func(t *testing.T) {
				if err := d.Lists().Add(BlockSrc, netip.MustParsePrefix("198.18.0.11/32")); err != nil {
					t.Fatal(err)
				}
			},
			frames: [][]byte{ipv4Trunc},
			stats:  map[Stat]uint64{StatDrop: 1, StatErrL4: 0},
		},
		{
			name: "blocklisted ipv6 destination is dropped", want: xdpDrop,
			setup: func(t *testing.T) {
				if err := d.Lists().Add(BlockDst, netip.MustParsePrefix("2001:db8:113::/64")); err != nil {
					t.Fatal(err)
				}
			},
			frames: [][]byte{udp6},
			stats:  map[Stat]uint64{StatDrop: 1, StatBlockDst: 1},
		},
		{
			name: "allowlist wins over the blocklist", want: xdpPass,
			setup: func(t *testing.T) {
				if err := d.Lists().Add(BlockDst, netip.MustParsePrefix("203.0.113.0/24")); err != nil {
					t.Fatal(err)
				}
				if err := d.Lists().Add(Allow, netip.MustParsePrefix("203.0.113.10/32")); err != nil {
					t.Fatal(err)
				}
			},
			frames: [][]byte{syn4},
			stats:  map[Stat]uint64{StatAllowlisted: 1, StatDrop: 0, StatPass: 1, StatFlowNew: 1},
		},
		{
			name: "block entry expiring in the future drops", want: xdpDrop,
			setup: func(t *testing.T) {
				set(t, d, BlockSrc, "198.18.0.0/24", time.Now().Add(time.Hour))
			},
			frames: [][]byte{syn4},
			stats:  map[Stat]uint64{StatDrop: 1, StatBlockSrc: 1, StatBlockExpired: 0, StatPass: 0},
		},
		{
			name: "expired block entry passes and is counted", want: xdpPass,
			setup: func(t *testing.T) {
				set(t, d, BlockSrc, "198.18.0.0/24", time.Now().Add(-time.Second))
			},
			frames: [][]byte{syn4, udp6},
			stats:  map[Stat]uint64{StatDrop: 0, StatBlockSrc: 0, StatBlockExpired: 1, StatPass: 2, StatFlowNew: 2},
			check: func(t *testing.T, ev collected) {
				if e, err := d.Lists().Get(BlockSrc, netip.MustParsePrefix("198.18.0.0/24")); err != nil || e.Packets != 0 {
					t.Errorf("expired entry %+v err %v, want present with 0 hits", e, err)
				}
			},
		},
		{
			name: "expired ipv6 destination entry passes", want: xdpPass,
			setup: func(t *testing.T) {
				set(t, d, BlockDst, "2001:db8:113::/64", time.Now().Add(-time.Millisecond))
			},
			frames: [][]byte{udp6},
			stats:  map[Stat]uint64{StatDrop: 0, StatBlockExpired: 1, StatPass: 1},
		},
		{
			name: "expired source entry does not hide a live destination entry", want: xdpDrop,
			setup: func(t *testing.T) {
				set(t, d, BlockSrc, "198.18.0.11/32", time.Now().Add(-time.Second))
				set(t, d, BlockDst, "203.0.113.0/24", time.Now().Add(time.Hour))
			},
			frames: [][]byte{syn4},
			stats:  map[Stat]uint64{StatDrop: 1, StatBlockDst: 1, StatBlockSrc: 0, StatBlockExpired: 0},
		},
		{
			name: "block entry with zero expiry never expires", want: xdpDrop,
			setup: func(t *testing.T) {
				set(t, d, BlockDst, "203.0.113.10/32", time.Time{})
			},
			frames: [][]byte{syn4},
			stats:  map[Stat]uint64{StatDrop: 1, StatBlockDst: 1, StatBlockExpired: 0},
		},
		{
			name: "allowlist wins over an expiring block entry", want: xdpPass,
			setup: func(t *testing.T) {
				set(t, d, BlockDst, "203.0.113.0/24", time.Now().Add(time.Hour))
				set(t, d, Allow, "198.18.0.11/32", time.Time{})
			},
			frames: [][]byte{syn4},
			stats:  map[Stat]uint64{StatAllowlisted: 1, StatDrop: 0, StatBlockExpired: 0, StatPass: 1},
			check: func(t *testing.T, ev collected) {
				if e, err := d.Lists().Get(Allow, netip.MustParsePrefix("198.18.0.11/32")); err != nil || e.Packets != 1 {
					t.Errorf("allow entry %+v err %v, want 1 hit", e, err)
				}
			},
		},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resetFlows(t, d)
			for _, l := range []List{BlockSrc, BlockDst, Allow} {
				es, _ := d.Lists().Entries(l)
				for _, e := range es {
					d.Lists().Remove(l, e.Prefix)
				}
			}
			drain(t, r)
			if tc.setup != nil {
				tc.setup(t)
			}
			before := stats(t, d)
			for i, f := range tc.frames {
				if got := run(t, d, f); got != tc.want {
					t.Fatalf("frame %d: verdict %d, want %d", i, got, tc.want)
				}
			}
			after := stats(t, d)
			for s, want := range tc.stats {
				if got := after.Total[s] - before.Total[s]; got != want {
					t.Errorf("%s: +%d, want +%d", s.Name(), got, want)
				}
			}
			ev := drain(t, r)
			if tc.check != nil {
				tc.check(t, ev)
			}
		})
	}
}

// TestTCPConversation checks exact per-direction accounting and the final
// record of a normally closed TCP connection, in both orientations of the
// canonical key (client address below and above the server's).
func TestTCPConversation(t *testing.T) {
	d := loadTestDataplane(t, Options{})
	r, err := d.NewReader()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	for _, pair := range [][2]netip.Addr{{client4, server4}, {server4, client4}, {client6, server6}} {
		c, s := pair[0], pair[1]
		t.Run(c.String()+"->"+s.String(), func(t *testing.T) {
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
			var want [2]uint64
			var wantBytes [2]uint64
			for i, sg := range segs {
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
				if v := run(t, d, f); v != xdpPass {
					t.Fatalf("segment %d: verdict %d", i, v)
				}
			}
			ev := drain(t, r)
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
			if f.FirstFlags != event.TCPSyn || f.TCPFlags[0] != event.TCPSyn|event.TCPAck|event.TCPPsh|event.TCPFin ||
				f.TCPFlags[1] != event.TCPSyn|event.TCPAck|event.TCPPsh|event.TCPFin {
				t.Errorf("flags first %#x orig %#x resp %#x", f.FirstFlags, f.TCPFlags[0], f.TCPFlags[1])
			}
			if n := len(flowEntries(t, d)); n != 0 {
				t.Errorf("%d flow entries left after close, want 0", n)
			}
		})
	}
}

// TestSweepAndTimeouts covers the idle sweep, the interim record of a long
// flow and the sweeper's retry of a closed flow.
func TestSweepAndTimeouts(t *testing.T) {
	d := loadTestDataplane(t, Options{IdleTimeout: time.Second, ActiveTimeout: time.Second, CloseTimeout: time.Second})
	r, err := d.NewReader()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	u := udpFrame(t, client4, server4, 41000, 9999, []byte("a"))
	back := udpFrame(t, server4, client4, 9999, 41000, []byte("bb"))
	run(t, d, u)
	if ss, err := d.Sweep(); err != nil || ss.Live != 1 || ss.Expired != 0 {
		t.Fatalf("sweep right away: %+v %v, want live 1 expired 0", ss, err)
	}
	time.Sleep(1100 * time.Millisecond)
	run(t, d, back) // past the active timeout: interim record
	ev := drain(t, r)
	if len(ev.flows) != 1 || ev.flows[0].Reason != event.ReasonActive || ev.flows[0].Final || ev.flows[0].Packets != [2]uint64{1, 1} {
		t.Fatalf("want one interim record with [1 1] packets, got %+v", ev.flows)
	}
	time.Sleep(1100 * time.Millisecond)
	ss, err := d.Sweep()
	if err != nil || ss.Expired != 1 {
		t.Fatalf("sweep after idle: %+v %v, want 1 expired", ss, err)
	}
	ev = drain(t, r)
	if len(ev.flows) != 1 || ev.flows[0].Reason != event.ReasonIdle || !ev.flows[0].Final || ev.flows[0].Seq != 1 ||
		ev.flows[0].Packets != [2]uint64{1, 1} || ev.flows[0].Key.Src != client4 {
		t.Fatalf("want final idle record seq 1, got %+v", ev.flows)
	}
	if n := len(flowEntries(t, d)); n != 0 {
		t.Fatalf("%d entries after idle sweep", n)
	}
	if st := stats(t, d); st.FlowEvictions != 0 {
		t.Errorf("evictions %d, want 0", st.FlowEvictions)
	}
}

// TestRingFullIsCounted fills a one-page ring: every snippet is either
// delivered or counted as lost, and final records that did not fit are kept
// for the sweeper instead of being dropped.
func TestRingFullIsCounted(t *testing.T) {
	d := loadTestDataplane(t, Options{RingBytes: 4096, CloseTimeout: time.Second, IdleTimeout: time.Second})
	r, err := d.NewReader()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	q := dnsQuery(t, 1, "a-rather-long-name-to-fill-the-ring.example.com")
	const n = 200
	for i := 0; i < n; i++ {
		run(t, d, udpFrame(t, client4, netip.MustParseAddr("198.18.0.53"), uint16(30000+i), 53, q))
	}
	st := stats(t, d)
	ev := drain(t, r)
	if st.Total[StatEvSnippetFail] == 0 {
		t.Fatalf("a 4 KiB ring took %d snippets without a failure", n)
	}
	if got := uint64(len(ev.snippets)) + st.Total[StatEvSnippetFail]; got != n {
		t.Errorf("delivered %d + lost %d = %d, want %d", len(ev.snippets), st.Total[StatEvSnippetFail], got, n)
	}
	if st.Total[StatEvSnippet] != uint64(len(ev.snippets)) {
		t.Errorf("counted %d snippets written, reader got %d", st.Total[StatEvSnippet], len(ev.snippets))
	}

	// Fill the ring again, then reset 100 connections: the records that
	// do not fit stay in the table and the sweeper delivers them later.
	for i := 0; i < n; i++ {
		run(t, d, udpFrame(t, client4, netip.MustParseAddr("198.18.0.53"), uint16(30000+i), 53, q))
	}
	for i := 0; i < 100; i++ {
		run(t, d, tcpFrame(t, client4, server4, uint16(20000+i), 80, tcpSeg{flags: "S"}))
		run(t, d, tcpFrame(t, server4, client4, 80, uint16(20000+i), tcpSeg{flags: "R"}))
	}
	resets := func(c collected) int {
		n := 0
		for _, f := range c.flows {
			if f.Key.Proto == event.ProtoTCP && f.Reason == event.ReasonRST && f.Final {
				n++
			}
		}
		return n
	}
	st = stats(t, d)
	ev = drain(t, r)
	got := resets(ev)
	if st.Total[StatEvFlowFail] == 0 {
		t.Fatal("expected flow record reserve failures with a full ring")
	}
	time.Sleep(1100 * time.Millisecond)
	for i := 0; i < 20 && got < 100; i++ {
		if _, err := d.Sweep(); err != nil {
			t.Fatal(err)
		}
		got += resets(drain(t, r))
	}
	if got != 100 {
		t.Errorf("got %d reset records in all, want 100 (none lost)", got)
	}
}

// TestEvictionsAreCounted overfills a small flow table.
func TestEvictionsAreCounted(t *testing.T) {
	d := loadTestDataplane(t, Options{FlowTableSize: 1024})
	const n = 5000
	for i := 0; i < n; i++ {
		run(t, d, udpFrame(t, client4, server4, uint16(10000+i), 7, nil))
	}
	ss, err := d.Sweep()
	if err != nil {
		t.Fatal(err)
	}
	st := stats(t, d)
	if st.Total[StatFlowNew] != n {
		t.Fatalf("created %d flows, want %d", st.Total[StatFlowNew], n)
	}
	if ss.Live > 1024 || st.FlowEvictions != n-ss.Live {
		t.Errorf("live %d evicted %d, want evicted = %d - live", ss.Live, st.FlowEvictions, n)
	}
}

// TestFlowSampling: with 1-in-2^31 sampling a flow is almost surely not
// tracked, and that is counted.
func TestFlowSampling(t *testing.T) {
	d := loadTestDataplane(t, Options{FlowSample: 1 << 31})
	run(t, d, udpFrame(t, client4, server4, 12345, 7, nil))
	st := stats(t, d)
	if st.Total[StatFlowSampledOut]+st.Total[StatFlowNew] != 1 || st.Total[StatPass] != 1 {
		t.Fatalf("sampled out %d new %d pass %d", st.Total[StatFlowSampledOut], st.Total[StatFlowNew], st.Total[StatPass])
	}
}

// TestLoadVariants loads the program with extreme knob values: the
// verifier must accept every configuration the config validator allows.
func TestLoadVariants(t *testing.T) {
	for _, o := range []Options{
		{SnippetLen: 64},
		{SnippetLen: MaxSnippetLen},
		{FlowSample: 7, FlowTableSize: 1024, RingBytes: 4096},
		{IdleTimeout: time.Hour, ActiveTimeout: 24 * time.Hour, CloseTimeout: time.Minute},
	} {
		d := loadTestDataplane(t, o)
		d.Close()
	}
}

func TestStatNames(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < NumStats; i++ {
		d, ok := statDescs[Stat(i)]
		if !ok || d.help == "" {
			t.Errorf("stat %d has no name/help", i)
		}
		if seen[d.name] {
			t.Errorf("duplicate stat name %q", d.name)
		}
		seen[d.name] = true
	}
}

func TestOptionsValidate(t *testing.T) {
	bad := []Options{
		{FlowTableSize: 10},
		{RingBytes: 5000},
		{SnippetLen: 8},
		{SnippetLen: MaxSnippetLen + 1},
		{IdleTimeout: time.Millisecond},
		{CloseTimeout: time.Hour},
	}
	for _, o := range bad {
		if err := o.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", o)
		}
	}
	if err := (Options{}).Validate(); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
}
