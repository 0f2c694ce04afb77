package daemon_test

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wardline/wardline/dataplane"
	"github.com/wardline/wardline/enforce"
	"github.com/wardline/wardline/lab"
	"github.com/wardline/wardline/mgmt"
)

// enforceConfig adds fields to the box's enforce section (and a detect
// section with the office as home).
func (b *box) enforceConfig(t *testing.T, more string) {
	t.Helper()
	cfg, err := os.ReadFile(b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	key := fmt.Sprintf(`"state_dir": %q`, b.state)
	if !strings.Contains(string(cfg), key) {
		t.Fatalf("config has no enforce section with %s:\n%s", key, cfg)
	}
	s := strings.Replace(string(cfg), key, key+", "+more, 1)
	s = strings.Replace(s, `"log":`, `"detect": {"home_nets": ["198.18.0.0/24"]}, "log":`, 1)
	if err := os.WriteFile(b.cfg, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// scan connect-scans 40 closed ports of the web host from h.
func (b *box) scan(t *testing.T, h *lab.Host) {
	t.Helper()
	if _, err := h.ConnectScan(b.l.Host("web").IPv4, 2000, 2040, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond every 100 ms for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (b *box) decisionFor(t *testing.T, target netip.Addr) *enforce.Decision {
	t.Helper()
	ds, err := b.mgmt.Decisions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if d.Target.Contains(target) {
			return &d
		}
	}
	return nil
}

func (b *box) wouldBlock(t *testing.T, target netip.Addr) *enforce.WouldBlock {
	t.Helper()
	ws, err := b.mgmt.WouldBlock(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		if w.Target.Contains(target) {
			return &w
		}
	}
	return nil
}

// TestEnforceStagesLive: port scans from office clients under a policy in
// each stage: audit blocks nothing, canary blocks only inside its subset,
// enforce blocks everywhere; a blocked CIDR drops every address in it;
// killing the daemon keeps blocks until their TTL, then traffic passes.
func TestEnforceStagesLive(t *testing.T) {
	b := newBoxN(t, dataplane.ModeGeneric, 5)
	c := func(n int) *lab.Host { return b.l.Host(fmt.Sprintf("client%d", n)) }
	web := b.l.Host("web").IPv4
	b.enforceConfig(t, fmt.Sprintf(`"groups": {"canary": [%q, %q]},
  "policies": [{"id": "scanners", "match": {"types": ["port_scan"]}, "action": "block", "ttl": "10m", "canary": {"group": "canary"}}]`,
		c(1).IPv4, c(2).IPv4))
	d := b.start(t)
	ctx := context.Background()

	// Audit: client1 (in the canary group) scans; nothing is enforced.
	b.scan(t, c(1))
	waitFor(t, 10*time.Second, "a would-block record for client1", func() bool { return b.wouldBlock(t, c(1).IPv4) != nil })
	if w := b.wouldBlock(t, c(1).IPv4); w.Stage != enforce.StageAudit || w.Why != "audit stage" {
		t.Errorf("would-block %+v", w)
	}
	if err := b.ping(t, "client1", web); err != nil || b.decisionFor(t, c(1).IPv4) != nil {
		t.Fatalf("audit stage enforced something: ping %v", err)
	}

	// Canary: client3 (outside the subset) is only logged, client2 (inside)
	// is blocked.
	if _, err := b.mgmt.Promote(ctx, "scanners", "canary", "lab test"); err != nil {
		t.Fatal(err)
	}
	b.scan(t, c(3))
	waitFor(t, 10*time.Second, "a would-block record for client3", func() bool { return b.wouldBlock(t, c(3).IPv4) != nil })
	if w := b.wouldBlock(t, c(3).IPv4); w.Stage != enforce.StageCanary || w.Why != "outside the canary subset" {
		t.Errorf("would-block %+v", w)
	}
	b.scan(t, c(2))
	waitFor(t, 10*time.Second, "a decision for client2", func() bool { return b.decisionFor(t, c(2).IPv4) != nil })
	if b.ping(t, "client2", web) == nil {
		t.Error("canary: client2 (in the subset) still reaches web")
	}
	if err := b.ping(t, "client3", web); err != nil {
		t.Errorf("canary: client3 (outside the subset) was blocked: %v", err)
	}

	// Enforce: client4 is blocked.
	if _, err := b.mgmt.Promote(ctx, "scanners", "enforce", "lab test"); err != nil {
		t.Fatal(err)
	}
	b.scan(t, c(4))
	waitFor(t, 10*time.Second, "a decision for client4", func() bool { return b.decisionFor(t, c(4).IPv4) != nil })
	if b.ping(t, "client4", web) == nil {
		t.Error("enforce: client4 still reaches web")
	}
	if err := b.ping(t, "client1", web); err != nil {
		t.Errorf("client1 (never decided on in a blocking stage) lost traffic: %v", err)
	}

	// A CIDR in the nft backend: 198.18.0.12/30 holds client2..client5;
	// client3 and client5 (not the network address) must drop too.
	cidr := netip.PrefixFrom(c(2).IPv4, 30).Masked()
	if _, err := b.mgmt.AddDecision(ctx, mgmt.DecisionBody{Target: cidr.String(), Scope: "nft", TTL: "10m", Reason: "lab: CIDR"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{3, 5} {
		if b.ping(t, fmt.Sprintf("client%d", n), web) == nil {
			t.Errorf("client%d (%s) in the blocked %s still reaches web", n, c(n).IPv4, cidr)
		}
	}
	out, err := b.l.Host("box").Run(ctx, "nft", "list", "set", "bridge", "wardline", "block_src4")
	if err != nil || !strings.Contains(out, cidr.String()) {
		t.Errorf("nft set does not hold %s (%v):\n%s", cidr, err, out)
	}

	st, err := b.mgmt.EnforceStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Ratio != 1 || st.Decisions != 3 {
		ds, _ := b.mgmt.Decisions(ctx)
		audit, _ := b.mgmt.AuditLog(ctx, 100)
		t.Errorf("status: ratio %v, %d decisions (want 1 and 3): %+v\naudit: %+v", st.Ratio, st.Decisions, ds, audit)
	}

	// Short-lived blocks in both backends, then the daemon dies: they hold
	// until their TTL (plus the kernel's grace), then traffic passes.
	if _, err := b.mgmt.AddDecision(ctx, mgmt.DecisionBody{Target: c(1).IPv4.String(), Scope: "all", TTL: "4s", Reason: "lab: ttl"}); err != nil {
		t.Fatal(err)
	}
	added := time.Now()
	if err := syscall.Kill(d.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	d.Wait()
	if b.ping(t, "client1", web) == nil {
		t.Error("the 4 s block did not hold after SIGKILL")
	}
	time.Sleep(time.Until(added.Add(6 * time.Second)))
	if err := b.ping(t, "client1", web); err != nil {
		t.Errorf("client1 still blocked %s after its 4 s block, daemon dead: %v", time.Since(added).Round(time.Millisecond), err)
	}
	if b.ping(t, "client4", web) == nil {
		t.Error("client4's 10 min block stopped holding without the daemon")
	}
	if n, err := enforce.VerifyAudit(b.state + "/audit.log"); err != nil || n < 6 {
		t.Errorf("audit log: %d records, %v", n, err)
	}
}

// TestEnforceAutoRollback: a bad policy (block the victims of scans) in
// enforce blocks the web server the office uses; its collateral drops
// roll it back automatically within 30 s and traffic recovers.
func TestEnforceAutoRollback(t *testing.T) {
	b := newBoxN(t, dataplane.ModeGeneric, 3)
	web := b.l.Host("web").IPv4
	b.enforceConfig(t, `"health": {"window": "5s", "collateral_pps": 5},
  "policies": [{"id": "block-victims", "match": {"types": ["port_scan"]}, "action": "block", "target": "victim",
    "ttl": "10m", "stage": "enforce", "watch": "10m"}]`)
	b.start(t)
	ctx, cancel := context.WithCancel(context.Background())
	var pingers []*exec.Cmd
	defer func() {
		cancel()
		for _, c := range pingers {
			c.Wait()
		}
	}()
	// The office keeps using the web server: 20 pings/s from two clients.
	for _, h := range []string{"client1", "client2"} {
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", b.l.Host(h).NS, "ping", "-q", "-i", "0.05", "-W", "1", web.String())
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pingers = append(pingers, cmd)
	}
	time.Sleep(3 * time.Second) // a baseline
	b.scan(t, b.l.Host("client3"))
	var rolled *enforce.RollbackInfo
	waitFor(t, 40*time.Second, "the automatic rollback", func() bool {
		ps, err := b.mgmt.Policies(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ps[0].Stage == enforce.StageAudit && ps[0].LastRollback != nil {
			rolled = ps[0].LastRollback
			return true
		}
		return false
	})
	// When the block went in: its audit record (it may have been lifted
	// before any poll saw it).
	recs, err := b.mgmt.AuditLog(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var created time.Time
	for _, r := range recs {
		if r.What == "decision_add" && r.Policy == "block-victims" && r.Target == netip.PrefixFrom(web, 32).String() {
			created = r.Time
		}
	}
	if created.IsZero() {
		t.Fatalf("no decision_add for %s in the audit log: %+v", web, recs)
	}
	took := rolled.Time.Sub(created)
	t.Logf("decision at %s, rolled back %s later: %s", created.Format(time.TimeOnly), took.Round(time.Millisecond), rolled.Why)
	if took > 30*time.Second || took <= 0 {
		t.Errorf("breach to rollback took %s, want < 30s", took)
	}
	if rolled.Who != "rollout" || len(rolled.Breaches) == 0 || rolled.Breaches[0].Signal != "collateral_drops" || rolled.Removed != 1 {
		t.Errorf("rollback %+v", rolled)
	}
	if err := b.ping(t, "client1", web); err != nil {
		t.Errorf("traffic to web did not recover after the rollback: %v", err)
	}
	if b.decisionFor(t, web) != nil {
		t.Error("the rolled-back policy's decision is still in force")
	}
}

// TestEnforceInspectLive: an inspect decision steers a client's traffic
// through NFQUEUE; the payload rule drops its request for a C2 URI while
// its other requests pass; lifting the decision turns steering off.
func TestEnforceInspectLive(t *testing.T) {
	b := newBoxN(t, dataplane.ModeGeneric, 2)
	web := b.l.Host("web").IPv4
	b.enforceConfig(t, `"inspection": {"queue": 3, "rules": [{"name": "c2-uri", "content": "/c2/beacon", "proto": "tcp", "dst_port": 80, "action": "drop"}]}`)
	b.start(t)
	ctx := context.Background()
	curl := func(host, path string) error {
		_, err := b.l.Host(host).Run(ctx, "curl", "-sS", "-m", "3", "-o", "/dev/null", "http://"+web.String()+path)
		return err
	}
	sysctl := func() string {
		out, _ := b.l.Host("box").Run(ctx, "sysctl", "-n", "net.bridge.bridge-nf-call-iptables")
		return strings.TrimSpace(out)
	}
	if err := curl("client1", "/c2/beacon"); err != nil {
		t.Fatalf("before inspection: %v", err)
	}
	d, err := b.mgmt.AddDecision(ctx, mgmt.DecisionBody{Action: "inspect", Target: b.l.Host("client1").IPv4.String(), TTL: "10m", Reason: "lab: inspect"})
	if err != nil {
		t.Fatal(err)
	}
	if v := sysctl(); v != "1" {
		t.Errorf("bridge-nf-call-iptables %q while inspecting, want 1", v)
	}
	if err := curl("client1", "/c2/beacon"); err == nil {
		t.Error("the C2 request of the inspected client got through")
	}
	if err := curl("client1", "/"); err != nil {
		t.Errorf("an ordinary request of the inspected client failed: %v", err)
	}
	if err := curl("client2", "/c2/beacon"); err != nil {
		t.Errorf("a client that is not inspected was affected: %v", err)
	}
	resp, err := b.mgmt.HTTP.Get("http://" + b.l.Box.MgmtAddr.String() + ":9100/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var buf strings.Builder
	io.Copy(&buf, resp.Body)
	resp.Body.Close()
	if !strings.Contains(buf.String(), `wardline_nfq_verdicts_total{action="drop",rule="c2-uri"}`) {
		t.Errorf("metrics lack the rule's verdicts")
	}
	if strings.Contains(buf.String(), `wardline_nfq_verdicts_total{action="drop",rule="c2-uri"} 0`) {
		t.Errorf("the rule's drop was not counted")
	}
	if err := b.mgmt.RemoveDecision(ctx, d.ID, "done"); err != nil {
		t.Fatal(err)
	}
	if v := sysctl(); v != "0" {
		t.Errorf("bridge-nf-call-iptables %q after the last inspection ended, want 0", v)
	}
	if err := curl("client1", "/c2/beacon"); err != nil {
		t.Errorf("after the decision was lifted: %v", err)
	}
}
