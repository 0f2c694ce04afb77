package bench

import (
	"context"
	"fmt"
)

// detectFigures runs the detection-engine figures of issue 3 that opts
// selects: memory first (measured in this process, before the others
// leave garbage behind), then offline throughput against ndpiReader
// (child processes), then time-to-detect (offline, then a live lab).
func detectFigures(ctx context.Context, opts Options, res *FastpathResult) error {
	if opts.want(FigMemory) {
		m, err := Memory(opts)
		if err != nil {
			return fmt.Errorf("memory figure: %w", err)
		}
		res.Memory = m
	}
	if opts.want(FigOffline) {
		o, err := Offline(ctx, opts)
		if err != nil {
			return fmt.Errorf("offline figure: %w", err)
		}
		if o.Skipped != "" {
			opts.Logf("offline figure skipped: %s", o.Skipped)
		}
		res.Offline = o
	}
	if opts.want(FigTTD) {
		t, err := TTD(ctx, opts)
		if err != nil {
			return fmt.Errorf("time-to-detect figure: %w", err)
		}
		res.TTD = t
	}
	return nil
}
