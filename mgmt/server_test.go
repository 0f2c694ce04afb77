package mgmt

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestServer(t *testing.T) {
	healthy := true
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "wardline_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	s := &Server{opts: Options{
		Gatherer: reg,
		Health: func() Health {
			return NewHealth([]Check{{Name: "a", OK: true}, {Name: "xdp in0", OK: healthy, Detail: "not attached"}, {Name: "c", OK: false, Detail: "later"}})
		},
		Status: func() any { return map[string]int{"x": 1} },
		Flows:  func(n int) any { return []Flow{{Proto: "TCP", DestPort: uint16(n)}} },
	}}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	cl := NewClient(ts.URL)
	ctx := context.Background()

	h, err := cl.Health(ctx)
	if err != nil || h.Healthy || h.FirstError != "c: later" {
		t.Errorf("health %+v %v, want unhealthy with the first failing check", h, err)
	}
	healthy = false
	if h, _ := cl.Health(ctx); h.FirstError != "xdp in0: not attached" {
		t.Errorf("first error %q", h.FirstError)
	}
	resp, err := http.Get(ts.URL + "/health.json")
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("unhealthy status code %v %v, want 503", resp.StatusCode, err)
	}
	var flows []Flow
	if err := cl.Get(ctx, "/api/v1/flows?limit=7", &flows); err != nil || len(flows) != 1 || flows[0].DestPort != 7 {
		t.Errorf("flows %+v %v", flows, err)
	}
	for _, bad := range []string{"0", "x", "100000"} {
		err := cl.Get(ctx, "/api/v1/flows?limit="+bad, &flows)
		if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "limit") {
			t.Errorf("limit=%s: %v, want a 400 naming the parameter", bad, err)
		}
	}
	if err := cl.Get(ctx, "/api/v1/nope", &flows); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("unknown path: %v", err)
	}
	resp, err = http.Post(ts.URL+"/api/v1/status", "application/json", nil)
	if err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST status: %v %v, want 405", resp.StatusCode, err)
	}
	resp, err = http.Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b := new(strings.Builder)
	buf := make([]byte, 4096)
	n, _ := resp.Body.Read(buf)
	b.Write(buf[:n])
	if !strings.Contains(b.String(), "wardline_test_total 3") {
		t.Errorf("metrics: %s", b.String())
	}
}
