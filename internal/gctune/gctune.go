// SPDX-License-Identifier: Apache-2.0

// Package gctune sets the Go garbage collector for flowtap's agent
// process, unless the user set it through the environment.
//
// flowtap's live heap is small and steady (the flow table, the DNS
// cache), while every kernel record and every event it derives is a short
// allocation: with Go's default GOGC of 100 the collector runs often and
// takes about a fifth of the agent's CPU under a connection storm. A
// higher GOGC runs it a quarter as often; a soft memory limit keeps the
// heap bounded anyway, as the collector works harder near it.
package gctune

import (
	"os"
	"runtime/debug"
)

const (
	// Percent is the GOGC flowtap runs with unless GOGC is set.
	Percent = 400
	// MemoryLimit is the soft memory limit (bytes) flowtap runs with
	// unless GOMEMLIMIT is set. A flow table or DNS cache configured far
	// beyond the defaults may need a higher one: set GOMEMLIMIT.
	MemoryLimit = 512 << 20
)

// Settings says what Apply set, for the log.
type Settings struct {
	// GCPercent is the GOGC in effect; FromEnv says GOGC set it.
	GCPercent int
	FromEnv   bool
	// MemoryLimit is the soft limit in bytes; LimitFromEnv says
	// GOMEMLIMIT set it.
	MemoryLimit  int64
	LimitFromEnv bool
}

// Apply sets GOGC to Percent and the memory limit to MemoryLimit, each
// unless its environment variable is set (the runtime then has applied
// the user's value already), and returns what is in effect.
func Apply() Settings {
	return apply(os.LookupEnv)
}

func apply(lookup func(string) (string, bool)) Settings {
	var s Settings
	if _, set := lookup("GOGC"); set {
		s.FromEnv = true
		s.GCPercent = debug.SetGCPercent(-1) // read it back...
		debug.SetGCPercent(s.GCPercent)      // ...and restore it
	} else {
		debug.SetGCPercent(Percent)
		s.GCPercent = Percent
	}
	if _, set := lookup("GOMEMLIMIT"); set {
		s.LimitFromEnv = true
		s.MemoryLimit = debug.SetMemoryLimit(-1) // a negative value only reads it
	} else {
		debug.SetMemoryLimit(MemoryLimit)
		s.MemoryLimit = MemoryLimit
	}
	return s
}
