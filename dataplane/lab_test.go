package dataplane

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/wardline/wardline/dataplane/event"
	"github.com/wardline/wardline/lab"
)

// Root integration tests: a real lab (office, box, router, internet in
// network namespaces), wl_xdp attached to both bridge ports in generic and
// native mode, real traffic from real tools, and the events compared with
// what independent packet captures saw on the wire into the box.

func TestMain(m *testing.M) {
	lab.RunServiceIfRequested()
	os.Exit(m.Run())
}

// liveEvents collects copies of every event the reader delivers.
type liveEvents struct {
	mu       sync.Mutex
	flows    []event.Flow
	snippets []event.Snippet
}

func (l *liveEvents) HandleFlow(f *event.Flow) {
	l.mu.Lock()
	l.flows = append(l.flows, *f)
	l.mu.Unlock()
}

func (l *liveEvents) HandleSnippet(s *event.Snippet) {
	c := *s
	c.Data = append([]byte(nil), s.Data...)
	l.mu.Lock()
	l.snippets = append(l.snippets, c)
	l.mu.Unlock()
}

// waitFlow waits for a flow record matching pred.
func (l *liveEvents) waitFlow(t *testing.T, what string, timeout time.Duration, pred func(*event.Flow) bool) event.Flow {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		l.mu.Lock()
		for i := range l.flows {
			if pred(&l.flows[i]) {
				f := l.flows[i]
				l.mu.Unlock()
				return f
			}
		}
		n := len(l.flows)
		l.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no flow record for %s within %v (%d records seen)", what, timeout, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (l *liveEvents) snippetsWhere(pred func(*event.Snippet) bool) []event.Snippet {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []event.Snippet
	for _, s := range l.snippets {
		if pred(&s) {
			out = append(out, s)
		}
	}
	return out
}

// capture is a tcpdump on one interface, egress only: on the far end of a
// box port, that is exactly the traffic entering the port.
type capture struct {
	cmd    *exec.Cmd
	file   string
	stderr *bytes.Buffer
}

// startCapture starts tcpdump; snap bounds the bytes kept per frame (the
// original length is always recorded).
func startCapture(t *testing.T, ns, iface, filter string, snap int) *capture {
	t.Helper()
	file := filepath.Join(t.TempDir(), ns+"-"+iface+".pcap")
	c := &capture{file: file, stderr: &bytes.Buffer{}}
	c.cmd = exec.Command("ip", "netns", "exec", ns, "tcpdump", "--immediate-mode", "-i", iface, "-Q", "out", "-U", "-s", fmt.Sprint(snap), "-B", "65536", "-w", file, filter)
	c.cmd.Stderr = c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start tcpdump in %s: %v", ns, err)
	}
	t.Cleanup(func() { c.cmd.Process.Kill(); c.cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(c.stderr.String(), "listening on") {
		if time.Now().After(deadline) {
			t.Fatalf("tcpdump in %s did not start: %s", ns, c.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return c
}

// wirePacket is one captured frame.
type wirePacket struct {
	src, dst     netip.Addr
	sport, dport uint16
	length       int // original frame length
	payload      []byte
	seq          uint32
}

func (c *capture) stop(t *testing.T) []wirePacket {
	t.Helper()
	// Let the last frames reach the file; SIGINT stops tcpdump at once.
	time.Sleep(300 * time.Millisecond)
	c.cmd.Process.Signal(syscall.SIGINT)
	c.cmd.Wait()
	if s := c.stderr.String(); !regexp.MustCompile(`(?m)^\s*0 packets dropped by kernel`).MatchString(s) {
		t.Fatalf("tcpdump lost packets, counts would be wrong: %s", s)
	}
	f, err := os.Open(c.file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatalf("read %s: %v", c.file, err)
	}
	var out []wirePacket
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		var w wirePacket
		w.length = ci.Length
		if ip, ok := p.NetworkLayer().(*layers.IPv4); ok {
			w.src, _ = netip.AddrFromSlice(ip.SrcIP.To4())
			w.dst, _ = netip.AddrFromSlice(ip.DstIP.To4())
		} else if ip, ok := p.NetworkLayer().(*layers.IPv6); ok {
			w.src, _ = netip.AddrFromSlice(ip.SrcIP)
			w.dst, _ = netip.AddrFromSlice(ip.DstIP)
		}
		if tcp, ok := p.TransportLayer().(*layers.TCP); ok {
			w.sport, w.dport, w.seq, w.payload = uint16(tcp.SrcPort), uint16(tcp.DstPort), tcp.Seq, tcp.Payload
		}
		out = append(out, w)
	}
	return out
}

// fastPath loads wl_xdp, attaches it to both box ports in mode and reads its
// events until the test ends.
func fastPath(t *testing.T, l *lab.Lab, mode Mode) (*Dataplane, *liveEvents) {
	t.Helper()
	d := loadTestDataplane(t, Options{IdleTimeout: 2 * time.Second, CloseTimeout: time.Second})
	err := l.Box.Do(func() error {
		for _, p := range []struct {
			n string
			r PortRole
		}{{l.Box.Inside, RoleInside}, {l.Box.Outside, RoleOutside}} {
			a, err := d.Attach(p.n, p.r, mode)
			if err != nil {
				return err
			}
			if got, err := AttachedMode(a.Ifindex); err != nil || got != mode {
				return fmt.Errorf("%s: kernel reports mode %q (%v), want %s", p.n, got, err, mode)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := d.NewReader()
	if err != nil {
		t.Fatal(err)
	}
	ev := &liveEvents{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ev) }()
	go d.RunSweeper(ctx, 200*time.Millisecond, func(err error) { t.Errorf("sweep: %v", err) })
	t.Cleanup(func() {
		cancel()
		r.Close()
		<-done
		if st := r.Stats(); st.Malformed != 0 {
			t.Errorf("reader saw %d malformed records: %s", st.Malformed, st.LastError)
		}
	})
	return d, ev
}

func TestLabTrafficThroughBridge(t *testing.T) {
	for _, mode := range []Mode{ModeGeneric, ModeNative} {
		t.Run(string(mode), func(t *testing.T) {
			requireRoot(t)
			l := lab.ForTest(t, lab.Config{})
			d, ev := fastPath(t, l, mode)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			t.Run("tcp transfer counts match the wire", func(t *testing.T) { testTCPTransfer(ctx, t, l, ev) })
			t.Run("udp exchange counts are exact", func(t *testing.T) { testUDPExchange(t, l, ev) })
			t.Run("dns messages arrive as snippets", func(t *testing.T) { testDNS(ctx, t, l, ev) })
			t.Run("tls clienthello arrives as snippets", func(t *testing.T) { testTLS(ctx, t, l, ev) })
			t.Run("blocklisted source is dropped, others pass", func(t *testing.T) { testBlocklist(ctx, t, l, d) })
			st, err := d.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if n := st.Total[StatEvFlowFail] + st.Total[StatEvSnippetFail] + st.FlowEvictions; n != 0 {
				t.Errorf("%d events lost (ring full or evicted) in a quiet lab", n)
			}
			if st.Total[StatUnknownPort] != 0 {
				t.Errorf("%d packets on unregistered ports", st.Total[StatUnknownPort])
			}
		})
	}
}

// sumWire adds up the captured packets of one TCP connection from src.
func sumWire(pkts []wirePacket, src netip.Addr, sport uint16) (n, bytes uint64) {
	for _, p := range pkts {
		if p.src == src && p.sport == sport {
			n++
			bytes += uint64(p.length)
		}
	}
	return n, bytes
}

func testTCPTransfer(ctx context.Context, t *testing.T, l *lab.Lab, ev *liveEvents) {
	c1, web := l.Host("client1"), l.Host("web")
	filter := fmt.Sprintf("tcp and host %s and host %s and port 80", c1.IPv4, web.IPv4)
	in := startCapture(t, l.Box.InsidePeer.NS, l.Box.InsidePeer.Iface, filter, 128)
	out := startCapture(t, l.Box.OutsidePeer.NS, l.Box.OutsidePeer.Iface, filter, 128)
	const size = 3_000_000
	// Rate-limited so that tcpdump keeps up in native mode, where every
	// MTU-sized segment is a frame of its own.
	got, err := c1.Run(ctx, "curl", "-sS", "--limit-rate", "30M", "-o", "/dev/null", "-w", "%{size_download} %{local_port}", fmt.Sprintf("http://%s/bytes?n=%d", web.IPv4, size))
	if err != nil {
		t.Fatal(err)
	}
	var dl int
	var port uint16
	if _, err := fmt.Sscanf(got, "%d %d", &dl, &port); err != nil || dl != size {
		t.Fatalf("curl: %q", got)
	}
	f := ev.waitFlow(t, "the curl connection", 10*time.Second, func(f *event.Flow) bool {
		return f.Final && f.Key.Src == c1.IPv4 && f.Key.SrcPort == port && f.Key.Dst == web.IPv4
	})
	toServer := in.stop(t)
	toClient := out.stop(t)
	wantN0, wantB0 := sumWire(toServer, c1.IPv4, port)
	wantN1, wantB1 := sumWire(toClient, web.IPv4, 80)
	if f.Reason != event.ReasonFIN {
		t.Errorf("reason %v, want fin", f.Reason)
	}
	if f.Packets != [2]uint64{wantN0, wantN1} || f.Bytes != [2]uint64{wantB0, wantB1} {
		t.Errorf("flow record packets %v bytes %v; the wire into the box carried packets [%d %d] bytes [%d %d]",
			f.Packets, f.Bytes, wantN0, wantN1, wantB0, wantB1)
	}
	if f.Bytes[1] < size {
		t.Errorf("server->client %d bytes, less than the %d bytes downloaded", f.Bytes[1], size)
	}
	if f.TCPFlags[0]&(event.TCPSyn|event.TCPFin) != event.TCPSyn|event.TCPFin || f.FirstFlags != event.TCPSyn {
		t.Errorf("flags first %#x orig %#x", f.FirstFlags, f.TCPFlags[0])
	}
	t.Logf("tcp %v: %d/%d packets, %d/%d bytes (GSO super-packets count once)", f.Key, f.Packets[0], f.Packets[1], f.Bytes[0], f.Bytes[1])
}

// inNS runs fn with a UDP socket connected from the host's namespace.
func udpIn(t *testing.T, h *lab.Host, network, raddr string, fn func(c *net.UDPConn) error) {
	t.Helper()
	err := h.Do(func() error {
		c, err := net.Dial(network, raddr)
		if err != nil {
			return err
		}
		defer c.Close()
		return fn(c.(*net.UDPConn))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testUDPExchange(t *testing.T, l *lab.Lab, ev *liveEvents) {
	c1, web := l.Host("client1"), l.Host("web")
	for _, v := range []struct {
		network string
		src     netip.Addr
		dst     netip.Addr
		hdr     int // Ethernet + IP + UDP header bytes
	}{{"udp4", c1.IPv4, web.IPv4, 14 + 20 + 8}, {"udp6", c1.IPv6, web.IPv6, 14 + 40 + 8}} {
		sizes := []int{1, 100, 512, 1200, 1400}
		var lport uint16
		udpIn(t, c1, v.network, netip.AddrPortFrom(v.dst, 7).String(), func(c *net.UDPConn) error {
			lport = uint16(c.LocalAddr().(*net.UDPAddr).Port)
			buf := make([]byte, 2048)
			for _, n := range sizes {
				if _, err := c.Write(bytes.Repeat([]byte{'u'}, n)); err != nil {
					return err
				}
				c.SetReadDeadline(time.Now().Add(3 * time.Second))
				m, err := c.Read(buf)
				if err != nil {
					return fmt.Errorf("echo of %d bytes: %w", n, err)
				}
				if m != n {
					return fmt.Errorf("echo returned %d bytes, sent %d", m, n)
				}
			}
			return nil
		})
		var wantBytes uint64
		for _, n := range sizes {
			wantBytes += uint64(v.hdr + n) // veth does not pad short frames
		}
		f := ev.waitFlow(t, v.network+" echo", 10*time.Second, func(f *event.Flow) bool {
			return f.Final && f.Key.Src == v.src && f.Key.SrcPort == lport && f.Key.Dst == v.dst && f.Key.DstPort == 7
		})
		n := uint64(len(sizes))
		if f.Reason != event.ReasonIdle || f.Packets != [2]uint64{n, n} || f.Bytes != [2]uint64{wantBytes, wantBytes} {
			t.Errorf("%s: record %v packets %v bytes %v, want idle [%d %d] [%d %d]", v.network, f.Reason, f.Packets, f.Bytes, n, n, wantBytes, wantBytes)
		}
	}
}

func testDNS(ctx context.Context, t *testing.T, l *lab.Lab, ev *liveEvents) {
	c1, dnsHost := l.Host("client1"), l.Host("dns")
	// A client query straight to the internet DNS server: the exact bytes
	// of query and answer must arrive as snippets.
	q := dnsQuery(t, 0x4242, lab.WebName)
	var answer []byte
	var lport uint16
	udpIn(t, c1, "udp4", netip.AddrPortFrom(dnsHost.IPv4, 53).String(), func(c *net.UDPConn) error {
		lport = uint16(c.LocalAddr().(*net.UDPAddr).Port)
		if _, err := c.Write(q); err != nil {
			return err
		}
		buf := make([]byte, 4096)
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, err := c.Read(buf)
		answer = buf[:n]
		return err
	})
	match := func(dir event.Dir) []event.Snippet {
		return ev.snippetsWhere(func(s *event.Snippet) bool {
			return s.Kind == event.SnippetDNS && s.Dir == dir &&
				((dir == event.DirOrig && s.Key.SrcPort == lport) || (dir == event.DirResp && s.Key.DstPort == lport))
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for (len(match(event.DirOrig)) == 0 || len(match(event.DirResp)) == 0) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	qs, as := match(event.DirOrig), match(event.DirResp)
	if len(qs) != 1 || !bytes.Equal(qs[0].Data, q) || qs[0].Key.Src != c1.IPv4 {
		t.Errorf("query snippets %+v, want one with %x", qs, q)
	}
	if len(as) != 1 || !bytes.Equal(as[0].Data, answer) || as[0].Key.Src != dnsHost.IPv4 {
		t.Errorf("answer snippets %+v, want one with %x", as, answer)
	}

	// dig through the office resolver: the resolver's forwarded query
	// crosses the box and carries the name.
	if out, err := c1.Run(ctx, "dig", "+short", "+tries=1", "@"+l.Resolver.String(), lab.MirrorName); err != nil || !strings.Contains(out, "192.0.2.10") {
		t.Fatalf("dig: %q %v", out, err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		fwd := ev.snippetsWhere(func(s *event.Snippet) bool {
			return s.Kind == event.SnippetDNS && s.Key.Src == l.Resolver && bytes.Contains(s.Data, []byte("\x06mirror\x07example\x03org"))
		})
		if len(fwd) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no snippet of the resolver's query for mirror.example.org")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testTLS(ctx context.Context, t *testing.T, l *lab.Lab, ev *liveEvents) {
	c1, web := l.Host("client1"), l.Host("web")
	for _, tool := range [][]string{
		{"openssl", "s_client", "-connect", web.IPv4.String() + ":443", "-servername", lab.WebName},
		{"curl", "-sSk", "-o", "/dev/null", "--resolve", lab.WebName + ":443:" + web.IPv4.String(), "https://" + lab.WebName + "/"},
	} {
		capt := startCapture(t, l.Box.InsidePeer.NS, l.Box.InsidePeer.Iface, fmt.Sprintf("tcp and src %s and dst port 443", c1.IPv4), 0)
		cmd := c1.Command(ctx, tool[0], tool[1:]...)
		cmd.Stdin = strings.NewReader("")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", tool[0], err, out)
		}
		time.Sleep(200 * time.Millisecond)
		wire := capt.stop(t)
		// The ClientHello as it crossed the wire: the client's payload
		// from its first data segment on, in sequence order.
		var sport uint16
		var first uint32
		var hello []byte
		sort.SliceStable(wire, func(i, j int) bool { return wire[i].seq < wire[j].seq })
		for _, p := range wire {
			if len(p.payload) == 0 {
				continue
			}
			if sport == 0 {
				sport, first = p.sport, p.seq
			}
			if p.sport == sport && int(p.seq-first) == len(hello) {
				hello = append(hello, p.payload...)
			}
		}
		if len(hello) < 6 || hello[0] != 0x16 || hello[5] != 0x01 {
			t.Fatalf("%s: no ClientHello on the wire (%d bytes)", tool[0], len(hello))
		}
		recLen := 5 + int(hello[3])<<8 | int(hello[4])
		hello = hello[:min(recLen, len(hello), DefaultSnippetLen)]
		var got []byte
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			snips := ev.snippetsWhere(func(s *event.Snippet) bool {
				return s.Kind == event.SnippetTLS && s.Key.SrcPort == sport && s.Key.Src == c1.IPv4
			})
			got = got[:0]
			sort.Slice(snips, func(i, j int) bool { return snips[i].Offset < snips[j].Offset })
			for _, s := range snips {
				if int(s.Offset) == len(got) {
					got = append(got, s.Data...)
				}
			}
			if len(got) >= len(hello) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !bytes.Equal(got[:min(len(got), len(hello))], hello) || len(got) < len(hello) {
			t.Errorf("%s: snippets hold %d bytes of the %d-byte ClientHello, or differ", tool[0], len(got), len(hello))
		}
		if !bytes.Contains(got, []byte(lab.WebName)) {
			t.Errorf("%s: SNI %s not in the ClientHello snippets", tool[0], lab.WebName)
		}
	}
}

func testBlocklist(ctx context.Context, t *testing.T, l *lab.Lab, d *Dataplane) {
	c1, c2, web, c2host := l.Host("client1"), l.Host("client2"), l.Host("web"), l.Host("c2")
	before, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	blockSrc := netip.PrefixFrom(c2.IPv4, 32)
	blockDst := netip.PrefixFrom(c2host.IPv6, 128)
	if err := d.Lists().Add(BlockSrc, blockSrc); err != nil {
		t.Fatal(err)
	}
	if err := d.Lists().Add(BlockDst, blockDst); err != nil {
		t.Fatal(err)
	}
	defer d.Lists().Remove(BlockSrc, blockSrc)
	defer d.Lists().Remove(BlockDst, blockDst)

	if _, err := c2.Run(ctx, "ping", "-c", "3", "-i", "0.2", "-W", "1", web.IPv4.String()); err == nil {
		t.Error("blocklisted client2 can still ping web")
	}
	if _, err := c1.Run(ctx, "ping", "-c", "3", "-i", "0.2", "-W", "1", web.IPv4.String()); err != nil {
		t.Errorf("client1 cannot ping web: %v", err)
	}
	if _, err := c1.Run(ctx, "ping", "-6", "-c", "2", "-i", "0.2", "-W", "1", c2host.IPv6.String()); err == nil {
		t.Error("client1 can still ping the blocklisted IPv6 destination")
	}
	if _, err := c1.Run(ctx, "ping", "-6", "-c", "2", "-i", "0.2", "-W", "1", web.IPv6.String()); err != nil {
		t.Errorf("client1 cannot ping web over IPv6: %v", err)
	}
	after, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	src, err := d.Lists().Get(BlockSrc, blockSrc)
	if err != nil || src.Packets < 3 {
		t.Errorf("block-src entry %+v (%v): want >= 3 hits", src, err)
	}
	dst, err := d.Lists().Get(BlockDst, blockDst)
	if err != nil || dst.Packets < 2 {
		t.Errorf("block-dst entry %+v (%v): want >= 2 hits", dst, err)
	}
	if drops := after.Total[StatDrop] - before.Total[StatDrop]; drops != src.Packets+dst.Packets {
		t.Errorf("drop counter moved by %d, entries counted %d + %d", drops, src.Packets, dst.Packets)
	}
}
