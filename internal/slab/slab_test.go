// SPDX-License-Identifier: Apache-2.0

package slab

import "testing"

func TestCarve(t *testing.T) {
	var s []int
	seen := map[*int]bool{}
	for i := range 3 * Size {
		p := Carve(&s)
		if *p != 0 {
			t.Fatalf("value %d not zeroed: %d", i, *p)
		}
		if seen[p] {
			t.Fatalf("value %d handed out twice", i)
		}
		seen[p] = true
		*p = i + 1
	}
	if n := testing.AllocsPerRun(Size, func() { Carve(&s) }); n > 1.0/Size*2 {
		t.Errorf("%.3f allocations per value, want one per slab of %d", n, Size)
	}
}
