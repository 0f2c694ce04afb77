// Package kernel is Wardline's rpi4 kernel as a gokrazy kernel package:
// vmlinuz, its config, cmdline.txt and modules.builtin. Built by
// boards/build-kernel.sh (make kernel BOARD=rpi4); do not edit by hand.
package kernel
