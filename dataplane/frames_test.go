package dataplane

import (
	"crypto/tls"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/wardline/wardline/dataplane/event"
)

// Test helpers shared by the packet-table tests and benchmarks: crafted
// frames (gopacket) and a loaded dataplane without pins.

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}

	client4 = netip.MustParseAddr("198.18.0.11")
	server4 = netip.MustParseAddr("203.0.113.10")
	client6 = netip.MustParseAddr("2001:db8:18::11")
	server6 = netip.MustParseAddr("2001:db8:113::10")
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("loading BPF programs needs root, and CI must not skip them")
		}
		t.Skip("skipping: loading BPF programs needs root (CI runs as root)")
	}
}

func loadTestDataplane(t testing.TB, opts Options) *Dataplane {
	t.Helper()
	requireRoot(t)
	d, err := Load(opts)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

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

// dnsQuery returns a real DNS query message for name.
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
	n := int(hdr[3])<<8 | int(hdr[4])
	body := make([]byte, n)
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

// run executes the XDP program once on frame and returns the verdict.
func run(t testing.TB, d *Dataplane, frame []byte) uint32 {
	t.Helper()
	ret, err := d.XDPProgram().Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		t.Fatalf("prog.Run: %v", err)
	}
	return ret
}

// collected holds copies of events read from the ring.
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

// drain reads every event currently in the ring.
func drain(t testing.TB, r *Reader) collected {
	t.Helper()
	var c collected
	if err := r.Drain(&c); err != nil {
		t.Fatalf("read ring: %v", err)
	}
	if st := r.Stats(); st.Malformed != 0 {
		t.Fatalf("reader saw %d malformed records: %s", st.Malformed, st.LastError)
	}
	return c
}

func stats(t testing.TB, d *Dataplane) Stats {
	t.Helper()
	s, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func unsafeBytes(u []uint64) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(&u[0])), len(u)*8)
}
