package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/wardline/wardline/dataplane"
	"github.com/wardline/wardline/lab"
	"github.com/wardline/wardline/mgmt"
)

// TargetContainP95 is issue 4's bound on the 95th percentile of
// time-to-contain for auto-enforced policies.
const TargetContainP95 = 100 * time.Millisecond

// enforceFigures runs the enforcement figures of issue 4 that opts selects
// (the nfq figure needs the benchmark wire and runs with the others).
func enforceFigures(ctx context.Context, opts Options, res *FastpathResult) error {
	if opts.want(FigContain) {
		c, err := Contain(ctx, opts)
		if err != nil {
			return fmt.Errorf("time-to-contain figure: %w", err)
		}
		res.Contain = c
	}
	if opts.want(FigDecide) {
		d, err := Decisions(ctx, opts)
		if err != nil {
			return fmt.Errorf("decisions figure: %w", err)
		}
		res.Decisions = d
	}
	return nil
}

// Settings of the time-to-contain figure.
const (
	containPorts  = 40                     // ports each client scans (the detector's threshold is 25)
	containProbe  = time.Millisecond       // each scanner's probe interval
	containDial   = 200 * time.Millisecond // connect timeout: a closed port answers at once, a blocked one never
	containPolicy = "contain-scanners"
	containTail   = 300 * time.Millisecond // probing after the last scan ended
)

// ContainResult is the time-to-contain figure.
//
// wardlined runs in a lab (generic XDP) with one policy in stage enforce:
// block the attacker of every port_scan alert in the XDP blocklist (scope
// xdp, TTL 10 min). Clients office clients, all at once, each
// connect-scan up to 40 closed ports of the web host, and each sends a
// steady stream of UDP echo probes (every ProbeMs) to the web host's echo
// port from the same address, recording when every probe was sent and
// which were answered. Every round starts a fresh daemon with an empty
// state directory and empty block tries. All intervals start at the
// alert's emission: its timestamp plus its time_to_detect, as the API
// reports them.
type ContainResult struct {
	Clients int     `json:"clients"`
	Ports   int     `json:"ports"`
	XDPMode string  `json:"xdp_mode"`
	ProbeMs float64 `json:"probe_interval_ms"`
	Rounds  int     `json:"rounds"`
	// Decided: alert emitted → the decision's Created time (the policy
	// evaluated it; the daemon's clock), seconds.
	Decided Sample `json:"decided_s"`
	// Applied: alert emitted → the moment the XDP backend began writing
	// the block (the trie entry's added time, read from the kernel's map
	// after the round), seconds.
	Applied Sample `json:"applied_s"`
	// From the attacker's side (its own clock): alert emitted → the send
	// time of its last answered probe (LastAnswered, a lower bound of the
	// moment its packets began to be dropped; negative when that probe
	// left before the alert) and of the first probe after it, never
	// answered (FirstDropped, the upper bound, which the target is judged
	// on), seconds.
	LastAnswered Sample `json:"last_answered_s"`
	FirstDropped Sample `json:"first_dropped_s"`
	RoundP95     Sample `json:"round_p95_s"` // each round's P95 of FirstDropped
	// Gap: FirstDropped − LastAnswered, the resolution of the bound (the
	// probe interval, stretched when the sender was not scheduled).
	Gap Sample `json:"gap_s"`
	// TTD: the alerts' time_to_detect (the interval before this one).
	TTD Sample `json:"ttd_s"`
	// Scanners: client-rounds; Contained: those whose probes stopped
	// being answered (must equal Scanners); LostBefore: probes
	// unanswered before a scanner's last answered one (UDP loss, not
	// blocking; should one fall just before the block, that scanner's
	// FirstDropped is one probe early), of ProbesSent.
	Scanners   int            `json:"scanners"`
	Contained  int            `json:"contained"`
	LostBefore int            `json:"probes_lost_before"`
	ProbesSent int            `json:"probes_sent"`
	Other      map[string]int `json:"other_alerts"`
	// PortsScanned: ports each scanner connected to before a connect
	// timed out (it was blocked) or it ran out of ports.
	PortsScanned Sample `json:"ports_scanned"`
}

// Contain runs the time-to-contain figure.
func Contain(ctx context.Context, opts Options) (res *ContainResult, err error) {
	opts.defaults()
	res = &ContainResult{Clients: opts.containClients, Ports: containPorts, XDPMode: "generic", ProbeMs: float64(containProbe) / 1e6,
		Rounds: opts.Rounds, Other: map[string]int{}}
	if os.Geteuid() != 0 {
		return nil, errors.New("the time-to-contain figure needs root (a lab with wardlined)")
	}
	wardlined, err := wardlinedBinary(opts)
	if err != nil {
		return nil, err
	}
	l, pinDir, down, err := daemonLab(ctx, "contain", opts.containClients, opts.Logf)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, down()) }()
	cr := &containRun{l: l, wardlined: wardlined, pinDir: pinDir, state: filepath.Join(l.Dir, "wardline-state"),
		cfg: filepath.Join(l.Dir, "wardlined.json"), listen: netip.AddrPortFrom(l.Box.MgmtAddr, 9100), opts: opts}
	conf := fmt.Sprintf(`{
  "bridge": {"name": "br0", "inside": %q, "outside": %q},
  "management": {"interface": %q, "listen": %q},
  "dataplane": {"xdp_mode": %q, "bpffs": %q, "pin_dir": %q, "allowlist": [%q, %q]},
  "detect": {"home_nets": ["198.18.0.0/24"]},
  "enforce": {"state_dir": %q,
    "policies": [{"id": %q, "match": {"types": ["port_scan"]}, "action": "block", "ttl": "10m", "scope": "xdp", "stage": "enforce"}]},
  "log": {"flows": false, "alerts": true}
}
`, l.Box.Inside, l.Box.Outside, l.Box.Mgmt, cr.listen, res.XDPMode, filepath.Dir(pinDir), pinDir, l.Host("router").IPv4.String()+"/32", l.Resolver.String()+"/32",
		cr.state, containPolicy)
	if err := os.WriteFile(cr.cfg, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("write wardlined config: %w", err)
	}
	for r := 0; r < opts.Rounds; r++ {
		if err := cr.round(ctx, res); err != nil {
			return nil, fmt.Errorf("round %d: %w", r+1, err)
		}
		opts.Logf("round %d contain: %d/%d scanners contained; first dropped probe %.1f ms after the alert (P95 of the round %.1f ms), decided %.2f ms, applied %.2f ms (medians so far)",
			r+1, res.Contained, res.Scanners, res.FirstDropped.Median()*1e3, last(res.RoundP95)*1e3, res.Decided.Median()*1e3, res.Applied.Median()*1e3)
	}
	return res, nil
}

type containRun struct {
	l                 *lab.Lab
	wardlined, pinDir string
	state, cfg        string
	listen            netip.AddrPort
	opts              Options
}

// prober is one scanner's probe stream: UDP datagrams carrying a sequence
// number to the web host's echo port.
type prober struct {
	conn     *net.UDPConn
	mu       sync.Mutex
	sent     []time.Time // by sequence number
	answered []bool
	n        int // answers received
}

func newProber(h *lab.Host, dst netip.AddrPort) (*prober, error) {
	p := &prober{}
	err := h.Do(func() error {
		var err error
		p.conn, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("probe socket in %s: %w", h, err)
	}
	go p.receive()
	return p, nil
}

func (p *prober) receive() {
	buf := make([]byte, 64)
	for {
		n, err := p.conn.Read(buf)
		if err != nil {
			return // closed
		}
		if n < 8 {
			continue
		}
		seq := binary.BigEndian.Uint64(buf)
		p.mu.Lock()
		if seq < uint64(len(p.answered)) && !p.answered[seq] {
			p.answered[seq] = true
			p.n++
		}
		p.mu.Unlock()
	}
}

// sendProbes sends one probe on every stream every interval until stop is
// closed. One goroutine serves all streams: one per stream, each waking
// 1000 times a second, stretched the gaps between probes to tens of
// milliseconds on two CPUs.
func sendProbes(ps []*prober, interval time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var b [16]byte
	for {
		for _, p := range ps {
			p.mu.Lock()
			seq := len(p.sent)
			p.sent = append(p.sent, time.Now())
			p.answered = append(p.answered, false)
			p.mu.Unlock()
			binary.BigEndian.PutUint64(b[:], uint64(seq))
			p.conn.Write(b[:]) // a blocked scanner's sends still succeed: the box drops them
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

func (p *prober) answers() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// bounds returns the send times of the last answered probe and of the
// one after it, and how many probes before the last answered one went
// unanswered; ok is false when the stream never stopped being answered.
func (p *prober) bounds() (lastAnswered, firstDropped time.Time, lost int, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	last := -1
	for i := len(p.answered) - 1; i >= 0; i-- {
		if p.answered[i] {
			last = i
			break
		}
	}
	if last < 0 || last+1 >= len(p.sent) {
		return time.Time{}, time.Time{}, 0, false
	}
	for i := 0; i < last; i++ {
		if !p.answered[i] {
			lost++
		}
	}
	return p.sent[last], p.sent[last+1], lost, true
}

// round starts wardlined with empty state, runs the probes and the scans,
// and reads the alerts, decisions and trie entries back.
func (cr *containRun) round(ctx context.Context, res *ContainResult) error {
	if err := os.RemoveAll(cr.state); err != nil {
		return err
	}
	daemon, err := cr.l.Host("box").Start(ctx, cr.wardlined, "-config", cr.cfg)
	if err != nil {
		return fmt.Errorf("start wardlined: %w", err)
	}
	defer daemon.Stop()
	client := mgmt.NewClient(cr.listen.String())
	client.HTTP = cr.l.Host("mgmt").HTTPClient()
	if err := waitDaemon(ctx, client, daemon, 20*time.Second); err != nil {
		return err
	}
	tok, err := os.ReadFile(filepath.Join(cr.state, "api-token"))
	if err != nil {
		return fmt.Errorf("API token: %w", err)
	}
	client.Token = strings.TrimSpace(string(tok))

	clients := cr.l.Clients()
	web := cr.l.Host("web").IPv4
	probers := make([]*prober, len(clients))
	defer func() {
		for _, p := range probers {
			if p != nil {
				p.conn.Close()
			}
		}
	}()
	for i, c := range clients {
		p, err := newProber(c, netip.AddrPortFrom(web, 7))
		if err != nil {
			return err
		}
		probers[i] = p
	}
	stop, sent := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sent)
		sendProbes(probers, containProbe, stop)
	}()
	stopped := false
	stopProbes := func() {
		if !stopped {
			close(stop)
			stopped = true
		}
		<-sent
	}
	defer stopProbes()
	// Every stream must be answered before the scans begin: nothing of
	// an earlier round blocks these clients any more.
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; i < len(probers); {
		if probers[i].answers() >= 20 {
			i++
			continue
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d probes answered in 5 s before the scan (blocked from an earlier round?)", clients[i], probers[i].answers())
		}
		time.Sleep(10 * time.Millisecond)
	}

	scanned := make([]int, len(clients))
	errs := make([]error, len(clients))
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.Do(func() error {
				d := net.Dialer{Timeout: containDial}
				for port := 0; port < containPorts; port++ {
					conn, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(web, uint16(2000+port)).String())
					scanned[i]++
					if err == nil {
						conn.Close()
						continue
					}
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						return nil // no answer: blocked
					}
				}
				return ctx.Err()
			})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	time.Sleep(containTail)
	stopProbes()
	time.Sleep(50 * time.Millisecond) // the last answers in flight

	alerts, byAddr, err := waitScanAlerts(ctx, client, clients)
	if err != nil {
		return err
	}
	emitted := make([]time.Time, len(clients))
	for _, a := range alerts {
		i, ok := byAddr[a.Attacker]
		if !ok || a.Type != "port_scan" {
			res.Other[a.Type+"/"+a.Subtype+" by "+a.Attacker]++
			continue
		}
		if !emitted[i].IsZero() {
			res.Other["second port_scan by "+a.Attacker]++
			continue
		}
		emitted[i] = a.Time.Add(a.TTD)
		res.TTD.add(a.TTD.Seconds())
	}
	ds, err := client.Decisions(ctx)
	if err != nil {
		return fmt.Errorf("read decisions: %w", err)
	}
	created := map[netip.Addr]time.Time{}
	for _, d := range ds {
		if d.Policy == containPolicy && d.Target.IsSingleIP() {
			created[d.Target.Addr()] = d.Created
		}
	}
	lists, err := dataplane.OpenLists(cr.pinDir)
	if err != nil {
		return err
	}
	defer lists.Close()

	var round Sample
	var problems []string
	for i, c := range clients {
		res.Scanners++
		res.PortsScanned.add(float64(scanned[i]))
		res.ProbesSent += len(probers[i].sent)
		if emitted[i].IsZero() {
			problems = append(problems, fmt.Sprintf("%s: no port_scan alert", c.Role))
			continue
		}
		cre, ok := created[c.IPv4]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: no decision of policy %s", c.Role, containPolicy))
			continue
		}
		res.Decided.add(cre.Sub(emitted[i]).Seconds())
		e, err := lists.Get(dataplane.BlockSrc, netip.PrefixFrom(c.IPv4, 32))
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: not in the XDP blocklist: %v", c.Role, err))
			continue
		}
		res.Applied.add(e.Added.Sub(emitted[i]).Seconds())
		la, fd, lost, ok := probers[i].bounds()
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: its probes were answered to the end (%d sent)", c.Role, len(probers[i].sent)))
			continue
		}
		res.Contained++
		res.LostBefore += lost
		res.LastAnswered.add(la.Sub(emitted[i]).Seconds())
		res.FirstDropped.add(fd.Sub(emitted[i]).Seconds())
		res.Gap.add(fd.Sub(la).Seconds())
		round.add(fd.Sub(emitted[i]).Seconds())
	}
	res.RoundP95.add(round.Percentile(95))
	if len(problems) > 0 {
		log, _ := os.ReadFile(daemon.Log)
		return fmt.Errorf("%s (daemon log tail: %s)", strings.Join(problems, "; "), lastLines(string(log), 10))
	}
	if err := daemon.Stop(); err != nil {
		return fmt.Errorf("stop wardlined: %w", err)
	}
	// The next round's daemon starts with empty state; its first
	// reconcile would remove these entries too, but the next round's
	// probes must not depend on when that runs.
	var ps []netip.Prefix
	for _, c := range clients {
		ps = append(ps, netip.PrefixFrom(c.IPv4, 32))
	}
	if err := lists.RemoveMany(dataplane.BlockSrc, ps); err != nil {
		return fmt.Errorf("clear the blocklist: %w", err)
	}
	return nil
}
