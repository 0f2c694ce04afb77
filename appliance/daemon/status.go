package daemon

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"

	"github.com/wardline/wardline/appliance/bridge"
	"github.com/wardline/wardline/dataplane"
	"github.com/wardline/wardline/dataplane/event"
	"github.com/wardline/wardline/mgmt"
)

// Health checks what forwarding and visibility depend on: the bridge as
// configured, XDP attached in the configured mode on both ports, the
// sweeper running, the event reader alive and keeping up.
func (d *Daemon) Health() mgmt.Health {
	var checks []mgmt.Check
	add := func(name string, ok bool, detail string) {
		checks = append(checks, mgmt.Check{Name: name, OK: ok, Detail: detail})
	}
	if diff, err := bridge.Check(d.cfg.Bridge); err != nil {
		add("bridge", false, err.Error())
	} else {
		add("bridge", diff == "", diff)
	}
	for _, a := range d.attachments() {
		mode, err := dataplane.AttachedMode(a.Ifindex)
		switch {
		case err != nil:
			add("xdp "+a.Ifname, false, err.Error())
		case mode != a.Mode:
			add("xdp "+a.Ifname, false, fmt.Sprintf("attached in %s mode, configured %s", mode, a.Mode))
		default:
			add("xdp "+a.Ifname, true, string(mode))
		}
	}
	st, err := d.dp.Stats()
	if err != nil {
		add("stats", false, err.Error())
	} else {
		limit := 5*d.cfg.Dataplane.SweepInterval + time.Second
		if st.Sweep.LastRun.IsZero() {
			// Right after start the first sweep may still be due.
			up := time.Since(time.Unix(0, d.running.Load()))
			add("sweeper", d.running.Load() != 0 && up < limit, fmt.Sprintf("no sweep yet, %v after the sweeper started", up.Round(time.Millisecond)))
		} else {
			age := time.Since(st.Sweep.LastRun)
			add("sweeper", age < limit, fmt.Sprintf("last sweep %v ago", age.Round(time.Millisecond)))
		}
	}
	d.mu.Lock()
	rerr := d.readErr
	d.mu.Unlock()
	if rerr != nil {
		add("event reader", false, rerr.Error())
	} else {
		pending, size := d.rd.Pending(), int(d.dp.Options().RingBytes)
		add("event reader", pending < size*9/10, fmt.Sprintf("%d of %d ring bytes pending", pending, size))
	}
	h := mgmt.NewHealth(checks)
	h.Release = Release
	return h
}

func (d *Daemon) attachments() []dataplane.Attachment {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]dataplane.Attachment(nil), d.attach...)
}

// Status is the answer of /api/v1/status.
type Status struct {
	Release      string                `json:"release"`
	Capabilities string                `json:"capabilities"`
	Started      time.Time             `json:"started"`
	Bridge       string                `json:"bridge"`
	Mode         dataplane.Mode        `json:"xdp_mode"`
	PinDir       string                `json:"pin_dir"`
	Attachments  []AttachmentStatus    `json:"attachments"`
	Counters     map[string]uint64     `json:"counters"`
	Ports        []PortStatus          `json:"ports"`
	Flows        FlowTableStatus       `json:"flow_table"`
	Reader       dataplane.ReaderStats `json:"reader"`
	Error        string                `json:"error,omitempty"`
}

// AttachmentStatus describes one port.
type AttachmentStatus struct {
	Interface string `json:"interface"`
	Ifindex   int    `json:"ifindex"`
	Role      string `json:"role"`
	Mode      string `json:"mode"`
	Reused    bool   `json:"reused_pinned_link"`
	LinkID    uint32 `json:"link_id"`
}

// PortStatus is a bridge port's kernel counters. A port's tx_packets grow
// with what the bridge forwards out of it: an updater takes growth on both
// ports as proof that the box forwards in both directions.
type PortStatus struct {
	Interface string `json:"interface"`
	Role      string `json:"role"`
	RxPackets uint64 `json:"rx_packets"`
	TxPackets uint64 `json:"tx_packets"`
	RxDropped uint64 `json:"rx_dropped"`
	TxDropped uint64 `json:"tx_dropped"`
	Error     string `json:"error,omitempty"`
}

// FlowTableStatus summarises the flow table.
type FlowTableStatus struct {
	Size      uint32    `json:"size"`
	Live      uint64    `json:"live"`
	Evictions uint64    `json:"evictions"`
	LastSweep time.Time `json:"last_sweep"`
}

// Status reports the daemon's state.
func (d *Daemon) Status() Status {
	s := Status{Release: Release, Capabilities: d.caps, Started: d.started, Bridge: d.cfg.Bridge.Name, Mode: d.cfg.Dataplane.Mode, PinDir: d.cfg.Dataplane.PinDir,
		Counters: map[string]uint64{}, Reader: d.rd.Stats()}
	for _, a := range d.attachments() {
		s.Attachments = append(s.Attachments, AttachmentStatus{Interface: a.Ifname, Ifindex: a.Ifindex, Role: a.Role.String(),
			Mode: string(a.Mode), Reused: a.Reused, LinkID: a.LinkID})
	}
	for _, p := range []struct{ name, role string }{{d.cfg.Bridge.Inside, "inside"}, {d.cfg.Bridge.Outside, "outside"}} {
		ps := PortStatus{Interface: p.name, Role: p.role}
		if l, err := netlink.LinkByName(p.name); err != nil {
			ps.Error = err.Error()
		} else if st := l.Attrs().Statistics; st != nil {
			ps.RxPackets, ps.TxPackets, ps.RxDropped, ps.TxDropped = st.RxPackets, st.TxPackets, st.RxDropped, st.TxDropped
		}
		s.Ports = append(s.Ports, ps)
	}
	st, err := d.dp.Stats()
	if err != nil {
		s.Error = err.Error()
		return s
	}
	for i := 0; i < dataplane.NumStats; i++ {
		s.Counters[dataplane.Stat(i).Name()] = st.Total[i]
	}
	s.Flows = FlowTableStatus{Size: st.FlowTableSize, Live: st.Sweep.Live, Evictions: st.FlowEvictions, LastSweep: st.Sweep.LastRun}
	return s
}

// RecentFlows returns up to n recent final flow records, oldest first.
func (d *Daemon) RecentFlows(n int) []mgmt.Flow {
	fs := d.flows.last(n)
	out := make([]mgmt.Flow, 0, len(fs))
	for _, f := range fs {
		j := mgmt.Flow{Timestamp: f.Time, Proto: protoName(f.Key.Proto), SrcIP: f.Key.Src.String(), SrcPort: f.Key.SrcPort,
			DestIP: f.Key.Dst.String(), DestPort: f.Key.DstPort, InIface: d.port(f.Ifindex[0]),
			PktsToServer: f.Packets[0], PktsToClient: f.Packets[1], BytesToServer: f.Bytes[0], BytesToClient: f.Bytes[1],
			Start: f.FirstSeen, End: f.LastSeen, Reason: f.Reason.String()}
		if f.Key.VLAN[0] != 0 {
			j.VLAN = []uint16{f.Key.VLAN[0]}
			if f.Key.VLAN[1] != 0 {
				j.VLAN = append(j.VLAN, f.Key.VLAN[1])
			}
		}
		if f.Key.Proto == event.ProtoTCP {
			j.TCPFlagsTS = fmt.Sprintf("%02x", f.TCPFlags[0])
			j.TCPFlagsTC = fmt.Sprintf("%02x", f.TCPFlags[1])
		}
		out = append(out, j)
	}
	return out
}

func protoName(p uint8) string {
	switch p {
	case event.ProtoTCP:
		return "TCP"
	case event.ProtoUDP:
		return "UDP"
	case event.ProtoICMP:
		return "ICMP"
	case event.ProtoICMPv6:
		return "IPv6-ICMP"
	}
	return strconv.Itoa(int(p))
}

// recentFlows is a fixed ring of final flow records (values, no per-event
// allocation).
type recentFlows struct {
	mu   sync.Mutex
	buf  []event.Flow
	next int
	full bool
}

func newRecentFlows(n int) *recentFlows { return &recentFlows{buf: make([]event.Flow, n)} }

func (r *recentFlows) add(f *event.Flow) {
	r.mu.Lock()
	r.buf[r.next] = *f
	r.next = (r.next + 1) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
	r.mu.Unlock()
}

func (r *recentFlows) last(n int) []event.Flow {
	r.mu.Lock()
	defer r.mu.Unlock()
	size := r.next
	if r.full {
		size = len(r.buf)
	}
	n = min(n, size)
	out := make([]event.Flow, 0, n)
	for i := n; i > 0; i-- {
		out = append(out, r.buf[(r.next-i+len(r.buf))%len(r.buf)])
	}
	return out
}

// rateLimiter is a token bucket for log lines that can fire per flow.
type rateLimiter struct {
	mu         sync.Mutex
	rate       float64
	burst      float64
	tokens     float64
	last       time.Time
	suppressed uint64
}

func newRateLimiter(perSecond int, per time.Duration) *rateLimiter {
	r := float64(perSecond) / per.Seconds()
	return &rateLimiter{rate: r, burst: float64(perSecond), tokens: float64(perSecond), last: time.Now()}
}

func (r *rateLimiter) allow() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	r.tokens = min(r.burst, r.tokens+now.Sub(r.last).Seconds()*r.rate)
	r.last = now
	if r.tokens >= 1 {
		r.tokens--
		return true
	}
	r.suppressed++
	return false
}

func (r *rateLimiter) suppressedCount() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.suppressed
}

// collector exports the fast path's counters to Prometheus at scrape time.
type collector struct{ d *Daemon }

var (
	descAttached      = prometheus.NewDesc("wardline_dataplane_xdp_attached", "1 for each port the XDP program is attached to, with its mode.", []string{"interface", "role", "mode"}, nil)
	descRingFail      = prometheus.NewDesc("wardline_dataplane_ringbuf_reserve_failures_total", "Ring-buffer reserve/output failures per CPU and event type (events lost or, for final flow records, delayed).", []string{"cpu", "event"}, nil)
	descEvictions     = prometheus.NewDesc("wardline_dataplane_flow_evictions_total", "Flows evicted from the LRU flow table under pressure (their records were lost); a lower bound derived at each sweep.", nil, nil)
	descLive          = prometheus.NewDesc("wardline_dataplane_flows_live", "Flow table entries at the last sweep.", nil, nil)
	descTableSize     = prometheus.NewDesc("wardline_dataplane_flow_table_size", "Flow table capacity.", nil, nil)
	descPending       = prometheus.NewDesc("wardline_dataplane_ringbuf_pending_bytes", "Bytes waiting in the ring buffer.", nil, nil)
	descRingSize      = prometheus.NewDesc("wardline_dataplane_ringbuf_size_bytes", "Ring buffer capacity.", nil, nil)
	descReader        = prometheus.NewDesc("wardline_reader_events_total", "Events decoded by the ring-buffer reader.", []string{"type"}, nil)
	descMalformed     = prometheus.NewDesc("wardline_reader_malformed_total", "Ring-buffer records the reader could not decode (skipped).", nil, nil)
	descLogSuppressed = prometheus.NewDesc("wardline_log_suppressed_total", "Per-flow log lines dropped by the log rate limiter.", nil, nil)
	descLastSweep     = prometheus.NewDesc("wardline_dataplane_last_sweep_timestamp_seconds", "When the flow sweeper last ran.", nil, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	d := c.d
	c.collectEnforce(ch)
	for _, a := range d.attachments() {
		ch <- prometheus.MustNewConstMetric(descAttached, prometheus.GaugeValue, 1, a.Ifname, a.Role.String(), string(a.Mode))
	}
	st, err := d.dp.Stats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descLive, err)
		return
	}
	for i := 0; i < dataplane.NumStats; i++ {
		s := dataplane.Stat(i)
		desc := prometheus.NewDesc("wardline_dataplane_"+s.Name()+"_total", s.Help(), nil, nil)
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(st.Total[i]))
	}
	for cpu, pc := range st.PerCPU {
		cs := strconv.Itoa(cpu)
		ch <- prometheus.MustNewConstMetric(descRingFail, prometheus.CounterValue, float64(pc[dataplane.StatEvFlowFail]), cs, "flow")
		ch <- prometheus.MustNewConstMetric(descRingFail, prometheus.CounterValue, float64(pc[dataplane.StatEvSnippetFail]), cs, "snippet")
	}
	ch <- prometheus.MustNewConstMetric(descEvictions, prometheus.CounterValue, float64(st.FlowEvictions))
	ch <- prometheus.MustNewConstMetric(descLive, prometheus.GaugeValue, float64(st.Sweep.Live))
	ch <- prometheus.MustNewConstMetric(descTableSize, prometheus.GaugeValue, float64(st.FlowTableSize))
	if !st.Sweep.LastRun.IsZero() {
		ch <- prometheus.MustNewConstMetric(descLastSweep, prometheus.GaugeValue, float64(st.Sweep.LastRun.UnixNano())/1e9)
	}
	ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(d.rd.Pending()))
	ch <- prometheus.MustNewConstMetric(descRingSize, prometheus.GaugeValue, float64(d.dp.Options().RingBytes))
	rs := d.rd.Stats()
	ch <- prometheus.MustNewConstMetric(descReader, prometheus.CounterValue, float64(rs.Flows), "flow")
	ch <- prometheus.MustNewConstMetric(descReader, prometheus.CounterValue, float64(rs.Snippets), "snippet")
	ch <- prometheus.MustNewConstMetric(descMalformed, prometheus.CounterValue, float64(rs.Malformed))
	ch <- prometheus.MustNewConstMetric(descLogSuppressed, prometheus.CounterValue, float64(d.flowLog.suppressedCount()))
	c.collectDetect(ch)
}
