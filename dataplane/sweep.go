package dataplane

import (
	"context"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
)

// sweepFrame is the dummy input BPF_PROG_TEST_RUN needs to run an XDP
// program (at least an Ethernet header); wl_sweep ignores it.
var sweepFrame = make([]byte, 14)

// Sweep runs the flow sweeper once: flows idle longer than the idle timeout,
// and closed flows older than the close timeout, get their final record and
// leave the table. It returns the summary the sweep left.
func (d *Dataplane) Sweep() (SweepState, error) {
	d.clock.Calibrate()
	if _, err := d.objs.WlSweep.Run(&ebpf.RunOptions{Data: sweepFrame}); err != nil {
		return SweepState{}, fmt.Errorf("run flow sweeper: %w", err)
	}
	var ss bpfWlSweepState
	if err := d.objs.WlSweepV1.Lookup(uint32(0), &ss); err != nil {
		return SweepState{}, fmt.Errorf("read wl_sweep_v1: %w", err)
	}
	return SweepState{LastRun: d.clock.Time(ss.LastRunNs), Live: ss.Live, Expired: ss.Expired, Pending: ss.Pending}, nil
}

// RunSweeper calls Sweep every interval until ctx ends. Errors go to
// onErr (nil: ignored) and do not stop the loop.
func (d *Dataplane) RunSweeper(ctx context.Context, interval time.Duration, onErr func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := d.Sweep(); err != nil && onErr != nil {
				onErr(err)
			}
		}
	}
}
