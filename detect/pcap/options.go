package pcap

import (
	"fmt"
	"time"
)

// Options are the Tracker's knobs. They mirror dataplane.Options (the
// fast path's load-time knobs) field for field and default for default,
// plus SweepInterval, which on the appliance is the daemon's
// dataplane.sweep_interval. The zero value of a field means its default;
// Validate reports out-of-range values with the same limits as
// dataplane.Options.Validate.
type Options struct {
	FlowTableSize uint32        // flow table entries; the least recently used flow is evicted beyond it (default 262144)
	SnippetLen    uint32        // payload bytes copied per snippet (default 2048, 64..4096)
	FlowSample    uint32        // track 1 in N flows by canonical key hash, as wl_xdp does (default 1 = all)
	IdleTimeout   time.Duration // no packet for this long: final record, reason idle (default 60s)
	ActiveTimeout time.Duration // interim record of a long flow at least this often (default 120s)
	CloseTimeout  time.Duration // closed (both FINs) but last ACK not seen: final record after this (default 5s)
	// SweepInterval is the packet time between sweeps (default 1s, the
	// daemon's default). Negative: no automatic sweeps, only
	// Tracker.Sweep (tests that mirror the dataplane's, which sweep by
	// hand).
	SweepInterval time.Duration
}

// Defaults, equal to those of package dataplane (dataplane/loader.go) and
// of the daemon's sweep interval (appliance/config).
const (
	DefaultFlowTableSize = 262144
	DefaultSnippetLen    = 2048
	MaxSnippetLen        = 4096 // WL_SNIPPET_MAX in bpf/consts.h
	DefaultIdleTimeout   = 60 * time.Second
	DefaultActiveTimeout = 120 * time.Second
	DefaultCloseTimeout  = 5 * time.Second
	DefaultSweepInterval = time.Second
)

// WithDefaults returns o with every zero field set to its default.
func (o Options) WithDefaults() Options {
	if o.FlowTableSize == 0 {
		o.FlowTableSize = DefaultFlowTableSize
	}
	if o.SnippetLen == 0 {
		o.SnippetLen = DefaultSnippetLen
	}
	if o.FlowSample == 0 {
		o.FlowSample = 1
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.ActiveTimeout == 0 {
		o.ActiveTimeout = DefaultActiveTimeout
	}
	if o.CloseTimeout == 0 {
		o.CloseTimeout = DefaultCloseTimeout
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = DefaultSweepInterval
	}
	return o
}

// Validate checks the options after defaults are applied.
func (o Options) Validate() error {
	o = o.WithDefaults()
	switch {
	case o.FlowTableSize < 1024:
		return fmt.Errorf("flow table size %d: must be at least 1024", o.FlowTableSize)
	case o.FlowTableSize > 1<<30:
		return fmt.Errorf("flow table size %d: must be at most %d", o.FlowTableSize, 1<<30)
	case o.SnippetLen < 64 || o.SnippetLen > MaxSnippetLen:
		return fmt.Errorf("snippet length %d: must be between 64 and %d", o.SnippetLen, MaxSnippetLen)
	case o.IdleTimeout < time.Second:
		return fmt.Errorf("idle timeout %v: must be at least 1s", o.IdleTimeout)
	case o.ActiveTimeout < time.Second:
		return fmt.Errorf("active timeout %v: must be at least 1s", o.ActiveTimeout)
	case o.CloseTimeout <= 0 || o.CloseTimeout > o.IdleTimeout:
		return fmt.Errorf("close timeout %v: must be positive and at most the idle timeout %v", o.CloseTimeout, o.IdleTimeout)
	case o.SweepInterval > o.CloseTimeout:
		return fmt.Errorf("sweep interval %v: must be at most the close timeout %v", o.SweepInterval, o.CloseTimeout)
	}
	return nil
}
