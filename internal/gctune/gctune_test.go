// SPDX-License-Identifier: Apache-2.0

package gctune

import (
	"math"
	"runtime/debug"
	"testing"
)

func TestApply(t *testing.T) {
	oldPercent := debug.SetGCPercent(100)
	oldLimit := debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() {
		debug.SetGCPercent(oldPercent)
		debug.SetMemoryLimit(oldLimit)
	})

	s := apply(func(string) (string, bool) { return "", false })
	if s != (Settings{GCPercent: Percent, MemoryLimit: MemoryLimit}) {
		t.Errorf("without environment: %+v", s)
	}
	if got := debug.SetGCPercent(Percent); got != Percent {
		t.Errorf("GOGC in effect %d, want %d", got, Percent)
	}
	if got := debug.SetMemoryLimit(-1); got != MemoryLimit {
		t.Errorf("memory limit in effect %d, want %d", got, MemoryLimit)
	}

	// As if GOGC=150 and GOMEMLIMIT=1GiB had been set: the runtime
	// applied them at start; Apply leaves them.
	debug.SetGCPercent(150)
	debug.SetMemoryLimit(1 << 30)
	s = apply(func(string) (string, bool) { return "x", true })
	if s != (Settings{GCPercent: 150, FromEnv: true, MemoryLimit: 1 << 30, LimitFromEnv: true}) {
		t.Errorf("with environment: %+v", s)
	}
	if got := debug.SetGCPercent(150); got != 150 {
		t.Errorf("GOGC in effect %d, want the user's 150", got)
	}
}
