// SPDX-License-Identifier: Apache-2.0

package replay

import (
	"slices"
	"testing"
)

// TestConnList checks the intrusive list the connection table keeps its
// LRU order and its closed FIFO in: order after pushes, moves and removals,
// a connection in both lists at once, and removal of one not in the list.
func TestConnList(t *testing.T) {
	cs := make([]*connState, 5)
	for i := range cs {
		cs[i] = &connState{forgetAt: int64(i)}
	}
	lru, closed := connList{which: lruList}, connList{which: closedList}
	order := func(l *connList) []int64 {
		var got []int64
		for c := l.front(); c != nil; c = l.next(c) {
			got = append(got, c.forgetAt)
		}
		var back []int64 // walk back too: prev links must agree
		for c := l.tail; c != nil; c = c.link[l.which].prev {
			back = append(back, c.forgetAt)
		}
		slices.Reverse(back)
		if !slices.Equal(got, back) {
			t.Fatalf("forward %v, backward %v", got, back)
		}
		return got
	}
	check := func(l *connList, want ...int64) {
		t.Helper()
		if got := order(l); !slices.Equal(got, want) {
			t.Fatalf("list %d: %v, want %v", l.which, got, want)
		}
	}
	for _, c := range cs {
		lru.pushBack(c)
	}
	closed.pushBack(cs[3])
	closed.pushBack(cs[1])
	check(&lru, 0, 1, 2, 3, 4)
	check(&closed, 3, 1)
	lru.moveToBack(cs[0])
	lru.moveToBack(cs[0]) // already last
	lru.moveToBack(cs[2])
	check(&lru, 1, 3, 4, 0, 2)
	closed.remove(cs[3])
	closed.remove(cs[3]) // no longer in it
	closed.remove(cs[4]) // never in it
	check(&closed, 1)
	check(&lru, 1, 3, 4, 0, 2)
	lru.remove(cs[1])
	lru.remove(cs[2])
	lru.remove(cs[4])
	check(&lru, 3, 0)
	closed.remove(cs[1])
	check(&closed)
	if closed.front() != nil || closed.tail != nil {
		t.Fatal("an emptied list keeps a connection")
	}
	lru.pushBack(cs[1])
	check(&lru, 3, 0, 1)
}
