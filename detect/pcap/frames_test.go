package pcap

import (
	"crypto/tls"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/wardline/wardline/dataplane/event"
)

// Test helpers: the same crafted frames as dataplane/frames_test.go (that
// file's helpers, ported to this package), a collecting handler, and the
// corpus location.

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}

	client4 = netip.MustParseAddr("198.18.0.11")
	server4 = netip.MustParseAddr("203.0.113.10")
	client6 = netip.MustParseAddr("2001:db8:18::11")
	server6 = netip.MustParseAddr("2001:db8:113::10")
)

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func eth(t layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: t}
}

func ip4(src, dst netip.Addr, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
}

func ip6(src, dst netip.Addr, next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
}

// tcpSeg describes one TCP segment of a test conversation.
type tcpSeg struct {
	fromClient bool
	flags      string // any of "SAFRP"
	seq        uint32
	payload    []byte
}

func tcpFrame(t testing.TB, src, dst netip.Addr, sport, dport uint16, s tcpSeg) []byte {
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: s.seq, Window: 64240}
	for _, c := range s.flags {
		switch c {
		case 'S':
			tcp.SYN = true
		case 'A':
			tcp.ACK = true
		case 'F':
			tcp.FIN = true
		case 'R':
			tcp.RST = true
		case 'P':
			tcp.PSH = true
		}
	}
	pl := gopacket.Payload(s.payload)
	if src.Is4() {
		ip := ip4(src, dst, layers.IPProtocolTCP)
		tcp.SetNetworkLayerForChecksum(ip)
		return serialize(t, eth(layers.EthernetTypeIPv4), ip, tcp, pl)
	}
	ip := ip6(src, dst, layers.IPProtocolTCP)
	tcp.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth(layers.EthernetTypeIPv6), ip, tcp, pl)
}

func udpFrame(t testing.TB, src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	if src.Is4() {
		ip := ip4(src, dst, layers.IPProtocolUDP)
		udp.SetNetworkLayerForChecksum(ip)
		return serialize(t, eth(layers.EthernetTypeIPv4), ip, udp, gopacket.Payload(payload))
	}
	ip := ip6(src, dst, layers.IPProtocolUDP)
	udp.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth(layers.EthernetTypeIPv6), ip, udp, gopacket.Payload(payload))
}

func dnsQuery(t testing.TB, id uint16, name string) []byte {
	d := &layers.DNS{ID: id, RD: true, QDCount: 1, Questions: []layers.DNSQuestion{{Name: []byte(name), Type: layers.DNSTypeA, Class: layers.DNSClassIN}}}
	return serialize(t, d)
}

// clientHello returns the first TLS record a real crypto/tls client sends.
func clientHello(t testing.TB, serverName string) []byte {
	t.Helper()
	c, s := net.Pipe()
	defer c.Close()
	defer s.Close()
	go func() {
		tc := tls.Client(c, &tls.Config{ServerName: serverName, NextProtos: []string{"h2", "http/1.1"}})
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		_ = tc.Handshake() // fails when s closes; we only want the hello
	}()
	s.SetDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := readFull(s, hdr); err != nil {
		t.Fatalf("read ClientHello header: %v", err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := readFull(s, body); err != nil {
		t.Fatalf("read ClientHello body: %v", err)
	}
	return append(hdr, body...)
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func vlanFrame(tags []uint16, tpids []layers.EthernetType, inner []byte) []byte {
	out := append([]byte{}, inner[:12]...)
	for i, tag := range tags {
		var b [4]byte
		binary.BigEndian.PutUint16(b[:2], uint16(tpids[i]))
		binary.BigEndian.PutUint16(b[2:], tag)
		out = append(out, b[:]...)
	}
	return append(out, inner[12:]...)
}

func ipv6ExtFrame(t testing.TB, nExt int, payload []byte) []byte {
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
		ext = append(ext, next, 0, 1, 4, 0, 0, 0, 0)
	}
	ip.Length = 0
	body := append(ext, udpBytes...)
	return serialize(t, eth(layers.EthernetTypeIPv6), ip, gopacket.Payload(body))
}

// collected holds copies of delivered events.
type collected struct {
	flows    []event.Flow
	snippets []event.Snippet
}

func (c *collected) HandleFlow(f *event.Flow) { c.flows = append(c.flows, *f) }
func (c *collected) HandleSnippet(s *event.Snippet) {
	cp := *s
	cp.Data = append([]byte(nil), s.Data...)
	c.snippets = append(c.snippets, cp)
}

func (c *collected) reset() { c.flows, c.snippets = nil, nil }

// t0 is the test clock's start.
var t0 = time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC)

// feed gives frames (Ethernet) to tr at t0 + at, one millisecond apart.
func feed(tr *Tracker, at time.Duration, frames ...[]byte) {
	for i, f := range frames {
		tr.Packet(&Packet{Time: t0.Add(at + time.Duration(i)*time.Millisecond), Data: f, Length: len(f), LinkType: layers.LinkTypeEthernet})
	}
}

func newTracker(t testing.TB, opts Options, h event.Handler) *Tracker {
	t.Helper()
	tr, err := NewTracker(opts, h)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// statDelta returns after.name - before.name for a Stats field.
func statDelta(before, after Stats, name string) uint64 {
	b := reflect.ValueOf(before).FieldByName(name)
	a := reflect.ValueOf(after).FieldByName(name)
	if !a.IsValid() {
		panic("no Stats field " + name)
	}
	return a.Uint() - b.Uint()
}

// entry is a table entry as the tests see it: key oriented by the
// originator.
type entry struct {
	key   event.FlowKey
	f     flow
	state uint32
}

// entries returns the flow table.
func entries(tr *Tracker) []entry {
	var out []entry
	for i := tr.lru.head; i != none; i = tr.tab.at(i).lru.next {
		f := *tr.tab.at(i)
		k := f.key
		if !f.loIsOrig {
			flip(&k, &f.key)
		}
		var ek event.FlowKey
		eventKey(&ek, &k)
		out = append(out, entry{key: ek, f: f, state: f.state})
	}
	return out
}

func onlyEntry(t *testing.T, tr *Tracker) entry {
	t.Helper()
	es := entries(tr)
	if len(es) != 1 {
		t.Fatalf("flow table has %d entries, want 1: %+v", len(es), es)
	}
	return es[0]
}

// corpusDir finds the shared evaluation corpus: $WARDLINE_CORPUS,
// /work/shared/corpus or ../../../shared/corpus from this directory.
func corpusDir(t testing.TB) string {
	t.Helper()
	var cands []string
	if d := os.Getenv("WARDLINE_CORPUS"); d != "" {
		cands = append(cands, d)
	}
	cands = append(cands, "../../../shared/corpus", "/work/shared/corpus")
	for _, d := range cands {
		if fi, err := os.Stat(filepath.Join(d, "generated")); err == nil && fi.IsDir() {
			return d
		}
	}
	t.Skipf("skipping: the evaluation corpus is not here (looked for %v; set WARDLINE_CORPUS to its directory)", cands)
	return ""
}
