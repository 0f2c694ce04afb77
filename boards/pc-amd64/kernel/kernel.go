// Package kernel is Wardline's pc-amd64 kernel as a gokrazy kernel package:
// vmlinuz, its config, cmdline.txt and modules.builtin. Built by
// boards/build-kernel.sh (make kernel BOARD=pc-amd64); do not edit by hand.
package kernel
