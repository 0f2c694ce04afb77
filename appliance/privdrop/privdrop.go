// Package privdrop lets wardlined give up the capabilities it no longer
// needs once setup is done. Under gokrazy every service runs as root and
// there are no per-service users to switch to, so the daemon cannot shed
// privilege by changing uid; instead, after it has built the bridge,
// loaded its BPF programs and opened its sockets, it keeps only what its
// runtime needs (such as CAP_NET_ADMIN and CAP_BPF) and removes every
// other capability, from the bounding set too, so that neither a bug in
// the daemon nor anything it executes can get them back.
//
// Linux keeps capabilities per thread, and a Go program runs on threads
// it does not choose, so dropping them on the calling thread alone would
// leave goroutines running with full root on the others. Drop applies
// every step to all threads with syscall.AllThreadsSyscall, which only
// works in binaries built with CGO_ENABLED=0 (see ErrCgo).
package privdrop

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrCgo is what Drop returns in a binary that links cgo: the runtime does
// not know the threads C code starts, so syscall.AllThreadsSyscall refuses
// to run (ENOTSUP). Drop has then changed nothing.
var ErrCgo = errors.New("the binary is built with cgo, and syscall.AllThreadsSyscall cannot reach threads started by C code; build it with CGO_ENABLED=0 (the appliance image is)")

var (
	dropMu sync.Mutex // one Drop at a time: capHdr and capData are shared

	// capset(2) arguments. AllThreadsSyscall hands them to every thread as
	// plain uintptrs and, unlike syscall.Syscall, does not pin what they
	// point to, so they live in package variables, which never move.
	capHdr  unix.CapUserHeader
	capData [2]unix.CapUserData
)

// Drop reduces the capabilities of every thread of the process to keep,
// in this order:
//
//  1. set no_new_privs, so that no later execve gains privilege through
//     setuid bits or file capabilities;
//  2. drop every capability not in keep from the bounding set, so that
//     executing a program as root no longer restores it (this needs
//     CAP_SETPCAP, hence before step 4);
//  3. clear the ambient set;
//  4. capset(2): effective = permitted = keep & the current permitted set,
//     inheritable = empty.
//
// A capability in keep that the process does not have stays absent, and
// Drop does not fail for it: a caller that needs one should check
// Current. Drop then reads every thread's status back and fails if one of
// them does not hold exactly that state. It is idempotent: a second call
// with the same keep succeeds without CAP_SETPCAP.
//
// In a binary built with cgo Drop returns ErrCgo and changes nothing. If
// threads disagree on the result of a step (which a Go program that only
// changes capabilities through Drop cannot cause), the runtime aborts the
// process rather than leave it half-dropped.
func Drop(keep Set) error {
	dropMu.Lock()
	defer dropMu.Unlock()
	// The reads below (PR_CAPBSET_READ, capget) are per thread; stay on
	// one. AllThreadsSyscall reaches the others regardless.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	last, err := lastCap()
	if err != nil {
		return err
	}
	prm, err := permitted()
	if err != nil {
		return err
	}
	want := keep & prm

	if err := allThreadsPrctl("set no_new_privs", unix.PR_SET_NO_NEW_PRIVS, 1); err != nil {
		return err
	}

	for c := Cap(0); c <= last; c++ {
		if keep.Has(c) {
			continue
		}
		in, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0)
		if errors.Is(err, unix.EINVAL) {
			continue // a capability this kernel does not know
		}
		if err != nil {
			return fmt.Errorf("privdrop: read %v from the bounding set: %w", c, err)
		}
		if in == 0 {
			continue // already gone, which needs no CAP_SETPCAP
		}
		err = allThreadsPrctl(fmt.Sprintf("drop %v from the bounding set", c), unix.PR_CAPBSET_DROP, uintptr(c))
		if errors.Is(err, unix.EINVAL) {
			continue
		}
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("%w (needs %v, which the process does not have)", err, CAP_SETPCAP)
		}
		if err != nil {
			return err
		}
	}

	if err := allThreadsPrctl("clear the ambient set", unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL); err != nil {
		return err
	}

	capHdr = unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	capData = [2]unix.CapUserData{
		{Effective: uint32(want), Permitted: uint32(want)},
		{Effective: uint32(want >> 32), Permitted: uint32(want >> 32)},
	}
	_, _, errno := syscall.AllThreadsSyscall(unix.SYS_CAPSET,
		uintptr(unsafe.Pointer(&capHdr)), uintptr(unsafe.Pointer(&capData[0])), 0)
	if err := threadsErr("capset effective=permitted="+setName(want)+" inheritable=none", errno); err != nil {
		return err
	}

	return verify(keep, want)
}

// allThreadsPrctl runs prctl(option, arg2, 0, 0, 0) on every thread; the
// unused arguments must be zero for the options Drop uses.
func allThreadsPrctl(op string, option, arg2 uintptr) error {
	_, _, errno := syscall.AllThreadsSyscall6(unix.SYS_PRCTL, option, arg2, 0, 0, 0, 0)
	return threadsErr(op, errno)
}

func threadsErr(op string, errno syscall.Errno) error {
	switch errno {
	case 0:
		return nil
	case syscall.ENOTSUP:
		return fmt.Errorf("privdrop: %s on every thread: %w", op, ErrCgo)
	}
	return fmt.Errorf("privdrop: %s on every thread: %w", op, errno)
}

// verify reads every thread's status back after a Drop.
func verify(keep, want Set) error {
	threads, err := AllThreads()
	if err != nil {
		return fmt.Errorf("privdrop: verify: %w", err)
	}
	for tid, st := range threads {
		var bad []string
		if st.Eff != want {
			bad = append(bad, fmt.Sprintf("CapEff is [%v], want [%v]", st.Eff, want))
		}
		if st.Prm != want {
			bad = append(bad, fmt.Sprintf("CapPrm is [%v], want [%v]", st.Prm, want))
		}
		if st.Inh != 0 || st.Amb != 0 {
			bad = append(bad, fmt.Sprintf("CapInh is [%v] and CapAmb [%v], want both empty", st.Inh, st.Amb))
		}
		if extra := st.Bnd &^ keep; extra != 0 {
			bad = append(bad, fmt.Sprintf("CapBnd still holds [%v]", extra))
		}
		if !st.NoNewPrivs {
			bad = append(bad, "NoNewPrivs is 0")
		}
		if len(bad) > 0 {
			return fmt.Errorf("privdrop: verify thread %d: %s", tid, strings.Join(bad, "; "))
		}
	}
	return nil
}

// lastCap returns the highest capability the running kernel knows.
func lastCap() (Cap, error) {
	const path = "/proc/sys/kernel/cap_last_cap"
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("privdrop: read %s: %w", path, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("privdrop: read %s: %q is not a capability number", path, b)
	}
	return Cap(n), nil
}

// permitted returns the calling thread's permitted set.
func permitted() (Set, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, fmt.Errorf("privdrop: capget: %w", err)
	}
	return Set(data[0].Permitted) | Set(data[1].Permitted)<<32, nil
}

func setName(s Set) string {
	if s == 0 {
		return "none"
	}
	return s.String()
}
