package mgmt

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/wardline/wardline/enforce"
)

// Do sends a request with the client's token and decodes a JSON answer
// into out (nil: ignore it). A non-2xx answer is an error carrying the
// server's message.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: encode request: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if c.User != "" {
		req.Header.Set("X-Wardline-User", c.User)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, c.Base+path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read body: %w", method, c.Base+path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return &APIError{Status: resp.StatusCode, Msg: e.Error}
		}
		return &APIError{Status: resp.StatusCode, Msg: resp.Status}
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, c.Base+path, err)
		}
	}
	return nil
}

// APIError is an error answer of the server.
type APIError struct {
	Status int
	Msg    string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Msg)
}

// EnforceStatus fetches the enforcement status.
func (c *Client) EnforceStatus(ctx context.Context) (enforce.Status, error) {
	var s enforce.Status
	return s, c.Do(ctx, http.MethodGet, "/api/v1/enforce/status", nil, &s)
}

// Decisions lists the decisions in force.
func (c *Client) Decisions(ctx context.Context) ([]enforce.Decision, error) {
	var d []enforce.Decision
	return d, c.Do(ctx, http.MethodGet, "/api/v1/enforce/decisions", nil, &d)
}

// AddDecision blocks by hand.
func (c *Client) AddDecision(ctx context.Context, b DecisionBody) (enforce.Decision, error) {
	var d enforce.Decision
	return d, c.Do(ctx, http.MethodPost, "/api/v1/enforce/decisions", b, &d)
}

// RemoveDecision lifts a decision.
func (c *Client) RemoveDecision(ctx context.Context, id, why string) error {
	return c.Do(ctx, http.MethodDelete, "/api/v1/enforce/decisions/"+url.PathEscape(id)+"?why="+url.QueryEscape(why), nil, nil)
}

// Policies lists the policies with their rollout state.
func (c *Client) Policies(ctx context.Context) ([]enforce.PolicyStatus, error) {
	var p []enforce.PolicyStatus
	return p, c.Do(ctx, http.MethodGet, "/api/v1/enforce/policies", nil, &p)
}

// CreatePolicy creates a policy from its JSON.
func (c *Client) CreatePolicy(ctx context.Context, policy json.RawMessage) (enforce.PolicyStatus, error) {
	var p enforce.PolicyStatus
	return p, c.Do(ctx, http.MethodPost, "/api/v1/enforce/policies", policy, &p)
}

// DeletePolicy deletes a policy (rolling back its decisions).
func (c *Client) DeletePolicy(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/api/v1/enforce/policies/"+url.PathEscape(id), nil, nil)
}

// Promote moves a policy to canary or enforce.
func (c *Client) Promote(ctx context.Context, id, to, why string) (enforce.PolicyStatus, error) {
	var p enforce.PolicyStatus
	return p, c.Do(ctx, http.MethodPost, "/api/v1/enforce/policies/"+url.PathEscape(id)+"/promote", StageBody{To: to, Why: why}, &p)
}

// Rollback returns a policy to audit.
func (c *Client) Rollback(ctx context.Context, id, why string) (enforce.PolicyStatus, error) {
	var p enforce.PolicyStatus
	return p, c.Do(ctx, http.MethodPost, "/api/v1/enforce/policies/"+url.PathEscape(id)+"/rollback", StageBody{Why: why}, &p)
}

// WouldBlock lists recent would-block records.
func (c *Client) WouldBlock(ctx context.Context, limit int) ([]enforce.WouldBlock, error) {
	var w []enforce.WouldBlock
	return w, c.Do(ctx, http.MethodGet, "/api/v1/enforce/would-block?limit="+strconv.Itoa(limit), nil, &w)
}

// AuditLog fetches recent audit records.
func (c *Client) AuditLog(ctx context.Context, limit int) ([]enforce.AuditRecord, error) {
	var a []enforce.AuditRecord
	return a, c.Do(ctx, http.MethodGet, "/api/v1/enforce/audit?limit="+strconv.Itoa(limit), nil, &a)
}
