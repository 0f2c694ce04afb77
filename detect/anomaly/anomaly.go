// Package anomaly reports protocol anomalies and long connections:
// connections opened with TCP flag combinations no stack sends (NULL, XMAS,
// SYN+FIN, SYN+RST — scanner and OS-fingerprinting probes), well-known
// protocols on ports they do not belong to (TLS, HTTP, SSH elsewhere than
// usual), and connections that stay open far longer than usual. See
// README.md.
package anomaly

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/wardline/wardline/dataplane/event"
	"github.com/wardline/wardline/detect"
)

// Config holds thresholds; zero values take the defaults.
type Config struct {
	InvalidFlags int           // distinct invalid-flag probes from one source before an alert (default 3)
	LongConn     time.Duration // a connection open this long is reported (default 2h)
	Window       time.Duration // one alert per source and kind per window (default 1h)
}

func (c *Config) defaults() {
	if c.InvalidFlags == 0 {
		c.InvalidFlags = 3
	}
	if c.LongConn == 0 {
		c.LongConn = 2 * time.Hour
	}
	if c.Window == 0 {
		c.Window = time.Hour
	}
}

// Detector is the anomaly detector.
type Detector struct {
	cfg     Config
	env     detect.Env
	flags   map[netip.Addr]*flagState
	alerted map[string]time.Time
}

type flagState struct {
	probes map[string]int // combination -> count
	dsts   map[netip.Addr]struct{}
	last   time.Time
}

// New returns an anomaly detector.
func New(cfg Config, env detect.Env) *Detector {
	cfg.defaults()
	return &Detector{cfg: cfg, env: env, flags: map[netip.Addr]*flagState{}, alerted: map[string]time.Time{}}
}

func (d *Detector) Name() string { return "anomaly" }

// InvalidFlags names a TCP flag combination that is invalid in the first
// packet of a connection; "" if it is fine.
func InvalidFlags(f uint8) string {
	const (
		fin, syn, rst, psh, urg = event.TCPFin, event.TCPSyn, event.TCPRst, event.TCPPsh, event.TCPUrg
	)
	switch {
	case f == 0:
		return "NULL"
	case f&(fin|psh|urg) == fin|psh|urg:
		return "XMAS"
	case f&(syn|fin) == syn|fin:
		return "SYN+FIN"
	case f&(syn|rst) == syn|rst:
		return "SYN+RST"
	case f&(fin|rst) == fin|rst:
		return "FIN+RST"
	}
	return ""
}

func (d *Detector) once(key string, t time.Time) bool {
	if at, ok := d.alerted[key]; ok && t.Sub(at) < d.cfg.Window {
		return false
	}
	d.alerted[key] = t
	return true
}

// OnConn checks first-packet flags and duration.
func (d *Detector) OnConn(c *detect.Conn) {
	if c.Key.Proto == event.ProtoTCP && c.Final {
		if inv := InvalidFlags(c.FirstFlags); inv != "" {
			st := d.flags[c.Key.Src]
			if st == nil {
				st = &flagState{probes: map[string]int{}, dsts: map[netip.Addr]struct{}{}}
				d.flags[c.Key.Src] = st
			}
			st.probes[inv]++
			st.dsts[c.Key.Dst] = struct{}{}
			st.last = c.End
			n := 0
			for _, k := range st.probes {
				n += k
			}
			if n >= d.cfg.InvalidFlags && d.once("flags|"+c.Key.Src.String(), c.End) {
				d.flagAlert(c, st, n)
			}
		}
	}
	if c.Duration() >= d.cfg.LongConn && d.once(fmt.Sprintf("long|%v|%v|%d", c.Key.Src, c.Key.Dst, c.Key.DstPort), c.End) {
		a := &detect.Alert{
			Type: detect.TypeLongConnection, Detector: d.Name(), Time: c.End, Attacker: c.Key.Src, Victims: []netip.Addr{c.Key.Dst},
			Signature:  fmt.Sprintf("%s has held a connection to %s port %d open for %s", c.Key.Src, c.Key.Dst, c.Key.DstPort, c.Duration().Round(time.Minute)),
			MITRE:      detect.MITREC2AppLayer,
			Confidence: 0.5,
			Reasons: []detect.Contribution{
				{Feature: "duration", Value: c.Duration().Seconds(), Points: 20 + min(20, c.Duration().Hours()),
					Why: fmt.Sprintf("open for %s (threshold %s)", c.Duration().Round(time.Minute), d.cfg.LongConn)},
			},
			Evidence: map[string]any{"orig_bytes": c.OrigBytes, "resp_bytes": c.RespBytes},
		}
		if c.Direction == detect.Outbound {
			a.Reasons = append(a.Reasons, detect.Contribution{Feature: "outbound", Value: 1, Points: 10, Why: "to a host outside the home networks"})
		}
		a.Score()
		d.env.Emit(a)
	}
}

func (d *Detector) flagAlert(c *detect.Conn, st *flagState, n int) {
	kinds := make([]string, 0, len(st.probes))
	for k := range st.probes {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	a := &detect.Alert{
		Type: detect.TypeProtocolAnomaly, Subtype: "invalid_tcp_flag_combinations", Detector: d.Name(), Time: c.End,
		Attacker: c.Key.Src, Victims: []netip.Addr{c.Key.Dst},
		Signature:  fmt.Sprintf("%s opened %d connections with invalid TCP flags (%s)", c.Key.Src, n, strings.Join(kinds, ", ")),
		MITRE:      detect.MITRENetworkScan,
		Confidence: 0.9,
		Reasons: []detect.Contribution{
			{Feature: "invalid_flag_probes", Value: float64(n), Points: 30 + min(20, float64(n)),
				Why: fmt.Sprintf("%d first packets with flag combinations no TCP stack sends", n)},
			{Feature: "combinations", Value: float64(len(kinds)), Points: 5 * float64(len(kinds)),
				Why: strings.Join(kinds, ", ") + " (typical of OS fingerprinting and stealth scans)"},
		},
		Evidence: map[string]any{"combinations": st.probes, "destinations": len(st.dsts)},
	}
	a.Score()
	d.env.Emit(a)
}

// standardPorts lists where a service normally runs; seeing it elsewhere
// is reported.
var standardPorts = map[string]map[uint16]bool{
	"tls":  {443: true, 8443: true, 993: true, 995: true, 465: true, 636: true, 853: true, 5986: true, 3389: true, 4443: true, 9443: true},
	"http": {80: true, 8080: true, 8000: true, 8008: true, 8888: true, 3128: true, 5985: true, 631: true},
	"ssh":  {22: true, 2222: true},
}

func (d *Detector) portAnomaly(t time.Time, k event.FlowKey, svc, what string) {
	if standardPorts[svc][k.DstPort] || !d.once(fmt.Sprintf("port|%v|%v|%d|%s", k.Src, k.Dst, k.DstPort, svc), t) {
		return
	}
	a := &detect.Alert{
		Type: detect.TypeProtocolAnomaly, Subtype: svc + "_on_nonstandard_port", Detector: d.Name(), Time: t,
		Attacker: k.Src, Victims: []netip.Addr{k.Dst},
		Signature:  fmt.Sprintf("%s speaks %s to %s on port %d (%s)", k.Src, strings.ToUpper(svc), k.Dst, k.DstPort, what),
		MITRE:      detect.MITRENonStdPort,
		Confidence: 0.6,
		Reasons: []detect.Contribution{
			{Feature: "nonstandard_port", Value: float64(k.DstPort), Points: 25, Why: fmt.Sprintf("%s is not usually served on port %d", strings.ToUpper(svc), k.DstPort)},
		},
	}
	if d.env.Inv.IsHome(k.Src) && !d.env.Inv.IsHome(k.Dst) {
		a.Reasons = append(a.Reasons, detect.Contribution{Feature: "outbound", Value: 1, Points: 10, Why: "to a host outside the home networks"})
	}
	a.Score()
	d.env.Emit(a)
}

// OnTLS reports TLS on unusual ports.
func (d *Detector) OnTLS(t *detect.TLSEvent) { d.portAnomaly(t.Time, t.Key, "tls", "SNI "+t.SNI) }

// OnHTTP reports HTTP on unusual ports.
func (d *Detector) OnHTTP(h *detect.HTTPEvent) {
	d.portAnomaly(h.Time, h.Key, "http", h.Method+" "+h.Host)
}

// OnPayload reports SSH on unusual ports.
func (d *Detector) OnPayload(p *detect.PayloadEvent) {
	if p.Service == "ssh" {
		d.portAnomaly(p.Time, p.Key, "ssh", p.Detail)
	}
}

// Tick expires state.
func (d *Detector) Tick(now time.Time) {
	for a, st := range d.flags {
		if now.Sub(st.last) > d.cfg.Window {
			delete(d.flags, a)
		}
	}
	for k, t := range d.alerted {
		if now.Sub(t) > d.cfg.Window {
			delete(d.alerted, k)
		}
	}
}
