package nftset

import (
	"fmt"
	"math/bits"
	"reflect"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// blockSets are the sets that hold elements, in the order Elements
// reads them.
var blockSets = []struct {
	name string
	v6   bool
	dst  bool
}{
	{SetBlockSrc4, false, false},
	{SetBlockDst4, false, true},
	{SetBlockSrc6, true, false},
	{SetBlockDst6, true, true},
}

// setOrder is the order in which Ensure creates the sets (and so the order
// `nft list ruleset` prints them).
var setOrder = []string{SetBlockSrc4, SetBlockDst4, SetBlockSrc6, SetBlockDst6, SetAllow4, SetAllow6}

func desiredSets(t *nftables.Table) map[string]*nftables.Set {
	m := map[string]*nftables.Set{}
	for _, name := range setOrder {
		s := &nftables.Set{Table: t, Name: name, KeyType: nftables.TypeIPAddr, Interval: true}
		if name == SetBlockSrc6 || name == SetBlockDst6 || name == SetAllow6 {
			s.KeyType = nftables.TypeIP6Addr
		}
		if name != SetAllow4 && name != SetAllow6 {
			s.HasTimeout = true
			s.Counter = true // per-element counters
		}
		m[name] = s
	}
	return m
}

func (b *Backend) desiredChain() *nftables.Chain {
	prio := nftables.ChainPriority(-200)
	policy := nftables.ChainPolicyAccept
	return &nftables.Chain{
		Name:     ChainForward,
		Table:    b.table,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookForward, // NF_BR_FORWARD has the value of NF_INET_FORWARD
		Priority: &prio,
		Policy:   &policy,
	}
}

// Byte offsets in the IPv4 and IPv6 headers and EtherTypes.
var (
	ethIPv4 = []byte{0x08, 0x00}
	ethIPv6 = []byte{0x86, 0xdd}
)

// desiredRules are the chain's rules in order: the never-block sets first,
// so an allow entry wins over any block.
func (b *Backend) desiredRules() [][]expr.Any {
	match := func(v6, dst bool, set string, verdict expr.VerdictKind) []expr.Any {
		proto, off, n := ethIPv4, uint32(12), uint32(4) // ip saddr
		if v6 {
			proto, off, n = ethIPv6, 8, 16 // ip6 saddr
		}
		if dst {
			off += n // daddr follows saddr in both headers
		}
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: proto},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
			&expr.Lookup{SourceRegister: 1, SetName: set},
			&expr.Counter{},
			&expr.Verdict{Kind: verdict},
		}
	}
	return [][]expr.Any{
		match(false, false, SetAllow4, expr.VerdictAccept),
		match(false, true, SetAllow4, expr.VerdictAccept),
		match(true, false, SetAllow6, expr.VerdictAccept),
		match(true, true, SetAllow6, expr.VerdictAccept),
		match(false, false, SetBlockSrc4, expr.VerdictDrop),
		match(false, true, SetBlockDst4, expr.VerdictDrop),
		match(true, false, SetBlockSrc6, expr.VerdictDrop),
		match(true, true, SetBlockDst6, expr.VerdictDrop),
	}
}

// Ensure makes the table match the design above and returns what it
// changed (nothing when the table already matched; then it sends no batch
// at all). It repairs a table that someone edited: a missing or different
// set is (re)created (a recreated set loses its elements: the Reconciler
// adds them again), a missing, changed or extra rule makes it rewrite the
// chain's rules, and chains and sets that are not part of the design are
// deleted. All repairs go in one transaction, so the chain is never seen
// half-written. Elements of intact sets are kept.
//
// Not checked: whether a set that has the right type and flags still has
// its counter expression (google/nftables does not decode it).
func (b *Backend) Ensure() ([]string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	changes, err := b.ensure()
	if len(changes) > 0 || err != nil {
		clear(b.cache) // sets may have been recreated
	}
	if err != nil {
		return nil, fmt.Errorf("nft ensure table bridge %s: %w", b.table.Name, err)
	}
	return changes, nil
}

func (b *Backend) ensure() ([]string, error) {
	var changes []string
	changed := func(format string, args ...any) { changes = append(changes, fmt.Sprintf(format, args...)) }
	c := b.conn
	want := b.desiredChain()
	wantRules := b.desiredRules()

	tables, err := c.ListTablesOfFamily(nftables.TableFamilyBridge)
	if err != nil {
		return nil, fmt.Errorf("list bridge tables: %w", err)
	}
	var cur *nftables.Table
	for _, t := range tables {
		if t.Name == b.table.Name {
			cur = t
		}
	}
	if cur == nil {
		c.AddTable(b.table)
		for _, name := range setOrder {
			s := *b.sets[name] // AddSet assigns a batch ID; keep b.sets free of it
			if err := c.AddSet(&s, nil); err != nil {
				return nil, fmt.Errorf("add set %s: %w", name, err)
			}
		}
		c.AddChain(want)
		for _, r := range wantRules {
			c.AddRule(&nftables.Rule{Table: b.table, Chain: want, Exprs: r})
		}
		if err := b.flush(); err != nil {
			return nil, fmt.Errorf("create: %w", err)
		}
		return []string{"created table bridge " + b.table.Name}, nil
	}

	var (
		flushChains []*nftables.Chain // rules to remove
		delChains   []*nftables.Chain
		delSets     []*nftables.Set
		addSets     []*nftables.Set
		addChain    bool
		addRules    bool
	)
	// google/nftables v0.3.0 decodes NFTA_TABLE_FLAGS in host byte order
	// (the attribute is big-endian); the flags are small numbers, so a
	// large value is a swapped one.
	flags := cur.Flags
	if flags > 0xffff {
		flags = bits.ReverseBytes32(flags)
	}
	if flags&unix.NFT_TABLE_F_DORMANT != 0 {
		c.AddTable(b.table) // NEWTABLE with flags 0 wakes it up
		changed("woke up dormant table")
	}

	sets, err := c.GetSets(b.table)
	if err != nil {
		return nil, fmt.Errorf("list sets: %w", err)
	}
	have := map[string]*nftables.Set{}
	for _, s := range sets {
		have[s.Name] = s
		if _, ok := b.sets[s.Name]; !ok {
			delSets = append(delSets, s)
			changed("deleted set %s, not ours", s.Name)
		}
	}
	for _, name := range setOrder {
		s, ok := have[name]
		switch {
		case !ok:
			addSets = append(addSets, b.sets[name])
			changed("created missing set %s", name)
		case !sameSet(s, b.sets[name]):
			delSets = append(delSets, s)
			addSets = append(addSets, b.sets[name])
			changed("recreated set %s (type or flags differed)", name)
		}
	}

	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyBridge)
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	var chain *nftables.Chain
	for _, ch := range chains {
		if ch.Table == nil || ch.Table.Name != b.table.Name {
			continue
		}
		if ch.Name == ChainForward {
			chain = ch
			continue
		}
		flushChains = append(flushChains, ch)
		delChains = append(delChains, ch)
		changed("deleted chain %s, not ours", ch.Name)
	}
	switch {
	case chain == nil:
		addChain, addRules = true, true
		changed("created missing chain %s", ChainForward)
	case !sameChain(chain, want):
		flushChains = append(flushChains, chain)
		delChains = append(delChains, chain)
		addChain, addRules = true, true
		changed("recreated chain %s (type, hook, priority or policy differed)", ChainForward)
	default:
		rules, err := c.GetRules(b.table, chain)
		if err != nil {
			return nil, fmt.Errorf("list rules of chain %s: %w", ChainForward, err)
		}
		// A recreated set must not be referenced while it is deleted, so
		// its rules are rewritten too.
		if !sameRules(rules, wantRules) || len(addSets) > 0 {
			flushChains = append(flushChains, chain)
			addRules = true
			changed("rewrote the rules of chain %s (%d rules found, %d expected)", ChainForward, len(rules), len(wantRules))
		}
	}
	if len(changes) == 0 {
		return nil, nil
	}

	for _, ch := range flushChains {
		c.FlushChain(ch)
	}
	for _, ch := range delChains {
		c.DelChain(ch)
	}
	for _, s := range delSets {
		c.DelSet(s)
	}
	for _, s := range addSets {
		s := *s
		if err := c.AddSet(&s, nil); err != nil {
			return nil, fmt.Errorf("add set %s: %w", s.Name, err)
		}
	}
	if addChain {
		c.AddChain(want)
	}
	if addRules {
		for _, r := range wantRules {
			c.AddRule(&nftables.Rule{Table: b.table, Chain: want, Exprs: r})
		}
	}
	if err := b.flush(); err != nil {
		return nil, fmt.Errorf("repair (%v): %w", changes, err)
	}
	return changes, nil
}

func sameSet(got, want *nftables.Set) bool {
	return got.KeyType.GetNFTMagic() == want.KeyType.GetNFTMagic() &&
		got.KeyType.Bytes == want.KeyType.Bytes &&
		got.Interval == want.Interval &&
		got.HasTimeout == want.HasTimeout &&
		got.Timeout == 0 &&
		!got.IsMap && !got.Constant && !got.Anonymous && !got.Dynamic && !got.Concatenation
}

func sameChain(got, want *nftables.Chain) bool {
	return got.Type == want.Type &&
		got.Hooknum != nil && *got.Hooknum == *want.Hooknum &&
		got.Priority != nil && *got.Priority == *want.Priority &&
		got.Policy != nil && *got.Policy == *want.Policy
}

// sameRules compares the kernel's rules with the wanted expressions,
// ignoring what varies at run time (counter values) or is only used on
// creation (set IDs).
func sameRules(got []*nftables.Rule, want [][]expr.Any) bool {
	if len(got) != len(want) {
		return false
	}
	for i, r := range got {
		if len(r.Exprs) != len(want[i]) {
			return false
		}
		exprs := slices.Clone(r.Exprs)
		for j, e := range exprs {
			switch e := e.(type) {
			case *expr.Counter:
				exprs[j] = &expr.Counter{}
			case *expr.Lookup:
				l := *e
				l.SetID = 0
				exprs[j] = &l
			}
		}
		if !reflect.DeepEqual(exprs, want[i]) {
			return false
		}
	}
	return true
}
