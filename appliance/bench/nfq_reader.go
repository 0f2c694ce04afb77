package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"golang.org/x/sys/unix"

	"github.com/wardline/wardline/enforce/nfq"
)

// nfqReaderEnv, when set, turns this executable (bin/wardline or the test
// binary) into one of the nfq figure's Go readers: the harness starts
// every reader as its own process, pinned to one CPU with taskset like the
// C reference, so that a Go reader's garbage collector and runtime threads
// are charged to it and not spread over the generator's CPU. The value is
// a JSON nfqReaderConfig.
const nfqReaderEnv = "WARDLINE_BENCH_NFQ_READER"

func init() {
	if v := os.Getenv(nfqReaderEnv); v != "" {
		os.Exit(runNFQReader(v))
	}
}

// nfqReaderConfig is what a reader process is told.
type nfqReaderConfig struct {
	Reader  string `json:"reader"` // ReaderLean or ReaderGoNFQ
	Queue   uint16 `json:"queue"`
	MaxLen  uint32 `json:"max_len"`
	RcvBuf  int    `json:"rcvbuf"`
	Content string `json:"content"` // drop packets whose payload contains it
}

// nfqCounts is what every reader prints, as one JSON line, when it ends
// (the C reference prints the same keys).
type nfqCounts struct {
	Received uint64 `json:"received"`
	Accepted uint64 `json:"accepted"`
	Dropped  uint64 `json:"dropped"`
	Errors   uint64 `json:"errors"`
	Overruns uint64 `json:"overruns"` // ENOBUFS seen
	Missed   uint64 `json:"missed"`   // IDs never delivered (lean reader only)
	Reads    uint64 `json:"reads"`
	Writes   uint64 `json:"writes"`
}

// runNFQReader runs one reader until SIGTERM, then prints its counters.
// Like the C reference it prints "ready" once the queue is bound.
func runNFQReader(v string) int {
	var cfg nfqReaderConfig
	if err := json.Unmarshal([]byte(v), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "nfq reader: parse %s: %v\n", nfqReaderEnv, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGTERM, unix.SIGINT)
	defer stop()
	rules := []nfq.Rule{{Name: "content", Content: []byte(cfg.Content), Action: nfq.Drop}}
	var counts nfqCounts
	var err error
	switch cfg.Reader {
	case ReaderLean:
		counts, err = runLean(ctx, cfg, rules)
	case ReaderGoNFQ:
		counts, err = runGoNFQueue(ctx, cfg, rules)
	default:
		err = fmt.Errorf("unknown reader %q", cfg.Reader)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "nfq reader %s: %v\n", cfg.Reader, err)
		return 1
	}
	b, _ := json.Marshal(counts)
	fmt.Printf("%s\n", b)
	return 0
}

// runLean runs enforce/nfq's Inspector.
func runLean(ctx context.Context, cfg nfqReaderConfig, rules []nfq.Rule) (nfqCounts, error) {
	in, err := nfq.New(nfq.Config{Queue: cfg.Queue, Rules: rules, MaxQueueLen: cfg.MaxLen, RcvBuf: cfg.RcvBuf,
		Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }})
	if err != nil {
		return nfqCounts{}, err
	}
	defer in.Close()
	fmt.Println("ready")
	if err := in.Run(ctx); err != nil {
		return nfqCounts{}, err
	}
	s := in.Counters()
	return nfqCounts{Received: s.Received, Accepted: s.Accepted, Dropped: s.Dropped, Errors: s.Errors,
		Overruns: s.Overruns, Missed: s.Missed, Reads: s.Reads, Writes: s.Writes}, nil
}

// runGoNFQueue runs github.com/florianl/go-nfqueue/v2 (v2.0.2) tuned as
// far as its API allows: whole packets, fail-open and GSO flags, the
// queue length of the other readers, a 64 MiB receive buffer with
// SO_RCVBUFFORCE (platform.md: without it ~85 % of packets are lost), and
// a callback that allocates nothing (the same nfq.Matcher as the lean
// reader). What is left is the library's: Receive peeks before it reads
// (two recvmsg per packet) into a new buffer, decoding allocates the
// Attribute fields, and every SetVerdict marshals a new message; its
// read loop has no end-of-burst hook, so verdicts cannot be batched
// without a timer.
func runGoNFQueue(ctx context.Context, cfg nfqReaderConfig, rules []nfq.Rule) (nfqCounts, error) {
	m, err := nfq.Compile(rules)
	if err != nil {
		return nfqCounts{}, err
	}
	nf, err := nfqueue.Open(&nfqueue.Config{NfQueue: cfg.Queue, MaxPacketLen: 0xffff, MaxQueueLen: cfg.MaxLen,
		Copymode: nfqueue.NfQnlCopyPacket, Flags: nfqueue.NfQaCfgFlagFailOpen | nfqueue.NfQaCfgFlagGSO, AfFamily: unix.AF_INET})
	if err != nil {
		return nfqCounts{}, fmt.Errorf("go-nfqueue open: %w", err)
	}
	defer nf.Close()
	raw, err := nf.Con.SyscallConn()
	if err != nil {
		return nfqCounts{}, err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, cfg.RcvBuf)
	}); err != nil || serr != nil {
		return nfqCounts{}, fmt.Errorf("go-nfqueue SO_RCVBUFFORCE: %v %v", err, serr)
	}
	var c struct{ received, accepted, dropped, errors, overruns atomic.Uint64 }
	fn := func(a nfqueue.Attribute) int {
		if a.PacketID == nil {
			c.errors.Add(1)
			return 0
		}
		c.received.Add(1)
		v := nfqueue.NfAccept
		if a.Payload != nil {
			if act, _ := m.Verdict(*a.Payload); act == nfq.Drop {
				v = nfqueue.NfDrop
			}
		}
		if err := nf.SetVerdict(*a.PacketID, v); err != nil {
			c.errors.Add(1)
			return 0
		}
		if v == nfqueue.NfDrop {
			c.dropped.Add(1)
		} else {
			c.accepted.Add(1)
		}
		return 0
	}
	errFn := func(err error) int {
		if ctx.Err() != nil {
			return 1 // the deadline set on cancel: stop
		}
		if errors.Is(err, unix.ENOBUFS) {
			c.overruns.Add(1)
			return 0
		}
		c.errors.Add(1)
		return 0
	}
	if err := nf.RegisterWithErrorFunc(ctx, fn, errFn); err != nil {
		return nfqCounts{}, fmt.Errorf("go-nfqueue register: %w", err)
	}
	fmt.Println("ready")
	<-ctx.Done()
	if err := nf.Close(); err != nil {
		return nfqCounts{}, fmt.Errorf("go-nfqueue close: %w", err)
	}
	return nfqCounts{Received: c.received.Load(), Accepted: c.accepted.Load(), Dropped: c.dropped.Load(),
		Errors: c.errors.Load(), Overruns: c.overruns.Load(), Reads: c.received.Load(), Writes: c.received.Load()}, nil
}
