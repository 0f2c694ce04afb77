package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wardline/wardline/dataplane"
	"github.com/wardline/wardline/detect/eval"
	"github.com/wardline/wardline/lab"
	"github.com/wardline/wardline/mgmt"
)

// TargetTTDP95 is issue 3's bound on the 95th percentile of time-to-detect.
const TargetTTDP95 = time.Second

// TTDResult is the time-to-detect figure.
type TTDResult struct {
	// Offline: every alert of every corpus scenario (as make eval runs
	// them), opts.Rounds times. Interval: from the moment the event
	// carrying the decisive packet reached the engine to the alert
	// (the engine's processing time), seconds.
	OfflineSkipped string         `json:"offline_skipped,omitempty"`
	Offline        Sample         `json:"offline_s"`
	OfflineByType  map[string]int `json:"offline_alerts_by_type"`
	// Live: wardlined in a lab, detection on, Clients office clients each
	// connect-scanning Ports ports of the web host at once, in LiveRounds
	// rounds, each with a freshly started daemon. Interval: from
	// the capture of the decisive packet (the fast path's timestamp of the
	// flow's last packet, converted to wall-clock time) to the alert, as
	// the daemon records it (alert "time_to_detect"), seconds.
	LiveSkipped string `json:"live_skipped,omitempty"`
	Clients     int    `json:"clients"`
	Ports       int    `json:"ports"`
	XDPMode     string `json:"xdp_mode"`
	Live        Sample `json:"live_s"`     // port_scan alerts of the scanning clients
	LiveP95     Sample `json:"live_p95_s"` // each round's P95
	// LiveClient: a bound from the scanners' own clock, independent of
	// the daemon's conversion of capture times: from the moment the
	// scanner began the connect() of the decisive (threshold-th) port,
	// before its SYN left, to the alert's emission (its timestamp plus
	// its time_to_detect), seconds. The decisive packet (the reset, or
	// the last packet of the handshake) comes after that SYN, so this
	// is at least the true time-to-detect.
	LiveClient Sample `json:"live_client_s"`
	// LiveOther: every other alert the daemon raised meanwhile.
	LiveOther      map[string]int `json:"live_other_alerts"`
	LiveScanAlerts int            `json:"live_scan_alerts"`
	LiveRounds     int            `json:"live_rounds"`
	ScanSeconds    Sample         `json:"scan_s"` // wall time of all scans of a round, concurrently
}

// Percentile returns the p-th percentile (0..100) of s by the
// nearest-rank method (the value at or above p % of the sample).
func (s Sample) Percentile(p float64) float64 {
	if len(s.Values) == 0 {
		return 0
	}
	v := append([]float64(nil), s.Values...)
	sort.Float64s(v)
	i := int(math.Ceil(float64(len(v))*p/100)) - 1
	return v[max(0, min(len(v)-1, i))]
}

// TTD runs the time-to-detect figure.
func TTD(ctx context.Context, opts Options) (*TTDResult, error) {
	opts.defaults()
	res := &TTDResult{Clients: opts.ttdClients, Ports: opts.ttdPorts, XDPMode: "generic", LiveRounds: opts.Rounds,
		OfflineByType: map[string]int{}, LiveOther: map[string]int{}}
	if dir, err := corpusDir(opts.Corpus); err != nil {
		res.OfflineSkipped = err.Error()
	} else if err := ttdOffline(ctx, filepath.Join(dir, "generated"), opts, res); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		res.LiveSkipped = "not root: no lab"
		return res, nil
	}
	if err := ttdLive(ctx, opts, res); err != nil {
		return nil, fmt.Errorf("live time-to-detect: %w", err)
	}
	return res, nil
}

func ttdOffline(ctx context.Context, dir string, opts Options, res *TTDResult) error {
	scs, err := eval.LoadScenarios(dir)
	if err != nil {
		return err
	}
	for r := 0; r < opts.Rounds; r++ {
		n := len(res.Offline.Values)
		for _, sc := range scs {
			er, err := eval.Run(ctx, dir, sc, nil)
			if err != nil {
				return fmt.Errorf("offline time-to-detect: %w", err)
			}
			for _, a := range er.Alerts {
				res.Offline.add(a.TimeToDetect.Seconds())
				if r == 0 {
					res.OfflineByType[a.Type]++
				}
			}
		}
		opts.Logf("round %d ttd offline: %d alerts over %d scenarios", r+1, len(res.Offline.Values)-n, len(scs))
	}
	return nil
}

// scanThreshold is the scan detector's default VerticalPorts: the
// threshold-th distinct port is the decisive probe.
const scanThreshold = 25

// ttdLive runs wardlined in a lab and has the office clients scan.
func ttdLive(ctx context.Context, opts Options, res *TTDResult) (err error) {
	wardlined, err := wardlinedBinary(opts)
	if err != nil {
		return err
	}
	l, pinDir, down, err := daemonLab(ctx, "ttd live", opts.ttdClients, opts.Logf)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, down()) }()
	listen := netip.AddrPortFrom(l.Box.MgmtAddr, 9100)
	cfgPath := filepath.Join(l.Dir, "wardlined.json")
	cfg := fmt.Sprintf(`{
  "bridge": {"name": "br0", "inside": %q, "outside": %q},
  "management": {"interface": %q, "listen": %q},
  "dataplane": {"xdp_mode": %q, "bpffs": %q, "pin_dir": %q, "allowlist": [%q, %q]},
  "detect": {"home_nets": ["198.18.0.0/24"]},
  "enforce": {"state_dir": %q},
  "log": {"flows": false, "alerts": true}
}
`, l.Box.Inside, l.Box.Outside, l.Box.Mgmt, listen, res.XDPMode, filepath.Dir(pinDir), pinDir, l.Host("router").IPv4.String()+"/32", l.Resolver.String()+"/32",
		filepath.Join(l.Dir, "wardline-state"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("write wardlined config: %w", err)
	}
	for r := 0; r < opts.Rounds; r++ {
		if err := ttdLiveRound(ctx, l, wardlined, cfgPath, listen, opts, res); err != nil {
			return fmt.Errorf("round %d: %w", r+1, err)
		}
		opts.Logf("round %d ttd live: %d clients scanned %d ports each in %.2f s; %d port_scan alerts so far, other alerts %v",
			r+1, opts.ttdClients, opts.ttdPorts, last(res.ScanSeconds), res.LiveScanAlerts, res.LiveOther)
	}
	return nil
}

// ttdLiveRound starts wardlined (a fresh engine: no alert of an earlier
// round is deduplicated into), lets every client scan the web host, reads
// the alerts and stops the daemon.
func ttdLiveRound(ctx context.Context, l *lab.Lab, wardlined, cfgPath string, listen netip.AddrPort, opts Options, res *TTDResult) error {
	daemon, err := l.Host("box").Start(ctx, wardlined, "-config", cfgPath)
	if err != nil {
		return fmt.Errorf("start wardlined: %w", err)
	}
	defer daemon.Stop()
	client := mgmt.NewClient(listen.String())
	client.HTTP = l.Host("mgmt").HTTPClient()
	if err := waitDaemon(ctx, client, daemon, 20*time.Second); err != nil {
		return err
	}

	// The scans, all clients at once. Each records when it began the
	// connect() of every port.
	web := l.Host("web").IPv4
	clients := l.Clients()
	began := make([][]time.Time, len(clients))
	var wg sync.WaitGroup
	errs := make([]error, len(clients))
	scanStart := time.Now()
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.Do(func() error {
				d := net.Dialer{Timeout: time.Second}
				for p := 0; p < opts.ttdPorts; p++ {
					began[i] = append(began[i], time.Now())
					conn, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(web, uint16(2000+p)).String())
					if err == nil {
						conn.Close()
					}
				}
				return ctx.Err()
			})
		}()
	}
	wg.Wait()
	res.ScanSeconds.add(time.Since(scanStart).Seconds())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("scan: %w", err)
	}

	// The alerts: one port_scan per client is expected.
	alerts, byAddr, err := waitScanAlerts(ctx, client, clients)
	if err != nil {
		return err
	}
	scans := 0
	var round Sample
	for _, a := range alerts {
		i, ok := byAddr[a.Attacker]
		if !ok || a.Type != "port_scan" {
			res.LiveOther[a.Type+"/"+a.Subtype+" by "+a.Attacker]++
			continue
		}
		scans++
		res.Live.add(a.TTD.Seconds())
		round.add(a.TTD.Seconds())
		if len(began[i]) >= scanThreshold {
			emitted := a.Time.Add(a.TTD)
			res.LiveClient.add(emitted.Sub(began[i][scanThreshold-1]).Seconds())
		}
	}
	res.LiveScanAlerts += scans
	res.LiveP95.add(round.Percentile(95))
	if scans < len(clients) {
		log, _ := os.ReadFile(daemon.Log)
		return fmt.Errorf("%d port_scan alerts for %d scanning clients (daemon log tail: %s)", scans, len(clients), lastLines(string(log), 10))
	}
	if err := daemon.Stop(); err != nil {
		return fmt.Errorf("stop wardlined: %w", err)
	}
	return nil
}

func waitDaemon(ctx context.Context, c *mgmt.Client, p *lab.Process, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		h, err := c.Health(ctx)
		if err == nil && h.Healthy {
			return nil
		}
		last = err
		if err == nil {
			last = errors.New(h.FirstError)
		}
		if !p.Alive() {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	log, _ := os.ReadFile(p.Log)
	return fmt.Errorf("wardlined not healthy after %v (alive %v): %v; log tail: %s", timeout, p.Alive(), last, lastLines(string(log), 10))
}

// unmountBPFFS unmounts the lab's bpffs (if mounted) and removes its
// mountpoint.
func unmountBPFFS(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) == nil && uint32(st.Type) == unix.BPF_FS_MAGIC {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
	}
	if err := os.Remove(dir); err != nil {
		return fmt.Errorf("remove bpffs mountpoint: %w", err)
	}
	return nil
}

// scanAlert is an alert as the live figures read it from the API.
type scanAlert struct {
	Type     string        `json:"type"`
	Subtype  string        `json:"subtype"`
	Attacker string        `json:"attacker"`
	Time     time.Time     `json:"timestamp"`
	TTD      time.Duration `json:"time_to_detect"`
}

// waitScanAlerts polls the daemon's alerts until every client has a
// port_scan alert, or for 10 s; byAddr maps a client's address to its
// index in clients.
func waitScanAlerts(ctx context.Context, client *mgmt.Client, clients []*lab.Host) (alerts []scanAlert, byAddr map[string]int, err error) {
	byAddr = map[string]int{}
	for i, c := range clients {
		byAddr[c.IPv4.String()] = i
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := client.Get(ctx, "/api/v1/alerts?limit=10000", &alerts); err != nil {
			return nil, nil, fmt.Errorf("read alerts: %w", err)
		}
		scans := 0
		for _, a := range alerts {
			if _, ok := byAddr[a.Attacker]; ok && a.Type == "port_scan" {
				scans++
			}
		}
		if scans >= len(clients) || time.Now().After(deadline) {
			return alerts, byAddr, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// wardlinedBinary is opts.Wardlined, or the wardlined next to the wardline
// binary, which must exist.
func wardlinedBinary(opts Options) (string, error) {
	wardlined := opts.Wardlined
	if wardlined == "" {
		w, err := wardlineBinary(opts.Wardline)
		if err != nil {
			return "", err
		}
		wardlined = filepath.Join(filepath.Dir(w), "wardlined")
	}
	if _, err := os.Stat(wardlined); err != nil {
		return "", fmt.Errorf("wardlined binary: %w (run `make build` first)", err)
	}
	return wardlined, nil
}

// daemonLab brings up a lab for a wardlined under test (no box bridge: the
// daemon builds it) and a bpffs for its pins mounted in the root mount
// namespace (`ip netns exec` would give the daemon a private one, and the
// pins would vanish with it). down tears both down.
func daemonLab(ctx context.Context, what string, clients int, logf func(string, ...any)) (l *lab.Lab, pinDir string, down func() error, err error) {
	for _, tool := range []string{"ip", "dnsmasq"} {
		if _, err := lookPath(tool); err != nil {
			return nil, "", nil, fmt.Errorf("the lab needs %s: %w (apt-get install iproute2 dnsmasq-base)", tool, err)
		}
	}
	start := time.Now()
	l, err = lab.Up(ctx, lab.Config{Clients: clients, NoBoxBridge: true, Logf: logf})
	if err != nil {
		return nil, "", nil, fmt.Errorf("lab up: %w", err)
	}
	bpffs := filepath.Join("/run/wardline", "bpffs-"+l.ID)
	down = func() error { return errors.Join(l.Down(), unmountBPFFS(bpffs)) }
	logf("%s: lab %s with %d clients up in %v", what, l.ID, clients, time.Since(start).Round(time.Millisecond))
	pinDir = filepath.Join(bpffs, "wardline")
	if err := dataplane.MountBPFFS(bpffs, pinDir); err != nil {
		return nil, "", nil, errors.Join(err, down())
	}
	return l, pinDir, down, nil
}
