package kernelcheck

import (
	"os"
	"strings"
	"testing"
)

const sample = `#
# Automatically generated file; DO NOT EDIT.
CONFIG_BPF=y
CONFIG_BPF_SYSCALL=y
# CONFIG_BPF_JIT is not set
CONFIG_BRIDGE=m
CONFIG_NF_TABLES=y
# CONFIG_NF_TABLES_BRIDGE is not set
CONFIG_NF_TABLES_INET=y
CONFIG_LOCALVERSION="-gokrazy"
CONFIG_HZ=250
`

func TestCheckConfig(t *testing.T) {
	cfg, err := ParseConfig(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if cfg["BRIDGE"] != "m" || cfg["LOCALVERSION"] != `"-gokrazy"` || cfg["HZ"] != "250" || cfg["BPF_JIT"] != "" {
		t.Errorf("parsed %v", cfg)
	}
	// Without nft and inspection only the fast path's options are required.
	missing, weak := CheckConfig(cfg, Need{})
	if len(missing) != 0 {
		t.Errorf("missing %+v", missing)
	}
	names := func(os []Option) string {
		var s []string
		for _, o := range os {
			s = append(s, o.Name)
		}
		return strings.Join(s, ",")
	}
	if got := names(weak); !strings.Contains(got, "BPF_JIT") || !strings.Contains(got, "DEBUG_INFO_BTF") || !strings.Contains(got, "NF_TABLES_BRIDGE") {
		t.Errorf("weak %s", got)
	}
	missing, _ = CheckConfig(cfg, Need{NFT: true, Inspect: true})
	if got := names(missing); got != "NF_TABLES_BRIDGE,BRIDGE_NETFILTER,NETFILTER_NETLINK_QUEUE,NFT_COMPAT,NETFILTER_XT_TARGET_NFQUEUE" {
		t.Errorf("missing with nft and inspection: %s", got)
	}
	r := &Report{Source: "test.config", Missing: missing}
	err = r.Err()
	if err == nil {
		t.Fatal("a report with missing options is OK")
	}
	for _, want := range []string{"(configuration from test.config)", "For nftables:\n    CONFIG_NF_TABLES_BRIDGE is not set: bridge-family tables",
		"For NFQUEUE inspection:\n    CONFIG_BRIDGE_NETFILTER is not set: br_netfilter"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := ParseConfig(strings.NewReader("CONFIG_BPF=y\nBPF y\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("a malformed line: %v", err)
	}
}

// TestRunningKernel: this machine's kernel (see platform.md) has every
// option and feature, with nft and inspection on.
func TestRunningKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("the BPF probes need root, and CI must not skip them")
		}
		t.Skip("skipping: the BPF probes need root")
	}
	r, err := Running(Need{NFT: true, Inspect: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Source == "" {
		t.Skip("skipping: this kernel exposes no configuration (/proc/config.gz or /boot/config-*)")
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if len(r.Probes) < 5 {
		t.Errorf("probes %+v", r.Probes)
	}
	t.Logf("source %s; warnings %v", r.Source, r.Warnings())
}
