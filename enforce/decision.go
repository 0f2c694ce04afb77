package enforce

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Action is what a decision does to its target.
type Action string

const (
	// Block drops packets from the target (Dir Src: an attacker) or to it
	// (Dir Dst: a C2 server, a malicious site).
	ActionBlock Action = "block"
	// Quarantine drops the target's traffic both ways, except to and from
	// the never-block addresses (resolvers, gateway, management), which
	// the backends' allow lists keep open.
	ActionQuarantine Action = "quarantine"
)

// Scope names the backends that enforce a decision.
type Scope string

const (
	ScopeXDP Scope = "xdp" // the XDP blocklist: line rate, before the bridge (default)
	ScopeNFT Scope = "nft" // nft sets in the bridge-family table
	ScopeAll Scope = "all" // both
)

// Backends lists the backend names of a scope.
func (s Scope) Backends() []string {
	switch s {
	case ScopeNFT:
		return []string{"nft"}
	case ScopeAll:
		return []string{"xdp", "nft"}
	}
	return []string{"xdp"}
}

// ParseScope parses "xdp", "nft" or "all" ("" is xdp).
func ParseScope(s string) (Scope, error) {
	switch Scope(s) {
	case "":
		return ScopeXDP, nil
	case ScopeXDP, ScopeNFT, ScopeAll:
		return Scope(s), nil
	}
	return "", fmt.Errorf("scope %q: must be xdp, nft or all", s)
}

// Decision is one containment order: block or quarantine an address or
// prefix until it expires. Every decision has a TTL.
type Decision struct {
	ID      string       `json:"id"`
	Action  Action       `json:"action"`
	Target  netip.Prefix `json:"target"`
	Dir     Dir          `json:"dir"` // quarantine: both ways (Dir ignored)
	Scope   Scope        `json:"scope"`
	Reason  string       `json:"reason"`
	Alert   string       `json:"alert,omitempty"`  // fingerprint of the alert it came from
	Policy  string       `json:"policy,omitempty"` // the policy that made it; "" when made by hand
	By      string       `json:"by"`               // "policy:<id>" or the operator
	Created time.Time    `json:"created"`
	Expires time.Time    `json:"expires"`
}

// MarshalText encodes a Dir as "src" or "dst".
func (d Dir) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText decodes "src" or "dst".
func (d *Dir) UnmarshalText(b []byte) error {
	v, err := ParseDir(string(b))
	*d = v
	return err
}

// ParseDir parses "src" or "dst".
func ParseDir(s string) (Dir, error) {
	switch s {
	case "src", "":
		return Src, nil
	case "dst":
		return Dst, nil
	}
	return 0, fmt.Errorf("direction %q: must be src or dst", s)
}

// Elements are the backend elements of the decision.
func (d *Decision) Elements() []Element {
	if d.Action == ActionQuarantine {
		return []Element{{d.Target, Src, d.Expires}, {d.Target, Dst, d.Expires}}
	}
	return []Element{{d.Target, d.Dir, d.Expires}}
}

// Active reports whether the decision is in force at now.
func (d *Decision) Active(now time.Time) bool { return now.Before(d.Expires) }

func (d *Decision) String() string {
	what := string(d.Action)
	if d.Action == ActionBlock {
		what += " " + d.Dir.String()
	}
	return fmt.Sprintf("%s %s %s until %s (%s)", d.ID, what, d.Target, d.Expires.UTC().Format(time.RFC3339), d.By)
}

// NormalizePrefix masks p and unmaps IPv4-in-IPv6, so that equal
// targets compare equal.
func NormalizePrefix(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return netip.Prefix{}, errors.New("invalid prefix")
	}
	a, bits := p.Addr(), p.Bits()
	if a.Is4In6() {
		if bits < 96 {
			return netip.Prefix{}, fmt.Errorf("%s: an IPv4-mapped prefix must be at least /96", p)
		}
		a, bits = a.Unmap(), bits-96
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%s: zoned addresses cannot be blocked", p)
	}
	return netip.PrefixFrom(a, bits).Masked(), nil
}

// ParseTarget parses an address or a prefix ("198.18.0.7", "198.18.0.0/24").
func ParseTarget(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	var p netip.Prefix
	var err error
	if strings.Contains(s, "/") {
		p, err = netip.ParsePrefix(s)
	} else {
		var a netip.Addr
		a, err = netip.ParseAddr(s)
		if err == nil {
			p = netip.PrefixFrom(a, a.BitLen())
		}
	}
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("target %q: not an address or prefix", s)
	}
	return NormalizePrefix(p)
}
