package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Wire is the benchmark topology: the smallest honest bump-in-the-wire.
//
//	<id>-src: eth0 198.18.100.1 ──veth── in0 ┐
//	                                          <id>-box: br0 (STP off)
//	<id>-dst: eth0 198.18.100.2 ──veth── out0┘
//
// The box is the only forwarding hop, so a ratio against the bare bridge
// measures the fast path and nothing else the lab would add (an office
// switch, a router). Names carry the prefix "wlb", the PID and a random
// part; Close removes everything.
type Wire struct {
	ID               string
	Src, Box, Dst    string // namespace names
	SrcMAC, DstMAC   string
	SrcAddr, DstAddr string

	nl map[string]*netlink.Handle // per namespace, for counters
}

// WirePrefix starts the name of everything a Wire creates.
const WirePrefix = "wlb"

// NewWire builds the topology.
func NewWire(ctx context.Context) (_ *Wire, err error) {
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	// The PID in the name lets a later run remove what a killed run
	// left behind (SweepStale) without touching a live run's wire.
	id := fmt.Sprintf("%s%d-%s", WirePrefix, os.Getpid(), hex.EncodeToString(b[:]))
	w := &Wire{ID: id, Src: id + "-src", Box: id + "-box", Dst: id + "-dst",
		SrcMAC: "02:00:c6:12:64:01", DstMAC: "02:00:c6:12:64:02",
		SrcAddr: "198.18.100.1", DstAddr: "198.18.100.2", nl: map[string]*netlink.Handle{}}
	defer func() {
		if err != nil {
			w.Close()
		}
	}()
	cmds := [][]string{
		{"ip", "netns", "add", w.Src}, {"ip", "netns", "add", w.Box}, {"ip", "netns", "add", w.Dst},
		{"ip", "link", "add", "eth0", "netns", w.Src, "address", w.SrcMAC, "type", "veth", "peer", "name", "in0", "netns", w.Box},
		{"ip", "link", "add", "eth0", "netns", w.Dst, "address", w.DstMAC, "type", "veth", "peer", "name", "out0", "netns", w.Box},
		{"ip", "-n", w.Box, "link", "add", "br0", "type", "bridge", "stp_state", "0"},
		{"ip", "-n", w.Box, "link", "set", "in0", "master", "br0"},
		{"ip", "-n", w.Box, "link", "set", "out0", "master", "br0"},
	}
	// No IPv6 anywhere: router solicitations and MLD reports would cross
	// the box during a measurement and spoil the exact counter checks
	// (every frame the box received was dropped, none reached dst).
	for _, ns := range []string{w.Src, w.Box, w.Dst} {
		cmds = append(cmds,
			[]string{"ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"},
			[]string{"ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"},
			[]string{"ip", "-n", ns, "link", "set", "lo", "up"})
	}
	cmds = append(cmds, [][]string{
		{"ip", "-n", w.Src, "link", "set", "eth0", "up"}, {"ip", "-n", w.Dst, "link", "set", "eth0", "up"},
		{"ip", "-n", w.Box, "link", "set", "in0", "up"}, {"ip", "-n", w.Box, "link", "set", "out0", "up"},
		{"ip", "-n", w.Box, "link", "set", "br0", "up"},
		{"ip", "-n", w.Src, "addr", "add", w.SrcAddr + "/24", "dev", "eth0"},
		{"ip", "-n", w.Dst, "addr", "add", w.DstAddr + "/24", "dev", "eth0"},
		// Static neighbours: the pps generators send raw frames and no
		// ARP must cross the box during a measurement.
		{"ip", "-n", w.Src, "neigh", "replace", w.DstAddr, "lladdr", w.DstMAC, "dev", "eth0", "nud", "permanent"},
		{"ip", "-n", w.Dst, "neigh", "replace", w.SrcAddr, "lladdr", w.SrcMAC, "dev", "eth0", "nud", "permanent"},
	}...)
	for _, c := range cmds {
		if _, err := run(ctx, c...); err != nil {
			return nil, err
		}
	}
	// bridge-nf-call-* exist only with br_netfilter; off like the appliance.
	for _, k := range []string{"iptables", "ip6tables", "arptables"} {
		run(ctx, "ip", "netns", "exec", w.Box, "sysctl", "-qw", "net.bridge.bridge-nf-call-"+k+"=0")
	}
	for _, ns := range []string{w.Src, w.Box, w.Dst} {
		h, err := netns.GetFromName(ns)
		if err != nil {
			return nil, fmt.Errorf("open namespace %s: %w", ns, err)
		}
		nh, err := netlink.NewHandleAt(h)
		h.Close()
		if err != nil {
			return nil, fmt.Errorf("netlink handle in %s: %w", ns, err)
		}
		w.nl[ns] = nh
	}
	if err := w.waitForward(ctx); err != nil {
		return nil, err
	}
	return w, nil
}

// waitForward pings dst from src until a reply comes back. Right after the
// links come up, or a native XDP program changes a veth's features, the
// first frames can be lost, so one lost ping is not yet an error.
func (w *Wire) waitForward(ctx context.Context) error {
	var err error
	for try := 0; try < 5; try++ {
		if _, err = w.Exec(ctx, w.Src, "ping", "-c", "1", "-W", "1", w.DstAddr); err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("wire does not forward: %w", err)
	}
	return nil
}

// Close kills what runs in the namespaces and removes them (with their
// interfaces, and so any program still attached). It is safe to call on a
// partly built Wire and more than once.
func (w *Wire) Close() error {
	var errs []error
	for _, h := range w.nl {
		h.Close()
	}
	w.nl = nil
	names := []string{w.Src, w.Box, w.Dst}
	for _, pid := range pidsIn(names) {
		unix.Kill(pid, unix.SIGKILL)
	}
	for _, ns := range names {
		if _, err := os.Stat("/run/netns/" + ns); err == nil {
			if _, err := run(context.Background(), "ip", "netns", "del", ns); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// SweepStale removes the namespaces and temporary files of benchmark runs
// whose process is gone (killed before its cleanup could run). A Wire's
// namespaces are named "wlb<pid>-<random>-{src,box,dst}", its files in the
// temporary directory "wlb<pid>-<random>.*".
func SweepStale() error {
	var errs []error
	entries, err := os.ReadDir("/run/netns")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("list namespaces: %w", err))
	}
	for _, e := range entries {
		if !staleName(e.Name()) {
			continue
		}
		for _, p := range pidsIn([]string{e.Name()}) {
			unix.Kill(p, unix.SIGKILL)
		}
		if _, err := run(context.Background(), "ip", "netns", "del", e.Name()); err != nil {
			errs = append(errs, err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(os.TempDir(), WirePrefix+"*"))
	for _, f := range files {
		if staleName(filepath.Base(f)) {
			if err := os.Remove(f); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// staleName reports whether name belongs to a Wire whose process is gone.
func staleName(name string) bool {
	rest, ok := strings.CutPrefix(name, WirePrefix)
	if !ok {
		return false
	}
	pidStr, _, ok := strings.Cut(rest, "-")
	pid, err := strconv.Atoi(pidStr)
	if !ok || err != nil || pid <= 0 {
		return false
	}
	_, err = os.Stat(fmt.Sprintf("/proc/%d", pid))
	return errors.Is(err, os.ErrNotExist) // alive, or the PID was reused: leave it
}

// pidsIn lists the processes whose main thread is in one of the named
// namespaces (what `ip netns pids` prints), except this process: lab.Do
// may run on the main thread, and Go keeps a main thread whose locked
// goroutine exited parked in the namespace it was left in.
func pidsIn(names []string) []int {
	inos := map[uint64]bool{}
	for _, n := range names {
		var st unix.Stat_t
		if unix.Stat("/run/netns/"+n, &st) == nil {
			inos[st.Ino] = true
		}
	}
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+e.Name()+"/ns/net", &st) == nil && inos[st.Ino] {
			out = append(out, pid)
		}
	}
	return out
}

// Exec runs a command in namespace ns.
func (w *Wire) Exec(ctx context.Context, ns string, args ...string) (string, error) {
	return run(ctx, append([]string{"ip", "netns", "exec", ns}, args...)...)
}

func run(ctx context.Context, args ...string) (string, error) {
	out, err := command(ctx, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// command is exec.CommandContext for tools that start children (timeout
// runs trafgen, trafgen forks its workers): the command gets its own
// process group, and a cancelled ctx kills the whole group, not only the
// direct child. Orphans would otherwise keep sending and keep the output
// pipe open, so that Wait never returned. WaitDelay bounds that wait in
// any case.
func command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return unix.Kill(-cmd.Process.Pid, unix.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// linkStats reads the kernel's counters of dev in ns.
func (w *Wire) linkStats(ns, dev string) (netlink.LinkStatistics, error) {
	h := w.nl[ns]
	if h == nil {
		return netlink.LinkStatistics{}, fmt.Errorf("read counters of %s in %s: wire closed", dev, ns)
	}
	l, err := h.LinkByName(dev)
	if err != nil {
		return netlink.LinkStatistics{}, fmt.Errorf("read counters of %s in %s: %w", dev, ns, err)
	}
	if l.Attrs().Statistics == nil {
		return netlink.LinkStatistics{}, fmt.Errorf("read counters of %s in %s: kernel sent none", dev, ns)
	}
	return *l.Attrs().Statistics, nil
}

// ethtoolStats reads the driver counters (`ethtool -S`) of dev in ns; for
// veth they count xdp_frames per queue.
func (w *Wire) ethtoolStats(ctx context.Context, ns, dev string) (map[string]uint64, error) {
	out, err := w.Exec(ctx, ns, "ethtool", "-S", dev)
	if err != nil {
		return nil, err
	}
	m := map[string]uint64{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			m[strings.TrimSpace(k)] = n
		}
	}
	return m, nil
}

// setOffload switches one ethtool feature ("gro", "tso") of dev in ns.
func (w *Wire) setOffload(ctx context.Context, ns, dev, feature string, on bool) error {
	v := "off"
	if on {
		v = "on"
	}
	_, err := w.Exec(ctx, ns, "ethtool", "-K", dev, feature, v)
	return err
}

// startIn starts a background command in namespace ns.
func startIn(ctx context.Context, ns string, args ...string) (*exec.Cmd, error) {
	cmd := command(ctx, append([]string{"ip", "netns", "exec", ns}, args...)...)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", strings.Join(args, " "), ns, err)
	}
	return cmd, nil
}

func lookPath(tool string) (string, error) { return exec.LookPath(tool) }
