package nftset

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/wardline/wardline/enforce"
)

func mustSpan(first, last string) span {
	return span{netip.MustParseAddr(first), netip.MustParseAddr(last)}
}

func TestSpanPrefixes(t *testing.T) {
	for _, tc := range []struct {
		s    span
		want string
	}{
		{mustSpan("198.18.7.0", "198.18.7.255"), "198.18.7.0/24"},
		{mustSpan("198.18.20.0", "198.18.20.200"), "198.18.20.0/25 198.18.20.128/26 198.18.20.192/29 198.18.20.200/32"},
		{mustSpan("10.0.0.1", "10.0.0.6"), "10.0.0.1/32 10.0.0.2/31 10.0.0.4/31 10.0.0.6/32"},
		{mustSpan("0.0.0.0", "255.255.255.255"), "0.0.0.0/0"},
		{mustSpan("255.255.255.255", "255.255.255.255"), "255.255.255.255/32"},
		{mustSpan("128.0.0.0", "255.255.255.255"), "128.0.0.0/1"},
		{mustSpan("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), "::/0"},
		{mustSpan("2001:db8::", "2001:db8::ffff:ffff:ffff:ffff"), "2001:db8::/64"},
		{mustSpan("2001:db8::1", "2001:db8::2"), "2001:db8::1/128 2001:db8::2/128"},
		{mustSpan("::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"), ""}, // checked by the property below
	} {
		var got []string
		for _, p := range spanPrefixes(tc.s) {
			got = append(got, p.String())
		}
		if tc.want != "" && strings.Join(got, " ") != tc.want {
			t.Errorf("spanPrefixes(%v-%v) = %v, want %s", tc.s.first, tc.s.last, got, tc.want)
		}
		checkCover(t, tc.s)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		var a, b netip.Addr
		if rng.IntN(2) == 0 {
			a = netip.AddrFrom4([4]byte{198, 18, byte(rng.IntN(4)), byte(rng.IntN(256))})
			b = netip.AddrFrom4([4]byte{198, 18, byte(rng.IntN(4)), byte(rng.IntN(256))})
		} else {
			var x, y [16]byte
			x[0], y[0] = 0x20, 0x20
			x[15], y[15] = byte(rng.IntN(256)), byte(rng.IntN(256))
			x[8], y[8] = byte(rng.IntN(3)), byte(rng.IntN(3))
			a, b = netip.AddrFrom16(x), netip.AddrFrom16(y)
		}
		if a.Compare(b) > 0 {
			a, b = b, a
		}
		checkCover(t, span{a, b})
	}
}

// checkCover asserts that spanPrefixes(s) covers s exactly, in order, with
// prefixes no two neighbours of which could merge into one prefix.
func checkCover(t *testing.T, s span) {
	t.Helper()
	ps := spanPrefixes(s)
	next := s.first
	for i, p := range ps {
		if p != p.Masked() || p.Addr() != next {
			t.Fatalf("%v-%v: piece %d is %v, want one starting at %v", s.first, s.last, i, p, next)
		}
		if i > 0 && ps[i-1].Bits() == p.Bits() && ps[i-1].Addr() == netip.PrefixFrom(p.Addr(), p.Bits()-1).Masked().Addr() {
			t.Fatalf("%v-%v: %v and %v could be one prefix", s.first, s.last, ps[i-1], p)
		}
		next = lastAddr(p).Next()
	}
	if last := lastAddr(ps[len(ps)-1]); last != s.last {
		t.Fatalf("%v-%v: pieces end at %v", s.first, s.last, last)
	}
}

func TestLastAddr(t *testing.T) {
	for in, want := range map[string]string{
		"198.18.7.0/24":   "198.18.7.255",
		"198.18.0.0/15":   "198.19.255.255",
		"0.0.0.0/0":       "255.255.255.255",
		"198.18.7.9/32":   "198.18.7.9",
		"2001:db8::/32":   "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
		"2001:db8::1/128": "2001:db8::1",
	} {
		if got := lastAddr(netip.MustParsePrefix(in)).String(); got != want {
			t.Errorf("lastAddr(%s) = %s, want %s", in, got, want)
		}
	}
}

func setEl(addr string, end bool, timeout time.Duration) nftables.SetElement {
	return nftables.SetElement{Key: netip.MustParseAddr(addr).AsSlice(), IntervalEnd: end, Timeout: timeout, Expires: timeout / 2}
}

func TestToRanges(t *testing.T) {
	show := func(rs []krange) string {
		var out []string
		for _, r := range rs {
			out = append(out, fmt.Sprintf("%v-%v/%v/%v", r.first, r.last, r.hasEnd, r.timeout))
		}
		return strings.Join(out, " ")
	}
	for _, tc := range []struct {
		name string
		in   []nftables.SetElement
		want string
	}{
		{"pair, dumped highest first as the kernel does", []nftables.SetElement{setEl("198.18.8.0", true, 0), setEl("198.18.7.0", false, time.Minute)},
			"198.18.7.0-198.18.7.255/true/1m0s"},
		{"adjacent ranges share a key", []nftables.SetElement{setEl("10.0.0.0", false, 0), setEl("10.0.1.0", true, 0), setEl("10.0.1.0", false, time.Second), setEl("10.0.2.0", true, 0)},
			"10.0.0.0-10.0.0.255/true/0s 10.0.1.0-10.0.1.255/true/1s"},
		{"open to the top", []nftables.SetElement{setEl("255.255.255.0", false, 0)}, "255.255.255.0-255.255.255.255/false/0s"},
		{"end whose start expired", []nftables.SetElement{setEl("10.0.1.0", true, 0), setEl("10.0.5.0", false, 0), setEl("10.0.6.0", true, 0)},
			"10.0.5.0-10.0.5.255/true/0s"},
		{"start after start", []nftables.SetElement{setEl("10.0.0.0", false, 0), setEl("10.0.0.128", false, time.Second), setEl("10.0.1.0", true, 0)},
			"10.0.0.0-10.0.0.127/false/0s 10.0.0.128-10.0.0.255/true/1s"},
		{"ipv6", []nftables.SetElement{setEl("2001:db8:7::", false, 0), setEl("2001:db8:8::", true, 0)}, "2001:db8:7::-2001:db8:7:ffff:ffff:ffff:ffff:ffff/true/0s"},
	} {
		if got := show(toRanges(tc.in)); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestMergeSpans(t *testing.T) {
	var ps []netip.Prefix
	for _, s := range []string{"198.18.0.128/25", "198.18.0.7/32", "198.18.0.0/25", "198.18.2.0/24", "198.18.1.0/24", "203.0.113.0/24"} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	var got []string
	for _, s := range mergeSpans(ps) {
		got = append(got, s.first.String()+"-"+s.last.String())
	}
	if want := "198.18.0.0-198.18.2.255 203.0.113.0-203.0.113.255"; strings.Join(got, " ") != want {
		t.Errorf("mergeSpans = %v, want %s", got, want)
	}
}

func TestTimeoutUntil(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		exp  time.Time
		want time.Duration
	}{
		{time.Time{}, 0},
		{now.Add(time.Hour), time.Hour},
		{now.Add(1500*time.Millisecond + 1), 1501 * time.Millisecond}, // rounded up to the millisecond
		{now.Add(100 * time.Millisecond), minTimeout},
		{now.Add(-time.Hour), minTimeout},
	} {
		if got := timeoutUntil(tc.exp, now); got != tc.want {
			t.Errorf("timeoutUntil(now%+v) = %v, want %v", tc.exp.Sub(now), got, tc.want)
		}
	}
}

// TestPlan checks the planning against a view of a set without a kernel.
func TestPlan(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	hour := now.Add(time.Hour)
	view := func() *setCache {
		return newSetCache([]krange{ // in address order, as toRanges returns them
			{span: mustSpan("198.18.7.0", "198.18.7.255"), hasEnd: true},
			{span: mustSpan("198.18.9.0", "198.18.9.255"), hasEnd: true, timeout: time.Minute, expires: -5 * time.Second}, // expired
			{span: mustSpan("198.18.20.0", "198.18.20.200"), hasEnd: true, timeout: time.Hour, expires: time.Hour},
		}, now)
	}
	// elements lists a batch phase as "set:addr[/end][+timeout]".
	elements := func(q *batch, phase int) string {
		var out []string
		for _, g := range q.phases[phase][SetBlockSrc4] {
			for _, e := range g {
				a, _ := netip.AddrFromSlice(e.Key)
				s := a.String()
				if e.IntervalEnd {
					s += "/end"
				}
				if e.Timeout != 0 {
					s += "+" + e.Timeout.String()
				}
				out = append(out, s)
			}
		}
		return strings.Join(out, " ")
	}
	for _, tc := range []struct {
		name          string
		adds          []enforce.Element
		dels          []string
		del, add      string // phaseDel and phaseAdd
		overlaps      []string
		removed, left int
	}{
		{name: "delete a piece of a hand-made range", dels: []string{"198.18.20.128/26"},
			del:     "198.18.20.0 198.18.20.201/end",
			add:     "198.18.20.0+1h0m0s 198.18.20.128/end 198.18.20.192+1h0m0s 198.18.20.200/end 198.18.20.200+1h0m0s 198.18.20.201/end",
			removed: 1, left: 5},
		{name: "delete an absent prefix", dels: []string{"198.18.7.0/25", "198.18.30.0/24"}, left: 3},
		{name: "re-add", adds: []enforce.Element{el("198.18.7.0/24", enforce.Src, hour)},
			del: "198.18.7.0 198.18.8.0/end", add: "198.18.7.0+1h0m0s 198.18.8.0/end", removed: 1, left: 3},
		{name: "add around an element", adds: []enforce.Element{el("198.18.0.0/16", enforce.Src, hour), el("198.18.50.0/24", enforce.Src, hour)},
			add: "198.18.50.0+1h0m0s 198.18.51.0/end", overlaps: []string{"198.18.0.0/16"}, left: 4},
		{name: "replace an element by a wider one", adds: []enforce.Element{el("198.18.6.0/23", enforce.Src, hour)}, dels: []string{"198.18.7.0/24"},
			del: "198.18.7.0 198.18.8.0/end", add: "198.18.6.0+1h0m0s 198.18.8.0/end", removed: 1, left: 3},
		{name: "overlapping adds", adds: []enforce.Element{el("198.18.40.128/25", enforce.Src, hour), el("198.18.40.0/24", enforce.Src, hour)},
			add: "198.18.40.0+1h0m0s 198.18.41.0/end", overlaps: []string{"198.18.40.128/25"}, left: 4},
		{name: "add over an expired element", adds: []enforce.Element{el("198.18.9.0/24", enforce.Src, hour)},
			del: "198.18.9.0 198.18.10.0/end", add: "198.18.9.0+1h0m0s 198.18.10.0/end", removed: 1, left: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := view()
			w := &setWork{adds: tc.adds}
			for _, d := range tc.dels {
				w.dels = append(w.dels, netip.MustParsePrefix(d))
			}
			q := newBatch()
			p := c.plan(SetBlockSrc4, w, now, q)
			if got := elements(q, phaseDel); got != tc.del {
				t.Errorf("deletes %q, want %q", got, tc.del)
			}
			if got := elements(q, phasePre); got != tc.del {
				t.Errorf("the deletes are not made safe first: %q, want %q", got, tc.del)
			}
			if got := elements(q, phaseAdd); got != tc.add {
				t.Errorf("adds %q, want %q", got, tc.add)
			}
			var overlaps []string
			for _, err := range p.overlaps {
				if !errors.Is(err, ErrOverlap) {
					t.Errorf("overlap error %v is not ErrOverlap", err)
				}
				overlaps = append(overlaps, strings.Fields(err.Error())[2])
			}
			if !slices.Equal(overlaps, tc.overlaps) {
				t.Errorf("overlaps %v, want %v", overlaps, tc.overlaps)
			}
			if len(p.removed) != tc.removed {
				t.Errorf("removed %d ranges, want %d", len(p.removed), tc.removed)
			}
			c.update(p.removed, p.added)
			if len(c.ranges) != tc.left {
				t.Errorf("view holds %d ranges after the batch, want %d", len(c.ranges), tc.left)
			}
			for i := 1; i < len(c.ranges); i++ {
				if c.ranges[i-1].last.Compare(c.ranges[i].first) >= 0 {
					t.Errorf("view out of order or overlapping: %v then %v", c.ranges[i-1].span, c.ranges[i].span)
				}
			}
			for p, r := range c.byPiece {
				if !slices.Contains(c.ranges, r) {
					t.Errorf("index holds %v of a removed range", p)
				}
			}
		})
	}
}

// TestRulesDecode checks that the rules Ensure builds compare equal to
// themselves after a marshal/unmarshal round trip, as sameRules needs.
func TestRulesDecode(t *testing.T) {
	b := &Backend{table: &nftables.Table{Name: "wardline", Family: nftables.TableFamilyBridge}}
	var rules []*nftables.Rule
	for _, exprs := range b.desiredRules() {
		var got []expr.Any
		for _, e := range exprs {
			fam := byte(nftables.TableFamilyBridge)
			data, err := expr.MarshalExprData(fam, e)
			if err != nil {
				t.Fatal(err)
			}
			d := reflect.New(reflect.TypeOf(e).Elem()).Interface().(expr.Any)
			if err := expr.Unmarshal(fam, data, d); err != nil {
				t.Fatal(err)
			}
			got = append(got, d)
		}
		rules = append(rules, &nftables.Rule{Exprs: got})
	}
	if !sameRules(rules, b.desiredRules()) {
		t.Errorf("decoded rules differ from the built ones")
	}
	rules[4].Exprs[3].(*expr.Lookup).SetName = SetBlockDst4
	if sameRules(rules, b.desiredRules()) {
		t.Errorf("a rule that looks up the wrong set compares equal")
	}
}
