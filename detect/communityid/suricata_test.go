package communityid

// Conformance with Suricata's community_id on the Suricata-verify tests
// community-id-* of ../shared/corpus: the flows are rebuilt from each
// test's pcap (the originator is the sender of the first SYN, or of the
// first packet), turned into flow keys the way the dataplane keys them, and
// hashed; test.yaml states the expected community_id per flow.

import (
	"bufio"
	"bytes"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/wardline/wardline/dataplane/event"
)

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

// pcapFlowKeys returns the flow key of every flow in a pcap, oriented from
// its originator, with ICMP types folded as the fast path folds them.
func pcapFlowKeys(t *testing.T, path string) []event.FlowKey {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	magic, _ := br.Peek(4)
	var src interface {
		ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	}
	var lt layers.LinkType
	if bytes.Equal(magic, []byte{0x0a, 0x0d, 0x0d, 0x0a}) {
		r, err := pcapgo.NewNgReader(br, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			t.Fatal(err)
		}
		src, lt = r, r.LinkType()
	} else {
		r, err := pcapgo.NewReader(br)
		if err != nil {
			t.Fatal(err)
		}
		src, lt = r, r.LinkType()
	}
	seen := map[event.FlowKey]bool{}
	var keys []event.FlowKey
	for {
		data, _, err := src.ReadPacketData()
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		pkt := gopacket.NewPacket(data, lt, gopacket.Default)
		var k event.FlowKey
		synAck := false
		for _, l := range pkt.Layers() {
			switch l := l.(type) {
			case *layers.IPv4:
				k = event.FlowKey{Proto: uint8(l.Protocol)}
				k.Src, _ = netip.AddrFromSlice(l.SrcIP.To4())
				k.Dst, _ = netip.AddrFromSlice(l.DstIP.To4())
			case *layers.IPv6:
				k = event.FlowKey{Proto: uint8(l.NextHeader)}
				k.Src, _ = netip.AddrFromSlice(l.SrcIP)
				k.Dst, _ = netip.AddrFromSlice(l.DstIP)
			case *layers.TCP:
				k.SrcPort, k.DstPort = uint16(l.SrcPort), uint16(l.DstPort)
				synAck = l.SYN && l.ACK
			case *layers.UDP:
				k.SrcPort, k.DstPort = uint16(l.SrcPort), uint16(l.DstPort)
			case *layers.ICMPv4:
				k.SrcPort, k.DstPort = foldICMP(l.TypeCode.Type(), false), uint16(l.TypeCode.Code())
			case *layers.ICMPv6:
				k.SrcPort, k.DstPort = foldICMP(l.TypeCode.Type(), true), uint16(l.TypeCode.Code())
			}
		}
		if !k.Src.IsValid() {
			continue
		}
		rev := k
		rev.Src, rev.Dst = k.Dst, k.Src
		if k.Proto != 1 && k.Proto != 58 {
			rev.SrcPort, rev.DstPort = k.DstPort, k.SrcPort
		}
		if seen[k] || seen[rev] {
			continue
		}
		if synAck {
			k = rev
		}
		seen[k] = true
		keys = append(keys, k)
	}
	return keys
}

// foldICMP mirrors bpf/parse.h icmp_fold.
func foldICMP(t uint8, v6 bool) uint16 {
	fold := map[uint8]uint8{0: 8, 14: 13, 16: 15, 18: 17}
	if v6 {
		fold = map[uint8]uint8{129: 128, 136: 135, 131: 130}
	}
	if r, ok := fold[t]; ok {
		return uint16(r)
	}
	return uint16(t)
}

func TestSuricataVerifyCommunityID(t *testing.T) {
	root := filepath.Join(corpusDir(t), "public", "suricata-verify")
	dirs, _ := filepath.Glob(filepath.Join(root, "community-id-*"))
	if len(dirs) == 0 {
		t.Skipf("no community-id-* tests in %s", root)
	}
	checked, matched := 0, 0
	for _, d := range dirs {
		yml, err := os.ReadFile(filepath.Join(d, "test.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		seed, ok := suricataSeed(d)
		if !ok {
			t.Logf("%s: no community-id-seed known, skipped", filepath.Base(d))
			continue
		}
		keys := pcapFlowKeys(t, filepath.Join(d, "input.pcap"))
		for _, block := range strings.Split(string(yml), "- filter:")[1:] {
			f := map[string]string{}
			for _, line := range strings.Split(block, "\n") {
				k, v, ok := strings.Cut(strings.TrimSpace(line), ": ")
				if ok {
					f[k] = strings.Trim(v, `"`)
				}
			}
			want, ok := f["community_id"]
			if !ok {
				continue
			}
			checked++
			src, err1 := netip.ParseAddr(expandV6(f["src_ip"]))
			dst, err2 := netip.ParseAddr(expandV6(f["dest_ip"]))
			sp, _ := strconv.Atoi(f["src_port"])
			dp, _ := strconv.Atoi(f["dest_port"])
			if err1 != nil || err2 != nil {
				t.Fatalf("%s: addresses %q %q", filepath.Base(d), f["src_ip"], f["dest_ip"])
			}
			var found *event.FlowKey
			for i, k := range keys {
				if k.Src == src && k.Dst == dst && int(k.SrcPort) == sp && int(k.DstPort) == dp {
					found = &keys[i]
				}
			}
			if found == nil {
				t.Errorf("%s: flow %s:%d -> %s:%d not in the pcap (flows: %v)", filepath.Base(d), src, sp, dst, dp, keys)
				continue
			}
			if got := ID(seed, *found); got != want {
				t.Errorf("%s: %v: %s, want %s", filepath.Base(d), *found, got, want)
				continue
			}
			matched++
		}
	}
	t.Logf("Suricata-verify community_id: %d checked, %d matched", checked, matched)
	if checked == 0 {
		t.Error("no expectation found")
	}
}

// upstreamSeeds are the community-id-seed values of the tests' own
// suricata.yaml in OISF/suricata-verify, which the corpus copy leaves out
// (the tests deliberately use non-zero seeds).
var upstreamSeeds = map[string]uint16{
	"community-id-ipv4":   7,
	"community-id-ipv6":   7,
	"community-id-sameip": 1,
}

// suricataSeed reads community-id-seed from the test's suricata.yaml, or
// falls back to upstreamSeeds.
func suricataSeed(dir string) (uint16, bool) {
	if b, err := os.ReadFile(filepath.Join(dir, "suricata.yaml")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "community-id-seed:"); ok {
				n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 16)
				return uint16(n), err == nil
			}
		}
		return 0, true
	}
	s, ok := upstreamSeeds[filepath.Base(dir)]
	return s, ok
}

// expandV6 accepts Suricata's fully expanded IPv6 form (leading zeros).
func expandV6(s string) string {
	if !strings.Contains(s, ":") {
		return s
	}
	parts := strings.Split(s, ":")
	for i, p := range parts {
		p = strings.TrimLeft(p, "0")
		if p == "" {
			p = "0"
		}
		parts[i] = p
	}
	return strings.Join(parts, ":")
}
