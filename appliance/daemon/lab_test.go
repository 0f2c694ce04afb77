package daemon_test

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/wardline/wardline/appliance/daemon"
	"github.com/wardline/wardline/dataplane"
	"github.com/wardline/wardline/lab"
	"github.com/wardline/wardline/mgmt"
)

// Root integration tests of the wardlined binary in a lab: it builds the
// bridge from its config, attaches the fast path, serves the management
// API, and — killed, restarted or stopped — leaves the box forwarding and
// blocking.

var wardlinedBin string

func TestMain(m *testing.M) {
	lab.RunServiceIfRequested()
	code := func() int {
		if os.Geteuid() == 0 {
			dir, err := os.MkdirTemp("", "wardlined-test-")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(dir)
			wardlinedBin = filepath.Join(dir, "wardlined")
			// CGO_ENABLED=0 as in the image: wardlined then drops its
			// capabilities after setup, so every lab test below also checks
			// that daemon.RuntimeCapabilities suffice.
			build := exec.Command("go", "build", "-o", wardlinedBin, "../cmd/wardlined")
			build.Env = append(os.Environ(), "CGO_ENABLED=0")
			out, err := build.CombinedOutput()
			if err != nil {
				fmt.Fprintf(os.Stderr, "build wardlined: %v\n%s", err, out)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// box is a lab with a bpffs for the daemon's pins and a config file.
type box struct {
	l      *lab.Lab
	pinDir string
	cfg    string
	state  string // enforcement state directory (api-token, state.json, audit.log)
	mgmt   *mgmt.Client
}

func newBox(t *testing.T, mode dataplane.Mode) *box { return newBoxN(t, mode, 0) }

// newBoxN builds a lab with clients office clients (0: the default).
func newBoxN(t *testing.T, mode dataplane.Mode, clients int) *box {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root for network namespaces and XDP (CI runs as root)")
	}
	l := lab.ForTest(t, lab.Config{NoBoxBridge: true, Clients: clients})
	// The bpffs is mounted here, in the test's mount namespace, before the
	// daemon starts: `ip netns exec` gives the daemon a private copy of the
	// mount table, and pins on a bpffs mounted only there would vanish
	// with it.
	bpffs := t.TempDir()
	if err := unix.Mount("bpf", bpffs, "bpf", 0, "mode=0700"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(bpffs, unix.MNT_DETACH) })
	b := &box{l: l, pinDir: filepath.Join(bpffs, "wardline"), cfg: filepath.Join(t.TempDir(), "wardlined.json"), state: t.TempDir()}
	listen := netip.AddrPortFrom(l.Box.MgmtAddr, 9100)
	cfg := fmt.Sprintf(`{
  "bridge": {"name": "br0", "inside": %q, "outside": %q},
  "management": {"interface": %q, "listen": %q},
  "dataplane": {"xdp_mode": %q, "bpffs": %q, "pin_dir": %q,
    "idle_timeout": "2s", "close_timeout": "1s", "sweep_interval": "200ms",
    "allowlist": [%q]},
  "enforce": {"state_dir": %q},
  "log": {"flows": true}
}`, l.Box.Inside, l.Box.Outside, l.Box.Mgmt, listen, mode, bpffs, b.pinDir, l.Host("router").IPv4.String()+"/32", b.state)
	if err := os.WriteFile(b.cfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	b.mgmt = mgmt.NewClient(listen.String())
	b.mgmt.HTTP = l.Host("mgmt").HTTPClient()
	return b
}

// start runs wardlined in the box and waits until it reports healthy.
func (b *box) start(t *testing.T) *lab.Process {
	t.Helper()
	p, err := b.l.Host("box").Start(context.Background(), wardlinedBin, "-config", b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		h, err := b.mgmt.Health(context.Background())
		if err == nil && h.Healthy {
			tok, err := os.ReadFile(filepath.Join(b.state, "api-token"))
			if err != nil {
				t.Fatalf("API token: %v", err)
			}
			b.mgmt.Token = strings.TrimSpace(string(tok))
			return p
		}
		if time.Now().After(deadline) || !p.Alive() {
			log, _ := os.ReadFile(p.Log)
			t.Fatalf("wardlined not healthy (alive %v): %+v %v\nlog:\n%s", p.Alive(), h, err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (b *box) ping(t *testing.T, from string, to netip.Addr) error {
	t.Helper()
	_, err := b.l.Host(from).Run(context.Background(), "ping", "-c", "2", "-i", "0.2", "-W", "1", to.String())
	return err
}

// xdpProg returns the XDP program ID and mode on a box port, from the kernel.
func (b *box) xdpProg(t *testing.T, ifname string) (uint32, uint32) {
	t.Helper()
	var id, mode uint32
	err := b.l.Box.Do(func() error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		if x := l.Attrs().Xdp; x != nil && x.Attached {
			id, mode = x.ProgId, x.AttachMode
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return id, mode
}

func pins(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

func TestDaemonLifecycle(t *testing.T) {
	b := newBox(t, dataplane.ModeGeneric)
	web := b.l.Host("web").IPv4
	c2 := b.l.Host("client2").IPv4

	// No bridge yet: the office cannot reach the internet.
	if err := b.ping(t, "client1", web); err == nil {
		t.Fatal("traffic crosses the box before wardlined built the bridge")
	}
	d := b.start(t)
	if err := b.ping(t, "client1", web); err != nil {
		t.Fatalf("no traffic through the bridge wardlined built: %v", err)
	}
	in0, mode := b.xdpProg(t, "in0")
	out0, _ := b.xdpProg(t, "out0")
	if in0 == 0 || out0 == 0 || in0 != out0 || mode != 2 /* XDP_ATTACHED_SKB */ {
		t.Fatalf("xdp on in0 %d out0 %d mode %d, want one program in generic mode on both", in0, out0, mode)
	}
	wantPins := pins(t, b.pinDir)

	// Management API: status, recent flows, metrics.
	var st struct {
		Release      string `json:"release"`
		Capabilities string `json:"capabilities"`
		Ports        []struct {
			Interface string `json:"interface"`
			TxPackets uint64 `json:"tx_packets"`
		} `json:"ports"`
		Attachments []struct {
			Interface string `json:"interface"`
			Mode      string `json:"mode"`
			Reused    bool   `json:"reused_pinned_link"`
			LinkID    uint32 `json:"link_id"`
		} `json:"attachments"`
		Counters map[string]uint64 `json:"counters"`
	}
	if err := b.mgmt.Get(context.Background(), "/api/v1/status", &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Attachments) != 2 || st.Attachments[0].Reused || st.Counters["rx_packets"] == 0 {
		t.Errorf("status %+v", st)
	}
	if st.Release != "dev" || len(st.Ports) != 2 || st.Ports[0].TxPackets == 0 || st.Ports[1].TxPackets == 0 {
		t.Errorf("status: release %q, ports %+v; want dev (unstamped) and both ports forwarding", st.Release, st.Ports)
	}
	// Capabilities after setup: only the runtime set, on every thread.
	if st.Capabilities != daemon.RuntimeCapabilities.String() {
		t.Errorf("status: capabilities %q, want %q", st.Capabilities, daemon.RuntimeCapabilities.String())
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", d.PID))
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread exited
		}
		want := fmt.Sprintf("CapEff:\t%016x", uint64(daemon.RuntimeCapabilities))
		if !strings.Contains(string(b), want) || !strings.Contains(string(b), fmt.Sprintf("CapBnd:\t%016x", uint64(daemon.RuntimeCapabilities))) {
			t.Errorf("%s: want %s and the same bounding set:\n%s", f, want, b)
			break
		}
	}
	if len(tasks) < 2 {
		t.Errorf("found %d threads of wardlined (pid %d)", len(tasks), d.PID)
	}
	links := map[string]uint32{}
	for _, a := range st.Attachments {
		links[a.Interface] = a.LinkID
	}
	if _, err := b.l.Host("client1").Run(context.Background(), "curl", "-sS", "-o", "/dev/null", "http://"+web.String()+"/"); err != nil {
		t.Fatal(err)
	}
	var flows []struct {
		SrcIP    string `json:"src_ip"`
		DestIP   string `json:"dest_ip"`
		DestPort uint16 `json:"dest_port"`
		Reason   string `json:"reason"`
		InIface  string `json:"in_iface"`
	}
	deadline := time.Now().Add(5 * time.Second)
	found := false
	for !found && time.Now().Before(deadline) {
		if err := b.mgmt.Get(context.Background(), "/api/v1/flows", &flows); err != nil {
			t.Fatal(err)
		}
		for _, f := range flows {
			if f.DestIP == web.String() && f.DestPort == 80 && f.Reason == "fin" && f.InIface == "in0" {
				found = true
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !found {
		t.Errorf("the curl flow is not in /api/v1/flows: %+v", flows)
	}
	resp, err := b.mgmt.HTTP.Get("http://" + b.l.Box.MgmtAddr.String() + ":9100/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`wardline_dataplane_xdp_attached{interface="in0",mode="generic",role="inside"} 1`,
		`wardline_dataplane_ringbuf_reserve_failures_total{cpu="0",event="flow"} 0`,
		`wardline_dataplane_flow_evictions_total 0`,
		`wardline_dataplane_parse_errors_ipv6_ext_total`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	// Block client2 through the enforcement API (a manual decision; the
	// reconciler writes it into the XDP blocklist).
	if _, err := b.mgmt.AddDecision(context.Background(), mgmt.DecisionBody{Target: c2.String(), TTL: "10m", Reason: "lab test"}); err != nil {
		t.Fatal(err)
	}
	lists, err := dataplane.OpenLists(b.pinDir)
	if err != nil {
		t.Fatal(err)
	}
	defer lists.Close()
	if e, err := lists.Get(dataplane.BlockSrc, netip.PrefixFrom(c2, 32)); err != nil || time.Until(e.Expires) < 9*time.Minute {
		t.Fatalf("the decision is not in the pinned blocklist with its expiry: %+v %v", e, err)
	}
	if b.ping(t, "client2", web) == nil {
		t.Fatal("blocked client2 still reaches web")
	}

	// SIGKILL: forwarding and blocking go on without the daemon.
	if err := syscall.Kill(d.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	d.Wait()
	drops0, _ := lists.Get(dataplane.BlockSrc, netip.PrefixFrom(c2, 32))
	if err := b.ping(t, "client1", web); err != nil {
		t.Errorf("traffic stopped after SIGKILL: %v", err)
	}
	if b.ping(t, "client2", web) == nil {
		t.Error("the block stopped holding after SIGKILL")
	}
	drops1, _ := lists.Get(dataplane.BlockSrc, netip.PrefixFrom(c2, 32))
	if drops1.Packets <= drops0.Packets {
		t.Errorf("blocklist hits did not grow without the daemon: %d -> %d", drops0.Packets, drops1.Packets)
	}

	// Restart under continuous traffic: the daemon re-attaches to the
	// pinned links (same link IDs), swaps the program atomically, and no
	// second program appears; not one ping is lost.
	pinger, err := b.l.Host("client1").Start(context.Background(), "ping", "-c", "60", "-i", "0.05", "-W", "1", web.String())
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	d = b.start(t)
	// ping exits 0 even when some replies are missing: read its summary.
	pinger.Wait()
	if log, _ := os.ReadFile(pinger.Log); !strings.Contains(string(log), "60 received, 0% packet loss") {
		t.Errorf("pings lost across the restart:\n%s", log)
	}
	if err := b.mgmt.Get(context.Background(), "/api/v1/status", &st); err != nil {
		t.Fatal(err)
	}
	for _, a := range st.Attachments {
		if !a.Reused || a.LinkID != links[a.Interface] {
			t.Errorf("%s after restart: reused %v link %d, want the pinned link %d", a.Interface, a.Reused, a.LinkID, links[a.Interface])
		}
	}
	newIn0, _ := b.xdpProg(t, "in0")
	newOut0, _ := b.xdpProg(t, "out0")
	if newIn0 == in0 || newIn0 != newOut0 {
		t.Errorf("program ids after restart: in0 %d out0 %d (before %d); want one new program on both", newIn0, newOut0, in0)
	}
	if got := pins(t, b.pinDir); strings.Join(got, " ") != strings.Join(wantPins, " ") {
		t.Errorf("pins after restart %v, want %v", got, wantPins)
	}
	// The replaced program is released once nothing refers to it.
	deadline = time.Now().Add(5 * time.Second)
	for {
		p, err := ebpf.NewProgramFromID(ebpf.ProgramID(in0))
		if err != nil {
			break
		}
		p.Close()
		if time.Now().After(deadline) {
			t.Errorf("old program %d still loaded after the restart", in0)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if b.ping(t, "client2", web) == nil {
		t.Error("the block did not survive the restart")
	}

	// SIGTERM: clean exit, the box keeps forwarding and blocking.
	if err := syscall.Kill(d.PID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := d.Wait(); err != nil {
		t.Errorf("wardlined exited with %v after SIGTERM", err)
	}
	if err := b.ping(t, "client1", web); err != nil {
		t.Errorf("traffic stopped after SIGTERM: %v", err)
	}
	if b.ping(t, "client2", web) == nil {
		t.Error("the block stopped holding after SIGTERM")
	}

	// Uninstall: programs detached, the plain bridge forwards everything.
	if out, err := b.l.Host("box").Run(context.Background(), wardlinedBin, "-config", b.cfg, "-uninstall"); err != nil {
		t.Fatalf("uninstall: %v\n%s", err, out)
	}
	if id, _ := b.xdpProg(t, "in0"); id != 0 {
		t.Errorf("XDP program %d still on in0 after uninstall", id)
	}
	if err := b.ping(t, "client2", web); err != nil {
		t.Errorf("client2 blocked after uninstall: %v", err)
	}
}

// TestDaemonModeChange: a restart with the other XDP mode re-attaches in
// that mode instead of keeping the old link.
func TestDaemonModeChange(t *testing.T) {
	b := newBox(t, dataplane.ModeGeneric)
	d := b.start(t)
	syscall.Kill(d.PID, syscall.SIGTERM)
	d.Wait()
	cfg, _ := os.ReadFile(b.cfg)
	os.WriteFile(b.cfg, []byte(strings.Replace(string(cfg), `"generic"`, `"native"`, 1)), 0o644)
	b.start(t)
	for _, port := range []string{"in0", "out0"} {
		if id, mode := b.xdpProg(t, port); id == 0 || mode != 1 /* XDP_ATTACHED_DRV */ {
			t.Errorf("%s: program %d mode %d after switching to native", port, id, mode)
		}
	}
	if err := b.ping(t, "client1", b.l.Host("web").IPv4); err != nil {
		t.Errorf("no traffic in native mode: %v", err)
	}
}

// TestDaemonBadConfig: a broken config is refused with a precise message
// and changes nothing.
func TestDaemonBadConfig(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: wardlined is built only when root")
	}
	cfg := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(cfg, []byte(`{"bridge": {"name": "br0", "inside": "in0", "outside": "in0"}, "management": {"interface": "eth0", "listen": "1.2.3.4:0"}, "dataplane": {"xdp_mode": "auto"}}`), 0o644)
	out, err := exec.Command(wardlinedBin, "-config", cfg, "-check").CombinedOutput()
	if err == nil {
		t.Fatal("bad config accepted")
	}
	// 125: gokrazy's supervisor does not restart it (a restart cannot help).
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != daemon.ExitPermanent {
		t.Errorf("bad config: %v, want exit status %d", err, daemon.ExitPermanent)
	}
	if err := exec.Command(wardlinedBin, "-no-such-flag").Run(); err == nil || err.(*exec.ExitError).ExitCode() != daemon.ExitUsage {
		t.Errorf("bad flag: %v, want exit status %d", err, daemon.ExitUsage)
	}
	for _, want := range []string{"bridge.outside", "management.listen", "dataplane.xdp_mode"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("error output lacks %q:\n%s", want, out)
		}
	}
}

// TestDaemonCheckKernel: `wardlined -check-kernel` passes on this kernel
// (platform.md: every option is there) with nft and inspection on.
func TestDaemonCheckKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: wardlined is built only when root")
	}
	out, err := exec.Command(wardlinedBin, "-config", "../config/reference.json", "-check-kernel").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "every required option and BPF feature present") {
		t.Fatalf("-check-kernel: %v\n%s", err, out)
	}
}

// TestDaemonDetectsLive: the fast path's live events feed the detection
// engine inside wardlined; a port scan and a contact with a listed address
// from the office become alerts on the management API and in the EVE file,
// within a second of the decisive packet.
func TestDaemonDetectsLive(t *testing.T) {
	b := newBox(t, dataplane.ModeGeneric)
	dir := t.TempDir()
	eveFile := filepath.Join(dir, "eve.json")
	iocFile := filepath.Join(dir, "indicators.json")
	c2 := b.l.Host("c2").IPv4
	os.WriteFile(iocFile, []byte(fmt.Sprintf(`{"ips": [%q]}`, c2)), 0o644)
	cfg, _ := os.ReadFile(b.cfg)
	cfg = []byte(strings.Replace(string(cfg), `"log":`, fmt.Sprintf(`"detect": {"home_nets": ["198.18.0.0/24"], "eve": %q, "indicators": %q}, "log":`, eveFile, iocFile), 1))
	os.WriteFile(b.cfg, cfg, 0o644)
	b.start(t)

	attacker := b.l.Host("client1")
	web := b.l.Host("web").IPv4
	// A connect scan of 60 ports: closed ones answer with a reset.
	if _, err := attacker.ConnectScan(web, 1000, 1060, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := attacker.Run(context.Background(), "curl", "-sS", "-o", "/dev/null", "http://"+c2.String()+"/beacon"); err != nil {
		t.Fatal(err)
	}
	type alert struct {
		Type         string        `json:"type"`
		Attacker     string        `json:"attacker"`
		Risk         float64       `json:"risk_score"`
		TimeToDetect time.Duration `json:"time_to_detect"`
		Reasons      []any         `json:"risk_contributions"`
	}
	want := map[string]bool{"port_scan": false, "ioc_match": false}
	deadline := time.Now().Add(10 * time.Second)
	var alerts []alert
	for time.Now().Before(deadline) {
		if err := b.mgmt.Get(context.Background(), "/api/v1/alerts", &alerts); err != nil {
			t.Fatal(err)
		}
		for _, a := range alerts {
			if _, ok := want[a.Type]; ok && a.Attacker == attacker.IPv4.String() {
				want[a.Type] = true
				if a.TimeToDetect <= 0 || a.TimeToDetect > time.Second || a.Risk <= 0 || len(a.Reasons) == 0 {
					t.Errorf("%s alert: ttd %v risk %.0f reasons %d", a.Type, a.TimeToDetect, a.Risk, len(a.Reasons))
				}
			}
		}
		if want["port_scan"] && want["ioc_match"] {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !want["port_scan"] || !want["ioc_match"] {
		t.Fatalf("live alerts %+v, want a port scan and an IOC match by %s", alerts, attacker.IPv4)
	}
	time.Sleep(1200 * time.Millisecond) // the EVE file is flushed every second
	out, err := os.ReadFile(eveFile)
	if err != nil || !strings.Contains(string(out), `"event_type":"alert"`) || !strings.Contains(string(out), `"event_type":"flow"`) {
		t.Errorf("EVE file lacks alert/flow events (%v): %.300s", err, out)
	}
}
