//go:build cgo

package main

// Linking the cgo runtime is what makes syscall.AllThreadsSyscall refuse
// to run; importing it makes a CGO_ENABLED=1 build of dropdemo a cgo
// binary even though dropdemo has no C code of its own.
import _ "runtime/cgo"
