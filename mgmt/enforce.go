package mgmt

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/wardline/wardline/enforce"
)

// Enforcer is the enforcement layer as the API serves it (enforce.Manager).
type Enforcer interface {
	Status() enforce.Status
	Decisions() []enforce.Decision
	AddDecision(r enforce.DecisionRequest, who string) (*enforce.Decision, error)
	RemoveDecision(id, who, why string) error
	Policies() []enforce.PolicyStatus
	CreatePolicy(p enforce.Policy, who string) error
	DeletePolicy(id, who string) error
	Promote(id string, to enforce.Stage, who, why string) error
	Rollback(id, who, why string) error
	WouldBlocks(n int) []enforce.WouldBlock
	Audit() *enforce.Audit
}

// Enforcement endpoints (bearer token; the operator may name themself in
// X-Wardline-User, which the audit log records as "api:<name>"):
//
//	GET    /api/v1/enforce/status
//	GET    /api/v1/enforce/decisions
//	POST   /api/v1/enforce/decisions              DecisionBody
//	DELETE /api/v1/enforce/decisions/{id}?why=...
//	GET    /api/v1/enforce/policies
//	POST   /api/v1/enforce/policies               enforce.Policy
//	DELETE /api/v1/enforce/policies/{id}
//	POST   /api/v1/enforce/policies/{id}/promote  StageBody
//	POST   /api/v1/enforce/policies/{id}/rollback StageBody
//	GET    /api/v1/enforce/would-block?limit=N
//	GET    /api/v1/enforce/audit?limit=N
//
// Errors: 400 malformed request (the message names the field), 401
// missing or wrong token, 404 unknown id, 409 conflict (exists, already in
// that stage), 422 refused by a guardrail, 413 body over 64 KiB.

// DecisionBody is the request to block or quarantine by hand.
type DecisionBody struct {
	Action string `json:"action"` // block (default), quarantine, inspect
	Target string `json:"target"` // address or prefix
	Dir    string `json:"dir,omitempty"`
	Scope  string `json:"scope,omitempty"`
	TTL    string `json:"ttl"` // e.g. "1h"
	Reason string `json:"reason"`
}

// StageBody is the request to promote or roll back a policy.
type StageBody struct {
	To  string `json:"to,omitempty"` // promote: canary or enforce
	Why string `json:"why,omitempty"`
}

const maxBody = 64 << 10

var userName = regexp.MustCompile(`^[A-Za-z0-9_.@-]{1,64}$`)

func (s *Server) enforceRoutes(mux *routeMux) {
	e := s.opts.Enforcer
	if e == nil {
		return
	}
	auth := func(h func(w http.ResponseWriter, r *http.Request, who string)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			tok := ""
			if s.opts.Token != nil {
				tok = s.opts.Token()
			}
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if tok == "" || !ok || subtle.ConstantTimeCompare([]byte(got), []byte(tok)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="wardline"`)
				writeError(w, http.StatusUnauthorized, "missing or wrong bearer token (see enforce.token_file on the box)")
				return
			}
			who := "api"
			if u := r.Header.Get("X-Wardline-User"); u != "" {
				if !userName.MatchString(u) {
					writeError(w, http.StatusBadRequest, "X-Wardline-User: 1-64 of A-Z a-z 0-9 _ . @ -")
					return
				}
				who = "api:" + u
			}
			h(w, r, who)
		}
	}
	mux.HandleFunc("GET /api/v1/enforce/status", auth(func(w http.ResponseWriter, r *http.Request, _ string) {
		writeJSON(w, http.StatusOK, e.Status())
	}))
	mux.HandleFunc("GET /api/v1/enforce/decisions", auth(func(w http.ResponseWriter, r *http.Request, _ string) {
		writeJSON(w, http.StatusOK, orEmpty(e.Decisions()))
	}))
	mux.HandleFunc("POST /api/v1/enforce/decisions", auth(func(w http.ResponseWriter, r *http.Request, who string) {
		var b DecisionBody
		if !decodeBody(w, r, &b) {
			return
		}
		req, err := b.request()
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		d, err := e.AddDecision(req, who)
		if err != nil {
			writeError(w, errStatus(err), err.Error())
			return
		}
		writeJSON(w, http.StatusCreated, d)
	}))
	mux.HandleFunc("DELETE /api/v1/enforce/decisions/{id}", auth(func(w http.ResponseWriter, r *http.Request, who string) {
		why := r.URL.Query().Get("why")
		if why == "" {
			why = "removed by hand"
		}
		if err := e.RemoveDecision(r.PathValue("id"), who, why); err != nil {
			writeError(w, errStatus(err), err.Error())
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	mux.HandleFunc("GET /api/v1/enforce/policies", auth(func(w http.ResponseWriter, r *http.Request, _ string) {
		writeJSON(w, http.StatusOK, orEmpty(e.Policies()))
	}))
	mux.HandleFunc("POST /api/v1/enforce/policies", auth(func(w http.ResponseWriter, r *http.Request, who string) {
		var p enforce.Policy
		if !decodeBody(w, r, &p) {
			return
		}
		if err := e.CreatePolicy(p, who); err != nil {
			writeError(w, errStatus(err), err.Error())
			return
		}
		for _, ps := range e.Policies() {
			if ps.Policy.ID == p.ID {
				writeJSON(w, http.StatusCreated, ps)
				return
			}
		}
		writeError(w, http.StatusInternalServerError, "policy created but not listed")
	}))
	mux.HandleFunc("DELETE /api/v1/enforce/policies/{id}", auth(func(w http.ResponseWriter, r *http.Request, who string) {
		if err := e.DeletePolicy(r.PathValue("id"), who); err != nil {
			writeError(w, errStatus(err), err.Error())
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	stage := func(promote bool) http.HandlerFunc {
		return auth(func(w http.ResponseWriter, r *http.Request, who string) {
			var b StageBody
			if r.ContentLength != 0 && !decodeBody(w, r, &b) {
				return
			}
			id := r.PathValue("id")
			var err error
			if promote {
				to, perr := enforce.ParseStage(b.To)
				if perr != nil {
					writeError(w, http.StatusBadRequest, "to: "+perr.Error())
					return
				}
				err = e.Promote(id, to, who, b.Why)
			} else {
				if b.To != "" {
					writeError(w, http.StatusBadRequest, `to: a rollback always goes to audit; leave "to" out`)
					return
				}
				err = e.Rollback(id, who, b.Why)
			}
			if err != nil {
				writeError(w, errStatus(err), err.Error())
				return
			}
			for _, ps := range e.Policies() {
				if ps.Policy.ID == id {
					writeJSON(w, http.StatusOK, ps)
					return
				}
			}
			writeError(w, http.StatusNotFound, "policy "+id+" vanished")
		})
	}
	mux.HandleFunc("POST /api/v1/enforce/policies/{id}/promote", stage(true))
	mux.HandleFunc("POST /api/v1/enforce/policies/{id}/rollback", stage(false))
	limit := func(r *http.Request) (int, error) {
		v := r.URL.Query().Get("limit")
		if v == "" {
			return 100, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			return 0, fmt.Errorf("limit %q: want an integer between 1 and 10000", v)
		}
		return n, nil
	}
	mux.HandleFunc("GET /api/v1/enforce/would-block", auth(func(w http.ResponseWriter, r *http.Request, _ string) {
		n, err := limit(r)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, orEmpty(e.WouldBlocks(n)))
	}))
	mux.HandleFunc("GET /api/v1/enforce/audit", auth(func(w http.ResponseWriter, r *http.Request, _ string) {
		n, err := limit(r)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, orEmpty(e.Audit().Tail(n)))
	}))
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// decodeBody decodes a JSON body strictly; on failure it has answered.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q: want application/json", ct))
		return false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", maxBody))
		return false
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "read body: "+err.Error())
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		msg := strings.TrimPrefix(err.Error(), "json: ")
		var se *json.SyntaxError
		if errors.As(err, &se) {
			msg = fmt.Sprintf("byte %d: %s", se.Offset, msg)
		}
		writeError(w, http.StatusBadRequest, "request body: "+msg)
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "request body: data after the JSON object")
		return false
	}
	return true
}

// request validates a DecisionBody.
func (b DecisionBody) request() (enforce.DecisionRequest, error) {
	var r enforce.DecisionRequest
	switch b.Action {
	case "", "block":
		r.Action = enforce.ActionBlock
	case "quarantine":
		r.Action = enforce.ActionQuarantine
	case "inspect":
		r.Action = enforce.ActionInspect
	default:
		return r, fmt.Errorf("action %q: must be block, quarantine or inspect", b.Action)
	}
	if b.Target == "" {
		return r, errors.New("target: required (an address or prefix)")
	}
	var err error
	if r.Target, err = enforce.ParseTarget(b.Target); err != nil {
		return r, err
	}
	if r.Dir, err = enforce.ParseDir(b.Dir); err != nil {
		return r, err
	}
	if r.Scope, err = enforce.ParseScope(b.Scope); err != nil {
		return r, err
	}
	if b.TTL == "" {
		return r, errors.New(`ttl: required (every block expires; e.g. "1h")`)
	}
	if r.TTL, err = time.ParseDuration(b.TTL); err != nil || r.TTL <= 0 {
		return r, fmt.Errorf("ttl %q: not a positive duration (like \"30m\")", b.TTL)
	}
	if strings.TrimSpace(b.Reason) == "" {
		return r, errors.New("reason: required (the audit log records why)")
	}
	r.Reason = b.Reason
	return r, nil
}

// errStatus maps the enforcement layer's errors to HTTP codes.
func errStatus(err error) int {
	var ge *enforce.GuardError
	switch {
	case errors.As(err, &ge):
		return http.StatusUnprocessableEntity
	case errors.Is(err, enforce.ErrNotFound):
		return http.StatusNotFound
	case strings.Contains(err.Error(), "already"):
		return http.StatusConflict
	}
	return http.StatusBadRequest
}
