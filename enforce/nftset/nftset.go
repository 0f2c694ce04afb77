// Package nftset is the nft backend of the enforcement layer (issue 4): it
// keeps blocked prefixes as elements of interval sets in a bridge-family
// nftables table, each with its own kernel timeout, and drops matching
// frames in a forward chain of the box's bridge.
//
// It is for the enforcement Reconciler (through [enforce.Backend] and
// [enforce.CountingBackend]), for the daemon that opens the table in the box
// namespace, and for the benchmark harness ([LoadBench]).
//
// # The table
//
//	table bridge wardline {
//		set block_src4 { type ipv4_addr; flags interval,timeout; counter }
//		set block_dst4 { type ipv4_addr; flags interval,timeout; counter }
//		set block_src6 { type ipv6_addr; flags interval,timeout; counter }
//		set block_dst6 { type ipv6_addr; flags interval,timeout; counter }
//		set allow4     { type ipv4_addr; flags interval }
//		set allow6     { type ipv6_addr; flags interval }
//		chain forward {
//			type filter hook forward priority filter; policy accept;
//			ip saddr @allow4 counter accept      (and daddr, and ip6 @allow6)
//			ip saddr @block_src4 counter drop    (and dst4, src6, dst6)
//		}
//	}
//
// testdata/ruleset.golden holds exactly what `nft list ruleset` prints.
// The interval flag is what makes a /24 block all 256 addresses (a set
// without it matches only the .0 key, CrowdSec #4517). The sets' "counter"
// gives every element its own packet and byte counter, which
// [Backend.Counters] reports.
//
// # Things callers should know
//
//   - An interval set cannot hold two overlapping prefixes. [Backend.Apply]
//     refuses an added prefix that overlaps another element of the same
//     set with [ErrOverlap] and still applies the rest; the XDP backend (an
//     LPM trie) has no such limit. Apply checks overlaps itself, against
//     its view of the sets: Linux 6.18 silently accepts a range that shares
//     its end with a range inside it, and merges the two.
//   - Re-adding an element (a new expiry) deletes and adds it in one
//     transaction, which resets its counter.
//   - A range that someone added by hand and that is not one prefix is read
//     back as the prefixes that cover it exactly; removing any of them
//     removes that range and re-adds the rest as prefixes.
//   - Costs on Linux 6.18 (measured by [LoadBench]): every transaction that
//     changes an interval set rebuilds the set's lookup array, O(n), about
//     20 ms at 100k elements, so decisions must be batched (a single
//     decision per transaction reaches about 50/s at 100k elements, 2000/s
//     at 5k); and dumping a set costs O(n²) (the kernel restarts its walk
//     for every 32 KiB of reply), about 3-5 s at 100k elements, which
//     Elements and Counters pay on every call.
//   - Frames are matched on meta protocol and the network header. A single
//     802.1Q tag is moved into the packet's metadata on receive, so tagged
//     IPv4 frames are matched too (TestVLANTagged). With two tags
//     (802.1ad) the inner one stays in the payload and meta protocol is
//     802.1Q, so such frames should pass unmatched (not tested here).
package nftset

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/wardline/wardline/enforce"
)

// DefaultTable is the table's name unless Config.Table says otherwise.
const DefaultTable = "wardline"

// Set and chain names; the ruleset golden file and the daemon's
// documentation name them too.
const (
	SetBlockSrc4 = "block_src4"
	SetBlockDst4 = "block_dst4"
	SetBlockSrc6 = "block_src6"
	SetBlockDst6 = "block_dst6"
	SetAllow4    = "allow4"
	SetAllow6    = "allow6"
	ChainForward = "forward"
)

// ErrNoTable is returned by Open when the table does not exist and
// Config.Create is false.
var ErrNoTable = errors.New("nft table does not exist")

// ErrOverlap wraps the error for an added prefix that overlaps another
// element of the same set: an nft interval set holds disjoint ranges only.
var ErrOverlap = errors.New("prefix overlaps another element of the same set")

// Config says where the backend works.
type Config struct {
	// NetNS is the path of the network namespace to work in, such as
	// /run/netns/<name> or /proc/<pid>/ns/net. NetNSFd is an open
	// namespace fd instead (the backend duplicates it; 0 means none). With
	// neither, the backend works in the namespace of the thread that
	// calls Open.
	NetNS   string
	NetNSFd int
	// Table is the bridge-family table's name (DefaultTable when empty).
	Table string
	// Create makes Open create the table, or repair it, with Ensure.
	// Without it Open requires the table to exist already (ErrNoTable).
	Create bool
}

// Backend is the nft enforcement backend. Its methods are safe for
// concurrent use; they serialise on one netlink socket.
type Backend struct {
	mu    sync.Mutex
	ns    netns.NsHandle
	conn  *nftables.Conn
	table *nftables.Table
	sets  map[string]*nftables.Set
	now   func() time.Time

	cache   map[string]*setCache // Apply's view of the block sets
	refused int                  // Apply batches the kernel refused
}

var (
	_ enforce.Backend         = (*Backend)(nil)
	_ enforce.CountingBackend = (*Backend)(nil)
)

// Open connects to nftables in the configured namespace and, with
// cfg.Create, ensures the table (see Ensure).
func Open(cfg Config) (*Backend, error) {
	name := cfg.Table
	if name == "" {
		name = DefaultTable
	}
	if len(name) > 255 || strings.ContainsRune(name, 0) {
		return nil, fmt.Errorf("nft open: invalid table name %q", name)
	}
	var (
		ns  netns.NsHandle
		err error
	)
	switch {
	case cfg.NetNS != "":
		ns, err = netns.GetFromPath(cfg.NetNS)
		if err != nil {
			return nil, fmt.Errorf("nft open: namespace %s: %w", cfg.NetNS, err)
		}
	case cfg.NetNSFd != 0:
		fd, err := unix.FcntlInt(uintptr(cfg.NetNSFd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("nft open: dup namespace fd %d: %w", cfg.NetNSFd, err)
		}
		ns = netns.NsHandle(fd)
	default:
		// Pin the caller's namespace now: every later dial, on whatever
		// thread, then goes to the same namespace.
		ns, err = netns.Get()
		if err != nil {
			return nil, fmt.Errorf("nft open: current namespace: %w", err)
		}
	}
	b := &Backend{
		ns:    ns,
		table: &nftables.Table{Name: name, Family: nftables.TableFamilyBridge},
		now:   time.Now,
		cache: map[string]*setCache{},
	}
	b.sets = desiredSets(b.table)
	if err := b.dial(); err != nil {
		ns.Close()
		return nil, fmt.Errorf("nft open: %w", err)
	}
	if cfg.Create {
		if _, err := b.Ensure(); err != nil {
			b.Close()
			return nil, err
		}
		return b, nil
	}
	if _, err := b.conn.ListTableOfFamily(name, nftables.TableFamilyBridge); err != nil {
		b.Close()
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("nft open: table bridge %s: %w", name, ErrNoTable)
		}
		return nil, fmt.Errorf("nft open: list table bridge %s: %w", name, err)
	}
	return b, nil
}

// Socket buffer sizes. A batch is one sendmsg, so the send buffer bounds
// the batch: 100k IPv4 decisions encode to about 20 MB. The limit costs
// nothing until used (SO_SNDBUFFORCE needs CAP_NET_ADMIN, which nftables
// needs anyway).
const (
	sndBuf = 256 << 20
	rcvBuf = 8 << 20
)

// dial opens the lasting netlink socket in b.ns.
func (b *Backend) dial() error {
	conn, err := nftables.New(
		nftables.WithNetNSFd(int(b.ns)),
		nftables.AsLasting(),
		nftables.WithSockOptions(tuneSocket),
	)
	if err != nil {
		return fmt.Errorf("netlink socket in namespace fd %d: %w", b.ns, err)
	}
	b.conn = conn
	return nil
}

// redial replaces the socket after a failed batch: a batch that failed
// half-way may leave acknowledgements unread, and the next operation must
// not read them as its own.
func (b *Backend) redial() error {
	b.conn.CloseLasting()
	return b.dial()
}

func tuneSocket(c *netlink.Conn) error {
	// Errors without a copy of the (possibly large) failed message, so
	// that a refused batch cannot overflow the receive buffer. Not with
	// NETLINK_EXT_ACK: mdlayher/netlink (v1.7.3 pre-release) looks for the
	// extended attributes after the full copy and fails to parse capped
	// errors that carry them.
	if err := c.SetOption(netlink.CapAcknowledge, true); err != nil {
		return fmt.Errorf("set NETLINK_CAP_ACK: %w", err)
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("netlink syscall conn: %w", err)
	}
	if err := primeDumpSize(raw); err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sndBuf); err != nil {
			serr = fmt.Errorf("set SO_SNDBUFFORCE %d: %w", sndBuf, err)
			return
		}
		if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBuf); err != nil {
			serr = fmt.Errorf("set SO_RCVBUFFORCE %d: %w", rcvBuf, err)
		}
	}); err != nil {
		return fmt.Errorf("netlink socket control: %w", err)
	}
	return serr
}

// Name implements enforce.Backend.
func (b *Backend) Name() string { return "nft" }

// Table is the table's name.
func (b *Backend) Table() string { return b.table.Name }

// Close releases the socket and the namespace handle. The table and its
// elements stay: blocks outlive the daemon until their expiry.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var errs []error
	if b.conn != nil {
		if err := b.conn.CloseLasting(); err != nil {
			errs = append(errs, fmt.Errorf("nft close: netlink socket: %w", err))
		}
		b.conn = nil
	}
	if b.ns.IsOpen() {
		if err := b.ns.Close(); err != nil {
			errs = append(errs, fmt.Errorf("nft close: namespace handle: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Teardown deletes the table with its sets and chain; a missing table is
// not an error. The Backend stays usable: Ensure creates the table again.
func (b *Backend) Teardown() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	clear(b.cache)
	b.conn.DelTable(b.table)
	if err := b.conn.Flush(); err != nil {
		rerr := b.redial()
		if errors.Is(err, unix.ENOENT) && rerr == nil {
			return nil
		}
		return fmt.Errorf("nft teardown: delete table bridge %s: %w", b.table.Name, errors.Join(err, rerr))
	}
	return nil
}

// flush sends the queued batch and, when it fails, replaces the socket.
func (b *Backend) flush() error {
	err := b.conn.Flush()
	if err != nil {
		if rerr := b.redial(); rerr != nil {
			return errors.Join(err, fmt.Errorf("reopen netlink socket: %w", rerr))
		}
	}
	return err
}

// primeDumpSize makes the kernel fill dump replies on this socket in 32 KiB
// buffers instead of 4 KiB ones. A netlink dump fills buffers of the
// largest size the socket has ever read with (up to 32 KiB), and nf_tables
// restarts a set walk from the set's first element for every buffer, so a
// dump costs O(n²/buffer). mdlayher/netlink reads with a page-sized buffer
// first and never grows it for dumps made of page-sized replies: dumping a
// 100k-element set took minutes. One read with a large buffer (of the reply
// to a generation query) raises the size for the socket's life.
func primeDumpSize(raw syscall.RawConn) error {
	const hdr = unix.SizeofNlMsghdr + 4 // nlmsghdr + nfgenmsg
	req := make([]byte, hdr)
	binary.NativeEndian.PutUint32(req[0:], hdr)
	binary.NativeEndian.PutUint16(req[4:], unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETGEN)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(req[8:], 1) // sequence; the reply is read here
	var serr error
	if err := raw.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return serr != unix.EAGAIN
	}); err != nil {
		return fmt.Errorf("netlink socket write: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("send generation query: %w", serr)
	}
	buf := make([]byte, 64<<10)
	if err := raw.Read(func(fd uintptr) bool {
		_, _, serr = unix.Recvfrom(int(fd), buf, 0)
		return serr != unix.EAGAIN
	}); err != nil {
		return fmt.Errorf("netlink socket read: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("read generation: %w", serr)
	}
	return nil
}

// RejectsOverlaps: an interval set cannot hold a prefix inside another
// (the Reconciler leaves the inner one out while the outer one holds).
func (b *Backend) RejectsOverlaps() bool { return true }
