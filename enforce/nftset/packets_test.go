package nftset

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/wardline/wardline/enforce"
)

// wire is three namespaces: src ─ veth ─ [box: br0] ─ veth ─ dst, with
// every src and dst address on one link (198.18.0.0/15, 2001:db8::/32).
type wire struct {
	src, box, dst netns.NsHandle
}

func newWire(t *testing.T) *wire {
	t.Helper()
	id := testID(t)
	w := &wire{src: newNetns(t, id+"-src"), box: newNetns(t, id+"-box"), dst: newNetns(t, id+"-dst")}
	h, err := netlink.NewHandleAt(w.box)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	check := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	check("add br0", h.LinkAdd(br))
	for port, peerNS := range map[string]netns.NsHandle{"p0": w.src, "p1": w.dst} {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: port}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(peerNS))}
		check("add veth "+port, h.LinkAdd(v))
		l, err := h.LinkByName(port)
		check("find "+port, err)
		check("enslave "+port, h.LinkSetMaster(l, br))
		check("up "+port, h.LinkSetUp(l))
	}
	check("up br0", h.LinkSetUp(br))
	// Bridged frames go only through the bridge family's hooks, as on
	// the appliance (appliance/bridge turns these off too).
	check("box sysctls", inNetns(w.box, func() error {
		for _, s := range []string{"bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables"} {
			err := os.WriteFile("/proc/sys/net/bridge/"+s, []byte("0"), 0o644)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		return nil
	}))
	hosts := map[netns.NsHandle][]string{
		w.src: {"198.18.7.9/15", "198.18.7.200/15", "198.18.8.1/15", "2001:db8:7::9/32", "2001:db8:8::1/32"},
		w.dst: {"198.18.9.1/15", "198.18.9.2/15", "2001:db8:9::1/32"},
	}
	for ns, addrs := range hosts {
		hh, err := netlink.NewHandleAt(ns)
		check("handle", err)
		defer hh.Close()
		l, err := hh.LinkByName("eth0")
		check("find eth0", err)
		for _, a := range addrs {
			addr, err := netlink.ParseAddr(a)
			check("parse "+a, err)
			addr.Flags = unix.IFA_F_NODAD // usable at once
			check("address "+a, hh.AddrAdd(l, addr))
		}
		check("up eth0", hh.LinkSetUp(l))
	}
	return w
}

// ping sends one ICMP echo request from the address from, in the src
// namespace, to to and reports whether the reply arrived within wait.
func (w *wire) ping(t *testing.T, from, to string, wait time.Duration) bool {
	t.Helper()
	src, dst := netip.MustParseAddr(from), netip.MustParseAddr(to)
	network, proto := "ip4:icmp", 1
	var reqType, replyType icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if src.Is6() {
		network, proto = "ip6:ipv6-icmp", 58
		reqType, replyType = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	var c *icmp.PacketConn
	if err := inNetns(w.src, func() error { // the socket belongs to src
		var err error
		c, err = icmp.ListenPacket(network, from)
		return err
	}); err != nil {
		t.Fatalf("icmp socket on %s: %v", from, err)
	}
	defer c.Close()
	id, seq := rand.IntN(1<<16), rand.IntN(1<<16)
	req := icmp.Message{Type: reqType, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("wardline nftset test")}}
	b, err := req.Marshal(nil) // the kernel fills in the ICMPv6 checksum
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		t.Fatalf("ping %s -> %s: %v", from, to, err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 1500)
	for {
		n, peer, err := c.ReadFrom(buf)
		if err != nil {
			return false // deadline: no reply
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || m.Type != replyType {
			continue
		}
		if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id && e.Seq == seq && peer.String() == dst.String() {
			return true
		}
	}
}

// expect asserts that a ping from → to passes (three tries) or is dropped.
func (w *wire) expect(t *testing.T, from, to string, pass bool) {
	t.Helper()
	if !pass {
		if w.ping(t, from, to, 500*time.Millisecond) {
			t.Errorf("ping %s -> %s passed, want it dropped", from, to)
		}
		return
	}
	for range 3 {
		if w.ping(t, from, to, time.Second) {
			return
		}
	}
	t.Errorf("ping %s -> %s dropped, want it to pass", from, to)
}

func TestPackets(t *testing.T) {
	needRoot(t)
	w := newWire(t)
	b, err := Open(Config{NetNSFd: int(w.box), Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, from := range []string{"198.18.7.9", "198.18.7.200", "198.18.8.1"} {
		w.expect(t, from, "198.18.9.1", true)
	}
	w.expect(t, "2001:db8:7::9", "2001:db8:9::1", true)
	if t.Failed() {
		t.Fatal("the wire does not forward without blocks")
	}

	// A /24 blocks every address in it, not only .0; IPv6 likewise.
	hour := time.Now().Add(time.Hour)
	src24 := el("198.18.7.0/24", enforce.Src, hour)
	src48 := el("2001:db8:7::/48", enforce.Src, hour)
	if err := b.Apply([]enforce.Element{src24, src48}, nil); err != nil {
		t.Fatal(err)
	}
	w.expect(t, "198.18.7.9", "198.18.9.1", false)
	w.expect(t, "198.18.7.200", "198.18.9.1", false)
	w.expect(t, "198.18.8.1", "198.18.9.1", true)
	w.expect(t, "2001:db8:7::9", "2001:db8:9::1", false)
	w.expect(t, "2001:db8:8::1", "2001:db8:9::1", true)

	// Every drop is counted on its element.
	cs, err := b.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c := cs[src24.Key()]; c.Packets != 2 || c.Bytes == 0 {
		t.Errorf("counter of %v: %+v, want the 2 dropped echo requests", src24, c)
	}
	if c := cs[src48.Key()]; c.Packets < 1 {
		t.Errorf("counter of %v: %+v, want the dropped echo request", src48, c)
	}

	// A destination block.
	dst32 := el("198.18.9.2/32", enforce.Dst, hour)
	if err := b.Apply([]enforce.Element{dst32}, nil); err != nil {
		t.Fatal(err)
	}
	w.expect(t, "198.18.8.1", "198.18.9.2", false)
	w.expect(t, "198.18.8.1", "198.18.9.1", true)

	// An allow entry wins over a block, and only for itself.
	if err := b.Allow([]netip.Prefix{netip.MustParsePrefix("198.18.7.9/32")}); err != nil {
		t.Fatal(err)
	}
	w.expect(t, "198.18.7.9", "198.18.9.1", true)
	w.expect(t, "198.18.7.200", "198.18.9.1", false)
	if err := b.Allow(nil); err != nil {
		t.Fatal(err)
	}
	w.expect(t, "198.18.7.9", "198.18.9.1", false)

	// Removing the blocks lets traffic through again.
	if err := b.Apply(nil, []enforce.Element{src24, dst32}); err != nil {
		t.Fatal(err)
	}
	w.expect(t, "198.18.7.200", "198.18.9.1", true)
	w.expect(t, "198.18.8.1", "198.18.9.2", true)

	// An element with a 2 s timeout drops until it expires, then not.
	exp := time.Now().Add(2 * time.Second)
	if err := b.Apply([]enforce.Element{el("198.18.8.0/24", enforce.Src, exp)}, nil); err != nil {
		t.Fatal(err)
	}
	w.expect(t, "198.18.8.1", "198.18.9.1", false)
	time.Sleep(time.Until(exp) + 100*time.Millisecond)
	w.expect(t, "198.18.8.1", "198.18.9.1", true)
	checkElements(t, b, src48)
}

// TestVLANTagged sends one 802.1Q-tagged and one untagged UDP frame from
// a blocked source into the bridge: both are dropped. The receive path
// moves a single VLAN tag into the packet's metadata before the bridge
// sees it, so meta protocol and the network header are the inner IPv4.
func TestVLANTagged(t *testing.T) {
	needRoot(t)
	w := newWire(t)
	link := func(ns netns.NsHandle) netlink.Link {
		h, err := netlink.NewHandleAt(ns)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		l, err := h.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	src, dst := link(w.src), link(w.dst)
	ethAll := int(uint16(unix.ETH_P_ALL)<<8 | uint16(unix.ETH_P_ALL)>>8) // network byte order
	var rx, tx int
	if err := inNetns(w.dst, func() error {
		var err error
		if rx, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, ethAll); err != nil {
			return err
		}
		return unix.Bind(rx, &unix.SockaddrLinklayer{Protocol: uint16(ethAll), Ifindex: dst.Attrs().Index})
	}); err != nil {
		t.Fatalf("packet socket in dst: %v", err)
	}
	defer unix.Close(rx)
	tv := unix.NsecToTimeval(int64(300 * time.Millisecond))
	if err := unix.SetsockoptTimeval(rx, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	if err := inNetns(w.src, func() error {
		var err error
		tx, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		return err
	}); err != nil {
		t.Fatalf("packet socket in src: %v", err)
	}
	defer unix.Close(tx)

	sent := 0
	// arrives sends a frame from 198.18.7.9 and reports whether dst got it.
	arrives := func(vlan bool) bool {
		sent++
		marker := fmt.Appendf(nil, "wardline nftset frame %d", sent)
		eth := &layers.Ethernet{SrcMAC: src.Attrs().HardwareAddr, DstMAC: dst.Attrs().HardwareAddr, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP,
			SrcIP: netip.MustParseAddr("198.18.7.9").AsSlice(), DstIP: netip.MustParseAddr("198.18.9.1").AsSlice()}
		udp := &layers.UDP{SrcPort: 40000, DstPort: 9}
		udp.SetNetworkLayerForChecksum(ip)
		ls := []gopacket.SerializableLayer{eth, ip, udp, gopacket.Payload(marker)}
		if vlan {
			eth.EthernetType = layers.EthernetTypeDot1Q
			ls = append([]gopacket.SerializableLayer{eth, &layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeIPv4}}, ls[1:]...)
		}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
			t.Fatal(err)
		}
		if err := unix.Sendto(tx, buf.Bytes(), 0, &unix.SockaddrLinklayer{Ifindex: src.Attrs().Index, Halen: 6}); err != nil {
			t.Fatalf("send frame: %v", err)
		}
		b := make([]byte, 2048)
		for {
			n, _, err := unix.Recvfrom(rx, b, 0)
			if err != nil {
				return false // timed out
			}
			if bytes.Contains(b[:n], marker) {
				return true
			}
		}
	}
	b, err := Open(Config{NetNSFd: int(w.box), Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if !arrives(false) || !arrives(true) {
		t.Fatal("frames do not cross the bridge without blocks")
	}
	block := el("198.18.7.0/24", enforce.Src, time.Time{})
	if err := b.Apply([]enforce.Element{block}, nil); err != nil {
		t.Fatal(err)
	}
	if arrives(false) {
		t.Error("untagged frame from a blocked source crossed the bridge")
	}
	if arrives(true) {
		t.Error("802.1Q-tagged frame from a blocked source crossed the bridge")
	}
	cs, err := b.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c := cs[block.Key()]; c.Packets != 2 {
		t.Errorf("counter of %v: %+v, want 2 packets", block, c)
	}
}
