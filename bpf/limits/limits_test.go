// SPDX-License-Identifier: Apache-2.0

package limits

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestValidateRingBufferSize(t *testing.T) {
	page := os.Getpagesize()
	for _, ok := range []int{page, 2 * page, 4 << 20, DefaultRingBufferSize, MaxRingBufferSize} {
		if err := ValidateRingBufferSize(ok); err != nil {
			t.Errorf("ValidateRingBufferSize(%d) = %v, want nil", ok, err)
		}
	}
	for _, tc := range []struct {
		size int
		want string
	}{
		{0, "must be positive"},
		{-4096, "must be positive"},
		{page / 2, "power of two multiple of the page size"},
		{3 * page, "power of two multiple of the page size"},
		{page + 1, "power of two multiple of the page size"},
		{4<<20 + page, "power of two multiple of the page size"},
		{2 * MaxRingBufferSize, "at most"},
	} {
		err := ValidateRingBufferSize(tc.size)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ValidateRingBufferSize(%d) = %v, want error containing %q", tc.size, err, tc.want)
		}
	}
	// The hint suggests a valid size.
	err := ValidateRingBufferSize(3 * page)
	if err == nil || !strings.Contains(err.Error(), "e.g. "+strconv.Itoa(4*page)) {
		t.Errorf("hint missing or wrong: %v", err)
	}
}
