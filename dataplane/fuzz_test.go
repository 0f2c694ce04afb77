package dataplane

import (
	"encoding/binary"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/wardline/wardline/dataplane/event"
)

// FuzzDecode feeds arbitrary ring records to the reader's decoder: it must
// count what it cannot decode and never panic or read past the record.
func FuzzDecode(f *testing.F) {
	flow := make([]byte, sizeFlow)
	flow[0], flow[1] = event.Version, byte(bpfWlEventTypeWL_EV_FLOW)
	binary.NativeEndian.PutUint16(flow[2:], uint16(sizeFlow))
	f.Add(flow)
	snip := make([]byte, sizeSnipHdr+4)
	snip[0], snip[1] = event.Version, byte(bpfWlEventTypeWL_EV_SNIPPET)
	binary.NativeEndian.PutUint16(snip[2:], uint16(len(snip)))
	binary.NativeEndian.PutUint16(snip[sizeSnipHdr-6:], 4) // cap_len
	f.Add(snip)
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		// The ring hands out 8-byte aligned records; so does this copy.
		buf := make([]uint64, (len(b)+7)/8+1)
		raw := unsafeBytes(buf)[:len(b)]
		copy(raw, b)
		r := &Reader{clock: NewClock()}
		var got int
		h := event.HandlerFuncs{
			Flow: func(*event.Flow) { got++ },
			Snippet: func(s *event.Snippet) {
				got++
				if len(s.Data) > len(b) {
					t.Fatalf("snippet data %d bytes from a %d-byte record", len(s.Data), len(b))
				}
			},
		}
		r.dispatch(raw, h)
		if st := r.Stats(); uint64(got)+st.Malformed != 1 {
			t.Fatalf("record neither delivered nor counted: delivered %d, malformed %d", got, st.Malformed)
		}
	})
}

// FuzzXDP runs wl_xdp on arbitrary frames: whatever the bytes, with empty
// block lists the verdict is XDP_PASS (fail-open) and every frame is
// counted exactly once.
func FuzzXDP(f *testing.F) {
	requireRoot(f)
	d := loadTestDataplane(f, Options{})
	f.Add(udpFrame(f, client4, server4, 1, 53, []byte("x")))
	f.Add(tcpFrame(f, client6, server6, 1, 443, tcpSeg{flags: "AP", payload: []byte{0x16, 3, 1, 0, 10, 1, 0, 0}}))
	f.Add(make([]byte, 14))
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 || len(frame) > 9000 {
			return // BPF_PROG_TEST_RUN needs an Ethernet header
		}
		before := stats(t, d)
		ret, err := d.XDPProgram().Run(&ebpf.RunOptions{Data: frame})
		if err != nil {
			t.Fatal(err)
		}
		if ret != xdpPass {
			t.Fatalf("verdict %d for a frame with empty block lists", ret)
		}
		after := stats(t, d)
		if after.Total[StatRxPackets]-before.Total[StatRxPackets] != 1 || after.Total[StatPass]-before.Total[StatPass] != 1 {
			t.Fatal("frame not counted exactly once")
		}
	})
}

// TestDecodeAllocatesNothing: the reader hands out reused events, so
// decoding a record must not allocate.
func TestDecodeAllocatesNothing(t *testing.T) {
	flow := make([]uint64, sizeFlow/8)
	raw := unsafeBytes(flow)[:sizeFlow]
	raw[0], raw[1] = event.Version, byte(bpfWlEventTypeWL_EV_FLOW)
	binary.NativeEndian.PutUint16(raw[2:], uint16(sizeFlow))
	snipBuf := make([]uint64, (sizeSnipHdr+64)/8+1)
	snip := unsafeBytes(snipBuf)[:sizeSnipHdr+64]
	snip[0], snip[1] = event.Version, byte(bpfWlEventTypeWL_EV_SNIPPET)
	binary.NativeEndian.PutUint16(snip[2:], uint16(len(snip)))
	binary.NativeEndian.PutUint16(snip[sizeSnipHdr-6:], 64)
	r := &Reader{clock: NewClock()}
	var n int
	var h event.Handler = event.HandlerFuncs{Flow: func(*event.Flow) { n++ }, Snippet: func(*event.Snippet) { n++ }}
	allocs := testing.AllocsPerRun(1000, func() {
		r.dispatch(raw, h)
		r.dispatch(snip, h)
	})
	if allocs != 0 || n == 0 || r.Stats().Malformed != 0 {
		t.Fatalf("%.1f allocations per record pair (delivered %d, malformed %d)", allocs, n, r.Stats().Malformed)
	}
}
