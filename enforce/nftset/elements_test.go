package nftset

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/wardline/wardline/enforce"
)

func el(prefix string, dir enforce.Dir, exp time.Time) enforce.Element {
	return enforce.Element{Prefix: netip.MustParsePrefix(prefix), Dir: dir, Expires: exp}
}

// checkElements compares what the backend reads back with want: the same
// keys, and expiries within a second (none where want has none).
func checkElements(t *testing.T, b *Backend, want ...enforce.Element) {
	t.Helper()
	got, err := b.Elements()
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[enforce.Key]enforce.Element{}
	for _, e := range got {
		if _, dup := byKey[e.Key()]; dup {
			t.Errorf("Elements returned %v twice", e.Key())
		}
		byKey[e.Key()] = e
	}
	for _, w := range want {
		g, ok := byKey[w.Key()]
		if !ok {
			t.Errorf("missing %v", w)
			continue
		}
		delete(byKey, w.Key())
		switch {
		case w.Expires.IsZero() != g.Expires.IsZero():
			t.Errorf("%v: read back as %v", w, g)
		case !w.Expires.IsZero():
			if d := g.Expires.Sub(w.Expires); d > time.Second || d < -time.Second {
				t.Errorf("%v: expires %v, off by %v", w.Key(), g.Expires, d)
			}
		}
	}
	for _, g := range byKey {
		t.Errorf("unexpected %v", g)
	}
}

func TestElementsRoundTrip(t *testing.T) {
	needRoot(t)
	ns := newNetns(t, testID(t)+"-box")
	b := openIn(t, ns)
	now := time.Now()
	src24 := el("198.18.7.0/24", enforce.Src, now.Add(60*time.Second))
	dst32 := el("198.18.9.1/32", enforce.Dst, now.Add(30*time.Second))
	src48 := el("2001:db8:7::/48", enforce.Src, time.Time{}) // the operator's static list: no expiry
	dst128 := el("2001:db8:9::1/128", enforce.Dst, now.Add(100*time.Second))
	top4 := el("255.255.255.0/24", enforce.Src, now.Add(50*time.Second)) // no interval end element
	top6 := el("ff00::/8", enforce.Dst, now.Add(50*time.Second))
	all := []enforce.Element{src24, dst32, src48, dst128, top4, top6}
	if err := b.Apply(all, nil); err != nil {
		t.Fatal(err)
	}
	checkElements(t, b, all...)

	// Applying the same adds again changes nothing but the expiries.
	if err := b.Apply(all, nil); err != nil {
		t.Fatalf("re-apply: %v", err)
	}
	checkElements(t, b, all...)

	// A re-add with another expiry replaces the expiry, both later and
	// earlier.
	src24.Expires = now.Add(120 * time.Second)
	dst128.Expires = now.Add(10 * time.Second)
	if err := b.Apply([]enforce.Element{src24, dst128}, nil); err != nil {
		t.Fatal(err)
	}
	checkElements(t, b, src24, dst32, src48, dst128, top4, top6)

	// Deleting absent elements is not an error, alone or mixed with
	// present ones and with adds, in one batch.
	absent := el("198.18.100.0/24", enforce.Dst, time.Time{})
	if err := b.Apply(nil, []enforce.Element{absent}); err != nil {
		t.Fatalf("delete absent: %v", err)
	}
	newer := el("198.18.8.0/23", enforce.Dst, now.Add(40*time.Second))
	if err := b.Apply([]enforce.Element{newer}, []enforce.Element{absent, dst32, top6}); err != nil {
		t.Fatalf("add and delete: %v", err)
	}
	checkElements(t, b, src24, src48, dst128, top4, newer)

	// A key in both lists is added.
	src48.Expires = now.Add(time.Hour)
	if err := b.Apply([]enforce.Element{src48}, []enforce.Element{src48}); err != nil {
		t.Fatal(err)
	}
	checkElements(t, b, src24, src48, dst128, top4, newer)

	// An expiry that is due still blocks for the minimum time, then the
	// element is gone.
	due := el("198.18.50.0/24", enforce.Src, now.Add(-5*time.Second))
	if err := b.Apply([]enforce.Element{due}, nil); err != nil {
		t.Fatal(err)
	}
	checkElements(t, b, src24, src48, dst128, top4, newer, el("198.18.50.0/24", enforce.Src, time.Now().Add(minTimeout)))
	time.Sleep(minTimeout + 500*time.Millisecond)
	checkElements(t, b, src24, src48, dst128, top4, newer)

	// Invalid input fails before anything is sent.
	bad := enforce.Element{Prefix: netip.MustParsePrefix("198.18.7.9/24"), Dir: enforce.Src}
	if err := b.Apply([]enforce.Element{el("198.18.60.0/24", enforce.Src, time.Time{}), bad}, nil); err == nil || !strings.Contains(err.Error(), "host bits") {
		t.Errorf("unmasked prefix: %v", err)
	}
	checkElements(t, b, src24, src48, dst128, top4, newer)

	if err := b.Apply(nil, []enforce.Element{src24, src48, dst128, top4, newer}); err != nil {
		t.Fatal(err)
	}
	checkElements(t, b)
	if b.refused != 0 {
		t.Errorf("the kernel refused %d batches, want none", b.refused)
	}
}

// TestExternalEdits changes the sets with nft, as an operator might, and
// checks that Elements reports it in a form Apply can undo.
func TestExternalEdits(t *testing.T) {
	needNft(t)
	ns := newNetns(t, testID(t)+"-box")
	b := openIn(t, ns)
	hour := time.Now().Add(time.Hour)

	// A range that is not one prefix reads back as the prefixes that cover
	// it exactly.
	nft(t, ns, "add", "element", "bridge", "wardline", "block_src4", "{ 198.18.20.0-198.18.20.200 timeout 1h }")
	pieces := []enforce.Element{
		el("198.18.20.0/25", enforce.Src, hour),
		el("198.18.20.128/26", enforce.Src, hour),
		el("198.18.20.192/29", enforce.Src, hour),
		el("198.18.20.200/32", enforce.Src, hour),
	}
	checkElements(t, b, pieces...)
	// Deleting one of them removes the range and puts the others back as
	// prefixes with the range's expiry.
	if err := b.Apply(nil, pieces[1:2]); err != nil {
		t.Fatal(err)
	}
	checkElements(t, b, pieces[0], pieces[2], pieces[3])
	if b.refused != 0 {
		t.Errorf("the kernel refused %d batches; Elements had read the range", b.refused)
	}
	if rs := ruleset(t, ns); !strings.Contains(rs, "198.18.20.0/25") || !strings.Contains(rs, "198.18.20.192/29") || strings.Contains(rs, "198.18.20.128/26") {
		t.Errorf("after deleting one piece:\n%s", rs)
	}
	// A re-add of a piece of a range (new expiry) keeps the rest.
	nft(t, ns, "add", "element", "bridge", "wardline", "block_dst4", "{ 198.18.21.0-198.18.21.9 timeout 1h }")
	first := el("198.18.21.0/29", enforce.Dst, time.Now().Add(2*time.Hour))
	if err := b.Apply([]enforce.Element{first}, nil); err != nil {
		t.Fatal(err)
	}
	checkElements(t, b, pieces[0], pieces[2], pieces[3], first, el("198.18.21.8/31", enforce.Dst, hour))
	if err := b.Apply(nil, []enforce.Element{pieces[0], pieces[2], pieces[3], first, el("198.18.21.8/31", enforce.Dst, hour)}); err != nil {
		t.Fatal(err)
	}
	checkElements(t, b)

	// An element someone deleted is read back as missing and Apply puts
	// it back; one someone added without a timeout reads back without an
	// expiry and Apply removes it.
	mine := el("198.18.7.0/24", enforce.Src, hour)
	if err := b.Apply([]enforce.Element{mine}, nil); err != nil {
		t.Fatal(err)
	}
	nft(t, ns, "delete", "element", "bridge", "wardline", "block_src4", "{ 198.18.7.0/24 }")
	nft(t, ns, "add", "element", "bridge", "wardline", "block_dst6", "{ 2001:db8:66::/64 }")
	foreign := el("2001:db8:66::/64", enforce.Dst, time.Time{})
	checkElements(t, b, foreign)
	if err := b.Apply([]enforce.Element{mine}, []enforce.Element{foreign}); err != nil {
		t.Fatal(err)
	}
	checkElements(t, b, mine)
}

func TestOverlap(t *testing.T) {
	needRoot(t)
	ns := newNetns(t, testID(t)+"-box")
	b := openIn(t, ns)
	hour := time.Now().Add(time.Hour)
	inner := el("198.18.7.0/24", enforce.Src, hour)
	if err := b.Apply([]enforce.Element{inner}, nil); err != nil {
		t.Fatal(err)
	}
	outer := el("198.18.0.0/16", enforce.Src, hour)
	fine := el("198.18.50.0/24", enforce.Src, hour)
	otherDir := el("198.18.0.0/16", enforce.Dst, hour) // another set: no conflict
	err := b.Apply([]enforce.Element{outer, fine, otherDir}, nil)
	if !errors.Is(err, ErrOverlap) || !strings.Contains(err.Error(), "198.18.0.0/16") {
		t.Errorf("adding a prefix around an element: %v, want ErrOverlap naming it", err)
	}
	checkElements(t, b, inner, fine, otherDir)

	// Two overlapping adds: the wider one is taken.
	wide, narrow := el("198.18.60.0/24", enforce.Src, hour), el("198.18.60.128/25", enforce.Src, hour)
	if err := b.Apply([]enforce.Element{narrow, wide}, nil); !errors.Is(err, ErrOverlap) || !strings.Contains(err.Error(), "198.18.60.128/25") {
		t.Errorf("overlapping adds: %v, want ErrOverlap naming the narrower", err)
	}
	checkElements(t, b, inner, fine, otherDir, wide)

	// Replacing the elements inside by the outer one in one batch works.
	if err := b.Apply([]enforce.Element{outer}, []enforce.Element{inner, fine, wide}); err != nil {
		t.Errorf("replace: %v", err)
	}
	checkElements(t, b, outer, otherDir)
}

func TestAllow(t *testing.T) {
	needNft(t)
	ns := newNetns(t, testID(t)+"-box")
	b := openIn(t, ns)
	ps := func(s ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, p := range s {
			out = append(out, netip.MustParsePrefix(p))
		}
		return out
	}
	allowSets := func() string {
		var parts []string
		for _, name := range []string{SetAllow4, SetAllow6} {
			rs, err := b.readRanges(name)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rs {
				parts = append(parts, fmt.Sprintf("%v-%v", r.first, r.last))
			}
		}
		sort.Strings(parts)
		return strings.Join(parts, " ")
	}
	for _, tc := range []struct {
		in   []netip.Prefix
		want string
	}{
		{ps("198.18.0.1/32", "198.18.254.0/24", "2001:db8:18::53/128"), "198.18.0.1-198.18.0.1 198.18.254.0-198.18.254.255 2001:db8:18::53-2001:db8:18::53"},
		// Overlapping and adjacent prefixes merge; the old content goes.
		{ps("198.18.0.0/25", "198.18.0.128/25", "198.18.0.7/32", "0.0.0.0/0"), "0.0.0.0-255.255.255.255"},
		{ps("198.18.0.0/25", "198.18.0.128/25", "198.18.0.7/32"), "198.18.0.0-198.18.0.255"},
		{nil, ""},
	} {
		if err := b.Allow(tc.in); err != nil {
			t.Fatalf("Allow(%v): %v", tc.in, err)
		}
		if got := allowSets(); got != tc.want {
			t.Errorf("Allow(%v): sets hold %q, want %q", tc.in, got, tc.want)
		}
		before := ruleset(t, ns)
		if err := b.Allow(tc.in); err != nil {
			t.Fatal(err)
		}
		if after := ruleset(t, ns); after != before {
			t.Errorf("Allow(%v) twice changed the ruleset:\n%s\nwas:\n%s", tc.in, after, before)
		}
	}
	if err := b.Allow([]netip.Prefix{netip.PrefixFrom(netip.MustParseAddr("198.18.0.1"), 24)}); err == nil {
		t.Error("Allow accepted an unmasked prefix")
	}
}

// TestExpiryChurn deletes and re-adds elements that have just expired in
// the kernel (and may not be collected yet), many at once: nothing may
// fail, and the sets must end as asked.
func TestExpiryChurn(t *testing.T) {
	needRoot(t)
	ns := newNetns(t, testID(t)+"-box")
	b := openIn(t, ns)
	soon := time.Now() // minTimeout from now
	var hosts, nets []enforce.Element
	for i := range 300 {
		hosts = append(hosts, el(fmt.Sprintf("198.18.%d.%d/32", i/200, i%200+1), enforce.Src, soon))
		nets = append(nets, el(fmt.Sprintf("198.19.%d.%d/26", i/4, i%4*64), enforce.Dst, soon))
	}
	if err := b.Apply(append(hosts, nets...), nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(minTimeout + 300*time.Millisecond)
	later := time.Now().Add(time.Hour)
	for i := range hosts {
		hosts[i].Expires = later
	}
	if err := b.Apply(hosts, nets); err != nil {
		t.Fatalf("re-adding and deleting just-expired elements: %v", err)
	}
	if b.refused != 0 {
		t.Errorf("the kernel refused %d batches", b.refused)
	}
	checkElements(t, b, hosts...)
}
