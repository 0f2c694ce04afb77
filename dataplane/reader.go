package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/wardline/wardline/dataplane/event"
)

// Reader turns ring-buffer records into typed events. One record buffer and
// one event of each type are reused for every record, so reading allocates
// nothing per event; handlers must copy what they keep.
type Reader struct {
	rd    *ringbuf.Reader
	clock *Clock
	rec   ringbuf.Record
	flow  event.Flow
	snip  event.Snippet

	flows     atomic.Uint64
	snippets  atomic.Uint64
	malformed atomic.Uint64 // records we could not decode (counted, skipped)
	lastErr   atomic.Pointer[string]
}

// ReaderStats counts what a Reader delivered.
type ReaderStats struct {
	Flows     uint64
	Snippets  uint64
	Malformed uint64
	LastError string // the last malformed record's problem
}

// NewReader opens a reader on the events ring buffer.
func NewReader(events *ebpf.Map, clock *Clock) (*Reader, error) {
	rd, err := ringbuf.NewReader(events)
	if err != nil {
		return nil, fmt.Errorf("open ring buffer reader: %w", err)
	}
	if clock == nil {
		clock = NewClock()
	}
	return &Reader{rd: rd, clock: clock, rec: ringbuf.Record{RawSample: make([]byte, 0, 256)}}, nil
}

// NewReader opens a reader on this dataplane's ring buffer.
func (d *Dataplane) NewReader() (*Reader, error) {
	return NewReader(d.objs.WlEventsV1, d.clock)
}

// Close stops Run.
func (r *Reader) Close() error { return r.rd.Close() }

// Stats returns what the reader has delivered so far.
func (r *Reader) Stats() ReaderStats {
	s := ReaderStats{Flows: r.flows.Load(), Snippets: r.snippets.Load(), Malformed: r.malformed.Load()}
	if p := r.lastErr.Load(); p != nil {
		s.LastError = *p
	}
	return s
}

// PollInterval bounds how long an event can wait in a quiet ring: the fast
// path wakes the reader only when DefaultWakeupBytes are pending (waking it
// per event halves what the program can produce), so Run also polls.
const PollInterval = 10 * time.Millisecond

// Run delivers events to h until the reader is closed (then it returns
// nil). Run and Drain must not be called concurrently.
func (r *Reader) Run(h event.Handler) error {
	// The deadline only matters once the ring is empty (ReadInto waits
	// only then), so it is re-armed after each expiry, not per record.
	r.rd.SetDeadline(time.Now().Add(PollInterval))
	for {
		err := r.rd.ReadInto(&r.rec)
		switch {
		case err == nil:
			r.dispatch(r.rec.RawSample, h)
		case errors.Is(err, os.ErrDeadlineExceeded):
			r.rd.SetDeadline(time.Now().Add(PollInterval))
		case errors.Is(err, ringbuf.ErrClosed), errors.Is(err, os.ErrClosed):
			return nil
		default:
			return err
		}
	}
}

// Drain delivers the events already in the ring to h and returns.
func (r *Reader) Drain(h event.Handler) error {
	r.rd.SetDeadline(time.Now())
	for {
		err := r.rd.ReadInto(&r.rec)
		switch {
		case err == nil:
			r.dispatch(r.rec.RawSample, h)
		case errors.Is(err, os.ErrDeadlineExceeded):
			return nil
		default:
			return err
		}
	}
}

// Pending returns the bytes waiting in the ring.
func (r *Reader) Pending() int { return r.rd.AvailableBytes() }

func (r *Reader) bad(format string, args ...any) {
	r.malformed.Add(1)
	msg := fmt.Sprintf(format, args...)
	r.lastErr.Store(&msg)
}

var (
	sizeHdr     = int(unsafe.Sizeof(bpfWlEventHdr{}))
	sizeFlow    = int(unsafe.Sizeof(bpfWlFlowEvent{}))
	sizeSnipHdr = int(unsafe.Offsetof(bpfWlSnippetEvent{}.Data))
)

// dispatch decodes one record. The record buffer is 8-byte aligned (the
// ring pads records to 8 bytes and ringbuf.Record reuses a Go-allocated
// buffer), so the generated structs are read in place.
func (r *Reader) dispatch(raw []byte, h event.Handler) {
	if len(raw) < sizeHdr {
		r.bad("record of %d bytes is shorter than the %d-byte header", len(raw), sizeHdr)
		return
	}
	hdr := (*bpfWlEventHdr)(unsafe.Pointer(&raw[0]))
	if hdr.Version != event.Version {
		r.bad("event version %d, this build understands %d", hdr.Version, event.Version)
		return
	}
	if int(hdr.Size) > len(raw) {
		r.bad("event claims %d bytes, record has %d", hdr.Size, len(raw))
		return
	}
	switch bpfWlEventType(hdr.Type) {
	case bpfWlEventTypeWL_EV_FLOW:
		if len(raw) < sizeFlow {
			r.bad("flow event of %d bytes, want %d", len(raw), sizeFlow)
			return
		}
		e := (*bpfWlFlowEvent)(unsafe.Pointer(&raw[0]))
		decodeFlow(&r.flow, e, r.clock)
		r.flows.Add(1)
		h.HandleFlow(&r.flow)
	case bpfWlEventTypeWL_EV_SNIPPET:
		if len(raw) < sizeSnipHdr {
			r.bad("snippet event of %d bytes, shorter than its %d-byte header", len(raw), sizeSnipHdr)
			return
		}
		e := (*bpfWlSnippetEvent)(unsafe.Pointer(&raw[0]))
		n := int(e.CapLen)
		if sizeSnipHdr+n > len(raw) || n > len(e.Data) {
			r.bad("snippet claims %d data bytes, record holds %d", n, len(raw)-sizeSnipHdr)
			return
		}
		decodeSnippet(&r.snip, e, raw[sizeSnipHdr:sizeSnipHdr+n], r.clock)
		r.snippets.Add(1)
		h.HandleSnippet(&r.snip)
	default:
		r.bad("unknown event type %d", hdr.Type)
	}
}

func decodeKey(k *event.FlowKey, b *bpfWlFlowKey) {
	k.Src = netip.AddrFrom16(b.Saddr).Unmap()
	k.Dst = netip.AddrFrom16(b.Daddr).Unmap()
	k.SrcPort = b.Sport
	k.DstPort = b.Dport
	k.Proto = b.Proto
	k.VLAN = [2]uint16{b.VlanOuter, b.VlanInner}
}

func decodeFlow(f *event.Flow, e *bpfWlFlowEvent, c *Clock) {
	decodeKey(&f.Key, &e.Key)
	f.Reason = event.Reason(e.Reason)
	f.Final = e.Final != 0
	f.Seq = e.Seq
	f.Frag = e.Frag != 0
	f.FirstFlags = e.FirstFlags
	f.TCPFlags = e.TcpFlags
	f.Ifindex = e.Ifindex
	f.FirstSeen = c.Time(e.FirstSeenNs)
	f.LastSeen = c.Time(e.LastSeenNs)
	f.Packets = e.Packets
	f.Bytes = e.Bytes
	f.Time = c.Time(e.Hdr.TsNs)
	f.CPU = e.Hdr.Cpu
}

func decodeSnippet(s *event.Snippet, e *bpfWlSnippetEvent, data []byte, c *Clock) {
	decodeKey(&s.Key, &e.Key)
	s.Kind = event.SnippetKind(e.Kind)
	s.Dir = event.Dir(e.Dir)
	s.Truncated = e.Flags&uint16(bpfWlSnippetFlagWL_SNIPF_TRUNCATED) != 0
	s.Continuation = e.Flags&uint16(bpfWlSnippetFlagWL_SNIPF_CONT) != 0
	s.Offset = e.Offset
	s.PayloadLen = e.PayloadLen
	s.Ifindex = e.Ifindex
	s.Time = c.Time(e.Hdr.TsNs)
	s.CPU = e.Hdr.Cpu
	s.Data = data
}
