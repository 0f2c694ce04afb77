// Package exfil detects data exfiltration: an inside host sending far
// more data out than it usually does at that time of day, in large
// one-sided uploads, especially outside business hours. It learns every
// home host's outbound volume per hour of the day (an EWMA over days,
// starting from a prior), measures the last hour's uploads as they happen
// (interim flow records count through their deltas), and scores volume,
// deviation from the baseline, asymmetry and the time of day. Transfers
// between home hosts are not exfiltration. It is for the detection engine
// (detect/engine); see README.md for the model, parameters and limits.
package exfil

import (
	"math"
	"net/netip"
	"time"

	"github.com/wardline/wardline/dataplane/event"
	"github.com/wardline/wardline/detect"
)

// Alert subtypes (the corpus labels use them).
const (
	SubtypeUpload         = "large_outbound_upload"
	SubtypeUploadOffHours = "large_outbound_upload_off_hours"
)

// Config holds the parameters; zero values take the defaults.
type Config struct {
	// Window is the sliding window over which a host's uploads add up
	// (default 1h). A host alerts at most once per Window.
	Window time.Duration
	// MinBytes is the upload volume in the window below which nothing is
	// scored (default 16 MiB).
	MinBytes uint64
	// MinRatio is the least ratio of bytes sent to bytes received, for the
	// main destination or the host's outbound traffic as a whole, that
	// makes an upload one-sided (default 4; video calls are about 1,
	// browsing well below 1, an HTTPS upload 30 and more).
	MinRatio float64
	// Threshold is the risk (0..100) at which a host alerts (default 55).
	Threshold float64
	// PriorBytesPerHour is what a host is assumed to upload per hour
	// before anything is learned (default 4 MiB).
	PriorBytesPerHour float64
	// PriorDays is the weight of the prior, in days of observations of
	// the same hour (default 3).
	PriorDays float64
	// HalfLife is the half-life of the baseline, in days of the same hour
	// (default 7 days: last week's hour weighs half of today's).
	HalfLife time.Duration
	// Hours are the business hours (default Mon-Fri 08:00-18:00 UTC).
	Hours BusinessHours
	// MaxHosts bounds the hosts with a baseline; beyond it the least
	// recently active is forgotten (default 65536).
	MaxHosts int
	// MaxFlows bounds the long flows followed through interim records;
	// beyond it a new long flow counts only at its final record (default
	// 65536).
	MaxFlows int
	// HostIdle: a host not seen for this long loses its baseline (default
	// 30 days).
	HostIdle time.Duration
	// FlowIdle: a long flow with no record for this long is forgotten (its
	// final record was lost) (default 10m).
	FlowIdle time.Duration
}

func (c *Config) defaults() {
	if c.Window == 0 {
		c.Window = time.Hour
	}
	if c.MinBytes == 0 {
		c.MinBytes = 16 << 20
	}
	if c.MinRatio == 0 {
		c.MinRatio = 4
	}
	if c.Threshold == 0 {
		c.Threshold = 55
	}
	if c.PriorBytesPerHour == 0 {
		c.PriorBytesPerHour = 4 << 20
	}
	if c.PriorDays == 0 {
		c.PriorDays = 3
	}
	if c.HalfLife == 0 {
		c.HalfLife = 7 * 24 * time.Hour
	}
	c.Hours.defaults()
	if c.MaxHosts == 0 {
		c.MaxHosts = 65536
	}
	if c.MaxFlows == 0 {
		c.MaxFlows = 65536
	}
	if c.HostIdle == 0 {
		c.HostIdle = 30 * 24 * time.Hour
	}
	if c.FlowIdle == 0 {
		c.FlowIdle = 10 * time.Minute
	}
}

// Detector is the exfiltration detector. Like every detector it is called
// from one goroutine.
type Detector struct {
	cfg   Config
	env   detect.Env
	alpha float64 // EWMA weight of a new day
	neff  float64 // effective number of days an EWMA remembers

	index      map[netip.Addr]int32
	hosts      []host
	free       []int32
	head, tail int32 // LRU by activity; most recent at head

	flows     map[event.FlowKey]flowCount
	lastSweep int64

	// The local hour of the latest record, cached: converting to the
	// site's zone costs more than the rest of a record's work.
	hourFrom, hourTo int64 // unix ns range of the cached hour
	hourIdx          int64 // hours since the epoch, local clock

	st counters
}

type counters struct {
	outbound, ignored, flowsUntracked, flowsExpired uint64
	hostsEvicted, hostsExpired, evaluations, alerts uint64
	bytesOut                                        uint64
}

// flowCount is what a long flow had sent when its last record came.
type flowCount struct {
	out, in uint64
	seen    int64
}

const none = -1

// host is one home host: its baseline per local hour of the day and its
// uploads in the current and previous window.
type host struct {
	addr       netip.Addr
	prev, next int32
	lastSeen   int64

	ewma      [24]float64 // bytes sent out per hour, by local hour of day
	days      [24]uint16  // hours folded into each bucket
	hour      int64       // the open hour (hours since the epoch, local), 0: none yet
	hourBytes uint64      // bytes sent in the open hour

	win     int64     // index of the current window (time / Window)
	out, in [2]uint64 // outbound flows' bytes: [0] current window, [1] previous
	dests   [4]dest   // the heaviest destinations of the two windows

	alertedAt int64
}

// dest is one destination of a host's uploads, counted per window like
// the host.
type dest struct {
	addr    netip.Addr
	port    uint16
	web     bool
	name    string // TLS SNI or HTTP Host, kept once the upload is notable
	out, in [2]uint64
}

// New returns an exfiltration detector.
func New(cfg Config, env detect.Env) *Detector {
	cfg.defaults()
	days := cfg.HalfLife.Hours() / 24
	alpha := 1 - math.Pow(0.5, 1/max(days, 0.01))
	return &Detector{cfg: cfg, env: env, alpha: alpha, neff: (2 - alpha) / alpha,
		index: map[netip.Addr]int32{}, head: none, tail: none, flows: map[event.FlowKey]flowCount{}}
}

// Name is "exfil".
func (d *Detector) Name() string { return "exfil" }

// outbound reports whether c goes from a home host to the outside: the
// engine's Direction, derived from the inventory when unset. With no home
// networks nothing is outbound and the detector stays quiet.
func (d *Detector) outbound(c *detect.Conn) bool {
	if c.Direction != "" {
		return c.Direction == detect.Outbound
	}
	inv := d.env.Inv
	return inv != nil && inv.IsHome(c.Key.Src) && !inv.IsHome(c.Key.Dst)
}

// delta returns the bytes a record adds to what earlier records of the
// same flow reported (counters are cumulative).
func (d *Detector) delta(c *detect.Conn, t int64) (out, in uint64, ok bool) {
	if c.Final && len(d.flows) == 0 {
		return c.OrigBytes, c.RespBytes, true // the common case: no long flow open
	}
	prev, seen := d.flows[c.Key]
	if c.Final {
		if seen {
			delete(d.flows, c.Key)
		}
	} else {
		if !seen && len(d.flows) >= d.cfg.MaxFlows {
			// No room to remember it: let the final record count it
			// whole (late, but never twice).
			d.st.flowsUntracked++
			return 0, 0, false
		}
		d.flows[c.Key] = flowCount{out: c.OrigBytes, in: c.RespBytes, seen: t}
	}
	out, in = c.OrigBytes, c.RespBytes
	if seen {
		// A counter lower than before is a new flow with the same key
		// (the fast path evicted and recreated it): count it whole.
		if out >= prev.out {
			out -= prev.out
		}
		if in >= prev.in {
			in -= prev.in
		}
	}
	return out, in, true
}

// OnConn counts a connection record's new outbound bytes and scores the
// host when its window passes the floor.
func (d *Detector) OnConn(c *detect.Conn) {
	if !d.outbound(c) {
		d.st.ignored++
		return
	}
	t := c.End.UnixNano()
	out, in, ok := d.delta(c, t)
	if !ok || (out == 0 && in == 0) {
		return
	}
	d.st.outbound++
	d.st.bytesOut += out
	h := d.host(c.Key.Src)
	h.lastSeen = max(h.lastSeen, t)
	d.advance(h, t)
	h.out[0] += out
	h.in[0] += in
	h.hourBytes += out
	ds := h.dest(c, out, in)

	if h.alertedAt != 0 && t-h.alertedAt < int64(d.cfg.Window) {
		return // once per host per window
	}
	// A record slightly out of order may fall before the current window.
	frac := clamp01(float64(t-h.win*int64(d.cfg.Window)) / float64(d.cfg.Window))
	if sliding(h.out, frac) < float64(d.cfg.MinBytes) {
		return
	}
	if ds.name == "" && c.App != nil {
		ds.name = appName(c.App) // a notable upload: worth naming
	}
	d.evaluate(h, c, t, frac)
}

// sliding estimates the bytes of the last window from the current and
// the previous fixed window, the previous weighted by how much of it the
// sliding window still covers.
func sliding(v [2]uint64, frac float64) float64 {
	return float64(v[0]) + float64(v[1])*(1-frac)
}

// advance moves the host's windows and open hour to event time t.
func (d *Detector) advance(h *host, t int64) {
	w := t / int64(d.cfg.Window)
	switch {
	case w == h.win+1:
		h.out = [2]uint64{0, h.out[0]}
		h.in = [2]uint64{0, h.in[0]}
		for i := range h.dests {
			ds := &h.dests[i]
			ds.out, ds.in = [2]uint64{0, ds.out[0]}, [2]uint64{0, ds.in[0]}
		}
		h.win = w
	case w > h.win:
		h.out, h.in = [2]uint64{}, [2]uint64{}
		h.dests = [4]dest{}
		h.win = w
	}
	hr := d.localHour(t)
	if h.hour == 0 {
		h.hour = hr
		return
	}
	if hr <= h.hour {
		return // same hour, or a record slightly out of order
	}
	d.fold(h, h.hour, float64(h.hourBytes))
	// Hours without any upload are observations too (of zero), up to
	// a month: beyond that every bucket has decayed the same.
	for k := h.hour + 1; k < hr && k <= h.hour+24*30; k++ {
		d.fold(h, k, 0)
	}
	h.hour, h.hourBytes = hr, 0
}

// fold adds one hour's upload volume to the baseline of its hour of day.
func (d *Detector) fold(h *host, hour int64, x float64) {
	b := hourOfDay(hour)
	if h.days[b] == 0 {
		h.ewma[b] = x
	} else {
		h.ewma[b] += d.alpha * (x - h.ewma[b])
	}
	if h.days[b] < math.MaxUint16 {
		h.days[b]++
	}
}

func hourOfDay(hour int64) int {
	return int(((hour % 24) + 24) % 24)
}

// localHour returns the hours since the epoch on the site's local clock
// at t (unix ns), so that hour % 24 is the local hour of the day.
func (d *Detector) localHour(t int64) int64 {
	if t >= d.hourFrom && t < d.hourTo {
		return d.hourIdx
	}
	tt := time.Unix(0, t).In(d.cfg.Hours.Location)
	_, off := tt.Zone()
	local := t/1e9 + int64(off)
	d.hourIdx = floorDiv(local, 3600)
	start := (d.hourIdx*3600 - int64(off)) * 1e9
	d.hourFrom, d.hourTo = start, start+int64(time.Hour)
	return d.hourIdx
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// baseline returns what the host is expected to upload per hour around
// the hour of day b: the largest of the buckets b-1, b, b+1 (a nightly job
// that drifts by a few minutes stays in its baseline), each blending the
// prior and the learned EWMA by their weights.
func (d *Detector) baseline(h *host, b int) (bytes, days float64) {
	for _, k := range []int{(b + 23) % 24, b, (b + 1) % 24} {
		w := min(float64(h.days[k]), d.neff)
		v := (d.cfg.PriorDays*d.cfg.PriorBytesPerHour + w*h.ewma[k]) / (d.cfg.PriorDays + w)
		if v > bytes {
			bytes, days = v, float64(h.days[k])
		}
	}
	return bytes * d.cfg.Window.Hours(), days
}

// host returns the state of a home host, creating it (and evicting the
// least recently active one when full).
func (d *Detector) host(a netip.Addr) *host {
	if i, ok := d.index[a]; ok {
		d.unlink(i)
		d.pushFront(i)
		return &d.hosts[i]
	}
	if len(d.index) >= d.cfg.MaxHosts {
		d.drop(d.tail)
		d.st.hostsEvicted++
	}
	var i int32
	if n := len(d.free); n > 0 {
		i = d.free[n-1]
		d.free = d.free[:n-1]
		d.hosts[i] = host{}
	} else {
		d.hosts = append(d.hosts, host{})
		i = int32(len(d.hosts) - 1)
	}
	d.hosts[i].addr = a
	d.index[a] = i
	d.pushFront(i)
	return &d.hosts[i]
}

func (d *Detector) drop(i int32) {
	d.unlink(i)
	delete(d.index, d.hosts[i].addr)
	d.hosts[i] = host{}
	d.free = append(d.free, i)
}

func (d *Detector) pushFront(i int32) {
	h := &d.hosts[i]
	h.prev, h.next = none, d.head
	if d.head != none {
		d.hosts[d.head].prev = i
	}
	d.head = i
	if d.tail == none {
		d.tail = i
	}
}

func (d *Detector) unlink(i int32) {
	h := &d.hosts[i]
	if h.prev != none {
		d.hosts[h.prev].next = h.next
	} else if d.head == i {
		d.head = h.next
	}
	if h.next != none {
		d.hosts[h.next].prev = h.prev
	} else if d.tail == i {
		d.tail = h.prev
	}
	h.prev, h.next = none, none
}

// dest adds bytes to the destination of c, replacing the lightest entry
// when c's destination is new.
func (h *host) dest(c *detect.Conn, out, in uint64) *dest {
	a, port := c.Key.Dst, c.Key.DstPort
	light := 0
	for i := range h.dests {
		ds := &h.dests[i]
		if ds.addr == a && ds.port == port {
			ds.out[0] += out
			ds.in[0] += in
			return ds
		}
		if ds.out[0]+ds.out[1] < h.dests[light].out[0]+h.dests[light].out[1] {
			light = i
		}
	}
	ds := &h.dests[light]
	*ds = dest{addr: a, port: port, web: isWeb(c), out: [2]uint64{out, 0}, in: [2]uint64{in, 0}}
	return ds
}

// isWeb reports whether a connection is web traffic (TLS, HTTP, QUIC, or a
// web port when no payload was seen): exfiltration over it is T1567.
func isWeb(c *detect.Conn) bool {
	if c.App != nil {
		switch c.App.Service {
		case "tls", "http", "https", "quic":
			return true
		}
	}
	switch c.Key.DstPort {
	case 80, 443, 8080, 8443:
		return true
	}
	return false
}

func appName(a *detect.AppInfo) string {
	n := a.SNI
	if n == "" {
		n = a.HTTPHost
	}
	return string(append([]byte(nil), n...)) // do not pin the engine's buffers
}

// Tick forgets hosts idle for HostIdle and, once a minute of event time,
// long flows whose records stopped.
func (d *Detector) Tick(now time.Time) {
	t := now.UnixNano()
	for d.tail != none && t-d.hosts[d.tail].lastSeen > int64(d.cfg.HostIdle) {
		d.drop(d.tail)
		d.st.hostsExpired++
	}
	if t-d.lastSweep < int64(time.Minute) {
		return
	}
	d.lastSweep = t
	for k, f := range d.flows {
		if t-f.seen > int64(d.cfg.FlowIdle) {
			delete(d.flows, k)
			d.st.flowsExpired++
		}
	}
}

// Stats reports the state sizes and what the detector dropped or skipped.
func (d *Detector) Stats() map[string]float64 {
	return map[string]float64{
		"hosts_tracked":      float64(len(d.index)),
		"hosts_evicted":      float64(d.st.hostsEvicted),
		"hosts_expired":      float64(d.st.hostsExpired),
		"flows_followed":     float64(len(d.flows)),
		"flows_untracked":    float64(d.st.flowsUntracked),
		"flows_expired":      float64(d.st.flowsExpired),
		"records_outbound":   float64(d.st.outbound),
		"records_ignored":    float64(d.st.ignored),
		"bytes_outbound":     float64(d.st.bytesOut),
		"evaluations":        float64(d.st.evaluations),
		"alerts":             float64(d.st.alerts),
		"baseline_half_life": d.cfg.HalfLife.Hours() / 24,
	}
}
