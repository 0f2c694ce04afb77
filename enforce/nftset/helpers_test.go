package nftset

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

// skipOrFail skips the test for a stated reason, except under CI, where
// the machine is root with nft installed and a skip would hide a failure.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI: "+format, args...)
	}
	t.Skipf("skipping: "+format, args...)
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root for network namespaces and nftables (euid %d)", os.Geteuid())
	}
}

func needNft(t *testing.T) {
	t.Helper()
	needRoot(t)
	if _, err := exec.LookPath("nft"); err != nil {
		skipOrFail(t, "nft binary not found (apt-get install nftables): %v", err)
	}
}

// testID is "wlt" plus six random hex digits, the prefix of every
// namespace a test creates.
func testID(t *testing.T) string {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "wlt" + hex.EncodeToString(b[:])
}

// newNetns creates the named network namespace name (visible to `ip netns`
// while the test runs) and deletes it in t.Cleanup.
func newNetns(t *testing.T, name string) netns.NsHandle {
	t.Helper()
	type result struct {
		h   netns.NsHandle
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread is discarded
		h, err := netns.NewNamed(name)
		ch <- result{h, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("create namespace %s: %v", name, r.err)
	}
	t.Cleanup(func() {
		r.h.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	return r.h
}

// inNetns runs fn on a new OS thread inside ns; the thread is discarded
// afterwards. Processes fn starts inherit the namespace.
func inNetns(ns netns.NsHandle, fn func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			ch <- fmt.Errorf("enter namespace: %w", err)
			return
		}
		ch <- fn()
	}()
	return <-ch
}

// nft runs the nft binary inside ns.
func nft(t *testing.T, ns netns.NsHandle, args ...string) string {
	t.Helper()
	var out []byte
	err := inNetns(ns, func() error {
		var err error
		out, err = exec.Command("nft", args...).CombinedOutput()
		return err
	})
	if err != nil {
		t.Fatalf("nft %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ruleset is `nft list ruleset` in ns without the elements' timeouts and
// time left ("timeout 59m59s584ms expires 59m59s536ms"), which depend on
// when they were added and listed.
func ruleset(t *testing.T, ns netns.NsHandle) string {
	t.Helper()
	return expiresRE.ReplaceAllString(nft(t, ns, "list", "ruleset"), "")
}

var expiresRE = regexp.MustCompile(` (timeout|expires) [0-9dhms]+`)

// compareGolden compares got with testdata/name; WARDLINE_UPDATE_GOLDEN=1
// rewrites the file instead.
func compareGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if os.Getenv("WARDLINE_UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s missing: run with WARDLINE_UPDATE_GOLDEN=1 to record it", path)
	}
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("ruleset differs from %s:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// sortedBlocks normalises a ruleset for comparisons that do not care in
// which order a table's sets and chains were created (a repaired set is
// listed after the others): it sorts the set and chain blocks.
func sortedBlocks(rs string) string {
	var (
		out, blocks []string
		cur         []string
	)
	for _, line := range strings.Split(rs, "\n") {
		switch {
		case cur != nil:
			cur = append(cur, line)
			if line == "\t}" {
				blocks = append(blocks, strings.Join(cur, "\n"))
				cur = nil
			}
		case strings.HasPrefix(line, "\tset ") || strings.HasPrefix(line, "\tchain "):
			cur = []string{line}
		case line == "":
		default:
			out = append(out, line)
		}
	}
	sort.Strings(blocks)
	return strings.Join(out, "\n") + "\n" + strings.Join(blocks, "\n")
}
