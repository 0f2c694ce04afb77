package dataplane

import (
	"fmt"
	"time"

	"github.com/cilium/ebpf"
)

// Stat indexes the fast path's per-CPU counters (enum wl_stat in
// bpf/structs.h).
type Stat uint32

const (
	StatRxPackets      = Stat(bpfWlStatWL_STAT_RX_PACKETS)
	StatRxBytes        = Stat(bpfWlStatWL_STAT_RX_BYTES)
	StatPass           = Stat(bpfWlStatWL_STAT_PASS)
	StatDrop           = Stat(bpfWlStatWL_STAT_DROP)
	StatDropBytes      = Stat(bpfWlStatWL_STAT_DROP_BYTES)
	StatNonIP          = Stat(bpfWlStatWL_STAT_NON_IP)
	StatErrEth         = Stat(bpfWlStatWL_STAT_ERR_ETH)
	StatErrVLAN        = Stat(bpfWlStatWL_STAT_ERR_VLAN)
	StatErrIPv4        = Stat(bpfWlStatWL_STAT_ERR_IPV4)
	StatErrIPv6        = Stat(bpfWlStatWL_STAT_ERR_IPV6)
	StatErrIPv6Ext     = Stat(bpfWlStatWL_STAT_ERR_IPV6EXT)
	StatErrL4          = Stat(bpfWlStatWL_STAT_ERR_L4)
	StatFragments      = Stat(bpfWlStatWL_STAT_FRAGMENTS)
	StatBlockSrc       = Stat(bpfWlStatWL_STAT_BLOCK_SRC)
	StatBlockDst       = Stat(bpfWlStatWL_STAT_BLOCK_DST)
	StatAllowlisted    = Stat(bpfWlStatWL_STAT_ALLOWLISTED)
	StatFlowNew        = Stat(bpfWlStatWL_STAT_FLOW_NEW)
	StatFlowInsertFail = Stat(bpfWlStatWL_STAT_FLOW_INSERT_FAIL)
	StatFlowDeleted    = Stat(bpfWlStatWL_STAT_FLOW_DELETED)
	StatFlowSampledOut = Stat(bpfWlStatWL_STAT_FLOW_SAMPLED_OUT)
	StatEvFlow         = Stat(bpfWlStatWL_STAT_EV_FLOW)
	StatEvFlowFail     = Stat(bpfWlStatWL_STAT_EV_FLOW_FAIL)
	StatEvSnippet      = Stat(bpfWlStatWL_STAT_EV_SNIPPET)
	StatEvSnippetFail  = Stat(bpfWlStatWL_STAT_EV_SNIPPET_FAIL)
	StatSnippetTrunc   = Stat(bpfWlStatWL_STAT_SNIPPET_TRUNC)
	StatUnknownPort    = Stat(bpfWlStatWL_STAT_UNKNOWN_PORT)
	StatSweepRuns      = Stat(bpfWlStatWL_STAT_SWEEP_RUNS)
	StatSweepExpired   = Stat(bpfWlStatWL_STAT_SWEEP_EXPIRED)
	StatBlockExpired   = Stat(bpfWlStatWL_STAT_BLOCK_EXPIRED)
	NumStats           = int(bpfWlStatWL_STAT_MAX)
)

type statDesc struct{ name, help string }

// statDescs names every counter for export (metric name suffix and help).
// A test checks that every index has an entry.
var statDescs = map[Stat]statDesc{
	StatRxPackets:      {"rx_packets", "Packets seen by the XDP program."},
	StatRxBytes:        {"rx_bytes", "Bytes seen by the XDP program (real frame length, GSO super-packets included)."},
	StatPass:           {"pass_packets", "Packets passed (XDP_PASS)."},
	StatDrop:           {"drop_packets", "Packets dropped by the blocklist (XDP_DROP)."},
	StatDropBytes:      {"drop_bytes", "Bytes dropped by the blocklist."},
	StatNonIP:          {"non_ip_packets", "Non-IP packets (ARP, LLDP, ...) passed untouched."},
	StatErrEth:         {"parse_errors_eth", "Frames with a truncated Ethernet header (passed)."},
	StatErrVLAN:        {"parse_errors_vlan", "Frames with a truncated VLAN tag or more than two tags (passed)."},
	StatErrIPv4:        {"parse_errors_ipv4", "Malformed or truncated IPv4 headers (passed)."},
	StatErrIPv6:        {"parse_errors_ipv6", "Malformed or truncated IPv6 headers (passed)."},
	StatErrIPv6Ext:     {"parse_errors_ipv6_ext", "Truncated or too many IPv6 extension headers (passed)."},
	StatErrL4:          {"parse_errors_l4", "Truncated TCP/UDP/ICMP headers (passed)."},
	StatFragments:      {"fragments", "Non-first IP fragments (tracked without ports)."},
	StatBlockSrc:       {"block_src_packets", "Packets dropped because their source is blocklisted."},
	StatBlockDst:       {"block_dst_packets", "Packets dropped because their destination is blocklisted."},
	StatAllowlisted:    {"allowlisted_packets", "Blocklisted packets passed because the allowlist matched."},
	StatFlowNew:        {"flows_created", "Flow table entries created."},
	StatFlowInsertFail: {"flow_insert_failures", "Flow table inserts that failed (packet not accounted)."},
	StatFlowDeleted:    {"flows_deleted", "Flow table entries removed after their final record."},
	StatFlowSampledOut: {"flow_sampled_out_packets", "Packets of flows not tracked because of flow sampling."},
	StatEvFlow:         {"flow_records", "Flow records written to the ring buffer."},
	StatEvFlowFail:     {"flow_record_reserve_failures", "Flow records that could not be reserved (ring full); final records are retried by the sweeper."},
	StatEvSnippet:      {"snippets", "Payload snippets written to the ring buffer."},
	StatEvSnippetFail:  {"snippet_output_failures", "Payload snippets lost because the ring was full."},
	StatSnippetTrunc:   {"snippets_truncated", "Snippets cut at the configured snippet length."},
	StatUnknownPort:    {"unknown_port_packets", "Packets on an interface the daemon did not register."},
	StatSweepRuns:      {"sweeps", "Runs of the flow sweeper."},
	StatSweepExpired:   {"sweep_expired_flows", "Flows exported and removed by the sweeper (idle or closed)."},
	StatBlockExpired:   {"block_expired_packets", "Packets passed because every blocklist entry they matched had expired."},
}

// Name returns the counter's export name.
func (s Stat) Name() string {
	if d, ok := statDescs[s]; ok {
		return d.name
	}
	return fmt.Sprintf("stat_%d", uint32(s))
}

// Help returns the counter's description.
func (s Stat) Help() string { return statDescs[s].help }

// Counters holds one value per Stat.
type Counters [NumStats]uint64

// SweepState is the summary the last sweep left.
type SweepState struct {
	LastRun time.Time
	Live    uint64 // flow entries present
	Expired uint64 // flows exported by that sweep
	Pending uint64 // expired flows kept because the ring was full
}

// Stats is a snapshot of the fast path's counters.
type Stats struct {
	Total  Counters   // summed over CPUs
	PerCPU []Counters // per possible CPU
	Sweep  SweepState
	// FlowEvictions counts flows the LRU table evicted under pressure:
	// each is a flow whose final record was lost. The kernel does not
	// count LRU evictions, so the sweeper derives them (created -
	// deleted - present); it is a monotonic lower bound updated at
	// every sweep.
	FlowEvictions uint64
	FlowTableSize uint32
}

// Stats reads the counters.
func (d *Dataplane) Stats() (Stats, error) {
	return readStats(d.objs.WlStatsV2, d.objs.WlSweepV1, d.clock, d.opts.FlowTableSize)
}

func readStats(stats, sweep *ebpf.Map, clock *Clock, tableSize uint32) (Stats, error) {
	var percpu []bpfWlStats
	if err := stats.Lookup(uint32(0), &percpu); err != nil {
		return Stats{}, fmt.Errorf("read wl_stats_v2: %w", err)
	}
	s := Stats{PerCPU: make([]Counters, len(percpu)), FlowTableSize: tableSize}
	for cpu, c := range percpu {
		for i := range NumStats {
			s.PerCPU[cpu][i] = c.C[i]
			s.Total[i] += c.C[i]
		}
	}
	var ss bpfWlSweepState
	if err := sweep.Lookup(uint32(0), &ss); err != nil {
		return Stats{}, fmt.Errorf("read wl_sweep_v1: %w", err)
	}
	s.Sweep = SweepState{Live: ss.Live, Expired: ss.Expired, Pending: ss.Pending}
	if ss.LastRunNs != 0 {
		s.Sweep.LastRun = clock.Time(ss.LastRunNs)
	}
	s.FlowEvictions = ss.Evicted
	return s, nil
}

// ReadPinnedStats reads the counters of a fast path pinned in pinDir,
// without loading it (for the CLI; works while the daemon is down).
func ReadPinnedStats(pinDir string) (Stats, error) {
	stats, err := ebpf.LoadPinnedMap(pinDir+"/wl_stats_v2", nil)
	if err != nil {
		return Stats{}, fmt.Errorf("open pinned counters in %s: %w", pinDir, err)
	}
	defer stats.Close()
	sweep, err := ebpf.LoadPinnedMap(pinDir+"/wl_sweep_v1", nil)
	if err != nil {
		return Stats{}, fmt.Errorf("open pinned sweep state in %s: %w", pinDir, err)
	}
	defer sweep.Close()
	var size uint32
	if flows, err := ebpf.LoadPinnedMap(pinDir+"/wl_flows_v1", nil); err == nil {
		size = flows.MaxEntries()
		flows.Close()
	}
	return readStats(stats, sweep, NewClock(), size)
}
