package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/cilium/ebpf"
)

// List selects one of the fast path's address lists.
type List int

const (
	BlockSrc List = iota // drop packets whose source is in the list
	BlockDst             // drop packets whose destination is in the list
	Allow                // never drop packets whose source or destination is in the list
)

func (l List) String() string {
	switch l {
	case BlockSrc:
		return "block-src"
	case BlockDst:
		return "block-dst"
	case Allow:
		return "allow"
	}
	return fmt.Sprintf("list(%d)", int(l))
}

// ParseList parses "block-src", "block-dst" or "allow".
func ParseList(s string) (List, error) {
	for _, l := range []List{BlockSrc, BlockDst, Allow} {
		if l.String() == s {
			return l, nil
		}
	}
	return 0, fmt.Errorf("list %q: must be block-src, block-dst or allow", s)
}

// ListEntry is one prefix of a list with its hit counters.
type ListEntry struct {
	Prefix  netip.Prefix
	Packets uint64 // packets that matched (dropped, or for Allow: spared)
	Bytes   uint64
	Added   time.Time
}

// Lists is the small map API to the block and allow lists (LPM tries, one
// per list and address family). The enforcement layer and the CLI use it;
// it works on pinned maps without loading programs, so it also works while
// the daemon is down.
type Lists struct {
	v4, v6 [3]*ebpf.Map
	clock  *Clock
	owned  bool
}

// Lists returns the lists of a loaded dataplane (closed with it).
func (d *Dataplane) Lists() *Lists {
	o := &d.objs
	return &Lists{
		v4:    [3]*ebpf.Map{o.WlBlockSrc4V1, o.WlBlockDst4V1, o.WlAllow4V1},
		v6:    [3]*ebpf.Map{o.WlBlockSrc6V1, o.WlBlockDst6V1, o.WlAllow6V1},
		clock: d.clock,
	}
}

// OpenLists opens the pinned lists under pinDir.
func OpenLists(pinDir string) (*Lists, error) {
	l := &Lists{clock: NewClock(), owned: true}
	names4 := [3]string{"wl_block_src4_v1", "wl_block_dst4_v1", "wl_allow4_v1"}
	names6 := [3]string{"wl_block_src6_v1", "wl_block_dst6_v1", "wl_allow6_v1"}
	for i := range 3 {
		for _, x := range []struct {
			name string
			dst  **ebpf.Map
		}{{names4[i], &l.v4[i]}, {names6[i], &l.v6[i]}} {
			m, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, x.name), nil)
			if err != nil {
				l.Close()
				return nil, fmt.Errorf("open pinned list %s: %w (is the dataplane loaded with pin directory %s?)", x.name, err, pinDir)
			}
			*x.dst = m
		}
	}
	return l, nil
}

// Close releases maps opened by OpenLists.
func (l *Lists) Close() error {
	if !l.owned {
		return nil
	}
	var errs []error
	for _, m := range append(l.v4[:], l.v6[:]...) {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	return errors.Join(errs...)
}

// lpmKey returns the map and key for p. IPv4-mapped IPv6 prefixes are
// treated as IPv4 (the fast path sees IPv4 packets as IPv4).
func (l *Lists) lpmKey(list List, p netip.Prefix) (*ebpf.Map, any, error) {
	if list < BlockSrc || list > Allow {
		return nil, nil, fmt.Errorf("unknown list %d", int(list))
	}
	if !p.IsValid() {
		return nil, nil, fmt.Errorf("invalid prefix %v", p)
	}
	a, bits := p.Addr(), p.Bits()
	if a.Is4In6() {
		if bits < 96 {
			return nil, nil, fmt.Errorf("prefix %v: an IPv4-mapped prefix must be at least /96", p)
		}
		a, bits = a.Unmap(), bits-96
	}
	p = netip.PrefixFrom(a, bits).Masked()
	if a.Is4() {
		return l.v4[list], bpfWlLpm4{Prefixlen: uint32(bits), Addr: p.Addr().As4()}, nil
	}
	return l.v6[list], bpfWlLpm6{Prefixlen: uint32(bits), Addr: p.Addr().As16()}, nil
}

// Add inserts p into list. Re-adding an existing prefix keeps its counters.
func (l *Lists) Add(list List, p netip.Prefix) error {
	m, key, err := l.lpmKey(list, p)
	if err != nil {
		return fmt.Errorf("add %v to %s: %w", p, list, err)
	}
	val := bpfWlListVal{AddedNs: MonotonicNow()}
	err = m.Update(key, val, ebpf.UpdateNoExist)
	if errors.Is(err, ebpf.ErrKeyExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("add %v to %s: %w", p, list, err)
	}
	return nil
}

// Remove deletes p from list; removing an absent prefix is not an error.
func (l *Lists) Remove(list List, p netip.Prefix) error {
	m, key, err := l.lpmKey(list, p)
	if err != nil {
		return fmt.Errorf("remove %v from %s: %w", p, list, err)
	}
	if err := m.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("remove %v from %s: %w", p, list, err)
	}
	return nil
}

// Get returns the entry for exactly p.
func (l *Lists) Get(list List, p netip.Prefix) (ListEntry, error) {
	m, key, err := l.lpmKey(list, p)
	if err != nil {
		return ListEntry{}, fmt.Errorf("look up %v in %s: %w", p, list, err)
	}
	var v bpfWlListVal
	if err := m.Lookup(key, &v); err != nil {
		return ListEntry{}, fmt.Errorf("look up %v in %s: %w", p, list, err)
	}
	return ListEntry{Prefix: p.Masked(), Packets: v.Packets, Bytes: v.Bytes, Added: l.clock.Time(v.AddedNs)}, nil
}

// Entries lists every prefix of list (IPv4 first).
func (l *Lists) Entries(list List) ([]ListEntry, error) {
	if list < BlockSrc || list > Allow {
		return nil, fmt.Errorf("unknown list %d", int(list))
	}
	var out []ListEntry
	var v bpfWlListVal
	var k4 bpfWlLpm4
	it := l.v4[list].Iterate()
	for it.Next(&k4, &v) {
		p := netip.PrefixFrom(netip.AddrFrom4(k4.Addr), int(k4.Prefixlen))
		out = append(out, ListEntry{Prefix: p, Packets: v.Packets, Bytes: v.Bytes, Added: l.clock.Time(v.AddedNs)})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list %s (IPv4): %w", list, err)
	}
	var k6 bpfWlLpm6
	it = l.v6[list].Iterate()
	for it.Next(&k6, &v) {
		p := netip.PrefixFrom(netip.AddrFrom16(k6.Addr), int(k6.Prefixlen))
		out = append(out, ListEntry{Prefix: p, Packets: v.Packets, Bytes: v.Bytes, Added: l.clock.Time(v.AddedNs)})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list %s (IPv6): %w", list, err)
	}
	return out, nil
}
