package mgmt

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client talks to a wardlined management server.
type Client struct {
	Base  string // e.g. http://198.18.254.1:9100
	HTTP  *http.Client
	Token string // bearer token for /api/v1/enforce/*
	User  string // operator name for the audit log (X-Wardline-User)
}

// NewClient returns a client for addr ("host:port" or a URL).
func NewClient(addr string) *Client {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return &Client{Base: strings.TrimSuffix(addr, "/"), HTTP: &http.Client{Timeout: 10 * time.Second}}
}

// Get fetches path and decodes the JSON answer into out. For /health.json
// a 503 still decodes (it carries the failing check).
func (c *Client) Get(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", c.Base+path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("GET %s: read body: %w", c.Base+path, err)
	}
	if resp.StatusCode != http.StatusOK && !(path == "/health.json" && resp.StatusCode == http.StatusServiceUnavailable) {
		var e Error
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("GET %s: %s: %s", c.Base+path, resp.Status, e.Error)
		}
		return fmt.Errorf("GET %s: %s", c.Base+path, resp.Status)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("GET %s: decode answer: %w", c.Base+path, err)
	}
	return nil
}

// Health fetches /health.json.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var h Health
	err := c.Get(ctx, "/health.json", &h)
	return h, err
}
