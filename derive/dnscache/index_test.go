// SPDX-License-Identifier: Apache-2.0

package dnscache

import (
	"math/rand/v2"
	"testing"
)

// TestIndexAgainstMap runs random operations on a small, crowded index and
// on a Go map, and compares them after each.
func TestIndexAgainstMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	x := newIndex(64)
	model := map[addrKey]int32{}
	key := func() addrKey {
		var k addrKey
		k[10], k[11] = 0xff, 0xff
		k[15] = byte(r.IntN(96)) // few distinct keys: long probe runs, many deletions
		k[14] = byte(r.IntN(2))
		return k
	}
	for op := 0; op < 100_000; op++ {
		k := key()
		switch r.IntN(3) {
		case 0:
			if len(model) < 64 {
				v := int32(r.IntN(1000))
				x.set(k, v)
				model[k] = v
			}
		case 1:
			x.del(k)
			delete(model, k)
		}
		got, ok := x.get(k)
		want, wok := model[k]
		if ok != wok || got != want && ok {
			t.Fatalf("op %d: get(%v) = %d,%v; model %d,%v", op, k, got, ok, want, wok)
		}
		if x.n != len(model) {
			t.Fatalf("op %d: %d entries, model %d", op, x.n, len(model))
		}
	}
	for k, v := range model {
		if got, ok := x.get(k); !ok || got != v {
			t.Fatalf("get(%v) = %d,%v; want %d", k, got, ok, v)
		}
	}
}

// TestIndexSpreadsAddresses: 100,000 consecutive IPv4 and IPv6 addresses
// (what a cache holds) must not cluster; a hash that ignored some address
// bits made every lookup walk thousands of slots.
func TestIndexSpreadsAddresses(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		const n = 100_000
		x := newIndex(n)
		for i := 0; i < n; i++ {
			var k addrKey
			if v6 {
				k[0], k[1] = 0x20, 0x01
				k[13], k[14], k[15] = byte(i>>16), byte(i>>8), byte(i)
			} else {
				k[10], k[11] = 0xff, 0xff
				k[12], k[13], k[14], k[15] = 10, byte(i>>16), byte(i>>8), byte(i)
			}
			x.set(k, int32(i))
		}
		longest, run := 0, 0
		for i := range 2 * len(x.slots) { // twice round: runs may wrap
			if x.slots[i%len(x.slots)].used {
				run++
				longest = max(longest, run)
			} else {
				run = 0
			}
		}
		if longest > 64 {
			t.Errorf("v6=%v: a probe run of %d slots in a half-full table", v6, longest)
		}
	}
}
