// Package images holds the end-to-end test of Wardline's appliance image
// (issue 5): TestBootImage builds the pc-amd64 gokrazy image
// (boards/image.sh), boots it under QEMU (TCG; no KVM on the CI machines)
// as the box of a full lab (package lab) with its three NICs patched
// through taps to the lab's management network, office switch and
// router, and then checks, from the lab's hosts, that it boots, passes its
// kernel-option check, bridges, detects a port scan, blocks the scanner
// once the policy is promoted to enforce, takes a good update and rolls a
// broken one back (appliance/update), and reverts the broken one by itself
// (wardline-guard) when the updater is killed after the reboot.
//
// The test carries the build tag bootimage; `make test` runs it after the
// other tests, and `make boot-test` runs it alone. brokend is the
// deliberately broken daemon the rollback test installs.
package images
