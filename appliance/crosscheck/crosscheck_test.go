// Package crosscheck holds the root test that runs the same frames through
// the real fast path (wl_xdp, BPF_PROG_TEST_RUN) and through its Go twin
// (detect/pcap.Tracker) and fails where they disagree: the twin promises
// the engine the same events offline as live.
package crosscheck

import (
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/wardline/wardline/dataplane"
	"github.com/wardline/wardline/dataplane/event"
	"github.com/wardline/wardline/detect/pcap"
)

// What is compared: everything that does not depend on the clock. BPF
// timeouts run on the real clock and the twin's on packet time, so both
// get timeouts longer than any capture: no interim records, no sweeps.
// Then
//   - the events written while packets pass (FIN/RST final records and
//     every snippet, byte for byte) must be the same sequence;
//   - the flows left at the end (the BPF flow table, read directly, and
//     the twin's Flush records) must be the same set, with the same
//     per-direction packets and bytes, flags, and reason-to-be;
//   - the counters must be equal.
// BPF_PROG_TEST_RUN reports ingress ifindex 1 (the loopback device), so
// the twin is given Ifindex 1.

const testIfindex = 1

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: running wl_xdp with BPF_PROG_TEST_RUN needs root (CI runs as root)")
	}
}

// corpusDir finds the shared evaluation corpus.
func corpusDir(t *testing.T) string {
	t.Helper()
	var cands []string
	if d := os.Getenv("WARDLINE_CORPUS"); d != "" {
		cands = append(cands, d)
	}
	cands = append(cands, "../../../shared/corpus", "/work/shared/corpus")
	for _, d := range cands {
		if fi, err := os.Stat(filepath.Join(d, "generated")); err == nil && fi.IsDir() {
			return d
		}
	}
	t.Skipf("skipping: the evaluation corpus is not here (looked for %v; set WARDLINE_CORPUS)", cands)
	return ""
}

// frame is one packet as the twin sees it (its own link type) and as the
// fast path sees it (behind an Ethernet header).
type frame struct {
	pk  pcap.Packet
	eth []byte
}

// toEthernet gives a packet of another link type a synthetic Ethernet
// header with the EtherType its link header names. ok is false when the
// link header itself is cut short (the twin counts those as ErrEth; the
// fast path never sees them).
func toEthernet(lt layers.LinkType, data []byte) (eth []byte, ok bool) {
	var proto uint16
	var payload []byte
	switch lt {
	case layers.LinkTypeEthernet:
		return data, len(data) >= 14
	case layers.LinkTypeLinuxSLL:
		if len(data) < 16 {
			return nil, false
		}
		proto, payload = binary.BigEndian.Uint16(data[14:]), data[16:]
	case layers.LinkTypeLinuxSLL2:
		if len(data) < 20 {
			return nil, false
		}
		proto, payload = binary.BigEndian.Uint16(data[0:]), data[20:]
	case layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6:
		if len(data) < 1 {
			return nil, false
		}
		switch data[0] >> 4 {
		case 4:
			proto = 0x0800
		case 6:
			proto = 0x86DD
		}
		payload = data
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		if len(data) < 4 {
			return nil, false
		}
		fam := binary.LittleEndian.Uint32(data)
		if fam > 0xffff {
			fam = binary.BigEndian.Uint32(data)
		}
		switch fam {
		case 2:
			proto = 0x0800
		case 10, 24, 28, 30:
			proto = 0x86DD
		}
		payload = data[4:]
	default:
		return nil, false
	}
	eth = make([]byte, 14, 14+len(payload))
	copy(eth, []byte{2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 0xa})
	binary.BigEndian.PutUint16(eth[12:], proto)
	return append(eth, payload...), true
}

// loadFrames reads a capture. Each packet's length is its captured length:
// the fast path sees a frame as long as the bytes it is given.
func loadFrames(t *testing.T, path string) (frames []frame, skipped int) {
	t.Helper()
	r, err := pcap.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for {
		pk, err := r.Next()
		if err == io.EOF {
			return frames, skipped
		}
		if err != nil {
			t.Fatal(err)
		}
		data := append([]byte(nil), pk.Data...)
		eth, ok := toEthernet(pk.LinkType, data)
		if !ok {
			skipped++
			continue
		}
		frames = append(frames, frame{pk: pcap.Packet{Time: pk.Time, Data: data, Length: len(data), LinkType: pk.LinkType, Ifindex: testIfindex}, eth: eth})
	}
}

// recorder turns events into comparable lines, without the clock.
type recorder struct{ lines []string }

func flowLine(f *event.Flow) string {
	return fmt.Sprintf("flow %v reason=%v final=%v seq=%d frag=%v first=%#x flags=%#x/%#x if=%v pkts=%v bytes=%v",
		f.Key, f.Reason, f.Final, f.Seq, f.Frag, f.FirstFlags, f.TCPFlags[0], f.TCPFlags[1], f.Ifindex, f.Packets, f.Bytes)
}

func (r *recorder) HandleFlow(f *event.Flow) { r.lines = append(r.lines, flowLine(f)) }
func (r *recorder) HandleSnippet(s *event.Snippet) {
	r.lines = append(r.lines, fmt.Sprintf("snippet %v kind=%v dir=%v trunc=%v cont=%v off=%d plen=%d if=%d data=%x",
		s.Key, s.Kind, s.Dir, s.Truncated, s.Continuation, s.Offset, s.PayloadLen, s.Ifindex, s.Data))
}

// fastPath is a loaded wl_xdp with its ring reader.
type fastPath struct {
	d *dataplane.Dataplane
	r *dataplane.Reader
}

func loadFastPath(t *testing.T, sample uint32) *fastPath {
	t.Helper()
	d, err := dataplane.Load(dataplane.Options{FlowSample: sample, IdleTimeout: time.Hour, CloseTimeout: time.Hour, ActiveTimeout: 24 * time.Hour})
	if err != nil {
		t.Fatalf("load fast path: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	r, err := d.NewReader()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return &fastPath{d: d, r: r}
}

func (fp *fastPath) drain(t *testing.T, rec *recorder) {
	t.Helper()
	if err := fp.r.Drain(rec); err != nil {
		t.Fatalf("drain ring: %v", err)
	}
	if st := fp.r.Stats(); st.Malformed != 0 {
		t.Fatalf("ring reader: %d malformed records: %s", st.Malformed, st.LastError)
	}
}

// Layout of struct wl_flow_key and struct wl_flow (bpf/structs.h), read
// from the map as bytes: the generated Go types are internal to package
// dataplane. The sizes are checked against the map, so a layout change
// fails here instead of misreading.
const (
	keySize   = 44
	valueSize = 88
)

// table reads the flow table as the records the sweeper would write for
// the flows in it (reason from their state), and empties it.
func (fp *fastPath) table(t *testing.T) []string {
	t.Helper()
	m := fp.d.FlowsMap()
	if m.KeySize() != keySize || m.ValueSize() != valueSize {
		t.Fatalf("wl_flows_v1 key/value are %d/%d bytes, this test reads %d/%d: update it with bpf/structs.h",
			m.KeySize(), m.ValueSize(), keySize, valueSize)
	}
	var lines []string
	var keys [][]byte
	var k, v []byte
	it := m.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
		ne := binary.NativeEndian
		var key event.FlowKey
		key.Src = netip.AddrFrom16([16]byte(k[0:16])).Unmap()
		key.Dst = netip.AddrFrom16([16]byte(k[16:32])).Unmap()
		key.SrcPort, key.DstPort = ne.Uint16(k[32:]), ne.Uint16(k[34:])
		key.VLAN = [2]uint16{ne.Uint16(k[36:]), ne.Uint16(k[38:])}
		key.Proto = k[40]
		state := ne.Uint32(v[64:])
		if v[72] == 0 { // lo_is_orig: orient by the originator
			key.Src, key.Dst = key.Dst, key.Src
			if key.Proto != event.ProtoICMP && key.Proto != event.ProtoICMPv6 {
				key.SrcPort, key.DstPort = key.DstPort, key.SrcPort
			}
		}
		reason := event.ReasonIdle
		switch {
		case state&(1<<19) != 0:
			reason = event.ReasonRST
		case state&(3<<16) == 3<<16:
			reason = event.ReasonFIN
		}
		f := event.Flow{Key: key, Reason: reason, Final: true, Seq: ne.Uint32(v[68:]), Frag: state&(1<<22) != 0,
			FirstFlags: v[73], TCPFlags: [2]uint8{uint8(state), uint8(state >> 8)},
			Ifindex: [2]uint32{ne.Uint32(v[56:]), ne.Uint32(v[60:])},
			Packets: [2]uint64{ne.Uint64(v[24:]), ne.Uint64(v[32:])}, Bytes: [2]uint64{ne.Uint64(v[40:]), ne.Uint64(v[48:])}}
		lines = append(lines, flowLine(&f))
	}
	if err := it.Err(); err != nil {
		t.Fatalf("iterate flow table: %v", err)
	}
	for _, k := range keys {
		if err := m.Delete(k); err != nil {
			t.Fatalf("delete flow entry: %v", err)
		}
	}
	return lines
}

func (fp *fastPath) counters(t *testing.T) dataplane.Counters {
	t.Helper()
	st, err := fp.d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return st.Total
}

// result is what one side produced for a run of frames.
type result struct {
	inPath   []string          // events while packets passed, in order
	left     []string          // flows left at the end, sorted
	counters map[string]uint64 // by the twin's Stats field name
}

func (fp *fastPath) run(t *testing.T, frames []frame) result {
	t.Helper()
	fp.table(t) // empty from the previous run
	var rec recorder
	fp.drain(t, &rec)
	rec.lines = nil
	before := fp.counters(t)
	prog := fp.d.XDPProgram()
	for i, f := range frames {
		ret, err := prog.Run(&ebpf.RunOptions{Data: f.eth})
		if err != nil {
			t.Fatalf("frame %d (%d bytes): prog.Run: %v", i, len(f.eth), err)
		}
		if ret != 2 { // XDP_PASS: the lists are empty
			t.Fatalf("frame %d: verdict %d, want XDP_PASS", i, ret)
		}
		if i%2048 == 2047 {
			fp.drain(t, &rec)
		}
	}
	fp.drain(t, &rec)
	after := fp.counters(t)
	left := fp.table(t)
	sort.Strings(left)
	c := map[string]uint64{}
	for name, s := range map[string]dataplane.Stat{
		"Packets": dataplane.StatRxPackets, "Bytes": dataplane.StatRxBytes, "NonIP": dataplane.StatNonIP,
		"ErrEth": dataplane.StatErrEth, "ErrVLAN": dataplane.StatErrVLAN, "ErrIPv4": dataplane.StatErrIPv4,
		"ErrIPv6": dataplane.StatErrIPv6, "ErrIPv6Ext": dataplane.StatErrIPv6Ext, "ErrL4": dataplane.StatErrL4,
		"Fragments": dataplane.StatFragments, "FlowsCreated": dataplane.StatFlowNew, "FlowsDeleted": dataplane.StatFlowDeleted,
		"FlowSampledOut": dataplane.StatFlowSampledOut, "FlowRecords": dataplane.StatEvFlow, "Snippets": dataplane.StatEvSnippet,
		"SnippetsTruncated": dataplane.StatSnippetTrunc, "Lost": dataplane.StatEvSnippetFail,
	} {
		c[name] = after[s] - before[s]
	}
	c["Lost"] += after[dataplane.StatEvFlowFail] - before[dataplane.StatEvFlowFail] + after[dataplane.StatFlowInsertFail] - before[dataplane.StatFlowInsertFail]
	return result{inPath: rec.lines, left: left, counters: c}
}

func twinRun(t *testing.T, frames []frame, sample uint32) result {
	t.Helper()
	var rec recorder
	long := 200 * 365 * 24 * time.Hour // longer than any capture (some span decades): no sweeps
	tr, err := pcap.NewTracker(pcap.Options{FlowSample: sample, IdleTimeout: long, ActiveTimeout: long, CloseTimeout: long}, &rec)
	if err != nil {
		t.Fatal(err)
	}
	for i := range frames {
		tr.Packet(&frames[i].pk)
	}
	st := tr.Stats()
	inPath := rec.lines
	rec.lines = nil
	tr.Flush()
	left := rec.lines
	sort.Strings(left)
	c := map[string]uint64{
		"Packets": st.Packets, "Bytes": st.Bytes, "NonIP": st.NonIP, "ErrEth": st.ErrEth, "ErrVLAN": st.ErrVLAN,
		"ErrIPv4": st.ErrIPv4, "ErrIPv6": st.ErrIPv6, "ErrIPv6Ext": st.ErrIPv6Ext, "ErrL4": st.ErrL4,
		"Fragments": st.Fragments, "FlowsCreated": st.FlowsCreated, "FlowsDeleted": st.FlowsDeleted,
		"FlowSampledOut": st.FlowSampledOut, "FlowRecords": st.FlowRecords, "Snippets": st.Snippets,
		"SnippetsTruncated": st.SnippetsTruncated, "Lost": st.SnippetsMissing + st.FlowsEvicted,
	}
	if st.TimeBackwards > 0 || st.Sweeps > 0 && st.SweepExpired > 0 {
		t.Logf("twin: %d packets out of order, %d expired by sweeps", st.TimeBackwards, st.SweepExpired)
	}
	return result{inPath: inPath, left: left, counters: c}
}

// compare reports the first differences between the fast path and the twin.
func compare(t *testing.T, name string, bpf, twin result) bool {
	t.Helper()
	ok := true
	for k, v := range bpf.counters {
		if twin.counters[k] != v {
			t.Errorf("%s: counter %s: fast path %d, twin %d", name, k, v, twin.counters[k])
			ok = false
		}
	}
	for _, side := range []struct {
		what      string
		bpf, twin []string
	}{{"event", bpf.inPath, twin.inPath}, {"flow left at the end", bpf.left, twin.left}} {
		n := max(len(side.bpf), len(side.twin))
		shown := 0
		for i := 0; i < n && shown < 3; i++ {
			var b, w string
			if i < len(side.bpf) {
				b = side.bpf[i]
			}
			if i < len(side.twin) {
				w = side.twin[i]
			}
			if b != w {
				t.Errorf("%s: %s %d (of %d / %d):\n fast path %s\n twin      %s", name, side.what, i, len(side.bpf), len(side.twin), b, w)
				shown++
				ok = false
			}
		}
	}
	return ok
}

// corpusCaptures lists the corpus captures the cross-check covers: every
// generated and public capture except most of the 4000 one-scan esnet
// files (every 25th of those).
func corpusCaptures(t *testing.T, dir string) []string {
	var out []string
	esnet := 0
	for _, sub := range []string{"generated", "public"} {
		filepath.WalkDir(filepath.Join(dir, sub), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !(strings.HasSuffix(p, ".pcap") || strings.HasSuffix(p, ".pcapng") || strings.HasSuffix(p, ".cap")) {
				return nil
			}
			if strings.Contains(p, "/esnet-scans/") {
				esnet++
				if esnet%25 != 0 {
					return nil
				}
			}
			out = append(out, p)
			return nil
		})
	}
	return out
}

// TestCorpus runs corpus captures (all link types the twin reads) through
// both and requires the same events, flows and counters.
func TestCorpus(t *testing.T) {
	requireRoot(t)
	dir := corpusDir(t)
	fp := loadFastPath(t, 1)
	files := corpusCaptures(t, dir)
	var packets, events, agree, compared int
	for _, path := range files {
		rel, _ := filepath.Rel(dir, path)
		r, err := pcap.Open(path)
		if err != nil {
			t.Logf("%s: not compared: %v", rel, err) // an unsupported link type
			continue
		}
		r.Close()
		compared++
		frames, skipped := loadFrames(t, path)
		bpf := fp.run(t, frames)
		twin := twinRun(t, frames, 1)
		if compare(t, rel, bpf, twin) {
			agree++
		}
		if skipped > 0 {
			t.Logf("%s: %d packets with a cut link-layer header not compared", rel, skipped)
		}
		packets += len(frames)
		events += len(bpf.inPath) + len(bpf.left)
	}
	t.Logf("%d of %d captures agree: %d packets, %d events and flows compared", agree, compared, packets, events)
}

// TestFlowSampling: with 1-in-3 sampling both keep the same flows (the
// twin mirrors the canonical key and its hash).
func TestFlowSampling(t *testing.T) {
	requireRoot(t)
	dir := corpusDir(t)
	fp := loadFastPath(t, 3)
	for _, rel := range []string{"generated/portscan_syn.pcap", "generated/lateral_fanout.pcap", "public/ja4/pcap/ipv6.pcapng"} {
		frames, _ := loadFrames(t, filepath.Join(dir, rel))
		bpf := fp.run(t, frames)
		twin := twinRun(t, frames, 3)
		compare(t, rel, bpf, twin)
		if bpf.counters["FlowSampledOut"] == 0 {
			t.Errorf("%s: nothing sampled out", rel)
		}
	}
}

// TestMutatedFrames is a differential fuzz: corpus frames with random
// bytes changed in their headers go through both, and every parse
// decision, counter and event must agree.
func TestMutatedFrames(t *testing.T) {
	requireRoot(t)
	dir := corpusDir(t)
	fp := loadFastPath(t, 1)
	var pool []frame
	for _, rel := range []string{"generated/hostsweep.pcap", "generated/ioc_tls.pcap", "generated/dns_tunnel_iodine.pcap",
		"generated/scan_anomalous_flags.pcap", "public/ja4/pcap/ipv6.pcapng", "public/suricata-verify/decode-sll2-01/input.pcap"} {
		fr, _ := loadFrames(t, filepath.Join(dir, rel))
		pool = append(pool, fr...)
	}
	rounds := 4
	if n, err := strconv.Atoi(os.Getenv("WARDLINE_MUTATION_ROUNDS")); err == nil {
		rounds = n // longer campaigns by hand
	}
	rng := rand.New(rand.NewSource(1))
	base := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	for round := 0; round < rounds; round++ {
		var frames []frame
		for i := 0; i < 5000; i++ {
			src := pool[rng.Intn(len(pool))]
			eth := append([]byte(nil), src.eth...)
			// Change 1-4 bytes among the first 96 (the headers).
			for n := 1 + rng.Intn(4); n > 0; n-- {
				if j := rng.Intn(min(len(eth), 96)); j >= 12 || rng.Intn(4) == 0 {
					eth[j] = byte(rng.Intn(256))
				}
			}
			// Sometimes cut it.
			if rng.Intn(8) == 0 && len(eth) > 14 {
				eth = eth[:14+rng.Intn(len(eth)-14)]
			}
			frames = append(frames, frame{eth: eth, pk: pcap.Packet{Time: base.Add(time.Duration(i) * time.Microsecond), Data: eth,
				Length: len(eth), LinkType: layers.LinkTypeEthernet, Ifindex: testIfindex}})
		}
		bpf := fp.run(t, frames)
		twin := twinRun(t, frames, 1)
		if !compare(t, fmt.Sprintf("mutation round %d", round), bpf, twin) {
			break
		}
	}
}

// Crafted frames for TestCraftedConversations.
var (
	cli4 = netip.MustParseAddr("198.18.0.11")
	srv4 = netip.MustParseAddr("203.0.113.10")
	cli6 = netip.MustParseAddr("2001:db8:18::11")
	srv6 = netip.MustParseAddr("2001:db8:113::10")
)

func serialize(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func ethLayer(et layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: []byte{2, 0, 0, 0, 0, 0xa}, DstMAC: []byte{2, 0, 0, 0, 0, 0xb}, EthernetType: et}
}

// tcp builds a TCP frame; flags is any of "SAFRP".
func tcp(t *testing.T, src, dst netip.Addr, sport, dport uint16, flags string, seq uint32, payload []byte) []byte {
	th := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: seq, Window: 64240,
		SYN: strings.Contains(flags, "S"), ACK: strings.Contains(flags, "A"), FIN: strings.Contains(flags, "F"),
		RST: strings.Contains(flags, "R"), PSH: strings.Contains(flags, "P")}
	if src.Is4() {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		th.SetNetworkLayerForChecksum(ip)
		return serialize(t, ethLayer(layers.EthernetTypeIPv4), ip, th, gopacket.Payload(payload))
	}
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	th.SetNetworkLayerForChecksum(ip)
	return serialize(t, ethLayer(layers.EthernetTypeIPv6), ip, th, gopacket.Payload(payload))
}

// ip6Ext builds an IPv6 frame whose payload follows the given extension
// headers (next-header values; each 8 bytes, AH 12) and ends in UDP.
func ip6Ext(t *testing.T, exts []layers.IPProtocol, fragOff uint16) []byte {
	first := layers.IPProtocolUDP
	if len(exts) > 0 {
		first = exts[0]
	}
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: first, SrcIP: cli6.AsSlice(), DstIP: srv6.AsSlice()}
	uh := &layers.UDP{SrcPort: 40000, DstPort: 53}
	uh.SetNetworkLayerForChecksum(ip)
	udp := serialize(t, uh, gopacket.Payload([]byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00")))
	var body []byte
	for i, e := range exts {
		next := byte(layers.IPProtocolUDP)
		if i+1 < len(exts) {
			next = byte(exts[i+1])
		}
		switch e {
		case layers.IPProtocolIPv6Fragment:
			body = append(body, next, 0, byte(fragOff>>8), byte(fragOff), 0, 0, 0, 1)
		case layers.IPProtocolAH:
			body = append(body, next, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0) // (1+2)*4 = 12 bytes
		default:
			body = append(body, next, 0, 1, 4, 0, 0, 0, 0)
		}
	}
	return serialize(t, ethLayer(layers.EthernetTypeIPv6), ip, gopacket.Payload(append(body, udp...)))
}

func vlan(tags []uint16, inner []byte) []byte {
	out := append([]byte{}, inner[:12]...)
	for i, tag := range tags {
		tpid := uint16(0x8100)
		if i == 0 && len(tags) > 1 {
			tpid = 0x88A8
		}
		out = binary.BigEndian.AppendUint16(out, tpid)
		out = binary.BigEndian.AppendUint16(out, tag)
	}
	return append(out, inner[12:]...)
}

// TestCraftedConversations runs hand-made conversations that the corpus
// may not hold through both: ClientHellos over many segments, every way
// of closing a TCP connection, fragments, VLAN stacks, extension headers.
func TestCraftedConversations(t *testing.T) {
	requireRoot(t)
	fp := loadFastPath(t, 1)
	var eths [][]byte
	add := func(fs ...[]byte) { eths = append(eths, fs...) }

	// A ClientHello record of 2000 bytes in 250-byte segments, with a
	// retransmission and an out-of-order segment; one whose sequence
	// numbers wrap; one cut short of its length.
	rec := make([]byte, 2000)
	copy(rec, []byte{0x16, 0x03, 0x01, 1995 >> 8, 1995 & 0xff, 0x01})
	for i := 6; i < len(rec); i++ {
		rec[i] = byte(i)
	}
	for k, base := range []uint32{1000, 0xffffff00} {
		port := uint16(41000 + k)
		add(tcp(t, cli4, srv4, port, 443, "S", base-1, nil))
		for off := 0; off < len(rec); off += 250 {
			add(tcp(t, cli4, srv4, port, 443, "AP", base+uint32(off), rec[off:off+250]))
			if off == 500 {
				add(tcp(t, cli4, srv4, port, 443, "AP", base, rec[:250]))           // retransmission
				add(tcp(t, cli4, srv4, port, 443, "AP", base+1500, rec[1500:1750])) // early
			}
		}
	}
	add(tcp(t, cli6, srv6, 41010, 443, "AP", 5, rec[:100]), tcp(t, cli6, srv6, 41010, 443, "AP", 105, rec[100:300]))

	// Closing: server FIN first; the client's ACK after its own FIN does
	// not end it, the server's does.
	add(tcp(t, cli4, srv4, 42000, 80, "S", 0, nil), tcp(t, srv4, cli4, 80, 42000, "SA", 0, nil),
		tcp(t, srv4, cli4, 80, 42000, "FA", 1, nil), tcp(t, cli4, srv4, 42000, 80, "FA", 1, nil),
		tcp(t, cli4, srv4, 42000, 80, "A", 2, nil), tcp(t, srv4, cli4, 80, 42000, "A", 2, nil))
	// Simultaneous close; FIN with RST; RST alone; SYN-ACK first.
	add(tcp(t, cli6, srv6, 42001, 22, "FA", 1, nil), tcp(t, srv6, cli6, 22, 42001, "FA", 1, nil),
		tcp(t, srv6, cli6, 22, 42001, "FA", 1, nil), tcp(t, cli6, srv6, 42001, 22, "A", 2, nil))
	add(tcp(t, cli4, srv4, 42002, 25, "FA", 1, []byte("QUIT\r\n")), tcp(t, srv4, cli4, 25, 42002, "FRA", 1, nil))
	add(tcp(t, srv4, cli4, 443, 42003, "SA", 7, nil), tcp(t, cli4, srv4, 42003, 443, "AP", 1, []byte("GET / HTTP/1.1\r\n\r\n")),
		tcp(t, cli4, srv4, 42003, 443, "R", 20, nil))
	// Payloads: short, long (cut at the snippet length), DNS over TCP,
	// a TLS record on port 53 (DNS wins), every HTTP method prefix.
	add(tcp(t, cli4, srv4, 42004, 9000, "AP", 1, []byte("hi")))
	add(tcp(t, cli4, srv4, 42005, 80, "AP", 1, append([]byte("POST /up HTTP/1.1\r\n\r\n"), make([]byte, 5000)...)))
	add(tcp(t, cli4, srv4, 42006, 53, "AP", 1, []byte("\x00\x0c\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00")))
	add(tcp(t, cli4, srv4, 42007, 53, "AP", 1, rec[:300]))
	for i, m := range []string{"GET ", "POST", "HEAD", "PUT ", "DELE", "OPTI", "CONN", "PATC", "TRAC", "PRI ", "get "} {
		add(tcp(t, cli4, srv4, uint16(42100+i), 8080, "AP", 1, []byte(m+" /x HTTP/1.1\r\n")))
	}
	// Layers: VLAN stacks, extension headers, fragments, ICMP.
	base := tcp(t, cli4, srv4, 42200, 80, "S", 0, nil)
	add(vlan([]uint16{10}, base), vlan([]uint16{20, 30}, base), vlan([]uint16{1, 2, 3}, base))
	for n := 0; n <= 7; n++ {
		var exts []layers.IPProtocol
		for i := 0; i < n; i++ {
			exts = append(exts, []layers.IPProtocol{layers.IPProtocolIPv6HopByHop, layers.IPProtocolIPv6Destination,
				layers.IPProtocolIPv6Routing, layers.IPProtocolAH}[i%4])
		}
		add(ip6Ext(t, exts, 0))
	}
	add(ip6Ext(t, []layers.IPProtocol{layers.IPProtocolIPv6Fragment}, 0x0001), ip6Ext(t, []layers.IPProtocol{layers.IPProtocolIPv6Fragment}, 0x0100))
	for _, off := range []uint16{0, 100} {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: cli4.AsSlice(), DstIP: srv4.AsSlice(),
			Flags: layers.IPv4MoreFragments, FragOffset: off}
		uh := &layers.UDP{SrcPort: 5353, DstPort: 53}
		uh.SetNetworkLayerForChecksum(ip)
		add(serialize(t, ethLayer(layers.EthernetTypeIPv4), ip, uh, gopacket.Payload(make([]byte, 64))))
	}
	for _, typ := range []uint8{8, 0, 13, 14, 3} {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: cli4.AsSlice(), DstIP: srv4.AsSlice()}
		if typ == 0 || typ == 14 {
			ip.SrcIP, ip.DstIP = ip.DstIP, ip.SrcIP
		}
		add(serialize(t, ethLayer(layers.EthernetTypeIPv4), ip, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 1)}, gopacket.Payload([]byte("ping"))))
	}
	icmpIn6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv4, SrcIP: cli6.AsSlice(), DstIP: srv6.AsSlice()}
	add(serialize(t, ethLayer(layers.EthernetTypeIPv6), icmpIn6, gopacket.Payload([]byte{8, 0, 0, 0, 1, 2})))
	arp := serialize(t, ethLayer(layers.EthernetTypeARP), &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPReply, SourceHwAddress: []byte{2, 0, 0, 0, 0, 0xa},
		SourceProtAddress: cli4.AsSlice(), DstHwAddress: make([]byte, 6), DstProtAddress: srv4.AsSlice()})
	add(arp, vlan([]uint16{7}, arp))

	start := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	frames := make([]frame, len(eths))
	for i, e := range eths {
		frames[i] = frame{eth: e, pk: pcap.Packet{Time: start.Add(time.Duration(i) * time.Millisecond), Data: e, Length: len(e),
			LinkType: layers.LinkTypeEthernet, Ifindex: testIfindex}}
	}
	bpf := fp.run(t, frames)
	twin := twinRun(t, frames, 1)
	compare(t, "crafted", bpf, twin)
	conts := 0
	for _, l := range bpf.inPath {
		if strings.Contains(l, "cont=true") {
			conts++
		}
	}
	t.Logf("%d frames, %d events, %d continuation snippets, counters %v", len(frames), len(bpf.inPath), conts, bpf.counters)
}

// TestDefaultsAgree: the offline twin's defaults must be the appliance's,
// or an offline analysis would not reproduce what the box reports.
func TestDefaultsAgree(t *testing.T) {
	for _, c := range []struct {
		name      string
		off, live any
	}{
		{"flow table size", pcap.DefaultFlowTableSize, dataplane.DefaultFlowTableSize},
		{"snippet length", pcap.DefaultSnippetLen, dataplane.DefaultSnippetLen},
		{"idle timeout", pcap.DefaultIdleTimeout, dataplane.DefaultIdleTimeout},
		{"active timeout", pcap.DefaultActiveTimeout, dataplane.DefaultActiveTimeout},
		{"close timeout", pcap.DefaultCloseTimeout, dataplane.DefaultCloseTimeout},
	} {
		if fmt.Sprint(c.off) != fmt.Sprint(c.live) {
			t.Errorf("%s: offline %v, appliance %v", c.name, c.off, c.live)
		}
	}
}
