// Package lab builds, in network namespaces, a small branch-office network
// with the Wardline appliance namespace inline between the office LAN and
// its uplink, runs lab services in it, and tears it all down again.
//
// It is for root integration tests of other packages (through [ForTest]),
// for `make demo` and for the CLI's `wardline lab up|down|status` (through
// [Up], [Load], [List], [Lab.Down], [Lab.Status] and [Sweep]).
//
// # Topology
//
// Every namespace is named "<id>-<role>", where the lab ID is "wl" plus four
// random hex digits unless [Config.ID] says otherwise. No link is ever
// created in the caller's namespace: veth pairs are created directly with
// both ends inside lab namespaces, so link names inside a lab are fixed
// (eth0, in0, out0, …) and two labs never collide.
//
//	             <id>-osw            <id>-box         <id>-router             <id>-isw
//	client1..N ─┐                                                                  ┌─ web    203.0.113.10
//	resolver   ─┼─ sw0 ─ box-in0 ═ in0 ─[br0]─ out0 ═ lan0    wan0 ═ router ─ sw0 ─┼─ dns    203.0.113.53
//	server1    ─┤                       mgmt0                                      ├─ c2     198.51.100.66
//	server2    ─┘                         ║                                        └─ mirror 192.0.2.10
//	                                    eth0 <id>-mgmt (operator 198.18.254.2)
//
// (═ is a veth pair, ─ bridge membership; every host is its own namespace
// whose eth0 pairs with a port named after the host's role in its switch.)
//
// Office hosts live in 198.18.0.0/24 and 2001:db8:18::/64 behind the router
// (198.18.0.1, 2001:db8:18::1). Internet hosts share one switch; the router
// holds 203.0.113.1/24, 198.51.100.1/24, 192.0.2.1/24 and 2001:db8:113::1/64
// on wan0 and routes without NAT. The box ports carry no address, and IPv6
// is disabled on them, so the box itself sends nothing on the data path.
// Switch namespaces have IPv6 disabled too: switches are silent. MAC
// addresses are fixed: 02:00 followed by the four bytes of the interface's
// IPv4 address (the box data ports use 02:77:6c:00:00:0x).
//
// # Services
//
// Unless [Config.NoServices] is set, Up starts dnsmasq on the dns host
// (authoritative for the lab names, NXDOMAIN for everything else) and on the
// resolver (forwarding to the dns host, no cache, so every client query
// crosses the box), and Go HTTP/HTTPS, discard and echo servers on web, c2
// and server1; see [RunServiceIfRequested] for the handlers and [Lab.Names]
// for the names. Clients are told nothing about the resolver (nothing is
// written to /etc): point tools at [Lab.Resolver] explicitly.
//
// The Go servers run as separate processes so that they outlive the process
// that called Up: Up re-executes [os.Executable] inside the host's namespace
// with the environment variable WARDLINE_LAB_SERVICE set. Therefore every
// binary and test binary that calls Up or ForTest must call
// [RunServiceIfRequested] first thing in main or TestMain:
//
//	func TestMain(m *testing.M) {
//		lab.RunServiceIfRequested()
//		os.Exit(m.Run())
//	}
//
// A test binary that lacks the call is re-executed with -test.run=^$ (it
// runs no tests) and Up fails with an error that names the missing call;
// Up also refuses to run inside a lab service, so nothing can recurse.
//
// # Things the rest of the system should know
//
//   - Up takes about 0.1 s and Down about 15 ms on the 2-core CI machine;
//     the kernel frees deleted namespaces asynchronously afterwards.
//   - Hosts are not silent: on link-up they send IPv6 router solicitations
//     and MLD reports, and neighbour discovery and ARP precede first
//     contacts. Only the box and the switches send nothing themselves.
//   - The lab changes no offloads. Native XDP on in0/out0 turns GRO on and
//     TSO off on the veth peer (see docs/platform.md); traffic between
//     veths carries CHECKSUM_PARTIAL packets, so checksums seen by XDP on
//     TCP/UDP packets may be unfilled.
//   - Processes are started in sessions of their own and survive the
//     process that called Up; on a machine whose init reaps orphans lazily
//     they can linger as zombies for a few seconds after Down.
package lab
