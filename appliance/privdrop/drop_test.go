package privdrop

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// demoReport mirrors dropdemo's Report (a main package cannot be
// imported).
type demoReport struct {
	DropTID    int
	DropErrors []string
	ErrCgo     bool
	Threads    map[int]Status
	UnshareTID int
	Unshare    string
}

// The capabilities wardlined keeps (nft and netlink, BPF maps and ring
// buffers, the management port).
var wardlinedKeeps = NewSet(CAP_NET_ADMIN, CAP_BPF, CAP_PERFMON, CAP_NET_BIND_SERVICE)

// buildDemo builds internal/dropdemo into a temporary directory. The test
// binary itself cannot call Drop: it is usually built with cgo, where Drop
// returns ErrCgo, and a Drop that worked would strip the other tests.
func buildDemo(t *testing.T, cgo bool) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "dropdemo")
	cmd := exec.Command("go", "build", "-o", bin, "./internal/dropdemo")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if cgo {
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
	}
	return bin
}

func runDemo(t *testing.T, bin string, args ...string) demoReport {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("dropdemo %v: %v\n%s", args, err, stderr.Bytes())
	}
	var r demoReport
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("dropdemo %v: decode its report: %v\n%s", args, err, stdout.Bytes())
	}
	// 8 locked before the drops, 4 after, plus the runtime's own.
	if len(r.Threads) < 12 {
		t.Errorf("dropdemo %v: %d threads, want at least 12", args, len(r.Threads))
	}
	return r
}

// needPrivilege skips the test unless this process can do what the root
// tests check: drop from the bounding set (CAP_SETPCAP), unshare
// (CAP_SYS_ADMIN) and hold what wardlined keeps. Under CI it fails
// instead, so the tests cannot pass by skipping.
func needPrivilege(t *testing.T) {
	t.Helper()
	skip := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must not skip the root tests: "+format, args...)
		}
		t.Skipf("skipping: "+format, args...)
	}
	if os.Geteuid() != 0 {
		skip("dropping capabilities needs root (euid %d)", os.Geteuid())
	}
	cur, err := Current()
	if err != nil {
		t.Fatal(err)
	}
	need := wardlinedKeeps | NewSet(CAP_SETPCAP, CAP_SYS_ADMIN)
	if missing := need &^ cur.Eff; missing != 0 {
		skip("root here lacks [%v] (effective set [%v])", missing, cur.Eff)
	}
	if cur.NoNewPrivs {
		skip("no_new_privs is already set, so the test could not tell Drop set it")
	}
}

// TestDrop runs dropdemo as root and reads every thread back: threads
// locked before the drop (which Drop never runs on), and threads made
// after it.
func TestDrop(t *testing.T) {
	needPrivilege(t)
	bin := buildDemo(t, false)

	// Without Drop, the unshare below works: so its EPERM after Drop
	// comes from the drop.
	t.Run("before", func(t *testing.T) {
		r := runDemo(t, bin)
		if r.Unshare != "" {
			t.Errorf("unshare(CLONE_NEWUTS) without Drop: %s, want success", r.Unshare)
		}
		for tid, st := range r.Threads {
			if !st.Eff.Has(CAP_SYS_ADMIN) || st.NoNewPrivs {
				t.Errorf("thread %d without Drop: %+v, want cap_sys_admin and no no_new_privs", tid, st)
			}
		}
	})

	for _, tt := range []struct {
		name string
		keep string
		want Set
	}{
		{"wardlined", "net_admin,bpf,perfmon,net_bind_service", wardlinedKeeps},
		{"nothing", "", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := runDemo(t, bin, "-drop", "-keep", tt.keep)
			if len(r.DropErrors) != 2 || r.DropErrors[0] != "" || r.DropErrors[1] != "" {
				t.Fatalf("Drop(%v) twice: errors %q, want two successes", tt.want, r.DropErrors)
			}
			for tid, st := range r.Threads {
				if st.Eff != tt.want || st.Prm != tt.want || st.Bnd != tt.want {
					t.Errorf("thread %d: eff [%v], prm [%v], bnd [%v]; want [%v] in all three", tid, st.Eff, st.Prm, st.Bnd, tt.want)
				}
				if st.Inh != 0 || st.Amb != 0 || !st.NoNewPrivs {
					t.Errorf("thread %d: inh [%v], amb [%v], no_new_privs %v; want empty, empty, true", tid, st.Inh, st.Amb, st.NoNewPrivs)
				}
			}
			if r.UnshareTID == r.DropTID {
				t.Errorf("the unshare ran on thread %d, where Drop ran: that proves nothing about the other threads", r.DropTID)
			}
			if r.Unshare != "EPERM" {
				t.Errorf("unshare(CLONE_NEWUTS) on thread %d after Drop on thread %d: %q, want EPERM", r.UnshareTID, r.DropTID, r.Unshare)
			}
		})
	}

	// Once cap_setpcap is gone, the bounding set cannot shrink further, and
	// the error says which step failed and why.
	t.Run("smaller second keep", func(t *testing.T) {
		r := runDemo(t, bin, "-drop", "-keep", "net_admin,bpf", "-then", "net_admin")
		if len(r.DropErrors) != 2 || r.DropErrors[0] != "" {
			t.Fatalf("first Drop: errors %q, want success", r.DropErrors)
		}
		want := "privdrop: drop cap_bpf from the bounding set on every thread: operation not permitted (needs cap_setpcap, which the process does not have)"
		if r.DropErrors[1] != want {
			t.Errorf("second Drop: %q, want %q", r.DropErrors[1], want)
		}
	})
}

// TestDropCgo: in a cgo binary Drop refuses with ErrCgo and changes
// nothing. It needs no root, only a C compiler.
func TestDropCgo(t *testing.T) {
	cc, err := exec.Command("go", "env", "CC").Output()
	if err != nil {
		t.Fatalf("go env CC: %v", err)
	}
	if _, err := exec.LookPath(strings.TrimSpace(string(cc))); err != nil {
		t.Skipf("skipping: no C compiler for a cgo build (%v)", err)
	}
	bin := buildDemo(t, true)
	before, err := Current()
	if err != nil {
		t.Fatal(err)
	}
	r := runDemo(t, bin, "-drop", "-keep", "net_admin")
	if !r.ErrCgo {
		t.Fatalf("Drop in a cgo binary: errors %q, want ErrCgo", r.DropErrors)
	}
	if !strings.Contains(r.DropErrors[0], "CGO_ENABLED=0") {
		t.Errorf("Drop in a cgo binary: %q, want a hint to build with CGO_ENABLED=0", r.DropErrors[0])
	}
	// execve keeps the bounding set and no_new_privs, so those must be
	// the test's own.
	for tid, st := range r.Threads {
		if st.Bnd != before.Bnd || st.NoNewPrivs != before.NoNewPrivs {
			t.Errorf("thread %d after a refused Drop: bnd [%v], no_new_privs %v; want them unchanged: [%v], %v", tid, st.Bnd, st.NoNewPrivs, before.Bnd, before.NoNewPrivs)
		}
	}
}
