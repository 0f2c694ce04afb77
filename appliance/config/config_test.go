package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/wardline/wardline/dataplane"
	"github.com/wardline/wardline/enforce"
)

func TestReferenceConfig(t *testing.T) {
	c, err := Load("reference.json")
	if err != nil {
		t.Fatal(err)
	}
	if c.Bridge != (Bridge{Name: "br0", Inside: "in0", Outside: "out0", Create: true, WaitForLinks: 30 * time.Second}) {
		t.Errorf("bridge %+v", c.Bridge)
	}
	if c.Management.Listen != netip.MustParseAddrPort("198.18.254.1:9100") || len(c.Management.Addresses) != 1 {
		t.Errorf("management %+v", c.Management)
	}
	d := c.Dataplane
	if d.Mode != dataplane.ModeGeneric || d.PinDir != "/sys/fs/bpf/wardline" || d.FlowTableSize != 262144 ||
		d.RingBytes != 16<<20 || d.SnippetBytes != 2048 || d.IdleTimeout != time.Minute || d.ActiveTimeout != 2*time.Minute ||
		d.CloseTimeout != 5*time.Second || d.SweepInterval != time.Second {
		t.Errorf("dataplane %+v", d)
	}
	if len(d.Allowlist) != 2 || len(d.Blocklist) != 2 || d.Blocklist[1].List != dataplane.BlockDst {
		t.Errorf("lists %+v %+v", d.Allowlist, d.Blocklist)
	}
	if !c.Log.Flows || c.Log.Snippets || !c.Log.Alerts {
		t.Errorf("log %+v", c.Log)
	}
	if len(c.Detect.HomeNets) != 2 || c.Detect.EVE != "/perm/wardline/eve.json" || c.Detect.Indicators == "" ||
		len(c.Detect.Suppress) != 1 || c.Detect.Suppress[0].Attacker.Bits() != 32 || len(c.Detect.Maintenance) != 1 {
		t.Errorf("detect %+v", c.Detect)
	}
	if err := d.Options().Validate(); err != nil {
		t.Errorf("reference dataplane options rejected by the dataplane: %v", err)
	}
	e := c.Enforce
	// gateway, resolver and the management address (added automatically).
	if len(e.NeverBlock) != 3 || e.NeverBlock[0].Name != "management address" || e.NeverBlock[2].Prefix != netip.MustParsePrefix("198.18.0.53/32") {
		t.Errorf("never_block %+v", e.NeverBlock)
	}
	if in := e.Inspection; in == nil || len(in.Rules) != 2 || string(in.Rules[0].Content) != "/c2/beacon" || in.Rules[0].DstPort != 80 || !in.Rules[1].NoCase {
		t.Errorf("inspection %+v", e.Inspection)
	}
	if len(e.Policies) != 4 || e.Policies[0].Dwell != enforce.Duration(30*time.Minute) || e.Policies[1].Scope != enforce.ScopeAll ||
		e.Policies[3].Target != "victim" || len(e.Groups["office-clients"]) != 1 || !e.NFT || e.Thresholds.CollateralPPS != 20 ||
		e.Guardrails.MaxTTL != 168*time.Hour || e.TokenFile != "/perm/wardline/api-token" {
		t.Errorf("enforce %+v", e)
	}
}

// TestBoardConfigs: the default configuration every board image carries
// parses and keeps its policies in audit.
func TestBoardConfigs(t *testing.T) {
	for _, board := range []string{"pc-amd64", "rpi4"} {
		c, err := Load("../../boards/" + board + "/wardlined.json")
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Enforce.Policies) == 0 {
			t.Errorf("%s: the board config has no policies", board)
		}
		for _, p := range c.Enforce.Policies {
			if p.Stage != "" && p.Stage != enforce.StageAudit {
				t.Errorf("%s: policy %s starts in %s; a fresh box starts every policy in audit", board, p.ID, p.Stage)
			}
		}
		if !strings.HasPrefix(c.Enforce.StateDir, "/perm/") || !strings.HasPrefix(c.Detect.EVE, "/perm/") {
			t.Errorf("%s: state %q and EVE %q must live on /perm, the only writable file system", board, c.Enforce.StateDir, c.Detect.EVE)
		}
	}
}

func TestMinimalConfigDefaults(t *testing.T) {
	c, err := Load("minimal.json")
	if err != nil {
		t.Fatal(err)
	}
	d := c.Dataplane
	if d.BPFFS != DefaultBPFFS || d.PinDir != DefaultPinDir || d.FlowTableSize != dataplane.DefaultFlowTableSize ||
		d.SweepInterval != DefaultSweepInterval || !c.Bridge.Create || c.Bridge.WaitForLinks != DefaultWaitForLinks || c.Log.Flows {
		t.Errorf("defaults not applied: %+v %+v", c, d)
	}
}

func TestBadConfigs(t *testing.T) {
	const ok = `{"bridge": {"name": "br0", "inside": "eth1", "outside": "eth2"},
"management": {"interface": "eth0", "listen": "198.18.254.1:9100"},
"dataplane": {"xdp_mode": "generic"}}`
	tests := []struct {
		name, in string
		want     []string // substrings of the error
	}{
		{"empty", "", []string{"empty file"}},
		{"syntax", "{\n  \"bridge\": {,}\n}", []string{"t.json:2:14", "syntax error"}},
		{"unknown field", strings.Replace(ok, `"xdp_mode"`, `"xdp_mdoe": "x", "xdp_mode"`, 1), []string{"t.json:3:", `unknown field "xdp_mdoe"`}},
		{"type", strings.Replace(ok, `"generic"}`, `"generic", "flow_table_size": "big"}`, 1), []string{"t.json:3:", "flow_table_size", "string"}},
		{"trailing", ok + " {}", []string{"unexpected data after"}},
		{"missing sections", `{}`, []string{"bridge: required", "management: required", "dataplane: required"}},
		{"no mode", strings.Replace(ok, `"xdp_mode": "generic"`, `"idle_timeout": "1m"`, 1), []string{"dataplane.xdp_mode: required"}},
		{"bad mode", strings.Replace(ok, `"generic"`, `"auto"`, 1), []string{"dataplane.xdp_mode", `"auto"`}},
		{"same ports", strings.Replace(ok, `"eth2"`, `"eth1"`, 1), []string{"bridge.outside", "must differ"}},
		{"mgmt in bridge", strings.Replace(ok, `"interface": "eth0"`, `"interface": "eth1"`, 1), []string{"management.interface", "bridge port", "in-band"}},
		{"long ifname", strings.Replace(ok, `"br0"`, `"a-very-long-bridge-name"`, 1), []string{"bridge.name", "15 characters"}},
		{"bad link wait", strings.Replace(ok, `"outside": "eth2"`, `"outside": "eth2", "wait_for_links": "2h"`, 1), []string{"bridge.wait_for_links", "between 0s and 1h"}},
		{"bad listen", strings.Replace(ok, `198.18.254.1:9100`, `nowhere`, 1), []string{"management.listen", "address:port"}},
		{"bad duration", strings.Replace(ok, `"generic"`, `"generic", "idle_timeout": "soon"`, 1), []string{"dataplane.idle_timeout", "not a duration"}},
		{"ring not pow2", strings.Replace(ok, `"generic"`, `"generic", "ring_buffer_bytes": 5000`, 1), []string{"ring_buffer_bytes", "power of two"}},
		{"snippet too big", strings.Replace(ok, `"generic"`, `"generic", "snippet_bytes": 9000`, 1), []string{"snippet_bytes", "out of range"}},
		{"close > idle", strings.Replace(ok, `"generic"`, `"generic", "idle_timeout": "2s", "close_timeout": "3s"`, 1), []string{"close_timeout", "longer than idle_timeout"}},
		{"bad block", strings.Replace(ok, `"generic"`, `"generic", "blocklist": [{"prefix": "1.2.3.4/33", "match": "src"}, {"prefix": "1.2.3.0/24", "match": "both"}]`, 1),
			[]string{"dataplane.blocklist[0].prefix", "dataplane.blocklist[1].match"}},
		{"bad home net", strings.Replace(ok, `"dataplane":`, `"detect": {"home_nets": ["10.0.0.0/33"], "eve": "eve.json"}, "dataplane":`, 1), []string{"detect.home_nets[0]", "detect.eve", "absolute"}},
		{"bad suppression", strings.Replace(ok, `"dataplane":`, `"detect": {"suppress": [{"name": "x"}], "maintenance": [{"name": "m", "from": "tonight", "to": "2026-01-01T00:00:00Z"}]}, "dataplane":`, 1),
			[]string{"detect.suppress[0]: matches every alert", "detect.maintenance[0].from"}},
		{"bad enforce", strings.Replace(ok, `"dataplane":`, `"enforce": {"state_dir": "perm", "never_block": [{"prefix": "198.18.0.300"}],
"groups": {"g": ["10.0.0.0/40"]}, "guardrails": {"max_active": 0, "max_ttl": "forever"}, "health": {"tcp_margin": 2},
"policies": [{"id": "p", "action": "block", "ttl": "1h", "match": {"types": ["portscan"]}}, {"id": "q", "action": "block", "ttl": "1h", "colour": "red"},
{"id": "r", "action": "block", "ttl": "1h"}, {"id": "r", "action": "alert"}],
"inspection": {"queue": 70000, "rules": [{"name": "a", "content": "x", "content_hex": "78", "action": "drop"}, {"name": "b", "content": "y", "proto": "icmp", "action": "reject"}]}}, "dataplane":`, 1),
			[]string{"enforce.state_dir", "enforce.never_block[0].prefix", "enforce.never_block[0].name", "enforce.groups.g[0]",
				"enforce.guardrails.max_active", "enforce.guardrails.max_ttl", "enforce.health.tcp_margin",
				`enforce.policies[0]: policy "p": match.types[0]: unknown alert type "portscan"`, `enforce.policies[1]: unknown field "colour"`,
				`enforce.policies[3].id: "r" is used twice`, "enforce.inspection.queue", "enforce.inspection.rules[0]: content and content_hex",
				`enforce.inspection.rules[1].proto: "icmp"`, `enforce.inspection.rules[1].action: "reject"`}},
		{"pin outside bpffs", strings.Replace(ok, `"generic"`, `"generic", "pin_dir": "/tmp/pins"`, 1), []string{"dataplane.pin_dir", "below the bpffs"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.json", []byte(tc.in))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	if _, err := Parse("t.json", []byte(ok)); err != nil {
		t.Fatalf("the base of the bad configs is itself bad: %v", err)
	}
}
