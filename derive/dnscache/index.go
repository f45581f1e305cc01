// SPDX-License-Identifier: Apache-2.0

package dnscache

import (
	"encoding/binary"
	"math/bits"
)

// index maps an address to the first entry of its list: an open-addressing
// hash table with linear probing, sized at creation to stay at most half
// full. A lookup usually costs one cache miss, where a Go map costs about
// two (control word and slot); with 100,000 addresses that is most of a
// lookup's time. Deletion shifts later entries of the probe run back, so
// there are no tombstones.
type index struct {
	slots []slot
	mask  uint32
	shift uint8 // 64 - log2(len(slots)): the hash's top bits pick the slot
	n     int
}

type slot struct {
	key  addrKey
	used bool
	idx  int32
}

// newIndex returns an index for up to n addresses.
func newIndex(n int) index {
	size := 1 << bits.Len(uint(2*n-1)) // a power of two >= 2n
	size = max(size, 8)
	return index{slots: make([]slot, size), mask: uint32(size - 1), shift: uint8(64 - bits.TrailingZeros(uint(size)))}
}

func (x *index) home(k *addrKey) uint32 {
	lo := binary.LittleEndian.Uint64(k[:8])
	hi := binary.LittleEndian.Uint64(k[8:])
	// Fibonacci hashing: the top bits of the product depend on every
	// bit of the key (an IPv4 address sits in the top half of hi).
	h := (hi ^ bits.RotateLeft64(lo*0xff51afd7ed558ccd, 31)) * 0x9e3779b97f4a7c15
	return uint32(h >> x.shift)
}

// get returns the entry of k.
func (x *index) get(k addrKey) (int32, bool) {
	for i := x.home(&k); ; i = (i + 1) & x.mask {
		s := &x.slots[i]
		if !s.used {
			return none, false
		}
		if s.key == k {
			return s.idx, true
		}
	}
}

// set sets the entry of k. The table never fills: the cache holds at most
// as many addresses as entries, and the index has twice as many slots.
func (x *index) set(k addrKey, idx int32) {
	for i := x.home(&k); ; i = (i + 1) & x.mask {
		s := &x.slots[i]
		if !s.used {
			*s = slot{key: k, used: true, idx: idx}
			x.n++
			return
		}
		if s.key == k {
			s.idx = idx
			return
		}
	}
}

// del removes k, if present.
func (x *index) del(k addrKey) {
	i := x.home(&k)
	for ; ; i = (i + 1) & x.mask {
		s := &x.slots[i]
		if !s.used {
			return
		}
		if s.key == k {
			break
		}
	}
	// Shift back every later entry of the run that may move to the hole.
	hole := i
	for j := (i + 1) & x.mask; x.slots[j].used; j = (j + 1) & x.mask {
		h := x.home(&x.slots[j].key)
		// The entry at j may fill the hole unless its home lies
		// cyclically in (hole, j].
		if (j > hole && (h <= hole || h > j)) || (j < hole && h <= hole && h > j) {
			x.slots[hole] = x.slots[j]
			hole = j
		}
	}
	x.slots[hole] = slot{}
	x.n--
}
