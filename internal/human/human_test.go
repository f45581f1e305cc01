// SPDX-License-Identifier: Apache-2.0

package human

import (
	"testing"
	"time"
)

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{999, "999ns"},
		{1500 * time.Microsecond, "1.5ms"},
		{1234567, "1.23ms"},
		{45678 * time.Nanosecond, "45.7µs"},
		{123456789012, "2m3s"},
		{3723 * time.Second, "1h2m0s"},
		{-1500 * time.Microsecond, "-1.5ms"},
		{10 * time.Second, "10s"},
	} {
		if got := Duration(tc.d); got != tc.want {
			t.Errorf("Duration(%d) = %q, want %q", int64(tc.d), got, tc.want)
		}
	}
}

func TestBytes(t *testing.T) {
	for _, tc := range []struct {
		n    uint64
		want string
	}{
		{0, "0 B"},
		{934, "934 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{1234, "1.2 KiB"},
		{1258291, "1.2 MiB"},
		{1048575, "1.0 MiB"},
		{5 << 30, "5.0 GiB"},
		{1 << 62, "4.0 EiB"},
	} {
		if got := Bytes(tc.n); got != tc.want {
			t.Errorf("Bytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestCountAndRate(t *testing.T) {
	for n, want := range map[uint64]string{0: "0", 999: "999", 1000: "1,000", 12345678: "12,345,678"} {
		if got := Count(n); got != want {
			t.Errorf("Count(%d) = %q, want %q", n, got, want)
		}
	}
	for v, want := range map[float64]string{0: "0.0", 12.34: "12.3", 99.96: "100.0", 1234.5: "1,235"} {
		if got := Rate(v); got != want {
			t.Errorf("Rate(%v) = %q, want %q", v, got, want)
		}
	}
}
