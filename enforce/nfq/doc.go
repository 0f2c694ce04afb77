// Package nfq is the NFQUEUE deep-inspection part of the enforcement layer
// (issue 4): selected flows are sent from the box's bridge to a userspace
// queue, where payload rules (content matches such as a known C2 URI or a
// stratum login) drop or accept each packet, and every verdict is counted.
//
// It is for the daemon, which steers hosts under investigation to the
// queue and runs an [Inspector] on it, and for the benchmark harness
// (appliance/bench, figure "nfq"), which compares the Inspector with a C
// reader on libnetfilter_queue and with go-nfqueue.
//
//   - [Steer] creates the nft table that sends packets to the queue
//     (`table inet wardline_nfq`, testdata/steer.golden) with the xt
//     NFQUEUE target and BYPASS, and turns br_netfilter's
//     bridge-nf-call-iptables/ip6tables on in the box namespace while it
//     exists ([Steering.Close] turns them back to 0). Which packets are
//     steered is a matter of set elements with mandatory TTLs:
//     [Steering.Add].
//   - [New] binds a queue (whole packets, FAIL_OPEN, GSO, a 64 MiB socket
//     buffer) and [Inspector.Run] gives verdicts: the first matching
//     [Rule] decides, the default is accept. Verdicts go back in batches.
//   - [Inspector.Stats] returns the reader's counters (per rule and in
//     total) and the kernel's for the queue ([QueueStats]).
//
// # Failing open
//
// Inspection must never stall the wire. No reader bound (never started,
// closed, killed): the rule's BYPASS flag lets packets pass. A reader too
// slow: FAIL_OPEN makes the kernel accept packets it cannot queue. A
// socket buffer overrun: the kernel accepts the packet (fail-open) and the
// reader counts the gap in packet IDs as Missed. Packets that are in the
// queue when the reader's socket is closed are dropped by the kernel, so
// [Inspector.Run] stops queueing and gives every queued packet its verdict
// before it returns; only a reader killed outright loses those (at most
// MaxQueueLen packets).
//
// # Things callers should know
//
//   - Bridged packets reach the inet forward hook only through
//     br_netfilter, and this kernel has no nft queue statement (platform.md);
//     with bridge-nf-call-iptables on, every bridged IPv4 packet crosses
//     the ip hooks of the box, not only the steered ones.
//   - nft lists the target as "queue num N bypass" only with the iptables
//     package's libxtables plugin installed, and warns "unhandled NFPROTO"
//     on stderr for an inet table; the kernel holds the rule either way.
//   - Rules see the transport payload of one packet: a content split
//     across TCP segments is not matched (no stream reassembly). GSO
//     packets (with the GSO flag) are whole and are matched whole.
//   - README.md has the reader decision (a lean raw-netlink reader, not
//     go-nfqueue) with its measurements.
package nfq
