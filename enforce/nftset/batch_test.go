package nftset

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/wardline/wardline/enforce"
)

// TestRandomBatches applies random batches of adds, re-adds and deletes
// (of present, absent and overlapping prefixes) in a small address space,
// where prefixes often contain each other, and compares the sets with a
// model after each. This is what found the two kernel behaviours that plan
// and remove work around (an unchecked overlap, a delete order). Now and
// then an element is deleted behind the Backend's back.
func TestRandomBatches(t *testing.T) {
	needRoot(t)
	ns := newNetns(t, testID(t)+"-box")
	b := openIn(t, ns)
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("WARDLINE_SEED"), 10, 64); err == nil {
		seed = s
	}
	t.Logf("seed %d (WARDLINE_SEED=%[1]d repeats it)", seed)
	rng := rand.New(rand.NewPCG(seed, 4))
	base := time.Now().Add(time.Hour)
	randPrefix := func() netip.Prefix {
		bits := 22 + rng.IntN(11) // within 198.18.0.0/22
		a := netip.AddrFrom4([4]byte{198, 18, byte(rng.IntN(4)), byte(rng.IntN(256))})
		return netip.PrefixFrom(a, bits).Masked()
	}
	randExp := func() time.Time {
		if rng.IntN(5) == 0 {
			return time.Time{}
		}
		return base.Add(time.Duration(rng.IntN(3600)) * time.Second)
	}
	dirs := []enforce.Dir{enforce.Src, enforce.Dst}
	model := map[enforce.Key]enforce.Element{}
	refusals := 0
	overlaps := func(a, b netip.Prefix) bool { return a.Overlaps(b) }

	// Someone else deletes elements now and then, behind the Backend's
	// back: its view of the sets is then stale.
	other, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatal(err)
	}

	for round := range 300 {
		var add, del []enforce.Element
		keys := make([]enforce.Key, 0, len(model))
		for k := range model {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			return keys[i].Prefix.String()+keys[i].Dir.String() < keys[j].Prefix.String()+keys[j].Dir.String()
		})
		if len(keys) > 0 && rng.IntN(4) == 0 {
			k := keys[rng.IntN(len(keys))]
			if err := other.SetDeleteElements(b.sets[elementSet(k)], intervalElements(spanOf(k.Prefix), 0)); err != nil {
				t.Fatal(err)
			}
			if err := other.Flush(); err != nil {
				t.Fatalf("round %d: external delete of %v: %v", round, k, err)
			}
			delete(model, k)
			keys = slices.DeleteFunc(keys, func(x enforce.Key) bool { return x == k })
		}
		for _, k := range keys {
			switch rng.IntN(6) {
			case 0:
				del = append(del, model[k])
			case 1:
				add = append(add, enforce.Element{Prefix: k.Prefix, Dir: k.Dir, Expires: randExp()})
			}
		}
		for range rng.IntN(4) {
			del = append(del, enforce.Element{Prefix: randPrefix(), Dir: dirs[rng.IntN(2)]})
		}
		for range rng.IntN(5) {
			add = append(add, enforce.Element{Prefix: randPrefix(), Dir: dirs[rng.IntN(2)], Expires: randExp()})
		}

		// The model: what stays, then the adds that fit, wider first.
		want := map[enforce.Key]enforce.Element{}
		adds := map[enforce.Key]enforce.Element{}
		for _, e := range add {
			adds[e.Key()] = e
		}
		gone := map[enforce.Key]bool{}
		for _, e := range del {
			gone[e.Key()] = true
		}
		for k, e := range model {
			if _, re := adds[k]; !re && !gone[k] {
				want[k] = e
			}
		}
		var sorted []enforce.Element
		for _, e := range adds {
			sorted = append(sorted, e)
		}
		sort.Slice(sorted, func(i, j int) bool {
			pi, pj := sorted[i].Prefix, sorted[j].Prefix
			if c := pi.Addr().Compare(pj.Addr()); c != 0 {
				return c < 0
			}
			return pi.Bits() < pj.Bits()
		})
		rejected := 0
	next:
		for _, e := range sorted {
			for k := range want {
				if k.Dir == e.Dir && overlaps(k.Prefix, e.Prefix) {
					rejected++
					continue next
				}
			}
			want[e.Key()] = e
		}

		before := b.refused
		err := b.Apply(add, del)
		switch {
		case rejected == 0 && err != nil:
			t.Fatalf("round %d: add %v del %v: %v", round, add, del, err)
		case rejected > 0 && !errors.Is(err, ErrOverlap):
			got, _ := b.Elements()
			t.Fatalf("round %d: add %v del %v: %v, want ErrOverlap for %d\nbefore: %v\nafter: %v", round, add, del, err, rejected, model, got)
		case b.refused != before:
			refusals++
		}
		var list []enforce.Element
		for _, e := range want {
			list = append(list, e)
		}
		checkElements(t, b, list...)
		if t.Failed() {
			t.Fatalf("round %d: add %v del %v", round, add, del)
		}
		model = want
	}
	t.Logf("the kernel refused %d of 300 batches", refusals)
}
