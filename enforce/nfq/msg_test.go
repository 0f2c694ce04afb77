package nfq

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// packetMsg builds a queued-packet message as the kernel sends it.
func packetMsg(id uint32, payload []byte) []byte {
	b := appendHeader(nil, msgType(msgPacket), 0, 0, 7)
	b = appendAttr(b, attrPacketHdr, append(be32(id), 0x08, 0x00, 2)...)
	b = appendAttr(b, 5, be32(3)...) // NFQA_IFINDEX_INDEV
	b = appendAttr(b, attrPayload, payload...)
	return finish(b, 0)
}

func TestVerdictEncoding(t *testing.T) {
	b := appendVerdict(nil, 9, 7, true, nfAccept, 0x01020304)
	want := []byte{
		32, 0, 0, 0, // length (little-endian host)
		3, 3, // type: subsys queue << 8 | VERDICT_BATCH
		1, 0, // NLM_F_REQUEST
		9, 0, 0, 0, // seq
		0, 0, 0, 0, // port
		0, 0, 0, 7, // nfgenmsg: AF_UNSPEC, v0, res_id 7 (big-endian)
		12, 0, 2, 0, // attr NFQA_VERDICT_HDR
		0, 0, 0, 1, // NF_ACCEPT
		1, 2, 3, 4, // id
	}
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("skipping: the expected bytes are for a little-endian host")
	}
	if !bytes.Equal(b, want) {
		t.Errorf("verdict batch\n got %v\nwant %v", b, want)
	}
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { buf = appendVerdict(buf[:0], 1, 7, false, nfDrop, 5) }); n != 0 {
		t.Errorf("appendVerdict allocates %v times", n)
	}
}

func TestBindMessage(t *testing.T) {
	b := appendBind(nil, 1, 7, 4096, flagFailOpen|flagGSO)
	if got := int(ne.Uint32(b)); got != len(b) || len(b)%4 != 0 {
		t.Fatalf("length field %d, message %d bytes", got, len(b))
	}
	if ne.Uint16(b[4:]) != msgType(msgConfig) || ne.Uint16(b[6:])&unix.NLM_F_ACK == 0 {
		t.Errorf("type %#x flags %#x", ne.Uint16(b[4:]), ne.Uint16(b[6:]))
	}
	attrs := map[uint16][]byte{}
	for a := b[20:]; len(a) >= 4; {
		l := int(ne.Uint16(a))
		attrs[ne.Uint16(a[2:])] = a[4:l]
		a = a[(l+3)&^3:]
	}
	for typ, want := range map[uint16][]byte{
		cfgCmd:    {cmdBind, 0, 0, 0},
		cfgParams: {0, 0, 0xff, 0xff, copyPacket},
		cfgMaxLen: be32(4096),
		cfgMask:   be32(flagFailOpen | flagGSO),
		cfgFlags:  be32(flagFailOpen | flagGSO),
	} {
		if !bytes.Equal(attrs[typ], want) {
			t.Errorf("config attribute %d = %v, want %v", typ, attrs[typ], want)
		}
	}
}

func TestNextMessage(t *testing.T) {
	pkt := ipv4(ProtoUDP, 9, "hello")
	b := append(packetMsg(42, pkt), packetMsg(43, pkt[:10])...)
	// An error for message 5 (ENOENT: unknown packet ID) and an ack.
	for _, code := range []int32{-int32(unix.ENOENT), 0} {
		e := appendHeader(nil, unix.NLMSG_ERROR, 0, 0, 0)[:unix.SizeofNlMsghdr]
		e = ne.AppendUint32(e, uint32(code))
		e = append(e, appendVerdict(nil, 5, 7, false, nfAccept, 1)[:unix.SizeofNlMsghdr]...)
		b = append(b, finish(e, 0)...)
	}
	var got []message
	for len(b) > 0 {
		m, rest, err := nextMessage(b)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m)
		b = rest
	}
	if len(got) != 4 {
		t.Fatalf("got %d messages, want 4", len(got))
	}
	if got[0].kind != kindPacket || got[0].id != 42 || !bytes.Equal(got[0].payload, pkt) {
		t.Errorf("first packet: %+v", got[0])
	}
	if got[1].id != 43 || len(got[1].payload) != 10 {
		t.Errorf("second packet: %+v", got[1])
	}
	if got[2].kind != kindError || got[2].errno != unix.ENOENT || got[2].seq != 5 {
		t.Errorf("error: %+v", got[2])
	}
	if got[3].kind != kindAck {
		t.Errorf("ack: %+v", got[3])
	}
	// Cut short: an error, but the ID is readable.
	short := packetMsg(77, pkt)[:40]
	if _, _, err := nextMessage(short); err == nil {
		t.Error("truncated message parsed without error")
	}
	if id, ok := truncatedID(short); !ok || id != 77 {
		t.Errorf("truncatedID = %d, %v; want 77", id, ok)
	}
}

// TestHandleVerdicts feeds packet messages to handle and checks the
// verdicts it would write: accepts batched up to the last of a run, each
// drop alone and after the preceding accepts.
func TestHandleVerdicts(t *testing.T) {
	m, err := Compile([]Rule{{Name: "bad", Content: []byte("BAD"), Action: Drop}})
	if err != nil {
		t.Fatal(err)
	}
	in := &Inspector{m: m, queue: 7, ruleHits: make([]atomic.Uint64, 1), logs: map[string]*limiter{}}
	ok, bad := ipv4(ProtoUDP, 9, "fine"), ipv4(ProtoUDP, 9, "a BAD one")
	var dgrams [][]byte
	for id, p := range [][]byte{ok, ok, bad, ok, bad, bad, ok} {
		dgrams = append(dgrams, packetMsg(uint32(id+1), p))
	}
	dgrams = append(dgrams, packetMsg(10, ok)) // IDs 8 and 9 never arrived
	in.publish(in.handle(dgrams, false))
	type v struct {
		batch   bool
		verdict uint32
		id      uint32
	}
	var got []v
	for b := in.out; len(b) > 0; b = b[verdictSize:] {
		got = append(got, v{ne.Uint16(b[4:]) == msgType(msgVerdictBatch), binary.BigEndian.Uint32(b[24:]), binary.BigEndian.Uint32(b[28:])})
	}
	want := []v{{true, nfAccept, 2}, {false, nfDrop, 3}, {true, nfAccept, 4}, {false, nfDrop, 5}, {false, nfDrop, 6}, {true, nfAccept, 10}}
	if len(got) != len(want) {
		t.Fatalf("verdicts %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("verdict %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	s := in.Counters()
	if s.Received != 8 || s.Accepted != 5 || s.Dropped != 3 || s.Default != 5 || s.Missed != 2 || s.Errors != 0 || s.Rules[0].Matches != 3 {
		t.Errorf("counters %+v", s)
	}
	// The hot path allocates nothing per packet once its buffers exist.
	if n := testing.AllocsPerRun(100, func() { in.handle(dgrams, false) }); n != 0 {
		t.Errorf("handle allocates %v times per batch", n)
	}
}

func TestSteerExprs(t *testing.T) {
	set := &nftables.Set{Name: SetDst6, ID: 3}
	ex := steerExprs(set, 7)
	p, ok := ex[2].(*expr.Payload)
	if !ok || p.Offset != 24 || p.Len != 16 {
		t.Errorf("ip6 daddr load: %+v", ex[2])
	}
	if c := ex[1].(*expr.Cmp); c.Data[0] != unix.NFPROTO_IPV6 {
		t.Errorf("nfproto %v", c.Data)
	}
	tg, ok := ex[5].(*expr.Target)
	if !ok || tg.Name != "NFQUEUE" || tg.Rev != 3 {
		t.Fatalf("target %+v", ex[5])
	}
	want := make([]byte, 8)
	ne.PutUint16(want[0:], 7)
	ne.PutUint16(want[2:], 1)
	ne.PutUint16(want[4:], 1) // NFQ_FLAG_BYPASS
	if got := []byte(*nfqueueInfo(7)); !bytes.Equal(got, want) {
		t.Errorf("xt_NFQ_info_v3 = %v, want %v", got, want)
	}
	if p := steerExprs(&nftables.Set{Name: SetSrc4}, 0)[2].(*expr.Payload); p.Offset != 12 || p.Len != 4 {
		t.Errorf("ip saddr load: %+v", p)
	}
}

func TestIntervals(t *testing.T) {
	mk := func(ps ...string) []nftables.SetElement {
		var out []nftables.SetElement
		for _, p := range ps {
			out = append(out, setElements(Element{Prefix: netip.MustParsePrefix(p), TTL: time.Minute})...)
		}
		return out
	}
	els := mk("198.18.0.0/24", "203.0.113.7/32", "255.255.255.0/24")
	if len(els) != 5 { // the last one reaches the top: no end element
		t.Fatalf("%d elements, want 5", len(els))
	}
	got, err := intervals(els)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"198.18.0.0/24", "203.0.113.7/32", "255.255.255.0/24"}
	if len(got) != len(want) {
		t.Fatalf("intervals %v, want %v", got, want)
	}
	for i := range want {
		if got[i].prefix.String() != want[i] {
			t.Errorf("interval %d = %v, want %s", i, got[i].prefix, want[i])
		}
	}
	// A hand-made range that is not one prefix reads back as its cover.
	r := rangePrefixes(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.6"))
	if fmt.Sprint(r) != "[10.0.0.1/32 10.0.0.2/31 10.0.0.4/31 10.0.0.6/32]" {
		t.Errorf("rangePrefixes = %v", r)
	}
	if got := rangePrefixes(netip.MustParseAddr("2001:db8::"), netip.MustParseAddr("2001:db8::ffff")); len(got) != 1 || got[0].Bits() != 112 {
		t.Errorf("v6 range = %v", got)
	}
}

func TestParseQueueStats(t *testing.T) {
	b := []byte("    0  12345     0 2 65535     0     0        0  1\n    7 4242     3 2 65535     1     2       99  1\n")
	k, err := parseQueueStats(b, 7)
	if err != nil {
		t.Fatal(err)
	}
	want := KernelStats{Queue: 7, PortID: 4242, Waiting: 3, CopyMode: 2, CopyRange: 65535, QueueDropped: 1, UserDropped: 2, IDSequence: 99}
	if k != want {
		t.Errorf("got %+v, want %+v", k, want)
	}
	if _, err := parseQueueStats(b, 3); err == nil {
		t.Error("queue 3 found")
	}
}
