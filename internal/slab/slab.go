// SPDX-License-Identifier: Apache-2.0

// Package slab hands out values carved from slabs: one allocation for
// many short-lived values of one type, such as the payloads a producer
// makes for every record or packet. A value kept alive keeps its whole
// slab alive (a few KiB), so slabs suit values that die together.
package slab

// Size is how many values one slab holds.
const Size = 64

// Carve returns the next zeroed value of *s, starting a new slab of Size
// values when *s is used up. s is the carver's state: a nil slice is a
// fresh one. Not safe for concurrent use.
func Carve[T any](s *[]T) *T {
	if len(*s) == 0 {
		*s = make([]T, Size)
	}
	p := &(*s)[0]
	*s = (*s)[1:]
	return p
}
