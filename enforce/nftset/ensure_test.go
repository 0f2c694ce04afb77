package nftset

import (
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/wardline/wardline/enforce"
)

// openIn opens a backend on the table "wardline" in ns with Create.
func openIn(t *testing.T, ns netns.NsHandle) *Backend {
	t.Helper()
	b, err := Open(Config{NetNSFd: int(ns), Create: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return b
}

func TestEnsureGoldenAndIdempotent(t *testing.T) {
	needNft(t)
	ns := newNetns(t, testID(t)+"-box")
	b := openIn(t, ns)
	first := ruleset(t, ns)
	compareGolden(t, "ruleset.golden", first)

	changes, err := b.Ensure()
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 0 {
		t.Errorf("second Ensure changed %q, want nothing", changes)
	}
	if again := ruleset(t, ns); again != first {
		t.Errorf("ruleset changed by the second Ensure:\n%s\nwas:\n%s", again, first)
	}

	// A second Open without Create finds the table; on another table name
	// it reports ErrNoTable.
	b2, err := Open(Config{NetNSFd: int(ns)})
	if err != nil {
		t.Errorf("Open without Create on an existing table: %v", err)
	} else {
		b2.Close()
	}
	if _, err := Open(Config{NetNSFd: int(ns), Table: "wltnone"}); !errors.Is(err, ErrNoTable) {
		t.Errorf("Open without Create on a missing table: %v, want ErrNoTable", err)
	}
}

// TestEnsureRepairs edits the table the way an operator with nft might and
// checks that Ensure restores the golden ruleset, reports what it did,
// keeps the elements of intact sets, and is quiet afterwards.
func TestEnsureRepairs(t *testing.T) {
	needNft(t)
	ns := newNetns(t, testID(t)+"-box")
	b := openIn(t, ns)
	golden := ruleset(t, ns)
	keep := enforce.Element{Prefix: netip.MustParsePrefix("198.18.7.0/24"), Dir: enforce.Src, Expires: time.Now().Add(time.Hour)}

	for _, tc := range []struct {
		name   string
		edit   []string // nft -f input
		change string   // a substring of the reported change
		sorted bool     // compare regardless of block order
		lost   bool     // the edit removes the element
	}{
		{name: "deleted rule", edit: []string{"delete rule bridge wardline forward handle HANDLE5"}, change: "rewrote the rules"},
		{name: "extra rule", edit: []string{"add rule bridge wardline forward ip saddr 198.18.9.9 accept"}, change: "rewrote the rules"},
		{name: "inserted rule", edit: []string{"insert rule bridge wardline forward counter drop"}, change: "rewrote the rules"},
		{name: "flushed chain", edit: []string{"flush chain bridge wardline forward"}, change: "rewrote the rules"},
		{name: "policy drop", edit: []string{"add chain bridge wardline forward { type filter hook forward priority -200; policy drop; }"}, change: "recreated chain forward"},
		{name: "deleted chain", edit: []string{"delete chain bridge wardline forward"}, change: "created missing chain", sorted: true},
		{name: "priority", edit: []string{"delete chain bridge wardline forward", "add chain bridge wardline forward { type filter hook forward priority 0; policy accept; }"}, change: "recreated chain forward", sorted: true},
		{name: "deleted set", edit: []string{"flush chain bridge wardline forward", "delete set bridge wardline block_dst6"}, change: "created missing set block_dst6", sorted: true},
		{name: "set without interval", edit: []string{"flush chain bridge wardline forward", "delete set bridge wardline block_src4", "add set bridge wardline block_src4 { type ipv4_addr; flags timeout; }"}, change: "recreated set block_src4", sorted: true, lost: true},
		{name: "extra set and chain", edit: []string{"add set bridge wardline x { type ipv4_addr; }", "add chain bridge wardline y { type filter hook forward priority 10; }", "add rule bridge wardline y ip saddr @x drop"}, change: "not ours"},
		{name: "dormant", edit: []string{"add table bridge wardline { flags dormant; }"}, change: "dormant"},
		{name: "deleted table", edit: []string{"delete table bridge wardline"}, change: "created table", lost: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Start from a fresh table holding one element.
			if err := b.Teardown(); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Ensure(); err != nil {
				t.Fatal(err)
			}
			if err := b.Apply([]enforce.Element{keep}, nil); err != nil {
				t.Fatal(err)
			}
			withElement := ruleset(t, ns)
			script := strings.Join(tc.edit, "\n")
			if strings.Contains(script, "HANDLE5") {
				script = strings.ReplaceAll(script, "HANDLE5", ruleHandle(t, ns, 5))
			}
			nftScript(t, ns, script)
			if ruleset(t, ns) == withElement {
				t.Fatalf("the edit changed nothing")
			}
			changes, err := b.Ensure()
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(strings.Join(changes, "; "), tc.change) {
				t.Errorf("Ensure reported %q, want %q", changes, tc.change)
			}
			got, want := ruleset(t, ns), withElement
			if tc.lost {
				want = golden
			}
			if tc.sorted {
				got, want = sortedBlocks(got), sortedBlocks(want)
			}
			if got != want {
				t.Errorf("after repair:\n%s\nwant:\n%s", got, want)
			}
			if again, err := b.Ensure(); err != nil || len(again) != 0 {
				t.Errorf("Ensure after the repair: %q, %v; want no change", again, err)
			}
		})
	}
}

// nftScript runs an nft script (one command a line) in ns as one
// transaction.
func nftScript(t *testing.T, ns netns.NsHandle, script string) {
	t.Helper()
	f := t.TempDir() + "/edit.nft"
	if err := os.WriteFile(f, []byte(script+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	nft(t, ns, "-f", f)
}

// ruleHandle is the handle of the n-th rule (1-based) of the forward chain.
func ruleHandle(t *testing.T, ns netns.NsHandle, n int) string {
	t.Helper()
	var rules []string
	for _, line := range strings.Split(nft(t, ns, "-a", "list", "chain", "bridge", "wardline", "forward"), "\n") {
		if i := strings.Index(line, "# handle "); i >= 0 && strings.HasPrefix(line, "\t\t") {
			rules = append(rules, strings.TrimSpace(line[i+len("# handle "):]))
		}
	}
	if len(rules) < n {
		t.Fatalf("chain has %d rules, want at least %d", len(rules), n)
	}
	return rules[n-1]
}

func TestTeardown(t *testing.T) {
	needNft(t)
	ns := newNetns(t, testID(t)+"-box")
	b := openIn(t, ns)
	if err := b.Teardown(); err != nil {
		t.Fatal(err)
	}
	if rs := ruleset(t, ns); strings.TrimSpace(rs) != "" {
		t.Errorf("ruleset after Teardown:\n%s", rs)
	}
	if err := b.Teardown(); err != nil {
		t.Errorf("second Teardown: %v, want nil (missing table)", err)
	}
	if _, err := b.Ensure(); err != nil {
		t.Errorf("Ensure after Teardown: %v", err)
	}
	if rs := ruleset(t, ns); !strings.Contains(rs, "table bridge wardline") {
		t.Errorf("Ensure after Teardown did not recreate the table:\n%s", rs)
	}
}

// TestOpenNamespaces opens the backend by namespace path and from a
// thread inside the namespace (no namespace in the Config), and checks
// that the table lands in that namespace only.
func TestOpenNamespaces(t *testing.T) {
	needNft(t)
	id := testID(t)
	ns := newNetns(t, id+"-box")
	table := id // unique, so that finding it elsewhere means a leak
	byPath, err := Open(Config{NetNS: "/run/netns/" + id + "-box", Table: table, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer byPath.Close()
	if !strings.Contains(ruleset(t, ns), "table bridge "+table) {
		t.Errorf("Open by path did not create the table in the namespace")
	}
	if err := byPath.Teardown(); err != nil {
		t.Fatal(err)
	}

	var current *Backend
	if err := inNetns(ns, func() error {
		var err error
		current, err = Open(Config{Table: table, Create: true})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer current.Close()
	// Used from this goroutine, on another thread, it still works in ns.
	if err := current.Apply([]enforce.Element{el("198.18.7.0/24", enforce.Src, time.Time{})}, nil); err != nil {
		t.Fatal(err)
	}
	if rs := ruleset(t, ns); !strings.Contains(rs, "table bridge "+table) || !strings.Contains(rs, "198.18.7.0/24") {
		t.Errorf("Open in the current namespace did not work there:\n%s", rs)
	}
	out, err := exec.Command("nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables here: %v\n%s", err, out)
	}
	if strings.Contains(string(out), table) {
		t.Errorf("table %s leaked into the test's own namespace", table)
	}
	if _, err := Open(Config{NetNS: "/run/netns/" + id + "-none"}); err == nil || !strings.Contains(err.Error(), id+"-none") {
		t.Errorf("Open with a missing namespace: %v, want an error naming it", err)
	}
}
