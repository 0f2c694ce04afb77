package privdrop

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A /proc/self/status of a root shell on a 6.18 kernel without
// cap_sys_resource (bit 24), trimmed around the lines that matter.
const rootStatus = `Name:	cat
Umask:	0022
State:	R (running)
Tgid:	2618
Uid:	0	0	0	0
Groups:	 
Threads:	1
SigCgt:	0000000000000000
CapInh:	0000000000000000
CapPrm:	000001fffeffffff
CapEff:	000001fffeffffff
CapBnd:	000001fffeffffff
CapAmb:	0000000000000000
NoNewPrivs:	0
Seccomp:	0
Mems_allowed:	00000000,00000001
`

// The same after Drop(net_bind_service,net_admin,perfmon,bpf).
const droppedStatus = `Name:	wardlined
CapInh:	0000000000000000
CapPrm:	000000c000001400
CapEff:	000000c000001400
CapBnd:	000000c000001400
CapAmb:	0000000000000000
NoNewPrivs:	1
`

func TestParseStatus(t *testing.T) {
	kept := NewSet(CAP_NET_BIND_SERVICE, CAP_NET_ADMIN, CAP_PERFMON, CAP_BPF)
	for _, tt := range []struct {
		name    string
		in      string
		want    Status
		wantErr string
	}{
		{name: "root", in: rootStatus, want: Status{Prm: 0x1fffeffffff, Eff: 0x1fffeffffff, Bnd: 0x1fffeffffff}},
		{name: "dropped", in: droppedStatus, want: Status{Prm: kept, Eff: kept, Bnd: kept, NoNewPrivs: true}},
		{name: "no trailing newline", in: strings.TrimSuffix(droppedStatus, "\n"), want: Status{Prm: kept, Eff: kept, Bnd: kept, NoNewPrivs: true}},
		{name: "spaces instead of a tab", in: strings.ReplaceAll(droppedStatus, ":\t", ":  "), want: Status{Prm: kept, Eff: kept, Bnd: kept, NoNewPrivs: true}},
		{name: "short and upper-case hex", in: strings.Replace(droppedStatus, "CapAmb:\t0000000000000000", "CapAmb:\tC000001400", 1), want: Status{Prm: kept, Eff: kept, Bnd: kept, Amb: kept, NoNewPrivs: true}},
		{name: "all 64 bits", in: strings.Replace(droppedStatus, "CapBnd:\t000000c000001400", "CapBnd:\tffffffffffffffff", 1), want: Status{Prm: kept, Eff: kept, Bnd: ^Set(0), NoNewPrivs: true}},
		{name: "unrelated line without a colon", in: "garbage\n" + droppedStatus, want: Status{Prm: kept, Eff: kept, Bnd: kept, NoNewPrivs: true}},

		{name: "empty", in: "", wantErr: "no CapInh line"},
		{name: "not a status file", in: "\x00\x01\xff binary\n::::\n", wantErr: "no CapInh line"},
		{name: "missing CapAmb (Linux < 4.3)", in: strings.Replace(rootStatus, "CapAmb:\t0000000000000000\n", "", 1), wantErr: "no CapAmb line"},
		{name: "missing NoNewPrivs (Linux < 4.10)", in: strings.Replace(rootStatus, "NoNewPrivs:\t0\n", "", 1), wantErr: "no NoNewPrivs line"},
		{name: "not hex", in: strings.Replace(droppedStatus, "000000c000001400", "00000zc000001400", 1), wantErr: `line 3: CapPrm "00000zc000001400" is not a 64-bit hex mask`},
		{name: "empty value", in: strings.Replace(droppedStatus, "CapEff:\t000000c000001400", "CapEff:", 1), wantErr: `line 4: CapEff "" is not a 64-bit hex mask`},
		{name: "more than 64 bits", in: strings.Replace(droppedStatus, "CapEff:\t000000c000001400", "CapEff:\t1ffffffffffffffff", 1), wantErr: `line 4: CapEff "1ffffffffffffffff" is not a 64-bit hex mask`},
		{name: "0x prefix", in: strings.Replace(droppedStatus, "CapEff:\t000000c000001400", "CapEff:\t0xc000001400", 1), wantErr: `line 4: CapEff "0xc000001400" is not a 64-bit hex mask`},
		{name: "negative", in: strings.Replace(droppedStatus, "CapEff:\t000000c000001400", "CapEff:\t-1", 1), wantErr: `line 4: CapEff "-1" is not a 64-bit hex mask`},
		{name: "two values", in: strings.Replace(droppedStatus, "CapEff:\t000000c000001400", "CapEff:\t00 00", 1), wantErr: `line 4: CapEff "00 00" is not a 64-bit hex mask`},
		{name: "bad NoNewPrivs", in: strings.Replace(droppedStatus, "NoNewPrivs:\t1", "NoNewPrivs:\tyes", 1), wantErr: `line 7: NoNewPrivs "yes" is not 0 or 1`},
		{name: "duplicate", in: droppedStatus + "CapEff:\t0000000000000000\n", wantErr: "line 8: CapEff appears twice"},
		{name: "line too long", in: "Name:\t" + strings.Repeat("x", 100_000) + "\n" + droppedStatus, wantErr: "token too long"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatus(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseStatus = %+v, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("parseStatus =\n%+v, want\n%+v", got, tt.want)
			}
		})
	}
}

func TestAllThreadsDir(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "status"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("100", rootStatus)
	write("101", droppedStatus)
	write("not-a-tid", "ignored")
	if err := os.Mkdir(filepath.Join(dir, "102"), 0o755); err != nil { // exited: no status
		t.Fatal(err)
	}

	got, err := allThreads(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[100].Eff != 0x1fffeffffff || !got[101].NoNewPrivs {
		t.Errorf("allThreads = %+v, want threads 100 (root) and 101 (dropped)", got)
	}

	write("103", "CapEff:\tnope\n")
	if _, err := allThreads(dir); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "103", "status")) {
		t.Errorf("allThreads with a malformed thread: %v, want an error naming its file", err)
	}
	if _, err := allThreads(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "list threads") {
		t.Errorf("allThreads of a missing dir: %v", err)
	}
	if _, err := allThreads(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no thread status") {
		t.Errorf("allThreads of an empty dir: %v", err)
	}
}

// TestCurrent reads this process, which needs no privilege.
func TestCurrent(t *testing.T) {
	cur, err := Current()
	if err != nil {
		t.Fatal(err)
	}
	all, err := AllThreads()
	if err != nil {
		t.Fatal(err)
	}
	main, ok := all[os.Getpid()]
	if !ok {
		t.Fatalf("AllThreads has no entry for the main thread %d: %v", os.Getpid(), all)
	}
	if main != cur {
		t.Errorf("Current() = %+v, but the main thread in AllThreads is %+v", cur, main)
	}
	t.Logf("%d threads; main thread: eff [%v], bnd [%v]", len(all), cur.Eff, cur.Bnd)
}
