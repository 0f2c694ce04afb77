package enforce

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/wardline/wardline/detect"
)

// Stage is where a policy is in its rollout.
type Stage string

const (
	// StageAudit: decisions are computed and logged as "would block";
	// nothing is enforced.
	StageAudit Stage = "audit"
	// StageCanary: decisions are enforced only for targets in the
	// policy's canary subset; the others are logged as would-block.
	StageCanary Stage = "canary"
	// StageEnforce: decisions are enforced everywhere.
	StageEnforce Stage = "enforce"
)

// ParseStage parses a stage name.
func ParseStage(s string) (Stage, error) {
	switch Stage(s) {
	case StageAudit, StageCanary, StageEnforce:
		return Stage(s), nil
	}
	return "", fmt.Errorf("stage %q: must be audit, canary or enforce", s)
}

// PolicyAction is what a policy does with a matching alert.
type PolicyAction string

const (
	PolicyAlert      PolicyAction = "alert"      // nothing but the alert
	PolicyBlock      PolicyAction = "block"      // a block decision
	PolicyQuarantine PolicyAction = "quarantine" // block both ways
	PolicyInspect    PolicyAction = "inspect"    // send the target's traffic to NFQUEUE inspection
)

// Policy maps detections to actions and carries its rollout.
type Policy struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	// Match: every non-empty field must match.
	Match Match `json:"match"`
	// Action and its target: the alert's attacker (blocked as source,
	// the default) or its first victim (blocked as destination: a C2
	// server, a phishing site).
	Action PolicyAction `json:"action"`
	Target string       `json:"target,omitempty"` // "attacker" (default) or "victim"
	TTL    Duration     `json:"ttl"`
	Scope  Scope        `json:"scope,omitempty"`
	// Stage is where the rollout starts (audit when empty).
	Stage  Stage        `json:"stage,omitempty"`
	Canary CanarySubset `json:"canary,omitempty"`
	// AutoPromote moves canary → enforce after Dwell with healthy
	// signals; Watch keeps automatic rollback armed that long after
	// reaching enforce.
	AutoPromote bool     `json:"auto_promote,omitempty"`
	Dwell       Duration `json:"dwell,omitempty"`
	Watch       Duration `json:"watch,omitempty"`
}

// Match selects alerts.
type Match struct {
	Types     []string `json:"types,omitempty"`     // alert types (port_scan, c2_beaconing, …)
	Detectors []string `json:"detectors,omitempty"` // detector names
	MinRisk   float64  `json:"min_risk,omitempty"`
	// Attacker: "internal", "external" or "" (any), by the home networks.
	Attacker string `json:"attacker,omitempty"`
	// Groups: the target must be in one of these asset groups.
	Groups []string `json:"groups,omitempty"`
	// Intel: for ioc_match alerts, the indicator types that count (ip,
	// cidr, domain, sni, ja3, ja4).
	Intel []string `json:"intel,omitempty"`
}

// CanarySubset is the deterministic subset a canary enforces on: a target
// is in it when it is in Group, in one of Subnets, or among Percent % of
// addresses by a stable hash (salted with the policy ID).
type CanarySubset struct {
	Group   string         `json:"group,omitempty"`
	Subnets []netip.Prefix `json:"subnets,omitempty"`
	Percent float64        `json:"percent,omitempty"`
}

// Duration is a time.Duration that reads and writes "90s", "5m", "24h".
type Duration time.Duration

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: %v", b, err)
	}
	*d = Duration(v)
	return nil
}

var policyID = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

// knownTypes are the alert types a policy may name.
var knownTypes = []string{detect.TypePortScan, detect.TypeHostSweep, detect.TypeLateral, detect.TypeBeaconing,
	detect.TypeExfiltration, detect.TypeDNSTunnel, detect.TypeDGA, detect.TypeMining, detect.TypeIOC,
	detect.TypeLongConnection, detect.TypeProtocolAnomaly}

// Validate checks p against the guardrails and the asset groups; errors
// name the field.
func (p *Policy) Validate(g Guardrails, groups map[string][]netip.Prefix) error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("policy %q: %s: %s", p.ID, field, fmt.Sprintf(format, args...))
	}
	if !policyID.MatchString(p.ID) {
		return fmt.Errorf("policy %q: id: must be 1–63 of a-z 0-9 _ . - starting with a letter or digit", p.ID)
	}
	switch p.Action {
	case PolicyAlert, PolicyBlock, PolicyQuarantine, PolicyInspect:
	case "":
		return bad("action", "missing (alert, block, quarantine or inspect)")
	default:
		return bad("action", "%q: must be alert, block, quarantine or inspect", p.Action)
	}
	switch p.Target {
	case "", "attacker", "victim":
	default:
		return bad("target", "%q: must be attacker or victim", p.Target)
	}
	if p.Action != PolicyAlert {
		if p.TTL <= 0 {
			return bad("ttl", "mandatory for %s (e.g. \"1h\")", p.Action)
		}
		if time.Duration(p.TTL) > g.MaxTTL {
			return bad("ttl", "%s is longer than the guardrail's maximum %s", time.Duration(p.TTL), g.MaxTTL)
		}
	}
	if _, err := ParseScope(string(p.Scope)); err != nil {
		return bad("scope", "%v", err)
	}
	if p.Stage != "" {
		if _, err := ParseStage(string(p.Stage)); err != nil {
			return bad("stage", "%v", err)
		}
	}
	for i, t := range p.Match.Types {
		if !slices.Contains(knownTypes, t) {
			return bad(fmt.Sprintf("match.types[%d]", i), "unknown alert type %q (known: %s)", t, strings.Join(knownTypes, ", "))
		}
	}
	if p.Match.MinRisk < 0 || p.Match.MinRisk > 100 {
		return bad("match.min_risk", "%v: must be within 0..100", p.Match.MinRisk)
	}
	switch p.Match.Attacker {
	case "", "internal", "external":
	default:
		return bad("match.attacker", "%q: must be internal or external", p.Match.Attacker)
	}
	for i, g := range p.Match.Groups {
		if _, ok := groups[g]; !ok {
			return bad(fmt.Sprintf("match.groups[%d]", i), "no asset group %q", g)
		}
	}
	for i, k := range p.Match.Intel {
		switch k {
		case "ip", "cidr", "domain", "sni", "ja3", "ja4":
		default:
			return bad(fmt.Sprintf("match.intel[%d]", i), "%q: must be ip, cidr, domain, sni, ja3 or ja4", k)
		}
	}
	c := p.Canary
	if c.Group != "" {
		if _, ok := groups[c.Group]; !ok {
			return bad("canary.group", "no asset group %q", c.Group)
		}
	}
	for i, s := range c.Subnets {
		if !s.IsValid() {
			return bad(fmt.Sprintf("canary.subnets[%d]", i), "invalid prefix")
		}
	}
	if c.Percent < 0 || c.Percent > 100 {
		return bad("canary.percent", "%v: must be within 0..100", c.Percent)
	}
	if p.Stage == StageCanary && c.Group == "" && len(c.Subnets) == 0 && c.Percent == 0 {
		return bad("canary", "a canary stage needs a subset: group, subnets or percent")
	}
	if p.Dwell < 0 || p.Watch < 0 {
		return bad("dwell", "durations must not be negative")
	}
	return nil
}

// matches reports whether alert a matches, and the address to act on.
func (p *Policy) matches(a *detect.Alert, home []netip.Prefix, groups map[string][]netip.Prefix) (netip.Addr, bool) {
	m := &p.Match
	if len(m.Types) > 0 && !slices.Contains(m.Types, a.Type) {
		return netip.Addr{}, false
	}
	if len(m.Detectors) > 0 && !slices.Contains(m.Detectors, a.Detector) {
		return netip.Addr{}, false
	}
	if a.Risk < m.MinRisk {
		return netip.Addr{}, false
	}
	if m.Attacker != "" && a.Attacker.IsValid() {
		if inPrefixes(a.Attacker, home) != (m.Attacker == "internal") {
			return netip.Addr{}, false
		}
	}
	if len(m.Intel) > 0 {
		kind, _ := a.Evidence["indicator_type"].(string)
		if a.Type != detect.TypeIOC || !slices.Contains(m.Intel, kind) {
			return netip.Addr{}, false
		}
	}
	target := a.Attacker
	if p.Target == "victim" {
		target = netip.Addr{}
		if len(a.Victims) > 0 {
			target = a.Victims[0]
		}
	}
	if !target.IsValid() {
		return netip.Addr{}, false
	}
	target = target.Unmap()
	if len(m.Groups) > 0 {
		in := false
		for _, g := range m.Groups {
			in = in || inPrefixes(target, groups[g])
		}
		if !in {
			return netip.Addr{}, false
		}
	}
	return target, true
}

// inCanary reports whether target is in the policy's canary subset.
func (p *Policy) inCanary(target netip.Addr, groups map[string][]netip.Prefix) bool {
	c := &p.Canary
	if c.Group != "" && inPrefixes(target, groups[c.Group]) {
		return true
	}
	if inPrefixes(target, c.Subnets) {
		return true
	}
	return c.Percent > 0 && canaryBucket(p.ID, target) < c.Percent*100
}

// canaryBucket maps (policy, address) to 0..9999, stably across restarts
// and boxes.
func canaryBucket(policy string, a netip.Addr) float64 {
	h := fnv.New64a()
	h.Write([]byte(policy))
	h.Write([]byte{0})
	b := a.As16()
	h.Write(b[:])
	return float64(binary.BigEndian.Uint64(h.Sum(nil)) % 10000)
}

func inPrefixes(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
