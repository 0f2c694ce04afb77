package pcap

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/wardline/wardline/dataplane/event"
)

// This file measures the two ways to decode headers that the house rule
// asks to compare (use the well-kept library unless it cannot reach the
// figure): gopacket's DecodingLayerParser, and the hand decoder of
// parse.go. dlpDecoder fills the same pkt as parse for the packets both
// understand; TestDecodersAgree shows where they cannot agree.

// dlpDecoder decodes with gopacket's DecodingLayerParser, reusing its
// layers (no allocation per packet for well-formed packets).
type dlpDecoder struct {
	parser  *gopacket.DecodingLayerParser
	decoded []gopacket.LayerType
	eth     layers.Ethernet
	dot1q   layers.Dot1Q
	ip4     layers.IPv4
	ip6     layers.IPv6
	ext     layers.IPv6ExtensionSkipper
	frag6   layers.IPv6Fragment
	tcp     layers.TCP
	udp     layers.UDP
	icmp4   layers.ICMPv4
	icmp6   layers.ICMPv6
	arp     layers.ARP
	payload gopacket.Payload
}

func newDLPDecoder() *dlpDecoder {
	d := &dlpDecoder{}
	d.parser = gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet,
		&d.eth, &d.dot1q, &d.ip4, &d.ip6, &d.ext, &d.frag6, &d.tcp, &d.udp, &d.icmp4, &d.icmp6, &d.arp, &d.payload)
	d.parser.IgnoreUnsupported = true
	d.decoded = make([]gopacket.LayerType, 0, 16)
	return d
}

// decode fills p from an Ethernet frame as far as gopacket's layers allow.
func (d *dlpDecoder) decode(data []byte, p *pkt) result {
	err := d.parser.DecodeLayers(data, &d.decoded)
	if len(d.decoded) == 0 {
		return resErrEth
	}
	var l4 []byte
	res := resNonIP
	for _, lt := range d.decoded {
		switch lt {
		case layers.LayerTypeDot1Q:
			p.key.vlan[0] = d.dot1q.VLANIdentifier // a second tag overwrites: DLP keeps one layer per type
		case layers.LayerTypeIPv4:
			v4Mapped(&p.key.saddr, d.ip4.SrcIP.To4())
			v4Mapped(&p.key.daddr, d.ip4.DstIP.To4())
			p.key.proto = uint8(d.ip4.Protocol)
			p.frag = d.ip4.FragOffset != 0
			res = resOK
		case layers.LayerTypeIPv6:
			copy(p.key.saddr[:], d.ip6.SrcIP)
			copy(p.key.daddr[:], d.ip6.DstIP)
			p.key.proto = uint8(d.ip6.NextHeader)
			p.v6 = true
			res = resOK
		case layers.LayerTypeIPv6Fragment:
			p.frag = d.frag6.FragmentOffset != 0
			p.key.proto = uint8(d.frag6.NextHeader)
		case layers.LayerTypeIPv6HopByHop, layers.LayerTypeIPv6Routing, layers.LayerTypeIPv6Destination:
			p.key.proto = uint8(d.ext.NextHeader)
		case layers.LayerTypeTCP:
			p.key.sport, p.key.dport = uint16(d.tcp.SrcPort), uint16(d.tcp.DstPort)
			p.tcpFlags = d.tcp.Contents[13]
			p.tcpSeq = d.tcp.Seq
			l4 = d.tcp.Payload
		case layers.LayerTypeUDP:
			p.key.sport, p.key.dport = uint16(d.udp.SrcPort), uint16(d.udp.DstPort)
			l4 = d.udp.Payload
		case layers.LayerTypeICMPv4:
			p.key.sport, p.key.dport = icmpFold(d.icmp4.TypeCode.Type(), false), uint16(d.icmp4.TypeCode.Code())
		case layers.LayerTypeICMPv6:
			p.key.sport, p.key.dport = icmpFold(d.icmp6.TypeCode.Type(), true), uint16(d.icmp6.TypeCode.Code())
		case layers.LayerTypeARP:
			v4Mapped(&p.key.saddr, d.arp.SourceProtAddress)
			v4Mapped(&p.key.daddr, d.arp.DstProtAddress)
			p.key.sport = d.arp.Operation
			return resARP
		}
	}
	if err != nil && res == resOK && l4 == nil {
		return resErrL4
	}
	if l4 != nil {
		p.payloadOff = cap(data) - cap(l4)
		p.payloadLen = uint32(len(l4))
	}
	return res
}

// benchCorpus returns the packets of a corpus capture, in memory.
func benchCorpus(tb testing.TB, rel string) []rawPacket {
	tb.Helper()
	pks, err := readAll(tb, filepath.Join(corpusDir(tb), rel))
	if err != nil {
		tb.Fatal(err)
	}
	return pks
}

// TestDecodersAgree: on ordinary traffic both decoders give the same
// keys, flags and payloads; the differences are the rules gopacket
// cannot follow (listed in the log).
func TestDecodersAgree(t *testing.T) {
	d := newDLPDecoder()
	for _, rel := range []string{"generated/beacon_http.pcap", "generated/hostsweep.pcap", "generated/dns_tunnel_iodine.pcap", "generated/scan_anomalous_flags.pcap"} {
		pks := benchCorpus(t, rel)
		differ := 0
		for i, pk := range pks {
			var a, b pkt
			ra := parse(pk.data, pk.length, layers.LinkTypeEthernet, &a)
			rb := d.decode(pk.data, &b)
			if ra == resARP {
				a.payloadOff, a.payloadLen = 0, 0 // the DLP decoder does not report the ARP body
			}
			if a.payloadLen == 0 {
				a.payloadOff = 0 // where an empty payload starts does not matter
			}
			if b.payloadLen == 0 {
				b.payloadOff = 0
			}
			if ra != rb || a != b {
				differ++
				if differ <= 3 {
					t.Logf("%s packet %d: hand %v %+v, gopacket %v %+v", rel, i, ra, a, rb, b)
				}
			}
		}
		if differ > len(pks)/100 {
			t.Errorf("%s: decoders differ on %d of %d packets", rel, differ, len(pks))
		}
	}
}

// BenchmarkDecode compares the decoders over exfil_https.pcap in memory:
// ns per packet for headers only.
func BenchmarkDecode(b *testing.B) {
	pks := benchCorpus(b, "generated/exfil_https.pcap")
	b.Run("hand", func(b *testing.B) {
		var p pkt
		for b.Loop() {
			for i := range pks {
				p = pkt{}
				parse(pks[i].data, pks[i].length, layers.LinkTypeEthernet, &p)
			}
		}
		reportPackets(b, len(pks), 0)
	})
	b.Run("gopacket-dlp", func(b *testing.B) {
		d := newDLPDecoder()
		var p pkt
		for b.Loop() {
			for i := range pks {
				p = pkt{}
				d.decode(pks[i].data, &p)
			}
		}
		reportPackets(b, len(pks), 0)
	})
}

// reportPackets adds packets/s (and Gbit/s of wire bytes) per iteration.
func reportPackets(b *testing.B, packets int, bytes uint64) {
	sec := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(float64(packets)/sec, "pkt/s")
	b.ReportMetric(b.Elapsed().Seconds()*1e9/float64(b.N)/float64(packets), "ns/pkt")
	if bytes > 0 {
		b.ReportMetric(float64(bytes)*8/sec/1e9, "Gbit/s")
	}
}

// BenchmarkTracker: the tracker alone over packets in memory.
func BenchmarkTracker(b *testing.B) {
	pks := benchCorpus(b, "generated/exfil_https.pcap")
	in := make([]Packet, len(pks))
	var bytes uint64
	for i, p := range pks {
		in[i] = Packet{Time: p.ts, Data: p.data, Length: p.length, LinkType: p.lt}
		bytes += uint64(p.length)
	}
	var n int
	h := event.HandlerFuncs{Flow: func(*event.Flow) { n++ }, Snippet: func(*event.Snippet) { n++ }}
	b.ReportAllocs()
	for b.Loop() {
		tr, _ := NewTracker(Options{}, h)
		for i := range in {
			tr.Packet(&in[i])
		}
		tr.Flush()
	}
	reportPackets(b, len(in), bytes)
}

// BenchmarkReader: reading alone (page-cached file), through the package's
// Reader (pcapgo) and through the lean pcap reader of lean_reader_test.go.
func BenchmarkReader(b *testing.B) {
	files := map[string]string{"exfil_https": filepath.Join(corpusDir(b), "generated", "exfil_https.pcap")}
	if m := os.Getenv("WARDLINE_MERGED"); m != "" {
		files["merged"] = m
	}
	for name, path := range files {
		b.Run(name, func(b *testing.B) { benchReaders(b, path) })
	}
}

func benchReaders(b *testing.B, path string) {
	b.Run("pcapgo", func(b *testing.B) { // the package's Reader
		var packets int
		var bytes uint64
		b.ReportAllocs()
		for b.Loop() {
			r, err := Open(path)
			if err != nil {
				b.Fatal(err)
			}
			packets, bytes = 0, 0
			for {
				pk, err := r.Next()
				if err != nil {
					break
				}
				packets++
				bytes += uint64(pk.Length)
			}
			r.Close()
		}
		reportPackets(b, packets, bytes)
	})
	b.Run("lean", func(b *testing.B) { // lean_reader_test.go
		var packets int
		var bytes uint64
		b.ReportAllocs()
		for b.Loop() {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			r, err := newPcapFile(bufio.NewReaderSize(f, 64<<10), pcapBufSize)
			if err != nil {
				b.Fatal(err)
			}
			packets, bytes = 0, 0
			for {
				_, _, n, err := r.next()
				if err != nil {
					break
				}
				packets++
				bytes += uint64(n)
			}
			f.Close()
		}
		reportPackets(b, packets, bytes)
	})
}

// BenchmarkReadFile: reader + tracker, as `wardline analyze` runs them
// (without the engine), on exfil_https.pcap and, when
// $WARDLINE_MERGED names one (see TestWriteMergedCorpus), on the merged
// corpus.
func BenchmarkReadFile(b *testing.B) {
	files := map[string]string{"exfil_https": filepath.Join(corpusDir(b), "generated", "exfil_https.pcap")}
	if m := os.Getenv("WARDLINE_MERGED"); m != "" {
		files["merged"] = m
	}
	for name, path := range files {
		b.Run(name, func(b *testing.B) {
			var st Stats
			var n int
			h := event.HandlerFuncs{Flow: func(*event.Flow) { n++ }, Snippet: func(*event.Snippet) { n++ }}
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if st, err = ReadFile(context.Background(), path, h, Options{}, nil); err != nil {
					b.Fatal(err)
				}
			}
			reportPackets(b, int(st.Packets), st.Bytes)
		})
	}
}

// TestWriteMergedCorpus writes every Ethernet capture of the corpus,
// merged in time order, to the pcap file $WARDLINE_WRITE_MERGED (for
// BenchmarkReadFile/merged and the ndpiReader comparison, which needs one
// link type per file). Without the variable it skips.
func TestWriteMergedCorpus(t *testing.T) {
	out := os.Getenv("WARDLINE_WRITE_MERGED")
	if out == "" {
		t.Skip("set WARDLINE_WRITE_MERGED=path to write the merged corpus")
	}
	dir := corpusDir(t)
	var paths []string
	for _, sub := range []string{"generated", "public"} {
		filepath.Walk(filepath.Join(dir, sub), func(p string, fi os.FileInfo, err error) error {
			if err != nil || fi.IsDir() || !(strings.HasSuffix(p, ".pcap") || strings.HasSuffix(p, ".pcapng") || strings.HasSuffix(p, ".cap")) {
				return nil
			}
			r, err := Open(p)
			if err != nil {
				return nil
			}
			defer r.Close()
			if pk, err := r.Next(); err == nil && pk.LinkType == layers.LinkTypeEthernet {
				paths = append(paths, p)
			}
			return nil
		})
	}
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriterNanos(f)
	if err := w.WriteFileHeader(262144, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	var n int
	var werr error
	start := time.Now()
	_, err = merge(context.Background(), paths, func(pk *Packet) {
		if pk.LinkType != layers.LinkTypeEthernet || werr != nil {
			return
		}
		n++
		werr = w.WritePacket(gopacket.CaptureInfo{Timestamp: pk.Time, CaptureLength: len(pk.Data), Length: pk.Length}, pk.Data)
	}, nil)
	if werr != nil {
		t.Fatal(werr)
	}
	t.Logf("%d files, %d packets merged into %s in %v (errors: %v)", len(paths), n, out, time.Since(start), err)
}

// TestAnalyzeOnce runs ReadFiles (reader + tracker, events counted and
// dropped) over the files in $WARDLINE_ANALYZE (space-separated) and
// prints the figures: the process-level counterpart of `ndpiReader -i
// FILE` for docs/benchmarks.md. Without the variable it skips.
func TestAnalyzeOnce(t *testing.T) {
	files := strings.Fields(os.Getenv("WARDLINE_ANALYZE"))
	if len(files) == 0 {
		t.Skip("set WARDLINE_ANALYZE to capture files to time reader + tracker on them")
	}
	var flows, snippets int
	h := event.HandlerFuncs{Flow: func(*event.Flow) { flows++ }, Snippet: func(*event.Snippet) { snippets++ }}
	start := time.Now()
	st, err := ReadFiles(context.Background(), files, h, Options{}, nil)
	el := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("%d packets %d bytes in %v: %.0f pkt/s %.2f Gbit/s; %d flow records %d snippets\n",
		st.Packets, st.Bytes, el, float64(st.Packets)/el.Seconds(), float64(st.Bytes)*8/el.Seconds()/1e9, flows, snippets)
}
