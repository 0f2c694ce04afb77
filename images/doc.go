// Package images holds the boot tests of Wardline's appliance images: they
// build a board's gokrazy image (boards/image.sh), boot it under QEMU with
// its NICs attached to taps in throwaway network namespaces, and talk to
// the booted appliance from there. The package has no non-test code; see
// boot_test.go (issue 5, "QEMU end-to-end test").
//
// The tests carry the build tag bootimage and run with `make boot-test`,
// not yet in `make test`: the image boots (kernel up ~5 s, bridge
// forwarding ~9 s, wardlined started ~10 s, its kernel check passes), but
// the 6.1 kernel's verifier still rejects wl_xdp ("math between pkt
// pointer and register with unbounded min value", in the IPv6 parser), so
// wardlined restarts in a loop and the API never answers. The host's 6.18
// verifier accepts the program; the fast path needs to be loaded against
// 6.1 in a test too.
package images
