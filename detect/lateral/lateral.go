// Package lateral detects lateral movement: an internal host opening
// sessions to many internal peers over administration services (SSH, SMB,
// RPC, RDP, WinRM, VNC, telnet) that it has not talked to before. Each host
// has a learned baseline of the peers it normally administers; only new
// edges count. See README.md.
package lateral

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/wardline/wardline/dataplane/event"
	"github.com/wardline/wardline/detect"
)

// Services are the administration ports the detector watches.
var Services = map[uint16]string{
	22: "ssh", 23: "telnet", 135: "rpc", 139: "smb", 445: "smb", 3389: "rdp",
	5985: "winrm", 5986: "winrm", 5900: "vnc",
}

// Config holds the thresholds; zero values take the defaults.
type Config struct {
	Window      time.Duration // fan-out window (default 10m)
	FanOut      int           // new peers in the window that make an alert (default 8)
	BaselineAge time.Duration // an edge seen this long ago is part of the baseline (default 24h)
	MaxEdges    int           // remembered edges per host (default 4096)
}

func (c *Config) defaults() {
	if c.Window == 0 {
		c.Window = 10 * time.Minute
	}
	if c.FanOut == 0 {
		c.FanOut = 8
	}
	if c.BaselineAge == 0 {
		c.BaselineAge = 24 * time.Hour
	}
	if c.MaxEdges == 0 {
		c.MaxEdges = 4096
	}
}

// Detector is the lateral movement detector.
type Detector struct {
	cfg     Config
	env     detect.Env
	hosts   map[netip.Addr]*host
	evicted uint64
}

type edge struct {
	peer netip.Addr
	port uint16
}

type host struct {
	known   map[edge]time.Time // first time each edge was seen
	recent  map[netip.Addr]peerUse
	last    time.Time
	alerted time.Time
}

type peerUse struct {
	first    time.Time
	services map[string]bool
}

// New returns a lateral movement detector.
func New(cfg Config, env detect.Env) *Detector {
	cfg.defaults()
	return &Detector{cfg: cfg, env: env, hosts: map[netip.Addr]*host{}}
}

func (d *Detector) Name() string { return "lateral" }

// OnConn looks at established internal sessions to administration ports.
func (d *Detector) OnConn(c *detect.Conn) {
	// A session, not a probe: the handshake completed and data flowed
	// (a scan that touches an open port is the scan detector's).
	if !c.Final || c.Key.Proto != event.ProtoTCP || !c.Established() || (c.OrigFlags|c.RespFlags)&event.TCPPsh == 0 {
		return
	}
	svc, ok := Services[c.Key.DstPort]
	if !ok || !d.env.Inv.IsHome(c.Key.Src) || !d.env.Inv.IsHome(c.Key.Dst) {
		return
	}
	h := d.hosts[c.Key.Src]
	if h == nil {
		h = &host{known: map[edge]time.Time{}, recent: map[netip.Addr]peerUse{}}
		d.hosts[c.Key.Src] = h
	}
	h.last = c.End
	e := edge{c.Key.Dst, c.Key.DstPort}
	first, seen := h.known[e]
	if !seen {
		if len(h.known) >= d.cfg.MaxEdges {
			d.forgetOldest(h)
		}
		h.known[e] = c.Start
		first = c.Start
	}
	if c.Start.Sub(first) >= d.cfg.BaselineAge {
		return // part of this host's normal administration
	}
	u, ok := h.recent[c.Key.Dst]
	if !ok {
		u = peerUse{first: c.Start, services: map[string]bool{}}
	}
	u.services[svc] = true
	h.recent[c.Key.Dst] = u
	for p, pu := range h.recent {
		if c.End.Sub(pu.first) > d.cfg.Window {
			delete(h.recent, p)
		}
	}
	if len(h.recent) >= d.cfg.FanOut && (h.alerted.IsZero() || c.End.Sub(h.alerted) > d.cfg.Window) {
		h.alerted = c.End
		d.alert(c, h)
	}
}

func (d *Detector) forgetOldest(h *host) {
	var oe edge
	var ot time.Time
	for e, t := range h.known {
		if ot.IsZero() || t.Before(ot) {
			oe, ot = e, t
		}
	}
	delete(h.known, oe)
	d.evicted++
}

func (d *Detector) alert(c *detect.Conn, h *host) {
	svcs := map[string]bool{}
	var peers []netip.Addr
	var first time.Time
	crit := 0
	for p, u := range h.recent {
		peers = append(peers, p)
		for s := range u.services {
			svcs[s] = true
		}
		if first.IsZero() || u.first.Before(first) {
			first = u.first
		}
		crit = max(crit, d.env.Inv.Criticality(p))
	}
	sort.Slice(peers, func(i, j int) bool { return peers[i].Less(peers[j]) })
	names := make([]string, 0, len(svcs))
	for s := range svcs {
		names = append(names, s)
	}
	sort.Strings(names)
	span := c.End.Sub(first)
	a := &detect.Alert{
		Type: detect.TypeLateral, Subtype: "internal_fanout_" + strings.Join(names, "_"), Detector: d.Name(),
		Time: c.End, Attacker: c.Key.Src, Victims: peers,
		Signature: fmt.Sprintf("%s opened %s sessions to %d new internal peers in %s",
			c.Key.Src, strings.Join(names, "/"), len(peers), span.Round(time.Second)),
		MITRE:      detect.MITRERemoteService,
		Confidence: min(0.95, 0.5+0.05*float64(len(peers))),
		Reasons: []detect.Contribution{
			{Feature: "new_admin_peers", Value: float64(len(peers)), Points: 30 + min(25, 2*float64(len(peers)-d.cfg.FanOut)),
				Why: fmt.Sprintf("%d internal peers never administered from this host before (threshold %d)", len(peers), d.cfg.FanOut)},
			{Feature: "services", Value: float64(len(names)), Points: 5 * float64(len(names)),
				Why: "administration protocols used: " + strings.Join(names, ", ")},
			{Feature: "speed", Value: span.Seconds(), Points: min(15, 15*float64(len(peers))/max(1, span.Minutes()*4)),
				Why: fmt.Sprintf("all within %s", span.Round(time.Second))},
		},
		Evidence: map[string]any{"peers": len(peers), "services": names},
	}
	if crit > 0 {
		a.Reasons = append(a.Reasons, detect.Contribution{Feature: "peer_criticality", Value: float64(crit), Points: 4 * float64(crit),
			Why: fmt.Sprintf("the most critical peer has criticality %d", crit)})
	}
	a.Score()
	d.env.Emit(a)
}

// Tick forgets hosts without activity for a baseline age.
func (d *Detector) Tick(now time.Time) {
	for a, h := range d.hosts {
		if now.Sub(h.last) > d.cfg.BaselineAge {
			delete(d.hosts, a)
		}
	}
}

// Stats reports the state size.
func (d *Detector) Stats() map[string]float64 {
	edges := 0
	for _, h := range d.hosts {
		edges += len(h.known)
	}
	return map[string]float64{"hosts": float64(len(d.hosts)), "edges": float64(edges), "edges_evicted": float64(d.evicted)}
}
