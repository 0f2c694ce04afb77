package lab

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where iproute2 keeps named namespaces, so that
// `ip netns exec <name>` works on lab namespaces.
const netnsDir = "/run/netns"

var netnsDirOnce struct {
	sync.Mutex
	done bool
}

// ensureNetnsDir makes /run/netns a shared mount point, exactly as
// `ip netns add` does, so that lab namespaces behave like iproute2's. Every
// process started by `ip netns exec` unshares its mount namespace and so
// holds copies of the namespace bind mounts that exist at that moment; with
// /run/netns shared, unmounting a namespace propagates into those copies
// (and since Linux 3.18 removing the file detaches them too), so a deleted
// namespace is not kept alive by another lab's services.
// TestNoPinnedNamespaces checks the outcome.
func ensureNetnsDir() error {
	netnsDirOnce.Lock()
	defer netnsDirOnce.Unlock()
	if netnsDirOnce.done {
		return nil
	}
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", netnsDir, err)
	}
	err := unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) { // not a mount point yet
		if err := unix.Mount(netnsDir, netnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind mount %s onto itself: %w", netnsDir, err)
		}
		err = unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("make %s a shared mount: %w", netnsDir, err)
	}
	netnsDirOnce.done = true
	return nil
}

// onNewThread runs fn on a fresh goroutine locked to its OS thread and
// never unlocks it: fn may leave the thread in another namespace, and Go
// discards a thread whose goroutine exits while locked. fn must not start
// goroutines that rely on the namespace (they run on other threads).
func onNewThread(fn func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		ch <- fn()
	}()
	return <-ch
}

// createNamespace creates the named network namespace name, like
// `ip netns add`: /run/netns/<name> is a bind mount of the new namespace.
// It fails if the name exists.
func createNamespace(name string) error {
	path := filepath.Join(netnsDir, name)
	return onNewThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("create namespace %s: unshare: %w", name, err)
		}
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
		if err != nil {
			return fmt.Errorf("create namespace %s: %w", name, err)
		}
		f.Close()
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(self, path, "none", unix.MS_BIND, ""); err != nil {
			os.Remove(path)
			return fmt.Errorf("create namespace %s: bind mount %s: %w", name, self, err)
		}
		return nil
	})
}

// deleteNamespace removes the named namespace like `ip netns delete`. The
// kernel frees it, and deletes its veth ends, once no process is left in
// it. A missing namespace is not an error.
func deleteNamespace(name string) error {
	path := filepath.Join(netnsDir, name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil &&
		!errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("delete namespace %s: unmount: %w", name, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete namespace %s: %w", name, err)
	}
	return nil
}

// openNamespace opens the named namespace; the caller closes the fd.
func openNamespace(name string) (int, error) {
	fd, err := unix.Open(filepath.Join(netnsDir, name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open namespace %s: %w", name, err)
	}
	return fd, nil
}

// Do runs fn on a new OS thread that has entered the network namespace ns
// (a name in /run/netns) and returns fn's error. The thread is never
// unlocked, so it is discarded afterwards. Sockets that fn opens belong to
// ns; goroutines that fn starts do not run in ns.
func Do(ns string, fn func() error) error {
	fd, err := openNamespace(ns)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return onNewThread(func() error {
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("enter namespace %s: %w", ns, err)
		}
		return fn()
	})
}

// sysctl sets one sysctl ("net.ipv6.conf.all.accept_dad") from the calling
// thread, which must be inside the namespace: /proc/sys/net shows the
// namespace of the thread that opens it.
func sysctl(key, value string) error {
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

// optionalSysctl is sysctl, but a sysctl that does not exist is skipped.
func optionalSysctl(key, value string) error {
	err := sysctl(key, value)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// namespacesWithPrefix lists the named namespaces whose names start with
// prefix.
func namespacesWithPrefix(prefix string) ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// namespaceExists reports whether /run/netns/<name> exists.
func namespaceExists(name string) bool {
	_, err := os.Stat(filepath.Join(netnsDir, name))
	return err == nil
}

// pidsInNamespaces maps each named namespace in names that exists to the
// processes whose main thread is in it (what `ip netns pids` prints). The
// calling process is never listed.
func pidsInNamespaces(names []string) (map[string][]int, error) {
	byIno := map[uint64]string{}
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(netnsDir, n), &st); err != nil {
			continue
		}
		byIno[st.Ino] = n
	}
	out := map[string][]int{}
	if len(byIno) == 0 {
		return out, nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		link, err := os.Readlink("/proc/" + e.Name() + "/ns/net")
		if err != nil {
			continue // exited, or a kernel thread
		}
		// link is "net:[4026532177]"
		ino, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "net:["), "]"), 10, 64)
		if err != nil {
			continue
		}
		if n, ok := byIno[ino]; ok {
			out[n] = append(out[n], pid)
		}
	}
	return out, nil
}

// killInNamespaces kills every process left in the given namespaces:
// SIGTERM, then SIGKILL to whatever is still there after stopGrace.
func killInNamespaces(names []string) error {
	pids, err := pidsInNamespaces(names)
	if err != nil {
		return fmt.Errorf("find processes in lab namespaces: %w", err)
	}
	if len(pids) == 0 {
		return nil
	}
	var procs []*Process
	for ns, ps := range pids {
		for _, pid := range ps {
			p := &Process{PID: pid, NS: ns, Name: "leftover"}
			p.StartTime, _ = procStartTime(pid)
			procs = append(procs, p)
		}
	}
	return stopAll(procs, stopGrace)
}

// sendSignal sends sig to pid, treating an exited process as success.
func sendSignal(pid int, sig syscall.Signal) error {
	err := unix.Kill(pid, sig)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	return err
}

// UnnamedNetns creates a network namespace with no name and no bind
// mount: it lives as long as the returned handle is open. Benchmarks and
// tests use it for state nothing else may see (an nft table). The thread
// that created it is discarded, so the calling process stays where it was.
func UnnamedNetns() (netns.NsHandle, error) {
	var h netns.NsHandle
	err := onNewThread(func() error {
		var err error
		h, err = netns.New()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("create network namespace: %w", err)
	}
	return h, nil
}
