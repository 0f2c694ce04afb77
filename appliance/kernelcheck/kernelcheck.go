// Package kernelcheck tells, at start, whether the running kernel has
// every option wardlined needs, and names precisely what is missing and
// what it is for, instead of letting a later step fail obscurely (an
// unknown map type, an nft "Operation not supported"). It reads the
// kernel's own configuration (/proc/config.gz, CONFIG_IKCONFIG_PROC, or
// /boot/config-<release>) and, whatever it finds there, probes the BPF
// features the fast path uses.
package kernelcheck

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"
)

// Need says which parts of the appliance are in use (the options they
// need are required; the rest are only reported).
type Need struct {
	NFT     bool // the nft backend (bridge-family sets)
	Inspect bool // NFQUEUE inspection (br_netfilter, xt NFQUEUE through nft_compat)
}

// Option is one kernel option and why the appliance wants it.
type Option struct {
	Name string // without the CONFIG_ prefix
	For  string // the group: "For XDP and BPF:" …
	Why  string
	// Required: the appliance cannot run without it; otherwise it only
	// runs worse (and the report says how).
	Required bool
}

// Options returns the options for need, grouped as the kernel config
// addendum of each board annotates them.
func Options(need Need) []Option {
	const bpf, br, nft, nfq, obs = "For XDP and BPF:", "For the bridge:", "For nftables:", "For NFQUEUE inspection:", "For this check and debugging:"
	opts := []Option{
		{"BPF", bpf, "BPF programs", true},
		{"BPF_SYSCALL", bpf, "the bpf() system call: loading wl_xdp, maps, the ring buffer", true},
		{"BPF_JIT", bpf, "JIT-compiled programs (the interpreter is several times slower per packet)", false},
		{"DEBUG_INFO_BTF", bpf, "kernel BTF (bpftool, CO-RE tooling)", false},
		{"BRIDGE", br, "the bump-in-the-wire bridge between the two ports", true},
		{"NF_TABLES", nft, "nftables", need.NFT || need.Inspect},
		{"NF_TABLES_BRIDGE", nft, "bridge-family tables: the nft enforcement backend", need.NFT},
		{"NF_TABLES_INET", nfq, "the inet table that steers inspected traffic", need.Inspect},
		{"BRIDGE_NETFILTER", nfq, "br_netfilter: bridged packets through the IP hooks", need.Inspect},
		{"NETFILTER_NETLINK_QUEUE", nfq, "NFQUEUE to userspace", need.Inspect},
		{"NFT_COMPAT", nfq, "xt targets from nft (the NFQUEUE target; there is no nft queue statement without NFT_QUEUE)", need.Inspect},
		{"NETFILTER_XT_TARGET_NFQUEUE", nfq, "the xt NFQUEUE target with bypass", need.Inspect},
		{"IKCONFIG_PROC", obs, "/proc/config.gz, which this check reads", false},
	}
	return opts
}

// Report is the result of a check.
type Report struct {
	Source  string   // where the configuration came from ("" if none was found)
	Missing []Option // required options the configuration lacks
	Weak    []Option // options that are not required but missing
	Probes  []Probe  // BPF feature probes
}

// Probe is one BPF feature the fast path uses, probed in the kernel.
type Probe struct {
	Name string
	Err  error // nil: supported
}

// OK reports whether nothing required is missing.
func (r *Report) OK() bool {
	if len(r.Missing) > 0 {
		return false
	}
	for _, p := range r.Probes {
		if p.Err != nil {
			return false
		}
	}
	return true
}

// Err is nil when OK, else an error that lists every missing option with
// its purpose, grouped, and every failed probe.
func (r *Report) Err() error {
	if r.OK() {
		return nil
	}
	var b strings.Builder
	b.WriteString("the kernel lacks what wardlined needs")
	if r.Source != "" {
		fmt.Fprintf(&b, " (configuration from %s)", r.Source)
	}
	b.WriteString(":")
	group := ""
	for _, o := range r.Missing {
		if o.For != group {
			group = o.For
			fmt.Fprintf(&b, "\n  %s", group)
		}
		fmt.Fprintf(&b, "\n    CONFIG_%s is not set: %s", o.Name, o.Why)
	}
	for _, p := range r.Probes {
		if p.Err != nil {
			fmt.Fprintf(&b, "\n  probe %s: %v", p.Name, p.Err)
		}
	}
	b.WriteString("\n(every option and why: `wardlined -check-kernel`, appliance/kernelcheck)")
	return errors.New(b.String())
}

// Warnings lists what is missing but not required.
func (r *Report) Warnings() []string {
	var out []string
	for _, o := range r.Weak {
		out = append(out, fmt.Sprintf("CONFIG_%s is not set: %s", o.Name, o.Why))
	}
	if r.Source == "" {
		out = append(out, "no kernel configuration found (/proc/config.gz needs CONFIG_IKCONFIG_PROC): only the BPF probes ran")
	}
	return out
}

// ParseConfig reads a kernel .config: option name (without CONFIG_) →
// value ("y", "m", a number or string); "is not set" lines are omitted.
func ParseConfig(r io.Reader) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		k, v, ok := strings.Cut(t, "=")
		if !ok || !strings.HasPrefix(k, "CONFIG_") {
			return nil, fmt.Errorf("kernel config line %d: %q is not CONFIG_NAME=value", line, t)
		}
		out[strings.TrimPrefix(k, "CONFIG_")] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read kernel config: %w", err)
	}
	return out, nil
}

// CheckConfig holds a parsed configuration against the options for need.
func CheckConfig(cfg map[string]string, need Need) (missing, weak []Option) {
	for _, o := range Options(need) {
		if v := cfg[o.Name]; v == "y" || v == "m" {
			continue
		}
		if o.Required {
			missing = append(missing, o)
		} else {
			weak = append(weak, o)
		}
	}
	return missing, weak // in the order of Options: grouped
}

// Running checks the running kernel: its configuration where it can be
// found, and the BPF probes always.
func Running(need Need) (*Report, error) {
	r := &Report{}
	cfg, src, err := runningConfig()
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		r.Source = src
		r.Missing, r.Weak = CheckConfig(cfg, need)
	}
	r.Probes = probes()
	return r, nil
}

func runningConfig() (map[string]string, string, error) {
	f, err := os.Open("/proc/config.gz")
	if err == nil {
		defer f.Close()
		z, err := gzip.NewReader(f)
		if err != nil {
			return nil, "", fmt.Errorf("read /proc/config.gz: %w", err)
		}
		cfg, err := ParseConfig(z)
		if err != nil {
			return nil, "", fmt.Errorf("/proc/config.gz: %w", err)
		}
		return cfg, "/proc/config.gz", nil
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return nil, "", fmt.Errorf("uname: %w", err)
	}
	path := "/boot/config-" + unix.ByteSliceToString(u.Release[:])
	b, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("read %s: %w", path, err)
	}
	defer b.Close()
	cfg, err := ParseConfig(b)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	return cfg, path, nil
}

// probes asks the kernel for the program and map types the fast path
// loads.
func probes() []Probe {
	return []Probe{
		{"XDP programs", features.HaveProgramType(ebpf.XDP)},
		{"ring buffer maps", features.HaveMapType(ebpf.RingBuf)},
		{"LPM trie maps (block and allow lists)", features.HaveMapType(ebpf.LPMTrie)},
		{"LRU hash maps (the flow table)", features.HaveMapType(ebpf.LRUHash)},
		{"per-CPU array maps (counters)", features.HaveMapType(ebpf.PerCPUArray)},
	}
}
