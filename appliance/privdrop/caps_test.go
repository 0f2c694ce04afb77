package privdrop

import (
	"strings"
	"testing"
)

func TestCapString(t *testing.T) {
	for _, tt := range []struct {
		c    Cap
		want string
	}{
		{CAP_CHOWN, "cap_chown"},
		{CAP_SETPCAP, "cap_setpcap"},
		{CAP_NET_ADMIN, "cap_net_admin"},
		{CAP_BPF, "cap_bpf"},
		{CAP_CHECKPOINT_RESTORE, "cap_checkpoint_restore"},
		{41, "cap_41"},
		{-1, "cap_-1"},
	} {
		if got := tt.c.String(); got != tt.want {
			t.Errorf("Cap(%d).String() = %q, want %q", int(tt.c), got, tt.want)
		}
	}
	// Every known number has a name, and the table holds no holes.
	for i, name := range capNames {
		if name == "" || !strings.HasPrefix(name, "cap_") {
			t.Errorf("capNames[%d] = %q", i, name)
		}
	}
}

func TestParseCap(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Cap
	}{
		{"net_admin", CAP_NET_ADMIN},
		{"cap_net_admin", CAP_NET_ADMIN},
		{"CAP_NET_ADMIN", CAP_NET_ADMIN},
		{"Net_Admin", CAP_NET_ADMIN},
		{" bpf ", CAP_BPF},
		{"chown", CAP_CHOWN},
		{"cap_checkpoint_restore", CAP_CHECKPOINT_RESTORE},
	} {
		got, err := ParseCap(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseCap(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	// Every name parses back to its number.
	for i, name := range capNames {
		if got, err := ParseCap(name); err != nil || got != Cap(i) {
			t.Errorf("ParseCap(%q) = %v, %v; want %d", name, got, err, i)
		}
	}
	for _, tt := range []struct {
		in, wantErr string
	}{
		{"", `parse capability "": empty name`},
		{"  ", `parse capability "  ": empty name`},
		{"net_admn", `parse capability "net_admn": unknown name`},
		{"cap_", `parse capability "cap_": unknown name`},
		{"cap_cap_bpf", `parse capability "cap_cap_bpf": unknown name`},
		{"12", `parse capability "12": unknown name`},
		{"cap_41", `parse capability "cap_41": unknown name`},
		{"net_admin,bpf", `parse capability "net_admin,bpf": unknown name`},
	} {
		got, err := ParseCap(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseCap(%q) = %v, %v; want an error containing %q", tt.in, got, err, tt.wantErr)
		}
	}
}

func TestSet(t *testing.T) {
	for _, tt := range []struct {
		name string
		s    Set
		want string
	}{
		{"empty", 0, ""},
		{"one", NewSet(CAP_NET_ADMIN), "cap_net_admin"},
		{"number order", NewSet(CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON, CAP_NET_BIND_SERVICE), "cap_net_bind_service,cap_net_admin,cap_perfmon,cap_bpf"},
		{"unknown bits", NewSet(CAP_CHOWN) | 1<<41 | 1<<63, "cap_chown,cap_41,cap_63"},
		{"all of a 6.x kernel", 0x1ffffffffff, strings.Join(capNames[:], ",")},
		{"out of range ignored", NewSet(-1, 64, 100, CAP_KILL), "cap_kill"},
	} {
		if got := tt.s.String(); got != tt.want {
			t.Errorf("%s: Set(%#x).String() = %q, want %q", tt.name, uint64(tt.s), got, tt.want)
		}
	}

	s := NewSet(CAP_NET_ADMIN, CAP_BPF)
	for _, tt := range []struct {
		c    Cap
		want bool
	}{
		{CAP_NET_ADMIN, true},
		{CAP_BPF, true},
		{CAP_SYS_ADMIN, false},
		{CAP_CHOWN, false},
		{-1, false},
		{64, false},
	} {
		if got := s.Has(tt.c); got != tt.want {
			t.Errorf("[%v].Has(%v) = %v, want %v", s, tt.c, got, tt.want)
		}
	}
	if got, want := uint64(s), uint64(1<<12|1<<39); got != want {
		t.Errorf("NewSet(net_admin, bpf) = %#x, want %#x (bit i is capability i)", got, want)
	}
}
