package enforce

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// expiryTolerance: a kernel element whose expiry differs from the desired
// one by less than this is left alone (nft keeps timeouts in jiffies;
// re-adding for rounding would churn).
const expiryTolerance = 1500 * time.Millisecond

// BackendStats describes one backend's last reconcile pass and the
// repairs so far.
type BackendStats struct {
	Name string `json:"name"`
	// Expected: desired elements that earlier passes had put into the
	// kernel; Enforced: how many of them the kernel still held when this
	// pass began. Ratio = Enforced/Expected (1 when nothing is
	// expected): below 1 means the kernel lost elements it should hold
	// (expired early, deleted externally), which this pass then repaired.
	Expected int     `json:"expected"`
	Enforced int     `json:"enforced"`
	Ratio    float64 `json:"ratio"`
	// Desired and Kernel are the element counts after the pass.
	Desired int `json:"desired"`
	Kernel  int `json:"kernel"`
	// Cumulative repairs.
	Added     uint64 `json:"added"`     // new desired elements written
	Refreshed uint64 `json:"refreshed"` // re-written with a different expiry
	Restored  uint64 `json:"restored"`  // expected but missing, written again
	Removed   uint64 `json:"removed"`   // no longer desired, removed
	Foreign   uint64 `json:"foreign"`   // in the kernel but never desired (external edits), removed
	Passes    uint64 `json:"passes"`
	Errors    uint64 `json:"errors"`

	LastError    string        `json:"last_error,omitempty"`
	LastPass     time.Time     `json:"last_pass"`
	LastDuration time.Duration `json:"last_duration_ns"`
}

// Reconciler makes each backend's kernel state equal to the desired
// elements: it adds what is missing, re-adds what has the wrong expiry
// and removes everything else, so expiries, restarts and external edits
// are repaired. A verifying pass reads the kernel back; between
// verifications (SetVerifyInterval: reading a large nft set is costly) a
// pass applies only the difference to what it last wrote. Add writes fresh
// elements at once, between passes.
type Reconciler struct {
	mu       sync.Mutex
	backends []Backend
	allow    []netip.Prefix
	allowSet map[string]bool              // backends whose allow list is in sync
	applied  map[string]map[Key]time.Time // what each backend holds, as last written or read
	verify   map[string]time.Duration     // minimum time between verifying passes
	verified map[string]time.Time         // last verifying pass
	stats    map[string]*BackendStats
}

// OverlapRejecter is a backend that cannot hold a prefix inside another of
// the same direction (nft interval sets); the Reconciler leaves out
// prefixes covered by a wider one until the wider one goes.
type OverlapRejecter interface{ RejectsOverlaps() bool }

// NewReconciler drives backends (in order: the first is the fastest).
func NewReconciler(backends ...Backend) *Reconciler {
	r := &Reconciler{backends: backends, allowSet: map[string]bool{}, applied: map[string]map[Key]time.Time{},
		verify: map[string]time.Duration{}, verified: map[string]time.Time{}, stats: map[string]*BackendStats{}}
	for _, b := range backends {
		r.applied[b.Name()] = map[Key]time.Time{}
		r.stats[b.Name()] = &BackendStats{Name: b.Name(), Ratio: 1}
	}
	return r
}

// SetVerifyInterval makes passes on the named backend read the kernel back
// at most every d (0: every pass).
func (r *Reconciler) SetVerifyInterval(name string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.verify[name] = d
}

// Backends returns the backend names.
func (r *Reconciler) Backends() []string {
	var out []string
	for _, b := range r.backends {
		out = append(out, b.Name())
	}
	return out
}

// SetAllow sets the never-block prefixes for every backend (applied on the
// next pass, and re-applied after any backend error).
func (r *Reconciler) SetAllow(p []netip.Prefix) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.allow = slices.Clone(p)
	clear(r.allowSet)
}

// Desired is the desired state: per backend name, element key → expiry
// (zero: none).
type Desired map[string]map[Key]time.Time

// Pass reconciles every backend once against want at now. Errors of one
// backend do not stop the others; they are returned joined.
func (r *Reconciler) Pass(want Desired, now time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for _, b := range r.backends {
		if err := r.pass(b, want[b.Name()], now); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (r *Reconciler) pass(b Backend, want map[Key]time.Time, now time.Time) error {
	name := b.Name()
	st := r.stats[name]
	start := time.Now()
	st.Passes++
	fail := func(err error) error {
		st.Errors++
		st.LastError = err.Error()
		r.allowSet[name] = false
		r.verified[name] = time.Time{} // verify on the next pass
		return fmt.Errorf("reconcile %s: %w", name, err)
	}
	if !r.allowSet[name] {
		if err := b.Allow(r.allow); err != nil {
			return fail(fmt.Errorf("never-block list: %w", err))
		}
		r.allowSet[name] = true
	}
	live := make(map[Key]time.Time, len(want))
	for k, exp := range want {
		if exp.IsZero() || exp.After(now) {
			live[k] = exp
		}
	}
	if or, ok := b.(OverlapRejecter); ok && or.RejectsOverlaps() {
		live = withoutCovered(live)
	}
	applied := r.applied[name]
	verifying := r.verified[name].IsZero() || now.Sub(r.verified[name]) >= r.verify[name]
	kernel := applied
	if verifying {
		have, err := b.Elements()
		if err != nil {
			return fail(err)
		}
		kernel = make(map[Key]time.Time, len(have))
		for _, e := range have {
			if !e.Expires.IsZero() && !e.Expires.After(now) {
				continue // expired, the kernel just has not collected it
			}
			kernel[e.Key()] = e.Expires
		}
	}
	expected, enforced := 0, 0
	var add, del []Element
	var nAdd, nRefresh, nRestore, nRemove, nForeign uint64
	for k, exp := range live {
		kexp, in := kernel[k]
		_, was := applied[k]
		if was {
			expected++
			if in {
				enforced++
			}
		}
		switch {
		case !in:
			add = append(add, Element{k.Prefix, k.Dir, exp})
			if was {
				nRestore++
			} else {
				nAdd++
			}
		case !sameExpiry(kexp, exp):
			add = append(add, Element{k.Prefix, k.Dir, exp})
			nRefresh++
		}
	}
	for k, kexp := range kernel {
		if _, ok := live[k]; ok {
			continue
		}
		if !kexp.IsZero() && !kexp.After(now) {
			continue
		}
		del = append(del, Element{k.Prefix, k.Dir, kexp})
		if _, was := applied[k]; was {
			nRemove++
		} else {
			nForeign++
		}
	}
	if len(add) > 0 || len(del) > 0 {
		if err := b.Apply(add, del); err != nil {
			return fail(err)
		}
	}
	r.applied[name] = live // the kernel now holds live
	if verifying {
		st.Expected, st.Enforced = expected, enforced
		st.Ratio = 1
		if expected > 0 {
			st.Ratio = float64(enforced) / float64(expected)
		}
		r.verified[name] = now
	}
	st.Desired, st.Kernel = len(live), len(live)
	st.Added += nAdd
	st.Refreshed += nRefresh
	st.Restored += nRestore
	st.Removed += nRemove
	st.Foreign += nForeign
	st.LastError = ""
	st.LastPass = now
	st.LastDuration = time.Since(start)
	return nil
}

// withoutCovered drops the prefixes that a wider prefix of the same
// direction covers.
func withoutCovered(want map[Key]time.Time) map[Key]time.Time {
	lens := map[Dir]map[int]bool{Src: {}, Dst: {}}
	for k := range want {
		lens[k.Dir][k.Prefix.Bits()] = true
	}
	out := make(map[Key]time.Time, len(want))
	for k, exp := range want {
		covered := false
		for bits := range lens[k.Dir] {
			if bits >= k.Prefix.Bits() {
				continue
			}
			wider, err := k.Prefix.Addr().Prefix(bits)
			if err != nil {
				continue
			}
			if _, ok := want[Key{wider, k.Dir}]; ok {
				covered = true
				break
			}
		}
		if !covered {
			out[k] = exp
		}
	}
	return out
}

// Add writes elements into the named backends at once, without reading
// the kernel back: the path from a fresh decision to the kernel. Elements
// already written with the same expiry are skipped; on a backend that
// rejects overlaps, an element inside a wider one waits for the next
// Pass, and narrower ones inside a new wide element are removed first.
func (r *Reconciler) Add(add map[string][]Element, now time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for _, b := range r.backends {
		name := b.Name()
		els := add[name]
		if len(els) == 0 {
			continue
		}
		st := r.stats[name]
		if !r.allowSet[name] { // the never-block list goes in before any block
			if err := b.Allow(r.allow); err != nil {
				st.Errors++
				st.LastError = err.Error()
				errs = append(errs, fmt.Errorf("never-block list of %s: %w", name, err))
				continue
			}
			r.allowSet[name] = true
		}
		applied := r.applied[name]
		or, _ := b.(OverlapRejecter)
		noOverlap := or != nil && or.RejectsOverlaps()
		var put, del []Element
		for _, e := range els {
			if exp, ok := applied[e.Key()]; ok && sameExpiry(exp, e.Expires) {
				continue
			}
			if noOverlap {
				if coveredBy(applied, e.Key()) {
					continue
				}
				if e.Prefix.Bits() < e.Prefix.Addr().BitLen() {
					for k, exp := range applied {
						if k.Dir == e.Dir && k != e.Key() && k.Prefix.Bits() > e.Prefix.Bits() && e.Prefix.Contains(k.Prefix.Addr()) {
							del = append(del, Element{k.Prefix, k.Dir, exp})
						}
					}
				}
			}
			put = append(put, e)
		}
		if len(put) == 0 {
			continue
		}
		if err := b.Apply(put, del); err != nil {
			st.Errors++
			st.LastError = err.Error()
			r.verified[name] = time.Time{}
			errs = append(errs, fmt.Errorf("apply to %s: %w", name, err))
			continue
		}
		for _, e := range del {
			delete(applied, e.Key())
		}
		for _, e := range put {
			if _, ok := applied[e.Key()]; !ok {
				st.Added++
			}
			applied[e.Key()] = e.Expires
		}
		st.Desired, st.Kernel = len(applied), len(applied)
	}
	return errors.Join(errs...)
}

// coveredBy reports whether a wider prefix of the same direction is in m.
func coveredBy(m map[Key]time.Time, k Key) bool {
	for bits := k.Prefix.Bits() - 1; bits >= 0; bits-- {
		w, err := k.Prefix.Addr().Prefix(bits)
		if err != nil {
			return false
		}
		if _, ok := m[Key{w, k.Dir}]; ok {
			return true
		}
	}
	return false
}

func sameExpiry(a, b time.Time) bool {
	if a.IsZero() || b.IsZero() {
		return a.IsZero() == b.IsZero()
	}
	d := a.Sub(b)
	return d < expiryTolerance && d > -expiryTolerance
}

// Stats returns every backend's stats.
func (r *Reconciler) Stats() []BackendStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []BackendStats
	for _, b := range r.backends {
		out = append(out, *r.stats[b.Name()])
	}
	return out
}

// Counters returns the per-element drop counters of the backends that
// count, by backend name.
func (r *Reconciler) Counters() map[string]map[Key]Counters {
	out := map[string]map[Key]Counters{}
	for _, b := range r.backends {
		if cb, ok := b.(CountingBackend); ok {
			if c, err := cb.Counters(); err == nil {
				out[b.Name()] = c
			}
		}
	}
	return out
}
