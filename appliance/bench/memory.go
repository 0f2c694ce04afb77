package bench

import (
	"bufio"
	"container/heap"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/wardline/wardline/dataplane"
	"github.com/wardline/wardline/dataplane/event"
	"github.com/wardline/wardline/detect/engine"
	"github.com/wardline/wardline/detect/pcap"
)

// TargetMemoryMB is issue 3's bound on userspace memory per 1M tracked
// flows.
const TargetMemoryMB = 300.0

// MemoryResult is the memory figure: userspace memory per 1M tracked
// flows, offline (the pcap tracker's flow table) and live (the kernel's
// flow table, and the engine's per-host and per-pair state).
type MemoryResult struct {
	Flows int `json:"flows"`
	// Offline: Flows concurrent UDP flows in the pcap Tracker's table
	// (the engine attached, idle: no flow has ended yet).
	Tracker MemSample `json:"tracker"`
	// Live, userspace: the engine after Flows final flow records (with
	// their DNS, TLS, HTTP and first-payload snippets) of a branch-office
	// mix, all within EngineSpan of event time, so that no state has
	// expired yet.
	Engine       MemSample          `json:"engine"`
	EngineMix    string             `json:"engine_mix"`
	EngineSpan   float64            `json:"engine_span_s"`
	EngineEvents uint64             `json:"engine_events"`
	EngineAlerts map[string]uint64  `json:"engine_alerts"`
	EngineState  map[string]float64 `json:"engine_state"` // detectors' state sizes and counters at the end
	// Live, kernel: the fast path's flow table (an LRU hash, allocated
	// whole when created) with Flows entries, and the ring buffer.
	Kernel *KernelMem `json:"kernel,omitempty"`
	// KernelSkipped says why Kernel is missing (not root, load failed).
	KernelSkipped string `json:"kernel_skipped,omitempty"`
}

// MemSample is the memory a structure took, in MB (10^6 bytes, as the
// other figures count), scaled to 1M flows, over
// repeated measurements, and how long filling it took.
type MemSample struct {
	// HeapAllocMB: live heap objects (runtime.MemStats.HeapAlloc after a
	// GC) minus the same before the structure existed.
	HeapAllocMB Sample `json:"heap_alloc_mb"`
	// HeapInuseMB: heap spans in use (HeapInuse), with their
	// fragmentation; what the Go heap holds for it.
	HeapInuseMB Sample `json:"heap_inuse_mb"`
	// RSSMB: the process's resident memory (VmRSS, after returning freed
	// memory to the OS) after minus before.
	RSSMB Sample `json:"rss_mb"`
	// PeakRSSMB: the highest resident memory while it was filled (VmHWM,
	// reset before) minus the resident memory before: growth copies
	// and garbage not yet collected included.
	PeakRSSMB Sample `json:"peak_rss_mb"`
	// NsPerFlow: time to fill it per flow: the tracker's Packet calls
	// (wall time of the loop), or the time spent inside the engine's
	// HandleFlow and HandleSnippet calls (the generator excluded).
	NsPerFlow Sample `json:"ns_per_flow"`
}

// KernelMem is the kernel's share on the appliance.
type KernelMem struct {
	MaxEntries     uint32 `json:"max_entries"`
	KeySize        uint32 `json:"key_size"`
	ValueSize      uint32 `json:"value_size"`
	MapType        string `json:"map_type"`
	FlowsMemlock   uint64 `json:"flows_memlock_bytes"` // /proc/self/fdinfo of the map: the kernel's own accounting
	RingBytes      uint32 `json:"ring_bytes"`
	RingMemlock    uint64 `json:"ring_memlock_bytes"`
	DataplaneTable uint32 `json:"default_table_entries"` // the daemon's default table size
}

// memSnap is the process's memory at one point.
type memSnap struct {
	heapAlloc, heapInuse uint64
	rss, peakRSS         uint64
}

// resetPeakRSS resets the kernel's high-water mark of this process's
// resident memory (VmHWM), so that the next snapshot's peak is the peak
// since now.
func resetPeakRSS() {
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

func snapMem() memSnap {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, peak := vmRSS()
	return memSnap{heapAlloc: ms.HeapAlloc, heapInuse: ms.HeapInuse, rss: rss, peakRSS: peak}
}

// vmRSS reads the resident set size of this process and its high-water
// mark, in bytes.
func vmRSS() (rss, peak uint64) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	kb := func(v string) uint64 {
		n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		return n << 10
	}
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			rss = kb(v)
		} else if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			peak = kb(v)
		}
	}
	return rss, peak
}

// add records after - before, scaled to MB per 1M flows.
func (m *MemSample) add(before, after memSnap, flows int, el time.Duration) {
	// MB (10^6 bytes) per 1M flows is bytes per flow.
	per := func(a, b uint64) float64 { return (float64(b) - float64(a)) / float64(flows) }
	m.HeapAllocMB.add(per(before.heapAlloc, after.heapAlloc))
	m.HeapInuseMB.add(per(before.heapInuse, after.heapInuse))
	m.RSSMB.add(per(before.rss, after.rss))
	m.PeakRSSMB.add(per(before.rss, max(after.peakRSS, after.rss)))
	m.NsPerFlow.add(float64(el.Nanoseconds()) / float64(flows))
}

// memRounds: the memory figure is repeated this many times (it is
// deterministic up to map growth and the GC; three show the spread).
const memRounds = 3

// Memory runs the memory figure with flows flows.
func Memory(opts Options) (*MemoryResult, error) {
	opts.defaults()
	n := opts.memFlows
	res := &MemoryResult{Flows: n, EngineSpan: engineSpan.Seconds(), EngineMix: engineMixDoc}
	hellos, err := clientHellos(64)
	if err != nil {
		return nil, err
	}
	for r := 0; r < memRounds; r++ {
		if err := memTracker(n, &res.Tracker); err != nil {
			return nil, err
		}
		opts.Logf("round %d memory tracker: %d flows, heap %+.1f MB, RSS %+.1f MB per 1M, %.0f ns per packet", r+1, n,
			last(res.Tracker.HeapAllocMB), last(res.Tracker.RSSMB), last(res.Tracker.NsPerFlow))
		ev, st, alerts, err := memEngine(n, hellos, &res.Engine)
		if err != nil {
			return nil, err
		}
		res.EngineEvents, res.EngineState, res.EngineAlerts = ev, st, alerts
		opts.Logf("round %d memory engine: %d final flow records (%d events), heap %+.1f MB, RSS %+.1f MB per 1M, %.0f ns per flow", r+1, n, ev,
			last(res.Engine.HeapAllocMB), last(res.Engine.RSSMB), last(res.Engine.NsPerFlow))
	}
	if os.Geteuid() != 0 {
		res.KernelSkipped = "not root: the kernel flow table was not created"
	} else if k, err := kernelMem(uint32(n)); err != nil {
		res.KernelSkipped = err.Error()
	} else {
		res.Kernel = k
	}
	return res, nil
}

func last(s Sample) float64 {
	if len(s.Values) == 0 {
		return 0
	}
	return s.Values[len(s.Values)-1]
}

// memTracker fills a pcap Tracker's table with n concurrent UDP flows.
func memTracker(n int, m *MemSample) error {
	before := snapMem()
	resetPeakRSS()
	eng, err := engine.New(engine.Config{HomeNets: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, engine.Sinks{}, nil)
	if err != nil {
		return err
	}
	tr, err := pcap.NewTracker(pcap.Options{FlowTableSize: uint32(max(n, 1<<20)), IdleTimeout: time.Hour, ActiveTimeout: time.Hour}, eng)
	if err != nil {
		return err
	}
	// Ethernet, IPv4, UDP to 203.0.113.7:5000, 18 bytes of payload (a
	// 64-byte frame on the wire). Source address and port vary.
	frame := make([]byte, 60)
	copy(frame[0:], []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00})
	ip := frame[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], 46)
	copy(ip[16:20], []byte{203, 0, 113, 7})
	udp := frame[34:]
	binary.BigEndian.PutUint16(udp[2:], 5000)
	binary.BigEndian.PutUint16(udp[4:], 26)
	pk := pcap.Packet{Data: frame, Length: len(frame), LinkType: layers.LinkTypeEthernet}
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	start := time.Now()
	for i := 0; i < n; i++ {
		host, port := i/50, 1024+i%50 // 50 flows per source address
		ip[12], ip[13], ip[14], ip[15] = 10, byte(host>>16), byte(host>>8), byte(host)
		binary.BigEndian.PutUint16(udp[0:], uint16(port))
		pk.Time = base.Add(time.Duration(i) * 10 * time.Microsecond)
		tr.Packet(&pk)
	}
	el := time.Since(start)
	if tr.Flows() != n {
		return fmt.Errorf("memory figure: the tracker holds %d flows, want %d (stats %+v)", tr.Flows(), n, tr.Stats())
	}
	after := snapMem()
	m.add(before, after, n, el)
	runtime.KeepAlive(tr)
	runtime.KeepAlive(eng)
	return nil
}

// The live engine mix (memEngine).
const (
	engineHosts     = 20000  // internal clients, 10.1.0.0/16
	engineExternals = 200000 // external destinations, Zipf-distributed popularity
	engineNames     = 100000 // DNS names, Zipf-distributed
	engineSpan      = 60 * time.Second
	engineMixDoc    = "20k internal hosts, 60% TLS/443 to 200k external addresses (Zipf s=1.1; ClientHello snippets, 64 SNIs), " +
		"15% DNS/UDP to the resolver (query + answer snippets, 100k names, Zipf), 10% HTTP/80 (request snippet), " +
		"5% QUIC-like UDP/443, 5% SMB/445 to 20 internal file servers (first-payload snippet), 3% HTTP/8080 to 50 intranet servers, " +
		"2% NTP; sessions 50 ms–5 s with data both ways, final records at their end, in event-time order"
)

// pendingFlow is a final record waiting for its end time.
type pendingFlow struct {
	end time.Time
	f   event.Flow
}

type pendingHeap []*pendingFlow

func (h pendingHeap) Len() int           { return len(h) }
func (h pendingHeap) Less(i, j int) bool { return h[i].end.Before(h[j].end) }
func (h pendingHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *pendingHeap) Push(x any)        { *h = append(*h, x.(*pendingFlow)) }
func (h *pendingHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// memEngine feeds the engine n final flow records of a branch-office mix
// (engineMixDoc) and measures what it holds afterwards.
func memEngine(n int, hellos [][]byte, m *MemSample) (events uint64, state map[string]float64, alerts map[string]uint64, err error) {
	before := snapMem()
	resetPeakRSS()
	eng, err := engine.New(engine.Config{HomeNets: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, engine.Sinks{}, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	extZipf := rand.NewZipf(rng, 1.1, 1, engineExternals-1)
	nameZipf := rand.NewZipf(rng, 1.1, 1, engineNames-1)
	resolver := netip.AddrFrom4([4]byte{10, 0, 0, 53})
	hostAddr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}) }
	extAddr := func(i uint64) netip.Addr { return netip.AddrFrom4([4]byte{44, byte(i >> 16), byte(i >> 8), byte(i)}) }
	var pend pendingHeap
	var pool []*pendingFlow
	var sn event.Snippet
	var dnsBuf []byte
	var inEngine time.Duration // time spent inside the engine's handlers
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	ports := make([]uint16, engineHosts)
	flush := func(upTo time.Time, all bool) {
		for len(pend) > 0 && (all || !pend[0].end.After(upTo)) {
			p := heap.Pop(&pend).(*pendingFlow)
			t0 := time.Now()
			eng.HandleFlow(&p.f)
			inEngine += time.Since(t0)
			events++
			pool = append(pool, p)
		}
	}
	for i := 0; i < n; i++ {
		t := base.Add(time.Duration(int64(engineSpan) * int64(i) / int64(n)))
		flush(t, false)
		h := rng.IntN(engineHosts)
		ports[h]++
		src := hostAddr(h)
		var p *pendingFlow
		if k := len(pool); k > 0 {
			p, pool = pool[k-1], pool[:k-1]
		} else {
			p = &pendingFlow{}
		}
		f := &p.f
		*f = event.Flow{Final: true, Reason: event.ReasonFIN, FirstFlags: event.TCPSyn, FirstSeen: t}
		f.Key = event.FlowKey{Src: src, SrcPort: 32768 + ports[h]%28000, Proto: event.ProtoTCP}
		tcpDone := uint8(event.TCPSyn | event.TCPAck | event.TCPPsh | event.TCPFin)
		f.TCPFlags = [2]uint8{tcpDone, tcpDone}
		dur := time.Duration(50+rng.IntN(4950)) * time.Millisecond
		out, in := uint64(500+rng.IntN(20000)), uint64(2000+rng.IntN(500000))
		snip := func(kind event.SnippetKind, dir event.Dir, data []byte) {
			sn = event.Snippet{Key: f.Key, Kind: kind, Dir: dir, Time: t, PayloadLen: uint16(len(data)), Data: data}
			if dir == event.DirResp {
				sn.Key.Src, sn.Key.Dst, sn.Key.SrcPort, sn.Key.DstPort = f.Key.Dst, f.Key.Src, f.Key.DstPort, f.Key.SrcPort
				sn.Time = t.Add(dur / 2)
			}
			t0 := time.Now()
			eng.HandleSnippet(&sn)
			inEngine += time.Since(t0)
			events++
		}
		switch x := rng.Float64(); {
		case x < 0.60: // TLS
			d := extZipf.Uint64()
			f.Key.Dst, f.Key.DstPort = extAddr(d), 443
			snip(event.SnippetTLS, event.DirOrig, hellos[d%uint64(len(hellos))])
		case x < 0.75: // DNS
			name := fmt.Sprintf("host%d.domain%d.example", nameZipf.Uint64(), rng.IntN(5000))
			f.Key.Dst, f.Key.DstPort, f.Key.Proto = resolver, 53, event.ProtoUDP
			f.FirstFlags, f.TCPFlags, f.Reason = 0, [2]uint8{}, event.ReasonIdle
			dur, out, in = 20*time.Millisecond, 80, 120
			id := uint16(rng.Uint32())
			if dnsBuf, err = dnsMsg(dnsBuf[:0], name, id, false); err != nil {
				return 0, nil, nil, err
			}
			snip(event.SnippetDNS, event.DirOrig, dnsBuf)
			if dnsBuf, err = dnsMsg(dnsBuf[:0], name, id, true); err != nil {
				return 0, nil, nil, err
			}
			snip(event.SnippetDNS, event.DirResp, dnsBuf)
		case x < 0.85: // HTTP
			d := extZipf.Uint64()
			f.Key.Dst, f.Key.DstPort = extAddr(d), 80
			req := fmt.Sprintf("GET /item/%d HTTP/1.1\r\nHost: www%d.example.com\r\nUser-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64)\r\nAccept: */*\r\n\r\n", rng.IntN(1000), d)
			snip(event.SnippetHTTP, event.DirOrig, []byte(req))
		case x < 0.90: // QUIC-like UDP/443: no snippet from the fast path
			f.Key.Dst, f.Key.DstPort, f.Key.Proto = extAddr(extZipf.Uint64()), 443, event.ProtoUDP
			f.FirstFlags, f.TCPFlags, f.Reason = 0, [2]uint8{}, event.ReasonIdle
		case x < 0.95: // SMB to a file server
			f.Key.Dst, f.Key.DstPort = netip.AddrFrom4([4]byte{10, 0, 1, byte(1 + h%20)}), 445
			snip(event.SnippetPayload, event.DirOrig, smbNegotiate)
		case x < 0.98: // intranet web
			f.Key.Dst, f.Key.DstPort = netip.AddrFrom4([4]byte{10, 0, 2, byte(1 + rng.IntN(50))}), 8080
			snip(event.SnippetHTTP, event.DirOrig, []byte("GET / HTTP/1.1\r\nHost: intranet\r\n\r\n"))
		default: // NTP
			f.Key.Dst, f.Key.DstPort, f.Key.Proto = extAddr(uint64(rng.IntN(8))), 123, event.ProtoUDP
			f.FirstFlags, f.TCPFlags, f.Reason = 0, [2]uint8{}, event.ReasonIdle
			dur, out, in = 10*time.Millisecond, 90, 90
		}
		f.LastSeen = t.Add(dur)
		f.Time = f.LastSeen
		f.Bytes = [2]uint64{out, in}
		f.Packets = [2]uint64{2 + out/1400, 2 + in/1400}
		p.end = f.LastSeen
		heap.Push(&pend, p)
	}
	flush(time.Time{}, true)
	pend, pool, ports, dnsBuf = nil, nil, nil, nil
	st := eng.Stats()
	if st.Flows != uint64(n) {
		return 0, nil, nil, fmt.Errorf("memory figure: the engine counted %d flow records, want %d", st.Flows, n)
	}
	after := snapMem()
	m.add(before, after, n, inEngine)
	eng.Flush() // detectors' counters into Stats, after the measurement
	st = eng.Stats()
	runtime.KeepAlive(eng)
	state = map[string]float64{}
	for d, kv := range st.Detectors {
		for k, v := range kv {
			state[d+"."+k] = v
		}
	}
	state["engine.app_state_evicted"] = float64(st.AppStateEvicted)
	for k, v := range st.ParseErrors {
		state["engine.parse_errors."+k] = float64(v)
	}
	return events, state, st.Alerts, nil
}

// smbNegotiate is the start of an SMB2 NEGOTIATE over NetBIOS (enough to
// be a first client payload; no detector parses SMB).
var smbNegotiate = []byte{0x00, 0x00, 0x00, 0x66, 0xfe, 'S', 'M', 'B', 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}

// dnsMsg appends an A query for name (or its answer) to b.
func dnsMsg(b []byte, name string, id uint16, response bool) ([]byte, error) {
	bd := dnsmessage.NewBuilder(b, dnsmessage.Header{ID: id, Response: response, RecursionDesired: true, RecursionAvailable: response})
	bd.EnableCompression()
	qn, err := dnsmessage.NewName(name + ".")
	if err != nil {
		return nil, fmt.Errorf("dns name %q: %w", name, err)
	}
	if err := bd.StartQuestions(); err != nil {
		return nil, err
	}
	if err := bd.Question(dnsmessage.Question{Name: qn, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}); err != nil {
		return nil, err
	}
	if response {
		if err := bd.StartAnswers(); err != nil {
			return nil, err
		}
		h := uint32(len(name)) * 2654435761
		if err := bd.AResource(dnsmessage.ResourceHeader{Name: qn, Class: dnsmessage.ClassINET, TTL: 300},
			dnsmessage.AResource{A: [4]byte{44, byte(h >> 16), byte(h >> 8), byte(h)}}); err != nil {
			return nil, err
		}
	}
	return bd.Finish()
}

// clientHellos returns n real TLS ClientHello records (crypto/tls, X25519
// and P-256 key shares) for distinct server names.
func clientHellos(n int) ([][]byte, error) {
	out := make([][]byte, n)
	for i := range out {
		c, s := net.Pipe()
		cfg := &tls.Config{ServerName: fmt.Sprintf("svc%d.cdn%d.example.com", i, i%7), InsecureSkipVerify: true,
			CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}, NextProtos: []string{"h2", "http/1.1"}}
		done := make(chan struct{})
		go func() {
			tls.Client(c, cfg).Handshake() // fails when s closes; only its first record is wanted
			close(done)
		}()
		hdr := make([]byte, 5)
		_, err := io.ReadFull(s, hdr)
		var body []byte
		if err == nil {
			body = make([]byte, int(hdr[3])<<8|int(hdr[4]))
			_, err = io.ReadFull(s, body)
		}
		s.Close()
		c.Close()
		<-done
		if err != nil {
			return nil, fmt.Errorf("make a TLS ClientHello: %w", err)
		}
		out[i] = append(hdr, body...)
	}
	return out, nil
}

// kernelMem creates the fast path's maps with a flow table of entries
// entries (nothing attached) and reads the kernel's memory accounting.
func kernelMem(entries uint32) (*KernelMem, error) {
	d, err := dataplane.Load(dataplane.Options{FlowTableSize: entries})
	if err != nil {
		return nil, fmt.Errorf("load the fast path with a %d-entry flow table: %w", entries, err)
	}
	defer d.Close()
	fm, rm := d.FlowsMap(), d.EventsMap()
	k := &KernelMem{MaxEntries: fm.MaxEntries(), KeySize: fm.KeySize(), ValueSize: fm.ValueSize(), MapType: fm.Type().String(),
		RingBytes: rm.MaxEntries(), DataplaneTable: dataplane.DefaultFlowTableSize}
	if k.FlowsMemlock, err = memlock(fm); err != nil {
		return nil, err
	}
	if k.RingMemlock, err = memlock(rm); err != nil {
		return nil, err
	}
	return k, nil
}

// memlock reads the "memlock:" line of a map's /proc/self/fdinfo entry:
// the kernel's own count of the memory the map holds.
func memlock(m *ebpf.Map) (uint64, error) {
	p := fmt.Sprintf("/proc/self/fdinfo/%d", m.FD())
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", p, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "memlock:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("no memlock line in %s", p)
}
