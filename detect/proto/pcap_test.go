package proto

// Test helpers that turn the public captures in ../shared/corpus into what
// the parsers see: the first client payload of each TCP flow (in-order
// segments concatenated) and the client datagrams of UDP flows.

import (
	"bufio"
	"bytes"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// corpusDir returns the shared corpus directory, from WARDLINE_CORPUS or
// ../../../shared/corpus relative to this package, and skips the test when
// it is absent.
func corpusDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("WARDLINE_CORPUS")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "corpus")
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		t.Skipf("corpus not found at %s (set WARDLINE_CORPUS to the shared corpus directory): skipping the conformance test", dir)
	}
	return dir
}

// tuple is one direction of a flow.
type tuple struct {
	src, dst     netip.Addr
	sport, dport uint16
	proto        uint8
}

func (t tuple) reverse() tuple {
	return tuple{t.dst, t.src, t.dport, t.sport, t.proto}
}

// packet is what the tests need from one captured frame (innermost IP
// layer when tunnelled).
type packet struct {
	tuple
	seq      uint32
	syn, ack bool
	payload  []byte
}

// readPackets decodes every IP packet of a pcap or pcapng file.
func readPackets(t testing.TB, path string) []packet {
	t.Helper()
	pkts, err := readPacketsErr(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return pkts
}

// readPacketsErr is readPackets for captures that may be damaged: it
// returns the packets read before the error.
func readPacketsErr(path string) ([]packet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, err
	}
	var src interface {
		ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	}
	var lt layers.LinkType
	if bytes.Equal(magic, []byte{0x0a, 0x0d, 0x0d, 0x0a}) {
		r, err := pcapgo.NewNgReader(br, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			return nil, err
		}
		src, lt = r, r.LinkType()
	} else {
		r, err := pcapgo.NewReader(br)
		if err != nil {
			return nil, err
		}
		src, lt = r, r.LinkType()
	}
	var out []packet
	for {
		data, _, err := src.ReadPacketData()
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return out, err
		}
		p, ok := decode(data, lt)
		if ok {
			out = append(out, p)
		}
	}
	return out, nil
}

func decode(data []byte, lt layers.LinkType) (packet, bool) {
	pkt := gopacket.NewPacket(data, lt, gopacket.Default)
	// Walk every layer: in a tunnel (GRE, VXLAN, GENEVE) the last IP layer
	// and the transport after it are the inner flow.
	var p packet
	haveIP, haveL4 := false, false
	for _, l := range pkt.Layers() {
		switch l := l.(type) {
		case *layers.IPv4:
			p = packet{}
			p.src, _ = netip.AddrFromSlice(l.SrcIP.To4())
			p.dst, _ = netip.AddrFromSlice(l.DstIP.To4())
			p.proto = uint8(l.Protocol)
			haveIP, haveL4 = true, false
		case *layers.IPv6:
			p = packet{}
			p.src, _ = netip.AddrFromSlice(l.SrcIP)
			p.dst, _ = netip.AddrFromSlice(l.DstIP)
			p.proto = uint8(l.NextHeader)
			haveIP, haveL4 = true, false
		case *layers.TCP:
			if haveL4 {
				continue
			}
			p.proto = 6
			p.sport, p.dport = uint16(l.SrcPort), uint16(l.DstPort)
			p.seq, p.syn, p.ack = l.Seq, l.SYN, l.ACK
			p.payload = l.Payload
			haveL4 = true
		case *layers.UDP:
			if haveL4 {
				continue
			}
			p.proto = 17
			p.sport, p.dport = uint16(l.SrcPort), uint16(l.DstPort)
			p.payload = l.Payload
			haveL4 = true
		}
	}
	return p, haveIP && haveL4
}

// flow groups a capture's packets by connection; the client is the sender
// of the SYN (or of the first packet when no SYN was captured).
type flow struct {
	client  tuple
	synSeen bool
	isn     uint32
	segs    []packet // client segments with payload, TCP
	grams   [][]byte // client datagrams, UDP
	rgrams  [][]byte // responder datagrams, UDP
}

func flows(pkts []packet) []*flow {
	byKey := map[tuple]*flow{}
	var order []*flow
	for _, p := range pkts {
		f := byKey[p.tuple]
		if f == nil {
			f = byKey[p.tuple.reverse()]
		}
		if f == nil || (p.proto == 6 && p.syn && !p.ack && f.synSeen && p.seq != f.isn) {
			// a new connection (or a reused 4-tuple with a new SYN)
			f = &flow{client: p.tuple}
			if p.syn && p.ack {
				f.client = p.tuple.reverse()
			}
			byKey[p.tuple] = f
			byKey[p.tuple.reverse()] = f
			order = append(order, f)
		}
		if p.tuple != f.client {
			if p.proto == 17 && len(p.payload) > 0 {
				f.rgrams = append(f.rgrams, p.payload)
			}
			continue
		}
		if p.proto == 6 {
			if p.syn && !p.ack && !f.synSeen {
				f.synSeen, f.isn = true, p.seq
			}
			if len(p.payload) > 0 {
				f.segs = append(f.segs, p)
			}
		} else if len(p.payload) > 0 {
			f.grams = append(f.grams, p.payload)
		}
	}
	return order
}

// stream reassembles the client's byte stream (up to limit bytes): segments
// in sequence order from the ISN (or the first segment), retransmissions and
// overlaps dropped, stopping at the first gap. starts holds the stream
// offsets at which a segment began.
func (f *flow) stream(limit int) (data []byte, starts []int) {
	if len(f.segs) == 0 {
		return nil, nil
	}
	next := f.segs[0].seq
	if f.synSeen {
		next = f.isn + 1
	}
	segs := slices.Clone(f.segs)
	sort.SliceStable(segs, func(i, j int) bool { return int32(segs[i].seq-next) < int32(segs[j].seq-next) })
	for _, s := range segs {
		d := int32(s.seq - next)
		if d > 0 {
			break // gap
		}
		if -d >= int32(len(s.payload)) {
			continue // retransmission
		}
		starts = append(starts, len(data))
		data = append(data, s.payload[-d:]...)
		next += uint32(len(s.payload)) + uint32(d)
		if len(data) >= limit {
			break
		}
	}
	return data, starts
}
