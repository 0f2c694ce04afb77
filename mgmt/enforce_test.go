package mgmt

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/wardline/wardline/enforce"
)

func enforceServer(t *testing.T) (*Client, *enforce.Manager) {
	t.Helper()
	m, err := enforce.New(enforce.Config{Guardrails: enforce.Guardrails{NeverBlock: []enforce.NamedPrefix{
		{Prefix: netip.MustParsePrefix("198.18.0.1/32"), Name: "gateway"}}},
		Groups: map[string][]netip.Prefix{"clients": {netip.MustParsePrefix("198.18.0.0/25")}}})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{opts: Options{Enforcer: m, Token: func() string { return "s3cret" }}}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	c := NewClient(ts.URL)
	c.Token, c.User = "s3cret", "alice"
	return c, m
}

func status(err error) int {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

func TestEnforceAPIAuth(t *testing.T) {
	c, _ := enforceServer(t)
	ctx := context.Background()
	for _, tok := range []string{"", "wrong", "s3cre", "s3cret2"} {
		c2 := *c
		c2.Token = tok
		if _, err := c2.Decisions(ctx); status(err) != http.StatusUnauthorized {
			t.Errorf("token %q: %v, want 401", tok, err)
		}
	}
	c2 := *c
	c2.User = "alice; rm -rf"
	if _, err := c2.Decisions(ctx); status(err) != http.StatusBadRequest {
		t.Errorf("bad user name: %v", err)
	}
	if _, err := c.Decisions(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestEnforceAPIDecisions(t *testing.T) {
	c, m := enforceServer(t)
	ctx := context.Background()
	d, err := c.AddDecision(ctx, DecisionBody{Target: "203.0.113.7", TTL: "10m", Reason: "manual test"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Target.String() != "203.0.113.7/32" || d.By != "api:alice" || time.Until(d.Expires) < 9*time.Minute {
		t.Errorf("decision %+v", d)
	}
	for _, tc := range []struct {
		b    DecisionBody
		code int
		msg  string
	}{
		{DecisionBody{Target: "203.0.113.8", Reason: "x"}, 400, "ttl: required"},
		{DecisionBody{Target: "203.0.113.8", TTL: "soon", Reason: "x"}, 400, `ttl "soon"`},
		{DecisionBody{Target: "203.0.113.999", TTL: "1m", Reason: "x"}, 400, "not an address or prefix"},
		{DecisionBody{Target: "203.0.113.8", TTL: "1m"}, 400, "reason: required"},
		{DecisionBody{Target: "203.0.113.8", TTL: "1m", Reason: "x", Dir: "up"}, 400, `direction "up"`},
		{DecisionBody{Action: "nuke", Target: "203.0.113.8", TTL: "1m", Reason: "x"}, 400, `action "nuke"`},
		{DecisionBody{Target: "198.18.0.0/24", TTL: "1m", Reason: "x"}, 422, "never-block 198.18.0.1/32 (gateway)"},
		{DecisionBody{Action: "inspect", Target: "203.0.113.8", TTL: "1m", Reason: "x"}, 400, "inspection is not configured"},
	} {
		_, err := c.AddDecision(ctx, tc.b)
		if status(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%+v: %v, want %d %q", tc.b, err, tc.code, tc.msg)
		}
	}
	// Unknown fields and oversized bodies.
	if err := c.Do(ctx, http.MethodPost, "/api/v1/enforce/decisions", map[string]any{"target": "203.0.113.8", "ttl": "1m", "reason": "x", "colour": 1}, nil); status(err) != 400 || !strings.Contains(err.Error(), `unknown field "colour"`) {
		t.Errorf("unknown field: %v", err)
	}
	if err := c.Do(ctx, http.MethodPost, "/api/v1/enforce/decisions", map[string]string{"reason": strings.Repeat("x", 70000)}, nil); status(err) != 413 {
		t.Errorf("huge body: %v", err)
	}
	if ds := m.Decisions(); len(ds) != 1 {
		t.Fatalf("bad requests left decisions behind: %+v", ds)
	}
	if err := c.RemoveDecision(ctx, "d99", "test"); status(err) != 404 {
		t.Errorf("remove unknown: %v", err)
	}
	if err := c.RemoveDecision(ctx, d.ID, "done testing"); err != nil {
		t.Fatal(err)
	}
	recs, err := c.AuditLog(ctx, 10)
	if err != nil || len(recs) < 3 || recs[len(recs)-1].What != "decision_remove" || recs[len(recs)-1].Who != "api:alice" || recs[len(recs)-1].Why != "done testing" {
		t.Errorf("audit %+v %v", recs, err)
	}
}

func TestEnforceAPIPolicies(t *testing.T) {
	c, _ := enforceServer(t)
	ctx := context.Background()
	pol := json.RawMessage(`{"id": "scanners", "match": {"types": ["port_scan"]}, "action": "block", "ttl": "1h", "canary": {"group": "clients"}}`)
	ps, err := c.CreatePolicy(ctx, pol)
	if err != nil || ps.Stage != enforce.StageAudit {
		t.Fatalf("create: %+v %v", ps, err)
	}
	if _, err := c.CreatePolicy(ctx, pol); status(err) != 409 {
		t.Errorf("duplicate: %v", err)
	}
	if _, err := c.CreatePolicy(ctx, json.RawMessage(`{"id": "x", "action": "block", "ttl": "1h", "match": {"groups": ["nope"]}}`)); status(err) != 400 || !strings.Contains(err.Error(), `match.groups[0]: no asset group "nope"`) {
		t.Errorf("bad group: %v", err)
	}
	if _, err := c.CreatePolicy(ctx, json.RawMessage(`{"id": "x", "action": "block", "ttl": "an hour"}`)); status(err) != 400 || !strings.Contains(err.Error(), `duration "an hour"`) {
		t.Errorf("bad ttl: %v", err)
	}
	if _, err := c.Promote(ctx, "scanners", "production", ""); status(err) != 400 {
		t.Errorf("bad stage: %v", err)
	}
	if ps, err = c.Promote(ctx, "scanners", "canary", "first week"); err != nil || ps.Stage != enforce.StageCanary || ps.Transitions[0].Who != "api:alice" {
		t.Fatalf("promote: %+v %v", ps, err)
	}
	if _, err := c.Promote(ctx, "scanners", "canary", ""); status(err) != 409 {
		t.Errorf("promote again: %v", err)
	}
	if ps, err = c.Rollback(ctx, "scanners", "noisy"); err != nil || ps.Stage != enforce.StageAudit || ps.LastRollback.Why != "noisy" {
		t.Fatalf("rollback: %+v %v", ps, err)
	}
	if _, err := c.Rollback(ctx, "nope", ""); status(err) != 404 {
		t.Errorf("rollback unknown: %v", err)
	}
	if err := c.DeletePolicy(ctx, "scanners"); err != nil {
		t.Fatal(err)
	}
	if pl, err := c.Policies(ctx); err != nil || len(pl) != 0 {
		t.Errorf("policies after delete: %+v %v", pl, err)
	}
}
