package nftset

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/google/nftables"

	"github.com/wardline/wardline/enforce"
)

// prefixesPerMsg bounds the prefixes in one NEWSETELEM/DELSETELEM message:
// the element list is one netlink attribute, whose length is 16 bits. A
// prefix encodes to at most 76 bytes (IPv6 start with timeout plus end).
const prefixesPerMsg = 512

// minTimeout is the shortest timeout Apply gives an element: an expiry
// that is due (or past) still blocks for this long rather than not at all.
const minTimeout = time.Second

// expiryMargin is how long after its expiry a cached element still
// counts as present: the kernel's clock (jiffies) and ours differ by a
// little. A conflict with such an element makes Apply read the set.
const expiryMargin = time.Second

func setName(dir enforce.Dir, v6 bool) string {
	switch {
	case !v6 && dir == enforce.Src:
		return SetBlockSrc4
	case !v6:
		return SetBlockDst4
	case dir == enforce.Src:
		return SetBlockSrc6
	default:
		return SetBlockDst6
	}
}

func elementSet(k enforce.Key) string { return setName(k.Dir, !k.Prefix.Addr().Is4()) }

// timeoutUntil is the element timeout for an expiry: none for a zero
// expiry, else the time left, at least minTimeout, rounded up to the
// kernel's millisecond.
func timeoutUntil(exp, now time.Time) time.Duration {
	if exp.IsZero() {
		return 0
	}
	d := exp.Sub(now)
	if d < minTimeout {
		d = minTimeout
	}
	return (d + time.Millisecond - 1).Truncate(time.Millisecond)
}

func validElement(e enforce.Element) error {
	if !e.Prefix.IsValid() {
		return fmt.Errorf("element %v: invalid prefix", e)
	}
	if e.Prefix != e.Prefix.Masked() {
		return fmt.Errorf("element %v: prefix has host bits set (want %v)", e, e.Prefix.Masked())
	}
	if e.Dir != enforce.Src && e.Dir != enforce.Dst {
		return fmt.Errorf("element %v: unknown direction %d", e, e.Dir)
	}
	return nil
}

// readRanges dumps one set and pairs its elements into ranges.
func (b *Backend) readRanges(name string) ([]krange, error) {
	els, err := b.conn.GetSetElements(b.sets[name])
	if err != nil {
		return nil, fmt.Errorf("list elements of set %s: %w", name, err)
	}
	return toRanges(els), nil
}

// crange is a range of a block set as the Backend believes the kernel
// holds it.
type crange struct {
	span
	hasEnd  bool      // an interval end element follows (else open to the top)
	expires time.Time // zero: no timeout
	pieces  []netip.Prefix
}

func (r *crange) rawElements() []nftables.SetElement {
	el := []nftables.SetElement{{Key: r.first.AsSlice()}}
	if r.hasEnd {
		el = append(el, nftables.SetElement{Key: r.last.Next().AsSlice(), IntervalEnd: true})
	}
	return el
}

// alive reports whether r may still be in the kernel at now.
func (r *crange) alive(now time.Time) bool {
	return r.expires.IsZero() || now.Before(r.expires.Add(expiryMargin))
}

// setCache is the Backend's view of one block set: its ranges, disjoint
// and in address order, and an index from each range's prefixes to it.
type setCache struct {
	read    time.Time
	ranges  []*crange
	byPiece map[netip.Prefix]*crange
}

func newSetCache(rs []krange, read time.Time) *setCache {
	c := &setCache{read: read, ranges: make([]*crange, 0, len(rs)), byPiece: make(map[netip.Prefix]*crange, len(rs))}
	for _, r := range rs {
		cr := &crange{span: r.span, hasEnd: r.hasEnd, pieces: spanPrefixes(r.span)}
		if r.timeout != 0 {
			cr.expires = read.Add(r.expires)
		}
		c.ranges = append(c.ranges, cr)
		for _, p := range cr.pieces {
			c.byPiece[p] = cr
		}
	}
	return c
}

// overlapping returns the ranges that overlap s.
func (c *setCache) overlapping(s span) []*crange {
	i := sort.Search(len(c.ranges), func(i int) bool { return c.ranges[i].last.Compare(s.first) >= 0 })
	j := i
	for j < len(c.ranges) && c.ranges[j].first.Compare(s.last) <= 0 {
		j++
	}
	return c.ranges[i:j]
}

// update removes and adds ranges after a committed batch.
func (c *setCache) update(removed map[*crange]bool, added []*crange) {
	if len(removed)+len(added) == 0 {
		return
	}
	defer func() {
		for r := range removed {
			for _, p := range r.pieces {
				if c.byPiece[p] == r {
					delete(c.byPiece, p)
				}
			}
		}
		for _, r := range added {
			for _, p := range r.pieces {
				c.byPiece[p] = r
			}
		}
	}()
	if len(removed)+len(added) <= 16 { // a few decisions: in place
		for r := range removed {
			i := c.search(r.first)
			if i < len(c.ranges) && c.ranges[i] == r {
				c.ranges = slices.Delete(c.ranges, i, i+1)
			}
		}
		for _, r := range added {
			c.ranges = slices.Insert(c.ranges, c.search(r.first), r)
		}
		return
	}
	sort.Slice(added, func(i, j int) bool { return added[i].first.Compare(added[j].first) < 0 })
	merged := make([]*crange, 0, len(c.ranges)+len(added))
	j := 0
	for _, r := range c.ranges {
		if removed[r] {
			continue
		}
		for j < len(added) && added[j].first.Compare(r.first) < 0 {
			merged = append(merged, added[j])
			j++
		}
		merged = append(merged, r)
	}
	merged = append(merged, added[j:]...)
	c.ranges = merged
}

// search is the index of the first range that starts at or after a.
func (c *setCache) search(a netip.Addr) int {
	return sort.Search(len(c.ranges), func(i int) bool { return c.ranges[i].first.Compare(a) >= 0 })
}

// refresh reads set name into the cache.
func (b *Backend) refresh(name string) (*setCache, error) {
	now := b.now()
	rs, err := b.readRanges(name)
	if err != nil {
		b.cache[name] = nil
		return nil, err
	}
	c := newSetCache(rs, now)
	b.cache[name] = c
	return c, nil
}

// Elements implements enforce.Backend: the elements of the four block
// sets, with the expiry the kernel reports. A range that is not exactly
// one prefix (someone added it by hand) is returned as the prefixes that
// cover it, each with the range's expiry; Apply can delete each of them.
func (b *Backend) Elements() ([]enforce.Element, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []enforce.Element
	for _, s := range blockSets {
		c, err := b.refresh(s.name)
		if err != nil {
			return nil, fmt.Errorf("nft elements: %w", err)
		}
		dir := enforce.Src
		if s.dst {
			dir = enforce.Dst
		}
		for _, r := range c.ranges {
			for _, p := range r.pieces {
				out = append(out, enforce.Element{Prefix: p, Dir: dir, Expires: r.expires})
			}
		}
	}
	return out, nil
}

// Counters implements enforce.CountingBackend with the per-element
// counters of the block sets: packets and bytes dropped since the element
// was last added (a re-add with a new expiry starts from zero). A
// hand-made range that is not one prefix reports its counts under the
// first of its prefixes.
func (b *Backend) Counters() (map[enforce.Key]enforce.Counters, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[enforce.Key]enforce.Counters{}
	for _, s := range blockSets {
		now := b.now()
		rs, err := b.readRanges(s.name)
		if err != nil {
			return nil, fmt.Errorf("nft counters: %w", err)
		}
		b.cache[s.name] = newSetCache(rs, now)
		dir := enforce.Src
		if s.dst {
			dir = enforce.Dst
		}
		for _, r := range rs {
			p := spanPrefixes(r.span)[0]
			out[enforce.Key{Prefix: p, Dir: dir}] = enforce.Counters{Packets: r.packets, Bytes: r.bytes}
		}
	}
	return out, nil
}

// batch collects element operations per set in the order a transaction
// needs them: deletes (each made unable to fail, see remove) before adds,
// so that an add may take the place of what was deleted.
type batch struct {
	phases [numPhases]map[string][][]nftables.SetElement // set → each range's elements
}

const (
	phasePre = iota // make the deleted elements present (no-op for present ones)
	phaseDel        // delete them
	phaseAdd        // add
	numPhases
)

func newBatch() *batch {
	q := &batch{}
	for i := range q.phases {
		q.phases[i] = map[string][][]nftables.SetElement{}
	}
	return q
}

// remove queues a delete that succeeds whether or not the elements still
// exist (an element may expire between the planning and the commit).
// nf_tables fails a whole transaction that deletes an absent element, and
// the kernels the appliance runs (6.1) have no DESTROYSETELEM; so the
// elements are first added (a no-op for present ones: no NLM_F_EXCL) and
// then deleted, in the same transaction.
//
// A range is deleted start element first, then its end, in one message:
// Linux 6.18 checks that an end it deletes belongs to the start deleted
// just before by looking at the end's neighbour in the tree, and elements
// deleted earlier in the same transaction (they stay in the tree until the
// commit) lying between the two make that check fail with ENOENT. Ranges
// deleted in one batch are therefore always disjoint.
func (q *batch) remove(set string, els []nftables.SetElement) {
	bare := make([]nftables.SetElement, len(els))
	for i, e := range els {
		bare[i] = nftables.SetElement{Key: e.Key, IntervalEnd: e.IntervalEnd}
	}
	q.phases[phasePre][set] = append(q.phases[phasePre][set], bare)
	q.phases[phaseDel][set] = append(q.phases[phaseDel][set], bare)
}

func (q *batch) add(set string, els []nftables.SetElement) {
	q.phases[phaseAdd][set] = append(q.phases[phaseAdd][set], els)
}

func (q *batch) empty() bool {
	for _, m := range q.phases {
		if len(m) > 0 {
			return false
		}
	}
	return true
}

// queue puts the batch on the connection: per phase, per set, messages of
// at most prefixesPerMsg ranges.
func (b *Backend) queue(q *batch) error {
	for phase, m := range q.phases {
		for _, name := range setOrder {
			groups := m[name]
			for len(groups) > 0 {
				n := min(len(groups), prefixesPerMsg)
				var els []nftables.SetElement
				for _, g := range groups[:n] {
					els = append(els, g...)
				}
				groups = groups[n:]
				var err error
				if phase == phaseDel {
					err = b.conn.SetDeleteElements(b.sets[name], els)
				} else {
					err = b.conn.SetAddElements(b.sets[name], els)
				}
				if err != nil {
					return fmt.Errorf("queue elements of set %s: %w", name, err)
				}
			}
		}
	}
	return nil
}

// setWork is what one Apply asks of one set.
type setWork struct {
	adds []enforce.Element // in the caller's order, one per key
	dels []netip.Prefix
}

// setPlan is one set's part of a batch and the cache change it makes.
type setPlan struct {
	removed  map[*crange]bool
	added    []*crange
	overlaps []error
}

// plan computes what set name must do for w: every range that holds a
// deleted or re-added prefix goes and its other prefixes come back with
// the range's expiry; an added prefix that overlaps an element that stays
// (or a wider added prefix) is refused with ErrOverlap, since an interval
// set holds disjoint ranges only. Nothing is asked of the kernel's own
// overlap check: Linux 6.18 accepts, without an error, a range that shares
// its end with a range inside it, and merges the two.
func (c *setCache) plan(name string, w *setWork, now time.Time, q *batch) *setPlan {
	p := &setPlan{removed: map[*crange]bool{}}
	taken := map[*crange]map[netip.Prefix]bool{}
	var order []*crange // touched ranges, in the order found
	take := func(r *crange, pf netip.Prefix) {
		if taken[r] == nil {
			taken[r] = map[netip.Prefix]bool{}
			order = append(order, r)
		}
		taken[r][pf] = true
	}
	for _, pf := range w.dels {
		if r := c.byPiece[pf]; r != nil {
			take(r, pf)
		}
	}
	for _, e := range w.adds {
		if r := c.byPiece[e.Prefix]; r != nil {
			take(r, e.Prefix)
		}
	}

	adds := append([]enforce.Element(nil), w.adds...)
	sort.SliceStable(adds, func(i, j int) bool {
		pi, pj := adds[i].Prefix, adds[j].Prefix
		if c := pi.Addr().Compare(pj.Addr()); c != 0 {
			return c < 0
		}
		return pi.Bits() < pj.Bits()
	})
	var accepted []enforce.Element
	var acceptedLast netip.Addr
	for _, e := range adds {
		s := spanOf(e.Prefix)
		// Sorted by address, wider first: an add overlaps an accepted one
		// only by lying inside the last wide one.
		if acceptedLast.IsValid() && s.first.Compare(acceptedLast) <= 0 {
			p.overlaps = append(p.overlaps, fmt.Errorf("add %v: %w: a wider added prefix covers it", e, ErrOverlap))
			continue
		}
		var conflict *crange
		var expired []*crange
		for _, r := range c.overlapping(s) {
			if !r.alive(now) {
				expired = append(expired, r)
				continue
			}
			tk := taken[r]
			for _, pf := range r.pieces {
				if !tk[pf] && pf.Overlaps(e.Prefix) {
					conflict = r
				}
			}
		}
		if conflict != nil {
			p.overlaps = append(p.overlaps, fmt.Errorf("add %v: %w: set %s holds %v-%v", e, ErrOverlap, name, conflict.first, conflict.last))
			continue
		}
		for _, r := range expired { // gone for lookups; make sure before adding over it
			for _, pf := range r.pieces {
				take(r, pf)
			}
		}
		accepted = append(accepted, e)
		acceptedLast = s.last
	}

	for _, r := range order {
		q.remove(name, r.rawElements())
		p.removed[r] = true
		var timeout time.Duration
		if !r.expires.IsZero() {
			timeout = r.expires.Sub(now)
			if timeout < time.Millisecond {
				continue // expiring now: nothing comes back
			}
			timeout = (timeout + time.Millisecond - 1).Truncate(time.Millisecond)
		}
		for _, pf := range r.pieces {
			if !taken[r][pf] {
				s := spanOf(pf)
				q.add(name, intervalElements(s, timeout))
				p.added = append(p.added, &crange{span: s, hasEnd: !isMax(s.last), expires: r.expires, pieces: []netip.Prefix{pf}})
			}
		}
	}
	for _, e := range accepted {
		s := spanOf(e.Prefix)
		timeout := timeoutUntil(e.Expires, now)
		q.add(name, intervalElements(s, timeout))
		r := &crange{span: s, hasEnd: !isMax(s.last), pieces: []netip.Prefix{e.Prefix}}
		if timeout != 0 {
			r.expires = now.Add(timeout)
		}
		p.added = append(p.added, r)
	}
	return p
}

// Apply implements enforce.Backend: add and del go into one netlink
// transaction (one batch, one Flush). Each added element replaces a
// present one with the same key (deleted and added again, in the same
// transaction) and gets a timeout that ends at its Expires (at least one
// second; none for a zero Expires); each deleted one is removed if
// present. A key in both lists is added. Invalid elements fail the call
// before anything is sent.
//
// Apply plans against its view of the sets, as nft does: the last
// Elements or Counters read (or this Apply's own read when there was none)
// updated by every batch since. It does not read the sets each time: a
// dump of an interval set costs O(n²) in the kernel (about 4 s for 100k
// elements here). When the kernel refuses the batch, or the plan finds a
// conflict in a view that was not read just now, Apply reads the sets it
// touches and plans once more. Ranges that
// contain a deleted or re-added prefix are replaced by their remaining
// prefixes. An added prefix that would overlap an element that stays is
// left out and reported with ErrOverlap; the rest is applied.
func (b *Backend) Apply(add, del []enforce.Element) error {
	work := map[string]*setWork{}
	get := func(k enforce.Key) *setWork {
		name := elementSet(k)
		if work[name] == nil {
			work[name] = &setWork{}
		}
		return work[name]
	}
	adds := make(map[enforce.Key]int, len(add))
	for _, e := range add {
		if err := validElement(e); err != nil {
			return fmt.Errorf("nft apply: add %w", err)
		}
		w := get(e.Key())
		if i, ok := adds[e.Key()]; ok {
			w.adds[i] = e // the last one wins
			continue
		}
		adds[e.Key()] = len(w.adds)
		w.adds = append(w.adds, e)
	}
	seen := map[enforce.Key]bool{}
	for _, e := range del {
		if err := validElement(e); err != nil {
			return fmt.Errorf("nft apply: delete %w", err)
		}
		if _, ok := adds[e.Key()]; ok || seen[e.Key()] {
			continue
		}
		seen[e.Key()] = true
		w := get(e.Key())
		w.dels = append(w.dels, e.Prefix)
	}
	if len(work) == 0 {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()

	var refused error
	for attempt := 0; attempt < 2; attempt++ {
		now := b.now()
		fresh := true
		for name := range work {
			if attempt > 0 || b.cache[name] == nil {
				if _, err := b.refresh(name); err != nil {
					return fmt.Errorf("nft apply: %w", err)
				}
			} else {
				fresh = false
			}
		}
		q := newBatch()
		plans := map[string]*setPlan{}
		var overlaps []error
		for _, name := range setOrder {
			if w := work[name]; w != nil {
				plans[name] = b.cache[name].plan(name, w, now, q)
				overlaps = append(overlaps, plans[name].overlaps...)
			}
		}
		if len(overlaps) > 0 && !fresh {
			continue // the conflict may be with something that is gone
		}
		if !q.empty() {
			if err := b.queue(q); err != nil {
				return fmt.Errorf("nft apply: %w", err)
			}
			if err := b.flush(); err != nil {
				b.refused++
				refused = err
				continue
			}
		}
		for name, p := range plans {
			b.cache[name].update(p.removed, p.added)
		}
		return errors.Join(overlaps...)
	}
	for name := range work {
		b.cache[name] = nil // unknown after a refused batch
	}
	return fmt.Errorf("nft apply (%d adds, %d deletes): %w", len(adds), len(seen), refused)
}

// Allow implements enforce.Backend: afterwards allow4 and allow6 hold
// exactly prefixes (overlapping and adjacent ones merged). It sends
// nothing when they already do, else one transaction that flushes both
// sets and fills them again, so no packet sees them half-filled.
func (b *Backend) Allow(prefixes []netip.Prefix) error {
	var p4, p6 []netip.Prefix
	for _, p := range prefixes {
		if !p.IsValid() || p != p.Masked() {
			return fmt.Errorf("nft allow: invalid or unmasked prefix %v", p)
		}
		if p.Addr().Is4() {
			p4 = append(p4, p)
		} else {
			p6 = append(p6, p)
		}
	}
	want := map[string][]span{SetAllow4: mergeSpans(p4), SetAllow6: mergeSpans(p6)}
	b.mu.Lock()
	defer b.mu.Unlock()
	same := true
	for _, name := range []string{SetAllow4, SetAllow6} {
		rs, err := b.readRanges(name)
		if err != nil {
			return fmt.Errorf("nft allow: %w", err)
		}
		if len(rs) != len(want[name]) {
			same = false
			continue
		}
		for i, r := range rs {
			if r.span != want[name][i] {
				same = false
			}
		}
	}
	if same {
		return nil
	}
	q := newBatch()
	for _, name := range []string{SetAllow4, SetAllow6} {
		b.conn.FlushSet(b.sets[name])
		for _, s := range want[name] {
			q.add(name, intervalElements(s, 0))
		}
	}
	if err := b.queue(q); err != nil {
		return fmt.Errorf("nft allow: %w", err)
	}
	if err := b.flush(); err != nil {
		return fmt.Errorf("nft allow (%d prefixes): %w", len(prefixes), err)
	}
	return nil
}
