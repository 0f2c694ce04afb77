package config

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/wardline/wardline/enforce"
	"github.com/wardline/wardline/enforce/nfq"
)

// Enforce configures the enforcement layer.
type Enforce struct {
	// StateDir holds the decisions and rollout state (state.json), the
	// audit log (audit.log) and the generated API token (api-token).
	StateDir string
	// TokenFile holds the management API's bearer token for the
	// enforcement endpoints; default StateDir/api-token, generated at
	// first start.
	TokenFile string
	// NeverBlock: never blocked whatever a policy or operator says; the
	// management addresses are added automatically.
	NeverBlock []enforce.NamedPrefix
	Groups     map[string][]netip.Prefix
	Guardrails enforce.Guardrails
	Thresholds enforce.Thresholds
	// BaselineWindow: the span before a rollout its health baseline
	// covers.
	BaselineWindow time.Duration
	// NFT: also program nft sets in a bridge-family table (scope nft/all).
	NFT      bool
	NFTTable string
	Policies []enforce.Policy
	// Inspection: NFQUEUE deep inspection of the traffic of "inspect"
	// decisions (nil: not configured, inspect decisions are refused).
	Inspection *Inspection
}

// Inspection configures the NFQUEUE inspector.
type Inspection struct {
	Queue uint16
	Rules []nfq.Rule
}

// Defaults of the enforce section.
const (
	DefaultStateDir = "/perm/wardline"
	DefaultNFTTable = "wardline"
)

type rawEnforce struct {
	StateDir   string `json:"state_dir"`
	TokenFile  string `json:"token_file"`
	NeverBlock []struct {
		Prefix string `json:"prefix"`
		Name   string `json:"name"`
	} `json:"never_block"`
	Groups     map[string][]string `json:"groups"`
	Guardrails *struct {
		MaxNewPerMinute *int   `json:"max_new_per_minute"`
		MaxActive       *int   `json:"max_active"`
		MaxTTL          string `json:"max_ttl"`
		MinPrefixV4     *int   `json:"min_prefix_v4"`
		MinPrefixV6     *int   `json:"min_prefix_v6"`
	} `json:"guardrails"`
	Health *struct {
		Window           string   `json:"window"`
		BaselineWindow   string   `json:"baseline_window"`
		TCPMargin        *float64 `json:"tcp_margin"`
		TCPMin           *uint64  `json:"tcp_min"`
		DNSMargin        *float64 `json:"dns_margin"`
		DNSMin           *uint64  `json:"dns_min"`
		NeverBlockMargin *float64 `json:"never_block_margin"`
		NeverBlockMin    *uint64  `json:"never_block_min"`
		CollateralPPS    *float64 `json:"collateral_pps"`
	} `json:"health"`
	NFT *struct {
		Enabled *bool  `json:"enabled"`
		Table   string `json:"table"`
	} `json:"nft"`
	Policies   []json.RawMessage `json:"policies"`
	Inspection *struct {
		Queue *int `json:"queue"`
		Rules []struct {
			Name       string `json:"name"`
			Content    string `json:"content"`
			ContentHex string `json:"content_hex"`
			NoCase     bool   `json:"nocase"`
			Offset     int    `json:"offset"`
			Depth      int    `json:"depth"`
			Proto      string `json:"proto"`
			DstPort    int    `json:"dst_port"`
			Action     string `json:"action"`
		} `json:"rules"`
	} `json:"inspection"`
}

func (r *raw) validateEnforce(c *Config) []error {
	var errs []error
	fail := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	e := &c.Enforce
	e.StateDir, e.NFT, e.NFTTable = DefaultStateDir, true, DefaultNFTTable
	e.Guardrails = enforce.DefaultGuardrails
	e.Thresholds = enforce.DefaultThresholds
	e.BaselineWindow = 5 * time.Minute
	for _, a := range c.Management.Addresses {
		e.NeverBlock = append(e.NeverBlock, enforce.NamedPrefix{Prefix: netip.PrefixFrom(a.Addr(), a.Addr().BitLen()), Name: "management address"})
	}
	if c.Management.Listen.IsValid() {
		a := c.Management.Listen.Addr()
		p := netip.PrefixFrom(a, a.BitLen())
		if !a.IsUnspecified() && !containsPrefix(e.NeverBlock, p) {
			e.NeverBlock = append(e.NeverBlock, enforce.NamedPrefix{Prefix: p, Name: "management listener"})
		}
	}
	// The dataplane's allowlist is never blocked either (after the
	// configured entries, which name their reason).
	defer func() {
		for _, p := range c.Dataplane.Allowlist {
			if !containsPrefix(e.NeverBlock, p) {
				e.NeverBlock = append(e.NeverBlock, enforce.NamedPrefix{Prefix: p, Name: "dataplane allowlist"})
			}
		}
	}()
	x := r.Enforce
	if x == nil {
		e.TokenFile = e.StateDir + "/api-token"
		return nil
	}
	if x.StateDir != "" {
		if !strings.HasPrefix(x.StateDir, "/") {
			fail("enforce.state_dir", "%q must be an absolute path", x.StateDir)
		}
		e.StateDir = x.StateDir
	}
	e.TokenFile = orDefault(x.TokenFile, e.StateDir+"/api-token")
	if x.TokenFile != "" && !strings.HasPrefix(e.TokenFile, "/") {
		fail("enforce.token_file", "%q must be an absolute path", e.TokenFile)
	}
	for i, nb := range x.NeverBlock {
		f := fmt.Sprintf("enforce.never_block[%d]", i)
		if nb.Name == "" {
			fail(f+".name", "required (say why it must never be blocked: gateway, resolver …)")
		}
		p, err := enforce.ParseTarget(nb.Prefix)
		if err != nil {
			fail(f+".prefix", "%v", err)
			continue
		}
		e.NeverBlock = append(e.NeverBlock, enforce.NamedPrefix{Prefix: p, Name: nb.Name})
	}
	names := make([]string, 0, len(x.Groups))
	for n := range x.Groups {
		names = append(names, n)
	}
	sort.Strings(names)
	e.Groups = map[string][]netip.Prefix{}
	for _, n := range names {
		if n == "" {
			fail("enforce.groups", "a group needs a name")
		}
		for i, v := range x.Groups[n] {
			p, err := enforce.ParseTarget(v)
			if err != nil {
				fail(fmt.Sprintf("enforce.groups.%s[%d]", n, i), "%v", err)
				continue
			}
			e.Groups[n] = append(e.Groups[n], p)
		}
	}
	dur := func(field, v string, def, min time.Duration) time.Duration {
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < min {
			fail(field, "%q is not a duration of at least %s (like \"10s\", \"24h\")", v, min)
			return def
		}
		return d
	}
	if g := x.Guardrails; g != nil {
		pos := func(field string, v *int, dst *int, lo, hi int) {
			if v == nil {
				return
			}
			if *v < lo || *v > hi {
				fail(field, "%d is out of range [%d, %d]", *v, lo, hi)
				return
			}
			*dst = *v
		}
		pos("enforce.guardrails.max_new_per_minute", g.MaxNewPerMinute, &e.Guardrails.MaxNewPerMinute, 1, 1_000_000)
		pos("enforce.guardrails.max_active", g.MaxActive, &e.Guardrails.MaxActive, 1, 10_000_000)
		pos("enforce.guardrails.min_prefix_v4", g.MinPrefixV4, &e.Guardrails.MinPrefix4, 1, 32)
		pos("enforce.guardrails.min_prefix_v6", g.MinPrefixV6, &e.Guardrails.MinPrefix6, 1, 128)
		e.Guardrails.MaxTTL = dur("enforce.guardrails.max_ttl", g.MaxTTL, e.Guardrails.MaxTTL, time.Second)
	}
	if h := x.Health; h != nil {
		t := &e.Thresholds
		t.Window = dur("enforce.health.window", h.Window, t.Window, 2*time.Second)
		e.BaselineWindow = dur("enforce.health.baseline_window", h.BaselineWindow, e.BaselineWindow, 10*time.Second)
		frac := func(field string, v *float64, dst *float64) {
			if v == nil {
				return
			}
			if *v <= 0 || *v > 1 {
				fail(field, "%v must be a fraction in (0, 1]", *v)
				return
			}
			*dst = *v
		}
		count := func(v *uint64, dst *uint64) {
			if v != nil && *v > 0 {
				*dst = *v
			}
		}
		frac("enforce.health.tcp_margin", h.TCPMargin, &t.TCPMargin)
		frac("enforce.health.dns_margin", h.DNSMargin, &t.DNSMargin)
		frac("enforce.health.never_block_margin", h.NeverBlockMargin, &t.NeverBlockMargin)
		count(h.TCPMin, &t.TCPMin)
		count(h.DNSMin, &t.DNSMin)
		count(h.NeverBlockMin, &t.NeverBlockMin)
		if h.CollateralPPS != nil {
			if *h.CollateralPPS <= 0 {
				fail("enforce.health.collateral_pps", "%v must be positive", *h.CollateralPPS)
			} else {
				t.CollateralPPS = *h.CollateralPPS
			}
		}
	}
	if n := x.NFT; n != nil {
		if n.Enabled != nil {
			e.NFT = *n.Enabled
		}
		e.NFTTable = orDefault(n.Table, DefaultNFTTable)
	}
	if in := x.Inspection; in != nil {
		e.Inspection = &Inspection{}
		if in.Queue != nil {
			if *in.Queue < 0 || *in.Queue > 65535 {
				fail("enforce.inspection.queue", "%d is out of range [0, 65535]", *in.Queue)
			} else {
				e.Inspection.Queue = uint16(*in.Queue)
			}
		}
		for i, r := range in.Rules {
			f := fmt.Sprintf("enforce.inspection.rules[%d]", i)
			nr := nfq.Rule{Name: r.Name, NoCase: r.NoCase, Offset: r.Offset, Depth: r.Depth}
			switch {
			case r.Content != "" && r.ContentHex != "":
				fail(f, "content and content_hex: give one")
			case r.ContentHex != "":
				b, err := hex.DecodeString(r.ContentHex)
				if err != nil {
					fail(f+".content_hex", "%v", err)
				}
				nr.Content = b
			default:
				nr.Content = []byte(r.Content)
			}
			switch r.Proto {
			case "":
			case "tcp":
				nr.Proto = nfq.ProtoTCP
			case "udp":
				nr.Proto = nfq.ProtoUDP
			default:
				fail(f+".proto", "%q: must be tcp or udp", r.Proto)
			}
			if r.DstPort < 0 || r.DstPort > 65535 {
				fail(f+".dst_port", "%d is out of range", r.DstPort)
			} else {
				nr.DstPort = uint16(r.DstPort)
			}
			switch r.Action {
			case "drop":
				nr.Action = nfq.Drop
			case "accept":
				nr.Action = nfq.Accept
			default:
				fail(f+".action", "%q: must be drop or accept", r.Action)
			}
			e.Inspection.Rules = append(e.Inspection.Rules, nr)
		}
		if _, err := nfq.Compile(e.Inspection.Rules); err != nil {
			fail("enforce.inspection.rules", "%v", err)
		}
	}
	seen := map[string]bool{}
	for i, raw := range x.Policies {
		f := fmt.Sprintf("enforce.policies[%d]", i)
		var p enforce.Policy
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			fail(f, "%s", strings.TrimPrefix(err.Error(), "json: "))
			continue
		}
		if err := p.Validate(e.Guardrails, e.Groups); err != nil {
			fail(f, "%v", err)
			continue
		}
		if seen[p.ID] {
			fail(f+".id", "%q is used twice", p.ID)
			continue
		}
		seen[p.ID] = true
		e.Policies = append(e.Policies, p)
	}
	return errs
}

func containsPrefix(l []enforce.NamedPrefix, p netip.Prefix) bool {
	for _, x := range l {
		if x.Prefix == p {
			return true
		}
	}
	return false
}
