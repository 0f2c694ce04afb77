package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// DefaultStateDir holds one directory per lab (state.json and logs/).
const DefaultStateDir = "/run/wardline/lab"

// ErrExists is returned by Up when Config.ID names a lab whose namespaces
// or state directory already exist.
var ErrExists = errors.New("lab already exists")

// Config says what lab Up builds. The zero value is a complete lab.
type Config struct {
	ID          string // optional; default "wl" + 4 random hex digits
	Clients     int    // number of office clients, default 3, at most MaxClients
	NoBoxBridge bool   // do not create br0 in the box: the daemon under test will
	NoServices  bool   // topology only: no dnsmasq, no Go servers
	StateDir    string // default DefaultStateDir; the lab uses StateDir/<ID>

	// ReadyTimeout bounds the wait for services to answer; default 20s.
	ReadyTimeout time.Duration `json:",omitempty"`
	// Logf receives progress and timing lines; default: discarded.
	Logf func(format string, args ...any) `json:"-"`
}

// Lab is a running lab. Its exported fields are plain data and are written
// to StateDir/<ID>/state.json, so that another process can Load it.
type Lab struct {
	ID     string
	Dir    string // StateDir/<ID>: state.json and logs/
	Config Config

	Box            Box
	Hosts          map[string]*Host  // by role: client1.., resolver, server1, server2, router, web, dns, c2, mirror, mgmt, box
	OfficeSwitch   Switch            // <id>-osw, bridge sw0
	InternetSwitch Switch            // <id>-isw, bridge sw0
	Resolver       netip.Addr        // the DNS server that office clients use: 198.18.0.53
	Names          map[string]string // lab DNS name → role of the host it names ("web.example.com" → "web")
	Namespaces     []string          // every namespace of the lab

	mu    sync.Mutex
	procs []*Process
	// owned is non-nil while Up builds in this process: the namespaces that
	// this process created. Down then deletes only these, never a namespace
	// of a lab that raced for the same ID.
	owned map[string]bool
	// incomplete is set by Load when the state file says Up never finished.
	incomplete bool
}

// Host is one network namespace with its main interface.
// IPv4 addresses are /24s and IPv6 addresses /64s.
type Host struct {
	Role     string // "client1", "web", …
	NS       string // namespace name, "<id>-<role>"
	Iface    string // main interface in NS
	IPv4     netip.Addr
	IPv6     netip.Addr // invalid (zero) for box and mgmt, which speak IPv4 only
	MAC      net.HardwareAddr
	Gateway4 netip.Addr // default route; zero for router, box, mgmt
	Gateway6 netip.Addr

	lab *Lab
}

// Port names an interface in a namespace.
type Port struct{ NS, Iface string }

// Switch is one of the lab's L2 switches: a bridge in its own namespace.
type Switch struct{ NS, Bridge string }

// Box describes the appliance namespace. Run commands in it with its
// Command/Run/Start/Do methods (or through Lab.Host("box")).
type Box struct {
	NS          string
	Inside      string     // "in0", towards the office switch
	Outside     string     // "out0", towards the router
	Bridge      string     // "br0", or "" when Config.NoBoxBridge
	Mgmt        string     // "mgmt0"
	MgmtAddr    netip.Addr // 198.18.254.1/24; the operator (Host("mgmt")) is 198.18.254.2
	InsidePeer  Port       // far end of in0: "box-in0" in the office switch
	OutsidePeer Port       // far end of out0: "lan0" in the router

	host *Host
}

// Host returns the host with the given role, or nil if there is none.
func (l *Lab) Host(role string) *Host { return l.Hosts[role] }

// Clients returns the office clients in order.
func (l *Lab) Clients() []*Host {
	var cs []*Host
	for i := 1; ; i++ {
		h := l.Hosts[fmt.Sprintf("client%d", i)]
		if h == nil {
			return cs
		}
		cs = append(cs, h)
	}
}

func (l *Lab) logf(format string, args ...any) {
	if l.Config.Logf != nil {
		l.Config.Logf(format, args...)
	}
}

// bind sets the back pointers that JSON does not carry.
func (l *Lab) bind() {
	for _, h := range l.Hosts {
		h.lab = l
	}
	l.Box.host = l.Hosts[roleBox]
}

// testHook, when set by tests, is called after each stage of Up
// ("namespaces", "links", "topology", "services"); an error fails Up there.
var testHook func(l *Lab, stage string) error

func (l *Lab) hook(stage string) error {
	if testHook == nil {
		return nil
	}
	if err := testHook(l, stage); err != nil {
		return fmt.Errorf("test hook at stage %s: %w", stage, err)
	}
	return nil
}

// Up builds a lab and, unless cfg.NoServices, starts its services and waits
// until they answer. On any failure it tears down what it built and returns
// the error. ctx bounds the build; services outlive it (stop them with Down).
func Up(ctx context.Context, cfg Config) (_ *Lab, err error) {
	if s := os.Getenv(envService); s != "" {
		return nil, fmt.Errorf("lab.Up called in a process started as lab service %q: call lab.RunServiceIfRequested() first in main/TestMain", s)
	}
	if cfg.Clients == 0 {
		cfg.Clients = 3
	}
	if cfg.Clients < 0 || cfg.Clients > MaxClients {
		return nil, fmt.Errorf("lab config: Clients = %d, want 1..%d", cfg.Clients, MaxClients)
	}
	if cfg.StateDir == "" {
		cfg.StateDir = DefaultStateDir
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 20 * time.Second
	}
	if cfg.ID != "" {
		if err := validateID(cfg.ID); err != nil {
			return nil, fmt.Errorf("lab config: %w", err)
		}
	}
	start := time.Now()
	id, err := claimID(cfg.StateDir, cfg.ID)
	if err != nil {
		return nil, err
	}
	cfg.ID = id

	p := newPlan(id, cfg.Clients, !cfg.NoBoxBridge)
	l := p.lab
	l.Config = cfg
	l.Dir = filepath.Join(cfg.StateDir, id)
	l.owned = map[string]bool{}
	l.bind()
	defer func() {
		if err != nil {
			if derr := l.Down(); derr != nil {
				err = errors.Join(err, fmt.Errorf("tear down after failed Up: %w", derr))
			}
		}
	}()
	if err := os.MkdirAll(l.logDir(), 0o755); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	// Written before anything is built so that `wardline lab down <id>`
	// can clean up after an Up that was killed half-way.
	if err := l.save(false); err != nil {
		return nil, err
	}
	if err := build(ctx, p); err != nil {
		return nil, err
	}
	l.logf("lab %s: topology built in %v", id, time.Since(start).Round(time.Millisecond))
	if !cfg.NoServices {
		t := time.Now()
		if err := l.startServices(ctx); err != nil {
			return nil, err
		}
		if err := l.hook("services"); err != nil {
			return nil, err
		}
		l.logf("lab %s: services ready in %v", id, time.Since(t).Round(time.Millisecond))
	}
	if err := l.save(true); err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.owned = nil // built completely: from now on the lab owns all its namespaces
	l.mu.Unlock()
	l.logf("lab %s: up in %v", id, time.Since(start).Round(time.Millisecond))
	return l, nil
}

// claimID picks (or checks) a lab ID and claims it by creating its state
// directory; an ID is free when neither its directory nor any namespace
// "<id>-*" exists.
func claimID(stateDir, want string) (string, error) {
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return "", fmt.Errorf("create state directory: %w", err)
	}
	for try := 0; try < 16; try++ {
		id := want
		if id == "" {
			var b [2]byte
			if _, err := rand.Read(b[:]); err != nil {
				return "", err
			}
			id = "wl" + hex.EncodeToString(b[:])
		}
		busy, err := namespacesWithPrefix(id + "-")
		if err != nil {
			return "", err
		}
		if len(busy) == 0 {
			err = os.Mkdir(filepath.Join(stateDir, id), 0o755)
			if err == nil {
				return id, nil
			}
			if !errors.Is(err, fs.ErrExist) {
				return "", fmt.Errorf("claim lab ID: %w", err)
			}
		}
		if want != "" {
			return "", fmt.Errorf("lab %s: %w (namespaces %v, state directory %s)", id, ErrExists, busy, filepath.Join(stateDir, id))
		}
	}
	return "", errors.New("claim lab ID: no free random ID after 16 tries")
}

func (l *Lab) logDir() string { return filepath.Join(l.Dir, "logs") }

// Down stops every tracked process, kills whatever else still runs in the
// lab's namespaces, deletes the namespaces (and with them every veth) and
// removes the lab's state directory. It keeps going on errors and returns
// them joined; it is idempotent. On error the state directory is kept so
// that Down can be retried (from another process through Load).
func (l *Lab) Down() error {
	start := time.Now()
	var errs []error

	l.mu.Lock()
	procs := append([]*Process(nil), l.procs...)
	var namespaces []string
	for _, ns := range l.Namespaces {
		if l.owned == nil || l.owned[ns] {
			namespaces = append(namespaces, ns)
		}
	}
	l.mu.Unlock()

	errs = append(errs, stopAll(procs, stopGrace))
	errs = append(errs, killInNamespaces(namespaces))
	for _, ns := range namespaces {
		if err := deleteNamespace(ns); err != nil {
			errs = append(errs, err)
		}
	}
	err := errors.Join(errs...)
	if err == nil && l.Dir != "" {
		if rerr := os.RemoveAll(l.Dir); rerr != nil {
			err = fmt.Errorf("remove state directory %s: %w", l.Dir, rerr)
		}
	}
	l.logf("lab %s: down in %v", l.ID, time.Since(start).Round(time.Millisecond))
	if err != nil {
		return fmt.Errorf("lab %s down: %w", l.ID, err)
	}
	return nil
}

// Processes returns the processes the lab tracks (services and Start).
func (l *Lab) Processes() []*Process {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Process(nil), l.procs...)
}

func (l *Lab) track(p *Process) error {
	l.mu.Lock()
	l.procs = append(l.procs, p)
	complete := l.owned == nil
	l.mu.Unlock()
	return l.save(complete)
}

// Do runs fn on a new OS thread inside the host's namespace; see Do.
func (h *Host) Do(fn func() error) error { return Do(h.NS, fn) }

// String returns "role (ns)".
func (h *Host) String() string { return fmt.Sprintf("%s (%s)", h.Role, h.NS) }

// Do runs fn on a new OS thread inside the box namespace; see Do.
func (b Box) Do(fn func() error) error { return Do(b.NS, fn) }

// Command returns a command that runs in the box namespace; see Host.Command.
func (b Box) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return b.host.Command(ctx, name, args...)
}

// Run runs a command in the box namespace; see Host.Run.
func (b Box) Run(ctx context.Context, name string, args ...string) (string, error) {
	return b.host.Run(ctx, name, args...)
}

// Start starts a tracked background command in the box namespace; see Host.Start.
func (b Box) Start(ctx context.Context, name string, args ...string) (*Process, error) {
	return b.host.Start(ctx, name, args...)
}

// tail returns the last n lines of s, trimmed.
func tail(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = append([]string{"…"}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// ConnectScan connect()s to TCP ports first..last-1 of target from the
// host, one after another with timeout each, as a simple port scanner
// does (closed ports answer with a reset), and returns how many were open.
func (h *Host) ConnectScan(target netip.Addr, first, last int, timeout time.Duration) (open int, err error) {
	err = h.Do(func() error {
		for p := first; p < last; p++ {
			if c, err := net.DialTimeout("tcp", netip.AddrPortFrom(target, uint16(p)).String(), timeout); err == nil {
				c.Close()
				open++
			}
		}
		return nil
	})
	return open, err
}

// HTTPClient returns an HTTP client whose connections are opened inside the
// host's namespace (the socket keeps the namespace it was created in, so
// the rest of the client runs anywhere).
func (h *Host) HTTPClient() *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var c net.Conn
				err := Do(h.NS, func() error {
					var err error
					c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
					return err
				})
				return c, err
			},
		},
	}
}
