package pcap

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/wardline/wardline/dataplane/event"
)

// rawPacket is a packet copied out of a Reader.
type rawPacket struct {
	ts     time.Time
	data   []byte
	length int
	lt     layers.LinkType
	offset int64
}

// readAll returns every packet of path, and the error that ended it.
func readAll(t testing.TB, path string) ([]rawPacket, error) {
	t.Helper()
	r, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []rawPacket
	for {
		pk, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, rawPacket{pk.Time, append([]byte(nil), pk.Data...), pk.Length, pk.LinkType, pk.Offset})
	}
}

// writePcap writes packets as a classic pcap file.
func writePcap(t testing.TB, path string, lt layers.LinkType, pks []rawPacket) {
	t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriterNanos(&buf)
	if err := w.WriteFileHeader(262144, lt); err != nil {
		t.Fatal(err)
	}
	for _, p := range pks {
		ci := gopacket.CaptureInfo{Timestamp: p.ts, CaptureLength: len(p.data), Length: max(p.length, len(p.data))}
		if err := w.WritePacket(ci, p.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// runTracker feeds pks to a fresh tracker, flushes, and returns the events.
func runTracker(t testing.TB, pks []rawPacket) collected {
	var ev collected
	tr := newTracker(t, Options{}, &ev)
	for _, p := range pks {
		tr.Packet(&Packet{Time: p.ts, Data: p.data, Length: p.length, LinkType: p.lt})
	}
	tr.Flush()
	return ev
}

func sameEvents(t *testing.T, what string, got, want collected) {
	t.Helper()
	if len(got.flows) != len(want.flows) || len(got.snippets) != len(want.snippets) {
		t.Fatalf("%s: %d records %d snippets, want %d %d", what, len(got.flows), len(got.snippets), len(want.flows), len(want.snippets))
	}
	for i := range got.flows {
		if !reflect.DeepEqual(got.flows[i], want.flows[i]) {
			t.Fatalf("%s: record %d\n got %+v\nwant %+v", what, i, got.flows[i], want.flows[i])
		}
	}
	for i := range got.snippets {
		if !reflect.DeepEqual(got.snippets[i], want.snippets[i]) {
			t.Fatalf("%s: snippet %d\n got %+v\nwant %+v", what, i, got.snippets[i], want.snippets[i])
		}
	}
}

// TestTruncatedFiles cuts corpus captures mid-packet: reading stops with
// a *ReadError at the offset of the cut record, after every packet before
// it, with exactly the events those packets give.
func TestTruncatedFiles(t *testing.T) {
	dir := corpusDir(t)
	for _, tc := range []struct {
		file string
		cut  func(rec int64) int64 // where to cut, from the record's offset
		what string
	}{
		{"generated/beacon_http.pcap", func(o int64) int64 { return o + 16 + 30 }, "truncated packet data"},
		{"generated/beacon_http.pcap", func(o int64) int64 { return o + 7 }, "truncated record header"},
		{"public/ndpi/pcap/tls_heur__shadowsocks-tcp.pcapng", func(o int64) int64 { return o + 40 }, "the file ends 40 bytes into the block"},
		{"public/sgr-hostscan/2022/Favilli/tests/hs-icmpScan.pcapng", func(o int64) int64 { return o + 20 }, "truncated packet data (4 of"}, // a pcap named .pcapng
	} {
		t.Run(filepath.Base(tc.file)+"/"+tc.what, func(t *testing.T) {
			src := filepath.Join(dir, tc.file)
			pks, err := readAll(t, src)
			if err != nil {
				t.Fatal(err)
			}
			k := len(pks) * 2 / 3
			orig, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			cutAt := tc.cut(pks[k].offset)
			path := filepath.Join(t.TempDir(), "cut-"+filepath.Base(tc.file))
			if err := os.WriteFile(path, orig[:cutAt], 0o644); err != nil {
				t.Fatal(err)
			}

			var ev collected
			st, err := ReadFile(context.Background(), path, &ev, Options{}, nil)
			var re *ReadError
			if !errors.As(err, &re) {
				t.Fatalf("error %v (%T), want a *ReadError", err, err)
			}
			if re.File != path || re.Offset != pks[k].offset || !errors.Is(err, io.ErrUnexpectedEOF) ||
				!strings.Contains(err.Error(), tc.what) || !strings.Contains(err.Error(), fmt.Sprintf("offset %d", pks[k].offset)) {
				t.Errorf("error %q, want %q at offset %d of %s", err, tc.what, pks[k].offset, path)
			}
			t.Logf("%v", err)
			if st.Packets != uint64(k) || len(st.Files) != 1 || st.Files[0].Packets != uint64(k) || st.Files[0].Err == nil {
				t.Errorf("delivered %d packets (files %+v), want %d", st.Packets, st.Files, k)
			}
			sameEvents(t, "truncated file", ev, runTracker(t, pks[:k]))
		})
	}
}

// TestCorpusReads reads every capture of the corpus: none panics, only the
// files known to be unreadable fail, and every packet the tracker accounts
// for is in exactly one final flow record.
func TestCorpusReads(t *testing.T) {
	dir := corpusDir(t)
	// Files that cannot be read, and why.
	wantErr := map[string]error{}
	var files []string
	for _, sub := range []string{"generated", "public"} {
		filepath.WalkDir(filepath.Join(dir, sub), func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".pcap") || strings.HasSuffix(p, ".pcapng") || strings.HasSuffix(p, ".cap")) {
				files = append(files, p)
			}
			return nil
		})
	}
	if len(files) < 100 {
		t.Fatalf("found only %d captures under %s", len(files), dir)
	}
	seen := map[string]bool{}
	for _, p := range files {
		rel, _ := filepath.Rel(dir, p)
		var finalPackets uint64
		h := event.HandlerFuncs{Flow: func(f *event.Flow) {
			if f.Final {
				finalPackets += f.Packets[0] + f.Packets[1]
			}
		}}
		st, err := ReadFile(context.Background(), p, h, Options{}, nil)
		if want, ok := wantErr[rel]; ok {
			seen[rel] = true
			if !errors.Is(err, want) || !strings.Contains(err.Error(), p) {
				t.Errorf("%s: error %v, want %v naming the file", rel, err, want)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			continue
		}
		tracked := st.Packets - st.NonIP - st.ParseErrors() - st.FlowSampledOut
		if st.FlowsEvicted == 0 && finalPackets != tracked {
			t.Errorf("%s: final records hold %d packets, %d were tracked (%+v)", rel, finalPackets, tracked, st)
		}
		if st.LiveFlows != 0 || st.FlowsCreated != st.FlowsDeleted {
			t.Errorf("%s: %d flows left after the flush, created %d deleted %d", rel, st.LiveFlows, st.FlowsCreated, st.FlowsDeleted)
		}
	}
	for rel := range wantErr {
		if !seen[rel] {
			t.Errorf("%s: expected an error, file not found", rel)
		}
	}
	t.Logf("%d captures read", len(files))
}

// pcapInfo is the part of a scenario's labels the byte-count test needs.
type pcapInfo struct {
	PcapInfo struct {
		Packets   uint64 `json:"packets"`
		WireBytes uint64 `json:"wire_bytes"`
	} `json:"pcap_info"`
}

// TestSnapLengthCorpus: the captures made with snaplen 200 count bytes
// from the original lengths, as recorded in their labels, and those bytes
// land in the flow records.
func TestSnapLengthCorpus(t *testing.T) {
	dir := corpusDir(t)
	for _, name := range []string{"benign_internal_bulk", "exfil_https_offhours"} {
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(dir, "generated", name+".labels.json"))
			if err != nil {
				t.Fatal(err)
			}
			var lab pcapInfo
			if err := json.Unmarshal(b, &lab); err != nil {
				t.Fatalf("%s.labels.json: %v", name, err)
			}
			path := filepath.Join(dir, "generated", name+".pcap")
			var flowBytes uint64
			h := event.HandlerFuncs{Flow: func(f *event.Flow) {
				if f.Final {
					flowBytes += f.Bytes[0] + f.Bytes[1]
				}
			}}
			st, err := ReadFile(context.Background(), path, h, Options{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if st.ShortCaptures == 0 || st.CapturedBytes >= st.Bytes {
				t.Errorf("%s: %d short captures, %d of %d bytes captured: not a snaplen capture?", name, st.ShortCaptures, st.CapturedBytes, st.Bytes)
			}
			if st.Packets != lab.PcapInfo.Packets || st.Bytes != lab.PcapInfo.WireBytes {
				t.Errorf("%s: %d packets %d bytes, labels say %d %d", name, st.Packets, st.Bytes, lab.PcapInfo.Packets, lab.PcapInfo.WireBytes)
			}
			// Bytes of packets that are not tracked (ARP, ...).
			pks, err := readAll(t, path)
			if err != nil {
				t.Fatal(err)
			}
			var untracked uint64
			for _, p := range pks {
				var pp pkt
				if parse(p.data, p.length, p.lt, &pp) != resOK {
					untracked += uint64(p.length)
				}
			}
			if flowBytes+untracked != lab.PcapInfo.WireBytes {
				t.Errorf("%s: flow records hold %d bytes + %d untracked, labels say %d", name, flowBytes, untracked, lab.PcapInfo.WireBytes)
			}
		})
	}
}

// TestReadFilesMerge: a capture split into two interleaved files gives,
// read together in either order, exactly the events of the original.
func TestReadFilesMerge(t *testing.T) {
	dir := corpusDir(t)
	src := filepath.Join(dir, "generated", "beacon_http.pcap")
	pks, err := readAll(t, src)
	if err != nil {
		t.Fatal(err)
	}
	var a, b []rawPacket
	side := 0
	for i, p := range pks {
		// Blocks of 7 alternate; a packet with its predecessor's
		// timestamp stays with it (the merge breaks ties by file).
		if i%7 == 0 && (i == 0 || !p.ts.Equal(pks[i-1].ts)) {
			side = (i / 7) % 2
		}
		if side == 0 {
			a = append(a, p)
		} else {
			b = append(b, p)
		}
	}
	tmp := t.TempDir()
	pa, pb := filepath.Join(tmp, "a.pcap"), filepath.Join(tmp, "b.pcap")
	writePcap(t, pa, layers.LinkTypeEthernet, a)
	writePcap(t, pb, layers.LinkTypeEthernet, b)

	var want collected
	if _, err := ReadFile(context.Background(), src, &want, Options{}, nil); err != nil {
		t.Fatal(err)
	}
	for _, order := range [][]string{{pa, pb}, {pb, pa}} {
		var got collected
		st, err := ReadFiles(context.Background(), order, &got, Options{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if st.Packets != uint64(len(pks)) || len(st.Files) != 2 || st.Files[0].Path != order[0] ||
			st.Files[0].Packets+st.Files[1].Packets != uint64(len(pks)) || st.TimeBackwards != 0 {
			t.Errorf("stats %+v", st)
		}
		sameEvents(t, "merged", got, want)
	}
}

// TestReadFilesErrors: a missing file and a damaged one do not stop the
// others; each is named in the joined error.
func TestReadFilesErrors(t *testing.T) {
	tmp := t.TempDir()
	good := filepath.Join(tmp, "good.pcap")
	f := udpFrame(t, client4, server4, 1, 2, []byte("x"))
	writePcap(t, good, layers.LinkTypeEthernet, []rawPacket{{ts: t0, data: f, length: len(f)}, {ts: t0.Add(time.Second), data: f, length: len(f)}})
	text := filepath.Join(tmp, "notes.txt")
	os.WriteFile(text, []byte("this is not a capture\n"), 0o644)
	hdlc := filepath.Join(tmp, "radiotap.pcap")
	writePcap(t, hdlc, layers.LinkTypeIEEE80211Radio, []rawPacket{{ts: t0, data: f, length: len(f)}})
	empty := filepath.Join(tmp, "empty.pcap")
	writePcap(t, empty, layers.LinkTypeEthernet, nil)
	missing := filepath.Join(tmp, "missing.pcap")

	st, err := ReadFiles(context.Background(), []string{text, good, hdlc, missing, empty}, nil, Options{}, nil)
	if st.Packets != 2 || st.Files[1].Err != nil || st.Files[4].Err != nil || st.Files[4].Packets != 0 {
		t.Errorf("stats %+v", st)
	}
	for _, tc := range []struct {
		i    int
		is   error
		frag string
	}{
		{0, ErrFormat, "starts with 74 68 69 73"},
		{2, ErrLinkType, "127 (LINKTYPE_IEEE802_11_RADIOTAP)"},
		{3, fs.ErrNotExist, "missing.pcap"},
	} {
		fe := st.Files[tc.i].Err
		if !errors.Is(fe, tc.is) || !strings.Contains(fe.Error(), st.Files[tc.i].Path) || !strings.Contains(fe.Error(), tc.frag) {
			t.Errorf("file %d: error %v, want %v mentioning %q and the path", tc.i, fe, tc.is, tc.frag)
		}
		if !errors.Is(err, tc.is) {
			t.Errorf("joined error %v lacks %v", err, tc.is)
		}
	}
}

// TestOutOfOrderTimestamps: a capture whose timestamps go back does not
// time flows out backwards: the late packet counts at the clock.
func TestOutOfOrderTimestamps(t *testing.T) {
	a := udpFrame(t, client4, server4, 1000, 2000, []byte("a"))
	b := udpFrame(t, client6, server6, 3000, 4000, []byte("b"))
	path := filepath.Join(t.TempDir(), "ooo.pcap")
	writePcap(t, path, layers.LinkTypeEthernet, []rawPacket{
		{ts: t0.Add(100 * time.Second), data: a, length: len(a)},
		{ts: t0, data: b, length: len(b)}, // 100 s in the past
		{ts: t0.Add(101 * time.Second), data: a, length: len(a)},
	})
	var ev collected
	st, err := ReadFile(context.Background(), path, &ev, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.TimeBackwards != 1 || len(ev.flows) != 2 {
		t.Fatalf("stats %+v records %+v", st, ev.flows)
	}
	for _, f := range ev.flows {
		if f.Reason != event.ReasonIdle || f.FirstSeen.Before(t0.Add(100*time.Second)) {
			t.Errorf("record %+v: want idle, first seen at the clock", f)
		}
	}
}

// TestPcapngMixedLinkTypes: interfaces of different link types in one
// pcapng file are each decoded by their own type.
func TestPcapngMixedLinkTypes(t *testing.T) {
	frame := udpFrame(t, client4, server4, 1111, 53, dnsQuery(t, 7, "example.org"))
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriterInterface(&buf, pcapgo.NgInterface{LinkType: layers.LinkTypeEthernet, SnapLength: 65535}, pcapgo.NgWriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := w.AddInterface(pcapgo.NgInterface{LinkType: layers.LinkTypeRaw, SnapLength: 65535})
	if err != nil {
		t.Fatal(err)
	}
	sll2, err := w.AddInterface(pcapgo.NgInterface{LinkType: layers.LinkTypeLinuxSLL2, SnapLength: 65535})
	if err != nil {
		t.Fatal(err)
	}
	ip := frame[14:]
	for i, p := range []struct {
		iface int
		data  []byte
	}{{0, frame}, {raw, ip}, {sll2, append(append([]byte{0x08, 0x00}, make([]byte, 18)...), ip...)}} {
		ci := gopacket.CaptureInfo{Timestamp: t0.Add(time.Duration(i) * time.Second), CaptureLength: len(p.data), Length: len(p.data), InterfaceIndex: p.iface}
		if err := w.WritePacket(ci, p.data); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	r, err := NewReader(bytes.NewReader(buf.Bytes()), "mixed.pcapng")
	if err != nil {
		t.Fatal(err)
	}
	var ev collected
	tr := newTracker(t, Options{}, &ev)
	var lts []layers.LinkType
	for {
		pk, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		lts = append(lts, pk.LinkType)
		tr.Packet(pk)
	}
	tr.Flush()
	if r.Format() != "pcapng" || !reflect.DeepEqual(lts, []layers.LinkType{layers.LinkTypeEthernet, layers.LinkTypeRaw, layers.LinkTypeLinuxSLL2}) {
		t.Errorf("format %s link types %v", r.Format(), lts)
	}
	if len(ev.flows) != 1 || ev.flows[0].Packets[0] != 3 || ev.flows[0].Bytes[0] != 3*uint64(len(frame)) || len(ev.snippets) != 3 {
		t.Errorf("records %+v snippets %d", ev.flows, len(ev.snippets))
	}
}

// TestProgressAndCancel: progress ends with every byte and packet;
// a cancelled context stops the read at its next check.
func TestProgressAndCancel(t *testing.T) {
	dir := corpusDir(t)
	path := filepath.Join(dir, "generated", "exfil_https.pcap")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	var calls []Progress
	start := time.Now()
	st, err := ReadFile(context.Background(), path, nil, Options{}, func(p Progress) { calls = append(calls, p) })
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	last := calls[len(calls)-1]
	if last.BytesRead != uint64(fi.Size()) || last.TotalBytes != uint64(fi.Size()) || last.Packets != st.Packets || last.PacketTime.IsZero() {
		t.Errorf("last progress %+v, want %d bytes %d packets", last, fi.Size(), st.Packets)
	}
	if max := int(elapsed/ProgressInterval) + 2; len(calls) > max {
		t.Errorf("%d progress calls in %v", len(calls), elapsed)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	st, err = ReadFile(ctx, path, nil, Options{}, nil)
	if !errors.Is(err, context.Canceled) || st.Packets != checkEvery || !strings.Contains(err.Error(), path) {
		t.Errorf("cancelled: %d packets, error %v", st.Packets, err)
	}
}

// TestReadAllocations: reading a capture allocates per file, not per
// packet (pcap and pcapng); neither does tracking it, beyond the flow
// table's growth.
func TestReadAllocations(t *testing.T) {
	dir := corpusDir(t)
	mallocs := func(f func()) uint64 {
		var a, b runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&a)
		f()
		runtime.ReadMemStats(&b)
		return b.Mallocs - a.Mallocs
	}
	for _, name := range []string{"exfil_https.pcap", "exfil_https_offhours.pcap"} { // pcap, pcapng
		path := filepath.Join(dir, "generated", name)
		var n int
		got := mallocs(func() {
			r, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			for {
				if _, err := r.Next(); err != nil {
					break
				}
				n++
			}
		})
		if got > 64 {
			t.Errorf("%s: reading %d packets: %d allocations", name, n, got)
		}
		got = mallocs(func() {
			if _, err := ReadFile(context.Background(), path, nil, Options{}, nil); err != nil {
				t.Fatal(err)
			}
		})
		// The flow table grows with the flows (a few dozen here).
		if got > uint64(n/100) {
			t.Errorf("%s: reading and tracking %d packets: %d allocations", name, n, got)
		}
		t.Logf("%s: %d packets, %d allocations with tracking", name, n, got)
	}
}

// TestPacketOffsets: Packet.Offset is where the packet's record starts
// in the file: a pcap record header with its captured length, or a
// pcapng packet block holding the packet.
func TestPacketOffsets(t *testing.T) {
	dir := corpusDir(t)
	for _, rel := range []string{
		"generated/beacon_http.pcap",
		"generated/exfil_https.pcap",                                // larger than the read buffers
		"public/sgr-hostscan/2022/Favilli/tests/hs-icmpScan.pcapng", // smaller than them
		"public/ndpi/pcap/tls_heur__shadowsocks-tcp.pcapng",         // Linux SLL
		"public/suricata-verify/decode-sll2-02/input.pcap",          // 2.6 MB
		"public/pcap-attack/Lateral Movement/LM_WMI_ProcessCallCreate.pcapng",
	} {
		path := filepath.Join(dir, rel)
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		pks, err := readAll(t, path)
		if err != nil {
			t.Fatal(err)
		}
		le := binary.LittleEndian
		for i, p := range pks {
			o := p.offset
			if le.Uint32(raw) == magicPcapng { // some .pcapng files are pcap
				// Enhanced packet block: type 6, captured length at 20, data at 28.
				if o+28 > int64(len(raw)) || le.Uint32(raw[o:]) != 6 || int(le.Uint32(raw[o+20:])) != len(p.data) ||
					!bytes.Equal(raw[o+28:o+28+int64(len(p.data))], p.data) {
					t.Fatalf("%s packet %d: no packet block holding it at offset %d", rel, i, o)
				}
				continue
			}
			if o+16 > int64(len(raw)) || int(le.Uint32(raw[o+8:])) != len(p.data) || !bytes.Equal(raw[o+16:o+16+int64(len(p.data))], p.data) {
				t.Fatalf("%s packet %d: no record holding it at offset %d", rel, i, o)
			}
		}
	}
}

// TestCorruptRecord: a record header whose length cannot be right ends
// the file with an error at that record, after the packets before it.
func TestCorruptRecord(t *testing.T) {
	f := udpFrame(t, client4, server4, 1, 2, []byte("x"))
	path := filepath.Join(t.TempDir(), "corrupt.pcap")
	writePcap(t, path, layers.LinkTypeEthernet, []rawPacket{{ts: t0, data: f, length: len(f)}, {ts: t0, data: f, length: len(f)}})
	raw, _ := os.ReadFile(path)
	second := int64(24 + 16 + len(f))
	binary.LittleEndian.PutUint32(raw[second+8:], 0xfffffff0) // captured length
	os.WriteFile(path, raw, 0o644)
	st, err := ReadFile(context.Background(), path, nil, Options{}, nil)
	var re *ReadError
	if !errors.As(err, &re) || re.Offset != second || !strings.Contains(err.Error(), "capture length exceeds") || st.Packets != 1 {
		t.Fatalf("packets %d, error %v; want 1 packet and a corrupt record at offset %d", st.Packets, err, second)
	}
	t.Log(err)
}
