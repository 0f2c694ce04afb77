package pcap

import (
	"encoding/binary"
	"hash/maphash"
	"math/bits"
)

// flowTable holds the Tracker's flows. The entries live in a slab of
// fixed-size chunks, so growing never copies or over-allocates (a single
// slice at 1M flows held up to 25 % spare capacity and, while growing,
// both copies); the keys live only there. The index is an open-addressing
// hash table (linear probing, backward-shift deletion, load at most 1/2)
// of 8-byte slots, each holding the entry's slab index and 32 bits of its
// key's hash, so a probe touches the slab only on a likely match. At 1M
// flows that is 16 MiB of index instead of a Go map's ~75 MB (the key
// copied into every slot, and its spare capacity).
type flowTable struct {
	chunks [][]flow
	n      int32   // slab entries ever allocated
	free   []int32 // slab entries to reuse
	count  int     // live entries
	slots  []uint64
	mask   uint32
	seed   [3]uint64 // per table, so that crafted captures cannot aim at one probe run
}

const (
	chunkShift    = 14 // 16384 flows per chunk (~2.4 MiB)
	chunkMask     = 1<<chunkShift - 1
	minTableSlots = 1 << 12
)

func newFlowTable() flowTable {
	var h maphash.Hash
	var seed [3]uint64
	for i := range seed {
		seed[i] = h.Sum64() | 1
		h.WriteByte(byte(i))
	}
	return flowTable{slots: make([]uint64, minTableSlots), mask: minTableSlots - 1, seed: seed}
}

// at returns entry i of the slab.
func (t *flowTable) at(i int32) *flow { return &t.chunks[i>>chunkShift][i&chunkMask] }

// hash is 32 bits of k's hash: the low bits choose the home slot. Three
// 128-bit multiplications of the key's words with the seed, folded (the
// mixing of wyhash); maphash.Comparable cost 5 % of offline analysis.
func (t *flowTable) hash(k *flowKey) uint32 {
	le := binary.LittleEndian
	a := mum(le.Uint64(k.saddr[0:])^t.seed[0], le.Uint64(k.saddr[8:])^t.seed[1])
	b := mum(le.Uint64(k.daddr[0:])^t.seed[2], le.Uint64(k.daddr[8:])^t.seed[0])
	w := uint64(k.sport) | uint64(k.dport)<<16 | uint64(k.vlan[0])<<32 | uint64(k.vlan[1])<<48
	c := mum(w^t.seed[1], uint64(k.proto)^t.seed[2])
	return uint32(mum(a^t.seed[0], b^c))
}

// mum folds the 128-bit product of a and b.
func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

func slot(h uint32, i int32) uint64 { return uint64(h)<<32 | uint64(uint32(i)+1) }
func slotIndex(s uint64) int32      { return int32(uint32(s)) - 1 }

// find returns the slab index of k's entry.
func (t *flowTable) find(k *flowKey) (int32, bool) {
	h := t.hash(k)
	for p := h & t.mask; ; p = (p + 1) & t.mask {
		s := t.slots[p]
		if s == 0 {
			return none, false
		}
		if uint32(s>>32) == h {
			if i := slotIndex(s); t.at(i).key == *k {
				return i, true
			}
		}
	}
}

// add allocates a slab entry for k, which must not be in the table, and
// indexes it; the entry is zero but for its key.
func (t *flowTable) add(k *flowKey) int32 {
	var i int32
	if n := len(t.free); n > 0 {
		i = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		i = t.n
		if int(i>>chunkShift) == len(t.chunks) {
			t.chunks = append(t.chunks, make([]flow, 1<<chunkShift))
		}
		t.n++
	}
	*t.at(i) = flow{key: *k}
	if 2*(t.count+1) > len(t.slots) {
		t.grow()
	}
	t.place(slot(t.hash(k), i))
	t.count++
	return i
}

// place puts s into the first empty slot from its home.
func (t *flowTable) place(s uint64) {
	p := uint32(s>>32) & t.mask
	for t.slots[p] != 0 {
		p = (p + 1) & t.mask
	}
	t.slots[p] = s
}

func (t *flowTable) grow() {
	old := t.slots
	t.slots = make([]uint64, 2*len(old))
	t.mask = uint32(len(t.slots) - 1)
	for _, s := range old {
		if s != 0 {
			t.place(s)
		}
	}
}

// del removes entry i from the index and returns it to the slab.
func (t *flowTable) del(i int32) {
	h := t.hash(&t.at(i).key)
	p := h & t.mask
	for slotIndex(t.slots[p]) != i {
		p = (p + 1) & t.mask
	}
	// Backward-shift deletion: pull later entries of the probe run into
	// the hole unless their home lies cyclically after the hole.
	for {
		t.slots[p] = 0
		q := p
		for {
			q = (q + 1) & t.mask
			s := t.slots[q]
			if s == 0 {
				t.count--
				t.free = append(t.free, i)
				return
			}
			home := uint32(s>>32) & t.mask
			// The entry at q may move to p unless home is in (p, q].
			if (q > p && (home <= p || home > q)) || (q < p && home <= p && home > q) {
				t.slots[p] = s
				p = q
				break
			}
		}
	}
}
