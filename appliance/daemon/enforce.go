package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardline/wardline/appliance/config"
	"github.com/wardline/wardline/appliance/kernelcheck"
	"github.com/wardline/wardline/dataplane"
	"github.com/wardline/wardline/detect"
	"github.com/wardline/wardline/enforce"
	"github.com/wardline/wardline/enforce/nfq"
	"github.com/wardline/wardline/enforce/nftset"
	"github.com/wardline/wardline/enforce/xdpset"
)

// setupEnforce builds the enforcement layer: the XDP backend (always), the
// nft backend (unless disabled), the Manager with its state and audit log
// under the state directory, and the API token.
func (d *Daemon) setupEnforce() error {
	c := d.cfg.Enforce
	if err := os.MkdirAll(c.StateDir, 0o750); err != nil {
		return fmt.Errorf("enforcement state directory: %w", err)
	}
	tok, err := loadOrCreateToken(c.TokenFile)
	if err != nil {
		return err
	}
	d.token = tok
	backends := []enforce.Backend{xdpset.New(d.dp.Lists())}
	if c.NFT {
		nb, err := nftset.Open(nftset.Config{Table: c.NFTTable, Create: true})
		if err != nil {
			return fmt.Errorf("nft backend: %w", err)
		}
		d.nft = nb
		backends = append(backends, nb)
	}
	var static []enforce.Element
	for _, b := range d.cfg.Dataplane.Blocklist {
		dir := enforce.Src
		if b.List == dataplane.BlockDst {
			dir = enforce.Dst
		}
		static = append(static, enforce.Element{Prefix: b.Prefix, Dir: dir})
	}
	var inspect func(netip.Prefix, time.Time, bool) error
	if in := c.Inspection; in != nil {
		insp, err := nfq.New(nfq.Config{Queue: in.Queue, Rules: in.Rules, Logf: d.opts.Logf})
		if err != nil {
			if d.nft != nil {
				d.nft.Close()
			}
			return fmt.Errorf("NFQUEUE inspection: %w", err)
		}
		d.insp = insp
		inspect = d.steer
	}
	m, err := enforce.New(enforce.Config{HomeNets: d.cfg.Detect.HomeNets, Groups: c.Groups, Guardrails: enforce.Guardrails{
		NeverBlock: c.NeverBlock, MaxNewPerMinute: c.Guardrails.MaxNewPerMinute, MaxActive: c.Guardrails.MaxActive,
		MaxTTL: c.Guardrails.MaxTTL, MinPrefix4: c.Guardrails.MinPrefix4, MinPrefix6: c.Guardrails.MinPrefix6},
		Thresholds: c.Thresholds, Static: static, Allow: d.cfg.Dataplane.Allowlist, Policies: c.Policies,
		StatePath: filepath.Join(c.StateDir, "state.json"), AuditPath: filepath.Join(c.StateDir, "audit.log"),
		BaselineWindow: c.BaselineWindow, Inspect: inspect, Logf: d.opts.Logf}, backends...)
	if err != nil {
		if d.nft != nil {
			d.nft.Close()
		}
		if d.insp != nil {
			d.insp.Close()
		}
		return err
	}
	// Reading a large interval set back costs seconds of kernel time
	// (enforce/nftset): verify nft every 15 s, the XDP trie every pass.
	m.Reconciler().SetVerifyInterval("nft", 15*time.Second)
	d.enf = m
	d.opts.Handlers = append(d.opts.Handlers, m.Monitor())
	return nil
}

// runEnforce drives the Manager (and the inspector) until ctx ends.
func (d *Daemon) runEnforce(ctx context.Context) {
	if d.insp != nil {
		go func() {
			if err := d.insp.Run(ctx); err != nil {
				d.logf("NFQUEUE inspector stopped: %v (steered traffic passes uninspected: bypass)", err)
			}
		}()
	}
	if err := d.enf.Run(ctx); err != nil {
		d.logf("enforcement: %v", err)
	}
}

func (d *Daemon) closeEnforce() {
	if d.enf != nil {
		d.enf.Close()
	}
	if d.nft != nil {
		d.nft.Close() // the table and its elements stay until their timeouts
	}
	if d.insp != nil {
		d.insp.Close()
	}
	d.steerMu.Lock()
	if d.steering != nil {
		d.steering.Close() // steering off: bridge-nf-call back to 0
		d.steering = nil
	}
	d.steerMu.Unlock()
}

// steer sends a target's traffic (both directions) to the inspector, or
// stops. Steering (br_netfilter on the box's bridge) is on only while some
// target is inspected.
func (d *Daemon) steer(p netip.Prefix, expires time.Time, on bool) error {
	d.steerMu.Lock()
	defer d.steerMu.Unlock()
	if on {
		if d.steering == nil {
			s, err := nfq.Steer(nfq.SteerConfig{Queue: d.cfg.Enforce.Inspection.Queue})
			if err != nil {
				return err
			}
			d.steering = s
			d.logf("inspection: steering on (queue %d)", d.cfg.Enforce.Inspection.Queue)
		}
		ttl := time.Until(expires) + time.Second
		if err := d.steering.Add(nfq.Element{Prefix: p, Dir: nfq.Src, TTL: ttl}, nfq.Element{Prefix: p, Dir: nfq.Dst, TTL: ttl}); err != nil {
			return err
		}
		d.inspected[p] = true
		return nil
	}
	if d.steering == nil {
		return nil
	}
	if err := d.steering.Remove(nfq.Element{Prefix: p, Dir: nfq.Src}, nfq.Element{Prefix: p, Dir: nfq.Dst}); err != nil {
		return err
	}
	delete(d.inspected, p)
	if len(d.inspected) == 0 {
		err := d.steering.Close()
		d.steering = nil
		d.logf("inspection: steering off")
		return err
	}
	return nil
}

// onAlertEnforce hands an alert to the policies (never blocks).
func (d *Daemon) onAlertEnforce(a *detect.Alert) {
	if d.enf != nil {
		d.enf.HandleAlert(a)
	}
}

// loadOrCreateToken reads the API token, generating one (0600) at first
// start.
func loadOrCreateToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		t := strings.TrimSpace(string(b))
		if len(t) < 16 {
			return "", fmt.Errorf("API token %s: shorter than 16 characters", path)
		}
		return t, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read API token: %w", err)
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("generate API token: %w", err)
	}
	t := hex.EncodeToString(raw)
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return "", fmt.Errorf("write API token: %w", err)
	}
	if err := os.WriteFile(path, []byte(t+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write API token: %w", err)
	}
	return t, nil
}

var (
	descEnfRatio    = prometheus.NewDesc("wardline_enforce_enforced_ratio", "Desired elements the kernel still held at the last reconcile pass, as a fraction of those it should hold (1 in steady state).", []string{"backend"}, nil)
	descEnfDesired  = prometheus.NewDesc("wardline_enforce_desired_elements", "Elements the backend should hold.", []string{"backend"}, nil)
	descEnfRepairs  = prometheus.NewDesc("wardline_enforce_reconcile_changes_total", "Elements the reconciler wrote or removed, by kind.", []string{"backend", "kind"}, nil)
	descEnfErrors   = prometheus.NewDesc("wardline_enforce_reconcile_errors_total", "Reconcile passes that failed.", []string{"backend"}, nil)
	descEnfDecided  = prometheus.NewDesc("wardline_enforce_decisions_active", "Decisions in force.", nil, nil)
	descEnfStage    = prometheus.NewDesc("wardline_enforce_policy_stage", "1 for each policy's current rollout stage.", []string{"policy", "stage"}, nil)
	descEnfWould    = prometheus.NewDesc("wardline_enforce_would_block_total", "Decisions a policy computed but did not enforce (audit, outside the canary).", []string{"policy"}, nil)
	descEnfMatches  = prometheus.NewDesc("wardline_enforce_policy_matches_total", "Alerts that matched a policy.", []string{"policy"}, nil)
	descEnfRefused  = prometheus.NewDesc("wardline_enforce_guardrail_refused_total", "Decisions refused by a guardrail.", []string{"rule"}, nil)
	descEnfAlerts   = prometheus.NewDesc("wardline_enforce_alerts_total", "Alerts handed to the policies, and those lost because the queue was full.", []string{"outcome"}, nil)
	descNFQ         = prometheus.NewDesc("wardline_nfq_verdicts_total", "NFQUEUE inspector verdicts, by rule (\"\" : no rule matched).", []string{"rule", "action"}, nil)
	descNFQErr      = prometheus.NewDesc("wardline_nfq_events_total", "NFQUEUE inspector counters: received, errors, missed, overruns, truncated; kernel queue_dropped and user_dropped.", []string{"what"}, nil)
	descEnfRollback = prometheus.NewDesc("wardline_enforce_rollbacks_total", "Policies rolled back (last rollback per policy counts once per stage change).", []string{"policy"}, nil)
)

func (c *collector) collectEnforce(ch chan<- prometheus.Metric) {
	m := c.d.enf
	if m == nil {
		return
	}
	s := m.Status()
	for _, b := range s.Backends {
		ch <- prometheus.MustNewConstMetric(descEnfRatio, prometheus.GaugeValue, b.Ratio, b.Name)
		ch <- prometheus.MustNewConstMetric(descEnfDesired, prometheus.GaugeValue, float64(b.Desired), b.Name)
		for k, v := range map[string]uint64{"added": b.Added, "refreshed": b.Refreshed, "restored": b.Restored, "removed": b.Removed, "foreign": b.Foreign} {
			ch <- prometheus.MustNewConstMetric(descEnfRepairs, prometheus.CounterValue, float64(v), b.Name, k)
		}
		ch <- prometheus.MustNewConstMetric(descEnfErrors, prometheus.CounterValue, float64(b.Errors), b.Name)
	}
	ch <- prometheus.MustNewConstMetric(descEnfDecided, prometheus.GaugeValue, float64(s.Decisions))
	for _, p := range s.Policies {
		for _, st := range []enforce.Stage{enforce.StageAudit, enforce.StageCanary, enforce.StageEnforce} {
			v := 0.0
			if p.Stage == st {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descEnfStage, prometheus.GaugeValue, v, p.Policy.ID, string(st))
		}
		ch <- prometheus.MustNewConstMetric(descEnfWould, prometheus.CounterValue, float64(p.WouldBlock), p.Policy.ID)
		ch <- prometheus.MustNewConstMetric(descEnfMatches, prometheus.CounterValue, float64(p.Matches), p.Policy.ID)
		n := 0.0
		for _, t := range p.Transitions {
			if strings.HasPrefix(t.Why, "rollback") {
				n++
			}
		}
		ch <- prometheus.MustNewConstMetric(descEnfRollback, prometheus.CounterValue, n, p.Policy.ID)
	}
	for k, v := range s.Refused {
		ch <- prometheus.MustNewConstMetric(descEnfRefused, prometheus.CounterValue, float64(v), k)
	}
	if in := c.d.insp; in != nil {
		st, err := in.Stats() // with the kernel's queue counters
		if err != nil {
			st = in.Counters()
		}
		ch <- prometheus.MustNewConstMetric(descNFQ, prometheus.CounterValue, float64(st.Default), "", "accept")
		for _, r := range st.Rules {
			ch <- prometheus.MustNewConstMetric(descNFQ, prometheus.CounterValue, float64(r.Matches), r.Name, r.Action.String())
		}
		for k, v := range map[string]uint64{"received": st.Received, "errors": st.Errors, "missed": st.Missed, "overruns": st.Overruns,
			"truncated": st.Truncated, "kernel_queue_dropped": uint64(st.Kernel.QueueDropped), "kernel_user_dropped": uint64(st.Kernel.UserDropped)} {
			ch <- prometheus.MustNewConstMetric(descNFQErr, prometheus.CounterValue, float64(v), k)
		}
	}
	ch <- prometheus.MustNewConstMetric(descEnfAlerts, prometheus.CounterValue, float64(s.AlertsIn), "in")
	ch <- prometheus.MustNewConstMetric(descEnfAlerts, prometheus.CounterValue, float64(s.AlertsLost), "lost")
}

// Uninstall detaches the fast path (its pins go, and with them the
// programs) and deletes the nft table; the bridge, the enforcement state
// and the audit log stay.
func Uninstall(cfg *config.Config, logf func(string, ...any)) error {
	if err := dataplane.Unpin(cfg.Dataplane.PinDir); err != nil {
		return err
	}
	logf("removed pins in %s; XDP programs detached", cfg.Dataplane.PinDir)
	if !cfg.Enforce.NFT {
		return nil
	}
	nb, err := nftset.Open(nftset.Config{Table: cfg.Enforce.NFTTable})
	if errors.Is(err, nftset.ErrNoTable) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("uninstall: %w", err)
	}
	defer nb.Close()
	if err := nb.Teardown(); err != nil {
		return fmt.Errorf("uninstall: %w", err)
	}
	logf("deleted nft table bridge %s", cfg.Enforce.NFTTable)
	return nil
}

// CheckKernel checks the running kernel for every option and BPF feature
// the configuration needs (kernelcheck), logging what is missing but not
// required.
func CheckKernel(cfg *config.Config, logf func(string, ...any)) error {
	r, err := kernelcheck.Running(kernelcheck.Need{NFT: cfg.Enforce.NFT, Inspect: cfg.Enforce.Inspection != nil})
	if err != nil {
		return fmt.Errorf("kernel check: %w", err)
	}
	for _, w := range r.Warnings() {
		logf("kernel check: %s", w)
	}
	if err := r.Err(); err != nil {
		return err
	}
	src := r.Source
	if src == "" {
		src = "no configuration found"
	}
	logf("kernel check: every required option and BPF feature present (%s, %d probes)", src, len(r.Probes))
	return nil
}
