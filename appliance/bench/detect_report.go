package bench

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// TargetOffline is issue 3's bound on offline throughput against
// ndpiReader on one CPU.
const TargetOffline = 2.0

// throughput returns packets/s and Gbit/s for n packets and bytes in secs.
func throughput(packets, bytes uint64, secs float64) (pps, gbps float64) {
	if secs <= 0 {
		return 0, 0
	}
	return float64(packets) / secs, float64(bytes) * 8 / secs / 1e9
}

// rate formats packets/s and Gbit/s.
func rate(packets, bytes uint64, secs float64) string {
	pps, gbps := throughput(packets, bytes, secs)
	return fmt.Sprintf("%5.2f M pkt/s, %5.2f Gbit/s", pps/1e6, gbps)
}

// netOf returns s minus the median start-up, round by round, at least
// 1 ms.
func netOf(s, startup Sample) Sample {
	var r Sample
	st := startup.Median()
	for _, v := range s.Values {
		r.add(max(v-st, 1e-3))
	}
	return r
}

// targetInput is the input the offline target is judged on: the longest
// (the repeated corpus), where start-up is the smallest share of either
// process; nil if none was measured.
func (o *OfflineResult) targetInput() *OfflineInput {
	var best *OfflineInput
	for _, in := range o.Inputs {
		if best == nil || in.Packets > best.Packets {
			best = in
		}
	}
	return best
}

// OfflineRatio is the figure the offline target is about: ndpiReader's
// whole-process time over ours on the longest input (ratio of medians),
// i.e. our packets/s over its.
func (r *FastpathResult) OfflineRatio() float64 {
	if r.Offline == nil {
		return 0
	}
	in := r.Offline.targetInput()
	if in == nil {
		return 0
	}
	return ratio(&in.NDPI.Wall, &in.Ours.Wall)
}

func (r *FastpathResult) reportOffline(w io.Writer) {
	o := r.Offline
	if o == nil {
		return
	}
	fmt.Fprintf(w, "\n5. Offline analysis on one CPU: wardline analyze (every detector) vs ndpiReader %s on the same captures,\n", o.NDPIVersion)
	if o.Skipped != "" {
		fmt.Fprintf(w, "   SKIPPED: %s\n", o.Skipped)
		return
	}
	fmt.Fprintf(w, "   whole processes timed, %d alternating rounds, both at nice %d on CPU %d\n", o.Rounds, benchNice, o.CPU)
	fmt.Fprintf(w, "   ours:       %s\n", o.OurCommand)
	fmt.Fprintf(w, "   ndpiReader: %s  (full DPI and flow risks, summary only)\n", o.NDPICommand)
	su := &o.Startup
	fmt.Fprintf(w, "   start-up (a one-packet capture): ours %s s, ndpiReader %s s\n",
		mm(su.Ours.Wall, 1, "%.3f"), mm(su.NDPI.Wall, 1, "%.3f"))
	for i, in := range o.Inputs {
		fmt.Fprintf(w, "   %c) %s: %d packets, %.1f MB on the wire (original lengths), %.1f MB file", 'a'+i, in.Name, in.Packets,
			float64(in.WireBytes)/1e6, float64(in.FileBytes)/1e6)
		switch {
		case strings.HasPrefix(in.Name, "merged x"):
			fmt.Fprintf(w, ";\n      the merged corpus %s times, a week apart, copy k tagged VLAN k (new flows for both tools)\n", strings.TrimPrefix(in.Name, "merged x"))
		case strings.HasPrefix(in.Name, "merged"):
			fmt.Fprintf(w, ";\n      %d Ethernet captures of the corpus merged by timestamp\n", len(in.Sources))
		default:
			fmt.Fprintf(w, "\n")
		}
		p, b := in.Packets, in.WireBytes
		for _, t := range []struct {
			name string
			tr   *ToolRuns
			st   *ToolRuns
		}{{"ours", &in.Ours, &su.Ours}, {"ndpiReader", &in.NDPI, &su.NDPI}} {
			fmt.Fprintf(w, "      %-10s %s s = %s whole process; CPU %.3f s; max RSS %.0f MB\n", t.name,
				mm(t.tr.Wall, 1, "%.3f"), rate(p, b, t.tr.Wall.Median()), t.tr.CPU.Median(), t.tr.MaxRSSMB.Median())
			own := "own time"
			if t.name == "ndpiReader" {
				own = "\"Packet Processing Time\""
			}
			fmt.Fprintf(w, "      %-10s %s %s s = %s", "", own, mm(t.tr.Internal, 1, "%.3f"), rate(p, b, t.tr.Internal.Median()))
			if t.name == "ndpiReader" && in.NDPIThroughput != "" {
				fmt.Fprintf(w, " (it prints %q)", in.NDPIThroughput)
			}
			fmt.Fprintln(w)
		}
		whole := ratio(&in.NDPI.Wall, &in.Ours.Wall)
		net := "n/a (start-up is more than half of a process)"
		if 2*su.NDPI.Wall.Median() < in.NDPI.Wall.Median() && 2*su.Ours.Wall.Median() < in.Ours.Wall.Median() {
			no, nn := netOf(in.Ours.Wall, su.Ours.Wall), netOf(in.NDPI.Wall, su.NDPI.Wall)
			net = fmt.Sprintf("%.2f x", ratio(&nn, &no))
		}
		fmt.Fprintf(w, "      ours = %.2f x ndpiReader whole process (per round %s); net of start-up %s; CPU time %.2f x; own counters %.2f x\n",
			whole, mm(in.NDPI.Wall.PerRound(in.Ours.Wall), 1, "%.2f"), net, ratio(&in.NDPI.CPU, &in.Ours.CPU),
			ratio(&in.NDPI.Internal, &in.Ours.Internal))
		fmt.Fprintf(w, "      found: ours %d flow records, %d snippets, %d alerts; ndpiReader %d flows (%d with a risk), %d of %d packets as IP\n",
			in.OurFlows, in.OurSnippets, in.OurAlerts, in.NDPIFlows, in.NDPIRiskFlows, in.NDPIIPPackets, in.Packets)
		if in == o.targetInput() {
			fmt.Fprintf(w, "      ^ target >= %.0f x ndpiReader (whole process, the longest input): %s\n", TargetOffline, verdict(whole >= TargetOffline))
		}
	}
}

func (r *FastpathResult) reportMemory(w io.Writer) {
	m := r.Memory
	if m == nil {
		return
	}
	per := "per 1M flows"
	if m.Flows != 1_000_000 {
		per = fmt.Sprintf("per 1M flows (measured with %d, scaled)", m.Flows)
	}
	fmt.Fprintf(w, "\n6. Userspace memory per 1M tracked flows, %d rounds; MB = 10^6 bytes %s; heap after a forced GC\n", len(m.Tracker.HeapAllocMB.Values), per)
	line := func(s *MemSample, what string) {
		fmt.Fprintf(w, "      live heap %s MB, heap in use %s MB, RSS %s MB; peak RSS while filling %s MB; %s\n",
			mm(s.HeapAllocMB, 1, "%.1f"), mm(s.HeapInuseMB, 1, "%.1f"), mm(s.RSSMB, 1, "+%.0f"), mm(s.PeakRSSMB, 1, "+%.0f"),
			fmt.Sprintf("%.2f [%.2f–%.2f] us %s", s.NsPerFlow.Median()/1e3, lo(s.NsPerFlow)/1e3, hi(s.NsPerFlow)/1e3, what))
	}
	fmt.Fprintf(w, "   a) offline: the pcap Tracker's table holding %d concurrent UDP flows (table size >= 1M, idle timeout 1h), engine attached\n", m.Flows)
	line(&m.Tracker, "per new flow (Tracker.Packet)")
	fmt.Fprintf(w, "      ^ target <= %.0f MB: %s (live heap)\n", TargetMemoryMB, verdict(m.Tracker.HeapAllocMB.Median() <= TargetMemoryMB))
	fmt.Fprintf(w, "   b) live, userspace: the engine after %d final flow records (%d events with the snippets) in %.0f s of event time\n",
		m.Flows, m.EngineEvents, m.EngineSpan)
	fmt.Fprintf(w, "      mix: %s\n", m.EngineMix)
	line(&m.Engine, "per flow inside the engine (its snippets included)")
	fmt.Fprintf(w, "      state: %s\n", engineState(m.EngineState))
	alerts := "none"
	if len(m.EngineAlerts) > 0 {
		alerts = fmt.Sprint(m.EngineAlerts)
	}
	fmt.Fprintf(w, "      alerts on this benign mix: %s\n", alerts)
	fmt.Fprintf(w, "      ^ target <= %.0f MB: %s (live heap)\n", TargetMemoryMB, verdict(m.Engine.HeapAllocMB.Median() <= TargetMemoryMB))
	if k := m.Kernel; k != nil {
		kv := float64(k.MaxEntries) * float64(k.KeySize+k.ValueSize) / 1e6
		fmt.Fprintf(w, "   c) live, kernel (not userspace): %s flow table of %d entries x (%d B key + %d B value) = %.1f MB;\n",
			k.MapType, k.MaxEntries, k.KeySize, k.ValueSize, kv)
		fmt.Fprintf(w, "      the kernel accounts %.1f MB (memlock, /proc/<pid>/fdinfo), %.0f B per entry, allocated whole at creation;\n",
			float64(k.FlowsMemlock)/1e6, float64(k.FlowsMemlock)/float64(k.MaxEntries))
		fmt.Fprintf(w, "      ring buffer %d MiB (memlock %.1f MB); the daemon's default table (%d entries) accounts %.1f MB\n",
			k.RingBytes>>20, float64(k.RingMemlock)/1e6, k.DataplaneTable,
			float64(k.FlowsMemlock)/float64(k.MaxEntries)*float64(k.DataplaneTable)/1e6)
	} else if m.KernelSkipped != "" {
		fmt.Fprintf(w, "   c) live, kernel: skipped (%s)\n", m.KernelSkipped)
	}
}

func lo(s Sample) float64 { l, _ := s.MinMax(); return l }
func hi(s Sample) float64 { _, h := s.MinMax(); return h }

// engineState summarises the detectors' state sizes.
func engineState(st map[string]float64) string {
	keys := []string{"beacon.pairs_tracked", "beacon.pairs_evicted", "dns_tunnel.tracked_pairs", "dns_tunnel.untracked_messages",
		"dga.tracked_hosts", "exfil.hosts_tracked", "lateral.hosts", "lateral.edges", "scan.tracked_sources", "engine.app_state_evicted"}
	var parts []string
	for _, k := range keys {
		if v, ok := st[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %.0f", k, v))
		}
	}
	return strings.Join(parts, ", ")
}

func ms(s float64) string {
	switch {
	case s >= 1:
		return fmt.Sprintf("%.2f s", s)
	case s >= 1e-3:
		return fmt.Sprintf("%.1f ms", s*1e3)
	}
	return fmt.Sprintf("%.0f us", s*1e6)
}

func percentiles(s Sample) string {
	_, mx := s.MinMax()
	return fmt.Sprintf("P50 %s, P95 %s, max %s", ms(s.Percentile(50)), ms(s.Percentile(95)), ms(mx))
}

func (r *FastpathResult) reportTTD(w io.Writer) {
	t := r.TTD
	if t == nil {
		return
	}
	fmt.Fprintf(w, "\n7. Time-to-detect\n")
	if t.OfflineSkipped != "" {
		fmt.Fprintf(w, "   a) offline: SKIPPED: %s\n", t.OfflineSkipped)
	} else {
		var types []string
		for k, v := range t.OfflineByType {
			types = append(types, fmt.Sprintf("%s %d", k, v))
		}
		sort.Strings(types)
		fmt.Fprintf(w, "   a) offline, every corpus scenario as make eval runs it, %d rounds, %d alerts: %s\n",
			r.Rounds, len(t.Offline.Values), percentiles(t.Offline))
		fmt.Fprintf(w, "      (the engine's processing time: the event carrying the decisive packet reaches it -> the alert)\n")
		fmt.Fprintf(w, "      alerts per round: %s\n", strings.Join(types, ", "))
	}
	if t.LiveSkipped != "" {
		fmt.Fprintf(w, "   b) live: SKIPPED: %s\n", t.LiveSkipped)
		return
	}
	fmt.Fprintf(w, "   b) live: wardlined in a lab (%s XDP, detection on, home 198.18.0.0/24); %d office clients each connect-scan\n", t.XDPMode, t.Clients)
	fmt.Fprintf(w, "      %d ports of the web host, all at once (%s s per round); %d rounds, the daemon started afresh each; %d port_scan alerts\n",
		t.Ports, mm(t.ScanSeconds, 1, "%.2f"), t.LiveRounds, t.LiveScanAlerts)
	p95 := t.Live.Percentile(95)
	fmt.Fprintf(w, "      %s; per-round P95 %s ms  [target P95 < %v: %s]\n", percentiles(t.Live), mm(t.LiveP95, 1e3, "%.1f"),
		TargetTTDP95, verdict(len(t.Live.Values) > 0 && p95 < TargetTTDP95.Seconds()))
	fmt.Fprintf(w, "      (the daemon's time_to_detect: capture of the decisive packet, the fast path's timestamp -> the alert)\n")
	fmt.Fprintf(w, "      bound from the scanners' clocks (connect() of the %dth port begun -> alert emitted): %s\n", scanThreshold, percentiles(t.LiveClient))
	other := "none"
	if len(t.LiveOther) > 0 {
		var o []string
		for k, v := range t.LiveOther {
			o = append(o, fmt.Sprintf("%s x%d", k, v))
		}
		sort.Strings(o)
		other = strings.Join(o, "; ")
	}
	fmt.Fprintf(w, "      other alerts meanwhile: %s\n", other)
}

// reportDetectTargets prints issue 3's targets with their verdicts.
func (r *FastpathResult) reportDetectTargets(w io.Writer) {
	if r.Offline == nil && r.Memory == nil && r.TTD == nil {
		return
	}
	fmt.Fprintf(w, "\nTargets (issue 3)\n")
	if o := r.Offline; o != nil {
		if o.Skipped != "" {
			fmt.Fprintf(w, "   offline throughput >= %.0f x ndpiReader:          skipped (%s)\n", TargetOffline, o.Skipped)
		} else if in := o.targetInput(); in != nil {
			x := r.OfflineRatio()
			fmt.Fprintf(w, "   offline throughput >= %.0f x ndpiReader:          %.2f  %s  (%s, whole process, one CPU;", TargetOffline, x, verdict(x >= TargetOffline), in.Name)
			for _, other := range o.Inputs {
				if other != in {
					fmt.Fprintf(w, " %s %.2f", other.Name, ratio(&other.NDPI.Wall, &other.Ours.Wall))
				}
			}
			fmt.Fprintf(w, "; own counters %.2f)\n", ratio(&in.NDPI.Internal, &in.Ours.Internal))
		}
	}
	if m := r.Memory; m != nil {
		a, b := m.Tracker.HeapAllocMB.Median(), m.Engine.HeapAllocMB.Median()
		fmt.Fprintf(w, "   userspace memory per 1M flows <= %.0f MB:       offline %.0f MB %s, live %.0f MB %s  (live heap, MB = 10^6 B: %.0f and %.0f MiB; peak RSS while filling: %.0f, %.0f MB)\n",
			TargetMemoryMB, a, verdict(a <= TargetMemoryMB), b, verdict(b <= TargetMemoryMB), a*1e6/(1<<20), b*1e6/(1<<20),
			m.Tracker.PeakRSSMB.Median(), m.Engine.PeakRSSMB.Median())
	}
	if t := r.TTD; t != nil {
		if len(t.Live.Values) > 0 {
			p := t.Live.Percentile(95)
			fmt.Fprintf(w, "   time-to-detect P95 < %v (live):               %s  %s  (offline %s)\n", TargetTTDP95, ms(p),
				verdict(p < TargetTTDP95.Seconds()), ms(t.Offline.Percentile(95)))
		} else {
			fmt.Fprintf(w, "   time-to-detect P95 < %v (live):               not measured (%s)\n", TargetTTDP95, t.LiveSkipped)
		}
	}
}
