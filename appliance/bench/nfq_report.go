package bench

import (
	"fmt"
	"io"
)

// NFQRatio is the figure the NFQUEUE target is about: the lean reader's
// verdicts/s over the C reference's (ratio of medians), 0 if either is
// missing.
func (r *FastpathResult) NFQRatio() float64 {
	if r.NFQ == nil {
		return 0
	}
	a, b := r.NFQ.Readers[ReaderLean], r.NFQ.Readers[ReaderC]
	if a == nil || b == nil {
		return 0
	}
	return ratio(&a.VPS, &b.VPS)
}

func (r *FastpathResult) reportNFQ(w io.Writer) {
	n := r.NFQ
	if n == nil {
		return
	}
	fmt.Fprintf(w, "\nNFQUEUE inspection (issue 4): verdicts/s of one reader process pinned to CPU %d; the live-frame generator floods\n", nfqCPU)
	fmt.Fprintf(w, "   64-byte UDP on CPU %d, every frame steered to queue %d (xt NFQUEUE, bypass; maxlen %d, fail-open, GSO, 64 MiB rcvbuf);\n", genCPU, n.Queue, n.MaxQueueLen)
	fmt.Fprintf(w, "   rule in every reader: drop if the payload contains %q (never here). Verdicts/s from the kernel's queue counters;\n", n.Content)
	fmt.Fprintf(w, "   reader ns/verdict = the reader process's CPU time (with the forwarding its verdicts do) per verdict; its CPU share\n")
	fmt.Fprintf(w, "   below ~95%% means other work took part of CPU %d, which moves verdicts/s but hardly ns/verdict.\n", nfqCPU)
	base := n.Readers[ReaderC]
	fmt.Fprintf(w, "   %-11s %-28s %-32s %-20s %-16s %-9s %s\n", "reader", "verdicts/s", "x C reference", "reader ns/verdict", "reader CPU share", "pkts/read", "uninspected (queue full)")
	for _, name := range nfqReaders {
		m := n.Readers[name]
		if m == nil {
			continue
		}
		x := "-"
		if base != nil && name != ReaderC {
			pr := m.VPS.PerRound(base.VPS)
			x = fmt.Sprintf("%.2f (rounds %s)", ratio(&m.VPS, &base.VPS), mm(pr, 1, "%.2f"))
		}
		fmt.Fprintf(w, "   %-11s %-28s %-32s %-20s %-16s %-9.1f %s\n", name, mm(m.VPS, 1e-3, "%.1fk"), x, mm(m.CPUNs, 1, "%.0f"),
			mm(m.CPUShare, 100, "%.0f%%"), m.PerRead.Median(), mm(m.Uninspected, 100, "%.0f%%"))
	}
}

func (r *FastpathResult) reportNFQTarget(w io.Writer) {
	x := r.NFQRatio()
	if x == 0 {
		return
	}
	fmt.Fprintf(w, "\nTarget (issue 4)\n")
	fmt.Fprintf(w, "   NFQUEUE verdicts/s, enforce/nfq vs C libnetfilter_queue >= %.1f x:  %.2f  %s", TargetNFQ, x, verdict(x >= TargetNFQ))
	lean, c := r.NFQ.Readers[ReaderLean], r.NFQ.Readers[ReaderC]
	fmt.Fprintf(w, "  [per reader CPU second: %.2f]", ratio(&c.CPUNs, &lean.CPUNs))
	base := &r.NFQ.Readers[ReaderC].VPS
	if g := r.NFQ.Readers[ReaderGoNFQ]; g != nil {
		fmt.Fprintf(w, "  (go-nfqueue %.2f", ratio(&g.VPS, base))
		if cb := r.NFQ.Readers[ReaderCBatch]; cb != nil {
			fmt.Fprintf(w, "; C with batch verdicts %.2f", ratio(&cb.VPS, base))
		}
		fmt.Fprintf(w, ")")
	}
	fmt.Fprintln(w)
}
