// SPDX-License-Identifier: Apache-2.0

// Package human renders numbers for people: durations to three
// significant digits (1.5ms, 2m3s), byte counts in binary units (934 B,
// 1.2 MiB), counts with thousands separators (12,345) and rates. The
// stdout sink's table and 'flowtap status' use it; JSON keeps the raw
// numbers.
package human

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// Duration renders d rounded to three significant digits, as Go writes
// durations: 1.23ms, 45.6µs, 2m3s, 1h2m0s. Below a microsecond it keeps
// the nanoseconds.
func Duration(d time.Duration) string {
	if d < 0 {
		return "-" + Duration(-d)
	}
	digits := len(strconv.FormatInt(int64(d), 10))
	if digits > 3 {
		unit := time.Duration(math.Pow10(digits - 3))
		d = d.Round(unit)
	}
	return d.String()
}

// Bytes renders n bytes: below 1 KiB exactly ("934 B"), above in the
// largest binary unit that keeps a whole part, to one decimal ("1.2 MiB").
func Bytes(n uint64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return strconv.FormatUint(n, 10) + " B"
	}
	v, i := float64(n)/1024, 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	// 1023.96 KiB rounds to "1024.0 KiB": go up a unit instead.
	if math.Round(v*10)/10 >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, units[i])
}

// Count renders n with a comma between each group of three digits:
// 12,345,678.
func Count(n uint64) string {
	s := strconv.FormatUint(n, 10)
	out := make([]byte, 0, len(s)+len(s)/3)
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// Rate renders a per-second rate: one decimal below 100, whole numbers
// with separators above.
func Rate(v float64) string {
	if v < 100 {
		return strconv.FormatFloat(math.Round(v*10)/10, 'f', 1, 64)
	}
	return Count(uint64(math.Round(v)))
}
