package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wardline/wardline/dataplane"
)

// benchNice is the nice value of every traffic generator and sink. The
// build machines are shared: another tenant's compiler on the generator's
// CPU would otherwise take a varying share of it in every measurement.
// It applies to baseline and candidate alike, and leaves the other
// tenants the CPU time the benchmark does not use.
const benchNice = -10

// tcpResult is one iperf3 measurement.
type tcpResult struct {
	Gbps float64
	// KernelNsPerMB: softirq + system time of both CPUs per MB
	// received: everything the kernel did for the transfer (sender,
	// box, receiver), a cost that the time the hypervisor takes away
	// does not change.
	KernelNsPerMB float64
	// Steal: the largest share of a CPU's time the hypervisor gave to
	// other guests during the measurement.
	Steal float64
}

// tcp runs one iperf3 TCP measurement. The client is pinned to genCPU,
// where the box's forwarding runs as softirq (the veth transmit path), and
// the server to the other CPU, so that every round has the same placement.
func (b *benchRun) tcp(ctx context.Context, streams int) (tcpResult, error) {
	srv, err := startIn(ctx, b.w.Dst, "nice", "-n", strconv.Itoa(benchNice), "taskset", "-c", strconv.Itoa(1-genCPU), "iperf3", "-s", "-1", "-B", b.w.DstAddr)
	if err != nil {
		return tcpResult{}, err
	}
	defer func() {
		unix.Kill(-srv.Process.Pid, unix.SIGKILL) // its process group: see command
		srv.Wait()
	}()
	secs := strconv.Itoa(int(b.opts.Duration.Seconds())) // whole seconds: see Options.defaults
	args := []string{"nice", "-n", strconv.Itoa(benchNice), "taskset", "-c", strconv.Itoa(genCPU), "iperf3", "-c", b.w.DstAddr, "-t", secs, "-P", strconv.Itoa(streams), "-J"}
	var out string
	var c0, c1 cpuStat
	for try := 0; ; try++ {
		// The server needs a moment to listen; retry instead of
		// sleeping long every time.
		time.Sleep(50 * time.Millisecond)
		if c0, err = readCPU(); err != nil {
			return tcpResult{}, err
		}
		out, err = b.w.Exec(ctx, b.w.Src, args...)
		if err == nil || try == 5 || ctx.Err() != nil || !strings.Contains(out, "Connection refused") {
			break
		}
	}
	if err != nil {
		return tcpResult{}, err
	}
	if c1, err = readCPU(); err != nil {
		return tcpResult{}, err
	}
	var r struct {
		End struct {
			SumReceived struct {
				Bytes         float64 `json:"bytes"`
				Seconds       float64 `json:"seconds"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return tcpResult{}, fmt.Errorf("parse iperf3 output: %w", err)
	}
	sum := r.End.SumReceived
	if sum.BitsPerSecond == 0 || sum.Bytes == 0 {
		return tcpResult{}, fmt.Errorf("iperf3 received nothing: %.300s", out)
	}
	res := tcpResult{Gbps: sum.BitsPerSecond / 1e9}
	kernel := c1.all.softirqNs + c1.all.sysNs - c0.all.softirqNs - c0.all.sysNs
	res.KernelNsPerMB = kernel / (sum.Bytes / 1e6)
	for i := range c1.cpus {
		if i < len(c0.cpus) && sum.Seconds > 0 {
			res.Steal = max(res.Steal, (c1.cpus[i].stealNs-c0.cpus[i].stealNs)/(sum.Seconds*1e9))
		}
	}
	return res, nil
}

// trafgenConfig is a 60-byte UDP frame (64 on the wire) from src to dst;
// the source port walks 1024..65535 so the flow table sees 64k flows.
func (b *benchRun) trafgenConfig() string {
	return fmt.Sprintf(`{
  eth(da=%s, sa=%s),
  ipv4(saddr=%s, daddr=%s, ttl=64),
  udp(sp=dinc(1024, 65535), dp=9),
  fill(0x00, 18)
}
`, b.w.DstMAC, b.w.SrcMAC, b.w.SrcAddr, b.w.DstAddr)
}

// trafgen saturates genCPU with 64-byte frames from the source for d, or,
// if frames > 0, sends exactly that many.
func (b *benchRun) trafgen(ctx context.Context, d time.Duration, frames int) error {
	f := filepath.Join(os.TempDir(), b.w.ID+".trafgen")
	if err := os.WriteFile(f, []byte(b.trafgenConfig()), 0o600); err != nil {
		return fmt.Errorf("write trafgen config: %w", err)
	}
	defer os.Remove(f)
	// One worker process (-P 1), which trafgen pins to CPU 0 = genCPU.
	args := []string{"nice", "-n", strconv.Itoa(benchNice), "trafgen", "-o", "eth0", "-i", f, "-P", "1", "-C"}
	if frames > 0 {
		args = append(args, "-n", strconv.Itoa(frames))
		d = 30 * time.Second // a safety net only
	}
	_, err := b.w.Exec(ctx, b.w.Src, append([]string{"timeout", fmt.Sprintf("%.3fs", d.Seconds())}, args...)...)
	if err != nil && (frames > 0 || !strings.Contains(err.Error(), "exit status 124")) {
		return err
	}
	return nil
}

// snapshot is every counter a packet measurement reads.
type snapshot struct {
	genFrames          uint64
	srcTx, srcTxDrop   uint64
	srcXmit, srcXmitEr uint64
	in0Rx              uint64
	dstRx              uint64
	xdpDrop            uint64
	xdpBlock           uint64
	nftDrop            uint64
	progNs, progRuns   uint64
	cpu                cpuStat
	at                 time.Time
}

var nftCounterRE = regexp.MustCompile(`counter packets (\d+)`)

func (b *benchRun) snap(ctx context.Context, gen Generator) (snapshot, error) {
	var s snapshot
	var err error
	if gen == Live {
		if s.genFrames, err = b.progs.frames(); err != nil {
			return s, err
		}
		es, err := b.w.ethtoolStats(ctx, b.w.Src, "eth0")
		if err != nil {
			return s, err
		}
		s.srcXmit, s.srcXmitEr = es["tx_queue_0_xdp_xmit"], es["tx_queue_0_xdp_xmit_errors"]
	}
	st, err := b.w.linkStats(b.w.Src, "eth0")
	if err != nil {
		return s, err
	}
	s.srcTx, s.srcTxDrop = st.TxPackets, st.TxDropped
	if st, err = b.w.linkStats(b.w.Box, "in0"); err != nil {
		return s, err
	}
	s.in0Rx = st.RxPackets
	if st, err = b.w.linkStats(b.w.Dst, "eth0"); err != nil {
		return s, err
	}
	s.dstRx = st.RxPackets
	if b.dp != nil {
		ds, err := b.dp.Stats()
		if err != nil {
			return s, err
		}
		s.xdpDrop = ds.Total[dataplane.StatDrop]
		if e, err := b.dp.Lists().Get(dataplane.BlockSrc, netip.MustParsePrefix(b.w.SrcAddr+"/32")); err == nil {
			s.xdpBlock = e.Packets
		}
	}
	if b.cfg == NftDrop {
		out, err := b.w.Exec(ctx, b.w.Box, "nft", "list", "chain", "bridge", nftTable, "pre")
		if err != nil {
			return s, err
		}
		m := nftCounterRE.FindStringSubmatch(out)
		if m == nil {
			return s, fmt.Errorf("no counter in the nft chain: %s", out)
		}
		s.nftDrop, _ = strconv.ParseUint(m[1], 10, 64)
	}
	if b.prog != nil {
		// Zero unless BPF run-time statistics are on (FigProg).
		if ps, err := b.prog.Stats(); err == nil {
			s.progNs, s.progRuns = uint64(ps.Runtime), ps.RunCount
		}
	}
	if s.cpu, err = readCPU(); err != nil {
		return s, err
	}
	s.at = time.Now()
	return s, nil
}

// pkts runs generator gen for d and returns what every counter saw.
//
// With warm, every flow is sent once before the counted window, so that a
// forwarding figure measures the steady state of a table holding all
// flows: set loads a fresh flow table for every measurement, and the
// share of flow creations would otherwise depend on the duration.
func (b *benchRun) pkts(ctx context.Context, gen Generator, d time.Duration, warm bool) (PktCount, error) {
	send := func(d time.Duration, frames int) error {
		if gen == Live {
			return b.liveGen(ctx, d, genCPU, frames)
		}
		return b.trafgen(ctx, d, frames)
	}
	if warm {
		if err := send(0, genFlows); err != nil {
			return PktCount{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	s0, err := b.snap(ctx, gen)
	if err != nil {
		return PktCount{}, err
	}
	t0 := time.Now()
	err = send(d, 0)
	el := time.Since(t0)
	if err != nil {
		return PktCount{}, err
	}
	s1, err := b.snap(ctx, gen)
	if err != nil {
		return PktCount{}, err
	}
	n := PktCount{
		Delivered: s1.in0Rx - s0.in0Rx,
		Forwarded: s1.dstRx - s0.dstRx,
		Secs:      el.Seconds(),
		SoftirqNs: s1.cpu.cpus[genCPU].softirqNs - s0.cpu.cpus[genCPU].softirqNs,
		SysNs:     s1.cpu.cpus[genCPU].sysNs - s0.cpu.cpus[genCPU].sysNs,
		SoftAllNs: s1.cpu.all.softirqNs - s0.cpu.all.softirqNs,
		UserNs:    s1.cpu.cpus[genCPU].userNs - s0.cpu.cpus[genCPU].userNs,
		IdleNs:    s1.cpu.cpus[genCPU].idleNs - s0.cpu.cpus[genCPU].idleNs,
		StealNs:   s1.cpu.cpus[genCPU].stealNs - s0.cpu.cpus[genCPU].stealNs,
		ProgNs:    float64(s1.progNs - s0.progNs),
		ProgRuns:  s1.progRuns - s0.progRuns,
	}
	if gen == Live {
		n.Offered = s1.genFrames - s0.genFrames
		n.XmitErr = s1.srcXmitEr - s0.srcXmitEr
	} else {
		// veth counts a frame the peer's backlog refused as a tx drop.
		n.XmitErr = s1.srcTxDrop - s0.srcTxDrop
		n.Offered = (s1.srcTx - s0.srcTx) + n.XmitErr
	}
	switch {
	case b.dp != nil:
		n.Dropped = s1.xdpDrop - s0.xdpDrop
		n.XDPDrops = s1.xdpBlock - s0.xdpBlock
	case b.cfg == NftDrop:
		n.Dropped = s1.nftDrop - s0.nftDrop
	}
	return n, nil
}

// PktCount is what one packet measurement counted, all deltas over the
// measurement. Every packet figure is checked against it: see check.
type PktCount struct {
	Offered   uint64  // frames the generator sent (trafgen: src tx; live: xdp_gen runs)
	XmitErr   uint64  // frames veth refused at the src end (live: in0's ring full; trafgen: backlog full)
	Delivered uint64  // frames that entered the box at in0
	Dropped   uint64  // frames the drop rule counted (wl_xdp drop counter / nft rule counter)
	XDPDrops  uint64  // frames the XDP blocklist entry counted (wl_xdp configs)
	Forwarded uint64  // frames dst's eth0 received
	Secs      float64 // generator wall time
	SoftirqNs float64 // softirq ns on genCPU
	SysNs     float64 // system ns on genCPU
	SoftAllNs float64 // softirq ns on all CPUs
	UserNs    float64 // user ns on genCPU
	IdleNs    float64 // idle ns on genCPU
	StealNs   float64 // ns the hypervisor gave genCPU's time to another guest
	ProgNs    float64 // run time of the config's XDP program (bpf_stats on only)
	ProgRuns  uint64  // runs of it
}

// check verifies that the counters tell one consistent story, so that a
// figure can never come from frames that went somewhere else: every
// offered frame entered the box or was refused (and counted) at the
// sender, and in a drop figure every frame that entered was dropped by the
// rule under test and none reached dst.
func (n PktCount) check(c Config, drop bool) error {
	if n.Delivered == 0 {
		return fmt.Errorf("no frame reached the box (offered %d)", n.Offered)
	}
	if n.Offered != n.Delivered+n.XmitErr {
		return fmt.Errorf("offered %d frames, box received %d, sender refused %d: %d unaccounted",
			n.Offered, n.Delivered, n.XmitErr, int64(n.Offered)-int64(n.Delivered+n.XmitErr))
	}
	if !drop {
		if n.Forwarded > n.Delivered {
			return fmt.Errorf("dst received %d frames, more than the %d the box received: foreign traffic on the wire", n.Forwarded, n.Delivered)
		}
		if n.Dropped != 0 {
			return fmt.Errorf("%s dropped %d frames in a forwarding figure", c, n.Dropped)
		}
		return nil
	}
	if n.Forwarded != 0 {
		return fmt.Errorf("%d of %d frames reached the destination: the drop rule does not work", n.Forwarded, n.Delivered)
	}
	if n.Dropped != n.Delivered {
		return fmt.Errorf("the drop rule counted %d drops for %d frames received", n.Dropped, n.Delivered)
	}
	if (c == XDPDrop || c == XDPDropNative) && n.XDPDrops != n.Dropped {
		return fmt.Errorf("the blocklist entry counted %d packets, the program %d drops", n.XDPDrops, n.Dropped)
	}
	return nil
}

func (n PktCount) addTo(m map[Config]*PPSResult, c Config, drop bool) {
	r := m[c]
	if r == nil {
		r = &PPSResult{}
		m[c] = r
	}
	count := float64(n.Forwarded)
	if drop {
		count = float64(n.Dropped)
	}
	if count == 0 {
		return
	}
	r.PPS.add(count / n.Secs)
	r.SoftirqN.add(n.SoftirqNs / count)
	r.SysN.add(n.SysNs / count)
	r.BothN.add((n.SoftirqNs + n.SysNs) / count)
	r.SoftirqAllN.add(n.SoftAllNs / count)
	if n.ProgRuns > 0 {
		r.ProgN.add(n.ProgNs / float64(n.ProgRuns))
	}
}

type cpuTime struct{ softirqNs, sysNs, userNs, idleNs, stealNs float64 }

type cpuStat struct {
	all  cpuTime
	cpus []cpuTime
}

// readCPU reads /proc/stat: softirq, system and busy time, summed and per
// CPU. Its unit is USER_HZ (100 per second on Linux); the kernel samples
// it at every tick (no IRQ time accounting here), so it is exact in the
// mean over a few hundred ticks.
func readCPU() (cpuStat, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuStat{}, fmt.Errorf("read /proc/stat: %w", err)
	}
	var st cpuStat
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		var v [9]float64
		for i := 1; i < 9 && i < len(f); i++ {
			x, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				return cpuStat{}, fmt.Errorf("parse /proc/stat line %q: %w", line, err)
			}
			v[i] = float64(x) * 1e9 / clockTicks
		}
		// user nice system idle iowait irq softirq steal
		t := cpuTime{softirqNs: v[6] + v[7], sysNs: v[3], userNs: v[1] + v[2], idleNs: v[4] + v[5], stealNs: v[8]}
		if f[0] == "cpu" {
			st.all = t
			continue
		}
		cpu, err := strconv.Atoi(f[0][3:])
		if err != nil {
			continue
		}
		for len(st.cpus) <= cpu {
			st.cpus = append(st.cpus, cpuTime{})
		}
		st.cpus[cpu] = t
	}
	if len(st.cpus) <= genCPU {
		return cpuStat{}, fmt.Errorf("/proc/stat has no line for CPU %d", genCPU)
	}
	return st, nil
}

// clockTicks is USER_HZ, the unit of /proc/stat (100 on Linux).
const clockTicks = 100
