// Package pcap is Wardline's offline event source: it reads pcap and pcapng
// captures (gopacket/pcapgo, no libpcap, no cgo) and turns their packets
// into the same flow records and payload snippets (package event) that the
// XDP fast path (bpf/xdp_wardline.c, package dataplane) produces on the
// appliance, so the detection engine runs unchanged on a capture
// (`wardline analyze FILE...`, issue 3).
//
// The pieces, bottom up:
//
//   - Reader reads one file, pcap or pcapng (detected by magic), with
//     gopacket/pcapgo (the maintained github.com/gopacket/gopacket: the
//     google/gopacket v1.1.19 pcapgo cannot name link types above 255,
//     such as Linux SLL2, and panics or allocates gigabytes on some
//     corrupt pcapng input). It yields Packets: timestamp, captured bytes,
//     original length, link type. A corrupt or truncated file ends with a
//     *ReadError that names the file, the byte offset and the operation,
//     after every packet before it.
//   - Tracker is a Go twin of wl_xdp's per-packet logic: the same parser
//     (bpf/parse.h), the same canonical bidirectional flow keys, counters,
//     TCP close logic, snippet rules and timeouts, and the same counters
//     (Stats). Its clock is the packets' timestamps, not the wall clock.
//   - ReadFile and ReadFiles drive a Tracker over files, with progress and
//     cancellation, for the CLI. Several files are merged in time order
//     into one Tracker, so flows continue from one file into the next.
//
// Reading and tracking allocate nothing per packet; headers are decoded by
// hand (parse.go), which is both what equality with the fast path needs
// and several times faster than gopacket's DecodingLayerParser
// (decode_bench_test.go measures both).
//
// # Differences from the appliance, on purpose
//
// Time is packet time: Tracker's clock is the latest packet timestamp seen
// (a timestamp earlier than that is clamped to it and counted in
// Stats.TimeBackwards, so flows never time out backwards). The flow
// sweeper, which the daemon runs every second of wall time, runs here at
// every SweepInterval of packet time (on a grid starting at the first
// packet); a record it writes carries the grid tick at which that sweeper
// would have written it. At the end of the input, Flush exports every
// flow still in the table with the reason the sweeper would eventually
// give it: idle, or fin for a connection whose FINs were both seen but
// whose last ACK was not. Flush records carry the last packet time.
//
// Byte counts are frame lengths including an Ethernet header, as on the
// appliance: for link types without one (Linux SLL/SLL2, raw IP, BSD
// loopback) the link header's length is replaced by the 14 bytes of an
// Ethernet header, so that the same traffic counts the same bytes live and
// offline. Captures cut by a snap length count their original length.
//
// A snippet of a packet that the capture cut short (snap length) holds the
// bytes captured and has Truncated set, as when the snippet length cuts it;
// Stats.SnippetsShort counts those. The fast path never sees such frames.
//
// There are no block or allow lists offline: every packet "passes".
// Ifindex fields are Packet.Ifindex (0 from files) and CPU is 0.
//
// # Keeping the twin in step
//
// Every rule here mirrors a line of bpf/parse.h or bpf/xdp_wardline.c and
// says which; when the C changes, this package must change with it. The
// root test in appliance/crosscheck runs corpus captures through both and
// fails when they disagree. Options mirrors dataplane.Options without
// importing it (detect must not import the BPF loader); a test that keeps
// the defaults equal belongs where both packages may be imported.
package pcap
