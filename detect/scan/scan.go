// Package scan detects reconnaissance: vertical port scans (one host, many
// ports), horizontal scans (many hosts, one port), host sweeps (ARP, ICMP
// echo and TCP pings to many addresses) and stealth scans with odd TCP
// flags (NULL, FIN, XMAS). See README.md for thresholds and scores.
package scan

import (
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/wardline/wardline/dataplane/event"
	"github.com/wardline/wardline/detect"
)

// Config holds the thresholds; zero values take the defaults.
type Config struct {
	Window          time.Duration // state of an idle scanner is forgotten after this (default 5m)
	VerticalPorts   int           // distinct probed ports on one host (default 25)
	HorizontalHosts int           // distinct probed hosts on one port (default 15)
	SweepHosts      int           // distinct addresses pinged (default 15)
	StealthProbes   int           // distinct odd-flag probes (default 10)
}

func (c *Config) defaults() {
	if c.Window == 0 {
		c.Window = 5 * time.Minute
	}
	if c.VerticalPorts == 0 {
		c.VerticalPorts = 25
	}
	if c.HorizontalHosts == 0 {
		c.HorizontalHosts = 15
	}
	if c.SweepHosts == 0 {
		c.SweepHosts = 15
	}
	if c.StealthProbes == 0 {
		c.StealthProbes = 10
	}
}

// Detector is the scan detector.
type Detector struct {
	cfg   Config
	env   detect.Env
	hosts map[netip.Addr]*scanner
	// neighbours: addresses seen sending ARP (they announced
	// themselves), when last. A request for one of them confirms a known
	// neighbour (a router refreshing its cache, unicast NUD probes): not
	// discovery.
	neighbours     map[netip.Addr]time.Time
	arpRefreshes   uint64 // requests for known neighbours, not counted as probes
	neighboursFull uint64 // senders not remembered: the table was full
	prunedAt       time.Time
	// pendingARP: requests waiting for their reply. Only a request left
	// unanswered for arpAnswerWait counts towards a sweep: a router
	// re-resolving live hosts (whose own ARP the box may never have seen,
	// e.g. before a restart) gets answers; a sweep hits mostly empty
	// addresses.
	pendingARP  map[arpPair]time.Time
	arpAnswered uint64 // requests answered in time, not counted
	arpPendFull uint64 // requests counted at once: the pending table was full
}

type arpPair struct{ sender, target netip.Addr }

// arpAnswerWait is how long a request may wait for its reply.
const arpAnswerWait = time.Second

// maxNeighbours bounds the neighbour table (a few /16s of live hosts).
const maxNeighbours = 1 << 17

type scanner struct {
	first, last time.Time
	vertical    map[netip.Addr]*portSet // victim -> probed ports
	horizontal  map[uint16]*hostSet     // port -> probed hosts
	pinged      *hostSet                // ICMP echo / TCP ping targets
	arped       *hostSet                // ARP request targets
	stealth     map[stealthKey]struct{} // odd-flag probes
	stealthFlag map[uint8]int           // first-flag combination -> count
	stealthDone bool                    // stealth alert raised
}

type stealthKey struct {
	dst  netip.Addr
	port uint16
}

type portSet struct {
	ports         map[uint16]struct{}
	probes, conns int
	open          map[uint16]struct{}
	handshake     bool // some probe completed the handshake (connect scan)
	first         time.Time
	alerted       bool
}

type hostSet struct {
	hosts   map[netip.Addr]struct{}
	first   time.Time
	alerted bool
}

func newHostSet(t time.Time) *hostSet { return &hostSet{hosts: map[netip.Addr]struct{}{}, first: t} }

// New returns a scan detector.
func New(cfg Config, env detect.Env) *Detector {
	cfg.defaults()
	return &Detector{cfg: cfg, env: env, hosts: map[netip.Addr]*scanner{}, neighbours: map[netip.Addr]time.Time{},
		pendingARP: map[arpPair]time.Time{}}
}

func (d *Detector) Name() string { return "scan" }

func (d *Detector) scanner(a netip.Addr, t time.Time) *scanner {
	s := d.hosts[a]
	if s == nil {
		s = &scanner{first: t, vertical: map[netip.Addr]*portSet{}, horizontal: map[uint16]*hostSet{},
			stealth: map[stealthKey]struct{}{}, stealthFlag: map[uint8]int{}}
		d.hosts[a] = s
	}
	if t.After(s.last) {
		s.last = t
	}
	return s
}

// probe reports whether a connection looks like a probe rather than use:
// it failed, or it was torn down right after the handshake without data.
func probe(c *detect.Conn) bool {
	if c.Key.Proto != event.ProtoTCP {
		return false
	}
	if c.Failed() {
		return true
	}
	noData := (c.OrigFlags|c.RespFlags)&event.TCPPsh == 0
	return noData && c.OrigPkts <= 4
}

// OnConn counts probes.
func (d *Detector) OnConn(c *detect.Conn) {
	if !c.Final {
		return
	}
	src, dst := c.Key.Src, c.Key.Dst
	switch c.Key.Proto {
	case event.ProtoICMP, event.ProtoICMPv6:
		// Echo requests (type 8 / 128) from the originator.
		if c.Key.SrcPort == 8 || c.Key.SrcPort == 128 {
			s := d.scanner(src, c.End)
			if s.pinged == nil {
				s.pinged = newHostSet(c.Start)
			}
			s.pinged.hosts[dst] = struct{}{}
			d.checkSweep(src, s, c.End, "icmp_tcp_ping_sweep", s.pinged)
		}
		return
	case event.ProtoTCP:
	default:
		return
	}
	if odd := oddFlags(c.FirstFlags); odd != "" && c.OrigFlags&event.TCPSyn == 0 {
		s := d.scanner(src, c.End)
		s.stealth[stealthKey{dst, c.Key.DstPort}] = struct{}{}
		s.stealthFlag[c.FirstFlags]++
		d.checkStealth(src, s, c)
		return
	}
	if !probe(c) {
		return
	}
	s := d.scanner(src, c.End)
	v := s.vertical[dst]
	if v == nil {
		v = &portSet{ports: map[uint16]struct{}{}, open: map[uint16]struct{}{}, first: c.Start}
		s.vertical[dst] = v
	}
	v.conns++
	v.probes++
	if len(v.ports) < 4*d.cfg.VerticalPorts {
		v.ports[c.Key.DstPort] = struct{}{}
	}
	if c.RespFlags&event.TCPSyn != 0 {
		v.open[c.Key.DstPort] = struct{}{}
		if c.OrigFlags&event.TCPAck != 0 {
			v.handshake = true
		}
	}
	h := s.horizontal[c.Key.DstPort]
	if h == nil {
		h = newHostSet(c.Start)
		s.horizontal[c.Key.DstPort] = h
	}
	if len(h.hosts) < 4*d.cfg.HorizontalHosts {
		h.hosts[dst] = struct{}{}
	}
	// A SYN probe to a web port answered or not is also how nmap's host
	// discovery "TCP ping" works.
	if c.Key.DstPort == 80 || c.Key.DstPort == 443 {
		if s.pinged == nil {
			s.pinged = newHostSet(c.Start)
		}
		s.pinged.hosts[dst] = struct{}{}
	}
	d.checkVertical(src, dst, s, v, c)
	d.checkHorizontal(src, s, c.Key.DstPort, h, c)
	if s.pinged != nil {
		d.checkSweep(src, s, c.End, "icmp_tcp_ping_sweep", s.pinged)
	}
}

// OnARP counts ARP requests to distinct addresses that have not announced
// themselves with ARP within the window.
func (d *Detector) OnARP(a *detect.ARPEvent) {
	if !a.SenderIP.IsValid() || a.SenderIP.IsUnspecified() {
		return // ARP probes for address conflicts (RFC 5227) have no sender
	}
	if _, ok := d.neighbours[a.SenderIP]; ok || len(d.neighbours) < maxNeighbours {
		d.neighbours[a.SenderIP] = a.Time
	} else {
		d.neighboursFull++
	}
	if a.Op == 2 { // a reply answers the request of its target
		if _, ok := d.pendingARP[arpPair{a.TargetIP, a.SenderIP}]; ok {
			delete(d.pendingARP, arpPair{a.TargetIP, a.SenderIP})
			d.arpAnswered++
		}
		return
	}
	if a.Op != 1 || !a.TargetIP.IsValid() || a.SenderIP == a.TargetIP {
		return // gratuitous ARP is not a probe
	}
	if seen, ok := d.neighbours[a.TargetIP]; ok && a.Time.Sub(seen) <= d.cfg.Window {
		d.arpRefreshes++
		return
	}
	k := arpPair{a.SenderIP, a.TargetIP}
	if _, ok := d.pendingARP[k]; ok {
		return // a retry: the first request's wait decides
	}
	if len(d.pendingARP) >= maxNeighbours {
		d.arpPendFull++
		d.arpUnanswered(k, a.Time)
		return
	}
	d.pendingARP[k] = a.Time
}

// arpUnanswered counts a request that got no reply towards a sweep.
func (d *Detector) arpUnanswered(k arpPair, t time.Time) {
	s := d.scanner(k.sender, t)
	if s.arped == nil {
		s.arped = newHostSet(t)
	}
	s.arped.hosts[k.target] = struct{}{}
	d.checkSweep(k.sender, s, t, "arp_ping_sweep", s.arped)
}

// Tick forgets scanners and neighbours idle for a whole window.
func (d *Detector) Tick(now time.Time) {
	if len(d.pendingARP) > 0 {
		var due []arpPair
		for k, t := range d.pendingARP {
			if now.Sub(t) >= arpAnswerWait {
				due = append(due, k)
			}
		}
		// In request order, so that the alert's time and counts do not
		// depend on map order.
		sort.Slice(due, func(i, j int) bool {
			ti, tj := d.pendingARP[due[i]], d.pendingARP[due[j]]
			if !ti.Equal(tj) {
				return ti.Before(tj)
			}
			if c := due[i].sender.Compare(due[j].sender); c != 0 {
				return c < 0
			}
			return due[i].target.Less(due[j].target)
		})
		for _, k := range due {
			t := d.pendingARP[k]
			delete(d.pendingARP, k)
			d.arpUnanswered(k, t.Add(arpAnswerWait))
		}
	}
	for a, s := range d.hosts {
		if now.Sub(s.last) > d.cfg.Window {
			delete(d.hosts, a)
		}
	}
	if now.Sub(d.prunedAt) < d.cfg.Window/4 {
		return // neighbours are looked up with their age: pruning is only for memory
	}
	d.prunedAt = now
	for a, t := range d.neighbours {
		if now.Sub(t) > d.cfg.Window {
			delete(d.neighbours, a)
		}
	}
}

// Stats reports the state size.
func (d *Detector) Stats() map[string]float64 {
	return map[string]float64{"tracked_sources": float64(len(d.hosts)), "arp_neighbours": float64(len(d.neighbours)),
		"arp_refreshes_ignored": float64(d.arpRefreshes), "arp_neighbours_full": float64(d.neighboursFull),
		"arp_answered": float64(d.arpAnswered), "arp_pending": float64(len(d.pendingARP)), "arp_pending_full": float64(d.arpPendFull)}
}

func rate(n int, from, to time.Time) float64 {
	s := to.Sub(from).Seconds()
	if s < 1 {
		s = 1
	}
	return float64(n) / s
}

// volumePoints scales a count to points: 0 at the threshold's half, max at
// four times the threshold.
func volumePoints(n, threshold int, maxPts float64) float64 {
	x := (float64(n) - float64(threshold)/2) / (4*float64(threshold) - float64(threshold)/2)
	return maxPts * min(1, max(0, x))
}

func (d *Detector) victimPoints(v netip.Addr) (detect.Contribution, bool) {
	crit := d.env.Inv.Criticality(v)
	if crit == 0 {
		return detect.Contribution{}, false
	}
	return detect.Contribution{Feature: "victim_criticality", Value: float64(crit), Points: float64(crit) * 3,
		Why: fmt.Sprintf("%s has criticality %d", v, crit)}, true
}

func (d *Detector) emit(a *detect.Alert) {
	a.Detector = d.Name()
	a.Score()
	d.env.Emit(a)
}

func (d *Detector) checkVertical(src, dst netip.Addr, s *scanner, v *portSet, c *detect.Conn) {
	if v.alerted || len(v.ports) < d.cfg.VerticalPorts {
		return
	}
	v.alerted = true
	sub := "vertical_syn"
	if v.handshake {
		sub = "vertical_connect"
	}
	open := make([]int, 0, len(v.open))
	for p := range v.open {
		open = append(open, int(p))
	}
	sort.Ints(open)
	r := rate(len(v.ports), v.first, c.End)
	closed := 1 - float64(len(open))/float64(len(v.ports))
	a := &detect.Alert{
		Type: detect.TypePortScan, Subtype: sub, Time: c.End, Attacker: src, Victims: []netip.Addr{dst},
		Signature:  fmt.Sprintf("%s probed %d ports on %s (%.0f/s), %d open", src, len(v.ports), dst, r, len(open)),
		MITRE:      detect.MITRENetworkScan,
		Confidence: min(0.99, 0.6+0.4*float64(len(v.ports))/float64(4*d.cfg.VerticalPorts)),
		Reasons: []detect.Contribution{
			{Feature: "distinct_ports", Value: float64(len(v.ports)), Points: 35 + volumePoints(len(v.ports), d.cfg.VerticalPorts, 30),
				Why: fmt.Sprintf("%d distinct ports on one host (threshold %d)", len(v.ports), d.cfg.VerticalPorts)},
			{Feature: "probe_rate", Value: r, Points: min(20, r/2),
				Why: fmt.Sprintf("%.1f ports per second", r)},
			{Feature: "closed_ratio", Value: closed, Points: 10 * closed,
				Why: fmt.Sprintf("%.0f%% of the probed ports were closed", 100*closed)},
		},
		Evidence: map[string]any{"ports_probed": len(v.ports), "open_ports": open, "probes": v.probes},
	}
	if cp, ok := d.victimPoints(dst); ok {
		a.Reasons = append(a.Reasons, cp)
	}
	d.emit(a)
}

func (d *Detector) checkHorizontal(src netip.Addr, s *scanner, port uint16, h *hostSet, c *detect.Conn) {
	if h.alerted || len(h.hosts) < d.cfg.HorizontalHosts {
		return
	}
	h.alerted = true
	victims := sortedHosts(h.hosts)
	r := rate(len(h.hosts), h.first, c.End)
	d.emit(&detect.Alert{
		Type: detect.TypePortScan, Subtype: fmt.Sprintf("horizontal_%d", port), Time: c.End, Attacker: src, Victims: victims,
		Signature:  fmt.Sprintf("%s probed port %d on %d hosts (%.1f/s)", src, port, len(h.hosts), r),
		MITRE:      detect.MITRENetworkScan,
		Confidence: min(0.99, 0.6+0.4*float64(len(h.hosts))/float64(4*d.cfg.HorizontalHosts)),
		Reasons: []detect.Contribution{
			{Feature: "distinct_hosts", Value: float64(len(h.hosts)), Points: 35 + volumePoints(len(h.hosts), d.cfg.HorizontalHosts, 30),
				Why: fmt.Sprintf("%d hosts probed on port %d (threshold %d)", len(h.hosts), port, d.cfg.HorizontalHosts)},
			{Feature: "probe_rate", Value: r, Points: min(15, r*2), Why: fmt.Sprintf("%.1f hosts per second", r)},
		},
		Evidence: map[string]any{"port": port, "hosts": len(h.hosts)},
	})
}

func (d *Detector) checkSweep(src netip.Addr, s *scanner, t time.Time, sub string, h *hostSet) {
	if h.alerted || len(h.hosts) < d.cfg.SweepHosts {
		return
	}
	h.alerted = true
	how := "ARP requests"
	if sub != "arp_ping_sweep" {
		how = "ICMP echo / TCP pings"
	}
	r := rate(len(h.hosts), h.first, t)
	d.emit(&detect.Alert{
		Type: detect.TypeHostSweep, Subtype: sub, Time: t, Attacker: src, Victims: sortedHosts(h.hosts),
		Signature:  fmt.Sprintf("%s swept %d addresses with %s (%.1f/s)", src, len(h.hosts), how, r),
		MITRE:      detect.MITREHostDiscovery,
		Confidence: min(0.95, 0.55+0.4*float64(len(h.hosts))/float64(4*d.cfg.SweepHosts)),
		Reasons: []detect.Contribution{
			{Feature: "distinct_targets", Value: float64(len(h.hosts)), Points: 30 + volumePoints(len(h.hosts), d.cfg.SweepHosts, 30),
				Why: fmt.Sprintf("%d addresses probed (threshold %d)", len(h.hosts), d.cfg.SweepHosts)},
			{Feature: "sweep_rate", Value: r, Points: min(15, r), Why: fmt.Sprintf("%.1f addresses per second", r)},
		},
		Evidence: map[string]any{"targets": len(h.hosts), "method": how},
	})
}

// oddFlags names a first-packet flag combination no normal stack opens a
// connection with; "" for ordinary ones.
func oddFlags(f uint8) string {
	const fpu = event.TCPFin | event.TCPPsh | event.TCPUrg
	switch {
	case f == 0:
		return "NULL"
	case f&fpu == fpu:
		return "XMAS"
	case f == event.TCPFin:
		return "FIN"
	}
	return ""
}

func (d *Detector) checkStealth(src netip.Addr, s *scanner, c *detect.Conn) {
	if s.stealthDone || len(s.stealth) < d.cfg.StealthProbes {
		return
	}
	s.stealthDone = true
	kinds := map[string]int{}
	for f, n := range s.stealthFlag {
		kinds[oddFlags(f)] += n
	}
	victims := map[netip.Addr]struct{}{}
	for k := range s.stealth {
		victims[k.dst] = struct{}{}
	}
	d.emit(&detect.Alert{
		Type: detect.TypePortScan, Subtype: "stealth_xmas_null_fin", Time: c.End, Attacker: src, Victims: sortedHosts(victims),
		Signature:  fmt.Sprintf("%s sent %d stealth probes (%v)", src, len(s.stealth), kinds),
		MITRE:      detect.MITRENetworkScan,
		Confidence: 0.9,
		Reasons: []detect.Contribution{
			{Feature: "stealth_probes", Value: float64(len(s.stealth)), Points: 35 + volumePoints(len(s.stealth), d.cfg.StealthProbes, 25),
				Why: fmt.Sprintf("%d probes opened with NULL/FIN/XMAS flags, which only scanners send", len(s.stealth))},
			{Feature: "flag_kinds", Value: float64(len(kinds)), Points: 5 * float64(len(kinds)),
				Why: fmt.Sprintf("%d different odd combinations", len(kinds))},
		},
		Evidence: map[string]any{"flag_kinds": kinds},
	})
}

func sortedHosts(m map[netip.Addr]struct{}) []netip.Addr {
	out := make([]netip.Addr, 0, len(m))
	for a := range m {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}
