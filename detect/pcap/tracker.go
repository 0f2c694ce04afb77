package pcap

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/wardline/wardline/dataplane/event"
)

// This file is the Go twin of the per-packet half of bpf/xdp_wardline.c
// (track, client_payload, emit_flow, emit_snippet, finish) and of wl_sweep.
// Where the C works around concurrency (atomics, the DONE claim, ring
// reserve failures), the twin is single-threaded and never fails to
// deliver, so those paths reduce to their successful case.

// Flow state bits: WL_ST_* in bpf/structs.h.
const (
	stFlagsRespShift = 8
	stFinOrig        = 1 << 16
	stFinResp        = 1 << 17
	stLastFinResp    = 1 << 18 // the second FIN came from the responder
	stRST            = 1 << 19
	stDone           = 1 << 20 // never left set here: finishing cannot fail
	stPayload        = 1 << 21 // first client payload classified
	stFrag           = 1 << 22 // flow of non-first fragments (no ports)
	stBothFin        = stFinOrig | stFinResp
)

// Bounds from bpf/consts.h.
const (
	snippetMax     = 4096 // WL_SNIPPET_MAX
	snippetContMax = 3    // WL_SNIPPET_CONT_MAX
	peekLen        = 8    // WL_PEEK_LEN
	dnsPort        = 53
	dhcpServerPort = 67 // DHCP_SERVER_PORT
	dhcpClientPort = 68 // DHCP_CLIENT_PORT
)

// none marks the end of an intrusive list.
const none = -1

// link is one intrusive doubly linked list membership (slab indices).
type link struct{ prev, next int32 }

// list is an intrusive list: head is the most recently touched entry.
type list struct{ head, tail int32 }

// flow mirrors struct wl_flow plus the table's bookkeeping.
type flow struct {
	key        flowKey // canonical
	firstSeen  int64   // ns since the epoch, packet time
	lastSeen   int64
	lastExport int64 // last interim record, or firstSeen
	packets    [2]uint64
	bytes      [2]uint64
	ifindex    [2]uint32
	state      uint32
	exports    uint32
	loIsOrig   bool // the key's saddr (lower endpoint) originated the flow
	firstFlags uint8
	snipConts  uint8
	inClosed   bool
	snipSeq    uint32
	snipWant   uint32

	lru    link // every live flow, by last packet
	closed link // flows with both FINs seen, by last packet
}

// Tracker turns packets into the flow records and payload snippets that
// wl_xdp produces for the same frames, driven by packet time. It is not
// safe for concurrent use; events go to the Handler synchronously, which
// must not call back into the Tracker.
//
// Packet accounts one packet; Flush ends the input. A Tracker may be fed
// several files in sequence (ReadFiles does that), so flows continue across
// them.
type Tracker struct {
	h        event.Handler
	opts     Options
	idleNs   int64
	activeNs int64
	closeNs  int64
	sweepNs  int64
	snipLen  uint32
	sample   uint32
	maxFlows int

	tab    flowTable // the flows, held by their keys and the lists
	lru    list
	closed list

	started   bool
	origin    int64 // first packet time: the sweep grid starts here
	now       int64 // latest packet time (the clock never goes back)
	nextSweep int64

	stats Stats
	p     pkt
	ev    event.Flow
	sn    event.Snippet
}

// NewTracker returns a Tracker that delivers events to h (nil discards
// them).
func NewTracker(opts Options, h event.Handler) (*Tracker, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("pcap tracker options: %w", err)
	}
	opts = opts.WithDefaults()
	if h == nil {
		h = event.HandlerFuncs{}
	}
	return &Tracker{
		h:        h,
		opts:     opts,
		idleNs:   int64(opts.IdleTimeout),
		activeNs: int64(opts.ActiveTimeout),
		closeNs:  int64(opts.CloseTimeout),
		sweepNs:  int64(opts.SweepInterval),
		snipLen:  opts.SnippetLen,
		sample:   opts.FlowSample,
		maxFlows: int(opts.FlowTableSize),
		tab:      newFlowTable(),
		lru:      list{none, none},
		closed:   list{none, none},
	}, nil
}

// Options returns the options in effect (defaults applied).
func (t *Tracker) Options() Options { return t.opts }

// Now returns the tracker's clock: the latest packet time seen.
func (t *Tracker) Now() time.Time { return time.Unix(0, t.now) }

// Flows returns the number of flows in the table.
func (t *Tracker) Flows() int { return t.tab.count }

// Stats returns the counters so far.
func (t *Tracker) Stats() Stats {
	s := t.stats
	s.LiveFlows = uint64(t.tab.count)
	return s
}

// Packet accounts one packet, as wl_xdp does for a frame arriving on
// pk.Ifindex at pk.Time. pk.Data is only read during the call (snippets
// point into it while their handler runs).
func (t *Tracker) Packet(pk *Packet) {
	now := t.clock(pk.Time)
	st := &t.stats
	data := pk.Data
	orig := pk.Length
	if orig < len(data) {
		orig = len(data)
	}
	wire := orig
	if pk.LinkType != layers.LinkTypeEthernet {
		// Count what the frame would be behind an Ethernet header.
		wire = max(orig-linkHeaderLen(pk.LinkType), 0) + ethHLen
	}
	st.Packets++
	st.Bytes += uint64(wire)
	st.CapturedBytes += uint64(len(data))
	if len(data) < orig {
		st.ShortCaptures++
	}

	p := &t.p
	*p = pkt{}
	switch parse(data, orig, pk.LinkType, p) {
	case resOK:
	case resNonIP:
		st.NonIP++
		return
	case resARP:
		// ARP is counted as non-IP and reported (host sweeps, spoofing).
		st.NonIP++
		t.emitSnippet(p, data, now, event.SnippetARP, event.DirOrig, 0, false, pk.Ifindex)
		return
	case resErrEth:
		st.ErrEth++
		return
	case resErrVLAN:
		st.ErrVLAN++
		return
	case resErrIPv4:
		st.ErrIPv4++
		return
	case resErrIPv6:
		st.ErrIPv6++
		return
	case resErrIPv6Ext:
		st.ErrIPv6Ext++
		return
	case resErrL4:
		st.ErrL4++
		return
	}
	if p.frag {
		st.Fragments++
	}
	t.track(p, data, uint64(wire), now, pk.Ifindex)
}

// maxUnixSec bounds timestamps that time.Time.UnixNano can represent.
const maxUnixSec = 1 << 33

// clock turns a packet timestamp into the tracker's time and runs the
// sweeper for every sweep tick that time has reached. Timestamps earlier
// than the clock (out of order captures, merged files) are clamped to it
// so that flows never time out backwards; unusable ones (zero, before 1970,
// after 2242) take the clock's value.
func (t *Tracker) clock(ts time.Time) int64 {
	sec := ts.Unix()
	if ts.IsZero() || sec < 0 || sec > maxUnixSec {
		t.stats.BadTimestamps++
		t.start(t.now)
		return t.now
	}
	ns := ts.UnixNano()
	if !t.started {
		t.start(ns)
		return ns
	}
	if ns < t.now {
		t.stats.TimeBackwards++
		return t.now
	}
	t.advance(ns)
	return ns
}

func (t *Tracker) start(ns int64) {
	if !t.started {
		t.started = true
		t.origin, t.now, t.nextSweep = ns, ns, ns+t.sweepNs
	}
}

// advance moves the clock forward to ns, sweeping at the ticks reached.
func (t *Tracker) advance(ns int64) {
	t.now = ns
	if t.sweepNs > 0 && ns >= t.nextSweep {
		tick := t.origin + (ns-t.origin)/t.sweepNs*t.sweepNs
		t.sweep(tick, true)
		t.nextSweep = tick + t.sweepNs
	}
}

// AdvanceTo moves the clock to ts without a packet, running the sweeps
// that time reaches (when a capture's end time is known, say). A time
// before the clock is ignored.
func (t *Tracker) AdvanceTo(ts time.Time) {
	if sec := ts.Unix(); ts.IsZero() || sec < 0 || sec > maxUnixSec {
		return
	}
	ns := ts.UnixNano()
	if !t.started {
		t.start(ns)
		return
	}
	if ns > t.now {
		t.advance(ns)
	}
}

// Sweep runs the sweeper once at the clock's time, as the daemon's
// Dataplane.Sweep does; with a negative SweepInterval it is the only
// sweeper. It returns the number of flows it expired.
func (t *Tracker) Sweep() int {
	before := t.stats.SweepExpired
	t.sweep(t.now, false)
	return int(t.stats.SweepExpired - before)
}

// addrCmp mirrors addr_cmp: the two halves of each address loaded as
// native (little-endian) 64-bit words. Any consistent order would do; this
// one keeps canonical keys, and so flow sampling, equal to the fast path's.
func addrCmp(a, b *[16]byte) int {
	a0, b0 := binary.LittleEndian.Uint64(a[0:]), binary.LittleEndian.Uint64(b[0:])
	if a0 != b0 {
		if a0 < b0 {
			return -1
		}
		return 1
	}
	a1, b1 := binary.LittleEndian.Uint64(a[8:]), binary.LittleEndian.Uint64(b[8:])
	if a1 != b1 {
		if a1 < b1 {
			return -1
		}
		return 1
	}
	return 0
}

func isICMP(proto uint8) bool { return proto == protoICMP || proto == protoICMP6 }

// flip mirrors flip: swap the endpoints; ICMP type/code stay in place.
func flip(dst, src *flowKey) {
	*dst = *src
	dst.saddr, dst.daddr = src.daddr, src.saddr
	if !isICMP(src.proto) {
		dst.sport, dst.dport = src.dport, src.sport
	}
}

// canonical mirrors canonical: the table key for k, and whether the
// packet's sender is the key's (lower) saddr endpoint.
func canonical(ck, k *flowKey) bool {
	c := addrCmp(&k.saddr, &k.daddr)
	if c < 0 || (c == 0 && (isICMP(k.proto) || k.sport <= k.dport)) {
		*ck = *k
		return true
	}
	flip(ck, k)
	return false
}

// keyHash mirrors key_hash over the 11 native-endian words of struct
// wl_flow_key (the pad bytes are zero).
func keyHash(k *flowKey) uint32 {
	var h uint32
	mix := func(w uint32) { h = (h ^ w) * 0x9E3779B1 }
	for i := 0; i < 16; i += 4 {
		mix(binary.LittleEndian.Uint32(k.saddr[i:]))
	}
	for i := 0; i < 16; i += 4 {
		mix(binary.LittleEndian.Uint32(k.daddr[i:]))
	}
	mix(uint32(k.sport) | uint32(k.dport)<<16)
	mix(uint32(k.vlan[0]) | uint32(k.vlan[1])<<16)
	mix(uint32(k.proto))
	return h ^ h>>16
}

// track mirrors track() for a parsed IP packet of wire bytes.
func (t *Tracker) track(p *pkt, data []byte, wire uint64, now int64, ifindex uint32) {
	st := &t.stats
	var ck flowKey
	senderIsLo := canonical(&ck, &p.key)
	// Sampling is decided before the lookup, on the canonical key.
	if t.sample > 1 && keyHash(&ck)%t.sample != 0 {
		st.FlowSampledOut++
		return
	}
	i, ok := t.tab.find(&ck)
	if !ok {
		i = t.insert(&ck)
		f := t.tab.at(i)
		f.firstSeen, f.lastSeen, f.lastExport = now, now, now
		f.loIsOrig = senderIsLo
		// A SYN-ACK first means the SYN was missed: the receiver
		// originated the connection.
		if p.key.proto == protoTCP && p.tcpFlags&(event.TCPSyn|event.TCPAck) == event.TCPSyn|event.TCPAck {
			f.loIsOrig = !senderIsLo
		}
		f.firstFlags = p.tcpFlags
		if p.frag {
			f.state = stFrag
		}
		st.FlowsCreated++
	} else {
		t.touch(&t.lru, i, false)
	}
	f := t.tab.at(i)

	dir := event.DirResp
	if senderIsLo == f.loIsOrig {
		dir = event.DirOrig
	}
	f.packets[dir]++
	f.bytes[dir] += wire
	f.lastSeen = now
	f.ifindex[dir] = ifindex
	if f.inClosed {
		t.touch(&t.closed, i, true)
	}

	sport, dport := p.key.sport, p.key.dport
	dns := (p.key.proto == protoUDP || p.key.proto == protoTCP) && !p.frag &&
		(sport == dnsPort || dport == dnsPort)
	if dns && p.payloadLen > 0 {
		t.emitSnippet(p, data, now, event.SnippetDNS, dir, 0, false, ifindex)
	}
	// DHCPv4 for passive discovery (xdp_wardline.c, after the DNS snippet).
	if p.key.proto == protoUDP && !p.frag && p.payloadLen > 0 &&
		(sport == dhcpServerPort || dport == dhcpServerPort || sport == dhcpClientPort || dport == dhcpClientPort) {
		t.emitSnippet(p, data, now, event.SnippetDHCP, dir, 0, false, ifindex)
	}

	if p.key.proto == protoTCP && !p.frag {
		fl := p.tcpFlags
		bits := uint32(fl)
		if dir == event.DirResp {
			bits <<= stFlagsRespShift
		}
		if fl&event.TCPFin != 0 {
			if dir == event.DirOrig {
				bits |= stFinOrig
			} else {
				bits |= stFinResp
			}
		}
		if fl&event.TCPRst != 0 {
			bits |= stRST
		}
		old := f.state
		f.state |= bits
		cur := f.state

		if !dns && dir == event.DirOrig && p.payloadLen > 0 {
			t.clientPayload(f, p, data, now, ifindex)
		}
		if fl&event.TCPRst != 0 {
			t.finish(i, event.ReasonRST, now)
			return
		}
		if cur&stBothFin == stBothFin {
			if old&stBothFin != stBothFin {
				// This packet completed the close: the ACK of
				// the second FIN, from the other side, ends it.
				if dir == event.DirResp {
					f.state |= stLastFinResp
				}
				f.inClosed = true
				t.pushFront(&t.closed, i, true)
			} else if fl&event.TCPFin == 0 && fl&event.TCPAck != 0 {
				last := event.DirOrig
				if cur&stLastFinResp != 0 {
					last = event.DirResp
				}
				if dir != last {
					t.finish(i, event.ReasonFIN, now)
					return
				}
			}
		}
	}

	// Interim record for long flows.
	if le := f.lastExport; now > le && now-le >= t.activeNs && f.state&stDone == 0 {
		f.lastExport = now
		t.emitFlow(f, event.ReasonActive, false, now)
	}
}

// isHTTPMethod mirrors is_http_method on the first four payload bytes.
func isHTTPMethod(b []byte) bool {
	switch string(b[:4]) {
	case "GET ", "POST", "HEAD", "PUT ", "DELE", "OPTI", "CONN", "PATC", "TRAC":
		return true
	}
	return false
}

// clientPayload mirrors client_payload: classify the first client payload
// (TLS ClientHello, HTTP request, anything else) and follow a ClientHello
// that spans segments with continuation snippets at sequence offsets.
func (t *Tracker) clientPayload(f *flow, p *pkt, data []byte, now int64, ifindex uint32) {
	if f.state&stPayload == 0 {
		f.state |= stPayload
		if p.payloadLen < peekLen || len(data)-p.payloadOff < peekLen {
			t.emitSnippet(p, data, now, event.SnippetPayload, event.DirOrig, 0, false, ifindex)
			return
		}
		peek := data[p.payloadOff : p.payloadOff+peekLen]
		switch {
		case peek[0] == 0x16 && peek[1] == 0x03 && peek[5] == 0x01:
			want := 5 + (uint32(peek[3])<<8 | uint32(peek[4]))
			if want > t.snipLen {
				want = t.snipLen
			}
			if want > p.payloadLen {
				f.snipSeq = p.tcpSeq
				f.snipWant = want
			}
			t.emitSnippet(p, data, now, event.SnippetTLS, event.DirOrig, 0, false, ifindex)
		case isHTTPMethod(peek):
			t.emitSnippet(p, data, now, event.SnippetHTTP, event.DirOrig, 0, false, ifindex)
		default:
			t.emitSnippet(p, data, now, event.SnippetPayload, event.DirOrig, 0, false, ifindex)
		}
		return
	}
	if f.snipWant == 0 {
		return
	}
	off := p.tcpSeq - f.snipSeq
	if off == 0 || off >= f.snipWant {
		return
	}
	// At most snippetContMax continuations (snip_conts + 1 >= WL_SNIPPET_CONT_MAX).
	if f.snipConts+1 >= snippetContMax || off+p.payloadLen >= f.snipWant {
		f.snipWant = 0 // the last piece followed
	}
	f.snipConts++
	t.emitSnippet(p, data, now, event.SnippetTLS, event.DirOrig, off, true, ifindex)
}

func eventKey(dst *event.FlowKey, k *flowKey) {
	dst.Src = netip.AddrFrom16(k.saddr).Unmap()
	dst.Dst = netip.AddrFrom16(k.daddr).Unmap()
	dst.SrcPort = k.sport
	dst.DstPort = k.dport
	dst.Proto = k.proto
	dst.VLAN = k.vlan
}

// emitSnippet mirrors emit_snippet: up to SnippetLen bytes of the packet's
// L4 payload. A capture cut by its snap length can hold less than the
// payload: the snippet then holds what was captured, with Truncated set.
func (t *Tracker) emitSnippet(p *pkt, data []byte, now int64, kind event.SnippetKind, dir event.Dir, offset uint32, cont bool, ifindex uint32) {
	st := &t.stats
	n := p.payloadLen
	trunc := false
	cut := false // cut at the snippet length (counted once delivered, as in the C)
	if n > t.snipLen {
		n = t.snipLen
		trunc, cut = true, true
	}
	if n > snippetMax {
		n = snippetMax
	}
	if n < 1 {
		return
	}
	if avail := len(data) - p.payloadOff; avail < int(n) {
		if avail <= 0 {
			st.SnippetsMissing++
			return
		}
		n = uint32(avail)
		trunc = true
		st.SnippetsShort++
	}
	s := &t.sn
	eventKey(&s.Key, &p.key)
	s.Kind = kind
	s.Dir = dir
	s.Truncated = trunc
	s.Continuation = cont
	s.Offset = offset
	s.PayloadLen = uint16(min(p.payloadLen, 0xffff))
	s.Ifindex = ifindex
	s.Time = time.Unix(0, now)
	s.CPU = 0
	s.Data = data[p.payloadOff : p.payloadOff+int(n)]
	st.Snippets++
	if cut {
		st.SnippetsTruncated++
	}
	t.h.HandleSnippet(s)
}

// emitFlow mirrors emit_flow: a record oriented by the originator.
func (t *Tracker) emitFlow(f *flow, reason event.Reason, final bool, now int64) {
	e := &t.ev
	if f.loIsOrig {
		eventKey(&e.Key, &f.key)
	} else {
		var k flowKey
		flip(&k, &f.key)
		eventKey(&e.Key, &k)
	}
	e.Reason = reason
	e.Final = final
	e.Seq = f.exports
	f.exports++
	e.Frag = f.state&stFrag != 0
	e.FirstFlags = f.firstFlags
	e.TCPFlags = [2]uint8{uint8(f.state), uint8(f.state >> stFlagsRespShift)}
	e.Ifindex = f.ifindex
	e.FirstSeen = time.Unix(0, f.firstSeen)
	e.LastSeen = time.Unix(0, f.lastSeen)
	e.Packets = f.packets
	e.Bytes = f.bytes
	e.Time = time.Unix(0, now)
	e.CPU = 0
	t.stats.FlowRecords++
	t.h.HandleFlow(e)
}

// finish mirrors finish: the final record, then the entry goes.
func (t *Tracker) finish(i int32, reason event.Reason, now int64) {
	t.emitFlow(t.tab.at(i), reason, true, now)
	t.remove(i)
}

// finalReason is the reason wl_sweep gives a flow it expires.
func finalReason(state uint32) event.Reason {
	switch {
	case state&stRST != 0:
		return event.ReasonRST
	case state&stBothFin == stBothFin:
		return event.ReasonFIN
	}
	return event.ReasonIdle
}

// timeout is the sweeper's timeout for a flow in this state.
func (t *Tracker) timeout(state uint32) int64 {
	if state&stRST != 0 || state&stBothFin == stBothFin {
		return t.closeNs
	}
	return t.idleNs
}

// sweep mirrors wl_sweep at time tick: flows idle for the idle timeout,
// and closed flows older than the close timeout, get their final record
// and leave the table. Both lists are ordered by last packet, so only
// their oldest ends are examined; records leave in expiry order. On the
// sweep grid (grid), each is stamped with the first tick at or after its
// expiry: when packet time jumped over several ticks, that is the tick
// that would have written it. Otherwise it is stamped tick.
func (t *Tracker) sweep(tick int64, grid bool) {
	t.stats.Sweeps++
	for {
		best, bestExp := int32(none), int64(0)
		if c := t.closed.tail; c != none {
			if exp := t.tab.at(c).lastSeen + t.closeNs; exp <= tick {
				best, bestExp = c, exp
			}
		}
		if l := t.lru.tail; l != none {
			f := t.tab.at(l)
			if exp := f.lastSeen + t.timeout(f.state); exp <= tick && (best == none || exp < bestExp) {
				best, bestExp = l, exp
			}
		}
		if best == none {
			return
		}
		at := tick
		if grid {
			at = t.origin + (bestExp-t.origin+t.sweepNs-1)/t.sweepNs*t.sweepNs
		}
		f := t.tab.at(best)
		t.emitFlow(f, finalReason(f.state), true, at)
		t.remove(best)
		t.stats.SweepExpired++
	}
}

// Flush ends the input: every flow still in the table gets its final
// record now (the last packet time), oldest first, with the reason the
// sweeper would eventually give it (idle, or fin for a connection closed
// in both directions whose last ACK was not seen), and the table is
// emptied. Packets after Flush start new flows.
func (t *Tracker) Flush() {
	for t.lru.tail != none {
		i := t.lru.tail
		f := t.tab.at(i)
		t.emitFlow(f, finalReason(f.state), true, t.now)
		t.remove(i)
		t.stats.Flushed++
	}
}

// insert adds an entry for the canonical key k, evicting the least
// recently used flow when the table is full (its final record is lost, as
// with the fast path's LRU hash, and counted).
func (t *Tracker) insert(k *flowKey) int32 {
	if t.tab.count >= t.maxFlows {
		t.remove(t.lru.tail)
		t.stats.FlowsDeleted-- // an eviction is not a deletion
		t.stats.FlowsEvicted++
	}
	i := t.tab.add(k)
	f := t.tab.at(i)
	f.lru, f.closed = link{none, none}, link{none, none}
	t.pushFront(&t.lru, i, false)
	return i
}

// remove deletes entry i from the table and its lists.
func (t *Tracker) remove(i int32) {
	f := t.tab.at(i)
	t.unlink(&t.lru, i, false)
	if f.inClosed {
		t.unlink(&t.closed, i, true)
		f.inClosed = false
	}
	t.tab.del(i)
	t.stats.FlowsDeleted++
}

func (t *Tracker) linkOf(i int32, closed bool) *link {
	if closed {
		return &t.tab.at(i).closed
	}
	return &t.tab.at(i).lru
}

func (t *Tracker) pushFront(l *list, i int32, closed bool) {
	n := t.linkOf(i, closed)
	n.prev, n.next = none, l.head
	if l.head != none {
		t.linkOf(l.head, closed).prev = i
	} else {
		l.tail = i
	}
	l.head = i
}

func (t *Tracker) unlink(l *list, i int32, closed bool) {
	n := t.linkOf(i, closed)
	if n.prev != none {
		t.linkOf(n.prev, closed).next = n.next
	} else {
		l.head = n.next
	}
	if n.next != none {
		t.linkOf(n.next, closed).prev = n.prev
	} else {
		l.tail = n.prev
	}
	n.prev, n.next = none, none
}

// touch moves entry i to the front of l.
func (t *Tracker) touch(l *list, i int32, closed bool) {
	if l.head == i {
		return
	}
	t.unlink(l, i, closed)
	t.pushFront(l, i, closed)
}
