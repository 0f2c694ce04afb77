package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
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
	Prefix  netip.Prefix // masked; IPv4 prefixes are 4-byte, never 4-in-6
	Packets uint64       // packets that matched (dropped, or for Allow: spared)
	Bytes   uint64
	Added   time.Time
	// Expires is when the fast path stops matching the entry; zero means
	// never (always zero in the allowlist). An expired entry stays in the
	// trie until it is removed and counts as no match (StatBlockExpired).
	Expires time.Time
}

// PrefixExpiry is one element for SetMany.
type PrefixExpiry struct {
	Prefix  netip.Prefix
	Expires time.Time // zero: never
}

// The names of the list maps (bpf/maps.h), indexed by List.
var (
	listPins4 = [3]string{"wl_block_src4_v2", "wl_block_dst4_v2", "wl_allow4_v2"}
	listPins6 = [3]string{"wl_block_src6_v2", "wl_block_dst6_v2", "wl_allow6_v2"}
)

// batchMax bounds one batch syscall. Batches amortise the syscall (on 6.18,
// 100k inserts into an LPM trie: 0.17 s batched, 0.46 s one by one), and
// the bound keeps the restart after an absent key in RemoveMany cheap.
const batchMax = 1024

// Lists is the small map API to the block and allow lists (LPM tries, one
// per list and address family). The enforcement layer and the CLI use it;
// it works on pinned maps without loading programs, so it also works while
// the daemon is down.
//
// The kernel replaces a trie value as a whole, so changing the expiry of an
// entry reads and rewrites its counters: packets that hit it between the
// read and the write (microseconds) are missing from the entry's counters,
// not from the fast path's global drop counters.
type Lists struct {
	v4, v6 [3]*ebpf.Map
	clock  *Clock
	owned  bool
}

// Lists returns the lists of a loaded dataplane (closed with it).
func (d *Dataplane) Lists() *Lists {
	o := &d.objs
	return &Lists{
		v4:    [3]*ebpf.Map{o.WlBlockSrc4V2, o.WlBlockDst4V2, o.WlAllow4V2},
		v6:    [3]*ebpf.Map{o.WlBlockSrc6V2, o.WlBlockDst6V2, o.WlAllow6V2},
		clock: d.clock,
	}
}

// OpenLists opens the pinned lists under pinDir.
func OpenLists(pinDir string) (*Lists, error) {
	l := &Lists{clock: NewClock(), owned: true}
	for i := range 3 {
		for _, x := range []struct {
			name string
			dst  **ebpf.Map
		}{{listPins4[i], &l.v4[i]}, {listPins6[i], &l.v6[i]}} {
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

// Close releases maps opened by OpenLists; for the lists of a loaded
// Dataplane it does nothing.
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

// normalize checks list and p and returns p masked, an IPv4-mapped IPv6
// prefix as IPv4 (the fast path looks IPv4 packets up as IPv4).
func normalize(list List, p netip.Prefix) (netip.Prefix, error) {
	if list < BlockSrc || list > Allow {
		return netip.Prefix{}, fmt.Errorf("unknown list %d", int(list))
	}
	if !p.IsValid() {
		return netip.Prefix{}, fmt.Errorf("invalid prefix %v", p)
	}
	a, bits := p.Addr(), p.Bits()
	if a.Is4In6() {
		if bits < 96 {
			return netip.Prefix{}, fmt.Errorf("prefix %v: an IPv4-mapped prefix must be at least /96", p)
		}
		a, bits = a.Unmap(), bits-96
	}
	return netip.PrefixFrom(a.WithZone(""), bits).Masked(), nil
}

func key4(p netip.Prefix) bpfWlLpm4 {
	return bpfWlLpm4{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As4()}
}

func key6(p netip.Prefix) bpfWlLpm6 {
	return bpfWlLpm6{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As16()}
}

// target returns the map and key for p (normalized).
func (l *Lists) target(list List, p netip.Prefix) (*ebpf.Map, any) {
	if p.Addr().Is4() {
		return l.v4[list], key4(p)
	}
	return l.v6[list], key6(p)
}

func (l *Lists) entry(p netip.Prefix, v *bpfWlListVal) ListEntry {
	e := ListEntry{Prefix: p, Packets: v.Packets, Bytes: v.Bytes, Added: l.clock.Time(v.AddedNs)}
	if v.ExpiresNs != 0 {
		e.Expires = l.clock.Time(v.ExpiresNs)
	}
	return e
}

// Add inserts p into list without expiry. Re-adding an existing prefix
// changes nothing (its counters and expiry stay); Set changes the expiry.
func (l *Lists) Add(list List, p netip.Prefix) error {
	np, err := normalize(list, p)
	if err != nil {
		return fmt.Errorf("add %v to %s: %w", p, list, err)
	}
	m, key := l.target(list, np)
	val := bpfWlListVal{AddedNs: MonotonicNow()}
	err = m.Update(key, val, ebpf.UpdateNoExist)
	if errors.Is(err, ebpf.ErrKeyExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("add %v to %s: %w%s", p, list, err, fullHint(err))
	}
	return nil
}

// Set inserts p into list, or changes the expiry of the existing entry
// (keeping its hit counters and added time). A zero expires means never;
// allowlist entries cannot expire.
func (l *Lists) Set(list List, p netip.Prefix, expires time.Time) error {
	return l.SetMany(list, []PrefixExpiry{{p, expires}})
}

// SetMany is Set for many prefixes, written with batch updates. Every
// element is validated before the first write, so a bad one changes
// nothing; a kernel error names the prefix it failed on (the elements
// before it are written).
func (l *Lists) SetMany(list List, es []PrefixExpiry) error {
	norm := make([]netip.Prefix, len(es))
	for i, e := range es {
		p, err := normalize(list, e.Prefix)
		if err == nil && list == Allow && !e.Expires.IsZero() {
			err = errors.New("allowlist entries do not expire")
		}
		if err != nil {
			return fmt.Errorf("set %v in %s: %w", e.Prefix, list, err)
		}
		norm[i] = p
	}
	if len(es) == 0 {
		return nil
	}
	w4 := writes[bpfWlLpm4]{m: l.v4[list]}
	w6 := writes[bpfWlLpm6]{m: l.v6[list]}
	now := MonotonicNow()
	for i, e := range es {
		var want uint64
		if !e.Expires.IsZero() {
			want = l.clock.Ktime(e.Expires)
		}
		p := norm[i]
		var err error
		if p.Addr().Is4() {
			err = w4.add(key4(p), p, want, now)
		} else {
			err = w6.add(key6(p), p, want, now)
		}
		if err != nil {
			return fmt.Errorf("set %v in %s: %w", p, list, err)
		}
	}
	if p, err := w4.flush(); err != nil {
		return fmt.Errorf("set %v in %s: %w%s", p, list, err, fullHint(err))
	}
	if p, err := w6.flush(); err != nil {
		return fmt.Errorf("set %v in %s: %w%s", p, list, err, fullHint(err))
	}
	return nil
}

// writes collects the values to write into one trie.
type writes[K any] struct {
	m        *ebpf.Map
	keys     []K
	vals     []bpfWlListVal
	prefixes []netip.Prefix
}

// add queues k with expiry want, carrying over the counters and added time
// of an existing entry; an entry that already has that expiry is skipped.
func (w *writes[K]) add(k K, p netip.Prefix, want, now uint64) error {
	var v bpfWlListVal
	err := w.m.Lookup(k, &v)
	switch {
	case err == nil:
		if v.ExpiresNs == want {
			return nil
		}
		v.ExpiresNs = want
	case errors.Is(err, ebpf.ErrKeyNotExist):
		v = bpfWlListVal{AddedNs: now, ExpiresNs: want}
	default:
		return fmt.Errorf("look up existing entry: %w", err)
	}
	w.keys = append(w.keys, k)
	w.vals = append(w.vals, v)
	w.prefixes = append(w.prefixes, p)
	return nil
}

// flush writes the queued values, in batches where the kernel supports
// them, and returns the prefix that failed.
func (w *writes[K]) flush() (netip.Prefix, error) {
	keys, vals, prefixes := w.keys, w.vals, w.prefixes
	for len(keys) > 1 {
		c := min(len(keys), batchMax)
		n, err := w.m.BatchUpdate(keys[:c], vals[:c], nil)
		if errors.Is(err, ebpf.ErrNotSupported) {
			break // one by one below
		}
		if err != nil {
			return prefixes[min(n, c-1)], fmt.Errorf("batch update: %w", err)
		}
		keys, vals, prefixes = keys[c:], vals[c:], prefixes[c:]
	}
	for i := range keys {
		if err := w.m.Update(keys[i], vals[i], ebpf.UpdateAny); err != nil {
			return prefixes[i], err
		}
	}
	return netip.Prefix{}, nil
}

func fullHint(err error) string {
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.E2BIG) {
		return " (hint: the list is full; each trie holds 262144 prefixes)"
	}
	return ""
}

// Remove deletes p from list; removing an absent prefix is not an error.
func (l *Lists) Remove(list List, p netip.Prefix) error {
	np, err := normalize(list, p)
	if err != nil {
		return fmt.Errorf("remove %v from %s: %w", p, list, err)
	}
	m, key := l.target(list, np)
	if err := m.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("remove %v from %s: %w", p, list, err)
	}
	return nil
}

// RemoveMany is Remove for many prefixes, with batch deletes. Every prefix
// is validated before the first delete; absent prefixes are not an error.
func (l *Lists) RemoveMany(list List, ps []netip.Prefix) error {
	var k4 []bpfWlLpm4
	var k6 []bpfWlLpm6
	var p4, p6 []netip.Prefix
	for _, p := range ps {
		np, err := normalize(list, p)
		if err != nil {
			return fmt.Errorf("remove %v from %s: %w", p, list, err)
		}
		if np.Addr().Is4() {
			k4, p4 = append(k4, key4(np)), append(p4, np)
		} else {
			k6, p6 = append(k6, key6(np)), append(p6, np)
		}
	}
	if err := deleteKeys(l.v4[list], k4, p4); err != nil {
		return fmt.Errorf("remove from %s: %w", list, err)
	}
	if err := deleteKeys(l.v6[list], k6, p6); err != nil {
		return fmt.Errorf("remove from %s: %w", list, err)
	}
	return nil
}

// deleteKeys deletes keys in batches. A batch delete stops at the first
// absent key and reports how many it deleted before it; that key is
// skipped and the rest retried.
func deleteKeys[K any](m *ebpf.Map, keys []K, prefixes []netip.Prefix) error {
	for len(keys) > 1 {
		c := min(len(keys), batchMax)
		n, err := m.BatchDelete(keys[:c], nil)
		switch {
		case err == nil:
			keys, prefixes = keys[c:], prefixes[c:]
			continue
		case errors.Is(err, ebpf.ErrNotSupported):
		case errors.Is(err, ebpf.ErrKeyNotExist) && n < c:
			keys, prefixes = keys[n+1:], prefixes[n+1:]
			continue
		default:
			return fmt.Errorf("%v: batch delete: %w", prefixes[min(n, c-1)], err)
		}
		break // not supported: one by one below
	}
	for i := range keys {
		if err := m.Delete(keys[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("%v: %w", prefixes[i], err)
		}
	}
	return nil
}

// Get returns the entry for exactly p.
func (l *Lists) Get(list List, p netip.Prefix) (ListEntry, error) {
	np, err := normalize(list, p)
	if err != nil {
		return ListEntry{}, fmt.Errorf("look up %v in %s: %w", p, list, err)
	}
	m, key := l.target(list, np)
	var v bpfWlListVal
	if err := m.Lookup(key, &v); err != nil {
		return ListEntry{}, fmt.Errorf("look up %v in %s: %w", p, list, err)
	}
	return l.entry(np, &v), nil
}

// Entries lists every prefix of list (IPv4 first), expired ones included.
func (l *Lists) Entries(list List) ([]ListEntry, error) {
	if list < BlockSrc || list > Allow {
		return nil, fmt.Errorf("unknown list %d", int(list))
	}
	var out []ListEntry
	err := dump(l.v4[list], func(k *bpfWlLpm4, v *bpfWlListVal) {
		p := netip.PrefixFrom(netip.AddrFrom4(k.Addr), int(k.Prefixlen)).Masked()
		out = append(out, l.entry(p, v))
	})
	if err != nil {
		return nil, fmt.Errorf("list %s (IPv4): %w", list, err)
	}
	err = dump(l.v6[list], func(k *bpfWlLpm6, v *bpfWlListVal) {
		p := netip.PrefixFrom(netip.AddrFrom16(k.Addr), int(k.Prefixlen)).Masked()
		out = append(out, l.entry(p, v))
	})
	if err != nil {
		return nil, fmt.Errorf("list %s (IPv6): %w", list, err)
	}
	return out, nil
}

// dump calls fn for every entry of m, reading batches (on 6.18, 100k
// entries: 0.11 s, against 0.51 s key by key), or key by key where the
// kernel has no batch lookup.
func dump[K any](m *ebpf.Map, fn func(*K, *bpfWlListVal)) error {
	keys := make([]K, 256)
	vals := make([]bpfWlListVal, len(keys))
	var c ebpf.MapBatchCursor
	for first := true; ; first = false {
		n, err := m.BatchLookup(&c, keys, vals, nil)
		if first && errors.Is(err, ebpf.ErrNotSupported) {
			break
		}
		for i := range n {
			fn(&keys[i], &vals[i])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil // done
		}
		if err != nil {
			return err
		}
	}
	var k K
	var v bpfWlListVal
	it := m.Iterate()
	for it.Next(&k, &v) {
		fn(&k, &v)
	}
	return it.Err()
}
