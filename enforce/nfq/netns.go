package nfq

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// nsPath turns a namespace name (in /run/netns) into a path; paths and ""
// stay as they are.
func nsPath(ns string) string {
	if ns == "" || strings.ContainsRune(ns, '/') {
		return ns
	}
	return filepath.Join("/run/netns", ns)
}

// inNetNS runs fn on a new OS thread inside the network namespace ns (a
// name in /run/netns or a path; "": the namespace the process started
// in). The thread is never unlocked, so the runtime discards it after fn.
// Sockets fn opens stay in ns; goroutines fn starts do not run in ns.
func inNetNS(ns string, fn func() error) error {
	var fd = -1
	if p := nsPath(ns); p != "" {
		var err error
		if fd, err = unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
			return fmt.Errorf("open network namespace %s: %w", p, err)
		}
		defer unix.Close(fd)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: see above
		if fd >= 0 {
			if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
				errc <- fmt.Errorf("enter network namespace %s: %w", nsPath(ns), err)
				return
			}
		}
		errc <- fn()
	}()
	return <-errc
}

// procQueues is the kernel's table of NFQUEUE instances. /proc/net shows
// the namespace of the thread that opens it, so it is opened through
// thread-self on a thread inside the namespace.
const procQueues = "/proc/thread-self/net/netfilter/nfnetlink_queue"

// KernelStats is one queue's line of /proc/net/netfilter/nfnetlink_queue:
// the kernel's own counters, which the reader cannot fake.
type KernelStats struct {
	Queue     uint16 // queue number
	PortID    uint32 // netlink port ID of the bound reader
	Waiting   uint32 // packets queued now, awaiting a verdict (queue_total)
	CopyMode  uint8
	CopyRange uint32
	// QueueDropped: packets dropped because the queue was full (never
	// with fail-open, which accepts them instead, uncounted here).
	QueueDropped uint32
	// UserDropped: packets dropped because the reader's socket buffer
	// was full (never with fail-open, which accepts them; the reader
	// then sees a gap in the IDs, Stats.Missed).
	UserDropped uint32
	// IDSequence: the last packet ID handed out; IDs count every packet
	// the queue accepted for the reader since it was bound.
	IDSequence uint32
}

// QueueStats reads queue's kernel counters in network namespace ns (a
// name in /run/netns, a path, or "" for the caller's). It returns an
// error wrapping os.ErrNotExist when no reader is bound to the queue.
func QueueStats(ns string, queue uint16) (KernelStats, error) {
	var b []byte
	err := inNetNS(ns, func() error {
		var err error
		b, err = os.ReadFile(procQueues)
		return err
	})
	if err != nil {
		return KernelStats{}, fmt.Errorf("read NFQUEUE counters: %w", err)
	}
	return parseQueueStats(b, queue)
}

// parseQueueStats finds queue in the kernel's table. Each line is
// "queue_number peer_portid queue_total copy_mode copy_range
// queue_dropped user_dropped id_sequence 1".
func parseQueueStats(b []byte, queue uint16) (KernelStats, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 {
			continue
		}
		var v [8]uint64
		for i := range v {
			n, err := strconv.ParseUint(f[i], 10, 32)
			if err != nil {
				return KernelStats{}, fmt.Errorf("parse NFQUEUE counters %q: %w", sc.Text(), err)
			}
			v[i] = n
		}
		if v[0] != uint64(queue) {
			continue
		}
		return KernelStats{Queue: queue, PortID: uint32(v[1]), Waiting: uint32(v[2]), CopyMode: uint8(v[3]),
			CopyRange: uint32(v[4]), QueueDropped: uint32(v[5]), UserDropped: uint32(v[6]), IDSequence: uint32(v[7])}, nil
	}
	return KernelStats{}, fmt.Errorf("NFQUEUE counters: queue %d: no reader bound: %w", queue, os.ErrNotExist)
}
