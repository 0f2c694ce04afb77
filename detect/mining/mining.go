// Package mining detects cryptocurrency mining: Stratum JSON-RPC
// (mining.subscribe, mining.authorize, mining.submit, and the "login" of
// Monero pools) in the first client payload of a TCP connection, on any
// port. See README.md.
package mining

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/wardline/wardline/detect"
)

// Detector is the mining detector.
type Detector struct {
	env     detect.Env
	alerted map[pair]time.Time
	window  time.Duration
}

type pair struct {
	client, pool netip.Addr
}

// New returns a mining detector; it alerts once per client and pool per
// window (default an hour).
func New(window time.Duration, env detect.Env) *Detector {
	if window == 0 {
		window = time.Hour
	}
	return &Detector{env: env, alerted: map[pair]time.Time{}, window: window}
}

func (d *Detector) Name() string { return "mining" }

// OnPayload looks for Stratum methods.
func (d *Detector) OnPayload(p *detect.PayloadEvent) {
	if p.Service != "stratum" {
		return
	}
	k := pair{p.Key.Src, p.Key.Dst}
	if t, ok := d.alerted[k]; ok && p.Time.Sub(t) < d.window {
		return
	}
	d.alerted[k] = p.Time
	pool := d.env.Inv.Name(p.Key.Dst)
	if pool == "" {
		pool = p.Key.Dst.String()
	}
	a := &detect.Alert{
		Type: detect.TypeMining, Subtype: "stratum_v1_cleartext", Detector: d.Name(), Time: p.Time,
		Attacker: p.Key.Src, Victims: []netip.Addr{p.Key.Dst},
		Signature:  fmt.Sprintf("%s speaks Stratum (%s) to %s port %d", p.Key.Src, p.Detail, pool, p.Key.DstPort),
		MITRE:      detect.MITREResourceHijack,
		Confidence: 0.95,
		Reasons: []detect.Contribution{
			{Feature: "stratum_method", Value: 1, Points: 60, Why: fmt.Sprintf("client sent the Stratum call %q", p.Detail)},
		},
		Evidence: map[string]any{"method": p.Detail, "pool": pool, "port": p.Key.DstPort},
	}
	if p.Key.DstPort != 3333 && p.Key.DstPort != 4444 && p.Key.DstPort != 14444 {
		a.Reasons = append(a.Reasons, detect.Contribution{Feature: "unusual_port", Value: float64(p.Key.DstPort), Points: 10,
			Why: "mining on a port pools do not usually use (evasion)"})
	}
	a.Score()
	d.env.Emit(a)
}

// Tick forgets old alert marks.
func (d *Detector) Tick(now time.Time) {
	for k, t := range d.alerted {
		if now.Sub(t) > d.window {
			delete(d.alerted, k)
		}
	}
}
