package bench

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Config names what the box runs during one measurement.
type Config string

const (
	Bare          Config = "bare"            // plain bridge, no XDP
	Pass          Config = "xdp-pass"        // xdp_pass_frags (bpf/bench), generic, both ports: the floor
	PassLinear    Config = "xdp-pass-linear" // xdp_pass (no frags support), generic, both ports
	PassNative    Config = "xdp-pass-native" // xdp_pass_frags, native, both ports
	Generic       Config = "xdp-generic"     // wl_xdp, generic mode, both ports
	Native        Config = "xdp-native"      // wl_xdp, native mode, both ports
	XDPDrop       Config = "xdp-drop"        // wl_xdp generic, source in the XDP blocklist
	XDPDropNative Config = "xdp-drop-native" // wl_xdp native, source in the XDP blocklist
	NftDrop       Config = "nft-drop"        // plain bridge, source in an nft bridge-family set (prerouting drop)
)

// Setup is how the ports' offloads are set; every configuration of one
// figure shares it, so bare and XDP always run with the same offloads.
type Setup string

const (
	// SetupDefault: veth defaults. The sender's TSO hands 64 KB
	// super-packets across the "wire"; the box's ports have GRO off.
	SetupDefault Setup = "default"
	// SetupWire: what a real wire does to an appliance. The hosts
	// segment to the MTU (TSO off on both, GSO stays on), the box's
	// ports aggregate with GRO (on by default on real NICs).
	SetupWire Setup = "wire-mtu"
	// SetupGRO: in0 has GRO on, so that veth accepts xdp_frames from
	// the live generator without a native program (it then builds skbs
	// in its NAPI poll, as a NIC driver does). Live-frame figures only.
	SetupGRO Setup = "gro-in0"
)

// Generator names the packet source of a packet figure.
type Generator string

const (
	// Trafgen: netsniff-ng's trafgen on a packet socket. Every frame
	// is an skb from the sender on, as on any veth.
	Trafgen Generator = "trafgen"
	// Live: xdp_gen under BPF_PROG_TEST_RUN in live-frame mode. Frames
	// reach in0 as xdp_frames, without an skb, as frames from a NIC
	// reach its driver.
	Live Generator = "live"
)

// genCPU is the CPU every packet generator and the iperf3 client run on.
// trafgen pins its worker i to CPU i itself (overriding taskset), so with
// one worker it is CPU 0; the others follow. The veth receive path, i.e.
// the whole box, runs as softirq on the sender's CPU.
const genCPU = 0

// Figures of a run, selectable with Options.Only.
const (
	FigTCP      = "tcp"       // iperf3, 1 stream, default offloads
	FigTCP4     = "tcp4"      // iperf3, 4 streams, default offloads
	FigTCPWire  = "tcpwire"   // iperf3, 1 stream, wire-MTU offloads
	FigPPS      = "pps"       // trafgen 64-byte forwarding
	FigLivePPS  = "livepps"   // live-frame 64-byte forwarding
	FigProg     = "prog"      // program run time per packet (bpf_stats), live frames, native
	FigDrop     = "drop"      // live-frame drop, XDP native vs nft
	FigDropSkb  = "dropskb"   // trafgen drop, XDP generic vs nft
	FigRing     = "ring"      // ring-buffer reader
	FigOffline  = "offline"   // detection engine offline vs ndpiReader (issue 3)
	FigMemory   = "memory"    // userspace memory per 1M tracked flows (issue 3)
	FigTTD      = "ttd"       // time-to-detect, offline and live (issue 3)
	FigNFQ      = "nfq"       // NFQUEUE verdicts/s: C reference, go-nfqueue, enforce/nfq (issue 4)
	FigContain  = "contain"   // time-to-contain, live in a lab with wardlined (issue 4)
	FigDecide   = "decisions" // decisions/s into the kernel: XDP, nft, through the Manager (issue 4)
	defaultFigs = "tcp,tcp4,tcpwire,pps,livepps,prog,drop,dropskb,ring,offline,memory,ttd,nfq,contain,decisions"
)

// wireFigure reports whether figure f needs the benchmark wire (and its
// tools); the ring, the detection-engine and the enforcement figures
// (a lab, or no network at all) do not.
func wireFigure(f string) bool {
	switch f {
	case FigRing, FigOffline, FigMemory, FigTTD, FigContain, FigDecide:
		return false
	}
	return true
}

// AllFigures lists every figure name in report order.
func AllFigures() []string { return strings.Split(defaultFigs, ",") }

// CheckFigures reports unknown figure names.
func CheckFigures(names []string) error {
	for _, n := range names {
		if !strings.Contains(","+defaultFigs+",", ","+n+",") {
			return fmt.Errorf("unknown figure %q (known: %s)", n, defaultFigs)
		}
	}
	return nil
}

// Options select the measurements.
type Options struct {
	Rounds int // alternating rounds per figure (default 5)
	// Duration of each TCP measurement, whole seconds (default 3s).
	Duration time.Duration
	// PktDuration of each packet measurement (default 1.5s): cost per
	// packet converges faster than TCP throughput (hundreds of thousands
	// of packets and ~375 scheduler ticks per measurement).
	PktDuration time.Duration
	Only        []string // figures to run (default all, see AllFigures)
	Logf        func(format string, args ...any)

	// Detection-engine figures (issue 3).
	Corpus    string // the evaluation corpus (default $WARDLINE_CORPUS, ../shared/corpus)
	Wardline  string // the wardline CLI that the offline figure runs (default: this executable)
	Wardlined string // the daemon for live time-to-detect and time-to-contain (default: next to Wardline)

	// offlineCopies: copies of the merged corpus in the offline figure's
	// long input (default 10: enough that start-up is a small share of
	// either process).
	offlineCopies int
	memFlows      int // flows of the memory figure (default 1,000,000)
	ttdClients    int // scanning clients of live time-to-detect (default 20)
	ttdPorts      int // ports each scans (default 40)

	// Enforcement figures (issue 4).
	containClients int     // scanning clients of time-to-contain (default 20)
	decScale       float64 // in (0, 1): the decisions figure's sizes scaled down (tests)
}

func (o *Options) defaults() {
	if o.Rounds <= 0 {
		o.Rounds = 5
	}
	if o.Duration <= 0 {
		o.Duration = 3 * time.Second
	}
	// iperf3 takes whole seconds.
	o.Duration = max(time.Second, o.Duration.Round(time.Second))
	if o.PktDuration <= 0 {
		o.PktDuration = 1500 * time.Millisecond
	}
	if len(o.Only) == 0 {
		o.Only = AllFigures()
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.offlineCopies <= 0 {
		o.offlineCopies = 10
	}
	if o.memFlows <= 0 {
		o.memFlows = 1_000_000
	}
	if o.ttdClients <= 0 {
		o.ttdClients = 20
	}
	if o.ttdPorts <= 0 {
		o.ttdPorts = 40
	}
	if o.containClients <= 0 {
		o.containClients = 20
	}
}

func (o *Options) want(fig string) bool {
	for _, f := range o.Only {
		if f == fig {
			return true
		}
	}
	return false
}

// Sample is one measured value series, in round order.
type Sample struct {
	Values []float64 `json:"values"`
}

func (s *Sample) add(v float64) { s.Values = append(s.Values, v) }

// Median returns the median value.
func (s Sample) Median() float64 {
	if len(s.Values) == 0 {
		return 0
	}
	v := append([]float64(nil), s.Values...)
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// MinMax returns the extremes.
func (s Sample) MinMax() (float64, float64) {
	if len(s.Values) == 0 {
		return 0, 0
	}
	lo, hi := s.Values[0], s.Values[0]
	for _, v := range s.Values {
		lo, hi = min(lo, v), max(hi, v)
	}
	return lo, hi
}

// PerRound returns s / base round by round (each round measures every
// configuration back to back, so the pairs share the machine's state).
func (s Sample) PerRound(base Sample) Sample {
	var r Sample
	for i := range min(len(s.Values), len(base.Values)) {
		if base.Values[i] != 0 {
			r.add(s.Values[i] / base.Values[i])
		}
	}
	return r
}

// TCPResult is one configuration's TCP measurement.
type TCPResult struct {
	Gbps Sample `json:"gbps"`
	// KernelNsPerMB: softirq + sys time of both CPUs per MB received:
	// what the transfer cost, rather than how fast it went. Steal (the
	// hypervisor running other guests, in bursts on these machines)
	// moves it less than it moves throughput, but it does move it.
	KernelNsPerMB Sample `json:"kernel_ns_per_mb"`
	// Steal: the largest share of a CPU the hypervisor gave to other
	// guests during the measurement.
	Steal Sample `json:"steal"`
}

// PPSResult is one configuration's 64-byte packet measurement.
type PPSResult struct {
	// PPS: packets per second forwarded to dst (forwarding figures) or
	// dropped by the box (drop figures), the generator saturating genCPU.
	PPS Sample `json:"pps"`
	// SoftirqN: softirq time on genCPU per forwarded/dropped packet: the
	// box's receive path (plus, when forwarding, dst's receive).
	SoftirqN Sample `json:"softirq_ns"`
	// SysN: system time on genCPU per packet: mostly the generator.
	SysN Sample `json:"sys_ns"`
	// BothN: softirq + system time on genCPU per packet: generator and
	// box together. 1/BothN is the rate one CPU doing both sustains,
	// whatever share of the wall time the CPU was given.
	BothN Sample `json:"softirq_plus_sys_ns"`
	// SoftirqAllN: softirq time summed over all CPUs per packet, a
	// cross-check that the box's work stayed on genCPU.
	SoftirqAllN Sample `json:"softirq_all_cpus_ns"`
	// ProgN: run time of the XDP program per run (kernel bpf_stats),
	// FigProg only.
	ProgN Sample `json:"prog_ns,omitempty"`
}

// FastpathResult holds every fast-path figure of a run.
type FastpathResult struct {
	Date       time.Time `json:"date"`
	Rounds     int       `json:"rounds"`
	Seconds    float64   `json:"seconds_per_tcp_measurement"`
	PktSeconds float64   `json:"seconds_per_packet_measurement"`
	Only       []string  `json:"figures"`
	// TCP figures by figure name (FigTCP, FigTCP4, FigTCPWire).
	TCP map[string]map[Config]*TCPResult `json:"tcp"`
	// Packet figures by name (FigPPS, FigLivePPS, FigProg, FigDrop, FigDropSkb).
	Pkts map[string]map[Config]*PPSResult `json:"pkts_64b"`
	Ring map[RingEvent]RingResult         `json:"ring"`
	// Detection-engine figures (issue 3).
	Offline *OfflineResult `json:"offline,omitempty"`
	Memory  *MemoryResult  `json:"memory,omitempty"`
	TTD     *TTDResult     `json:"ttd,omitempty"`
	// NFQUEUE inspection (issue 4).
	NFQ *NFQResult `json:"nfq,omitempty"`
	// Enforcement (issue 4): time-to-contain and decisions/s.
	Contain   *ContainResult   `json:"contain,omitempty"`
	Decisions *DecisionsResult `json:"decisions,omitempty"`
}

// tcpFigure and pktFigure describe what each figure measures.
type tcpFigure struct {
	name    string
	setup   Setup
	streams int
	cfgs    []Config
}

type pktFigure struct {
	name  string
	gen   Generator
	setup Setup
	drop  bool
	cfgs  []Config
}

var tcpFigures = []tcpFigure{
	{FigTCP, SetupDefault, 1, []Config{Bare, Pass, PassLinear, Generic, Native}},
	{FigTCP4, SetupDefault, 4, []Config{Bare, Pass, Generic}},
	{FigTCPWire, SetupWire, 1, []Config{Bare, Pass, Generic, Native}},
}

var pktFigures = []pktFigure{
	{FigPPS, Trafgen, SetupDefault, false, []Config{Bare, Pass, Generic, Native}},
	// Without a native program on in0, veth accepts xdp_frames only with
	// GRO on; xdp-native ignores the setting.
	{FigLivePPS, Live, SetupGRO, false, []Config{Bare, Generic, Native}},
	{FigProg, Live, SetupGRO, false, []Config{PassNative, Native}},
	{FigDrop, Live, SetupGRO, true, []Config{XDPDropNative, NftDrop}},
	{FigDropSkb, Trafgen, SetupDefault, true, []Config{XDPDrop, NftDrop}},
}

// Fastpath runs the benchmarks opts selects: those of issue 2 (bridge TCP
// throughput and 64-byte packet rate with the program attached vs the
// bare bridge, generic and native mode, next to the cost floor of an
// empty program; blocklist drops in XDP vs an nft bridge set; the
// ring-buffer reader) and those of issue 3 (the detection engine offline
// vs ndpiReader, memory per 1M tracked flows, time-to-detect; see
// detectFigures). Everything it creates is removed before it returns, also
// on error and when ctx is cancelled.
func Fastpath(ctx context.Context, opts Options) (*FastpathResult, error) {
	opts.defaults()
	if err := CheckFigures(opts.Only); err != nil {
		return nil, err
	}
	needWire := false
	for _, f := range opts.Only {
		needWire = needWire || wireFigure(f)
	}
	if needWire {
		if err := checkTools(); err != nil {
			return nil, err
		}
	}
	res := &FastpathResult{Date: time.Now().UTC(), Rounds: opts.Rounds,
		Seconds: opts.Duration.Seconds(), PktSeconds: opts.PktDuration.Seconds(), Only: opts.Only,
		TCP: map[string]map[Config]*TCPResult{}, Pkts: map[string]map[Config]*PPSResult{}, Ring: map[RingEvent]RingResult{}}

	if opts.want(FigRing) {
		for _, ev := range []RingEvent{RingFlow, RingDNS} {
			r, err := Ring(ev, 1_000_000, opts.Logf)
			if err != nil {
				return nil, fmt.Errorf("ring benchmark (%s): %w", ev, err)
			}
			res.Ring[ev] = r
		}
	}
	if err := detectFigures(ctx, opts, res); err != nil {
		return nil, err
	}
	if err := enforceFigures(ctx, opts, res); err != nil {
		return nil, err
	}
	if !needWire {
		return res, nil
	}

	if err := SweepStale(); err != nil {
		opts.Logf("removing namespaces of dead benchmark runs: %v", err)
	}
	b, err := newBenchRun(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := b.Close(); err != nil {
			opts.Logf("benchmark cleanup: %v", err)
		}
	}()

	for _, f := range tcpFigures {
		if !opts.want(f.name) {
			continue
		}
		m := map[Config]*TCPResult{}
		res.TCP[f.name] = m
		err := b.rounds(ctx, f.cfgs, f.setup, func(c Config, round int) error {
			if m[c] == nil {
				m[c] = &TCPResult{}
			}
			t, err := b.tcp(ctx, f.streams)
			if err != nil {
				return fmt.Errorf("tcp %s (%s offloads, %d streams): %w", c, f.setup, f.streams, err)
			}
			m[c].Gbps.add(t.Gbps)
			m[c].KernelNsPerMB.add(t.KernelNsPerMB)
			m[c].Steal.add(t.Steal)
			opts.Logf("round %d %-8s %-16s %6.2f Gbit/s, kernel CPU %4.0f us/MB, steal %2.0f%%",
				round+1, f.name, c, t.Gbps, t.KernelNsPerMB/1e3, t.Steal*100)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}

	for _, f := range pktFigures {
		if !opts.want(f.name) {
			continue
		}
		m := map[Config]*PPSResult{}
		res.Pkts[f.name] = m
		var stats io.Closer
		if f.name == FigProg {
			// Kernel run-time accounting of BPF programs, for this
			// figure only: it adds two clock reads to every run of
			// every program, so no other figure runs with it. It ends
			// when the descriptor is closed (or the process exits).
			if stats, err = ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME)); err != nil {
				return nil, fmt.Errorf("enable BPF run-time statistics: %w", err)
			}
		}
		err := b.rounds(ctx, f.cfgs, f.setup, func(c Config, round int) error {
			n, err := b.pkts(ctx, f.gen, opts.PktDuration, !f.drop)
			if err != nil {
				return fmt.Errorf("%s %s: %w", f.name, c, err)
			}
			if err := n.check(c, f.drop); err != nil {
				return fmt.Errorf("%s %s: %w", f.name, c, err)
			}
			n.addTo(m, c, f.drop)
			count := n.Forwarded
			if f.drop {
				count = n.Dropped
			}
			ms := func(ns float64) float64 { return ns / 1e6 / n.Secs } // ms per second of genCPU
			prog := ""
			if n.ProgRuns > 0 {
				prog = fmt.Sprintf(", program %.0f ns/run", n.ProgNs/float64(n.ProgRuns))
			}
			opts.Logf("round %d %-8s %-16s %8.0f pps, softirq %5.0f ns/pkt, sys %5.0f ns/pkt%s (offered %d, in0 %d, dropped %d, dst %d; CPU %d: softirq %.0f sys %.0f user %.0f idle %.0f steal %.0f ms/s)",
				round+1, f.name, c, float64(count)/n.Secs, n.SoftirqNs/float64(count), n.SysNs/float64(count), prog,
				n.Offered, n.Delivered, n.Dropped, n.Forwarded, genCPU, ms(n.SoftirqNs), ms(n.SysNs), ms(n.UserNs), ms(n.IdleNs), ms(n.StealNs))
			return nil
		})
		if stats != nil {
			stats.Close()
		}
		if err != nil {
			return nil, err
		}
	}
	if opts.want(FigNFQ) {
		if res.NFQ, err = b.nfqFigure(ctx); err != nil {
			return nil, fmt.Errorf("nfq figure: %w", err)
		}
	}
	return res, nil
}

// rounds measures every config of cfgs opts.Rounds times in alternating
// order.
func (b *benchRun) rounds(ctx context.Context, cfgs []Config, s Setup, measure func(Config, int) error) error {
	for r := 0; r < b.opts.Rounds; r++ {
		for _, c := range alternate(cfgs, r) {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := b.set(ctx, c, s); err != nil {
				return fmt.Errorf("set up %s (%s offloads): %w", c, s, err)
			}
			if err := measure(c, r); err != nil {
				return err
			}
		}
	}
	return nil
}

// alternate orders configs A B C in even rounds and C B A in odd ones, so
// slow drift of the machine does not favour one of them.
func alternate[T any](c []T, round int) []T {
	out := append([]T(nil), c...)
	if round%2 == 1 {
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	return out
}

// checkTools fails early, with the packages to install, when a tool the
// benchmark runs is missing.
func checkTools() error {
	for _, tool := range []string{"ip", "iperf3", "trafgen", "nft", "ethtool", "taskset", "timeout", "nice", "ping"} {
		if _, err := lookPath(tool); err != nil {
			return fmt.Errorf("benchmark needs %s: %w (apt-get install iproute2 iperf3 netsniff-ng nftables ethtool iputils-ping coreutils util-linux)", tool, err)
		}
	}
	return nil
}
