package privdrop

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// Cap is a Linux capability number, as in <linux/capability.h> and
// capabilities(7). The constants keep the kernel's names so they can be
// grepped against its documentation.
type Cap int

const (
	CAP_CHOWN              Cap = 0
	CAP_DAC_OVERRIDE       Cap = 1
	CAP_DAC_READ_SEARCH    Cap = 2
	CAP_FOWNER             Cap = 3
	CAP_FSETID             Cap = 4
	CAP_KILL               Cap = 5
	CAP_SETGID             Cap = 6
	CAP_SETUID             Cap = 7
	CAP_SETPCAP            Cap = 8
	CAP_LINUX_IMMUTABLE    Cap = 9
	CAP_NET_BIND_SERVICE   Cap = 10
	CAP_NET_BROADCAST      Cap = 11
	CAP_NET_ADMIN          Cap = 12
	CAP_NET_RAW            Cap = 13
	CAP_IPC_LOCK           Cap = 14
	CAP_IPC_OWNER          Cap = 15
	CAP_SYS_MODULE         Cap = 16
	CAP_SYS_RAWIO          Cap = 17
	CAP_SYS_CHROOT         Cap = 18
	CAP_SYS_PTRACE         Cap = 19
	CAP_SYS_PACCT          Cap = 20
	CAP_SYS_ADMIN          Cap = 21
	CAP_SYS_BOOT           Cap = 22
	CAP_SYS_NICE           Cap = 23
	CAP_SYS_RESOURCE       Cap = 24
	CAP_SYS_TIME           Cap = 25
	CAP_SYS_TTY_CONFIG     Cap = 26
	CAP_MKNOD              Cap = 27
	CAP_LEASE              Cap = 28
	CAP_AUDIT_WRITE        Cap = 29
	CAP_AUDIT_CONTROL      Cap = 30
	CAP_SETFCAP            Cap = 31
	CAP_MAC_OVERRIDE       Cap = 32
	CAP_MAC_ADMIN          Cap = 33
	CAP_SYSLOG             Cap = 34
	CAP_WAKE_ALARM         Cap = 35
	CAP_BLOCK_SUSPEND      Cap = 36
	CAP_AUDIT_READ         Cap = 37
	CAP_PERFMON            Cap = 38
	CAP_BPF                Cap = 39
	CAP_CHECKPOINT_RESTORE Cap = 40
)

// capNames is indexed by Cap; it ends at the last capability this package
// knows, which may be older than the running kernel (cap_last_cap).
var capNames = [...]string{
	CAP_CHOWN:              "cap_chown",
	CAP_DAC_OVERRIDE:       "cap_dac_override",
	CAP_DAC_READ_SEARCH:    "cap_dac_read_search",
	CAP_FOWNER:             "cap_fowner",
	CAP_FSETID:             "cap_fsetid",
	CAP_KILL:               "cap_kill",
	CAP_SETGID:             "cap_setgid",
	CAP_SETUID:             "cap_setuid",
	CAP_SETPCAP:            "cap_setpcap",
	CAP_LINUX_IMMUTABLE:    "cap_linux_immutable",
	CAP_NET_BIND_SERVICE:   "cap_net_bind_service",
	CAP_NET_BROADCAST:      "cap_net_broadcast",
	CAP_NET_ADMIN:          "cap_net_admin",
	CAP_NET_RAW:            "cap_net_raw",
	CAP_IPC_LOCK:           "cap_ipc_lock",
	CAP_IPC_OWNER:          "cap_ipc_owner",
	CAP_SYS_MODULE:         "cap_sys_module",
	CAP_SYS_RAWIO:          "cap_sys_rawio",
	CAP_SYS_CHROOT:         "cap_sys_chroot",
	CAP_SYS_PTRACE:         "cap_sys_ptrace",
	CAP_SYS_PACCT:          "cap_sys_pacct",
	CAP_SYS_ADMIN:          "cap_sys_admin",
	CAP_SYS_BOOT:           "cap_sys_boot",
	CAP_SYS_NICE:           "cap_sys_nice",
	CAP_SYS_RESOURCE:       "cap_sys_resource",
	CAP_SYS_TIME:           "cap_sys_time",
	CAP_SYS_TTY_CONFIG:     "cap_sys_tty_config",
	CAP_MKNOD:              "cap_mknod",
	CAP_LEASE:              "cap_lease",
	CAP_AUDIT_WRITE:        "cap_audit_write",
	CAP_AUDIT_CONTROL:      "cap_audit_control",
	CAP_SETFCAP:            "cap_setfcap",
	CAP_MAC_OVERRIDE:       "cap_mac_override",
	CAP_MAC_ADMIN:          "cap_mac_admin",
	CAP_SYSLOG:             "cap_syslog",
	CAP_WAKE_ALARM:         "cap_wake_alarm",
	CAP_BLOCK_SUSPEND:      "cap_block_suspend",
	CAP_AUDIT_READ:         "cap_audit_read",
	CAP_PERFMON:            "cap_perfmon",
	CAP_BPF:                "cap_bpf",
	CAP_CHECKPOINT_RESTORE: "cap_checkpoint_restore",
}

// String returns the name capabilities(7) and getpcaps(8) use, such as
// "cap_net_admin", or "cap_N" for a number this package has no name for.
func (c Cap) String() string {
	if c >= 0 && int(c) < len(capNames) {
		return capNames[c]
	}
	return "cap_" + strconv.Itoa(int(c))
}

// ParseCap parses a capability name as a configuration file would spell
// it: "net_admin", "cap_net_admin" and "CAP_NET_ADMIN" are all
// CAP_NET_ADMIN.
func ParseCap(s string) (Cap, error) {
	name := strings.ToLower(strings.TrimSpace(s))
	if name == "" {
		return 0, fmt.Errorf("privdrop: parse capability %q: empty name", s)
	}
	if !strings.HasPrefix(name, "cap_") {
		name = "cap_" + name
	}
	for c, n := range capNames {
		if n == name {
			return Cap(c), nil
		}
	}
	return 0, fmt.Errorf("privdrop: parse capability %q: unknown name (want one of capabilities(7), with or without the cap_ prefix, such as net_admin or cap_net_admin)", s)
}

// Set is a set of capabilities: bit i is capability i, the layout of
// CapEff and its siblings in /proc/<pid>/status.
type Set uint64

// NewSet returns the set holding caps. Numbers outside 0..63 are ignored:
// a Set cannot hold them, and no kernel has them.
func NewSet(caps ...Cap) Set {
	var s Set
	for _, c := range caps {
		if c >= 0 && c < 64 {
			s |= 1 << uint(c)
		}
	}
	return s
}

// Has reports whether c is in s.
func (s Set) Has(c Cap) bool {
	return c >= 0 && c < 64 && s&(1<<uint(c)) != 0
}

// String lists the capabilities in s, in number order, separated by
// commas ("cap_net_bind_service,cap_net_admin"); the empty set is "".
func (s Set) String() string {
	var b strings.Builder
	for rest := uint64(s); rest != 0; rest &= rest - 1 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(Cap(bits.TrailingZeros64(rest)).String())
	}
	return b.String()
}
