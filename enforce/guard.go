package enforce

import (
	"fmt"
	"net/netip"
	"time"
)

// Guardrails are enforced in code on every decision, whoever makes it.
type Guardrails struct {
	// NeverBlock: no decision may cover any of these (gateway, resolvers,
	// management addresses, anything the operator adds). The backends'
	// allow lists hold them too, so not even a stale kernel entry drops
	// their traffic.
	NeverBlock []NamedPrefix
	// MaxNewPerMinute caps new blocks (not renewals) per sliding minute.
	MaxNewPerMinute int
	// MaxActive caps the decisions in force at once.
	MaxActive int
	// MaxTTL bounds a decision's TTL; every decision needs one.
	MaxTTL time.Duration
	// MinPrefix4 / MinPrefix6: the shortest prefix a decision may target
	// (a /8 is almost certainly a mistake).
	MinPrefix4, MinPrefix6 int
}

// NamedPrefix is a prefix with the reason it is listed.
type NamedPrefix struct {
	Prefix netip.Prefix `json:"prefix"`
	Name   string       `json:"name"`
}

// DefaultGuardrails are used for zero fields.
var DefaultGuardrails = Guardrails{MaxNewPerMinute: 60, MaxActive: 10000, MaxTTL: 7 * 24 * time.Hour, MinPrefix4: 16, MinPrefix6: 48}

func (g *Guardrails) defaults() {
	if g.MaxNewPerMinute == 0 {
		g.MaxNewPerMinute = DefaultGuardrails.MaxNewPerMinute
	}
	if g.MaxActive == 0 {
		g.MaxActive = DefaultGuardrails.MaxActive
	}
	if g.MaxTTL == 0 {
		g.MaxTTL = DefaultGuardrails.MaxTTL
	}
	if g.MinPrefix4 == 0 {
		g.MinPrefix4 = DefaultGuardrails.MinPrefix4
	}
	if g.MinPrefix6 == 0 {
		g.MinPrefix6 = DefaultGuardrails.MinPrefix6
	}
}

// GuardError is a decision refused by a guardrail.
type GuardError struct {
	Rule   string // "never_block", "rate", "max_active", "ttl", "prefix_length"
	Detail string
}

func (e *GuardError) Error() string { return fmt.Sprintf("guardrail %s: %s", e.Rule, e.Detail) }

// guard applies the guardrails; it keeps the recent creations for the
// rate cap.
type guard struct {
	g      Guardrails
	recent []time.Time // creation times of new decisions within the last minute
}

// checkStatic checks what does not depend on the current load: TTL,
// prefix length and the never-block list.
func (gd *guard) checkStatic(target netip.Prefix, ttl time.Duration) error {
	g := &gd.g
	if ttl <= 0 {
		return &GuardError{"ttl", "a TTL is mandatory"}
	}
	if ttl > g.MaxTTL {
		return &GuardError{"ttl", fmt.Sprintf("TTL %s is longer than the maximum %s", ttl, g.MaxTTL)}
	}
	min := g.MinPrefix4
	if target.Addr().Is6() {
		min = g.MinPrefix6
	}
	if target.Bits() < min {
		return &GuardError{"prefix_length", fmt.Sprintf("%s is shorter than /%d", target, min)}
	}
	for _, nb := range g.NeverBlock {
		if nb.Prefix.Overlaps(target) {
			return &GuardError{"never_block", fmt.Sprintf("%s overlaps never-block %s (%s)", target, nb.Prefix, nb.Name)}
		}
	}
	return nil
}

// admit checks a new decision against the caps and, when it passes,
// counts it.
func (gd *guard) admit(now time.Time, active int) error {
	cut := now.Add(-time.Minute)
	i := 0
	for i < len(gd.recent) && !gd.recent[i].After(cut) {
		i++
	}
	gd.recent = gd.recent[i:]
	if active >= gd.g.MaxActive {
		return &GuardError{"max_active", fmt.Sprintf("%d decisions in force, the maximum is %d", active, gd.g.MaxActive)}
	}
	if len(gd.recent) >= gd.g.MaxNewPerMinute {
		return &GuardError{"rate", fmt.Sprintf("%d new blocks in the last minute, the maximum is %d", len(gd.recent), gd.g.MaxNewPerMinute)}
	}
	gd.recent = append(gd.recent, now)
	return nil
}
