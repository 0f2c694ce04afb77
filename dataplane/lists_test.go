package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// near reports whether a and b are within d of each other.
func near(a, b time.Time, d time.Duration) bool {
	diff := a.Sub(b)
	return diff <= d && diff >= -d
}

// TestListSet: Set changes the expiry and keeps counters and added time;
// SetMany and RemoveMany go through batches larger than one syscall's.
func TestListSet(t *testing.T) {
	d := loadTestDataplane(t, Options{})
	l := d.Lists()
	p := netip.MustParsePrefix("198.18.0.0/24")
	if err := l.Add(BlockSrc, p); err != nil {
		t.Fatal(err)
	}
	syn := tcpFrame(t, client4, server4, 40000, 80, tcpSeg{flags: "S"})
	if got := run(t, d, syn); got != xdpDrop {
		t.Fatalf("verdict %d, want drop", got)
	}
	before, err := l.Get(BlockSrc, p)
	if err != nil || before.Packets != 1 || !before.Expires.IsZero() {
		t.Fatalf("after Add: %+v %v, want 1 hit and no expiry", before, err)
	}

	exp := time.Now().Add(time.Hour)
	if err := l.Set(BlockSrc, p, exp); err != nil {
		t.Fatal(err)
	}
	e, err := l.Get(BlockSrc, p)
	if err != nil || e.Packets != 1 || e.Bytes != uint64(len(syn)) || !e.Added.Equal(before.Added) || !near(e.Expires, exp, time.Microsecond) {
		t.Errorf("after Set: %+v %v, want counters and added time kept, expiry %v", e, err, exp)
	}
	if err := l.Set(BlockSrc, p, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if e, _ := l.Get(BlockSrc, p); !e.Expires.IsZero() || e.Packets != 1 {
		t.Errorf("after Set without expiry: %+v, want no expiry, 1 hit", e)
	}
	// Add on an entry with an expiry changes nothing.
	if err := l.Set(BlockSrc, p, exp); err != nil {
		t.Fatal(err)
	}
	if err := l.Add(BlockSrc, p); err != nil {
		t.Fatal(err)
	}
	if e, _ := l.Get(BlockSrc, p); !near(e.Expires, exp, time.Microsecond) {
		t.Errorf("Add changed the expiry: %+v", e)
	}

	// IPv4-mapped input is stored and listed as plain IPv4.
	if err := l.Set(BlockDst, netip.MustParsePrefix("::ffff:203.0.113.0/120"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	es, err := l.Entries(BlockDst)
	if err != nil || len(es) != 1 || es[0].Prefix != netip.MustParsePrefix("203.0.113.0/24") {
		t.Errorf("block-dst entries %+v %v, want [203.0.113.0/24]", es, err)
	}

	for _, bad := range []struct {
		list List
		p    netip.Prefix
		exp  time.Time
		want string
	}{
		{Allow, netip.MustParsePrefix("198.51.100.0/24"), exp, "set 198.51.100.0/24 in allow: allowlist entries do not expire"},
		{BlockSrc, netip.Prefix{}, exp, "set invalid Prefix in block-src: invalid prefix"},
		{BlockDst, netip.MustParsePrefix("::ffff:0:0/90"), exp, "in block-dst: prefix ::ffff:0.0.0.0/90: an IPv4-mapped prefix must be at least /96"},
		{List(7), p, exp, "unknown list 7"},
	} {
		err := l.Set(bad.list, bad.p, bad.exp)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Set(%v, %v): %v, want an error containing %q", bad.list, bad.p, err, bad.want)
		}
	}

	// Many prefixes: more than one batch, both families, one bad element
	// first (nothing written), then all.
	var many []PrefixExpiry
	base := time.Now().Add(time.Hour)
	for i := range 3000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0})
		many = append(many, PrefixExpiry{netip.PrefixFrom(a, 24), base.Add(time.Duration(i) * time.Millisecond)})
	}
	for i := range 10 {
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xff, byte(i)})
		many = append(many, PrefixExpiry{netip.PrefixFrom(a, 48), time.Time{}})
	}
	bad := append(slices.Clone(many), PrefixExpiry{netip.Prefix{}, base})
	if err := l.SetMany(BlockSrc, bad); err == nil {
		t.Error("SetMany with an invalid prefix succeeded")
	}
	if es, _ := l.Entries(BlockSrc); len(es) != 1 {
		t.Fatalf("a failed SetMany left %d entries, want the 1 from before", len(es))
	}
	if err := l.SetMany(BlockSrc, many); err != nil {
		t.Fatal(err)
	}
	es, err = l.Entries(BlockSrc)
	if err != nil {
		t.Fatal(err)
	}
	got := map[netip.Prefix]time.Time{}
	for _, e := range es {
		got[e.Prefix] = e.Expires
	}
	if len(got) != len(many)+1 {
		t.Errorf("%d entries, want %d", len(got), len(many)+1)
	}
	for _, m := range many {
		if x, ok := got[m.Prefix]; !ok || !near(x, m.Expires, time.Microsecond) || x.IsZero() != m.Expires.IsZero() {
			t.Fatalf("%v: expiry %v (present %v), want %v", m.Prefix, x, ok, m.Expires)
		}
	}
	if v := run(t, d, tcpFrame(t, netip.MustParseAddr("10.11.184.9"), server4, 1, 2, tcpSeg{flags: "S"})); v != xdpDrop {
		t.Errorf("source in a SetMany prefix: verdict %d, want drop", v)
	}

	// RemoveMany skips absent prefixes, wherever they are in a batch.
	var del []netip.Prefix
	for i, m := range many {
		del = append(del, m.Prefix)
		if i%7 == 0 {
			del = append(del, netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)}), 32))
		}
	}
	del = append(del, p, netip.MustParsePrefix("2001:db8:eeee::/48"))
	if err := l.RemoveMany(BlockSrc, del); err != nil {
		t.Fatal(err)
	}
	if es, err := l.Entries(BlockSrc); err != nil || len(es) != 0 {
		t.Errorf("after RemoveMany: %d entries (%v), want 0", len(es), err)
	}
	if err := l.RemoveMany(BlockSrc, []netip.Prefix{{}}); err == nil || !strings.Contains(err.Error(), "remove invalid Prefix from block-src") {
		t.Errorf("RemoveMany(invalid): %v", err)
	}
}

// TestLoadReplacesV1Lists: an upgraded box has the _v1 lists pinned. Load
// carries their entries into the _v2 lists, removes the old pins and
// leaves pins it does not know alone.
func TestLoadReplacesV1Lists(t *testing.T) {
	requireRoot(t)
	bpffs := t.TempDir()
	if err := unix.Mount("bpf", bpffs, "bpf", 0, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(bpffs, unix.MNT_DETACH)
	pin := bpffs + "/wl"
	if err := MountBPFFS(bpffs, pin); err != nil {
		t.Fatal(err)
	}
	oldMap := func(name string, typ ebpf.MapType, key, val uint32, flags uint32) *ebpf.Map {
		m, err := ebpf.NewMapWithOptions(&ebpf.MapSpec{Name: name, Type: typ, KeySize: key, ValueSize: val, MaxEntries: 16, Flags: flags, Pinning: ebpf.PinByName},
			ebpf.MapOptions{PinPath: pin})
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	src4 := oldMap("wl_block_src4_v1", ebpf.LPMTrie, 8, 24, unix.BPF_F_NO_PREALLOC)
	if err := src4.Put(bpfWlLpm4{Prefixlen: 24, Addr: [4]byte{198, 51, 100, 0}}, [3]uint64{5, 500, 42}); err != nil {
		t.Fatal(err)
	}
	oldMap("wl_allow6_v1", ebpf.LPMTrie, 20, 24, unix.BPF_F_NO_PREALLOC)
	oldMap("wl_stats_v1", ebpf.Array, 4, 28*8, 0)
	oldMap("wl_other_v1", ebpf.Array, 4, 8, 0) // no map of ours is called wl_other

	var logs []string
	logf := func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) }
	d, err := Load(Options{PinDir: pin, Logf: logf})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, n := range []string{"wl_block_src4_v1", "wl_allow6_v1", "wl_stats_v1"} {
		if _, err := os.Stat(filepath.Join(pin, n)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale pin %s: %v, want it removed", n, err)
		}
	}
	for _, n := range []string{"wl_other_v1", "wl_block_src4_v2", "wl_stats_v2", "prog_wl_xdp"} {
		if _, err := os.Stat(filepath.Join(pin, n)); err != nil {
			t.Errorf("pin %s: %v, want it present", n, err)
		}
	}
	want := "dataplane: removed pinned maps of an older layout: [wl_allow6_v1 wl_block_src4_v1 wl_stats_v1]"
	if !slices.Contains(logs, want) {
		t.Errorf("log %q, want a line %q", logs, want)
	}
	e, err := d.Lists().Get(BlockSrc, netip.MustParsePrefix("198.51.100.0/24"))
	if err != nil || e.Packets != 5 || e.Bytes != 500 || !e.Added.Equal(d.Clock().Time(42)) || !e.Expires.IsZero() {
		t.Errorf("carried-over entry %+v %v, want 5 packets, 500 bytes, added at ktime 42, no expiry", e, err)
	}
	if v := run(t, d, tcpFrame(t, netip.MustParseAddr("198.51.100.7"), server4, 1, 2, tcpSeg{flags: "S"})); v != xdpDrop {
		t.Errorf("source in the carried-over block: verdict %d, want drop", v)
	}

	// The next load finds nothing to remove.
	logs = nil
	d2, err := Load(Options{PinDir: pin, Logf: logf})
	if err != nil {
		t.Fatal(err)
	}
	d2.Close()
	for _, l := range logs {
		if strings.Contains(l, "removed") || strings.Contains(l, "copied") {
			t.Errorf("second load: %q", l)
		}
	}
}
