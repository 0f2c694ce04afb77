package bench

import (
	"fmt"
	"net/netip"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/wardline/wardline/dataplane"
	"github.com/wardline/wardline/dataplane/event"
)

// RingResult is the ring-buffer benchmark's outcome.
type RingResult struct {
	Kind   RingEvent
	Events int
	// Drain: the ring is filled first, then the reader empties it alone.
	TypedDrainPerSec float64 // our reader, decoding into typed events
	RawDrainPerSec   float64 // cilium/ebpf ringbuf.Reader.ReadInto alone (baseline)
	// Concurrent: the program runs (BPF_PROG_TEST_RUN) on one CPU while
	// the typed reader consumes on the other.
	ConcurrentPerSec float64
	ProducedPerSec   float64
	Written          uint64 // flow records written by the program
	ReserveFailures  uint64 // counted losses (ring full)
	Delivered        uint64 // records the reader handed to the handler
	Uncounted        int64  // runs - written - failures, and written - delivered: must be 0
}

// RingEvent selects what each program run writes to the ring.
type RingEvent string

const (
	// RingFlow: a TCP RST; every run creates the flow, writes its final
	// record and frees the entry (the heaviest path per event).
	RingFlow RingEvent = "flow"
	// RingDNS: a DNS query on an existing flow; every run writes a
	// snippet (the most frequent event on a real link).
	RingDNS RingEvent = "dns"
)

// benchFrame returns the frame whose every run through the XDP program
// writes exactly one event of kind ev through the real packet path.
func benchFrame(ev RingEvent) ([]byte, error) {
	eth := &layers.Ethernet{SrcMAC: []byte{2, 0, 0, 0, 0, 1}, DstMAC: []byte{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP,
		SrcIP: netip.MustParseAddr("198.18.0.11").AsSlice(), DstIP: netip.MustParseAddr("203.0.113.10").AsSlice()}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 443, RST: true, ACK: true}
	tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if ev == RingDNS {
		ip.Protocol = layers.IPProtocolUDP
		udp := &layers.UDP{SrcPort: 40000, DstPort: 53}
		udp.SetNetworkLayerForChecksum(ip)
		err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp, gopacket.Payload(make([]byte, 40)))
		return buf.Bytes(), err
	}
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

type countingHandler struct{ n atomic.Uint64 }

func (c *countingHandler) HandleFlow(*event.Flow)       { c.n.Add(1) }
func (c *countingHandler) HandleSnippet(*event.Snippet) { c.n.Add(1) }

// Ring measures how many events per second the Go reader consumes.
func Ring(ev RingEvent, events int, logf func(string, ...any)) (RingResult, error) {
	res := RingResult{Kind: ev, Events: events}
	frame, err := benchFrame(ev)
	if err != nil {
		return res, err
	}
	// Room for every event of the drain phase (record + 8-byte header).
	ringBytes := uint32(1)
	for ringBytes < uint32(events)*(uint32(len(frame))+136) {
		ringBytes <<= 1
	}
	opts := dataplane.Options{RingBytes: ringBytes, FlowTableSize: 1 << 16}
	produce := func(d *dataplane.Dataplane, n int) error {
		for n > 0 {
			chunk := min(n, 1<<20)
			if _, err := d.XDPProgram().Run(&ebpf.RunOptions{Data: frame, Repeat: uint32(chunk)}); err != nil {
				return fmt.Errorf("BPF_PROG_TEST_RUN: %w", err)
			}
			n -= chunk
		}
		return nil
	}

	// Drain, typed reader.
	{
		d, err := dataplane.Load(opts)
		if err != nil {
			return res, err
		}
		if err := produce(d, events); err != nil {
			d.Close()
			return res, err
		}
		rd, err := d.NewReader()
		if err != nil {
			d.Close()
			return res, err
		}
		var h countingHandler
		start := time.Now()
		err = rd.Drain(&h)
		el := time.Since(start)
		rd.Close()
		d.Close()
		if err != nil {
			return res, err
		}
		if int(h.n.Load()) != events {
			return res, fmt.Errorf("drain: read %d events, wrote %d", h.n.Load(), events)
		}
		res.TypedDrainPerSec = float64(events) / el.Seconds()
		logf("ring drain, typed reader: %d events in %v", events, el)
	}
	// Drain, raw cilium/ebpf reader (baseline).
	{
		d, err := dataplane.Load(opts)
		if err != nil {
			return res, err
		}
		if err := produce(d, events); err != nil {
			d.Close()
			return res, err
		}
		rd, err := ringbuf.NewReader(d.EventsMap())
		if err != nil {
			d.Close()
			return res, err
		}
		var rec ringbuf.Record
		n := 0
		start := time.Now()
		rd.SetDeadline(time.Now())
		for {
			if err := rd.ReadInto(&rec); err != nil {
				break
			}
			n++
		}
		el := time.Since(start)
		rd.Close()
		d.Close()
		if n != events {
			return res, fmt.Errorf("raw drain: read %d events, wrote %d", n, events)
		}
		res.RawDrainPerSec = float64(events) / el.Seconds()
		logf("ring drain, raw reader: %d events in %v", events, el)
	}
	// Concurrent: producer and typed reader at the same time.
	{
		o := opts
		o.RingBytes = 16 << 20 // the daemon's default ring
		d, err := dataplane.Load(o)
		if err != nil {
			return res, err
		}
		defer d.Close()
		rd, err := d.NewReader()
		if err != nil {
			return res, err
		}
		var h countingHandler
		done := make(chan error, 1)
		go func() {
			runtime.LockOSThread()
			done <- rd.Run(&h)
		}()
		start := time.Now()
		perr := make(chan error, 1)
		go func() {
			runtime.LockOSThread()
			perr <- produce(d, events)
		}()
		if err := <-perr; err != nil {
			rd.Close()
			return res, err
		}
		prodEl := time.Since(start)
		st, err := d.Stats()
		if err != nil {
			rd.Close()
			return res, err
		}
		written := st.Total[dataplane.StatEvFlow] + st.Total[dataplane.StatEvSnippet]
		deadline := time.Now().Add(30 * time.Second)
		for h.n.Load() < written && time.Now().Before(deadline) {
			time.Sleep(100 * time.Microsecond)
		}
		el := time.Since(start)
		rd.Close()
		<-done
		res.Written = written
		res.ReserveFailures = st.Total[dataplane.StatEvFlowFail] + st.Total[dataplane.StatEvSnippetFail]
		res.Delivered = h.n.Load()
		res.Uncounted = int64(events) - int64(written) - int64(res.ReserveFailures)
		res.Uncounted += int64(written) - int64(res.Delivered)
		res.ConcurrentPerSec = float64(res.Delivered) / el.Seconds()
		res.ProducedPerSec = float64(events) / prodEl.Seconds()
		logf("ring concurrent: %d runs in %v, %d written, %d reserve failures, %d delivered in %v",
			events, prodEl, written, res.ReserveFailures, res.Delivered, el)
	}
	return res, nil
}
