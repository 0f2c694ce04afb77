package dataplane

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"

	"github.com/cilium/ebpf"
)

// versionedPin matches the pin of a versioned map: wl_<base>_v<N>.
var versionedPin = regexp.MustCompile(`^(wl_[a-z0-9_]+)_v([0-9]+)$`)

// listValV1Size is the value size of the _v1 lists (packets, bytes,
// added_ns: struct wl_list_val before expires_ns).
const listValV1Size = 24

// removeStalePins removes pinned maps of another layout version of a map
// this object defines (wl_block_src4_v1 once wl_block_src4_v2 exists): no
// program of this version uses them, and pinned they would keep their
// memory for ever on an upgraded box. Entries of an old block or allow list
// are first copied into the new one (without expiry, as they were), so an
// upgrade keeps the operator's blocks; a list whose entries could not all be
// copied keeps its pin (logged) and is tried again at the next load.
// It returns the names it removed.
func (d *Dataplane) removeStalePins(spec *ebpf.CollectionSpec) ([]string, error) {
	dir := d.opts.PinDir
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read pin directory %s: %w", dir, err)
	}
	current := map[string]string{} // base -> name in this object
	for name, ms := range spec.Maps {
		if m := versionedPin.FindStringSubmatch(name); m != nil && ms.Pinning == ebpf.PinByName {
			current[m[1]] = name
		}
	}
	lists := d.Lists()
	newLists := map[string]*ebpf.Map{}
	for i := range 3 {
		newLists[listPins4[i]], newLists[listPins6[i]] = lists.v4[i], lists.v6[i]
	}

	var removed []string
	var errs []error
	for _, e := range entries {
		m := versionedPin.FindStringSubmatch(e.Name())
		if m == nil || current[m[1]] == "" || current[m[1]] == e.Name() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		old, err := ebpf.LoadPinnedMap(path, nil)
		if err != nil {
			continue // not a map (or not ours to judge)
		}
		if dst := newLists[current[m[1]]]; dst != nil {
			n, err := copyListV1(old, dst)
			if err != nil {
				old.Close()
				d.opts.Logf("dataplane: stale list %s kept: copying its entries into %s failed after %d: %v", e.Name(), current[m[1]], n, err)
				continue
			}
			if n > 0 {
				d.opts.Logf("dataplane: copied %d entries of %s into %s", n, e.Name(), current[m[1]])
			}
		}
		old.Close()
		if err := os.Remove(path); err != nil {
			errs = append(errs, fmt.Errorf("remove stale pinned map %s: %w", path, err))
			continue
		}
		removed = append(removed, e.Name())
	}
	slices.Sort(removed)
	return removed, errors.Join(errs...)
}

// copyListV1 copies the entries of a _v1 list into its successor. Entries
// already present in dst are left as they are.
func copyListV1(old, dst *ebpf.Map) (int, error) {
	if old.Type() != ebpf.LPMTrie || old.KeySize() != dst.KeySize() || old.ValueSize() != listValV1Size {
		return 0, fmt.Errorf("unknown layout (%v, key %d, value %d bytes)", old.Type(), old.KeySize(), old.ValueSize())
	}
	var k, v []byte
	n := 0
	it := old.Iterate()
	for it.Next(&k, &v) {
		val := make([]byte, dst.ValueSize()) // expires_ns and anything newer: 0
		copy(val, v)
		err := dst.Update(k, val, ebpf.UpdateNoExist)
		if err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
			return n, err
		}
		n++
	}
	return n, it.Err()
}
