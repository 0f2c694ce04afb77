package nfq

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Defaults of Config.
const (
	DefaultMaxQueueLen = 4096
	DefaultRcvBuf      = 64 << 20
	MinRcvBuf          = 32 << 20 // below this a burst overruns the socket (platform.md: ~85 % lost)
	DefaultBatch       = 64
)

// slotSize holds one queued packet message: copy_range (64 KiB - 1) plus
// every attribute the kernel adds (headers, interfaces, timestamps, …).
const slotSize = 64<<10 + 4<<10

// Config configures an Inspector.
type Config struct {
	// NetNS is the network namespace whose queue is read: a name in
	// /run/netns, a path (/proc/PID/ns/net) or "" for the caller's.
	NetNS string
	Queue uint16 // NFQUEUE number, as in the steering rule
	Rules []Rule // first match decides; packets no rule matches are accepted
	// MaxQueueLen is the kernel queue length (default 4096). When it is
	// full the kernel accepts further packets uninspected (fail-open).
	MaxQueueLen uint32
	// RcvBuf is the socket receive buffer, set with SO_RCVBUFFORCE
	// (default 64 MiB, at least 32 MiB).
	RcvBuf int
	// Batch is how many queued packets one read takes at most (default
	// 64, as many as NAPI hands over at once); their verdicts go back in
	// one write. Each takes a 68 KiB slot of address space, of which a
	// small packet touches one page.
	Batch int
	// Logf logs errors, at most once per second per kind (default: none).
	Logf func(format string, args ...any)
}

// Inspector reads one NFQUEUE queue and gives every packet a verdict by
// payload rules. It is a lean reader on a raw netlink socket: one
// recvmmsg takes up to Batch packets into reused buffers, and one write
// returns their verdicts, runs of accepts as a single
// NFQNL_MSG_VERDICT_BATCH message (see README.md for why not
// go-nfqueue).
//
// The queue is bound with NFQA_CFG_F_FAIL_OPEN (a full queue accepts
// instead of dropping) and NFQA_CFG_F_GSO (no segmentation for the
// queue); the steering rule's BYPASS flag covers a reader that is gone.
type Inspector struct {
	cfg   Config
	m     *Matcher
	f     *os.File
	rc    syscall.RawConn
	fd    int // the socket, owned by f; valid until Close, which waits for Run
	port  uint32
	queue uint16

	// Owned by Run (and New before Run).
	seq    uint32
	lastID uint32 // last packet ID seen; IDs start at 1 for a new binding
	buf    []byte // Batch slots of slotSize
	iovs   []unix.Iovec
	hdrs   []unix.Mmsghdr
	slots  [][]byte // the datagrams of one read
	out    []byte   // verdicts of one batch
	early  [][]byte // packet messages read while waiting for the bind ack
	logs   map[string]*limiter
	waitFn func(uintptr) bool // in.wait
	rn     int                // result of waitFn
	rerr   error
	halt   atomic.Bool // set when ctx is done or Close is called

	c        counters
	ruleHits []atomic.Uint64

	mu      sync.Mutex
	running bool
	closed  bool
	stop    chan struct{} // closed by Close to end Run
	done    chan struct{} // closed when Run returns
}

type counters struct {
	received, accepted, dropped, defaulted atomic.Uint64
	errors, malformed, truncated, missed   atomic.Uint64
	overruns, reads, writes                atomic.Uint64
}

// Stats are an Inspector's counters and the kernel's for its queue.
type Stats struct {
	Received uint64 // packets read from the queue
	Accepted uint64 // accept verdicts (rules and default)
	Dropped  uint64 // drop verdicts
	Default  uint64 // of Accepted: no rule matched
	// Errors: verdicts the kernel refused or that could not be sent,
	// plus Malformed and Truncated messages.
	Errors    uint64
	Malformed uint64 // messages that could not be parsed (their packets are accepted by the next batch verdict)
	Truncated uint64 // packets larger than a read slot: accepted uninspected
	// Missed: packet IDs the kernel handed out that never arrived (the
	// socket buffer was full; fail-open accepted them).
	Missed   uint64
	Overruns uint64 // ENOBUFS reported by the socket
	Reads    uint64 // reads that returned packets: Received/Reads is the mean batch
	Writes   uint64 // verdict writes
	Rules    []RuleStats
	Kernel   KernelStats
}

// RuleStats counts one rule's matches (each one is a verdict).
type RuleStats struct {
	Name    string
	Action  Action
	Matches uint64
}

// New compiles the rules, opens a netlink socket in cfg.NetNS and binds
// the queue (copy whole packets, queue length, fail-open, GSO). Packets
// wait in the kernel queue until Run reads them.
func New(cfg Config) (_ *Inspector, err error) {
	if cfg.MaxQueueLen == 0 {
		cfg.MaxQueueLen = DefaultMaxQueueLen
	}
	if cfg.RcvBuf == 0 {
		cfg.RcvBuf = DefaultRcvBuf
	}
	if cfg.RcvBuf < MinRcvBuf {
		return nil, fmt.Errorf("nfqueue %d: receive buffer %d bytes is below the minimum %d", cfg.Queue, cfg.RcvBuf, MinRcvBuf)
	}
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	m, err := Compile(cfg.Rules)
	if err != nil {
		return nil, fmt.Errorf("nfqueue %d: %w", cfg.Queue, err)
	}
	in := &Inspector{cfg: cfg, m: m, queue: cfg.Queue, ruleHits: make([]atomic.Uint64, m.Len()),
		logs: map[string]*limiter{}, stop: make(chan struct{}), done: make(chan struct{})}
	fd := -1
	err = inNetNS(cfg.NetNS, func() error {
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_NETFILTER)
		if err != nil {
			return fmt.Errorf("socket(AF_NETLINK, NETLINK_NETFILTER): %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("nfqueue %d: %w", cfg.Queue, err)
	}
	defer func() {
		if err != nil {
			if in.f != nil {
				in.f.Close()
			} else {
				unix.Close(fd)
			}
		}
	}()
	if err := setRcvBuf(fd, cfg.RcvBuf); err != nil {
		return nil, fmt.Errorf("nfqueue %d: %w", cfg.Queue, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("nfqueue %d: bind netlink socket: %w", cfg.Queue, err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil, fmt.Errorf("nfqueue %d: getsockname: %w", cfg.Queue, err)
	}
	if nl, ok := sa.(*unix.SockaddrNetlink); ok {
		in.port = nl.Pid
	}
	// A non-blocking descriptor joins the runtime's poller: reads wait in
	// epoll, and Close or a deadline wakes a blocked Run.
	in.fd, in.waitFn = fd, in.wait
	in.f = os.NewFile(uintptr(fd), "nfqueue")
	if in.rc, err = in.f.SyscallConn(); err != nil {
		return nil, fmt.Errorf("nfqueue %d: %w", cfg.Queue, err)
	}
	in.buf = make([]byte, cfg.Batch*slotSize)
	in.iovs = make([]unix.Iovec, cfg.Batch)
	in.hdrs = make([]unix.Mmsghdr, cfg.Batch)
	for i := range in.hdrs {
		in.iovs[i].Base = &in.buf[i*slotSize]
		in.iovs[i].SetLen(slotSize)
		in.hdrs[i].Hdr.Iov = &in.iovs[i]
		in.hdrs[i].Hdr.SetIovlen(1)
	}
	in.out = make([]byte, 0, 2*cfg.Batch*verdictSize)
	if err := in.bind(); err != nil {
		return nil, fmt.Errorf("nfqueue %d: %w", cfg.Queue, err)
	}
	return in, nil
}

// setRcvBuf sets the receive buffer with SO_RCVBUFFORCE, which ignores
// net.core.rmem_max (needs CAP_NET_ADMIN), and checks what the kernel
// granted (it reports twice the request, for its bookkeeping).
func setRcvBuf(fd, n int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n); err != nil {
		if err2 := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, n); err2 != nil {
			return fmt.Errorf("setsockopt SO_RCVBUFFORCE %d: %v; SO_RCVBUF: %w", n, err, err2)
		}
	}
	got, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err != nil {
		return fmt.Errorf("getsockopt SO_RCVBUF: %w", err)
	}
	if got < n {
		return fmt.Errorf("receive buffer is %d bytes, want %d (SO_RCVBUFFORCE needs CAP_NET_ADMIN; or raise net.core.rmem_max)", got, n)
	}
	return nil
}

// bind sends the bind-and-configure message and waits for its ack.
// Packets can arrive before the ack (the queue is live once bound); they
// are kept for Run.
func (in *Inspector) bind() error {
	in.seq++
	seq := in.seq
	msg := appendBind(nil, seq, in.queue, in.cfg.MaxQueueLen, flagFailOpen|flagGSO)
	if err := in.write(msg); err != nil {
		return fmt.Errorf("bind queue: %w", err)
	}
	in.f.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer in.f.SetReadDeadline(time.Time{})
	for {
		n, err := in.read()
		if err != nil {
			return fmt.Errorf("bind queue: wait for the kernel's answer: %w", err)
		}
		for i := range n {
			data := in.slot(i)
			for len(data) > 0 {
				start := data
				m, rest, err := nextMessage(data)
				if err != nil {
					return fmt.Errorf("bind queue: %w", err)
				}
				data = rest
				switch {
				case m.kind == kindPacket:
					in.early = append(in.early, append([]byte(nil), start[:len(start)-len(rest)]...))
				case m.seq != seq:
				case m.kind == kindError && m.errno == unix.EBUSY:
					return fmt.Errorf("bind queue: %w (another reader holds the queue)", m.errno)
				case m.kind == kindError && m.errno == unix.EPERM:
					return fmt.Errorf("bind queue: %w (needs CAP_NET_ADMIN in the namespace)", m.errno)
				case m.kind == kindError:
					return fmt.Errorf("bind queue: %w", m.errno)
				case m.kind == kindAck:
					return nil
				}
			}
		}
	}
}

// slot returns datagram i of the last read.
func (in *Inspector) slot(i int) []byte {
	return in.buf[i*slotSize : i*slotSize+int(in.hdrs[i].Len)]
}

// read takes up to Batch datagrams, waiting in the runtime's poller
// only when there are none.
//
// The hot path uses raw system calls: recvmmsg with MSG_DONTWAIT never
// blocks, and the kernel handles a netlink write synchronously. With
// syscall.Syscall the runtime's sysmon took the processor from every
// verdict write that ran long (reinjecting a batch takes ~0.2 ms here)
// and never slept deeply, which cost a context switch per batch on the
// reader's CPU.
func (in *Inspector) read() (int, error) {
	n, err := recvmmsg(in.fd, in.hdrs, unix.MSG_DONTWAIT)
	if err != unix.EAGAIN {
		return n, err
	}
	if err := in.rc.Read(in.waitFn); err != nil {
		return 0, err
	}
	return in.rn, in.rerr
}

// wait is the poller's read callback (allocated once, as in.waitFn).
func (in *Inspector) wait(fd uintptr) bool {
	in.rn, in.rerr = recvmmsg(int(fd), in.hdrs, unix.MSG_DONTWAIT)
	return in.rerr != unix.EAGAIN
}

// readNow is read without waiting: 0 when nothing is queued.
func (in *Inspector) readNow() (int, error) {
	n, err := recvmmsg(in.fd, in.hdrs, unix.MSG_DONTWAIT)
	if err == unix.EAGAIN {
		return 0, nil
	}
	return n, err
}

func recvmmsg(fd int, hdrs []unix.Mmsghdr, flags int) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), uintptr(flags), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// write sends b (one or more netlink messages) to the kernel, which
// handles them in order within the call.
func (in *Inspector) write(b []byte) error {
	for {
		_, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(in.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch e {
		case 0:
			return nil
		case unix.EINTR:
			continue
		}
		return e
	}
}

// Run reads packets and gives verdicts until ctx is done or Close is
// called. Then it stops new packets from being queued (queue length 0:
// fail-open accepts them), gives a verdict to every packet still queued,
// and returns nil. Any other error ends Run; packets then wait in the
// queue until Close releases it (the kernel drops them, and BYPASS lets
// new ones pass). Run may be called once.
func (in *Inspector) Run(ctx context.Context) error {
	in.mu.Lock()
	if in.closed || in.running {
		in.mu.Unlock()
		return fmt.Errorf("nfqueue %d: Run called on a closed or running Inspector", in.queue)
	}
	in.running = true
	in.mu.Unlock()
	defer close(in.done)

	wake := make(chan struct{})
	defer close(wake)
	go func() {
		select {
		case <-ctx.Done():
		case <-in.stop:
		case <-wake:
			return
		}
		in.halt.Store(true)
		in.f.SetReadDeadline(time.Unix(1, 0)) // wakes a waiting read
	}()

	for _, m := range in.early {
		in.send(in.handle([][]byte{m}, false))
	}
	in.early = nil
	for {
		if in.halt.Load() {
			return in.drain()
		}
		n, err := in.read()
		switch {
		case err == nil:
			in.batch(n)
		case errors.Is(err, unix.ENOBUFS):
			// The socket overflowed: the kernel accepted (fail-open) or
			// dropped the packets it could not deliver; the gap in the
			// IDs counts them.
			in.c.overruns.Add(1)
			in.logf("overrun", "nfqueue %d: socket receive buffer overrun (ENOBUFS); lost packets are counted as missed", in.queue)
		case errors.Is(err, os.ErrDeadlineExceeded):
			continue // halt is set
		default:
			return fmt.Errorf("nfqueue %d: read: %w", in.queue, err)
		}
	}
}

// drain ends Run: queue length 0 (new packets pass uninspected, as with
// fail-open), then a verdict for every packet already queued. The kernel
// enqueues and delivers under one lock and applies the new length under
// it too, so once the config message is sent every queued packet is in
// the socket buffer.
func (in *Inspector) drain() error {
	in.seq++
	if err := in.write(appendMaxLen(nil, in.seq, in.queue, 0)); err != nil {
		return fmt.Errorf("nfqueue %d: stop queueing: %w", in.queue, err)
	}
	for {
		n, err := in.readNow()
		if errors.Is(err, unix.ENOBUFS) {
			in.c.overruns.Add(1)
			continue
		}
		if err != nil {
			return fmt.Errorf("nfqueue %d: drain: %w", in.queue, err)
		}
		if n == 0 {
			return nil
		}
		in.batch(n)
	}
}

// batch handles the n datagrams of the last read.
func (in *Inspector) batch(n int) {
	in.c.reads.Add(1)
	s := in.slots[:0]
	trunc := false
	for i := range n {
		s = append(s, in.slot(i))
		trunc = trunc || in.hdrs[i].Hdr.Flags&unix.MSG_TRUNC != 0
	}
	in.send(in.handle(s, trunc))
	in.slots = s[:0]
}

// tally counts what one batch did.
type tally struct {
	received, accepted, dropped, defaulted, errs, malformed, truncated, missed uint64
}

// handle decides every packet of the datagrams and encodes their verdicts
// into in.out: runs of accepts as one batch verdict up to the run's last
// ID, each drop on its own (a batch verdict covers every queued ID up to
// its ID, so the accepts before a drop go first).
func (in *Inspector) handle(datagrams [][]byte, maybeTrunc bool) tally {
	var t tally
	out := in.out[:0]
	var pending uint32 // last ID of the current run of accepts
	havePending := false
	flush := func() {
		if havePending {
			in.seq++
			out = appendVerdict(out, in.seq, in.queue, true, nfAccept, pending)
			havePending = false
		}
	}
	for _, data := range datagrams {
		for len(data) > 0 {
			m, rest, err := nextMessage(data)
			if err != nil {
				// A datagram cut at the slot size (MSG_TRUNC): its
				// packet ID is still readable; accept it uninspected.
				if id, ok := truncatedID(data); ok && maybeTrunc {
					t.truncated++
					m = message{kind: kindPacket, id: id}
					rest = nil
				} else {
					// Unreadable: a later batch accept covers its ID.
					t.malformed++
					in.logf("malformed", "nfqueue %d: malformed message: %v", in.queue, err)
					break
				}
			}
			data = rest
			switch m.kind {
			case kindError:
				t.errs++
				in.logf("kernel", "nfqueue %d: the kernel refused message %d: %v", in.queue, m.seq, m.errno)
				continue
			case kindPacket:
			default:
				continue
			}
			t.received++
			if gap := m.id - in.lastID - 1; gap != 0 && gap < 1<<31 {
				t.missed += uint64(gap)
			}
			in.lastID = m.id
			action, rule := Accept, -1
			if m.payload != nil {
				action, rule = in.m.Verdict(m.payload)
			}
			if rule >= 0 {
				in.ruleHits[rule].Add(1)
			}
			if action == Drop {
				flush()
				in.seq++
				out = appendVerdict(out, in.seq, in.queue, false, nfDrop, m.id)
				t.dropped++
				continue
			}
			if rule < 0 {
				t.defaulted++
			}
			t.accepted++
			pending, havePending = m.id, true
		}
	}
	flush()
	in.out = out
	return t
}

// send writes the verdicts of handle and publishes its tally.
func (in *Inspector) send(t tally) {
	if len(in.out) > 0 {
		err := in.write(in.out)
		if err != nil {
			err = in.write(in.out) // ENOBUFS/ENOMEM under memory pressure: once more
		}
		in.c.writes.Add(1)
		if err != nil {
			// The packets stay queued until the socket is closed, when
			// the kernel drops them.
			t.errs += t.accepted + t.dropped
			in.logf("write", "nfqueue %d: send %d verdicts: %v", in.queue, t.accepted+t.dropped, err)
		}
	}
	in.out = in.out[:0]
	in.publish(t)
}

func (in *Inspector) publish(t tally) {
	c := &in.c
	c.received.Add(t.received)
	c.accepted.Add(t.accepted)
	c.dropped.Add(t.dropped)
	c.defaulted.Add(t.defaulted)
	c.errors.Add(t.errs + t.malformed + t.truncated)
	c.malformed.Add(t.malformed)
	c.truncated.Add(t.truncated)
	c.missed.Add(t.missed)
}

// truncatedID reads the packet ID of a packet message cut short: the
// kernel puts NFQA_PACKET_HDR first.
func truncatedID(b []byte) (uint32, bool) {
	const at = unix.SizeofNlMsghdr + 4
	if len(b) < at+unix.SizeofNlAttr+4 || ne.Uint16(b[4:]) != msgType(msgPacket) ||
		ne.Uint16(b[at+2:])&nlaTypeMask != attrPacketHdr {
		return 0, false
	}
	return uint32(b[at+4])<<24 | uint32(b[at+5])<<16 | uint32(b[at+6])<<8 | uint32(b[at+7]), true
}

// Stats returns the counters and reads the kernel's for the queue.
func (in *Inspector) Stats() (Stats, error) {
	s := in.Counters()
	k, err := QueueStats(in.cfg.NetNS, in.queue)
	s.Kernel = k
	if err != nil {
		return s, fmt.Errorf("nfqueue %d: %w", in.queue, err)
	}
	return s, nil
}

// Counters returns the Inspector's own counters (Kernel is left zero). It
// is cheap and safe to call while Run runs.
func (in *Inspector) Counters() Stats {
	c := &in.c
	s := Stats{Received: c.received.Load(), Accepted: c.accepted.Load(), Dropped: c.dropped.Load(),
		Default: c.defaulted.Load(), Errors: c.errors.Load(), Malformed: c.malformed.Load(),
		Truncated: c.truncated.Load(), Missed: c.missed.Load(), Overruns: c.overruns.Load(),
		Reads: c.reads.Load(), Writes: c.writes.Load()}
	for i := range in.ruleHits {
		r := in.m.Rule(i)
		s.Rules = append(s.Rules, RuleStats{Name: r.Name, Action: r.Action, Matches: in.ruleHits[i].Load()})
	}
	return s
}

// PortID is the netlink port the queue is bound to (KernelStats.PortID).
func (in *Inspector) PortID() uint32 { return in.port }

// Close ends Run (see Run: queued packets get their verdicts) and closes
// the socket, which unbinds the queue; the steering rule's BYPASS then
// lets packets pass. Closing twice is a no-op.
func (in *Inspector) Close() error {
	in.mu.Lock()
	if in.closed {
		in.mu.Unlock()
		return nil
	}
	in.closed = true
	running := in.running
	close(in.stop)
	in.mu.Unlock()
	if running {
		<-in.done
	}
	if err := in.f.Close(); err != nil {
		return fmt.Errorf("nfqueue %d: close: %w", in.queue, err)
	}
	return nil
}

// limiter lets one log line of a kind through per second and counts the
// rest, so that a per-packet error cannot flood the log.
type limiter struct {
	last       time.Time
	suppressed int
}

func (in *Inspector) logf(kind, format string, args ...any) {
	l := in.logs[kind]
	if l == nil {
		l = &limiter{}
		in.logs[kind] = l
	}
	now := time.Now()
	if now.Sub(l.last) < time.Second {
		l.suppressed++
		return
	}
	if l.suppressed > 0 {
		format += fmt.Sprintf(" (%d more since the last report)", l.suppressed)
	}
	l.last, l.suppressed = now, 0
	in.cfg.Logf(format, args...)
}
