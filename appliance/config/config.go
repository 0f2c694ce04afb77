// Package config reads wardlined's configuration file: JSON, decoded
// strictly (unknown fields, trailing data and type mismatches are errors
// that carry their line and column) into a raw form, then validated into
// typed values with errors that name the offending field.
//
// The reference configuration, with every field, is reference.json in this
// directory; a test parses it.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/wardline/wardline/dataplane"
)

// Config is the validated configuration.
type Config struct {
	Bridge     Bridge
	Management Management
	Dataplane  Dataplane
	Detect     Detect
	Enforce    Enforce
	Log        Log
}

// Detect configures the detection engine.
type Detect struct {
	HomeNets   []netip.Prefix // default: the private ranges (RFC 1918, fc00::/7)
	Assets     string         // asset inventory file (CSV or JSON), optional
	Indicators string         // IOC lists (JSON), optional
	EVE        string         // EVE JSON output file, optional
	Disabled   []string       // detector names to leave out
	// Suppress drops matching alerts (counted per rule); Maintenance
	// drops alerts during a window (counted per window).
	Suppress    []SuppressRule
	Maintenance []MaintenanceWindow
}

// SuppressRule matches alerts to drop; empty fields match anything.
type SuppressRule struct {
	Name     string
	Type     string
	Detector string
	Attacker netip.Prefix
	Victim   netip.Prefix
}

// MaintenanceWindow silences alerts for a while (for some prefixes, or all).
type MaintenanceWindow struct {
	Name     string
	From, To time.Time
	Prefixes []netip.Prefix
}

// DefaultHomeNets are the home networks when the config names none.
var DefaultHomeNets = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("fc00::/7"),
}

// Bridge describes the bump-in-the-wire: two ports in one bridge.
type Bridge struct {
	Name    string // bridge device, e.g. br0
	Inside  string // port facing the office / LAN
	Outside string // port facing the uplink / WAN
	// Create makes wardlined create the bridge and enslave the ports if
	// they are not already; with false it only checks.
	Create bool
	// WaitForLinks bounds how long wardlined waits at start for the ports
	// and the management interface to appear (NIC drivers, USB NICs in
	// particular, may register after the service starts). Default 60s.
	WaitForLinks time.Duration
}

// DefaultWaitForLinks is Bridge.WaitForLinks when the config names none.
const DefaultWaitForLinks = 60 * time.Second

// Management is the separate interface the box is managed through.
type Management struct {
	// Interface is a separate NIC, or the bridge itself for in-band
	// management on boxes with only two ports (rpi4).
	Interface string
	Addresses []netip.Prefix // assigned at start if missing; empty: left alone (e.g. DHCP)
	Listen    netip.AddrPort // management API and /metrics
}

// StaticBlock is a blocklist entry from the configuration.
type StaticBlock struct {
	Prefix netip.Prefix
	List   dataplane.List // BlockSrc or BlockDst
}

// Dataplane holds the fast path's knobs.
type Dataplane struct {
	Mode          dataplane.Mode
	BPFFS         string // bpffs mountpoint
	PinDir        string // directory under BPFFS for Wardline's pins
	FlowTableSize uint32
	RingBytes     uint32
	SnippetBytes  uint32
	FlowSample    uint32
	IdleTimeout   time.Duration
	ActiveTimeout time.Duration
	CloseTimeout  time.Duration
	SweepInterval time.Duration
	Allowlist     []netip.Prefix
	Blocklist     []StaticBlock
}

// Options converts to dataplane load options.
func (d Dataplane) Options() dataplane.Options {
	return dataplane.Options{
		PinDir:        d.PinDir,
		FlowTableSize: d.FlowTableSize,
		RingBytes:     d.RingBytes,
		SnippetLen:    d.SnippetBytes,
		FlowSample:    d.FlowSample,
		IdleTimeout:   d.IdleTimeout,
		ActiveTimeout: d.ActiveTimeout,
		CloseTimeout:  d.CloseTimeout,
	}
}

// Log selects what wardlined writes to its log.
type Log struct {
	Flows    bool // one line per flow record
	Snippets bool // one line per payload snippet
	Alerts   bool // one line per alert (default true)
}

// raw mirrors the file. Pointers distinguish "absent" from zero.
type raw struct {
	Bridge *struct {
		Name         string `json:"name"`
		Inside       string `json:"inside"`
		Outside      string `json:"outside"`
		Create       *bool  `json:"create"`
		WaitForLinks string `json:"wait_for_links"`
	} `json:"bridge"`
	Management *struct {
		Interface string   `json:"interface"`
		Addresses []string `json:"addresses"`
		Listen    string   `json:"listen"`
	} `json:"management"`
	Dataplane *struct {
		XDPMode         string   `json:"xdp_mode"`
		BPFFS           string   `json:"bpffs"`
		PinDir          string   `json:"pin_dir"`
		FlowTableSize   *int64   `json:"flow_table_size"`
		RingBufferBytes *int64   `json:"ring_buffer_bytes"`
		SnippetBytes    *int64   `json:"snippet_bytes"`
		FlowSampleOneIn *int64   `json:"flow_sample_one_in"`
		IdleTimeout     string   `json:"idle_timeout"`
		ActiveTimeout   string   `json:"active_timeout"`
		CloseTimeout    string   `json:"close_timeout"`
		SweepInterval   string   `json:"sweep_interval"`
		Allowlist       []string `json:"allowlist"`
		Blocklist       []struct {
			Prefix string `json:"prefix"`
			Match  string `json:"match"`
		} `json:"blocklist"`
	} `json:"dataplane"`
	Detect *struct {
		HomeNets   []string `json:"home_nets"`
		Assets     string   `json:"assets"`
		Indicators string   `json:"indicators"`
		EVE        string   `json:"eve"`
		Disabled   []string `json:"disabled"`
		Suppress   []struct {
			Name     string `json:"name"`
			Type     string `json:"type"`
			Detector string `json:"detector"`
			Attacker string `json:"attacker"`
			Victim   string `json:"victim"`
		} `json:"suppress"`
		Maintenance []struct {
			Name     string   `json:"name"`
			From     string   `json:"from"`
			To       string   `json:"to"`
			Prefixes []string `json:"prefixes"`
		} `json:"maintenance"`
	} `json:"detect"`
	Enforce *rawEnforce `json:"enforce"`
	Log     *struct {
		Flows    bool  `json:"flows"`
		Snippets bool  `json:"snippets"`
		Alerts   *bool `json:"alerts"`
	} `json:"log"`
}

// Load reads and validates the file at path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, b)
}

// Parse decodes and validates b; name is used in error messages.
func Parse(name string, b []byte) (*Config, error) {
	var r raw
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%s:%s", name, describeDecodeError(b, dec, err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		line, col := position(b, dec.InputOffset())
		return nil, fmt.Errorf("%s:%d:%d: unexpected data after the configuration object", name, line, col)
	}
	c, errs := r.validate()
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = fmt.Sprintf("%s: %v", name, e)
		}
		return nil, errors.New(strings.Join(msgs, "\n"))
	}
	return c, nil
}

func describeDecodeError(b []byte, dec *json.Decoder, err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		// Offset counts the offending byte; point at it.
		line, col := position(b, se.Offset-1)
		return fmt.Sprintf("%d:%d: syntax error: %v", line, col, se)
	case errors.As(err, &te):
		line, col := position(b, te.Offset)
		return fmt.Sprintf("%d:%d: field %s: cannot use a JSON %s as %v", line, col, te.Field, te.Value, te.Type)
	case errors.Is(err, io.EOF):
		return " empty file: want a JSON object"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return " unexpected end of file (unterminated object or string?)"
	}
	// Unknown fields: the decoder stops right after the key.
	line, col := position(b, dec.InputOffset())
	return fmt.Sprintf("%d:%d: %v", line, col, strings.TrimPrefix(err.Error(), "json: "))
}

// position converts a byte offset to a 1-based line and column.
func position(b []byte, off int64) (line, col int) {
	off = max(0, min(off, int64(len(b))))
	line, col = 1, 1
	for _, c := range b[:off] {
		if c == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return line, col
}

// Defaults.
const (
	DefaultBPFFS         = "/sys/fs/bpf"
	DefaultPinDir        = "/sys/fs/bpf/wardline"
	DefaultSweepInterval = time.Second
)

func (r *raw) validate() (*Config, []error) {
	var errs []error
	fail := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	c := &Config{}

	if r.Bridge == nil {
		fail("bridge", "required (name, inside, outside)")
	} else {
		b := r.Bridge
		c.Bridge = Bridge{Name: b.Name, Inside: b.Inside, Outside: b.Outside, Create: b.Create == nil || *b.Create, WaitForLinks: DefaultWaitForLinks}
		if b.WaitForLinks != "" {
			if x, err := time.ParseDuration(b.WaitForLinks); err != nil || x < 0 || x > time.Hour {
				fail("bridge.wait_for_links", "%q is not a duration between 0s and 1h (like \"60s\")", b.WaitForLinks)
			} else {
				c.Bridge.WaitForLinks = x
			}
		}
		for _, f := range []struct{ field, v string }{{"bridge.name", b.Name}, {"bridge.inside", b.Inside}, {"bridge.outside", b.Outside}} {
			if err := checkIfname(f.v); err != nil {
				fail(f.field, "%v", err)
			}
		}
		if b.Inside != "" && b.Inside == b.Outside {
			fail("bridge.outside", "%q is also the inside port; the two ports must differ", b.Outside)
		}
		if b.Name != "" && (b.Name == b.Inside || b.Name == b.Outside) {
			fail("bridge.name", "%q is also a port name", b.Name)
		}
	}

	if r.Management == nil {
		fail("management", "required (interface, listen)")
	} else {
		m := r.Management
		c.Management.Interface = m.Interface
		if err := checkIfname(m.Interface); err != nil {
			fail("management.interface", "%v", err)
		} else if r.Bridge != nil && (m.Interface == r.Bridge.Inside || m.Interface == r.Bridge.Outside) {
			fail("management.interface", "%q is a bridge port; manage the box on a separate interface or in-band on the bridge (%q)", m.Interface, r.Bridge.Name)
		}
		for i, a := range m.Addresses {
			p, err := netip.ParsePrefix(a)
			if err != nil {
				fail(fmt.Sprintf("management.addresses[%d]", i), "%q is not an address with prefix length (like 198.18.254.1/24)", a)
				continue
			}
			c.Management.Addresses = append(c.Management.Addresses, p)
		}
		ap, err := netip.ParseAddrPort(m.Listen)
		switch {
		case m.Listen == "":
			fail("management.listen", "required (address:port on the management interface)")
		case err != nil:
			fail("management.listen", "%q is not address:port", m.Listen)
		case ap.Port() == 0:
			fail("management.listen", "port 0 is not allowed")
		default:
			c.Management.Listen = ap
		}
	}

	if r.Dataplane == nil {
		fail("dataplane", "required (at least xdp_mode)")
	} else {
		d := r.Dataplane
		dp := &c.Dataplane
		if d.XDPMode == "" {
			fail("dataplane.xdp_mode", "required: \"generic\" or \"native\" (the mode is never chosen silently)")
		} else if m, err := dataplane.ParseMode(d.XDPMode); err != nil {
			fail("dataplane.xdp_mode", "%v", err)
		} else {
			dp.Mode = m
		}
		dp.BPFFS = orDefault(d.BPFFS, DefaultBPFFS)
		dp.PinDir = orDefault(d.PinDir, DefaultPinDir)
		if !strings.HasPrefix(dp.PinDir, strings.TrimSuffix(dp.BPFFS, "/")+"/") {
			fail("dataplane.pin_dir", "%q must be below the bpffs mountpoint %q", dp.PinDir, dp.BPFFS)
		}
		intField := func(field string, v *int64, def, min, max int64) uint32 {
			if v == nil {
				return uint32(def)
			}
			if *v < min || *v > max {
				fail(field, "%d is out of range [%d, %d]", *v, min, max)
				return uint32(def)
			}
			return uint32(*v)
		}
		dp.FlowTableSize = intField("dataplane.flow_table_size", d.FlowTableSize, dataplane.DefaultFlowTableSize, 1024, 1<<26)
		dp.RingBytes = intField("dataplane.ring_buffer_bytes", d.RingBufferBytes, dataplane.DefaultRingBytes, 4096, 1<<30)
		if dp.RingBytes&(dp.RingBytes-1) != 0 {
			fail("dataplane.ring_buffer_bytes", "%d is not a power of two", dp.RingBytes)
		}
		dp.SnippetBytes = intField("dataplane.snippet_bytes", d.SnippetBytes, dataplane.DefaultSnippetLen, 64, dataplane.MaxSnippetLen)
		dp.FlowSample = intField("dataplane.flow_sample_one_in", d.FlowSampleOneIn, 1, 1, 1<<20)
		durField := func(field, v string, def, min time.Duration) time.Duration {
			if v == "" {
				return def
			}
			x, err := time.ParseDuration(v)
			if err != nil {
				fail(field, "%q is not a duration (like \"60s\" or \"5m\")", v)
				return def
			}
			if x < min {
				fail(field, "%v is below the minimum %v", x, min)
				return def
			}
			return x
		}
		dp.IdleTimeout = durField("dataplane.idle_timeout", d.IdleTimeout, dataplane.DefaultIdleTimeout, time.Second)
		dp.ActiveTimeout = durField("dataplane.active_timeout", d.ActiveTimeout, dataplane.DefaultActiveTimeout, time.Second)
		dp.CloseTimeout = durField("dataplane.close_timeout", d.CloseTimeout, dataplane.DefaultCloseTimeout, 100*time.Millisecond)
		dp.SweepInterval = durField("dataplane.sweep_interval", d.SweepInterval, DefaultSweepInterval, 100*time.Millisecond)
		if dp.CloseTimeout > dp.IdleTimeout {
			fail("dataplane.close_timeout", "%v is longer than idle_timeout %v", dp.CloseTimeout, dp.IdleTimeout)
		}
		if dp.SweepInterval > dp.CloseTimeout {
			fail("dataplane.sweep_interval", "%v is longer than close_timeout %v; closed flows would wait for the sweep", dp.SweepInterval, dp.CloseTimeout)
		}
		for i, a := range d.Allowlist {
			p, err := netip.ParsePrefix(a)
			if err != nil {
				fail(fmt.Sprintf("dataplane.allowlist[%d]", i), "%q is not a prefix (like 198.18.0.1/32)", a)
				continue
			}
			dp.Allowlist = append(dp.Allowlist, p.Masked())
		}
		for i, b := range d.Blocklist {
			field := fmt.Sprintf("dataplane.blocklist[%d]", i)
			p, err := netip.ParsePrefix(b.Prefix)
			if err != nil {
				fail(field+".prefix", "%q is not a prefix", b.Prefix)
				continue
			}
			var l dataplane.List
			switch b.Match {
			case "src":
				l = dataplane.BlockSrc
			case "dst":
				l = dataplane.BlockDst
			default:
				fail(field+".match", "%q: must be \"src\" or \"dst\"", b.Match)
				continue
			}
			dp.Blocklist = append(dp.Blocklist, StaticBlock{Prefix: p.Masked(), List: l})
		}
	}
	c.Detect.HomeNets = DefaultHomeNets
	if d := r.Detect; d != nil {
		if len(d.HomeNets) > 0 {
			c.Detect.HomeNets = nil
		}
		for i, h := range d.HomeNets {
			p, err := netip.ParsePrefix(h)
			if err != nil {
				fail(fmt.Sprintf("detect.home_nets[%d]", i), "%q is not a prefix (like 10.0.0.0/8)", h)
				continue
			}
			c.Detect.HomeNets = append(c.Detect.HomeNets, p.Masked())
		}
		c.Detect.Assets, c.Detect.Indicators, c.Detect.EVE = d.Assets, d.Indicators, d.EVE
		c.Detect.Disabled = d.Disabled
		optPrefix := func(field, v string) netip.Prefix {
			if v == "" {
				return netip.Prefix{}
			}
			p, err := netip.ParsePrefix(v)
			if err != nil {
				if a, aerr := netip.ParseAddr(v); aerr == nil {
					return netip.PrefixFrom(a, a.BitLen())
				}
				fail(field, "%q is not an address or prefix", v)
			}
			return p.Masked()
		}
		for i, r := range d.Suppress {
			f := fmt.Sprintf("detect.suppress[%d]", i)
			if r.Name == "" {
				fail(f+".name", "required (it names the counter of what the rule suppressed)")
			}
			if r.Type == "" && r.Detector == "" && r.Attacker == "" && r.Victim == "" {
				fail(f, "matches every alert; give at least one of type, detector, attacker, victim")
			}
			c.Detect.Suppress = append(c.Detect.Suppress, SuppressRule{Name: r.Name, Type: r.Type, Detector: r.Detector,
				Attacker: optPrefix(f+".attacker", r.Attacker), Victim: optPrefix(f+".victim", r.Victim)})
		}
		for i, m := range d.Maintenance {
			f := fmt.Sprintf("detect.maintenance[%d]", i)
			w := MaintenanceWindow{Name: m.Name}
			var err error
			if w.From, err = time.Parse(time.RFC3339, m.From); err != nil {
				fail(f+".from", "%q is not an RFC 3339 time (like 2026-12-01T22:00:00Z)", m.From)
			}
			if w.To, err = time.Parse(time.RFC3339, m.To); err != nil {
				fail(f+".to", "%q is not an RFC 3339 time", m.To)
			}
			if m.Name == "" {
				fail(f+".name", "required")
			}
			if !w.To.After(w.From) {
				fail(f+".to", "must be after from")
			}
			for j, p := range m.Prefixes {
				w.Prefixes = append(w.Prefixes, optPrefix(fmt.Sprintf("%s.prefixes[%d]", f, j), p))
			}
			c.Detect.Maintenance = append(c.Detect.Maintenance, w)
		}
		for _, f := range []struct{ field, path string }{{"detect.assets", d.Assets}, {"detect.indicators", d.Indicators}, {"detect.eve", d.EVE}} {
			if f.path != "" && !strings.HasPrefix(f.path, "/") {
				fail(f.field, "%q must be an absolute path", f.path)
			}
		}
	}
	c.Log.Alerts = true
	if r.Log != nil {
		c.Log.Flows, c.Log.Snippets = r.Log.Flows, r.Log.Snippets
		if r.Log.Alerts != nil {
			c.Log.Alerts = *r.Log.Alerts
		}
	}
	errs = append(errs, r.validateEnforce(c)...)
	return c, errs
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func checkIfname(s string) error {
	switch {
	case s == "":
		return errors.New("required")
	case len(s) > 15:
		return fmt.Errorf("%q is longer than 15 characters (IFNAMSIZ)", s)
	case strings.ContainsAny(s, "/ \t\n:") || s == "." || s == "..":
		return fmt.Errorf("%q is not a valid interface name", s)
	}
	return nil
}
