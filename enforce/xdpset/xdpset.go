// Package xdpset is the XDP blocklist backend of the enforcement layer: it
// keeps enforce.Elements in the fast path's block tries (line rate, before
// the bridge) through the map API of dataplane.Lists, and the never-block
// prefixes in its allowlist, which the fast path consults before dropping.
// The enforce Reconciler drives it; wardlined builds it on the loaded
// dataplane's lists.
package xdpset

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/wardline/wardline/dataplane"
	"github.com/wardline/wardline/enforce"
)

// Backend holds the XDP block and allow lists. Its methods may be called
// from several goroutines.
//
// The tries have no timeouts of their own: the fast path ignores an entry
// past its expiry (counted as block_expired_packets), and Elements removes
// such entries, as the kernel does for nft set elements. Until then an
// expired entry also hides shorter prefixes containing it (an LPM trie
// returns only the longest match), so the Reconciler's periodic Elements
// call is what keeps a containing block effective.
type Backend struct {
	mu  sync.Mutex
	l   *dataplane.Lists
	now func() time.Time
}

var _ enforce.CountingBackend = (*Backend)(nil)

// New returns the backend on l; Close closes l (which does nothing for the
// lists of a loaded Dataplane).
func New(l *dataplane.Lists) *Backend {
	return &Backend{l: l, now: time.Now}
}

// Name is "xdp".
func (b *Backend) Name() string { return "xdp" }

func list(d enforce.Dir) (dataplane.List, error) {
	switch d {
	case enforce.Src:
		return dataplane.BlockSrc, nil
	case enforce.Dst:
		return dataplane.BlockDst, nil
	}
	return 0, fmt.Errorf("unknown direction %d", d)
}

// checkPrefix enforces the Element contract: valid, and IPv4 as 4 bytes.
func checkPrefix(p netip.Prefix) error {
	switch {
	case !p.IsValid():
		return fmt.Errorf("invalid prefix %v", p)
	case p.Addr().Is4In6():
		return fmt.Errorf("prefix %v: IPv4 must be given as a 4-byte prefix, not IPv4-mapped IPv6", p)
	case p.Addr().Zone() != "":
		return fmt.Errorf("prefix %v: zones are not allowed", p)
	}
	return nil
}

// Elements returns the live entries of the block-src and block-dst lists.
// Entries past their expiry are not returned, and are removed.
func (b *Backend) Elements() ([]enforce.Element, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	var out []enforce.Element
	for _, d := range []enforce.Dir{enforce.Src, enforce.Dst} {
		l, _ := list(d)
		es, err := b.l.Entries(l)
		if err != nil {
			return nil, fmt.Errorf("xdp: read %s: %w", l, err)
		}
		var expired []netip.Prefix
		for _, e := range es {
			if !e.Expires.IsZero() && !e.Expires.After(now) {
				expired = append(expired, e.Prefix)
				continue
			}
			out = append(out, enforce.Element{Prefix: e.Prefix, Dir: d, Expires: e.Expires})
		}
		if err := b.l.RemoveMany(l, expired); err != nil {
			return nil, fmt.Errorf("xdp: remove expired entries: %w", err)
		}
	}
	return out, nil
}

// Apply removes del, then adds add (so an element in both ends present).
// Re-adding an element changes its expiry and keeps its counters. Every
// element is checked before the first change, so bad input changes
// nothing; removing an absent element is not an error.
func (b *Backend) Apply(add, del []enforce.Element) error {
	var adds [2][]dataplane.PrefixExpiry
	var dels [2][]netip.Prefix
	for _, x := range []struct {
		verb string
		es   []enforce.Element
	}{{"add", add}, {"remove", del}} {
		for _, e := range x.es {
			l, err := list(e.Dir)
			if err == nil {
				err = checkPrefix(e.Prefix)
			}
			if err != nil {
				return fmt.Errorf("xdp: %s %v: %w", x.verb, e, err)
			}
			if x.verb == "add" {
				adds[l] = append(adds[l], dataplane.PrefixExpiry{Prefix: e.Prefix, Expires: e.Expires})
			} else {
				dels[l] = append(dels[l], e.Prefix)
			}
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var errs []error
	for _, l := range []dataplane.List{dataplane.BlockSrc, dataplane.BlockDst} {
		if err := b.l.RemoveMany(l, dels[l]); err != nil {
			errs = append(errs, fmt.Errorf("xdp: %w", err))
		}
	}
	for _, l := range []dataplane.List{dataplane.BlockSrc, dataplane.BlockDst} {
		if err := b.l.SetMany(l, adds[l]); err != nil {
			errs = append(errs, fmt.Errorf("xdp: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Allow makes the allowlist exactly prefixes: missing ones are added first,
// then extra ones removed, so no moment has fewer never-block prefixes than
// both the old and the new list.
func (b *Backend) Allow(prefixes []netip.Prefix) error {
	want := map[netip.Prefix]bool{}
	for _, p := range prefixes {
		if err := checkPrefix(p); err != nil {
			return fmt.Errorf("xdp: allow %v: %w", p, err)
		}
		want[p.Masked()] = true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	es, err := b.l.Entries(dataplane.Allow)
	if err != nil {
		return fmt.Errorf("xdp: read allowlist: %w", err)
	}
	have := map[netip.Prefix]bool{}
	var extra []netip.Prefix
	for _, e := range es {
		have[e.Prefix] = true
		if !want[e.Prefix] {
			extra = append(extra, e.Prefix)
		}
	}
	var missing []dataplane.PrefixExpiry
	for p := range want {
		if !have[p] {
			missing = append(missing, dataplane.PrefixExpiry{Prefix: p})
		}
	}
	if err := b.l.SetMany(dataplane.Allow, missing); err != nil {
		return fmt.Errorf("xdp: %w", err)
	}
	if err := b.l.RemoveMany(dataplane.Allow, extra); err != nil {
		return fmt.Errorf("xdp: %w", err)
	}
	return nil
}

// Counters returns the drop counters of every block entry, expired ones
// included until Elements removes them.
func (b *Backend) Counters() (map[enforce.Key]enforce.Counters, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[enforce.Key]enforce.Counters{}
	for _, d := range []enforce.Dir{enforce.Src, enforce.Dst} {
		l, _ := list(d)
		es, err := b.l.Entries(l)
		if err != nil {
			return nil, fmt.Errorf("xdp: read %s: %w", l, err)
		}
		for _, e := range es {
			out[enforce.Key{Prefix: e.Prefix, Dir: d}] = enforce.Counters{Packets: e.Packets, Bytes: e.Bytes}
		}
	}
	return out, nil
}

// Close closes the lists; the kernel keeps enforcing them.
func (b *Backend) Close() error {
	if err := b.l.Close(); err != nil {
		return fmt.Errorf("xdp: close lists: %w", err)
	}
	return nil
}
