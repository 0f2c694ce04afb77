// Package dataplane is the Go side of Wardline's XDP fast path (bpf/): it
// loads the programs with their load-time knobs, pins programs, maps and
// links in bpffs so that forwarding and blocking survive the daemon,
// re-attaches a restarted daemon to that pinned state, reads the ring buffer
// into typed events (package event), and reads the per-CPU counters.
//
// It is used by the appliance daemon (wardlined), the CLI's debugging
// commands and the tests; it imports nothing above it.
package dataplane

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
)

// Options are the knobs fixed at load time. The zero value of a field means
// its default; Validate reports out-of-range values.
type Options struct {
	// PinDir is a directory on a bpffs where maps, programs and links are
	// pinned. Empty means no pinning (unit tests): everything is released
	// when the Dataplane is closed.
	PinDir string

	FlowTableSize uint32        // flow table entries (default 262144)
	RingBytes     uint32        // ring buffer size, a power of two multiple of the page size (default 16 MiB)
	SnippetLen    uint32        // payload bytes copied per snippet (default 2048, max 4096)
	FlowSample    uint32        // track 1 in N flows (default 1 = all)
	IdleTimeout   time.Duration // default 60s
	ActiveTimeout time.Duration // default 120s
	CloseTimeout  time.Duration // default 5s

	// ReplaceIncompatible allows Load to remove a pinned map whose
	// definition no longer matches (e.g. the flow table size changed)
	// and create it anew; its contents are lost. Without it such a
	// mismatch is an error.
	ReplaceIncompatible bool

	// Logf receives operational messages; nil discards them.
	Logf func(format string, args ...any)
}

// Defaults for Options.
const (
	DefaultFlowTableSize = 262144
	DefaultRingBytes     = 16 << 20
	DefaultSnippetLen    = 2048
	MaxSnippetLen        = 4096 // WL_SNIPPET_MAX in bpf/consts.h
	DefaultIdleTimeout   = 60 * time.Second
	DefaultActiveTimeout = 120 * time.Second
	DefaultCloseTimeout  = 5 * time.Second
	// DefaultWakeupBytes: the program wakes the reader when this much is
	// pending (a quarter of the ring at most); below it the reader polls.
	DefaultWakeupBytes = 64 << 10
)

func (o *Options) setDefaults() {
	if o.FlowTableSize == 0 {
		o.FlowTableSize = DefaultFlowTableSize
	}
	if o.RingBytes == 0 {
		o.RingBytes = DefaultRingBytes
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
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
}

// Validate checks the options after defaults are applied.
func (o Options) Validate() error {
	o.setDefaults()
	page := uint32(os.Getpagesize())
	switch {
	case o.FlowTableSize < 1024:
		return fmt.Errorf("flow table size %d: must be at least 1024", o.FlowTableSize)
	case o.RingBytes&(o.RingBytes-1) != 0 || o.RingBytes < page:
		return fmt.Errorf("ring buffer size %d: must be a power of two and at least the page size %d", o.RingBytes, page)
	case o.SnippetLen < 64 || o.SnippetLen > MaxSnippetLen:
		return fmt.Errorf("snippet length %d: must be between 64 and %d", o.SnippetLen, MaxSnippetLen)
	case o.IdleTimeout < time.Second:
		return fmt.Errorf("idle timeout %v: must be at least 1s", o.IdleTimeout)
	case o.ActiveTimeout < time.Second:
		return fmt.Errorf("active timeout %v: must be at least 1s", o.ActiveTimeout)
	case o.CloseTimeout <= 0 || o.CloseTimeout > o.IdleTimeout:
		return fmt.Errorf("close timeout %v: must be positive and at most the idle timeout %v", o.CloseTimeout, o.IdleTimeout)
	}
	return nil
}

// Dataplane holds the loaded fast path.
type Dataplane struct {
	opts  Options
	objs  bpfObjects
	clock *Clock

	mu    sync.Mutex
	links map[string]*attached // by interface name
}

// pinned program names inside PinDir.
const (
	pinProgXDP   = "prog_wl_xdp"
	pinProgSweep = "prog_wl_sweep"
)

// Load loads the fast path. With a PinDir, maps already pinned there are
// reused (state survives restarts) and the new programs are pinned in place
// of the old ones; attached links are not touched until Attach. Pinned maps
// of an older layout version are removed (their list entries carried over,
// see removeStalePins).
func Load(opts Options) (*Dataplane, error) {
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("dataplane options: %w", err)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock rlimit: %w", err)
	}
	if opts.PinDir != "" {
		if err := CheckBPFFS(opts.PinDir); err != nil {
			return nil, err
		}
	}

	d := &Dataplane{opts: opts, clock: NewClock()}
	var spec *ebpf.CollectionSpec
	for attempt := 0; ; attempt++ {
		var err error
		spec, err = d.spec()
		if err != nil {
			return nil, err
		}
		copts := &ebpf.CollectionOptions{}
		if opts.PinDir != "" {
			copts.Maps.PinPath = opts.PinDir
		}
		err = spec.LoadAndAssign(&d.objs, copts)
		if err == nil {
			break
		}
		var name string
		if errors.Is(err, ebpf.ErrMapIncompatible) && opts.PinDir != "" && attempt < 3 {
			name = incompatibleMap(spec, opts.PinDir)
		}
		if name == "" {
			return nil, fmt.Errorf("load fast path: %w%s", err, loadHint(err))
		}
		if !opts.ReplaceIncompatible {
			return nil, fmt.Errorf("load fast path: pinned map %s no longer matches the configuration: %w (hint: allow replacing it, or remove %s)",
				name, err, filepath.Join(opts.PinDir, name))
		}
		opts.Logf("dataplane: pinned map %s does not match the configuration; replacing it (its contents are lost)", name)
		if err := os.Remove(filepath.Join(opts.PinDir, name)); err != nil {
			return nil, fmt.Errorf("remove incompatible pinned map %s: %w", name, err)
		}
	}

	if opts.PinDir != "" {
		removed, err := d.removeStalePins(spec)
		if len(removed) > 0 {
			opts.Logf("dataplane: removed pinned maps of an older layout: %v", removed)
		}
		if err != nil {
			// Not fatal: the new maps are in place; the orphans only
			// hold memory.
			opts.Logf("dataplane: %v", err)
		}
		for name, p := range map[string]*ebpf.Program{pinProgXDP: d.objs.WlXdp, pinProgSweep: d.objs.WlSweep} {
			path := filepath.Join(opts.PinDir, name)
			// Replace the pin of an older program atomically enough:
			// links hold their own reference, so the window without a
			// pin affects nothing that forwards packets.
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				d.Close()
				return nil, fmt.Errorf("unpin old program %s: %w", path, err)
			}
			if err := p.Pin(path); err != nil {
				d.Close()
				return nil, fmt.Errorf("pin program %s: %w", path, err)
			}
		}
	}
	return d, nil
}

func (d *Dataplane) spec() (*ebpf.CollectionSpec, error) {
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("parse embedded BPF object: %w", err)
	}
	o := d.opts
	spec.Maps["wl_flows_v1"].MaxEntries = o.FlowTableSize
	spec.Maps["wl_events_v1"].MaxEntries = o.RingBytes
	if o.PinDir == "" {
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinNone
		}
	}
	vars := map[string]any{
		"wl_snippet_len":       o.SnippetLen,
		"wl_flow_sample":       o.FlowSample,
		"wl_idle_timeout_ns":   uint64(o.IdleTimeout),
		"wl_active_timeout_ns": uint64(o.ActiveTimeout),
		"wl_close_timeout_ns":  uint64(o.CloseTimeout),
		"wl_wakeup_bytes":      uint64(min(DefaultWakeupBytes, o.RingBytes/4)),
	}
	for name, v := range vars {
		vs, ok := spec.Variables[name]
		if !ok {
			return nil, fmt.Errorf("BPF object has no variable %s", name)
		}
		if err := vs.Set(v); err != nil {
			return nil, fmt.Errorf("set %s = %v: %w", name, v, err)
		}
	}
	return spec, nil
}

// incompatibleMap finds which pinned map of spec differs from its pin.
func incompatibleMap(spec *ebpf.CollectionSpec, dir string) string {
	for name, ms := range spec.Maps {
		if ms.Pinning != ebpf.PinByName {
			continue
		}
		path := filepath.Join(dir, name)
		m, err := ebpf.LoadPinnedMap(path, nil)
		if err != nil {
			continue
		}
		ok := m.Type() == ms.Type && m.KeySize() == ms.KeySize && m.ValueSize() == ms.ValueSize &&
			m.MaxEntries() == ms.MaxEntries && m.Flags() == ms.Flags
		m.Close()
		if !ok {
			return name
		}
	}
	return ""
}

func loadHint(err error) string {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Sprintf("\nverifier log (tail):\n%+v", ve)
	}
	if errors.Is(err, os.ErrPermission) {
		return " (hint: loading XDP programs needs root or CAP_BPF+CAP_NET_ADMIN)"
	}
	return ""
}

// Options returns the options in effect (defaults applied).
func (d *Dataplane) Options() Options { return d.opts }

// Clock converts BPF timestamps to wall-clock time.
func (d *Dataplane) Clock() *Clock { return d.clock }

// XDPProgram returns the packet program (for BPF_PROG_TEST_RUN in tests
// and benchmarks).
func (d *Dataplane) XDPProgram() *ebpf.Program { return d.objs.WlXdp }

// EventsMap returns the ring buffer map.
func (d *Dataplane) EventsMap() *ebpf.Map { return d.objs.WlEventsV1 }

// FlowsMap returns the flow table (for inspection by tests and tools).
func (d *Dataplane) FlowsMap() *ebpf.Map { return d.objs.WlFlowsV1 }

// Close releases this process's references. Pinned objects stay: attached
// programs keep forwarding and the blocklist keeps dropping.
func (d *Dataplane) Close() error {
	d.mu.Lock()
	var errs []error
	for name, a := range d.links {
		if err := a.l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close link of %s: %w", name, err))
		}
	}
	d.links = nil
	d.mu.Unlock()
	if err := d.objs.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Unpin removes every Wardline pin under dir: links (which detaches the
// programs from their interfaces), programs and maps. It is the uninstall
// path; the daemon never calls it on shutdown.
func Unpin(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read pin directory %s: %w", dir, err)
	}
	var errs []error
	for _, e := range entries {
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			errs = append(errs, fmt.Errorf("unpin %s: %w", e.Name(), err))
		}
	}
	return errors.Join(errs...)
}
