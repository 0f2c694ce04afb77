// Package daemon is wardlined's logic: it sets up the bridge and the
// management interface, loads and attaches the XDP fast path (re-attaching
// to pinned state after a restart), reads its events, runs the flow
// sweeper and serves the management API. Stopping it leaves the fast path
// attached: the box keeps forwarding and the blocklist keeps dropping.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/wardline/wardline/appliance/bridge"
	"github.com/wardline/wardline/appliance/config"
	"github.com/wardline/wardline/appliance/privdrop"
	"github.com/wardline/wardline/dataplane"
	"github.com/wardline/wardline/dataplane/event"
	"github.com/wardline/wardline/detect/engine"
	"github.com/wardline/wardline/detect/eve"
	"github.com/wardline/wardline/enforce"
	"github.com/wardline/wardline/enforce/nfq"
	"github.com/wardline/wardline/enforce/nftset"
	"github.com/wardline/wardline/mgmt"
)

// Options are the daemon's dependencies.
type Options struct {
	// Logf receives operational log lines; nil discards them.
	Logf func(format string, args ...any)
	// Handlers receive every event after the daemon's own bookkeeping
	// (the detection engine subscribes here).
	Handlers []event.Handler
	// Ready, if set, is called once the fast path is attached and the
	// management API listens.
	Ready func(*Daemon)
	// DropCapabilities makes the daemon keep only RuntimeCapabilities once
	// setup is done (wardlined does by default).
	DropCapabilities bool
}

// RuntimeCapabilities are what wardlined needs after setup: netlink and
// nftables (reconciling sets, steering, NFQUEUE, XDP re-attach), BPF map
// access, and binding a management port below 1024 if so configured.
// Everything else, CAP_SYS_ADMIN and CAP_SYS_MODULE included, is dropped.
var RuntimeCapabilities = privdrop.NewSet(privdrop.CAP_NET_ADMIN, privdrop.CAP_BPF, privdrop.CAP_PERFMON, privdrop.CAP_NET_BIND_SERVICE)

// Daemon is a running wardlined.
type Daemon struct {
	cfg     *config.Config
	opts    Options
	dp      *dataplane.Dataplane
	rd      *dataplane.Reader
	mgmt    *mgmt.Server
	started time.Time
	running atomic.Int64 // unix ns when run began (the sweeper started)
	flows   *recentFlows
	ports   map[uint32]string // ifindex -> interface name
	flowLog *rateLimiter

	eng     *engine.Engine
	eve     *eve.Writer
	eveFile *os.File
	alerts  *recentAlerts

	caps string // capabilities kept after setup, for the status API

	enf   *enforce.Manager
	nft   *nftset.Backend
	token string

	insp      *nfq.Inspector
	steerMu   sync.Mutex
	steering  *nfq.Steering
	inspected map[netip.Prefix]bool

	mu      sync.Mutex
	attach  []dataplane.Attachment
	readErr error
}

// Run runs the daemon until ctx ends. It returns an error if setup fails;
// once running, it returns nil on a clean stop.
func Run(ctx context.Context, cfg *config.Config, opts Options) error {
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	d := &Daemon{cfg: cfg, opts: opts, started: time.Now(), flows: newRecentFlows(1024),
		ports: map[uint32]string{}, flowLog: newRateLimiter(50, time.Second), alerts: newRecentAlerts(512), inspected: map[netip.Prefix]bool{}}
	if err := d.setup(); err != nil {
		if d.dp != nil {
			d.dp.Close()
		}
		return err
	}
	defer d.dp.Close()
	return d.run(ctx)
}

func (d *Daemon) logf(format string, args ...any) { d.opts.Logf(format, args...) }

func (d *Daemon) setup() error {
	c := d.cfg
	d.logf("wardlined %s starting", Release)
	if err := CheckKernel(c, d.opts.Logf); err != nil {
		return permanent(err)
	}
	// In-band management lives on the bridge, which is set up first.
	inband := c.Management.Interface == c.Bridge.Name
	links := []string{c.Bridge.Inside, c.Bridge.Outside}
	if !inband {
		links = append(links, c.Management.Interface)
	}
	if err := waitForLinks(links, c.Bridge.WaitForLinks, d.opts.Logf); err != nil {
		return err
	}
	setupMgmt := func() error {
		changes, err := bridge.SetupManagement(c.Management)
		if err != nil {
			return fmt.Errorf("set up management interface: %w", err)
		}
		for _, ch := range changes {
			d.logf("management: %s", ch)
		}
		return nil
	}
	if !inband {
		if err := setupMgmt(); err != nil {
			return err
		}
	}
	changes, err := bridge.Setup(c.Bridge)
	if err != nil {
		return fmt.Errorf("set up bridge: %w", err)
	}
	for _, ch := range changes {
		d.logf("bridge: %s", ch)
	}
	if inband {
		if err := setupMgmt(); err != nil {
			return err
		}
	}

	if err := dataplane.MountBPFFS(c.Dataplane.BPFFS, c.Dataplane.PinDir); err != nil {
		return err
	}
	o := c.Dataplane.Options()
	o.ReplaceIncompatible = true // a changed table/ring size recreates that map (logged)
	o.Logf = d.opts.Logf
	if d.dp, err = dataplane.Load(o); err != nil {
		return err
	}
	// The allow and block lists are the enforcement layer's to reconcile
	// (setupEnforce): the static entries of the configuration, the
	// never-block guardrail and the decisions in force.
	if _, err := d.dp.PrunePinnedLinks([]string{c.Bridge.Inside, c.Bridge.Outside}); err != nil {
		return err
	}
	for _, p := range []struct {
		name string
		role dataplane.PortRole
	}{{c.Bridge.Inside, dataplane.RoleInside}, {c.Bridge.Outside, dataplane.RoleOutside}} {
		a, err := d.dp.Attach(p.name, p.role, c.Dataplane.Mode)
		if err != nil {
			return err
		}
		d.attach = append(d.attach, a)
		d.ports[uint32(a.Ifindex)] = a.Ifname
	}
	if d.rd, err = d.dp.NewReader(); err != nil {
		return err
	}
	if err := d.setupEnforce(); err != nil {
		d.rd.Close()
		return err
	}
	if err := d.setupDetect(); err != nil {
		d.closeEnforce()
		d.rd.Close()
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), &collector{d: d})
	d.mgmt, err = mgmt.Listen(mgmt.Options{
		Listen:    c.Management.Listen,
		Gatherer:  reg,
		Health:    d.Health,
		Status:    func() any { return d.Status() },
		Flows:     func(n int) any { return d.RecentFlows(n) },
		Alerts:    func(n int) any { return d.alerts.last(n) },
		Incidents: func() any { return d.eng.Incidents() },
		Enforcer:  d.enf,
		Token:     func() string { return d.token },
		Logf:      d.opts.Logf,
	})
	if err != nil {
		d.closeEnforce()
		d.closeDetect()
		d.rd.Close()
		return err
	}
	d.caps = "all (not dropped)"
	if d.opts.DropCapabilities {
		// A failure here leaves the daemon more privileged than it should
		// be, but forwarding works: say so loudly rather than stop.
		if err := privdrop.Drop(RuntimeCapabilities); err != nil {
			d.logf("capabilities: NOT dropped: %v", err)
		} else {
			d.caps = RuntimeCapabilities.String()
			d.logf("capabilities: kept only %s on every thread (bounding set too, no_new_privs)", d.caps)
		}
	}
	return nil
}

func (d *Daemon) run(ctx context.Context) error {
	d.running.Store(time.Now().UnixNano())
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup

	wg.Add(1)
	go func() {
		defer wg.Done()
		h := handler{d: d}
		if err := d.rd.Run(h); err != nil {
			d.mu.Lock()
			d.readErr = err
			d.mu.Unlock()
			d.logf("event reader stopped: %v", err)
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.dp.RunSweeper(ctx, d.cfg.Dataplane.SweepInterval, func(err error) { d.logf("%v", err) })
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.housekeeping(ctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.runEnforce(ctx)
	}()
	mgmtErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		mgmtErr <- d.mgmt.Serve(ctx)
	}()
	d.logf("wardlined running: bridge %s (%s inside, %s outside), XDP %s mode, management on %s",
		d.cfg.Bridge.Name, d.cfg.Bridge.Inside, d.cfg.Bridge.Outside, d.cfg.Dataplane.Mode, d.mgmt.Addr())
	if d.opts.Ready != nil {
		d.opts.Ready(d)
	}

	var err error
	select {
	case <-ctx.Done():
	case err = <-mgmtErr:
	}
	cancel()
	d.rd.Close()
	wg.Wait()
	d.closeDetect()
	d.closeEnforce()
	d.logf("wardlined stopped; the XDP fast path stays attached and pinned in %s (traffic keeps flowing)", d.cfg.Dataplane.PinDir)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// handler is the daemon's own event consumer; it forwards to subscribers.
type handler struct{ d *Daemon }

func (h handler) HandleFlow(f *event.Flow) {
	d := h.d
	if f.Final {
		d.flows.add(f)
	}
	if d.cfg.Log.Flows && d.flowLog.allow() {
		d.logf("flow %s", d.formatFlow(f))
	}
	for _, s := range d.opts.Handlers {
		s.HandleFlow(f)
	}
}

func (h handler) HandleSnippet(s *event.Snippet) {
	d := h.d
	if d.cfg.Log.Snippets && d.flowLog.allow() {
		d.logf("snippet %s %s %s %d/%d bytes", s.Kind, s.Dir, s.Key, len(s.Data), s.PayloadLen)
	}
	for _, sub := range d.opts.Handlers {
		sub.HandleSnippet(s)
	}
}

func (d *Daemon) port(ifindex uint32) string {
	if n, ok := d.ports[ifindex]; ok {
		return n
	}
	if ifindex == 0 {
		return "-"
	}
	return fmt.Sprintf("if%d", ifindex)
}

func (d *Daemon) formatFlow(f *event.Flow) string {
	return fmt.Sprintf("%s via %s: orig %d pkts %d B, resp %d pkts %d B, %s%s, %.3fs",
		f.Key, d.port(f.Ifindex[0]), f.Packets[0], f.Bytes[0], f.Packets[1], f.Bytes[1],
		f.Reason, map[bool]string{true: "", false: " (interim)"}[f.Final], f.LastSeen.Sub(f.FirstSeen).Seconds())
}

// Dataplane exposes the loaded fast path (tests, and the enforcement layer
// later).
func (d *Daemon) Dataplane() *dataplane.Dataplane { return d.dp }

// MgmtAddr returns the management server's bound address.
func (d *Daemon) MgmtAddr() string { return d.mgmt.Addr().String() }
