// Binary dropdemo is the subject of privdrop's root tests, which cannot
// call Drop in the test binary itself: that is usually built with cgo,
// where Drop returns ErrCgo, and a successful Drop would leave the rest of
// the tests without privilege. It starts threads and optionally calls
// Drop twice (with the same set, to show Drop is idempotent, or with a
// smaller one, to show that needs the CAP_SETPCAP the first call
// dropped). Then it reports, as JSON on stdout, every thread's
// capabilities and whether a thread locked before the drop can still
// unshare its UTS namespace, which needs CAP_SYS_ADMIN.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/wardline/wardline/appliance/privdrop"
	"golang.org/x/sys/unix"
)

// Report is what dropdemo prints; privdrop's tests decode it.
type Report struct {
	DropTID    int                     // the thread Drop was called on
	DropErrors []string                // one per Drop call, "" for success
	ErrCgo     bool                    // errors.Is(first Drop error, privdrop.ErrCgo)
	Threads    map[int]privdrop.Status // every thread, after the drops
	UnshareTID int                     // a thread locked before the drops
	Unshare    string                  // unshare(CLONE_NEWUTS) there: "" or the errno name
}

var (
	drop    = flag.Bool("drop", false, "call privdrop.Drop")
	keep    = flag.String("keep", "", "capabilities to keep, comma-separated (net_admin,bpf)")
	then    = flag.String("then", "", "if set, what the second Drop keeps (default: the same as -keep)")
	threads = flag.Int("threads", 8, "goroutines to lock to threads of their own before the drop")
)

func parseSet(list string) (privdrop.Set, error) {
	var s privdrop.Set
	if list == "" {
		return s, nil
	}
	for _, name := range strings.Split(list, ",") {
		c, err := privdrop.ParseCap(name)
		if err != nil {
			return 0, err
		}
		s |= privdrop.NewSet(c)
	}
	return s, nil
}

func logic() error {
	keeps := make([]privdrop.Set, 2)
	for i, list := range []string{*keep, *then} {
		if i == 1 && list == "" {
			list = *keep
		}
		s, err := parseSet(list)
		if err != nil {
			return err
		}
		keeps[i] = s
	}

	// Park goroutines on threads of their own so the process has threads
	// Drop must reach besides the one it runs on. The first one waits for
	// the unshare request and keeps its thread (in its own UTS namespace
	// once the unshare works) until the process exits.
	unshareReq := make(chan struct{})
	type result struct {
		tid int
		err error
	}
	unshareRes := make(chan result)
	tids := make(chan int)
	for i := 0; i < *threads; i++ {
		go func(first bool) {
			runtime.LockOSThread()
			tids <- unix.Gettid()
			if !first {
				select {} // hold the thread until exit
			}
			<-unshareReq
			unshareRes <- result{unix.Gettid(), unix.Unshare(unix.CLONE_NEWUTS)}
			select {}
		}(i == 0)
	}
	for i := 0; i < *threads; i++ {
		<-tids
	}

	runtime.LockOSThread()
	r := Report{DropTID: unix.Gettid()}
	if *drop {
		for i, keepSet := range keeps {
			err := privdrop.Drop(keepSet)
			if i == 0 {
				r.ErrCgo = err != nil && errors.Is(err, privdrop.ErrCgo)
			}
			if err != nil {
				r.DropErrors = append(r.DropErrors, err.Error())
			} else {
				r.DropErrors = append(r.DropErrors, "")
			}
		}
	}
	runtime.UnlockOSThread()

	// Threads created after the drop must inherit it: make a few more.
	for i := 0; i < 4; i++ {
		go func() {
			runtime.LockOSThread()
			tids <- unix.Gettid()
			select {}
		}()
		<-tids
	}

	close(unshareReq)
	select {
	case res := <-unshareRes:
		r.UnshareTID = res.tid
		var errno unix.Errno
		if errors.As(res.err, &errno) {
			r.Unshare = unix.ErrnoName(errno)
		} else if res.err != nil {
			r.Unshare = res.err.Error()
		}
	case <-time.After(10 * time.Second):
		return fmt.Errorf("the unshare thread did not answer")
	}

	all, err := privdrop.AllThreads()
	if err != nil {
		return err
	}
	r.Threads = all
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "\t")
	return enc.Encode(r)
}

func main() {
	flag.Parse()
	if err := logic(); err != nil {
		log.Fatal(err)
	}
}
