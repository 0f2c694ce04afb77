package enforce

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wardline/wardline/detect"
)

// ActionInspect sends the target's traffic to NFQUEUE inspection (no
// backend element: Config.Inspect steers it).
const ActionInspect Action = "inspect"

// Config configures the Manager.
type Config struct {
	HomeNets   []netip.Prefix
	Groups     map[string][]netip.Prefix // asset groups by name
	Guardrails Guardrails
	Thresholds Thresholds
	// Static is the operator's permanent blocklist (no expiry), enforced
	// by the XDP backend next to the decisions.
	Static []Element
	// Allow: prefixes the backends never drop besides the never-block
	// guardrail (the operator's allowlist).
	Allow    []netip.Prefix
	Policies []Policy // the configured policies (their stage persists in StatePath)
	// StatePath keeps decisions and rollout state across restarts ("":
	// memory only). AuditPath is the append-only audit log.
	StatePath, AuditPath string
	// BaselineWindow: the span before a rollout that its baseline covers
	// (default 5m). Interval: the reconcile and health tick (default 1s).
	BaselineWindow, Interval time.Duration
	// Inspect steers (on) or stops steering (off) a target's traffic to
	// NFQUEUE inspection; nil: inspect decisions are refused.
	Inspect func(target netip.Prefix, expires time.Time, on bool) error
	Logf    func(format string, args ...any)
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Manager turns alerts into decisions through the policies and their
// rollout stages, keeps the backends reconciled, watches the health
// signals and rolls policies back when they hurt.
type Manager struct {
	cfg   Config
	rec   *Reconciler
	mon   *Monitor
	audit *Audit

	mu         sync.Mutex
	guard      guard
	decisions  map[string]*Decision
	byTarget   map[netip.Prefix][]*Decision // the same decisions by target (renewals, element expiries)
	policies   map[string]*policyState
	would      []WouldBlock // recent would-block records
	nextID     uint64
	dirty      bool // state to persist
	counters   map[string]map[Key]Counters
	keyOwner   map[string]map[Key]string // backend → dst-side key → policy
	refused    map[string]uint64         // guardrail refusals by rule
	inspecting map[netip.Prefix]bool
	suspects   map[netip.Addr]time.Time // attackers of recent alerts, for the health signals

	alerts      chan *detect.Alert
	alertsIn    atomic.Uint64
	alertsLost  atomic.Uint64 // queue full: the reader never waits for us
	kick        chan struct{}
	applyErrors atomic.Uint64
}

type policyState struct {
	P            Policy        `json:"policy"`
	Stage        Stage         `json:"stage"`
	Since        time.Time     `json:"since"`
	EnforcedAt   time.Time     `json:"enforced_at,omitzero"`
	Baseline     *Sample       `json:"baseline,omitempty"`
	Transitions  []Transition  `json:"transitions,omitempty"`
	LastRollback *RollbackInfo `json:"last_rollback,omitempty"`
	Matches      uint64        `json:"matches"`
	WouldBlock   uint64        `json:"would_block"`
	Enforced     uint64        `json:"decisions"`
}

// Transition is one stage change.
type Transition struct {
	Time time.Time `json:"time"`
	From Stage     `json:"from"`
	To   Stage     `json:"to"`
	Who  string    `json:"who"`
	Why  string    `json:"why"`
}

// RollbackInfo says why a policy was rolled back.
type RollbackInfo struct {
	Time     time.Time `json:"time"`
	From     Stage     `json:"from"`
	Who      string    `json:"who"`
	Why      string    `json:"why"`
	Breaches []Breach  `json:"breaches,omitempty"`
	Removed  int       `json:"decisions_removed"`
}

// WouldBlock is a decision a policy computed but did not enforce (audit
// stage, or outside the canary subset).
type WouldBlock struct {
	Time   time.Time    `json:"time"`
	Policy string       `json:"policy"`
	Stage  Stage        `json:"stage"`
	Action Action       `json:"action"`
	Target netip.Prefix `json:"target"`
	Alert  string       `json:"alert"`
	Why    string       `json:"why"`
}

// New builds a Manager over the backends; it loads the saved state and the
// audit log. Run drives it.
func New(cfg Config, backends ...Backend) (*Manager, error) {
	cfg.Guardrails.defaults()
	cfg.Thresholds.defaults()
	if cfg.BaselineWindow == 0 {
		cfg.BaselineWindow = 5 * time.Minute
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	for i := range cfg.Static {
		if cfg.Static[i].Expires != (time.Time{}) {
			return nil, fmt.Errorf("enforce: static element %s has an expiry", cfg.Static[i].Prefix)
		}
	}
	audit, err := OpenAudit(cfg.AuditPath)
	if err != nil {
		return nil, err
	}
	m := &Manager{cfg: cfg, rec: NewReconciler(backends...), mon: NewMonitor(cfg.BaselineWindow + 2*cfg.Thresholds.Window),
		audit: audit, guard: guard{g: cfg.Guardrails}, decisions: map[string]*Decision{}, byTarget: map[netip.Prefix][]*Decision{},
		policies: map[string]*policyState{},
		refused:  map[string]uint64{}, inspecting: map[netip.Prefix]bool{}, counters: map[string]map[Key]Counters{}, suspects: map[netip.Addr]time.Time{},
		alerts: make(chan *detect.Alert, 4096), kick: make(chan struct{}, 1)}
	var nb []netip.Prefix
	for _, n := range cfg.Guardrails.NeverBlock {
		nb = append(nb, n.Prefix)
	}
	m.mon.setNeverBlock(nb)
	m.rec.SetAllow(append(slices.Clone(nb), cfg.Allow...))
	now := cfg.Now()
	for _, p := range cfg.Policies {
		if err := p.Validate(cfg.Guardrails, cfg.Groups); err != nil {
			audit.Close()
			return nil, fmt.Errorf("enforce config: %w", err)
		}
		m.policies[p.ID] = newPolicyState(p, now)
	}
	if err := m.load(now); err != nil {
		audit.Close()
		return nil, err
	}
	return m, nil
}

func newPolicyState(p Policy, now time.Time) *policyState {
	st := p.Stage
	if st == "" {
		st = StageAudit
	}
	ps := &policyState{P: p, Stage: st, Since: now}
	if st == StageEnforce {
		ps.EnforcedAt = now
	}
	return ps
}

// Monitor returns the health monitor: subscribe it to the dataplane.
func (m *Manager) Monitor() *Monitor { return m.mon }

// Reconciler returns the reconciler (stats for metrics).
func (m *Manager) Reconciler() *Reconciler { return m.rec }

// Audit returns the audit log.
func (m *Manager) Audit() *Audit { return m.audit }

// HandleAlert queues an alert for the policies; it never blocks (the
// fast path's reader calls it): a full queue drops and counts.
func (m *Manager) HandleAlert(a *detect.Alert) {
	m.alertsIn.Add(1)
	select {
	case m.alerts <- a:
	default:
		m.alertsLost.Add(1)
	}
}

// Run processes alerts and ticks until ctx ends. It reconciles once first.
func (m *Manager) Run(ctx context.Context) error {
	m.tick(m.cfg.Now())
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			m.mu.Lock()
			m.persistLocked()
			m.mu.Unlock()
			return nil
		case a := <-m.alerts:
			m.onAlert(a)
		case <-m.kick:
			m.mu.Lock()
			m.reconcileLocked(m.cfg.Now())
			m.mu.Unlock()
		case <-t.C:
			m.tick(m.cfg.Now())
		}
	}
}

// Close closes the audit log.
func (m *Manager) Close() error { return m.audit.Close() }

// onAlert runs the policies on one alert (and on any queued behind it),
// then enforces what they decided at once.
func (m *Manager) onAlert(a *detect.Alert) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.cfg.Now()
	var fresh []*Decision
	nSus := len(m.suspects)
	for {
		fresh = append(fresh, m.evaluateLocked(a, now)...)
		select {
		case a = <-m.alerts:
			continue
		default:
		}
		break
	}
	if len(m.suspects) != nSus {
		m.publishSuspectsLocked()
	}
	if len(fresh) > 0 {
		m.applyNowLocked(fresh, now)
	}
	m.persistLocked()
}

// suspectTTL: how long an alert's attacker stays out of the health
// signals (its failures are the attack, not damage).
const suspectTTL = 10 * time.Minute

// evaluateLocked runs every policy on a.
func (m *Manager) evaluateLocked(a *detect.Alert, now time.Time) []*Decision {
	if a.Attacker.IsValid() {
		if _, ok := m.suspects[a.Attacker.Unmap()]; ok || len(m.suspects) < 100000 {
			m.suspects[a.Attacker.Unmap()] = now // published by onAlert, once per batch
		}
	}
	var out []*Decision
	ids := make([]string, 0, len(m.policies))
	for id := range m.policies {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		ps := m.policies[id]
		p := &ps.P
		target, ok := p.matches(a, m.cfg.HomeNets, m.cfg.Groups)
		if !ok {
			continue
		}
		ps.Matches++
		m.dirty = true
		if p.Action == PolicyAlert {
			continue
		}
		action, dir := ActionBlock, Src
		switch {
		case p.Action == PolicyQuarantine:
			action = ActionQuarantine
		case p.Action == PolicyInspect:
			action = ActionInspect
		case p.Target == "victim":
			dir = Dst
		}
		pfx := netip.PrefixFrom(target, target.BitLen())
		enforce := ps.Stage == StageEnforce || (ps.Stage == StageCanary && p.inCanary(target, m.cfg.Groups))
		if !enforce {
			why := "audit stage"
			if ps.Stage == StageCanary {
				why = "outside the canary subset"
			}
			ps.WouldBlock++
			wb := WouldBlock{Time: now, Policy: id, Stage: ps.Stage, Action: action, Target: pfx, Alert: a.Fingerprint, Why: why}
			m.would = append(m.would, wb)
			if len(m.would) > 2000 {
				m.would = append(m.would[:0:0], m.would[len(m.would)-1000:]...)
			}
			m.audit.Log(AuditRecord{Time: now, Who: "policy:" + id, What: "would_block", Policy: id, Target: pfx.String(),
				Why: fmt.Sprintf("%s: %s by %s (risk %.0f): %s", why, a.Type, a.Attacker, a.Risk, a.Signature), Detail: wb})
			continue
		}
		d, created, err := m.decideLocked(DecisionRequest{Action: action, Target: pfx, Dir: dir, Scope: p.Scope,
			TTL: time.Duration(p.TTL), Reason: fmt.Sprintf("%s: %s", a.Type, a.Signature), Alert: a.Fingerprint}, id, "policy:"+id, now)
		if err != nil {
			m.cfg.Logf("policy %s: %s %s: %v", id, action, pfx, err)
			continue
		}
		if created {
			ps.Enforced++
		}
		out = append(out, d)
	}
	return out
}

// DecisionRequest asks for a decision.
type DecisionRequest struct {
	Action Action        `json:"action"`
	Target netip.Prefix  `json:"target"`
	Dir    Dir           `json:"dir"`
	Scope  Scope         `json:"scope,omitempty"`
	TTL    time.Duration `json:"ttl"`
	Reason string        `json:"reason"`
	Alert  string        `json:"alert,omitempty"`
}

// decideLocked creates a decision, or renews the same one (same policy,
// action, target and direction) with a later expiry.
func (m *Manager) decideLocked(r DecisionRequest, policy, who string, now time.Time) (*Decision, bool, error) {
	refuse := func(err error) (*Decision, bool, error) {
		var ge *GuardError
		if errors.As(err, &ge) {
			m.refused[ge.Rule]++
		}
		m.audit.Log(AuditRecord{Time: now, Who: who, What: "guardrail_refused", Policy: policy, Target: r.Target.String(), Why: err.Error()})
		return nil, false, err
	}
	target, err := NormalizePrefix(r.Target)
	if err != nil {
		return nil, false, fmt.Errorf("decision target: %w", err)
	}
	switch r.Action {
	case ActionBlock, ActionQuarantine:
	case ActionInspect:
		if m.cfg.Inspect == nil {
			return nil, false, errors.New("decision: inspection is not configured (no NFQUEUE)")
		}
	default:
		return nil, false, fmt.Errorf("decision action %q: must be block, quarantine or inspect", r.Action)
	}
	if r.Action != ActionBlock {
		r.Dir = Src
	}
	scope, err := ParseScope(string(r.Scope))
	if err != nil {
		return nil, false, fmt.Errorf("decision: %w", err)
	}
	if err := m.guard.checkStatic(target, r.TTL); err != nil {
		return refuse(err)
	}
	expires := now.Add(r.TTL)
	for _, d := range m.byTarget[target] {
		if d.Policy == policy && d.Action == r.Action && d.Dir == r.Dir && d.Active(now) {
			if expires.After(d.Expires) {
				d.Expires = expires
				m.dirty = true
				m.audit.Log(AuditRecord{Time: now, Who: who, What: "decision_renew", Policy: policy, Target: target.String(),
					Why: r.Reason, Detail: d})
			}
			return d, false, nil
		}
	}
	// Expired decisions leave at the next tick: at most a second's worth
	// counts here beyond the active ones.
	if err := m.guard.admit(now, len(m.decisions)); err != nil {
		return refuse(err)
	}
	m.nextID++
	d := &Decision{ID: "d" + strconv.FormatUint(m.nextID, 10), Action: r.Action, Target: target, Dir: r.Dir, Scope: scope,
		Reason: r.Reason, Alert: r.Alert, Policy: policy, By: who, Created: now, Expires: expires}
	m.addLocked(d)
	m.dirty = true
	m.audit.Log(AuditRecord{Time: now, Who: who, What: "decision_add", Policy: policy, Target: target.String(), Why: r.Reason, Detail: d})
	return d, true, nil
}

// kernelGrace: backends hold an element this much past its decision's
// expiry, so the kernel never drops it before the Manager lifts it (the
// Manager removes it explicitly at expiry; without the daemon, the kernel
// lets it go a second later).
const kernelGrace = time.Second

// addLocked and dropLocked keep the decisions and their index.
func (m *Manager) addLocked(d *Decision) {
	m.decisions[d.ID] = d
	m.byTarget[d.Target] = append(m.byTarget[d.Target], d)
}

func (m *Manager) dropLocked(id string) {
	d, ok := m.decisions[id]
	if !ok {
		return
	}
	delete(m.decisions, id)
	l := slices.DeleteFunc(m.byTarget[d.Target], func(x *Decision) bool { return x.ID == id })
	if len(l) == 0 {
		delete(m.byTarget, d.Target)
	} else {
		m.byTarget[d.Target] = l
	}
}

// applyNowLocked writes fresh (or renewed) decisions into the kernel at
// once: only their elements, each with the latest expiry of the decisions
// sharing it, without reading the kernel back (the periodic pass
// verifies, repairs and updates the health monitor's view).
func (m *Manager) applyNowLocked(ds []*Decision, now time.Time) {
	add := map[string][]Element{}
	seen := map[string]map[Key]bool{}
	for _, d := range ds {
		if d.Action == ActionInspect {
			m.steerLocked(d, true)
			continue
		}
		for _, name := range d.Scope.Backends() {
			if seen[name] == nil {
				seen[name] = map[Key]bool{}
			}
			for _, e := range d.Elements() {
				if seen[name][e.Key()] {
					continue
				}
				seen[name][e.Key()] = true
				e.Expires = m.elementExpiryLocked(name, e.Key(), now)
				add[name] = append(add[name], e)
			}
		}
	}
	if err := m.rec.Add(add, now); err != nil {
		m.applyErrors.Add(1)
		m.cfg.Logf("%v", err)
	}
}

// elementExpiryLocked is the kernel expiry of an element: the latest of
// the active decisions holding it, plus the grace.
func (m *Manager) elementExpiryLocked(backend string, k Key, now time.Time) time.Time {
	var exp time.Time
	for _, d := range m.byTarget[k.Prefix] {
		if !d.Active(now) || d.Action == ActionInspect || !slices.Contains(d.Scope.Backends(), backend) {
			continue
		}
		if d.Action == ActionBlock && d.Dir != k.Dir {
			continue
		}
		if d.Expires.After(exp) {
			exp = d.Expires
		}
	}
	return exp.Add(kernelGrace)
}

func (m *Manager) steerLocked(d *Decision, on bool) {
	if m.cfg.Inspect == nil || m.inspecting[d.Target] == on {
		return
	}
	if err := m.cfg.Inspect(d.Target, d.Expires, on); err != nil {
		m.applyErrors.Add(1)
		m.cfg.Logf("inspection of %s: %v", d.Target, err)
		return
	}
	m.inspecting[d.Target] = on
}

// desiredLocked computes the backends' desired state from the decisions
// in force and the static list, and who owns the destination-side keys.
func (m *Manager) desiredLocked(now time.Time) (Desired, []netip.Prefix) {
	want := Desired{}
	owner := map[string]map[Key]string{}
	for _, name := range m.rec.Backends() {
		want[name] = map[Key]time.Time{}
		owner[name] = map[Key]string{}
	}
	if _, ok := want["xdp"]; ok {
		for _, e := range m.cfg.Static {
			want["xdp"][e.Key()] = time.Time{}
		}
	}
	var blocked []netip.Prefix
	for _, d := range m.decisions {
		if !d.Active(now) || d.Action == ActionInspect {
			continue
		}
		blocked = append(blocked, d.Target)
		for _, name := range d.Scope.Backends() {
			w, ok := want[name]
			if !ok {
				continue
			}
			for _, e := range d.Elements() {
				k := e.Key()
				exp := e.Expires.Add(kernelGrace)
				if cur, ok := w[k]; !ok || (!cur.IsZero() && exp.After(cur)) {
					w[k] = exp
				}
				if k.Dir == Dst && d.Policy != "" {
					owner[name][k] = d.Policy
				}
			}
		}
	}
	m.keyOwner = owner
	return want, blocked
}

// reconcileLocked runs one reconcile pass.
func (m *Manager) reconcileLocked(now time.Time) {
	want, blocked := m.desiredLocked(now)
	m.mon.setBlocked(blocked)
	if err := m.rec.Pass(want, now); err != nil {
		m.applyErrors.Add(1)
		m.cfg.Logf("%v", err)
	}
}

func (m *Manager) suspectSetLocked() map[netip.Addr]struct{} {
	sus := make(map[netip.Addr]struct{}, len(m.suspects))
	for a := range m.suspects {
		sus[a] = struct{}{}
	}
	return sus
}

func (m *Manager) publishSuspectsLocked() { m.mon.setSuspects(m.suspectSetLocked()) }

// tick expires decisions, reconciles, closes a health second and judges
// the rollouts.
func (m *Manager) tick(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	pruned := false
	for a, t := range m.suspects {
		if now.Sub(t) > suspectTTL {
			delete(m.suspects, a)
			pruned = true
		}
	}
	if pruned {
		m.publishSuspectsLocked()
	}
	for id, d := range m.decisions {
		if d.Active(now) {
			continue
		}
		m.dropLocked(id)
		m.dirty = true
		if d.Action == ActionInspect {
			m.steerLocked(d, false)
		}
		m.audit.Log(AuditRecord{Time: now, Who: "reconciler", What: "decision_expire", Policy: d.Policy, Target: d.Target.String(),
			Why: "TTL ended", Detail: d})
	}
	m.reconcileLocked(now)
	drops, collateral := m.dropDeltasLocked()
	m.mon.tick(now, drops, collateral)
	m.judgeLocked(now)
	m.persistLocked()
}

// dropDeltasLocked reads the backends' per-element counters and returns
// the packets dropped since the last call, and the collateral ones per
// policy.
func (m *Manager) dropDeltasLocked() (uint64, map[string]uint64) {
	var total uint64
	coll := map[string]uint64{}
	cur := m.rec.Counters()
	for name, cs := range cur {
		last := m.counters[name]
		for k, c := range cs {
			d := c.Packets
			if l, ok := last[k]; ok && l.Packets <= c.Packets {
				d = c.Packets - l.Packets
			}
			total += d
			if p, ok := m.keyOwner[name][k]; ok && d > 0 {
				coll[p] += d
			}
		}
	}
	m.counters = cur
	return total, coll
}

// judgeLocked rolls back policies whose rollout hurts and promotes those
// whose canary dwelt healthy.
func (m *Manager) judgeLocked(now time.Time) {
	th := &m.cfg.Thresholds
	cur, coll := m.mon.span(now.Add(-th.Window), now)
	cur = cur.excluding(m.suspectSetLocked())
	for _, id := range m.policyIDsLocked() {
		ps := m.policies[id]
		watching := ps.Stage == StageCanary || (ps.Stage == StageEnforce && now.Sub(ps.EnforcedAt) < time.Duration(ps.P.Watch))
		if !watching || ps.P.Action == PolicyAlert {
			continue
		}
		var base Sample
		if ps.Baseline != nil {
			base = *ps.Baseline
		}
		br := th.breaches(cur, base)
		if n := coll[id]; n > 0 {
			rate := float64(n) / th.Window.Seconds()
			if rate > th.CollateralPPS {
				br = append(br, Breach{"collateral_drops", rate, 0, th.CollateralPPS,
					fmt.Sprintf("this policy's blocks dropped %.0f packets/s of other hosts' traffic to blocked destinations (limit %.0f/s)", rate, th.CollateralPPS)})
			}
		}
		if len(br) > 0 {
			m.rollbackLocked(ps, "rollout", "health signals breached: "+br[0].Detail, br, now)
			continue
		}
		if ps.Stage == StageCanary && ps.P.AutoPromote && now.Sub(ps.Since) >= time.Duration(ps.P.Dwell) {
			m.transitionLocked(ps, StageEnforce, "rollout", fmt.Sprintf("canary healthy for %s", now.Sub(ps.Since).Round(time.Second)), now)
		}
	}
}

func (m *Manager) policyIDsLocked() []string {
	ids := make([]string, 0, len(m.policies))
	for id := range m.policies {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// transitionLocked changes a policy's stage; leaving audit takes the
// health baseline.
func (m *Manager) transitionLocked(ps *policyState, to Stage, who, why string, now time.Time) {
	from := ps.Stage
	if from == StageAudit && to != StageAudit {
		b, _ := m.mon.span(now.Add(-m.cfg.BaselineWindow), now)
		b = b.excluding(m.suspectSetLocked())
		ps.Baseline = &b
	}
	ps.Stage, ps.Since = to, now
	if to == StageEnforce {
		ps.EnforcedAt = now
	}
	tr := Transition{Time: now, From: from, To: to, Who: who, Why: why}
	ps.Transitions = append(ps.Transitions, tr)
	if len(ps.Transitions) > 50 {
		ps.Transitions = ps.Transitions[len(ps.Transitions)-50:]
	}
	m.dirty = true
	m.audit.Log(AuditRecord{Time: now, Who: who, What: "stage", Policy: ps.P.ID, Why: why, Detail: tr})
	m.cfg.Logf("policy %s: %s -> %s (%s: %s)", ps.P.ID, from, to, who, why)
}

// rollbackLocked returns a policy to audit and removes its decisions.
func (m *Manager) rollbackLocked(ps *policyState, who, why string, br []Breach, now time.Time) {
	from := ps.Stage
	removed := 0
	for id, d := range m.decisions {
		if d.Policy != ps.P.ID {
			continue
		}
		m.dropLocked(id)
		removed++
		if d.Action == ActionInspect {
			m.steerLocked(d, false)
		}
		m.audit.Log(AuditRecord{Time: now, Who: who, What: "decision_remove", Policy: d.Policy, Target: d.Target.String(),
			Why: "rollback: " + why, Detail: d})
	}
	ps.LastRollback = &RollbackInfo{Time: now, From: from, Who: who, Why: why, Breaches: br, Removed: removed}
	m.audit.Log(AuditRecord{Time: now, Who: who, What: "rollback", Policy: ps.P.ID, Why: why, Detail: ps.LastRollback})
	m.transitionLocked(ps, StageAudit, who, "rollback: "+why, now)
	m.reconcileLocked(now)
}

// ---- operator API -------------------------------------------------------

// ErrNotFound: no such policy or decision.
var ErrNotFound = errors.New("not found")

// AddDecision makes a decision by hand.
func (m *Manager) AddDecision(r DecisionRequest, who string) (*Decision, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.cfg.Now()
	if r.Reason == "" {
		return nil, errors.New("decision: a reason is required")
	}
	d, _, err := m.decideLocked(r, "", who, now)
	if err != nil {
		return nil, err
	}
	m.applyNowLocked([]*Decision{d}, now)
	m.persistLocked()
	c := *d
	return &c, nil
}

// RemoveDecision lifts a decision.
func (m *Manager) RemoveDecision(id, who, why string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.decisions[id]
	if !ok {
		return fmt.Errorf("decision %s: %w", id, ErrNotFound)
	}
	now := m.cfg.Now()
	m.dropLocked(id)
	if d.Action == ActionInspect {
		m.steerLocked(d, false)
	}
	m.dirty = true
	m.audit.Log(AuditRecord{Time: now, Who: who, What: "decision_remove", Policy: d.Policy, Target: d.Target.String(), Why: why, Detail: d})
	m.reconcileLocked(now)
	m.persistLocked()
	return nil
}

// Decisions lists the decisions in force, oldest first.
func (m *Manager) Decisions() []Decision {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.cfg.Now()
	var out []Decision
	for _, d := range m.decisions {
		if d.Active(now) {
			out = append(out, *d)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Created.Before(out[j].Created) || (out[i].Created.Equal(out[j].Created) && out[i].ID < out[j].ID)
	})
	return out
}

// WouldBlocks returns up to n recent would-block records.
func (m *Manager) WouldBlocks(n int) []WouldBlock {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n <= 0 || n > len(m.would) {
		n = len(m.would)
	}
	return slices.Clone(m.would[len(m.would)-n:])
}

// CreatePolicy adds a policy (it starts in its Stage, audit by default).
func (m *Manager) CreatePolicy(p Policy, who string) error {
	if err := p.Validate(m.cfg.Guardrails, m.cfg.Groups); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.policies[p.ID]; ok {
		return fmt.Errorf("policy %q: already exists", p.ID)
	}
	now := m.cfg.Now()
	ps := newPolicyState(p, now)
	if ps.Stage != StageAudit {
		b, _ := m.mon.span(now.Add(-m.cfg.BaselineWindow), now)
		b = b.excluding(m.suspectSetLocked())
		ps.Baseline = &b
	}
	m.policies[p.ID] = ps
	m.dirty = true
	m.audit.Log(AuditRecord{Time: now, Who: who, What: "policy_create", Policy: p.ID, Why: "created in stage " + string(ps.Stage), Detail: p})
	m.persistLocked()
	return nil
}

// DeletePolicy removes a policy and its decisions.
func (m *Manager) DeletePolicy(id, who string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ps, ok := m.policies[id]
	if !ok {
		return fmt.Errorf("policy %q: %w", id, ErrNotFound)
	}
	now := m.cfg.Now()
	if ps.Stage != StageAudit {
		m.rollbackLocked(ps, who, "policy deleted", nil, now)
	}
	delete(m.policies, id)
	m.dirty = true
	m.audit.Log(AuditRecord{Time: now, Who: who, What: "policy_delete", Policy: id, Why: "deleted"})
	m.persistLocked()
	return nil
}

// Promote moves a policy to stage to (audit → canary → enforce, or
// straight to enforce).
func (m *Manager) Promote(id string, to Stage, who, why string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ps, ok := m.policies[id]
	if !ok {
		return fmt.Errorf("policy %q: %w", id, ErrNotFound)
	}
	switch {
	case to == StageAudit:
		return fmt.Errorf("policy %q: promote to audit: use rollback", id)
	case to == ps.Stage:
		return fmt.Errorf("policy %q: already in stage %s", id, to)
	case ps.Stage == StageEnforce:
		return fmt.Errorf("policy %q: in stage enforce: nothing to promote to", id)
	case to == StageCanary && ps.P.Canary.Group == "" && len(ps.P.Canary.Subnets) == 0 && ps.P.Canary.Percent == 0:
		return fmt.Errorf("policy %q: canary: the policy has no canary subset (group, subnets or percent)", id)
	}
	if why == "" {
		why = "promoted by hand"
	}
	now := m.cfg.Now()
	m.transitionLocked(ps, to, who, why, now)
	m.persistLocked()
	return nil
}

// Rollback returns a policy to audit and lifts its decisions.
func (m *Manager) Rollback(id, who, why string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ps, ok := m.policies[id]
	if !ok {
		return fmt.Errorf("policy %q: %w", id, ErrNotFound)
	}
	if ps.Stage == StageAudit {
		return fmt.Errorf("policy %q: already in stage audit", id)
	}
	if why == "" {
		why = "rolled back by hand"
	}
	m.rollbackLocked(ps, who, why, nil, m.cfg.Now())
	m.persistLocked()
	return nil
}

// PolicyStatus is a policy with its rollout state.
type PolicyStatus struct {
	Policy       Policy        `json:"policy"`
	Stage        Stage         `json:"stage"`
	Since        time.Time     `json:"since"`
	Baseline     *Sample       `json:"baseline,omitempty"`
	Matches      uint64        `json:"matches"`
	WouldBlock   uint64        `json:"would_block"`
	Decisions    uint64        `json:"decisions_made"`
	Active       int           `json:"decisions_active"`
	Transitions  []Transition  `json:"transitions,omitempty"`
	LastRollback *RollbackInfo `json:"last_rollback,omitempty"`
	// PromoteIn: time left until an automatic promotion (canary with
	// auto_promote); WatchLeft: automatic rollback stays armed this long.
	PromoteIn time.Duration `json:"promote_in_ns,omitempty"`
	WatchLeft time.Duration `json:"watch_left_ns,omitempty"`
}

// Policies lists the policies with their rollout state.
func (m *Manager) Policies() []PolicyStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.cfg.Now()
	var out []PolicyStatus
	for _, id := range m.policyIDsLocked() {
		ps := m.policies[id]
		s := PolicyStatus{Policy: ps.P, Stage: ps.Stage, Since: ps.Since, Baseline: ps.Baseline, Matches: ps.Matches,
			WouldBlock: ps.WouldBlock, Decisions: ps.Enforced, Transitions: slices.Clone(ps.Transitions), LastRollback: ps.LastRollback}
		for _, d := range m.decisions {
			if d.Policy == id && d.Active(now) {
				s.Active++
			}
		}
		if ps.Stage == StageCanary && ps.P.AutoPromote {
			s.PromoteIn = max(0, time.Duration(ps.P.Dwell)-now.Sub(ps.Since))
		}
		if ps.Stage == StageEnforce {
			s.WatchLeft = max(0, time.Duration(ps.P.Watch)-now.Sub(ps.EnforcedAt))
		}
		out = append(out, s)
	}
	return out
}

// Status is the enforcement layer's state for the API and metrics.
type Status struct {
	Backends     []BackendStats    `json:"backends"`
	Ratio        float64           `json:"enforced_ratio"` // the lowest backend ratio
	Decisions    int               `json:"decisions_active"`
	Static       int               `json:"static_elements"`
	Policies     []PolicyStatus    `json:"policies"`
	Refused      map[string]uint64 `json:"guardrail_refused"`
	AlertsIn     uint64            `json:"alerts_in"`
	AlertsLost   uint64            `json:"alerts_lost"`
	ApplyErrors  uint64            `json:"apply_errors"`
	AuditErrors  uint64            `json:"audit_errors"`
	Health       Sample            `json:"health_recent"` // the judged window
	Guardrails   Guardrails        `json:"guardrails"`
	Thresholds   Thresholds        `json:"thresholds"`
	NeverBlock   []NamedPrefix     `json:"never_block"`
	Inspecting   int               `json:"inspecting"`
	WouldBlocked int               `json:"would_block_recent"`
}

// Status returns the current status.
func (m *Manager) Status() Status {
	pol := m.Policies()
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.cfg.Now()
	s := Status{Backends: m.rec.Stats(), Ratio: 1, Static: len(m.cfg.Static), Policies: pol, Refused: map[string]uint64{},
		AlertsIn: m.alertsIn.Load(), AlertsLost: m.alertsLost.Load(), ApplyErrors: m.applyErrors.Load(), AuditErrors: m.audit.Errors(),
		Health: m.mon.Recent(now, m.cfg.Thresholds.Window), Guardrails: m.cfg.Guardrails, Thresholds: m.cfg.Thresholds,
		NeverBlock: m.cfg.Guardrails.NeverBlock, WouldBlocked: len(m.would)}
	for _, b := range s.Backends {
		s.Ratio = min(s.Ratio, b.Ratio)
	}
	for _, d := range m.decisions {
		if d.Active(now) {
			s.Decisions++
		}
	}
	for k, v := range m.refused {
		s.Refused[k] = v
	}
	for _, on := range m.inspecting {
		if on {
			s.Inspecting++
		}
	}
	return s
}

// ---- persistence ----------------------------------------------------------

type savedState struct {
	Version   int                     `json:"version"`
	NextID    uint64                  `json:"next_id"`
	Decisions []*Decision             `json:"decisions"`
	Policies  map[string]*policyState `json:"policies"`
}

// load restores decisions and rollout state; configured policies keep
// their saved stage, policies created through the API come back whole.
func (m *Manager) load(now time.Time) error {
	if m.cfg.StatePath == "" {
		return nil
	}
	b, err := os.ReadFile(m.cfg.StatePath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read enforcement state: %w", err)
	}
	var s savedState
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("enforcement state %s: %v (move it away to start afresh; the audit log keeps the history)", m.cfg.StatePath, err)
	}
	m.nextID = s.NextID
	for _, d := range s.Decisions {
		if d.Active(now) {
			m.addLocked(d)
		}
	}
	for id, ps := range s.Policies {
		if cur, ok := m.policies[id]; ok {
			// The configuration's definition wins; the rollout state stays.
			ps.P = cur.P
		} else if err := ps.P.Validate(m.cfg.Guardrails, m.cfg.Groups); err != nil {
			m.cfg.Logf("enforcement state: dropping policy %s: %v", id, err)
			continue
		}
		m.policies[id] = ps
	}
	m.cfg.Logf("enforcement state: %d decisions in force, %d policies restored from %s", len(m.decisions), len(s.Policies), m.cfg.StatePath)
	return nil
}

// persistLocked writes the state atomically when it changed.
func (m *Manager) persistLocked() {
	if !m.dirty || m.cfg.StatePath == "" {
		return
	}
	s := savedState{Version: 1, NextID: m.nextID, Policies: m.policies}
	for _, d := range m.decisions {
		s.Decisions = append(s.Decisions, d)
	}
	sort.Slice(s.Decisions, func(i, j int) bool { return s.Decisions[i].ID < s.Decisions[j].ID })
	b, err := json.MarshalIndent(s, "", " ")
	if err == nil {
		tmp := m.cfg.StatePath + ".tmp"
		if err = os.MkdirAll(filepath.Dir(tmp), 0o750); err == nil {
			if err = os.WriteFile(tmp, b, 0o640); err == nil {
				err = os.Rename(tmp, m.cfg.StatePath)
			}
		}
	}
	if err != nil {
		m.applyErrors.Add(1)
		m.cfg.Logf("save enforcement state: %v", err)
		return
	}
	m.dirty = false
}
