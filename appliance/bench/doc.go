// Package bench holds Wardline's benchmarks (`wardline bench`, `make
// bench`): the fast path's (issue 2), the detection engine's (issue 3) and
// the enforcement layer's (issue 4).
// Every figure is a ratio against a baseline measured in the same run, or
// a measured quantity against its target, repeated in alternating rounds
// and reported as the median with min–max; docs/benchmarks.md has the
// method and the latest results.
//
//   - wire.go: the topology (src ns — box ns with br0 — dst ns) and its
//     cleanup, including what a killed run left behind (SweepStale).
//   - setup.go: the box configurations (bare bridge, the empty bench
//     programs, wl_xdp generic/native, the XDP blocklist, the nft set) and
//     the port offloads each figure uses.
//   - measure.go: iperf3, trafgen, the counters read around every packet
//     measurement and their consistency check, CPU time from /proc/stat.
//   - live.go: the live-frame generator (xdp_gen under BPF_PROG_TEST_RUN),
//     which hands frames to the box without an skb, as a NIC does.
//   - fastpath.go: the figures and the rounds; report.go prints them.
//   - ring.go: the ring-buffer reader benchmark.
//   - detect.go: the detection-engine figures; offline.go (wardline
//     analyze vs ndpiReader on the merged corpus, pinned to one CPU),
//     memory.go (memory per 1M tracked flows: the pcap tracker, the
//     engine's state, the kernel's flow table), ttd.go (time-to-detect,
//     offline and live in a lab with wardlined); detect_report.go prints
//     them.
//   - nfq.go, nfq_reader.go: NFQUEUE verdicts/s of enforce/nfq's reader
//     against a C libnetfilter_queue reference (nfqref/nfqref.c, built at
//     run time) and go-nfqueue, on the wire; nfq_report.go prints them.
//   - contain.go: time-to-contain, live in a lab with wardlined and a
//     policy in stage enforce: alert emitted → decision → XDP entry, and
//     the scanners' own probes going unanswered; decisions.go:
//     decisions/s into the kernel (xdpset and nftset batched and one by
//     one, and through enforce.Manager with the share spent in the
//     kernel); contain_report.go prints both and issue 4's targets.
//
// The benchmark-only BPF programs are in bpf/bench/xdp_bench.c.
package bench
