package enforce

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardline/wardline/dataplane/event"
	"github.com/wardline/wardline/detect"
)

// memBackend is an in-memory backend for the pure-Go tier: it holds
// elements as a kernel would (expired ones vanish) and counts what the
// test says was dropped. The kernel backends have their own root tests
// (enforce/xdpset, enforce/nftset) and the lab test drives all of it.
type memBackend struct {
	mu      sync.Mutex
	name    string
	els     map[Key]time.Time
	allow   []netip.Prefix
	counts  map[Key]Counters
	applies int
	now     func() time.Time
	fail    error
}

func newMem(name string, now func() time.Time) *memBackend {
	return &memBackend{name: name, els: map[Key]time.Time{}, counts: map[Key]Counters{}, now: now}
}

func (b *memBackend) Name() string { return b.name }
func (b *memBackend) Elements() ([]Element, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return nil, b.fail
	}
	var out []Element
	for k, exp := range b.els {
		if !exp.IsZero() && !exp.After(b.now()) {
			continue
		}
		out = append(out, Element{k.Prefix, k.Dir, exp})
	}
	return out, nil
}
func (b *memBackend) Apply(add, del []Element) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return b.fail
	}
	b.applies++
	for _, e := range del {
		delete(b.els, e.Key())
	}
	for _, e := range add {
		b.els[e.Key()] = e.Expires
	}
	return nil
}
func (b *memBackend) Allow(p []netip.Prefix) error { b.allow = p; return nil }
func (b *memBackend) Close() error                 { return nil }
func (b *memBackend) Counters() (map[Key]Counters, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[Key]Counters{}
	for k, c := range b.counts {
		out[k] = c
	}
	return out, nil
}
func (b *memBackend) has(p string, d Dir) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	exp, ok := b.els[Key{netip.MustParsePrefix(p), d}]
	return ok && (exp.IsZero() || exp.After(b.now()))
}
func (b *memBackend) drop(p string, d Dir, n uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := Key{netip.MustParsePrefix(p), d}
	c := b.counts[k]
	c.Packets += n
	b.counts[k] = c
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock               { return &clock{time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)} }
func scanAlert(attacker string) *detect.Alert {
	return &detect.Alert{Type: detect.TypePortScan, Detector: "scan", Attacker: netip.MustParseAddr(attacker),
		Victims: []netip.Addr{netip.MustParseAddr("203.0.113.10")}, Risk: 80, Signature: "probed 40 ports", Fingerprint: "fp-" + attacker}
}

var (
	home    = []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24")}
	groups  = map[string][]netip.Prefix{"lab-clients": {netip.MustParsePrefix("198.18.0.8/29")}}
	gateway = NamedPrefix{netip.MustParsePrefix("198.18.0.1/32"), "gateway"}
)

func newTestManager(t *testing.T, c *clock, cfg Config) (*Manager, *memBackend) {
	t.Helper()
	xdp := newMem("xdp", c.now)
	cfg.Now = c.now
	cfg.HomeNets = home
	if cfg.Groups == nil {
		cfg.Groups = groups
	}
	cfg.Guardrails.NeverBlock = append(cfg.Guardrails.NeverBlock, gateway)
	m, err := New(cfg, xdp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, xdp
}

func scanPolicy(stage Stage) Policy {
	return Policy{ID: "block-scanners", Match: Match{Types: []string{detect.TypePortScan}, MinRisk: 50},
		Action: PolicyBlock, TTL: Duration(time.Hour), Stage: stage, Canary: CanarySubset{Group: "lab-clients"}}
}

// TestStages: audit computes and logs would-blocks only; canary enforces
// only inside its subset; enforce everywhere.
func TestStages(t *testing.T) {
	c := newClock()
	m, xdp := newTestManager(t, c, Config{Policies: []Policy{scanPolicy(StageAudit)}})
	m.onAlert(scanAlert("198.18.0.9"))
	if xdp.has("198.18.0.9/32", Src) || len(m.Decisions()) != 0 {
		t.Fatal("audit stage enforced a decision")
	}
	if wb := m.WouldBlocks(0); len(wb) != 1 || wb[0].Target.String() != "198.18.0.9/32" || wb[0].Why != "audit stage" {
		t.Fatalf("would-blocks %+v", wb)
	}
	if err := m.Promote("block-scanners", StageCanary, "test", ""); err != nil {
		t.Fatal(err)
	}
	m.onAlert(scanAlert("198.18.0.9"))  // in lab-clients (198.18.0.8/29)
	m.onAlert(scanAlert("198.18.0.77")) // outside
	if !xdp.has("198.18.0.9/32", Src) || xdp.has("198.18.0.77/32", Src) {
		t.Fatalf("canary: kernel holds %v", xdp.els)
	}
	if wb := m.WouldBlocks(0); len(wb) != 2 || wb[1].Why != "outside the canary subset" {
		t.Fatalf("would-blocks %+v", wb)
	}
	if err := m.Promote("block-scanners", StageEnforce, "test", ""); err != nil {
		t.Fatal(err)
	}
	m.onAlert(scanAlert("198.18.0.77"))
	if !xdp.has("198.18.0.77/32", Src) {
		t.Fatal("enforce stage did not block")
	}
	// The same alert again renews, it does not duplicate.
	c.add(10 * time.Minute)
	m.onAlert(scanAlert("198.18.0.77"))
	ds := m.Decisions()
	if len(ds) != 2 || !ds[1].Expires.Equal(c.t.Add(time.Hour)) {
		t.Fatalf("decisions %+v", ds)
	}
	st := m.Policies()[0]
	if st.Matches != 5 || st.WouldBlock != 2 || st.Decisions != 2 || st.Active != 2 || len(st.Transitions) != 2 {
		t.Errorf("policy status %+v", st)
	}
}

// TestCanaryPercent: the percentage subset is stable and about the size
// asked for.
func TestCanaryPercent(t *testing.T) {
	p := Policy{ID: "p", Canary: CanarySubset{Percent: 25}}
	in := 0
	for i := 0; i < 4000; i++ {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		if p.inCanary(a, nil) != p.inCanary(a, nil) {
			t.Fatal("not deterministic")
		}
		if p.inCanary(a, nil) {
			in++
		}
	}
	if in < 900 || in > 1100 {
		t.Errorf("%d of 4000 in a 25%% canary", in)
	}
}

func TestGuardrails(t *testing.T) {
	c := newClock()
	m, xdp := newTestManager(t, c, Config{Guardrails: Guardrails{MaxNewPerMinute: 3, MaxTTL: 2 * time.Hour}})
	req := func(target string, ttl time.Duration) DecisionRequest {
		return DecisionRequest{Action: ActionBlock, Target: netip.MustParsePrefix(target), TTL: ttl, Reason: "test"}
	}
	for _, tc := range []struct {
		r    DecisionRequest
		rule string
	}{
		{req("198.18.0.0/24", time.Hour), "never_block"}, // contains the gateway
		{req("198.18.0.1/32", time.Hour), "never_block"},
		{req("198.18.0.7/32", 0), "ttl"},
		{req("198.18.0.7/32", 3*time.Hour), "ttl"},
		{req("10.0.0.0/8", time.Hour), "prefix_length"},
	} {
		_, err := m.AddDecision(tc.r, "test")
		var ge *GuardError
		if !errors.As(err, &ge) || ge.Rule != tc.rule {
			t.Errorf("%v: error %v, want guardrail %s", tc.r.Target, err, tc.rule)
		}
	}
	for i := 0; i < 3; i++ {
		if _, err := m.AddDecision(req(netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)}).String()+"/32", time.Hour), "test"); err != nil {
			t.Fatal(err)
		}
	}
	_, err := m.AddDecision(req("203.0.113.99/32", time.Hour), "test")
	var ge *GuardError
	if !errors.As(err, &ge) || ge.Rule != "rate" {
		t.Fatalf("4th block in a minute: %v", err)
	}
	c.add(61 * time.Second)
	if _, err := m.AddDecision(req("203.0.113.99/32", time.Hour), "test"); err != nil {
		t.Fatalf("after a minute: %v", err)
	}
	if len(xdp.els) != 4 || m.Status().Refused["never_block"] != 2 {
		t.Errorf("kernel %v, refused %v", xdp.els, m.Status().Refused)
	}
	if len(xdp.allow) != 1 || xdp.allow[0] != gateway.Prefix {
		t.Errorf("backend allow list %v, want the gateway", xdp.allow)
	}
}

// TestReconcileRepairs: external deletions and additions are repaired, the
// ratio shows what was lost, expiry removes decisions everywhere.
func TestReconcileRepairs(t *testing.T) {
	c := newClock()
	m, xdp := newTestManager(t, c, Config{Static: []Element{{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Dir: Dst}}})
	m.tick(c.t)
	for i := 0; i < 10; i++ {
		m.AddDecision(DecisionRequest{Action: ActionBlock, Target: netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)}), 32),
			TTL: time.Duration(i+1) * time.Minute, Reason: "test"}, "test")
	}
	if len(xdp.els) != 11 {
		t.Fatalf("kernel holds %d elements, want 11", len(xdp.els))
	}
	// Someone deletes two and adds one.
	delete(xdp.els, Key{netip.MustParsePrefix("203.0.113.1/32"), Src})
	delete(xdp.els, Key{netip.MustParsePrefix("192.0.2.0/24"), Dst})
	xdp.els[Key{netip.MustParsePrefix("198.51.100.0/24"), Src}] = time.Time{}
	m.tick(c.t)
	st := m.Status().Backends[0]
	if st.Expected != 11 || st.Enforced != 9 || st.Ratio != 9.0/11 || st.Restored != 2 || st.Foreign != 1 {
		t.Errorf("after the edit: %+v", st)
	}
	if len(xdp.els) != 11 || !xdp.has("192.0.2.0/24", Dst) || xdp.has("198.51.100.0/24", Src) {
		t.Errorf("not repaired: %v", xdp.els)
	}
	m.tick(c.t)
	if st := m.Status().Backends[0]; st.Ratio != 1 {
		t.Errorf("steady state ratio %v", st.Ratio)
	}
	// Five minutes on, the first five decisions expired, in the kernel and
	// in the manager, and the ratio stayed 1.
	c.add(5*time.Minute + time.Second)
	m.tick(c.t)
	if n := len(m.Decisions()); n != 5 {
		t.Errorf("%d decisions after 5 minutes, want 5", n)
	}
	if st := m.Status().Backends[0]; st.Ratio != 1 || st.Desired != 6 {
		t.Errorf("after expiry: %+v", st)
	}
}

// TestAutoRollbackCollateral: a policy that blocks a busy destination is
// rolled back by its collateral drops, its decisions lifted, and the
// rollback recorded with the breach.
func TestAutoRollbackCollateral(t *testing.T) {
	c := newClock()
	bad := Policy{ID: "block-victims", Match: Match{Types: []string{detect.TypePortScan}}, Action: PolicyBlock, Target: "victim",
		TTL: Duration(time.Hour), Stage: StageEnforce, Watch: Duration(10 * time.Minute)}
	m, xdp := newTestManager(t, c, Config{Policies: []Policy{bad}})
	for i := 0; i < 30; i++ { // a quiet baseline
		c.add(time.Second)
		m.tick(c.t)
	}
	m.onAlert(scanAlert("198.51.100.66"))
	if !xdp.has("203.0.113.10/32", Dst) {
		t.Fatal("victim not blocked")
	}
	var rolledAt time.Time
	for i := 0; i < 30 && rolledAt.IsZero(); i++ {
		c.add(time.Second)
		xdp.drop("203.0.113.10/32", Dst, 60) // the office keeps trying to reach it
		m.tick(c.t)
		if m.Policies()[0].Stage == StageAudit {
			rolledAt = c.t
		}
	}
	if rolledAt.IsZero() {
		t.Fatal("not rolled back")
	}
	ps := m.Policies()[0]
	if ps.LastRollback == nil || ps.LastRollback.Breaches[0].Signal != "collateral_drops" || ps.LastRollback.Removed != 1 {
		t.Fatalf("rollback %+v", ps.LastRollback)
	}
	if xdp.has("203.0.113.10/32", Dst) || len(m.Decisions()) != 0 {
		t.Error("decision not lifted")
	}
	var what []string
	for _, r := range m.Audit().Tail(0) {
		what = append(what, r.What)
	}
	if got := strings.Join(what, ","); !strings.Contains(got, "decision_add,decision_remove,rollback,stage") {
		t.Errorf("audit trail %s", got)
	}
}

// TestAutoRollbackHealth: failed handshakes of allowed traffic above the
// baseline roll a canary back; a healthy canary is promoted after its
// dwell.
func TestAutoRollbackHealth(t *testing.T) {
	c := newClock()
	p := scanPolicy(StageCanary)
	p.AutoPromote, p.Dwell = true, Duration(time.Minute)
	m, _ := newTestManager(t, c, Config{Policies: []Policy{p}})
	flow := func(state string) *event.Flow {
		f := &event.Flow{Final: true, Key: event.FlowKey{Src: netip.MustParseAddr("198.18.0.11"), Dst: netip.MustParseAddr("203.0.113.10"),
			SrcPort: 40000, DstPort: 80, Proto: event.ProtoTCP}, FirstFlags: event.TCPSyn, Packets: [2]uint64{1, 0}}
		f.TCPFlags[0] = event.TCPSyn
		if state == "ok" {
			f.Packets = [2]uint64{6, 5}
			f.TCPFlags[0] |= event.TCPAck | event.TCPPsh | event.TCPFin
			f.TCPFlags[1] = event.TCPSyn | event.TCPAck | event.TCPPsh | event.TCPFin
		}
		return f
	}
	for i := 0; i < 30; i++ {
		m.Monitor().HandleFlow(flow("ok"))
		c.add(time.Second)
		m.tick(c.t)
	}
	if m.Policies()[0].Stage != StageCanary {
		t.Fatal("healthy canary rolled back")
	}
	c.add(31 * time.Second)
	m.tick(c.t)
	if m.Policies()[0].Stage != StageEnforce {
		t.Fatalf("healthy canary not promoted after its dwell: %+v", m.Policies()[0])
	}
	// Back to canary by hand after a rollback, then break the network.
	m.Rollback(p.ID, "test", "")
	m.Promote(p.ID, StageCanary, "test", "")
	// One host failing is its own problem.
	for i := 0; i < 10; i++ {
		for j := 0; j < 5; j++ {
			m.Monitor().HandleFlow(flow("s0"))
		}
		c.add(time.Second)
		m.tick(c.t)
	}
	if ps := m.Policies()[0]; ps.Stage != StageCanary {
		t.Fatalf("one failing host rolled the canary back: %+v", ps.LastRollback)
	}
	// Nor are the attackers of alerts: their failures are the scans, also
	// those that came before the alerts did.
	for i := 0; i < 10; i++ {
		for j := 0; j < 6; j++ {
			f := flow("s0")
			f.Key.Src = netip.AddrFrom4([4]byte{198, 18, 0, byte(98 + j%2)}) // outside the canary subset
			f.Key.DstPort = uint16(2000 + 6*i + j)
			m.Monitor().HandleFlow(f)
		}
		if i == 0 {
			m.onAlert(scanAlert("198.18.0.98"))
			m.onAlert(scanAlert("198.18.0.99"))
		}
		c.add(time.Second)
		m.tick(c.t)
	}
	if ps := m.Policies()[0]; ps.Stage != StageCanary {
		t.Fatalf("the scanner's own failures rolled the canary back: %+v", ps.LastRollback)
	}
	// Many hosts failing is the network breaking.
	for i := 0; i < 10; i++ {
		for j := 0; j < 5; j++ {
			f := flow("s0")
			f.Key.Src = netip.AddrFrom4([4]byte{198, 18, 0, byte(20 + j)})
			m.Monitor().HandleFlow(f)
		}
		c.add(time.Second)
		m.tick(c.t)
	}
	ps := m.Policies()[0]
	if ps.Stage != StageAudit || ps.LastRollback == nil || ps.LastRollback.Breaches[0].Signal != "tcp_failed_handshakes" {
		t.Fatalf("after failures: stage %s, rollback %+v", ps.Stage, ps.LastRollback)
	}
}

// TestPersistence: decisions and rollout state survive a restart; the
// audit log's chain verifies and detects an edit.
func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	c := newClock()
	cfg := Config{Policies: []Policy{scanPolicy(StageAudit)}, StatePath: filepath.Join(dir, "state.json"), AuditPath: filepath.Join(dir, "audit.log")}
	m, _ := newTestManager(t, c, cfg)
	m.Promote("block-scanners", StageEnforce, "test", "")
	m.onAlert(scanAlert("198.18.0.9"))
	m.Close()

	c.add(time.Minute)
	m2, xdp := newTestManager(t, c, cfg)
	if ds := m2.Decisions(); len(ds) != 1 || ds[0].Target.String() != "198.18.0.9/32" {
		t.Fatalf("decisions after restart %+v", ds)
	}
	if ps := m2.Policies()[0]; ps.Stage != StageEnforce {
		t.Fatalf("stage after restart %s", ps.Stage)
	}
	m2.tick(c.t)
	if !xdp.has("198.18.0.9/32", Src) {
		t.Fatal("decision not enforced after restart")
	}
	m2.onAlert(scanAlert("198.18.0.10"))
	m2.Close()
	n, err := VerifyAudit(cfg.AuditPath)
	if err != nil || n != 3 { // stage, decision_add; after the restart decision_add
		t.Fatalf("audit log: %d records, %v", n, err)
	}
	b, _ := os.ReadFile(cfg.AuditPath)
	os.WriteFile(cfg.AuditPath, []byte(strings.Replace(string(b), "198.18.0.9", "198.18.0.8", 1)), 0o640)
	if _, err := VerifyAudit(cfg.AuditPath); err == nil || !strings.Contains(err.Error(), "chain broken") {
		t.Fatalf("edited log verified: %v", err)
	}
	if _, err := OpenAudit(cfg.AuditPath); err == nil {
		t.Error("the daemon would continue an edited log silently")
	}
}

// TestPolicyValidation: precise errors, nothing half-applied.
func TestPolicyValidation(t *testing.T) {
	c := newClock()
	m, _ := newTestManager(t, c, Config{})
	for _, tc := range []struct {
		p    Policy
		want string
	}{
		{Policy{ID: "Bad ID"}, "id: must be"},
		{Policy{ID: "p"}, "action: missing"},
		{Policy{ID: "p", Action: "nuke"}, `action: "nuke"`},
		{Policy{ID: "p", Action: PolicyBlock}, "ttl: mandatory"},
		{Policy{ID: "p", Action: PolicyBlock, TTL: Duration(30 * 24 * time.Hour)}, "longer than the guardrail"},
		{Policy{ID: "p", Action: PolicyBlock, TTL: Duration(time.Hour), Match: Match{Types: []string{"portscan"}}}, `match.types[0]: unknown alert type "portscan"`},
		{Policy{ID: "p", Action: PolicyBlock, TTL: Duration(time.Hour), Match: Match{Groups: []string{"nope"}}}, `match.groups[0]: no asset group "nope"`},
		{Policy{ID: "p", Action: PolicyBlock, TTL: Duration(time.Hour), Stage: StageCanary}, "canary: a canary stage needs a subset"},
		{Policy{ID: "p", Action: PolicyBlock, TTL: Duration(time.Hour), Scope: "ebtables"}, `scope "ebtables"`},
	} {
		err := m.CreatePolicy(tc.p, "test")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.p, err, tc.want)
		}
	}
	if len(m.Policies()) != 0 {
		t.Error("a refused policy was kept")
	}
	if err := m.CreatePolicy(scanPolicy(StageAudit), "test"); err != nil {
		t.Fatal(err)
	}
	if err := m.CreatePolicy(scanPolicy(StageAudit), "test"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("duplicate: %v", err)
	}
	if err := m.Promote("nope", StageEnforce, "t", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("promote unknown: %v", err)
	}
}

type overlapMem struct{ *memBackend }

func (overlapMem) RejectsOverlaps() bool { return true }

// TestReconcilerVerifyAndOverlaps: between verifications the reconciler
// trusts what it wrote (an external deletion is seen at the next
// verification); a backend that rejects overlaps gets no prefix inside a
// wider one until the wider one goes.
func TestReconcilerVerifyAndOverlaps(t *testing.T) {
	c := newClock()
	nft := overlapMem{newMem("nft", c.now)}
	r := NewReconciler(nft)
	r.SetVerifyInterval("nft", 10*time.Second)
	k := func(p string) Key { return Key{netip.MustParsePrefix(p), Src} }
	want := Desired{"nft": {k("203.0.113.0/24"): c.t.Add(time.Minute), k("203.0.113.7/32"): c.t.Add(time.Hour), k("198.51.100.1/32"): {}}}
	if err := r.Pass(want, c.t); err != nil {
		t.Fatal(err)
	}
	if nft.has("203.0.113.7/32", Src) || !nft.has("203.0.113.0/24", Src) || len(nft.els) != 2 {
		t.Fatalf("kernel %v: the /32 inside the /24 must wait", nft.els)
	}
	delete(nft.els, k("198.51.100.1/32")) // behind the reconciler's back
	c.add(5 * time.Second)
	r.Pass(want, c.t)
	if nft.has("198.51.100.1/32", Src) {
		t.Fatal("a pass between verifications read the kernel")
	}
	c.add(5 * time.Second)
	r.Pass(want, c.t)
	if st := r.Stats()[0]; !nft.has("198.51.100.1/32", Src) || st.Restored != 1 || st.Ratio != 0.5 {
		t.Fatalf("verification did not repair: %+v", st)
	}
	c.add(time.Minute) // the /24 expires: the /32 takes over
	r.Pass(want, c.t)
	if !nft.has("203.0.113.7/32", Src) || nft.has("203.0.113.0/24", Src) {
		t.Fatalf("after the /24 expired: %v", nft.els)
	}
}

// TestDNSSignal: responses and their SERVFAIL/REFUSED share come from the
// engine's parsed messages; questions do not count.
func TestDNSSignal(t *testing.T) {
	c := newClock()
	m, _ := newTestManager(t, c, Config{})
	for i, rc := range []uint16{0, 2, 5, 3, 0} {
		m.Monitor().OnDNS(&detect.DNSEvent{Response: true, RCode: rc})
		m.Monitor().OnDNS(&detect.DNSEvent{QName: fmt.Sprint("q", i)})
	}
	c.add(time.Second)
	m.tick(c.t)
	if s := m.Monitor().Recent(c.t, 10*time.Second); s.DNSResponses != 5 || s.DNSFailed != 2 {
		t.Errorf("DNS signal %d responses, %d failed; want 5 and 2", s.DNSResponses, s.DNSFailed)
	}
}
