package nftset

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"sort"
	"time"

	"github.com/google/nftables"
)

// span is an inclusive address range [first, last] of one family.
type span struct{ first, last netip.Addr }

func spanOf(p netip.Prefix) span { return span{p.Addr(), lastAddr(p)} }

// lastAddr is the highest address in p (p must be masked).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		switch {
		case bits >= 8:
			bits -= 8
		case bits > 0:
			b[i] |= 0xff >> bits
			bits = 0
		default:
			b[i] = 0xff
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// isMax reports whether a is the highest address of its family (there is
// no interval end element after it).
func isMax(a netip.Addr) bool { return !a.Next().IsValid() }

// u128 is an address as a number (IPv4 in the low 32 bits).
type u128 struct{ hi, lo uint64 }

func toU128(a netip.Addr) u128 {
	b := a.As16()
	if a.Is4() {
		return u128{0, uint64(binary.BigEndian.Uint32(b[12:]))}
	}
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func fromU128(x u128, v4 bool) netip.Addr {
	if v4 {
		return netip.AddrFrom4([4]byte{byte(x.lo >> 24), byte(x.lo >> 16), byte(x.lo >> 8), byte(x.lo)})
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], x.hi)
	binary.BigEndian.PutUint64(b[8:], x.lo)
	return netip.AddrFrom16(b)
}

func (x u128) sub(y u128) u128 {
	lo, borrow := bits.Sub64(x.lo, y.lo, 0)
	hi, _ := bits.Sub64(x.hi, y.hi, borrow)
	return u128{hi, lo}
}

func (x u128) add(y u128) (u128, bool) {
	lo, carry := bits.Add64(x.lo, y.lo, 0)
	hi, carry := bits.Add64(x.hi, y.hi, carry)
	return u128{hi, lo}, carry != 0
}

func (x u128) trailingZeros() int {
	if x.lo != 0 {
		return bits.TrailingZeros64(x.lo)
	}
	return 64 + bits.TrailingZeros64(x.hi) // 128 for zero
}

func (x u128) bitLen() int {
	if x.hi != 0 {
		return 64 + bits.Len64(x.hi)
	}
	return bits.Len64(x.lo)
}

func pow2(k int) u128 {
	if k >= 64 {
		return u128{1 << (k - 64), 0}
	}
	return u128{0, 1 << k}
}

// spanPrefixes returns the fewest prefixes that cover exactly [first,
// last], in order: at each step the largest block that starts at the
// next address, is aligned to its size and ends at or before last.
func spanPrefixes(s span) []netip.Prefix {
	v4, width := s.first.Is4(), s.first.BitLen()
	a, l := toU128(s.first), toU128(s.last)
	var out []netip.Prefix
	for {
		// The largest k with 2^k <= l-a+1; the count wraps to 0 when it is
		// 2^128 (all of IPv6).
		k := width
		if c, _ := l.sub(a).add(u128{0, 1}); (c != u128{}) {
			k = c.bitLen() - 1
		}
		k = min(k, a.trailingZeros(), width)
		out = append(out, netip.PrefixFrom(fromU128(a, v4), width-k))
		end, _ := a.add(pow2(k).sub(u128{0, 1}))
		if end == l {
			return out
		}
		a, _ = end.add(u128{0, 1})
	}
}

// intervalElements are the set elements of one range: its start key,
// which carries the timeout, and the key after its end flagged as an
// interval end (none when the range runs to the end of the address
// space).
func intervalElements(s span, timeout time.Duration) []nftables.SetElement {
	el := []nftables.SetElement{{Key: s.first.AsSlice(), Timeout: timeout}}
	if !isMax(s.last) {
		el = append(el, nftables.SetElement{Key: s.last.Next().AsSlice(), IntervalEnd: true})
	}
	return el
}

// krange is one range as the kernel holds it in an interval set.
type krange struct {
	span
	hasEnd  bool          // an interval end element follows (else open to the top)
	timeout time.Duration // 0: the element does not expire
	expires time.Duration // remaining life when read
	packets uint64
	bytes   uint64
}

// toRanges pairs the start and end elements of an interval set dump into
// ranges, the way the kernel's lookup reads them: an address matches the
// closest element at or below it when that is a start element. An end
// element without a start before it (left by a start that has expired and
// is not dumped any more) is skipped; a start followed by another start
// ends where the next one begins.
func toRanges(els []nftables.SetElement) []krange {
	type el struct {
		a netip.Addr
		nftables.SetElement
	}
	sorted := make([]el, 0, len(els))
	for _, e := range els {
		a, ok := netip.AddrFromSlice(e.Key)
		if !ok {
			continue
		}
		sorted = append(sorted, el{a, e})
	}
	sort.SliceStable(sorted, func(i, j int) bool {
		if c := sorted[i].a.Compare(sorted[j].a); c != 0 {
			return c < 0
		}
		return sorted[i].IntervalEnd && !sorted[j].IntervalEnd // an end closes before a start opens
	})
	var (
		out  []krange
		open *el
	)
	closeAt := func(next netip.Addr, hasEnd bool) {
		r := krange{span: span{open.a, next.Prev()}, hasEnd: hasEnd, timeout: open.Timeout, expires: open.Expires}
		if open.Counter != nil {
			r.packets, r.bytes = open.Counter.Packets, open.Counter.Bytes
		}
		if r.last.IsValid() && r.first.Compare(r.last) <= 0 {
			out = append(out, r)
		}
		open = nil
	}
	for i := range sorted {
		e := &sorted[i]
		if e.IntervalEnd {
			if open != nil {
				closeAt(e.a, true)
			}
			continue
		}
		if open != nil {
			closeAt(e.a, false)
		}
		open = e
	}
	if open != nil {
		r := krange{span: span{open.a, maxAddr(open.a)}, timeout: open.Timeout, expires: open.Expires}
		if open.Counter != nil {
			r.packets, r.bytes = open.Counter.Packets, open.Counter.Bytes
		}
		out = append(out, r)
	}
	return out
}

func maxAddr(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.AddrFrom4([4]byte{255, 255, 255, 255})
	}
	var b [16]byte
	for i := range b {
		b[i] = 0xff
	}
	return netip.AddrFrom16(b)
}

// mergeSpans sorts prefixes into the fewest disjoint ranges (overlapping
// and adjacent prefixes merge), as an interval set must hold them.
func mergeSpans(ps []netip.Prefix) []span {
	spans := make([]span, 0, len(ps))
	for _, p := range ps {
		spans = append(spans, spanOf(p))
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].first.Compare(spans[j].first) < 0 })
	var out []span
	for _, s := range spans {
		if n := len(out); n > 0 {
			prev := &out[n-1]
			if isMax(prev.last) || s.first.Compare(prev.last.Next()) <= 0 {
				if s.last.Compare(prev.last) > 0 {
					prev.last = s.last
				}
				continue
			}
		}
		out = append(out, s)
	}
	return out
}

// overlapsAny reports whether s overlaps one of spans, which are disjoint
// and sorted (as mergeSpans returns them).
func overlapsAny(spans []span, s span) bool {
	i := sort.Search(len(spans), func(i int) bool { return spans[i].last.Compare(s.first) >= 0 })
	return i < len(spans) && spans[i].first.Compare(s.last) <= 0
}
