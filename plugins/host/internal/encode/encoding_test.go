// SPDX-License-Identifier: Apache-2.0

package encode

import (
	"encoding/binary"
	"testing"
)

// TestAppendUvarint: the unrolled varint is binary.AppendUvarint's, at
// every length boundary.
func TestAppendUvarint(t *testing.T) {
	for shift := range 64 {
		for _, v := range []uint64{1<<shift - 1, 1 << shift, 1<<shift + 1} {
			if got, want := appendUvarint(nil, v), binary.AppendUvarint(nil, v); string(got) != string(want) {
				t.Errorf("appendUvarint(%d) = %x, want %x", v, got, want)
			}
		}
	}
}
