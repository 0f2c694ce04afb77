// Package mgmt is Wardline's local management plane: the HTTP server on the
// management interface (health, status, recent flows, Prometheus metrics)
// and the client the CLI (`wardline ctl`) uses. It sees the rest of the
// appliance only through the functions and the prometheus.Gatherer that
// the daemon hands it, and imports no kernel code.
//
// Endpoints (all JSON unless noted):
//
//	GET /health.json      {"healthy": bool, "first_error": "...", "checks": [...]}; 503 when unhealthy
//	GET /api/v1/status    daemon status (attachments, modes, counters)
//	GET /api/v1/flows     recent final flow records, newest last; ?limit=N
//	GET /api/v1/alerts    recent alerts, newest last; ?limit=N
//	GET /api/v1/incidents alerts grouped per attacker and time window
//	GET /metrics          Prometheus text exposition
//	GET /api/v1/openapi.json  this API as an OpenAPI 3.1 document
//
// and the token-authenticated enforcement endpoints under
// /api/v1/enforce/ (see enforce.go).
package mgmt

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one health check result.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// Health is the answer of /health.json: healthy when every check passes.
type Health struct {
	Healthy    bool    `json:"healthy"`
	Release    string  `json:"release,omitempty"` // the build answering (see daemon.Release)
	FirstError string  `json:"first_error,omitempty"`
	Checks     []Check `json:"checks"`
}

// NewHealth builds a Health from checks.
func NewHealth(checks []Check) Health {
	h := Health{Healthy: true, Checks: checks}
	for _, c := range checks {
		if !c.OK {
			h.Healthy = false
			if h.FirstError == "" {
				h.FirstError = c.Name + ": " + c.Detail
			}
		}
	}
	return h
}

// Options wire the server to the daemon. Nil functions serve 404.
type Options struct {
	Listen   netip.AddrPort
	Gatherer prometheus.Gatherer
	Health   func() Health
	Status   func() any
	// Flows returns up to limit recent flow records (JSON-encodable).
	Flows func(limit int) any
	// Alerts returns up to limit recent alerts; Incidents the incidents.
	Alerts    func(limit int) any
	Incidents func() any
	// Enforcer serves /api/v1/enforce/* (nil: not served); Token returns
	// the bearer token those endpoints require ("" refuses every request).
	Enforcer Enforcer
	Token    func() string
	Logf     func(format string, args ...any)
}

// Server serves the management API.
type Server struct {
	opts   Options
	srv    *http.Server
	ln     net.Listener
	routes *routeMux
}

// openAPI describes every route (a test holds it against the mux).
//
//go:embed openapi.json
var openAPI []byte

// routeMux is a ServeMux that remembers its patterns ("GET /path"), so a
// test can hold them against the OpenAPI document (openapi.json).
type routeMux struct {
	*http.ServeMux
	patterns []string
}

func (m *routeMux) Handle(pattern string, h http.Handler) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.Handle(pattern, h)
}

func (m *routeMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(h))
}

// Listen binds the management address. It is separate from Serve so the
// daemon fails at start, with a clear error, when the address is wrong.
func Listen(opts Options) (*Server, error) {
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	ln, err := net.Listen("tcp", opts.Listen.String())
	if err != nil {
		return nil, fmt.Errorf("listen on management address %s: %w (hint: the address must be configured on the management interface)", opts.Listen, err)
	}
	s := &Server{opts: opts, ln: ln}
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	return s, nil
}

// Addr returns the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves until ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("management server: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err := s.srv.Shutdown(sctx)
		if e := <-errc; !errors.Is(e, http.ErrServerClosed) && err == nil {
			err = e
		}
		return err
	}
}

// Handler returns the API's HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := &routeMux{ServeMux: http.NewServeMux()}
	s.routes = mux
	if s.opts.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	}
	if s.opts.Health != nil {
		mux.HandleFunc("GET /health.json", func(w http.ResponseWriter, r *http.Request) {
			h := s.opts.Health()
			code := http.StatusOK
			if !h.Healthy {
				code = http.StatusServiceUnavailable
			}
			writeJSON(w, code, h)
		})
	}
	if s.opts.Status != nil {
		mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, s.opts.Status())
		})
	}
	limited := func(path string, f func(int) any) {
		if f == nil {
			return
		}
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
			limit := 100
			if v := r.URL.Query().Get("limit"); v != "" {
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 || n > 10000 {
					writeError(w, http.StatusBadRequest, fmt.Sprintf("limit %q: want an integer between 1 and 10000", v))
					return
				}
				limit = n
			}
			writeJSON(w, http.StatusOK, f(limit))
		})
	}
	limited("/api/v1/flows", s.opts.Flows)
	limited("/api/v1/alerts", s.opts.Alerts)
	if s.opts.Incidents != nil {
		mux.HandleFunc("GET /api/v1/incidents", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, s.opts.Incidents())
		})
	}
	mux.HandleFunc("GET /api/v1/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(openAPI)
	})
	s.enforceRoutes(mux)
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing to do
}

// Error is the body of every error response.
type Error struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, Error{Error: msg})
}
