package pcap

import (
	"math/rand/v2"
	"testing"
)

// TestFlowTableModel drives the table with random adds and deletes against
// a Go map, in a key space small enough that probe runs collide, wrap
// around the end of the slots and shift back on deletion, across growths.
func TestFlowTableModel(t *testing.T) {
	// Large: many growths. Small: 16 slots, 12 keys, at most 8 live, so
	// that probe runs often wrap around the end.
	t.Run("large", func(t *testing.T) { testFlowTable(t, newFlowTable(), 20_000, 12_000, 400_000) })
	small := newFlowTable()
	small.slots, small.mask = make([]uint64, 16), 15
	t.Run("small", func(t *testing.T) { testFlowTable(t, small, 12, 8, 300_000) })
}

func testFlowTable(t *testing.T, tab flowTable, keys uint32, live, steps int) {
	rng := rand.New(rand.NewPCG(7, 9))
	model := map[flowKey]int32{}
	key := func(n uint32) flowKey {
		var k flowKey
		k.saddr[15], k.saddr[14] = byte(n), byte(n>>8)
		k.sport, k.proto = uint16(n>>16), protoUDP
		return k
	}
	for step := 0; step < steps; step++ {
		k := key(rng.Uint32N(keys))
		i, ok := tab.find(&k)
		mi, mok := model[k]
		if ok != mok || (ok && i != mi) {
			t.Fatalf("step %d: find %v = %d,%v; model %d,%v", step, k, i, ok, mi, mok)
		}
		// Grow towards 12k live entries, then churn around it.
		if !ok && (len(model) < live || rng.IntN(2) == 0) {
			i = tab.add(&k)
			if tab.at(i).key != k {
				t.Fatalf("step %d: entry %d holds %v, want %v", step, i, tab.at(i).key, k)
			}
			model[k] = i
		} else if ok {
			tab.del(i)
			delete(model, k)
		}
		if tab.count != len(model) {
			t.Fatalf("step %d: %d entries, model %d", step, tab.count, len(model))
		}
	}
	for k, i := range model {
		if got, ok := tab.find(&k); !ok || got != i {
			t.Fatalf("lost %v: find = %d,%v want %d", k, got, ok, i)
		}
	}
	if used := int(tab.n) - len(tab.free); used != len(model) {
		t.Errorf("slab: %d allocated, %d free, %d live", tab.n, len(tab.free), len(model))
	}
	if 2*tab.count > len(tab.slots) {
		t.Errorf("load %d/%d above 1/2", tab.count, len(tab.slots))
	}
}
