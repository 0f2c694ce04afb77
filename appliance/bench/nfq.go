package bench

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wardline/wardline/enforce/nfq"
)

// The NFQUEUE readers of the nfq figure (issue 4).
const (
	// ReaderC is the reference: libnetfilter_queue as its own example
	// uses it, one nfq_set_verdict per packet (nfqref/nfqref.c).
	ReaderC = "c"
	// ReaderCBatch is the same C reader draining the socket after each
	// wake-up and returning runs of accepts with nfq_set_verdict_batch:
	// what C reaches with the lean reader's technique.
	ReaderCBatch = "c-batch"
	// ReaderGoNFQ is github.com/florianl/go-nfqueue/v2 v2.0.2, tuned
	// (nfq_reader.go).
	ReaderGoNFQ = "go-nfqueue"
	// ReaderLean is enforce/nfq's Inspector.
	ReaderLean = "wardline"
)

// nfqReaders in report order; rounds alternate it.
var nfqReaders = []string{ReaderC, ReaderCBatch, ReaderGoNFQ, ReaderLean}

// TargetNFQ: the lean reader's verdicts/s over the C reference's.
const TargetNFQ = 1.0

// Settings every reader of the figure gets.
const (
	nfqQueue   = 3
	nfqMaxLen  = 4096     // kernel queue length; when full, fail-open passes packets uninspected
	nfqRcvBuf  = 64 << 20 // SO_RCVBUFFORCE
	nfqContent = "/c2/beacon"
	// nfqWarm: flood before the window opens, so that the queue is full
	// and the reader saturated when it does.
	nfqWarm = 300 * time.Millisecond
	nfqCPU  = 1 - genCPU // every reader runs here; the generator and the box's receive on genCPU
)

//go:embed nfqref/nfqref.c
var nfqrefSource []byte

// NFQResult is the nfq figure.
type NFQResult struct {
	Queue       uint16                      `json:"queue"`
	MaxQueueLen uint32                      `json:"max_queue_len"`
	Content     string                      `json:"content"`
	Readers     map[string]*NFQReaderResult `json:"readers"`
}

// NFQReaderResult is one reader's measurements, in round order.
type NFQReaderResult struct {
	// VPS: verdicts per second in the window, from the kernel's own
	// counters (packets the queue took minus the change of those
	// waiting), not from the reader.
	VPS Sample `json:"verdicts_per_s"`
	// CPUNs: the reader process's CPU time (user and system) per
	// verdict; it includes the kernel's forwarding of each accepted
	// packet, which runs in the verdict's system call.
	CPUNs Sample `json:"cpu_ns_per_verdict"`
	// CPUShare: the reader's CPU time over the window: below ~0.95 the
	// reader did not have its CPU to itself (other tenants, or it waited
	// for packets).
	CPUShare Sample `json:"cpu_share"`
	// Uninspected: share of the steered packets that the kernel passed
	// without queueing because the queue was full (fail-open).
	Uninspected Sample `json:"uninspected_share"`
	// PerRead: packets per wake-up of the reader (its own counters).
	PerRead Sample `json:"packets_per_read"`
}

// nfqBench is the steering rule and the compiled C reader on a wire.
type nfqBench struct {
	w    *Wire
	ns   string // the box's namespace path
	st   *nfq.Steering
	cref string // the C reference reader
	exe  string // this executable, for the Go readers
	sink bool   // nfqSinkTable exists in dst
}

// nfqSinkTable drops the flood at dst's ingress.
const nfqSinkTable = "wlbench_nfq_sink"

func newNFQBench(ctx context.Context, w *Wire) (_ *nfqBench, err error) {
	nb := &nfqBench{w: w, ns: filepath.Join("/run/netns", w.Box)}
	defer func() {
		if err != nil {
			nb.Close()
		}
	}()
	if nb.exe, err = os.Executable(); err != nil {
		return nil, fmt.Errorf("nfq: find this executable for the Go readers: %w", err)
	}
	if nb.cref, err = buildNFQRef(ctx, filepath.Join(os.TempDir(), w.ID+".nfqref")); err != nil {
		return nil, err
	}
	// A sink at dst's ingress: without it, every accepted frame went on
	// through dst's IP and UDP receive to the closed port 9 and an ICMP
	// port-unreachable attempt (route lookups before the rate limit), all
	// in the verdict's system call on the reader's CPU — work of the
	// veth wire, not of the box. dst's rx counter still counts the frames.
	sink := fmt.Sprintf("table netdev %s {\n chain in {\n  type filter hook ingress device eth0 priority 0; policy accept;\n  udp dport 9 drop\n }\n}\n", nfqSinkTable)
	f := filepath.Join(os.TempDir(), w.ID+".nfqsink.nft")
	if err := os.WriteFile(f, []byte(sink), 0o600); err != nil {
		return nil, fmt.Errorf("nfq: write the sink rules: %w", err)
	}
	defer os.Remove(f)
	if _, err := w.Exec(ctx, w.Dst, "nft", "-f", f); err != nil {
		return nil, fmt.Errorf("nfq: sink at dst: %w", err)
	}
	nb.sink = true
	if nb.st, err = nfq.Steer(nfq.SteerConfig{NetNS: nb.ns, Queue: nfqQueue}); err != nil {
		return nil, err
	}
	src := netip.MustParseAddr(w.SrcAddr)
	if err := nb.st.Add(nfq.Element{Prefix: netip.PrefixFrom(src, 32), Dir: nfq.Src, TTL: time.Hour}); err != nil {
		return nil, err
	}
	return nb, nil
}

// buildNFQRef compiles the embedded C reference reader to out.
func buildNFQRef(ctx context.Context, out string) (string, error) {
	if _, err := exec.LookPath("gcc"); err != nil {
		return "", fmt.Errorf("nfq: the C reference reader needs gcc: %w (apt-get install gcc libnetfilter-queue-dev)", err)
	}
	src := out + ".c"
	if err := os.WriteFile(src, nfqrefSource, 0o600); err != nil {
		return "", fmt.Errorf("nfq: write %s: %w", src, err)
	}
	defer os.Remove(src)
	if _, err := run(ctx, "gcc", "-O2", "-Wall", "-o", out, src, "-lnetfilter_queue"); err != nil {
		return "", fmt.Errorf("nfq: compile the C reference reader (apt-get install gcc libnetfilter-queue-dev): %w", err)
	}
	return out, nil
}

// Close removes the steering table (bridge-nf-call back to 0) and the C
// reader.
func (nb *nfqBench) Close() error {
	var errs []error
	if nb.st != nil {
		errs = append(errs, nb.st.Close())
	}
	if nb.cref != "" {
		os.Remove(nb.cref)
	}
	if nb.sink {
		if _, err := nb.w.Exec(context.Background(), nb.w.Dst, "nft", "delete", "table", "netdev", nfqSinkTable); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// nfqRunOpts is one measurement.
type nfqRunOpts struct {
	reader string
	maxLen uint32
	// Either a flood: window is measured after nfqWarm of flooding;
	// or exactly frames frames, sent at once and all awaited.
	window time.Duration
	frames int
	// payload of the UDP frames (18 bytes: 64-byte frames), zeros if nil.
	payload []byte
	// live: flood with the live-frame generator of this run instead of
	// trafgen (in0 needs GRO: SetupGRO).
	live *benchRun
}

// nfqRun is what one measurement counted.
type nfqRun struct {
	Reader string
	Counts nfqCounts       // the reader's own, printed when it ended
	Kernel nfq.KernelStats // the queue's kernel counters after the traffic
	// Whole run: packets the rule steered, dst received.
	Steered, DstRx uint64
	// The window (flood only): verdicts from the kernel's counters,
	// packets steered, taken into the queue, dst received, CPU.
	Verdicts, WSteered, WQueued, WDstRx uint64
	Secs                                float64
	BusyNs                              float64 // user + system + softirq of nfqCPU, whoever ran there
	ReaderNs                            float64 // user + system time of the reader process (includes the forwarding its verdicts do)
}

type nfqSnap struct {
	k        nfq.KernelStats
	at       time.Time
	steered  uint64
	dstRx    uint64
	cpu      cpuStat
	readerNs float64
}

// snap reads every counter; pid is the reader's (0: none).
func (nb *nfqBench) snap(pid int) (nfqSnap, error) {
	var s nfqSnap
	var err error
	if s.k, err = nfq.QueueStats(nb.ns, nfqQueue); err != nil {
		return s, err
	}
	s.at = time.Now()
	if s.cpu, err = readCPU(); err != nil {
		return s, err
	}
	if pid > 0 {
		if s.readerNs, err = procCPU(pid); err != nil {
			return s, err
		}
	}
	if s.steered, err = nb.st.Steered(); err != nil {
		return s, err
	}
	st, err := nb.w.linkStats(nb.w.Dst, "eth0")
	if err != nil {
		return s, err
	}
	s.dstRx = st.RxPackets
	return s, nil
}

// startReader starts a reader in the box, pinned to nfqCPU, and waits
// until it has bound the queue.
func (nb *nfqBench) startReader(ctx context.Context, o nfqRunOpts) (*exec.Cmd, *bufio.Reader, error) {
	args := []string{"ip", "netns", "exec", nb.w.Box, "nice", "-n", strconv.Itoa(benchNice), "taskset", "-c", strconv.Itoa(nfqCPU)}
	var env []string
	switch o.reader {
	case ReaderC, ReaderCBatch:
		args = append(args, nb.cref, "-q", strconv.Itoa(nfqQueue), "-m", strconv.Itoa(int(o.maxLen)),
			"-r", strconv.Itoa(nfqRcvBuf), "-c", nfqContent)
		if o.reader == ReaderCBatch {
			args = append(args, "-b")
		}
	case ReaderGoNFQ, ReaderLean:
		b, _ := json.Marshal(nfqReaderConfig{Reader: o.reader, Queue: nfqQueue, MaxLen: o.maxLen, RcvBuf: nfqRcvBuf, Content: nfqContent})
		env = append(os.Environ(), nfqReaderEnv+"="+string(b))
		args = append(args, nb.exe)
	default:
		return nil, nil, fmt.Errorf("unknown reader %q", o.reader)
	}
	cmd := command(ctx, args...)
	cmd.Env = env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start reader %s: %w", o.reader, err)
	}
	r := bufio.NewReader(out)
	ready := make(chan error, 1)
	go func() {
		line, err := r.ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("said %q", line)
		}
		ready <- err
	}()
	select {
	case err = <-ready:
	case <-time.After(10 * time.Second):
		err = errors.New("not ready after 10s")
	}
	if err != nil {
		unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		cmd.Wait()
		return nil, nil, fmt.Errorf("reader %s: %w: %s", o.reader, err, strings.TrimSpace(stderr.String()))
	}
	return cmd, r, nil
}

// stopReader ends a reader with SIGTERM and reads its counters.
func stopReader(cmd *exec.Cmd, r *bufio.Reader, name string) (nfqCounts, error) {
	var c nfqCounts
	if err := cmd.Process.Signal(unix.SIGTERM); err != nil {
		return c, fmt.Errorf("stop reader %s: %w", name, err)
	}
	line, rerr := r.ReadString('\n')
	io.Copy(io.Discard, r)
	werr := cmd.Wait()
	if werr != nil {
		return c, fmt.Errorf("reader %s: %w: %v", name, werr, cmd.Stderr)
	}
	if rerr != nil {
		return c, fmt.Errorf("reader %s: read its counters: %w", name, rerr)
	}
	if err := json.Unmarshal([]byte(line), &c); err != nil {
		return c, fmt.Errorf("reader %s: parse counters %q: %w", name, line, err)
	}
	return c, nil
}

// trafgenNFQ writes the flood's trafgen config: 64-byte UDP frames from
// src to dst port 9 (the source port walks, as in the pps figures).
func (nb *nfqBench) trafgenNFQ(payload []byte) (string, error) {
	fill := "fill(0x00, 18)"
	if payload != nil {
		if len(payload) != 18 || strings.ContainsAny(string(payload), "\"\\") {
			return "", fmt.Errorf("nfq: frame payload must be 18 bytes without quotes, not %q", payload)
		}
		fill = strconv.Quote(string(payload))
	}
	w := nb.w
	cfg := fmt.Sprintf("{\n  eth(da=%s, sa=%s),\n  ipv4(saddr=%s, daddr=%s, ttl=64),\n  udp(sp=dinc(1024, 65535), dp=9),\n  %s\n}\n",
		w.DstMAC, w.SrcMAC, w.SrcAddr, w.DstAddr, fill)
	f := filepath.Join(os.TempDir(), w.ID+".nfq.trafgen")
	if err := os.WriteFile(f, []byte(cfg), 0o600); err != nil {
		return "", fmt.Errorf("write trafgen config: %w", err)
	}
	return f, nil
}

// run measures one reader: start it, send traffic, wait until the queue
// is idle, read the kernel's counters, stop the reader, check that all
// counters agree.
func (nb *nfqBench) run(ctx context.Context, o nfqRunOpts) (nfqRun, error) {
	res := nfqRun{Reader: o.reader}
	cfgFile, err := nb.trafgenNFQ(o.payload)
	if err != nil {
		return res, err
	}
	defer os.Remove(cfgFile)
	cmd, out, err := nb.startReader(ctx, o)
	if err != nil {
		return res, err
	}
	defer func() {
		if cmd.ProcessState == nil {
			unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
			cmd.Wait()
		}
	}()
	pid := cmd.Process.Pid // ip netns exec, nice and taskset exec the reader: one process
	start, err := nb.snap(pid)
	if err != nil {
		return res, err
	}
	gen := []string{"nice", "-n", strconv.Itoa(benchNice), "trafgen", "-o", "eth0", "-i", cfgFile, "-P", "1", "-C"}
	if o.frames > 0 {
		gen = append(gen, "-n", strconv.Itoa(o.frames))
		if _, err := nb.w.Exec(ctx, nb.w.Src, append([]string{"timeout", "30s"}, gen...)...); err != nil {
			return res, err
		}
	} else {
		total := nfqWarm + o.window + 2*time.Second // ended below, once the window closes
		var stopGen func()
		if o.live != nil {
			gctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- o.live.liveGen(gctx, total, genCPU, 0) }()
			stopGen = func() { cancel(); <-done }
		} else {
			tg, err := startIn(ctx, nb.w.Src, append([]string{"timeout", fmt.Sprintf("%.3fs", total.Seconds())}, gen...)...)
			if err != nil {
				return res, err
			}
			stopGen = func() { unix.Kill(-tg.Process.Pid, unix.SIGKILL); tg.Wait() }
		}
		time.Sleep(nfqWarm)
		s0, err := nb.snap(pid)
		if err != nil {
			stopGen()
			return res, err
		}
		time.Sleep(o.window)
		s1, err := nb.snap(pid)
		stopGen()
		if err != nil {
			return res, err
		}
		res.WQueued = uint64(s1.k.IDSequence - s0.k.IDSequence)
		res.Verdicts = res.WQueued - uint64(int64(s1.k.Waiting)-int64(s0.k.Waiting))
		res.WSteered, res.WDstRx = s1.steered-s0.steered, s1.dstRx-s0.dstRx
		res.Secs = s1.at.Sub(s0.at).Seconds()
		c0, c1 := s0.cpu.cpus[nfqCPU], s1.cpu.cpus[nfqCPU]
		res.BusyNs = (c1.userNs + c1.sysNs + c1.softirqNs) - (c0.userNs + c0.sysNs + c0.softirqNs)
		res.ReaderNs = s1.readerNs - s0.readerNs
	}
	end, err := nb.waitIdle(ctx)
	if err != nil {
		return res, fmt.Errorf("reader %s: %w", o.reader, err)
	}
	res.Kernel = end.k
	res.Steered, res.DstRx = end.steered-start.steered, end.dstRx-start.dstRx
	if res.Counts, err = stopReader(cmd, out, o.reader); err != nil {
		return res, err
	}
	return res, res.check(start.k)
}

// uninspected is the share of the window's steered packets that the
// kernel passed without queueing (queue full). The two counters are read
// a moment apart, so a reader that keeps up can show slightly more queued
// than steered: that is 0.
func (r *nfqRun) uninspected() float64 {
	if r.WSteered == 0 {
		return 0
	}
	return max(0, float64(int64(r.WSteered)-int64(r.WQueued))) / float64(r.WSteered)
}

// procCPU returns the user and system time of process pid, all threads:
// fields 14 and 15 of /proc/PID/stat, in clock ticks. With tick-based
// accounting the softirq work that runs in the process's system calls
// (here: forwarding every accepted packet) is charged to it as well.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read reader CPU time: %w", err)
	}
	// The command name (field 2) may hold spaces: fields follow its ")".
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0, fmt.Errorf("parse /proc/%d/stat: %q", pid, b)
	}
	var ticks float64
	for _, s := range f[11:13] { // utime, stime (fields 14, 15; f[0] is field 3)
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
		}
		ticks += float64(v)
	}
	return ticks * 1e9 / clockTicks, nil
}

// waitIdle waits until the traffic has ended and the reader has given
// every queued packet its verdict.
func (nb *nfqBench) waitIdle(ctx context.Context) (nfqSnap, error) {
	var last nfqSnap
	for i := 0; i < 500; i++ {
		s, err := nb.snap(0)
		if err != nil {
			return s, err
		}
		if i > 0 && s.k.Waiting == 0 && s.k.IDSequence == last.k.IDSequence && s.steered == last.steered && s.dstRx == last.dstRx {
			return s, nil
		}
		last = s
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return last, fmt.Errorf("queue not idle after 10s: %+v", last.k)
}

// check verifies that the reader's counters and the kernel's tell one
// story: the reader received every packet the queue took (a new binding
// numbers packets from 1), gave each one verdict, lost nothing, and the
// kernel dropped nothing.
func (r *nfqRun) check(start nfq.KernelStats) error {
	c, k := r.Counts, r.Kernel
	switch {
	case c.Received == 0:
		return fmt.Errorf("reader %s received nothing (%d steered)", r.Reader, r.Steered)
	case c.Received != c.Accepted+c.Dropped:
		return fmt.Errorf("reader %s: received %d, accepted %d + dropped %d", r.Reader, c.Received, c.Accepted, c.Dropped)
	case c.Errors != 0 || c.Overruns != 0 || c.Missed != 0:
		return fmt.Errorf("reader %s: %d errors, %d overruns, %d missed", r.Reader, c.Errors, c.Overruns, c.Missed)
	case uint64(k.IDSequence) != c.Received:
		return fmt.Errorf("reader %s: the kernel queued %d packets, the reader received %d", r.Reader, k.IDSequence, c.Received)
	case k.Waiting != 0 || k.QueueDropped != start.QueueDropped || k.UserDropped != start.UserDropped:
		return fmt.Errorf("reader %s: kernel queue %+v at the end", r.Reader, k)
	case r.Steered < c.Received:
		return fmt.Errorf("reader %s: received %d packets, the rule steered only %d", r.Reader, c.Received, r.Steered)
	case r.Secs > 0 && r.Verdicts == 0:
		return fmt.Errorf("reader %s: no verdict in the window (%d steered)", r.Reader, r.WSteered)
	}
	return nil
}

// nfqFigure measures every reader opts.Rounds times in alternating order,
// each during opts.PktDuration of a 64-byte UDP flood from the live-frame
// generator: trafgen's own cost on the generator's CPU capped the offered
// load near what the faster readers take (~110 kpps steered), live frames
// offer ~1.5 times more, so that every reader is saturated (the report's
// uninspected share shows it).
func (b *benchRun) nfqFigure(ctx context.Context) (*NFQResult, error) {
	if err := b.set(ctx, Bare, SetupGRO); err != nil {
		return nil, err
	}
	nb, err := newNFQBench(ctx, b.w)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := nb.Close(); err != nil {
			b.opts.Logf("nfq cleanup: %v", err)
		}
	}()
	res := &NFQResult{Queue: nfqQueue, MaxQueueLen: nfqMaxLen, Content: nfqContent, Readers: map[string]*NFQReaderResult{}}
	for round := 0; round < b.opts.Rounds; round++ {
		order := slices.Clone(nfqReaders)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, rd := range order {
			r, err := nb.run(ctx, nfqRunOpts{reader: rd, maxLen: nfqMaxLen, window: b.opts.PktDuration, live: b})
			if err != nil {
				return nil, err
			}
			if r.Counts.Dropped != 0 {
				return nil, fmt.Errorf("reader %s dropped %d packets of a flood its rule does not match", rd, r.Counts.Dropped)
			}
			m := res.Readers[rd]
			if m == nil {
				m = &NFQReaderResult{}
				res.Readers[rd] = m
			}
			vps := float64(r.Verdicts) / r.Secs
			m.VPS.add(vps)
			m.CPUNs.add(r.ReaderNs / float64(r.Verdicts))
			m.CPUShare.add(r.ReaderNs / 1e9 / r.Secs)
			m.Uninspected.add(r.uninspected())
			m.PerRead.add(float64(r.Counts.Received) / float64(max(1, r.Counts.Reads)))
			b.opts.Logf("round %d nfq %-11s %8.0f verdicts/s, reader %5.0f ns/verdict (%.0f%% of CPU %d, which was %.0f%% busy), %4.1f pkts/read; window: steered %d, queued %d, dst %d; run: %d received, kernel %+v",
				round+1, rd, vps, r.ReaderNs/float64(r.Verdicts), r.ReaderNs/r.Secs/1e7, nfqCPU, r.BusyNs/r.Secs/1e7, float64(r.Counts.Received)/float64(max(1, r.Counts.Reads)),
				r.WSteered, r.WQueued, r.WDstRx, r.Counts.Received, r.Kernel)
		}
	}
	return res, nil
}
