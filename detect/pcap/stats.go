package pcap

// Stats counts what a Tracker (and ReadFile/ReadFiles) saw. Fields with a
// fast-path counterpart carry its name (enum wl_stat in bpf/structs.h) and
// count the same thing; the others exist only offline.
type Stats struct {
	Packets       uint64 // WL_STAT_RX_PACKETS: every packet given to the tracker
	Bytes         uint64 // WL_STAT_RX_BYTES: original frame lengths, as Ethernet frames (see package doc)
	CapturedBytes uint64 // bytes present in the capture (less than Bytes with a snap length)
	ShortCaptures uint64 // packets captured shorter than their original length (snap length)

	NonIP      uint64 // WL_STAT_NON_IP: ARP (also reported as snippets), LLDP, ...
	ErrEth     uint64 // WL_STAT_ERR_ETH: truncated Ethernet (or other link-layer) header
	ErrVLAN    uint64 // WL_STAT_ERR_VLAN: truncated tag or more than two tags
	ErrIPv4    uint64 // WL_STAT_ERR_IPV4: truncated header, IHL < 5, bad version
	ErrIPv6    uint64 // WL_STAT_ERR_IPV6: truncated fixed header, bad version
	ErrIPv6Ext uint64 // WL_STAT_ERR_IPV6_EXT: truncated or more than six extension headers
	ErrL4      uint64 // WL_STAT_ERR_L4: truncated TCP/UDP/ICMP header, TCP data offset < 5
	Fragments  uint64 // WL_STAT_FRAGMENTS: non-first IP fragments (tracked without ports)

	FlowsCreated   uint64 // WL_STAT_FLOW_NEW
	FlowsDeleted   uint64 // WL_STAT_FLOW_DELETED: entries removed after their final record
	FlowsEvicted   uint64 // flows the full table evicted (least recently used): their final record is lost
	FlowSampledOut uint64 // WL_STAT_FLOW_SAMPLED_OUT: packets of flows not tracked (FlowSample)
	LiveFlows      uint64 // flows in the table when the snapshot was taken

	FlowRecords       uint64 // WL_STAT_EV_FLOW: flow records delivered
	Snippets          uint64 // WL_STAT_EV_SNIPPET: snippets delivered
	SnippetsTruncated uint64 // WL_STAT_SNIPPET_TRUNC: snippets cut at the snippet length
	SnippetsShort     uint64 // snippets cut short because the capture holds less of the payload (snap length)
	SnippetsMissing   uint64 // snippets not delivered: the capture holds none of the payload

	Sweeps       uint64 // WL_STAT_SWEEP_RUNS: sweeper runs (packet time)
	SweepExpired uint64 // WL_STAT_SWEEP_EXPIRED: flows exported and removed by the sweeper
	Flushed      uint64 // flows exported and removed by Flush at the end of the input

	TimeBackwards uint64 // packets timestamped before an earlier packet: clamped to the clock
	BadTimestamps uint64 // packets without a usable timestamp (zero, before 1970, after 2242)

	// Files describes each input file (ReadFile, ReadFiles only).
	Files []FileStats
}

// ParseErrors returns the packets that failed to parse, all reasons.
func (s Stats) ParseErrors() uint64 {
	return s.ErrEth + s.ErrVLAN + s.ErrIPv4 + s.ErrIPv6 + s.ErrIPv6Ext + s.ErrL4
}

// FileStats describes one input file of ReadFiles.
type FileStats struct {
	Path    string
	Format  string // "pcap" or "pcapng"
	Size    int64  // bytes on disk
	Packets uint64 // packets delivered to the tracker
	Bytes   uint64 // their original lengths as read from the file
	Err     error  // why reading stopped early, nil at a clean end
}
