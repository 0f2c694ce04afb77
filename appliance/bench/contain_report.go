package bench

import (
	"fmt"
	"io"
	"strings"
)

// msRange formats a sample of seconds as milliseconds: median [min–max].
func msRange(s Sample) string { return mm(s, 1e3, "%.1f") + " ms" }

// pct formats P50/P95/max of a sample of seconds in milliseconds.
func pct(s Sample) string {
	_, hi := s.MinMax()
	return fmt.Sprintf("P50 %6.1f  P95 %6.1f  max %6.1f ms", s.Percentile(50)*1e3, s.Percentile(95)*1e3, hi*1e3)
}

func (r *FastpathResult) reportContain(w io.Writer) {
	c := r.Contain
	if c == nil {
		return
	}
	fmt.Fprintf(w, "\n8. Time-to-contain (issue 4): wardlined in a lab (XDP %s), policy %q in stage enforce blocks every port_scan\n", c.XDPMode, containPolicy)
	fmt.Fprintf(w, "   attacker in the XDP blocklist; %d clients at once connect-scan up to %d closed ports of web while each sends UDP echo\n", c.Clients, c.Ports)
	fmt.Fprintf(w, "   probes to web every %.0f ms; %d rounds, a fresh daemon each; %d scanner-rounds, %d contained; %d of %d probes lost before containment.\n",
		c.ProbeMs, c.Rounds, c.Scanners, c.Contained, c.LostBefore, c.ProbesSent)
	fmt.Fprintf(w, "   Every interval starts at the alert's emission (its timestamp + time_to_detect, from the API); pooled over all scanners:\n")
	fmt.Fprintf(w, "   (decisive packet → alert emitted: time_to_detect %s)\n", pct(c.TTD))
	fmt.Fprintf(w, "   %-58s %s\n", "alert emitted → decision created (daemon clock)", pct(c.Decided))
	fmt.Fprintf(w, "   %-58s %s\n", "alert emitted → XDP entry written (kernel map's added time)", pct(c.Applied))
	fmt.Fprintf(w, "   %-58s %s\n", "alert emitted → last answered probe sent (scanner's clock)", pct(c.LastAnswered))
	fmt.Fprintf(w, "   %-58s %s\n", "alert emitted → first dropped probe sent (scanner's clock)", pct(c.FirstDropped))
	fmt.Fprintf(w, "   %-58s %s\n", "  resolution: gap between those two probes", pct(c.Gap))
	fmt.Fprintf(w, "   per-round P95 of the last: %s; ports scanned before a connect went unanswered: %s\n", msRange(c.RoundP95), mm(c.PortsScanned, 1, "%.0f"))
	if len(c.Other) > 0 {
		var o []string
		for k, v := range c.Other {
			o = append(o, fmt.Sprintf("%s ×%d", k, v))
		}
		fmt.Fprintf(w, "   other alerts meanwhile: %s\n", strings.Join(o, ", "))
	}
}

// ContainP95 is the figure the time-to-contain target is about: the P95,
// over every scanner of every round, from the alert's emission to the
// first probe of the scanner that the box dropped (0 if not measured).
func (r *FastpathResult) ContainP95() float64 {
	if r.Contain == nil {
		return 0
	}
	return r.Contain.FirstDropped.Percentile(95)
}

// decPathDesc describes each path of the decisions figure for the report.
func decPathDesc(name string, p *DecisionPath) string {
	switch name {
	case PathXDPBatch:
		return fmt.Sprintf("xdpset Apply, %d per call (BatchUpdate)", p.Batch)
	case PathXDPSingle:
		return "xdpset Apply, one per call"
	case PathNFTBatch, PathNFTBigBatch:
		return fmt.Sprintf("nftset Apply, %d per transaction", p.Batch)
	case PathNFTSingle:
		return "nftset Apply, one per transaction, set at N"
	case PathMgrXDP, PathMgrXDPSmall:
		return "Manager.AddDecision → xdp, state in memory"
	case PathMgrPersist:
		return "Manager.AddDecision → xdp, state+audit on disk"
	case PathMgrNFT:
		return "Manager.AddDecision → nft"
	case PathMgrAlerts:
		return "Manager.HandleAlert → policy → xdp (burst)"
	}
	return name
}

var decReportOrder = []string{PathXDPBatch, PathXDPSingle, PathNFTBigBatch, PathNFTBatch, PathNFTSingle, PathMgrAlerts, PathMgrXDPSmall, PathMgrXDP, PathMgrPersist, PathMgrNFT}

func (r *FastpathResult) reportDecisions(w io.Writer) {
	d := r.Decisions
	if d == nil {
		return
	}
	fmt.Fprintf(w, "\n9. Decisions into the kernel (issue 4): source blocks (/32s), TTL 10 min, into empty sets (a freshly loaded fast path's\n")
	fmt.Fprintf(w, "   tries; an nft table in a throwaway namespace); backends alone with N = %d, and through enforce.Manager with\n", d.N)
	fmt.Fprintf(w, "   guardrails raised; \"in Apply\" = share of the wall time inside the backend's Apply (kernel writes); the rest is\n")
	fmt.Fprintf(w, "   the Manager's own (guardrails, state, the audit record). \"time for 100k\": measured, scaled from N to\n")
	fmt.Fprintf(w, "   100k where N is smaller.\n")
	fmt.Fprintf(w, "   %-48s %7s %-32s %-24s %-9s %s\n", "path", "N", "decisions/s", "time for 100k", "in Apply", "read back")
	for _, name := range decReportOrder {
		p := d.Paths[name]
		if p == nil || len(p.PerSec.Values) == 0 {
			continue
		}
		n := fmt.Sprint(p.N)
		var load string
		switch {
		case name == PathNFTSingle:
			// Measured with the set at N: from an empty set the first
			// ones would be faster.
			n = fmt.Sprintf("~%.0f", Sample{Values: intsToFloats(p.Count)}.Median())
			load = fmt.Sprintf("~%.0f s at that rate", float64(decN)/p.PerSec.Median())
		case strings.HasPrefix(name, "mgr-") && p.N < decN:
			load = fmt.Sprintf("~%.0f s at that rate", float64(decN)/p.PerSec.Median())
		default:
			load = mm(p.Seconds, float64(decN)/float64(p.N), "%.2f") + " s"
		}
		share := func(s Sample) string {
			if len(s.Values) == 0 {
				return "-"
			}
			return fmt.Sprintf("%.0f%%", s.Median()*100)
		}
		rb := "-"
		if len(p.ReadBack) > 0 {
			rb = fmt.Sprintf("%d in %s s", p.ReadBack[len(p.ReadBack)-1], mm(p.Read, 1, "%.2f"))
		}
		fmt.Fprintf(w, "   %-48s %7s %-32s %-24s %-9s %s\n", decPathDesc(name, p), n, rateRange(p.PerSec), load,
			share(p.ApplyShare), rb)
	}
}

// rateRange formats decisions/s: thousands from 1000/s on.
func rateRange(s Sample) string {
	if s.Median() >= 1000 {
		return mm(s, 1e-3, "%.1fk")
	}
	return mm(s, 1, "%.0f")
}

func intsToFloats(v []int) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// DecisionsMet lists the paths of the decisions figure whose median
// reaches TargetDecisionsPerSec, in report order.
func (r *FastpathResult) DecisionsMet() (met, not []string) {
	if r.Decisions == nil {
		return nil, nil
	}
	for _, name := range decReportOrder {
		p := r.Decisions.Paths[name]
		if p == nil || len(p.PerSec.Values) == 0 {
			continue
		}
		if p.PerSec.Median() >= TargetDecisionsPerSec {
			met = append(met, name)
		} else {
			not = append(not, name)
		}
	}
	return met, not
}

func (r *FastpathResult) reportEnforceTargets(w io.Writer) {
	if r.Contain == nil && r.Decisions == nil {
		return
	}
	fmt.Fprintf(w, "\nTargets (issue 4, enforcement)\n")
	if c := r.Contain; c != nil && len(c.FirstDropped.Values) > 0 {
		p95 := r.ContainP95()
		fmt.Fprintf(w, "   time-to-contain P95 < %v (alert → first dropped probe): %.1f ms  %s  (daemon side: decided %.2f ms, XDP entry written %.2f ms at P95)\n",
			TargetContainP95, p95*1e3, verdict(p95 < TargetContainP95.Seconds()), c.Decided.Percentile(95)*1e3, c.Applied.Percentile(95)*1e3)
	}
	if r.Decisions != nil {
		met, not := r.DecisionsMet()
		fmt.Fprintf(w, "   decisions/s into the kernel >= %.0fk: %s by %s", TargetDecisionsPerSec/1e3, verdict(len(met) > 0), orNone(met))
		fmt.Fprintf(w, "; below it: %s\n", orNone(not))
	}
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
