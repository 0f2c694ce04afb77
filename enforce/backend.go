package enforce

import (
	"fmt"
	"net/netip"
	"time"
)

// Dir is the side of a packet an element matches.
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

// Element is one entry a backend enforces: drop packets whose Dir address
// is in Prefix, until Expires (zero: no expiry, for the operator's static
// list only; decisions always expire).
type Element struct {
	Prefix  netip.Prefix // masked; IPv4 prefixes are never 4-in-6
	Dir     Dir
	Expires time.Time
}

func (e Element) String() string {
	if e.Expires.IsZero() {
		return fmt.Sprintf("%s %s", e.Dir, e.Prefix)
	}
	return fmt.Sprintf("%s %s until %s", e.Dir, e.Prefix, e.Expires.UTC().Format(time.RFC3339))
}

// Key identifies an element regardless of its expiry.
type Key struct {
	Prefix netip.Prefix
	Dir    Dir
}

func (e Element) Key() Key { return Key{e.Prefix, e.Dir} }

// Backend is one kernel mechanism that drops packets: the XDP blocklist
// (line rate, before the bridge) or nft sets in a bridge-family table.
// The Reconciler owns every element a backend holds: what it reads back
// and did not ask for is removed (external edits are repaired).
type Backend interface {
	// Name is a short name for logs and metrics ("xdp", "nft").
	Name() string
	// Elements reads what the kernel enforces now. Elements whose kernel
	// timeout has passed are not returned.
	Elements() ([]Element, error)
	// Apply adds (or re-adds with a new expiry) add and removes del, as
	// one batch where the mechanism allows it (one netlink transaction
	// for nft). Removing an absent element is not an error.
	Apply(add, del []Element) error
	// Allow sets the never-block prefixes, which win over any element
	// (the guardrail in the kernel, not only in the Reconciler).
	Allow(prefixes []netip.Prefix) error
	// Close releases the backend's handles; kernel state stays (blocks
	// outlive the daemon until their expiry).
	Close() error
}

// Counters is what a backend counts per element, where it can.
type Counters struct {
	Packets, Bytes uint64
}

// CountingBackend is a Backend that reports per-element drop counters.
type CountingBackend interface {
	Backend
	Counters() (map[Key]Counters, error)
}
