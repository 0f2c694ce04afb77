package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/wardline/wardline/dataplane"
	"github.com/wardline/wardline/detect"
	"github.com/wardline/wardline/enforce"
	"github.com/wardline/wardline/enforce/nftset"
	"github.com/wardline/wardline/enforce/xdpset"
	"github.com/wardline/wardline/lab"
)

// TargetDecisionsPerSec is issue 4's bound on decisions per second into
// the kernel.
const TargetDecisionsPerSec = 50e3

// The paths of the decisions figure, in report order; rounds alternate it.
const (
	// PathXDPBatch: xdpset.Backend.Apply with decBatch elements per call
	// (dataplane.Lists.SetMany: BatchUpdate of up to 1024 keys).
	PathXDPBatch = "xdp-batch"
	// PathXDPSingle: xdpset.Backend.Apply with one element per call.
	PathXDPSingle = "xdp-single"
	// PathNFTBatch and PathNFTBigBatch: nftset.LoadBench's load, decBatch
	// and decBigBatch elements per netlink transaction.
	PathNFTBatch    = "nft-batch"
	PathNFTBigBatch = "nft-batch-big"
	// PathNFTSingle: LoadBench's single-element transactions, on top of
	// the N it loaded in batches of decBatch.
	PathNFTSingle = "nft-single"
	// PathMgrXDP: enforce.Manager.AddDecision one decision per call
	// (guardrails, decision state, audit record, Reconciler.Add) over the
	// XDP backend, state and audit log in memory.
	PathMgrXDP = "mgr-add-xdp"
	// PathMgrXDPSmall: the same with fewer decisions, to show how the
	// cost of one grows with the decisions in force.
	PathMgrXDPSmall = "mgr-add-xdp-small"
	// PathMgrPersist: the same with the state file and the audit log on
	// disk, as wardlined runs it.
	PathMgrPersist = "mgr-add-xdp-persist"
	// PathMgrNFT: AddDecision over the nft backend (scope nft).
	PathMgrNFT = "mgr-add-nft"
	// PathMgrAlerts: port_scan alerts through Manager.HandleAlert and a
	// policy in stage enforce (scope xdp), with Run draining the queue:
	// the path of an auto-enforced policy, where a burst of alerts is
	// applied as one Reconciler.Add.
	PathMgrAlerts = "mgr-alerts"
)

var decPaths = []string{PathXDPBatch, PathXDPSingle, PathNFTBatch, PathNFTBigBatch, PathMgrXDPSmall, PathMgrXDP, PathMgrPersist, PathMgrNFT, PathMgrAlerts}

// Sizes of the decisions figure.
const (
	decN        = 100_000 // elements per kernel load: the "100k set elements"
	decBatch    = 1000    // elements per Apply of the batched kernel loads
	decBigBatch = 10_000
	// decMgrN: decisions per Manager measurement (the 100k);
	// decMgrSmallN shows that the cost of one does not grow with the
	// decisions in force.
	decMgrN      = 100_000
	decMgrSmallN = 10_000
	// decMgrNFTN: decisions per Manager measurement over nft, where each
	// costs a transaction that rebuilds the set (O(n) in the kernel).
	decMgrNFTN = 2000
	// decMgrPersistN: AddDecision by hand persists the state file whole
	// at once (O(n) JSON; policy-made decisions persist once per burst),
	// so fewer.
	decMgrPersistN = 1000
	// decAlertN: alerts per burst, below the Manager's queue of 4096
	// (HandleAlert drops and counts beyond it).
	decAlertN = 4000
)

// DecisionsResult is the decisions figure: how fast decisions reach the
// kernel, per backend and through the Manager.
type DecisionsResult struct {
	N     int                      `json:"n"` // elements per kernel load
	Paths map[string]*DecisionPath `json:"paths"`
}

// DecisionPath is one path's measurements, in round order.
type DecisionPath struct {
	N     int `json:"n"`     // decisions per measurement
	Batch int `json:"batch"` // elements per Apply (1: one by one; 0: the Manager decides)
	// PerSec: decisions per second; Seconds: wall time for N.
	PerSec  Sample `json:"per_s"`
	Seconds Sample `json:"s"`
	// ReadBack: elements the backend's Elements returned after the load
	// (must be N); Read: how long that call took, seconds.
	ReadBack []int  `json:"read_back"`
	Read     Sample `json:"read_s"`
	// Manager paths: the share of the wall time spent in the backend's
	// Apply (the kernel writes); the rest is the Manager's own
	// (guardrails, decision state, audit record, state file).
	ApplyShare Sample `json:"apply_share"`
	// Count: decisions per measurement where it varies (PathNFTSingle
	// stops after 5 s).
	Count []int `json:"count,omitempty"`
}

// decOpts sizes the figure (tests run it small).
type decOpts struct {
	n, batch, bigBatch, mgrN, mgrSmallN, mgrNFTN, mgrPersistN, alertN int
}

func (o *Options) decSizes() decOpts {
	d := decOpts{decN, decBatch, decBigBatch, decMgrN, decMgrSmallN, decMgrNFTN, decMgrPersistN, decAlertN}
	if o.decScale > 0 && o.decScale < 1 {
		f := func(v int) int { return max(2, int(float64(v)*o.decScale)) }
		d = decOpts{f(d.n), f(d.batch), f(d.bigBatch), f(d.mgrN), f(d.mgrSmallN), f(d.mgrNFTN), f(d.mgrPersistN), f(d.alertN)}
	}
	return d
}

// Decisions runs the decisions figure: opts.Rounds rounds, every path once
// per round in alternating order.
func Decisions(ctx context.Context, opts Options) (*DecisionsResult, error) {
	opts.defaults()
	if os.Geteuid() != 0 {
		return nil, errors.New("the decisions figure needs root (BPF maps, network namespaces, nftables)")
	}
	sz := opts.decSizes()
	res := &DecisionsResult{N: sz.n, Paths: map[string]*DecisionPath{}}
	for r := 0; r < opts.Rounds; r++ {
		for _, p := range alternate(decPaths, r) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if err := decMeasure(ctx, p, sz, res); err != nil {
				return nil, fmt.Errorf("decisions %s: %w", p, err)
			}
			dp := res.Paths[p]
			opts.Logf("round %d decisions %-20s %7d in %7.3f s: %8.0f/s%s", r+1, p, dp.N, last(dp.Seconds), last(dp.PerSec), dp.detail())
			if p == PathNFTBatch && res.Paths[PathNFTSingle] != nil {
				s := res.Paths[PathNFTSingle]
				opts.Logf("round %d decisions %-20s %7d in %7.3f s: %8.0f/s (on top of %d)", r+1, PathNFTSingle, s.Count[len(s.Count)-1], last(s.Seconds), last(s.PerSec), sz.n)
			}
		}
	}
	return res, nil
}

func (p *DecisionPath) detail() string {
	s := ""
	if len(p.ReadBack) > 0 {
		s += fmt.Sprintf(", read back %d in %.3f s", p.ReadBack[len(p.ReadBack)-1], last(p.Read))
	}
	if len(p.ApplyShare.Values) > 0 {
		s += fmt.Sprintf(", in Apply %.0f%%", 100*last(p.ApplyShare))
	}
	return s
}

func (r *DecisionsResult) path(name string, n, batch int) *DecisionPath {
	p := r.Paths[name]
	if p == nil {
		p = &DecisionPath{N: n, Batch: batch}
		r.Paths[name] = p
	}
	return p
}

// add records one measurement of n decisions in d.
func (p *DecisionPath) add(n int, d time.Duration) {
	p.Seconds.add(d.Seconds())
	p.PerSec.add(float64(n) / d.Seconds())
}

func decMeasure(ctx context.Context, name string, sz decOpts, res *DecisionsResult) error {
	switch name {
	case PathXDPBatch, PathXDPSingle:
		batch := sz.batch
		if name == PathXDPSingle {
			batch = 1
		}
		return decXDP(res.path(name, sz.n, batch), sz.n, batch)
	case PathNFTBatch, PathNFTBigBatch:
		batch := sz.batch
		if name == PathNFTBigBatch {
			batch = sz.bigBatch
		}
		ns, err := lab.UnnamedNetns()
		if err != nil {
			return err
		}
		lb, err := nftset.LoadBench(ctx, int(ns), sz.n, batch)
		ns.Close()
		if err != nil {
			return err
		}
		p := res.path(name, sz.n, batch)
		p.add(sz.n, lb.Load)
		p.ReadBack = append(p.ReadBack, lb.ReadBack)
		p.Read.add(lb.Read.Seconds())
		if lb.ReadBack != sz.n {
			return fmt.Errorf("loaded %d elements, read back %d", sz.n, lb.ReadBack)
		}
		if name == PathNFTBatch {
			// LoadBench's one-by-one transactions, on top of the n it
			// loaded (at most 5000, for at most 5 s).
			s := res.path(PathNFTSingle, lb.Single, 1)
			s.add(lb.Single, lb.SingleDur)
			s.Count = append(s.Count, lb.Single)
		}
		return nil
	case PathMgrXDP, PathMgrXDPSmall, PathMgrPersist, PathMgrNFT:
		n := sz.mgrN
		switch name {
		case PathMgrXDPSmall:
			n = sz.mgrSmallN
		case PathMgrPersist:
			n = sz.mgrPersistN
		case PathMgrNFT:
			n = sz.mgrNFTN
		}
		return decManagerAdd(ctx, res.path(name, n, 1), name, n)
	case PathMgrAlerts:
		return decManagerAlerts(ctx, res.path(name, sz.alertN, 0), sz.alertN)
	}
	return fmt.Errorf("unknown path %q", name)
}

// decTarget is the i-th target of the figure: /32s of 198.18.0.0/15, then
// /128s of 2001:db8::/32 (nftset.LoadBench uses the same).
func decTarget(i int) netip.Prefix {
	if i < 1<<17 {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18 + byte(i>>16), byte(i >> 8), byte(i)}), 32)
	}
	i -= 1 << 17
	return netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 12: byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}), 128)
}

// loadDataplane loads the fast path without pinning or attaching: its
// block tries are what the XDP backend writes (released on Close).
func loadDataplane() (*dataplane.Dataplane, error) {
	d, err := dataplane.Load(dataplane.Options{FlowTableSize: 1024, RingBytes: 1 << 20})
	if err != nil {
		return nil, fmt.Errorf("load the fast path: %w", err)
	}
	return d, nil
}

// decXDP loads n source blocks into the empty block tries of a freshly
// loaded fast path, batch per Apply, and reads them back.
func decXDP(p *DecisionPath, n, batch int) error {
	d, err := loadDataplane()
	if err != nil {
		return err
	}
	defer d.Close()
	b := xdpset.New(d.Lists())
	exp := time.Now().Add(10 * time.Minute)
	els := make([]enforce.Element, n)
	for i := range els {
		els[i] = enforce.Element{Prefix: decTarget(i), Dir: enforce.Src, Expires: exp}
	}
	runtime.GC() // the garbage of the previous path is not this one's cost
	start := time.Now()
	for i := 0; i < n; i += batch {
		if err := b.Apply(els[i:min(i+batch, n)], nil); err != nil {
			return err
		}
	}
	p.add(n, time.Since(start))
	return decReadBack(p, b, n)
}

// timedBackend is a real backend whose Apply calls are timed.
type timedBackend struct {
	enforce.Backend
	ns atomic.Int64
}

func (t *timedBackend) Apply(add, del []enforce.Element) error {
	start := time.Now()
	err := t.Backend.Apply(add, del)
	t.ns.Add(int64(time.Since(start)))
	return err
}

// decBackend opens the backend a Manager path drives: the XDP tries of a
// freshly loaded fast path, or the nft table in a throwaway namespace.
func decBackend(nft bool) (*timedBackend, func(), error) {
	if !nft {
		d, err := loadDataplane()
		if err != nil {
			return nil, nil, err
		}
		return &timedBackend{Backend: xdpset.New(d.Lists())}, func() { d.Close() }, nil
	}
	ns, err := lab.UnnamedNetns()
	if err != nil {
		return nil, nil, err
	}
	b, err := nftset.Open(nftset.Config{NetNSFd: int(ns), Create: true})
	if err != nil {
		ns.Close()
		return nil, nil, err
	}
	return &timedBackend{Backend: b}, func() { b.Close(); ns.Close() }, nil
}

// benchGuardrails let the figure's decisions through (the defaults cap new
// blocks at 60 a minute).
var benchGuardrails = enforce.Guardrails{MaxNewPerMinute: 1 << 30, MaxActive: 1 << 30}

// decManagerAdd adds n decisions one AddDecision at a time.
func decManagerAdd(ctx context.Context, p *DecisionPath, name string, n int) error {
	tb, closeB, err := decBackend(name == PathMgrNFT)
	if err != nil {
		return err
	}
	defer closeB()
	cfg := enforce.Config{Guardrails: benchGuardrails}
	if name == PathMgrPersist {
		dir, err := os.MkdirTemp("", "wardline-bench-state-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfg.StatePath, cfg.AuditPath = filepath.Join(dir, "state.json"), filepath.Join(dir, "audit.log")
	}
	m, err := enforce.New(cfg, tb)
	if err != nil {
		return err
	}
	defer m.Close()
	scope := enforce.ScopeXDP
	if name == PathMgrNFT {
		scope = enforce.ScopeNFT
	}
	runtime.GC()
	start := time.Now()
	for i := range n {
		if i%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if _, err := m.AddDecision(enforce.DecisionRequest{Action: enforce.ActionBlock, Target: decTarget(i), Dir: enforce.Src,
			Scope: scope, TTL: 10 * time.Minute, Reason: "bench"}, "bench"); err != nil {
			return err
		}
	}
	took := time.Since(start)
	p.add(n, took)
	p.ApplyShare.add(float64(tb.ns.Load()) / float64(took))
	return decReadBack(p, tb, n)
}

func decReadBack(p *DecisionPath, b enforce.Backend, n int) error {
	start := time.Now()
	got, err := b.Elements()
	if err != nil {
		return err
	}
	p.Read.add(time.Since(start).Seconds())
	p.ReadBack = append(p.ReadBack, len(got))
	if len(got) != n {
		return fmt.Errorf("%d decisions loaded, the backend holds %d elements", n, len(got))
	}
	return nil
}

// decManagerAlerts hands n port_scan alerts of distinct attackers to a
// running Manager with a policy in stage enforce, and times them until
// the n decisions are in force.
func decManagerAlerts(ctx context.Context, p *DecisionPath, n int) error {
	tb, closeB, err := decBackend(false)
	if err != nil {
		return err
	}
	defer closeB()
	m, err := enforce.New(enforce.Config{Guardrails: benchGuardrails, Interval: time.Hour,
		Policies: []enforce.Policy{{ID: "bench", Match: enforce.Match{Types: []string{detect.TypePortScan}}, Action: enforce.PolicyBlock,
			TTL: enforce.Duration(10 * time.Minute), Scope: enforce.ScopeXDP, Stage: enforce.StageEnforce}}}, tb)
	if err != nil {
		return err
	}
	defer m.Close()
	alerts := make([]*detect.Alert, n)
	for i := range alerts {
		a := decTarget(i).Addr()
		alerts[i] = &detect.Alert{Type: detect.TypePortScan, Attacker: a, Risk: 50, Signature: "bench", Fingerprint: fmt.Sprintf("bench-%d", i)}
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(rctx) }()
	defer func() {
		cancel()
		<-done
	}()
	// Run reconciles once first; wait for that pass.
	for len(m.Reconciler().Stats()) == 0 || m.Reconciler().Stats()[0].Passes == 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(time.Millisecond)
	}
	runtime.GC()
	start := time.Now()
	for _, a := range alerts {
		m.HandleAlert(a)
	}
	// Poll the Reconciler's counter only: Status would take the
	// Manager's lock and walk every decision.
	deadline := start.Add(time.Minute)
	for m.Reconciler().Stats()[0].Added < uint64(n) {
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			s := m.Status()
			return fmt.Errorf("after %v: %d of %d alerts in force, %d lost (queue full), %d apply errors", time.Minute, s.Decisions, n, s.AlertsLost, s.ApplyErrors)
		}
		time.Sleep(200 * time.Microsecond)
	}
	took := time.Since(start)
	if s := m.Status(); s.AlertsLost > 0 || s.Decisions != n {
		return fmt.Errorf("%d alerts: %d decisions in force, %d lost (queue full)", n, s.Decisions, s.AlertsLost)
	}
	p.add(n, took)
	p.ApplyShare.add(float64(tb.ns.Load()) / float64(took))
	return decReadBack(p, tb, n)
}
