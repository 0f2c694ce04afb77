package xdpset

import (
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/wardline/wardline/dataplane"
	"github.com/wardline/wardline/enforce"
)

const (
	xdpDrop = 1
	xdpPass = 2
)

// loadPinned loads the fast path with its maps pinned in a private bpffs,
// as the daemon does, and returns it with its pin directory.
func loadPinned(t *testing.T) (*dataplane.Dataplane, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI runs as root: loading the fast path must not be skipped")
		}
		t.Skip("skipping: loading BPF programs needs root (CI runs as root)")
	}
	bpffs := t.TempDir()
	if err := unix.Mount("bpf", bpffs, "bpf", 0, ""); err != nil {
		t.Fatalf("mount bpffs at %s: %v", bpffs, err)
	}
	t.Cleanup(func() { unix.Unmount(bpffs, unix.MNT_DETACH) })
	pin := bpffs + "/wl"
	if err := dataplane.MountBPFFS(bpffs, pin); err != nil {
		t.Fatal(err)
	}
	d, err := dataplane.Load(dataplane.Options{PinDir: pin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, pin
}

// frame is a UDP packet from src to dst.
func frame(t *testing.T, src, dst string) []byte {
	t.Helper()
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 0xa}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 0xb}}
	udp := &layers.UDP{SrcPort: 40000, DstPort: 5000}
	var ip gopacket.NetworkLayer
	if s.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip = &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: s.AsSlice(), DstIP: d.AsSlice()}
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip = &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: s.AsSlice(), DstIP: d.AsSlice()}
	}
	udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip.(gopacket.SerializableLayer), udp, gopacket.Payload("wardline"))
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func verdict(t *testing.T, d *dataplane.Dataplane, f []byte) uint32 {
	t.Helper()
	v, err := d.XDPProgram().Run(&ebpf.RunOptions{Data: f})
	if err != nil {
		t.Fatalf("prog.Run: %v", err)
	}
	return v
}

func elements(t *testing.T, b *Backend) map[enforce.Key]time.Time {
	t.Helper()
	es, err := b.Elements()
	if err != nil {
		t.Fatal(err)
	}
	out := map[enforce.Key]time.Time{}
	for _, e := range es {
		if _, dup := out[e.Key()]; dup {
			t.Errorf("element %v returned twice", e)
		}
		out[e.Key()] = e.Expires
	}
	return out
}

func near(a, b time.Time) bool {
	d := a.Sub(b)
	return d < time.Millisecond && d > -time.Millisecond
}

func el(dir enforce.Dir, p string, exp time.Time) enforce.Element {
	return enforce.Element{Prefix: netip.MustParsePrefix(p), Dir: dir, Expires: exp}
}

func TestBackend(t *testing.T) {
	d, pin := loadPinned(t)
	// The backend works on the pinned lists, as a restarted daemon or the
	// CLI would; the packets run through the loaded program.
	lists, err := dataplane.OpenLists(pin)
	if err != nil {
		t.Fatal(err)
	}
	b := New(lists)
	defer b.Close()
	if b.Name() != "xdp" {
		t.Errorf("Name() = %q, want xdp", b.Name())
	}

	now := time.Now()
	in1h, in2h := now.Add(time.Hour), now.Add(2*time.Hour)
	adds := []enforce.Element{
		el(enforce.Src, "198.51.100.0/24", in1h),
		el(enforce.Dst, "2001:db8:5::/48", in2h),
		el(enforce.Src, "203.0.113.7/32", time.Time{}),
	}
	t.Run("apply adds and elements round-trip", func(t *testing.T) {
		for range 2 { // applying twice is the same as once
			if err := b.Apply(adds, nil); err != nil {
				t.Fatal(err)
			}
			got := elements(t, b)
			if len(got) != len(adds) {
				t.Fatalf("elements %v, want %v", got, adds)
			}
			for _, a := range adds {
				exp, ok := got[a.Key()]
				if !ok || exp.IsZero() != a.Expires.IsZero() || !near(exp, a.Expires) {
					t.Errorf("%v: got expiry %v (present %v)", a, exp, ok)
				}
			}
			for k := range got { // adds' keys are 4-byte IPv4: found above only if stored so
				if k.Prefix.Addr().Is4In6() {
					t.Errorf("element %v is IPv4-mapped", k)
				}
			}
		}
	})

	f1 := frame(t, "198.51.100.9", "198.18.0.2")
	f2 := frame(t, "2001:db8:18::2", "2001:db8:5::1")
	pass := frame(t, "198.18.0.1", "198.18.0.2")
	t.Run("counters count dropped packets", func(t *testing.T) {
		for _, c := range []struct {
			f    []byte
			want uint32
		}{{f1, xdpDrop}, {f1, xdpDrop}, {f2, xdpDrop}, {pass, xdpPass}} {
			if got := verdict(t, d, c.f); got != c.want {
				t.Fatalf("verdict %d, want %d", got, c.want)
			}
		}
		cs, err := b.Counters()
		if err != nil {
			t.Fatal(err)
		}
		want := map[enforce.Key]enforce.Counters{
			adds[0].Key(): {Packets: 2, Bytes: 2 * uint64(len(f1))},
			adds[1].Key(): {Packets: 1, Bytes: uint64(len(f2))},
			adds[2].Key(): {},
		}
		if len(cs) != len(want) {
			t.Errorf("counters %v, want %v", cs, want)
		}
		for k, w := range want {
			if cs[k] != w {
				t.Errorf("counters of %v: %+v, want %+v", k, cs[k], w)
			}
		}
	})

	t.Run("re-adding changes the expiry and keeps counters", func(t *testing.T) {
		in3h := now.Add(3 * time.Hour)
		if err := b.Apply([]enforce.Element{el(enforce.Src, "198.51.100.0/24", in3h)}, nil); err != nil {
			t.Fatal(err)
		}
		if got := elements(t, b)[adds[0].Key()]; !near(got, in3h) {
			t.Errorf("expiry %v, want %v", got, in3h)
		}
		cs, _ := b.Counters()
		if cs[adds[0].Key()].Packets != 2 {
			t.Errorf("counters %+v, want 2 packets kept", cs[adds[0].Key()])
		}
	})

	t.Run("apply removes", func(t *testing.T) {
		del := []enforce.Element{adds[0], el(enforce.Dst, "192.0.2.0/24", in1h)} // the second is absent
		if err := b.Apply(nil, del); err != nil {
			t.Fatal(err)
		}
		got := elements(t, b)
		if _, ok := got[adds[0].Key()]; ok || len(got) != 2 {
			t.Errorf("elements %v after removing %v", got, adds[0])
		}
		if v := verdict(t, d, f1); v != xdpPass {
			t.Errorf("removed block still drops: verdict %d", v)
		}
		// In both add and del: removed, then added.
		if err := b.Apply([]enforce.Element{adds[0]}, []enforce.Element{adds[0]}); err != nil {
			t.Fatal(err)
		}
		if _, ok := elements(t, b)[adds[0].Key()]; !ok {
			t.Error("an element in both add and del is absent")
		}
	})

	t.Run("expired elements are not returned and pass", func(t *testing.T) {
		st0, _ := d.Stats()
		soon := time.Now().Add(200 * time.Millisecond)
		if err := b.Apply([]enforce.Element{
			el(enforce.Src, "192.0.2.0/24", time.Now().Add(-time.Second)),
			el(enforce.Dst, "198.18.7.0/24", soon),
		}, nil); err != nil {
			t.Fatal(err)
		}
		toSoon := frame(t, "198.18.0.1", "198.18.7.1")
		if v := verdict(t, d, toSoon); v != xdpDrop {
			t.Errorf("before its expiry: verdict %d, want drop", v)
		}
		if v := verdict(t, d, frame(t, "192.0.2.5", "198.18.0.1")); v != xdpPass {
			t.Errorf("already expired: verdict %d, want pass", v)
		}
		got := elements(t, b)
		if _, ok := got[enforce.Key{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Dir: enforce.Src}]; ok {
			t.Error("an expired element was returned")
		}
		if _, ok := got[enforce.Key{Prefix: netip.MustParsePrefix("198.18.7.0/24"), Dir: enforce.Dst}]; !ok {
			t.Error("a live element was not returned")
		}
		time.Sleep(time.Until(soon) + 50*time.Millisecond)
		if v := verdict(t, d, toSoon); v != xdpPass {
			t.Errorf("after its expiry: verdict %d, want pass", v)
		}
		if _, ok := elements(t, b)[enforce.Key{Prefix: netip.MustParsePrefix("198.18.7.0/24"), Dir: enforce.Dst}]; ok {
			t.Error("an element past its expiry was returned")
		}
		st1, _ := d.Stats()
		if n := st1.Total[dataplane.StatBlockExpired] - st0.Total[dataplane.StatBlockExpired]; n != 2 {
			t.Errorf("block_expired_packets +%d, want +2", n)
		}
		// Elements removed the expired entries from the kernel.
		for _, l := range []dataplane.List{dataplane.BlockSrc, dataplane.BlockDst} {
			es, err := lists.Entries(l)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range es {
				if !e.Expires.IsZero() && e.Expires.Before(time.Now()) {
					t.Errorf("%s still holds expired %v", l, e.Prefix)
				}
			}
		}
	})

	t.Run("allow syncs exactly and wins", func(t *testing.T) {
		if err := lists.Add(dataplane.Allow, netip.MustParsePrefix("100.64.0.0/10")); err != nil { // external edit
			t.Fatal(err)
		}
		for _, want := range [][]string{
			{"198.51.100.9/32", "2001:db8:5::/64"},
			{"198.51.100.9/32"},
			{"10.0.0.0/8", "198.51.100.9/32", "10.0.0.0/8"},
			{},
		} {
			var ps []netip.Prefix
			for _, s := range want {
				ps = append(ps, netip.MustParsePrefix(s))
			}
			if err := b.Allow(ps); err != nil {
				t.Fatal(err)
			}
			es, err := lists.Entries(dataplane.Allow)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range es {
				got = append(got, e.Prefix.String())
			}
			slices.Sort(got)
			w := slices.Compact(slices.Sorted(slices.Values(want)))
			if !slices.Equal(got, w) {
				t.Errorf("allowlist %v, want %v", got, w)
			}
			if len(want) > 0 && want[0] == "198.51.100.9/32" {
				if v := verdict(t, d, f1); v != xdpPass {
					t.Errorf("allowlisted source blocked: verdict %d", v)
				}
			}
		}
		if v := verdict(t, d, f1); v != xdpDrop {
			t.Errorf("after emptying the allowlist: verdict %d, want drop", v)
		}
	})

	t.Run("bad input changes nothing", func(t *testing.T) {
		before := elements(t, b)
		for _, c := range []struct {
			add, del []enforce.Element
			allow    []netip.Prefix
			want     string
		}{
			{add: []enforce.Element{{Prefix: netip.MustParsePrefix("::ffff:198.18.9.0/120"), Dir: enforce.Src}},
				del: []enforce.Element{adds[2]}, want: "xdp: add src ::ffff:198.18.9.0/120: prefix ::ffff:198.18.9.0/120: IPv4 must be given as a 4-byte prefix"},
			{add: []enforce.Element{{Dir: enforce.Dst}}, del: []enforce.Element{adds[2]}, want: "xdp: add dst invalid Prefix: invalid prefix"},
			{del: []enforce.Element{adds[2], {Prefix: netip.MustParsePrefix("192.0.2.0/24"), Dir: 9}}, want: "unknown direction 9"},
			{allow: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15"), {}}, want: "xdp: allow invalid Prefix: invalid prefix"},
		} {
			var err error
			if c.allow != nil {
				err = b.Allow(c.allow)
			} else {
				err = b.Apply(c.add, c.del)
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		}
		after := elements(t, b)
		if len(after) != len(before) {
			t.Errorf("elements changed by rejected input: %v -> %v", before, after)
		}
		if es, _ := lists.Entries(dataplane.Allow); len(es) != 0 {
			t.Errorf("allowlist changed by rejected input: %v", es)
		}
	})
}
