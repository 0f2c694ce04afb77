package bench

import (
	"bufio"
	"bytes"
	"container/heap"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"

	"github.com/wardline/wardline/detect/pcap"
)

// offlineCPU is the one CPU both offline analysers are pinned to.
const offlineCPU = 1

// ndpiArgs are ndpiReader's flags besides -i: none. Its defaults are the
// full work we compare with: protocol DPI on up to 80 TCP / 24 UDP packets
// per flow, protocol guessing, flow risks, JA3, and a summary on stdout
// (tens of lines). -q would hide the counters it prints; -v adds per-flow
// lines; -F (flow statistics) is extra work we do not ask of it either.
var ndpiArgs = []string{}

// OfflineResult compares `wardline analyze` (every detector on) with
// ndpiReader on the same captures, both whole processes pinned to one CPU.
type OfflineResult struct {
	Skipped string `json:"skipped,omitempty"`
	CPU     int    `json:"cpu"`
	Rounds  int    `json:"rounds"`
	// OurCommand and NDPICommand are the command lines, FILE standing
	// for the capture.
	OurCommand  string `json:"wardline_command"`
	NDPICommand string `json:"ndpi_command"`
	NDPIVersion string `json:"ndpi_version"`
	// Startup: each tool on a capture of one packet: what a whole-process
	// time costs before the first packet (process start, Go runtime or
	// nDPI's protocol tables and automata).
	Startup struct {
		Ours ToolRuns `json:"wardline"`
		NDPI ToolRuns `json:"ndpireader"`
	} `json:"startup"`
	Inputs []*OfflineInput `json:"inputs"`
}

// OfflineInput is one capture both tools read.
type OfflineInput struct {
	Name      string   `json:"name"`
	Sources   []string `json:"sources"`    // the corpus files it holds
	Packets   uint64   `json:"packets"`    // as counted by our reader
	WireBytes uint64   `json:"wire_bytes"` // original frame lengths (snap-length captures count in full)
	FileBytes int64    `json:"file_bytes"`
	Ours      ToolRuns `json:"wardline"`
	NDPI      ToolRuns `json:"ndpireader"`
	// What each reported (last round).
	OurFlows, OurSnippets, OurAlerts uint64
	NDPIFlows, NDPIRiskFlows         uint64
	NDPIIPPackets                    uint64
	NDPIThroughput                   string `json:"ndpi_throughput_line"` // its own "nDPI throughput" line, verbatim
}

// ToolRuns are one tool's measurements, in round order.
type ToolRuns struct {
	Wall Sample `json:"wall_s"` // whole process, wall clock
	CPU  Sample `json:"cpu_s"`  // whole process, user + system
	// Internal: the tool's own processing time: wardline analyze's
	// "seconds" (reading, flow tracking, the engine, flush), ndpiReader's
	// "Packet Processing Time" (1 ms resolution).
	Internal Sample `json:"internal_s"`
	// MaxRSSMB: peak resident memory (VmHWM sampled every 2 ms).
	MaxRSSMB Sample `json:"max_rss_mb"`
}

// offlineBench holds what the offline figure needs.
type offlineBench struct {
	opts     *Options
	wardline string
	ndpi     string
	corpus   string // .../generated
	tmp      []string
}

// Offline runs the offline figure: the merged corpus, the same repeated
// Options.offlineCopies times (a week apart), exfil_https.pcap alone, and a
// one-packet capture (start-up), each through both tools, alternating,
// 2 × opts.Rounds rounds (each process lasts at most a few seconds).
func Offline(ctx context.Context, opts Options) (*OfflineResult, error) {
	opts.defaults()
	res := &OfflineResult{CPU: offlineCPU, Rounds: 2 * opts.Rounds}
	dir, err := corpusDir(opts.Corpus)
	if err != nil {
		res.Skipped = err.Error()
		return res, nil
	}
	b := &offlineBench{opts: &opts, corpus: filepath.Join(dir, "generated")}
	if b.wardline, err = wardlineBinary(opts.Wardline); err != nil {
		return nil, err
	}
	if b.ndpi, err = lookPath("ndpiReader"); err != nil {
		return nil, fmt.Errorf("offline figure needs ndpiReader: %w (apt-get install libndpi-bin)", err)
	}
	defer b.cleanup()

	files, err := filepath.Glob(filepath.Join(b.corpus, "*.pcap*"))
	if err != nil || len(files) == 0 {
		res.Skipped = fmt.Sprintf("no captures in %s", b.corpus)
		return res, nil
	}
	merged, one, sources, err := b.writeMerged(files)
	if err != nil {
		return nil, err
	}
	repeated, err := b.writeRepeated(merged, opts.offlineCopies)
	if err != nil {
		return nil, err
	}
	exfil := filepath.Join(b.corpus, "exfil_https.pcap")
	res.Inputs = []*OfflineInput{{Name: "merged corpus", Sources: sources},
		{Name: fmt.Sprintf("merged x%d", opts.offlineCopies), Sources: sources}}
	paths := []string{merged, repeated}
	if _, err := os.Stat(exfil); err == nil {
		res.Inputs = append(res.Inputs, &OfflineInput{Name: "exfil_https", Sources: []string{exfil}})
		paths = append(paths, exfil)
	}
	for i, in := range res.Inputs {
		fi, err := os.Stat(paths[i])
		if err != nil {
			return nil, err
		}
		in.FileBytes = fi.Size()
	}
	ourArgs := b.ourArgs()
	res.OurCommand = fmt.Sprintf("GOMAXPROCS=1 taskset -c %d %s FILE", offlineCPU, strings.Join(ourArgs, " "))
	res.NDPICommand = fmt.Sprintf("taskset -c %d %s -i FILE", offlineCPU, strings.Join(append([]string{"ndpiReader"}, ndpiArgs...), " "))
	if out, err := b.runNDPI(ctx, one); err == nil {
		if m := regexp.MustCompile(`nDPI \(([0-9.]+)\)`).FindSubmatch(out.stdout); m != nil {
			res.NDPIVersion = string(m[1])
		}
	}

	// One uncounted run of each, so that both read the files from the
	// page cache from the first counted round on.
	all := append(append([]string(nil), paths...), one)
	for _, p := range all {
		if _, err := b.runOurs(ctx, p); err != nil {
			return nil, err
		}
		if _, err := b.runNDPI(ctx, p); err != nil {
			return nil, err
		}
	}
	for r := 0; r < res.Rounds; r++ {
		tools := []string{"wardline", "ndpireader"}
		if r%2 == 1 {
			tools[0], tools[1] = tools[1], tools[0]
		}
		for i, p := range all {
			var in *OfflineInput // nil: the start-up capture
			ours, ndpi := &res.Startup.Ours, &res.Startup.NDPI
			if i < len(res.Inputs) {
				in = res.Inputs[i]
				ours, ndpi = &in.Ours, &in.NDPI
			}
			for _, tool := range tools {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				tr := ours
				if tool == "ndpireader" {
					tr = ndpi
					if err := b.measureNDPI(ctx, p, tr, in); err != nil {
						return nil, err
					}
				} else if err := b.measureOurs(ctx, p, tr, in); err != nil {
					return nil, err
				}
				b.opts.Logf("round %d offline %-13s %-10s %6.3f s wall, %6.3f s CPU, internal %6.3f s, peak RSS %4.0f MB",
					r+1, offlineName(res, i), tool, last(tr.Wall), last(tr.CPU), last(tr.Internal), last(tr.MaxRSSMB))
			}
		}
	}
	return res, nil
}

// measureOurs runs wardline analyze on path once and records it in tr
// and, unless nil, what it found in in.
func (b *offlineBench) measureOurs(ctx context.Context, path string, tr *ToolRuns, in *OfflineInput) error {
	o, err := b.runOurs(ctx, path)
	if err != nil {
		return err
	}
	o.addTo(tr)
	tr.Internal.add(o.internal)
	if in != nil {
		in.Packets, in.WireBytes = o.packets, o.bytes
		in.OurFlows, in.OurSnippets, in.OurAlerts = o.flows, o.snippets, o.alerts
	}
	return nil
}

// measureNDPI runs ndpiReader on path once and records it in tr and,
// unless nil, what it found in in.
func (b *offlineBench) measureNDPI(ctx context.Context, path string, tr *ToolRuns, in *OfflineInput) error {
	o, err := b.runNDPI(ctx, path)
	if err != nil {
		return err
	}
	nd, err := parseNDPI(o.stdout)
	if err != nil {
		return fmt.Errorf("ndpiReader on %s: %w", path, err)
	}
	o.addTo(tr)
	tr.Internal.add(nd.processing.Seconds())
	if in != nil {
		in.NDPIFlows, in.NDPIRiskFlows, in.NDPIIPPackets, in.NDPIThroughput = nd.flows, nd.riskFlows, nd.ipPackets, nd.throughput
	}
	return nil
}

func offlineName(res *OfflineResult, i int) string {
	if i < len(res.Inputs) {
		return res.Inputs[i].Name
	}
	return "one packet"
}

// corpusDir finds the evaluation corpus: dir if given, else
// $WARDLINE_CORPUS, else ../shared/corpus (make bench runs from the
// repository root) and /work/shared/corpus.
func corpusDir(dir string) (string, error) {
	cands := []string{dir}
	if dir == "" {
		cands = []string{os.Getenv("WARDLINE_CORPUS"), "../shared/corpus", "/work/shared/corpus"}
	}
	var looked []string
	for _, d := range cands {
		if d == "" {
			continue
		}
		looked = append(looked, d)
		if fi, err := os.Stat(filepath.Join(d, "generated", "labels.json")); err == nil && fi.Mode().IsRegular() {
			return d, nil
		}
	}
	return "", fmt.Errorf("the evaluation corpus is not here (looked for generated/labels.json in %s; set WARDLINE_CORPUS or -corpus)",
		strings.Join(looked, ", "))
}

// wardlineBinary returns path, or this executable when it is the wardline
// CLI (wardline bench).
func wardlineBinary(path string) (string, error) {
	if path == "" {
		self, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("find the wardline binary: %w", err)
		}
		path = self
	}
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("wardline binary: %w (run `make build` first)", err)
	}
	return path, nil
}

func (b *offlineBench) cleanup() {
	for _, f := range b.tmp {
		os.Remove(f)
	}
}

// tempFile returns a new path in the temporary directory named like the
// wire's files ("wlb<pid>-<random>.<suffix>"), so that SweepStale removes
// it if this process is killed.
func (b *offlineBench) tempFile(suffix string) (string, error) {
	var r [2]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	p := filepath.Join(os.TempDir(), fmt.Sprintf("%s%d-%s.%s", WirePrefix, os.Getpid(), hex.EncodeToString(r[:]), suffix))
	b.tmp = append(b.tmp, p)
	return p, nil
}

// mergeSource is one capture in the merge.
type mergeSource struct {
	r     *pcap.Reader
	pk    *pcap.Packet
	order int
}

type mergeHeap []*mergeSource

func (h mergeHeap) Len() int { return len(h) }
func (h mergeHeap) Less(i, j int) bool {
	if !h[i].pk.Time.Equal(h[j].pk.Time) {
		return h[i].pk.Time.Before(h[j].pk.Time)
	}
	return h[i].order < h[j].order
}
func (h mergeHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *mergeHeap) Push(x any)   { *h = append(*h, x.(*mergeSource)) }
func (h *mergeHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	*h = old[:len(old)-1]
	return s
}

// writeMerged writes every Ethernet capture of files, merged by timestamp
// (as mergecap does), into one pcap, and its first IPv4 packet alone into
// another (for the start-up cost). It returns both paths and the sources.
func (b *offlineBench) writeMerged(files []string) (merged, one string, sources []string, err error) {
	sort.Strings(files)
	var h mergeHeap
	defer func() {
		for _, s := range h {
			s.r.Close()
		}
	}()
	for _, f := range files {
		r, err := pcap.Open(f)
		if err != nil {
			return "", "", nil, fmt.Errorf("merge corpus: %w", err)
		}
		pk, err := r.Next()
		if err != nil || pk.LinkType != layers.LinkTypeEthernet {
			r.Close() // empty, or not Ethernet: ndpiReader wants one link type per file
			continue
		}
		sources = append(sources, f)
		h = append(h, &mergeSource{r: r, pk: pk, order: len(h)})
	}
	if len(h) == 0 {
		return "", "", nil, fmt.Errorf("merge corpus: no Ethernet capture among %d files", len(files))
	}
	heap.Init(&h)
	if merged, err = b.tempFile("merged.pcap"); err != nil {
		return "", "", nil, err
	}
	if one, err = b.tempFile("one.pcap"); err != nil {
		return "", "", nil, err
	}
	mf, err := os.Create(merged)
	if err != nil {
		return "", "", nil, fmt.Errorf("merge corpus: %w", err)
	}
	defer mf.Close()
	of, err := os.Create(one)
	if err != nil {
		return "", "", nil, fmt.Errorf("merge corpus: %w", err)
	}
	defer of.Close()
	bw := bufio.NewWriterSize(mf, 1<<20)
	mw, ow := pcapgo.NewWriter(bw), pcapgo.NewWriter(of)
	for _, w := range []*pcapgo.Writer{mw, ow} {
		if err := w.WriteFileHeader(262144, layers.LinkTypeEthernet); err != nil {
			return "", "", nil, fmt.Errorf("merge corpus: write pcap header: %w", err)
		}
	}
	n, wroteOne := 0, false
	for len(h) > 0 {
		s := h[0]
		ci := gopacket.CaptureInfo{Timestamp: s.pk.Time, CaptureLength: len(s.pk.Data), Length: max(s.pk.Length, len(s.pk.Data))}
		if err := mw.WritePacket(ci, s.pk.Data); err != nil {
			return "", "", nil, fmt.Errorf("merge corpus: write %s: %w", merged, err)
		}
		if !wroteOne && len(s.pk.Data) > 34 && s.pk.Data[12] == 0x08 && s.pk.Data[13] == 0x00 {
			// ndpiReader prints no counters for a capture without IP.
			if err := ow.WritePacket(ci, s.pk.Data); err != nil {
				return "", "", nil, fmt.Errorf("merge corpus: write %s: %w", one, err)
			}
			wroteOne = true
		}
		n++
		pk, err := s.r.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return "", "", nil, fmt.Errorf("merge corpus: %w", err)
			}
			heap.Pop(&h)
			s.r.Close()
			continue
		}
		if pk.LinkType != layers.LinkTypeEthernet {
			return "", "", nil, fmt.Errorf("merge corpus: %s changes link type", s.r.Name())
		}
		s.pk = pk
		heap.Fix(&h, 0)
	}
	if err := bw.Flush(); err != nil {
		return "", "", nil, fmt.Errorf("merge corpus: write %s: %w", merged, err)
	}
	b.opts.Logf("offline: merged %d captures, %d packets, into %s", len(sources), n, merged)
	return merged, one, sources, nil
}

// writeRepeated writes n copies of the capture at path into one pcap,
// copy k shifted by k weeks (same weekday and time of day, so each copy
// is the same traffic a week later) and, from the second copy on, tagged
// with VLAN ID k.
func (b *offlineBench) writeRepeated(path string, n int) (string, error) {
	out, err := b.tempFile(fmt.Sprintf("merged-x%d.pcap", n))
	if err != nil {
		return "", err
	}
	f, err := os.Create(out)
	if err != nil {
		return "", fmt.Errorf("repeat corpus: %w", err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	w := pcapgo.NewWriter(bw)
	if err := w.WriteFileHeader(262144, layers.LinkTypeEthernet); err != nil {
		return "", fmt.Errorf("repeat corpus: write pcap header: %w", err)
	}
	var tagged []byte
	for k := 0; k < n; k++ {
		r, err := pcap.Open(path)
		if err != nil {
			return "", fmt.Errorf("repeat corpus: %w", err)
		}
		shift := time.Duration(k) * 7 * 24 * time.Hour
		for {
			pk, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				r.Close()
				return "", fmt.Errorf("repeat corpus: %w", err)
			}
			data, length := pk.Data, max(pk.Length, len(pk.Data))
			if k > 0 && len(data) >= 14 {
				// An 802.1Q tag with VLAN ID k: both tools key
				// flows by VLAN, so each copy's flows are new
				// flows, as the first copy's were.
				tagged = append(append(append(tagged[:0], data[:12]...), 0x81, 0x00, byte(k>>8), byte(k)), data[12:]...)
				data, length = tagged, length+4
			}
			ci := gopacket.CaptureInfo{Timestamp: pk.Time.Add(shift), CaptureLength: len(data), Length: length}
			if err := w.WritePacket(ci, data); err != nil {
				r.Close()
				return "", fmt.Errorf("repeat corpus: write %s: %w", out, err)
			}
		}
		r.Close()
	}
	if err := bw.Flush(); err != nil {
		return "", fmt.Errorf("repeat corpus: write %s: %w", out, err)
	}
	return out, nil
}

// procRun is one pinned process run.
type procRun struct {
	wall, cpu time.Duration
	maxRSSKB  int64
	stdout    []byte
}

func (p procRun) addTo(t *ToolRuns) {
	t.Wall.add(p.wall.Seconds())
	t.CPU.add(p.cpu.Seconds())
	t.MaxRSSMB.add(float64(p.maxRSSKB) / 1024)
}

// runPinned runs a command pinned to offlineCPU at the benchmark's nice
// value (the same for both tools) and times the whole process.
func runPinned(ctx context.Context, env []string, args ...string) (procRun, error) {
	full := append([]string{"nice", "-n", strconv.Itoa(benchNice), "taskset", "-c", strconv.Itoa(offlineCPU)}, args...)
	cmd := command(ctx, full...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return procRun{}, fmt.Errorf("%s: %w", strings.Join(args, " "), err)
	}
	done := make(chan struct{})
	peak := make(chan int64, 1)
	go func() { peak <- pollPeakRSS(cmd.Process.Pid, filepath.Base(args[0]), done) }()
	err := cmd.Wait()
	wall := time.Since(start)
	close(done)
	hwm := <-peak
	if err != nil {
		return procRun{}, fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, lastLines(errb.String(), 5))
	}
	return procRun{wall: wall, cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), stdout: out.Bytes(), maxRSSKB: hwm}, nil
}

// pollPeakRSS samples the peak resident memory (VmHWM, kB) of process pid
// every 2 ms once it runs the program named comm, until done is closed,
// and returns the last value seen. The rusage of the child cannot tell:
// its ru_maxrss starts from this process's own peak, because the child
// shares this process's memory until it execs. Sampling misses at most
// the last 2 ms of growth. The sampler runs on the CPU the measured
// process does not use.
func pollPeakRSS(pid int, comm string, done <-chan struct{}) int64 {
	runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
	var set unix.CPUSet
	set.Set(1 - offlineCPU)
	unix.SchedSetaffinity(0, &set)
	if len(comm) > 15 {
		comm = comm[:15] // TASK_COMM_LEN
	}
	commPath, statusPath := fmt.Sprintf("/proc/%d/comm", pid), fmt.Sprintf("/proc/%d/status", pid)
	var hwm int64
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		if c, err := os.ReadFile(commPath); err == nil && strings.TrimSpace(string(c)) == comm {
			if st, err := os.ReadFile(statusPath); err == nil {
				for _, l := range strings.Split(string(st), "\n") {
					if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
						kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
						hwm = max(hwm, kb)
					}
				}
			}
		}
		select {
		case <-done:
			return hwm
		case <-t.C:
		}
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], " | ")
}

// ourRun is a run of wardline analyze with what it reported.
type ourRun struct {
	procRun
	internal                float64
	packets, bytes          uint64
	flows, snippets, alerts uint64
}

func (b *offlineBench) ourArgs() []string {
	args := []string{"wardline", "analyze", "--json", "--home", "198.18.0.0/24"}
	if p := filepath.Join(b.corpus, "ioc_tls.indicators.json"); fileExists(p) {
		args = append(args, "--indicators", p)
	}
	return args
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// runOurs runs `wardline analyze` on path, one OS thread for Go code.
func (b *offlineBench) runOurs(ctx context.Context, path string) (ourRun, error) {
	args := append([]string{b.wardline}, b.ourArgs()[1:]...)
	p, err := runPinned(ctx, []string{"GOMAXPROCS=1"}, append(args, path)...)
	if err != nil {
		return ourRun{}, err
	}
	var out struct {
		Error   string            `json:"error"`
		Packets uint64            `json:"packets"`
		Bytes   uint64            `json:"bytes"`
		Seconds float64           `json:"seconds"`
		Alerts  []json.RawMessage `json:"alerts"`
		Engine  struct {
			Flows, Snippets uint64
		} `json:"engine"`
	}
	if err := json.Unmarshal(p.stdout, &out); err != nil {
		return ourRun{}, fmt.Errorf("parse wardline analyze --json output on %s: %w", path, err)
	}
	if out.Error != "" {
		return ourRun{}, fmt.Errorf("wardline analyze %s: %s", path, out.Error)
	}
	return ourRun{procRun: p, internal: out.Seconds, packets: out.Packets, bytes: out.Bytes,
		flows: out.Engine.Flows, snippets: out.Engine.Snippets, alerts: uint64(len(out.Alerts))}, nil
}

func (b *offlineBench) runNDPI(ctx context.Context, path string) (procRun, error) {
	args := append(append([]string{b.ndpi}, ndpiArgs...), "-i", path)
	return runPinned(ctx, nil, args...)
}

// ndpiOut is what ndpiReader printed.
type ndpiOut struct {
	processing time.Duration
	flows      uint64
	riskFlows  uint64
	ipPackets  uint64
	throughput string
}

var (
	reNDPIProc  = regexp.MustCompile(`Packet Processing Time:\s+([0-9.]+)\s+(msec|sec|usec)`)
	reNDPIFlows = regexp.MustCompile(`Unique flows:\s+([0-9]+)`)
	reNDPIRisk  = regexp.MustCompile(`Risk stats \[found ([0-9]+) `)
	reNDPIIP    = regexp.MustCompile(`IP packets:\s+([0-9]+)`)
	reNDPIThr   = regexp.MustCompile(`nDPI throughput:\s+(.*\S)`)
)

// parseNDPI reads the counters of ndpiReader's summary (nDPI 4.2 format).
func parseNDPI(out []byte) (ndpiOut, error) {
	var r ndpiOut
	m := reNDPIProc.FindSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no \"Packet Processing Time\" in its output: %.300s", out)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	switch string(m[2]) {
	case "sec":
		v *= 1e3
	case "usec":
		v /= 1e3
	}
	r.processing = time.Duration(v * float64(time.Millisecond))
	num := func(re *regexp.Regexp) uint64 {
		if m := re.FindSubmatch(out); m != nil {
			n, _ := strconv.ParseUint(string(m[1]), 10, 64)
			return n
		}
		return 0
	}
	r.flows, r.riskFlows, r.ipPackets = num(reNDPIFlows), num(reNDPIRisk), num(reNDPIIP)
	if m := reNDPIThr.FindSubmatch(out); m != nil {
		r.throughput = string(m[1])
	}
	return r, nil
}
