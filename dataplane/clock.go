package dataplane

import (
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Clock converts bpf_ktime_get_ns() timestamps (CLOCK_MONOTONIC) to wall
// time. The offset between the two clocks moves when the wall clock is
// stepped or slewed (NTP), so long-running users call Calibrate
// periodically; the sweeper does it every sweep.
type Clock struct {
	offset atomic.Int64 // wall ns - monotonic ns
}

// NewClock returns a calibrated Clock.
func NewClock() *Clock {
	c := &Clock{}
	c.Calibrate()
	return c
}

// MonotonicNow returns the current CLOCK_MONOTONIC time in ns, the clock
// BPF timestamps use.
func MonotonicNow() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) // cannot fail for CLOCK_MONOTONIC
	return uint64(ts.Nano())
}

// Calibrate recomputes the offset between the clocks.
func (c *Clock) Calibrate() {
	mono := MonotonicNow()
	wall := time.Now().UnixNano()
	c.offset.Store(wall - int64(mono))
}

// Time converts a BPF timestamp to wall time.
func (c *Clock) Time(ktimeNs uint64) time.Time {
	return time.Unix(0, int64(ktimeNs)+c.offset.Load())
}

// Ktime converts wall time to a BPF timestamp, the inverse of Time. Times
// before boot give 1 (already past: 0 means "never" in the lists); times too
// far ahead for a Duration saturate.
func (c *Clock) Ktime(t time.Time) uint64 {
	ns := t.Sub(time.Unix(0, c.offset.Load())) // saturates instead of overflowing
	if ns < 1 {
		return 1
	}
	return uint64(ns)
}
