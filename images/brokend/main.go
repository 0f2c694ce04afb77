// Command brokend is a deliberately broken wardlined for the update test
// (images/boot_test.go): boards/image.sh installs it under the name
// wardlined (WARDLINED_PKG) to make a release that looks fine from the
// outside but does not work. It reads the real configuration, brings up
// the management interface and answers /health.json as healthy with its
// stamped release, and /api/v1/status with counters that never move; it
// never builds the bridge. Process liveness and even the health endpoint
// pass, so only the updater's forwarding-progress gate can catch it, and
// must roll it back. Never ship it.
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"

	"github.com/wardline/wardline/appliance/bridge"
	"github.com/wardline/wardline/appliance/config"
	"github.com/wardline/wardline/appliance/daemon"
	"github.com/wardline/wardline/mgmt"
)

func main() {
	cfgPath := flag.String("config", "/perm/wardline/wardlined.json", "configuration file")
	flag.Parse()
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := bridge.SetupManagement(cfg.Management); err != nil {
		log.Fatal(err)
	}
	log.Printf("brokend %s: management up, bridge deliberately not built", daemon.Release)
	reply := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	}
	http.HandleFunc("GET /health.json", func(w http.ResponseWriter, r *http.Request) {
		reply(w, mgmt.Health{Healthy: true, Release: daemon.Release, Checks: []mgmt.Check{{Name: "bridge", OK: true}}})
	})
	http.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, r *http.Request) {
		reply(w, daemon.Status{Release: daemon.Release, Ports: []daemon.PortStatus{
			{Interface: cfg.Bridge.Inside, Role: "inside"}, {Interface: cfg.Bridge.Outside, Role: "outside"}}})
	})
	log.Fatal(http.ListenAndServe(cfg.Management.Listen.String(), nil))
}
