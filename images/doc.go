// Package images holds the boot tests of Wardline's appliance images: they
// build a board's gokrazy image (boards/image.sh), boot it under QEMU with
// its NICs attached to taps in throwaway network namespaces, and talk to
// the booted appliance from there. The package has no non-test code; see
// boot_test.go (issue 5, "QEMU end-to-end test").
//
// The tests carry the build tag bootimage and run with `make boot-test`
// (root, QEMU from IMAGE_DEBS), not yet in `make test`/CI: the image boots
// under TCG to a healthy management API in ~22 s (kernel ~5 s, bridge
// forwarding ~9 s), but the test has run only a few times so far; the
// traffic, detection, blocking and update parts of issue 5's end-to-end
// test come next.
package images
