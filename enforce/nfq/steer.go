package nfq

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"
)

// DefaultTable is the steering table's name unless SteerConfig.Table says
// otherwise.
const DefaultTable = "wardline_nfq"

// Set and chain names of the steering table (testdata/steer.golden).
const (
	SetSrc4      = "inspect_src4"
	SetDst4      = "inspect_dst4"
	SetSrc6      = "inspect_src6"
	SetDst6      = "inspect_dst6"
	ChainForward = "forward"
)

// Dir is the side of a packet an element selects.
type Dir uint8

const (
	Src Dir = iota // the packet's source is in the prefix
	Dst            // the packet's destination is in the prefix
)

func (d Dir) String() string {
	if d == Dst {
		return "dst"
	}
	return "src"
}

// Element selects packets for inspection: those whose Dir address is in
// Prefix. TTL is mandatory when adding (the kernel removes the element
// when it runs out); elements read back carry what is left of it.
type Element struct {
	Prefix netip.Prefix
	Dir    Dir
	TTL    time.Duration
}

func (e Element) String() string { return fmt.Sprintf("%s %s ttl %s", e.Dir, e.Prefix, e.TTL) }

// SteerConfig says where to steer packets to.
type SteerConfig struct {
	// NetNS is the box's network namespace: a name in /run/netns, a
	// path, or "" for the caller's.
	NetNS string
	Queue uint16 // the Inspector's queue
	Table string // default DefaultTable
}

// Steering is the nft table that sends selected packets to the queue:
//
//	table inet wardline_nfq {
//		set inspect_src4 { type ipv4_addr; flags interval,timeout; }   (and dst4, src6, dst6)
//		chain forward {
//			type filter hook forward priority filter; policy accept;
//			ip saddr @inspect_src4 counter queue num N bypass        (and dst4, src6, dst6)
//		}
//	}
//
// Bridged packets reach an inet table only through br_netfilter
// (net.bridge.bridge-nf-call-iptables/ip6tables = 1 in the box), and this
// kernel has no nft queue statement (NFT_QUEUE unset), so the rule uses
// the xt NFQUEUE target through nft_compat (docs/platform.md). BYPASS:
// with no reader bound the packets pass. A packet selected by both a
// source and a destination element is queued once: an accept verdict
// resumes after this chain.
//
// Methods are safe for concurrent use.
type Steering struct {
	mu    sync.Mutex
	cfg   SteerConfig
	nsfd  int
	conn  *nftables.Conn
	table *nftables.Table
	chain *nftables.Chain
	sets  map[string]*nftables.Set
}

// bridgeSysctls are turned on while steering is on, and back to 0 (the
// appliance's setting, appliance/bridge) by Close.
var bridgeSysctls = []string{"net/bridge/bridge-nf-call-iptables", "net/bridge/bridge-nf-call-ip6tables"}

// Steer creates the steering table in cfg.NetNS, replacing one of the
// same name in the same transaction (so applying twice yields the same
// ruleset, with empty sets), and turns bridge-nf-call-iptables and
// -ip6tables on in that namespace, loading br_netfilter first if needed.
func Steer(cfg SteerConfig) (_ *Steering, err error) {
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	s := &Steering{cfg: cfg, nsfd: -1, sets: map[string]*nftables.Set{}}
	var opts []nftables.ConnOption
	if p := nsPath(cfg.NetNS); p != "" {
		if s.nsfd, err = unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
			return nil, fmt.Errorf("steer: open network namespace %s: %w", p, err)
		}
		opts = append(opts, nftables.WithNetNSFd(s.nsfd))
	}
	defer func() {
		if err != nil && s.nsfd >= 0 {
			unix.Close(s.nsfd)
		}
	}()
	if s.conn, err = nftables.New(opts...); err != nil {
		return nil, fmt.Errorf("steer: nftables connection: %w", err)
	}
	if err := s.replaceTable(); err != nil {
		return nil, err
	}
	if err := s.setSysctls("1"); err != nil {
		s.deleteTable()
		return nil, err
	}
	return s, nil
}

func (s *Steering) replaceTable() error {
	c := s.conn
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: s.cfg.Table}
	// Add (a no-op if it exists), delete, add: an atomic replace.
	c.AddTable(t)
	c.DelTable(t)
	s.table = c.AddTable(t)
	accept := nftables.ChainPolicyAccept
	s.chain = c.AddChain(&nftables.Chain{Name: ChainForward, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	for _, name := range []string{SetSrc4, SetDst4, SetSrc6, SetDst6} {
		set := &nftables.Set{Table: t, Name: name, KeyType: nftables.TypeIPAddr, Interval: true, HasTimeout: true}
		if strings.HasSuffix(name, "6") {
			set.KeyType = nftables.TypeIP6Addr
		}
		if err := c.AddSet(set, nil); err != nil {
			return fmt.Errorf("steer: add set %s: %w", name, err)
		}
		s.sets[name] = set
		c.AddRule(&nftables.Rule{Table: t, Chain: s.chain, Exprs: steerExprs(set, s.cfg.Queue)})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("steer: create table inet %s: %w", s.cfg.Table, err)
	}
	return nil
}

// steerExprs is "ip saddr @set counter queue num queue bypass" (daddr,
// ip6 by the set's name).
func steerExprs(set *nftables.Set, queue uint16) []expr.Any {
	proto, off, n := byte(unix.NFPROTO_IPV4), uint32(12), uint32(4) // IPv4 saddr
	if strings.HasSuffix(set.Name, "6") {
		proto, off, n = unix.NFPROTO_IPV6, 8, 16 // IPv6 saddr
	}
	if strings.Contains(set.Name, "dst") {
		off += n // daddr follows saddr in both headers
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
		&expr.Counter{},
		&expr.Target{Name: "NFQUEUE", Rev: 3, Info: nfqueueInfo(queue)},
	}
}

// nfqueueInfo is struct xt_NFQ_info_v3 {u16 queuenum, queues_total,
// flags} in host order, padded to 8 bytes, with NFQ_FLAG_BYPASS.
func nfqueueInfo(queue uint16) *xt.Unknown {
	const bypass = 1
	b := make([]byte, 8)
	ne.PutUint16(b[0:], queue)
	ne.PutUint16(b[2:], 1) // queues_total
	ne.PutUint16(b[4:], bypass)
	u := xt.Unknown(b)
	return &u
}

// setSysctls writes v to the bridge-nf-call sysctls in the namespace.
func (s *Steering) setSysctls(v string) error {
	write := func() error {
		return inNetNS(s.cfg.NetNS, func() error {
			for _, k := range bridgeSysctls {
				if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
					return fmt.Errorf("sysctl %s=%s: %w", strings.ReplaceAll(k, "/", "."), v, err)
				}
			}
			return nil
		})
	}
	err := write()
	if errors.Is(err, fs.ErrNotExist) && v == "1" {
		// The sysctls exist once br_netfilter is loaded (built in here).
		if out, merr := exec.Command("modprobe", "br_netfilter").CombinedOutput(); merr != nil {
			return fmt.Errorf("steer: %w; modprobe br_netfilter: %v: %s", err, merr, bytes.TrimSpace(out))
		}
		err = write()
	}
	if err != nil {
		return fmt.Errorf("steer: %w", err)
	}
	return nil
}

// Add selects prefixes for inspection, all in one transaction. An element
// already there gets the new TTL.
func (s *Steering) Add(elems ...Element) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	bySet, err := s.group(elems, true)
	if err != nil {
		return err
	}
	// Deleting first makes re-adding set a new timeout; deleting an
	// absent element fails the transaction, so only existing ones are.
	have, err := s.elementsLocked()
	if err != nil {
		return err
	}
	exists := map[Element]bool{}
	for _, e := range have {
		exists[Element{Prefix: e.Prefix, Dir: e.Dir}] = true
	}
	for name, es := range bySet {
		var del []nftables.SetElement
		for _, e := range es {
			if exists[Element{Prefix: e.Prefix, Dir: e.Dir}] {
				del = append(del, setElements(e)...)
			}
		}
		if len(del) > 0 {
			if err := s.conn.SetDeleteElements(s.sets[name], del); err != nil {
				return fmt.Errorf("steer: delete from %s: %w", name, err)
			}
		}
		var add []nftables.SetElement
		for _, e := range es {
			add = append(add, setElements(e)...)
		}
		if err := s.conn.SetAddElements(s.sets[name], add); err != nil {
			return fmt.Errorf("steer: add to %s: %w", name, err)
		}
	}
	if err := s.conn.Flush(); err != nil {
		return fmt.Errorf("steer: add %d elements: %w", len(elems), err)
	}
	return nil
}

// Remove stops inspecting prefixes; absent ones are ignored.
func (s *Steering) Remove(elems ...Element) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	bySet, err := s.group(elems, false)
	if err != nil {
		return err
	}
	have, err := s.elementsLocked()
	if err != nil {
		return err
	}
	exists := map[Element]bool{}
	for _, e := range have {
		exists[Element{Prefix: e.Prefix, Dir: e.Dir}] = true
	}
	n := 0
	for name, es := range bySet {
		var del []nftables.SetElement
		for _, e := range es {
			if exists[Element{Prefix: e.Prefix, Dir: e.Dir}] {
				del = append(del, setElements(e)...)
				n++
			}
		}
		if len(del) > 0 {
			if err := s.conn.SetDeleteElements(s.sets[name], del); err != nil {
				return fmt.Errorf("steer: delete from %s: %w", name, err)
			}
		}
	}
	if n == 0 {
		return nil
	}
	if err := s.conn.Flush(); err != nil {
		return fmt.Errorf("steer: remove %d elements: %w", n, err)
	}
	return nil
}

// group validates elements and sorts them into their sets.
func (s *Steering) group(elems []Element, needTTL bool) (map[string][]Element, error) {
	out := map[string][]Element{}
	for i, e := range elems {
		if !e.Prefix.IsValid() || e.Prefix.Addr().Is4In6() {
			return nil, fmt.Errorf("steer: element %d: invalid prefix %v (use plain IPv4 for IPv4)", i, e.Prefix)
		}
		if needTTL && e.TTL <= 0 {
			return nil, fmt.Errorf("steer: element %d (%s): a TTL is mandatory", i, e.Prefix)
		}
		e.Prefix = e.Prefix.Masked()
		out[setName(e.Prefix.Addr().Is4(), e.Dir)] = append(out[setName(e.Prefix.Addr().Is4(), e.Dir)], e)
	}
	return out, nil
}

func setName(v4 bool, d Dir) string {
	switch {
	case v4 && d == Src:
		return SetSrc4
	case v4:
		return SetDst4
	case d == Src:
		return SetSrc6
	}
	return SetDst6
}

// setElements is a prefix as an interval: its first address, and the
// address after its last as the interval's end (none when the prefix
// reaches the top of the address space: the interval is open-ended).
func setElements(e Element) []nftables.SetElement {
	p := e.Prefix.Masked()
	first := p.Addr()
	out := []nftables.SetElement{{Key: first.AsSlice(), Timeout: e.TTL}}
	if next := lastAddr(p).Next(); next.IsValid() {
		out = append(out, nftables.SetElement{Key: next.AsSlice(), IntervalEnd: true})
	}
	return out
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// Elements reads the selected prefixes back, with the TTL left.
func (s *Steering) Elements() ([]Element, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.elementsLocked()
}

func (s *Steering) elementsLocked() ([]Element, error) {
	var out []Element
	for _, name := range []string{SetSrc4, SetDst4, SetSrc6, SetDst6} {
		els, err := s.conn.GetSetElements(s.sets[name])
		if err != nil {
			return nil, fmt.Errorf("steer: list %s: %w", name, err)
		}
		dir := Src
		if strings.Contains(name, "dst") {
			dir = Dst
		}
		ps, err := intervals(els)
		if err != nil {
			return nil, fmt.Errorf("steer: list %s: %w", name, err)
		}
		for _, p := range ps {
			out = append(out, Element{Prefix: p.prefix, Dir: dir, TTL: p.left})
		}
	}
	return out, nil
}

type interval struct {
	prefix netip.Prefix
	left   time.Duration
}

// intervals pairs start and end elements back into prefixes.
func intervals(els []nftables.SetElement) ([]interval, error) {
	type el struct {
		a    netip.Addr
		end  bool
		left time.Duration
	}
	var es []el
	for _, e := range els {
		a, ok := netip.AddrFromSlice(e.Key)
		if !ok {
			return nil, fmt.Errorf("element key of %d bytes", len(e.Key))
		}
		es = append(es, el{a, e.IntervalEnd, e.Expires})
	}
	sort.Slice(es, func(i, j int) bool {
		if c := es[i].a.Compare(es[j].a); c != 0 {
			return c < 0
		}
		return es[i].end && !es[j].end // an end before a start at the same address
	})
	var out []interval
	for i, e := range es {
		if e.end {
			continue
		}
		var last netip.Addr
		if i+1 < len(es) && es[i+1].end {
			last = es[i+1].a.Prev()
		} else {
			last = lastAddr(netip.PrefixFrom(e.a, 0)) // open-ended
		}
		for _, p := range rangePrefixes(e.a, last) {
			out = append(out, interval{p, e.left})
		}
	}
	return out, nil
}

// rangePrefixes covers [first, last] exactly with prefixes (one for a
// range that was added as a prefix).
func rangePrefixes(first, last netip.Addr) []netip.Prefix {
	var out []netip.Prefix
	for first.IsValid() && first.Compare(last) <= 0 {
		bits := first.BitLen()
		for bits > 0 {
			p := netip.PrefixFrom(first, bits-1)
			if p.Masked().Addr() != first || lastAddr(p).Compare(last) > 0 {
				break
			}
			bits--
		}
		p := netip.PrefixFrom(first, bits)
		out = append(out, p)
		first = lastAddr(p).Next()
	}
	return out
}

// Steered returns how many packets the steering rules sent towards the
// queue (the rules' counters). The kernel queued those it could (see
// KernelStats.IDSequence); the rest passed uninspected: the queue was full
// (fail-open) or no reader was bound (bypass).
func (s *Steering) Steered() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rules, err := s.conn.GetRules(s.table, s.chain)
	if err != nil {
		return 0, fmt.Errorf("steer: read rule counters: %w", err)
	}
	var n uint64
	for _, r := range rules {
		for _, e := range r.Exprs {
			if c, ok := e.(*expr.Counter); ok {
				n += c.Packets
			}
		}
	}
	return n, nil
}

// Close deletes the table and turns bridge-nf-call-iptables and
// -ip6tables back to 0. It keeps going on errors and returns them all.
func (s *Steering) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	errs := []error{s.deleteTable(), s.setSysctls("0")}
	s.conn = nil
	if s.nsfd >= 0 {
		unix.Close(s.nsfd)
		s.nsfd = -1
	}
	return errors.Join(errs...)
}

func (s *Steering) deleteTable() error {
	s.conn.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: s.cfg.Table})
	if err := s.conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("steer: delete table inet %s: %w", s.cfg.Table, err)
	}
	return nil
}
