package mgmt

import (
	"encoding/json"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestOpenAPICoversRoutes: every route the server registers is in
// openapi.json with its method, and the document names no route the
// server lacks.
func TestOpenAPICoversRoutes(t *testing.T) {
	b, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	_, m := enforceServer(t)
	s := &Server{opts: Options{Enforcer: m, Token: func() string { return "x" }, Gatherer: prometheus.NewRegistry(),
		Health: func() Health { return Health{} }, Status: func() any { return nil }, Flows: func(int) any { return nil },
		Alerts: func(int) any { return nil }, Incidents: func() any { return nil }}}
	s.Handler()
	registered := append([]string(nil), s.routes.patterns...)
	sort.Strings(documented)
	sort.Strings(registered)
	if strings.Join(documented, "\n") != strings.Join(registered, "\n") {
		t.Errorf("openapi.json documents\n  %s\nthe server registers\n  %s", strings.Join(documented, "\n  "), strings.Join(registered, "\n  "))
	}
}
