// SPDX-License-Identifier: Apache-2.0

package host

import (
	"math"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// stderrTail keeps the last lines a plugin wrote to its standard error
// that were not log lines: go-plugin passes each to its logger's Debug
// with no arguments. Start quotes them when the plugin fails before the
// handshake, the moment they explain most (and the host's log, at info,
// drops them).
type stderrTail struct {
	mu    sync.Mutex
	lines []string
}

// maxTailLines and maxTailLine bound what stderrTail keeps.
const (
	maxTailLines = 5
	maxTailLine  = 300
)

func (t *stderrTail) add(line string) {
	if len(line) > maxTailLine {
		line = line[:maxTailLine] + "…"
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == maxTailLines {
		copy(t.lines, t.lines[1:])
		t.lines = t.lines[:maxTailLines-1]
	}
	t.lines = append(t.lines, line)
}

// String returns the kept lines, joined with " | "; "" if none.
func (t *stderrTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, " | ")
}

// tailLogger is the logger handed to go-plugin. go-plugin logs the
// plugin's standard error through l.Named(<binary's base name>): that
// logger also keeps every argument-less Debug message (a line that was not
// a log line) in tail.
type tailLogger struct {
	hclog.Logger
	tail *stderrTail
	// base is the plugin binary's base name; keep is set on the logger
	// named after it.
	base string
	keep bool
}

func (l tailLogger) Debug(msg string, args ...any) {
	if l.keep && len(args) == 0 {
		l.tail.add(msg)
	}
	l.Logger.Debug(msg, l.args(args)...)
}

func (l tailLogger) Trace(msg string, args ...any) { l.Logger.Trace(msg, l.args(args)...) }
func (l tailLogger) Info(msg string, args ...any)  { l.Logger.Info(msg, l.args(args)...) }
func (l tailLogger) Warn(msg string, args ...any)  { l.Logger.Warn(msg, l.args(args)...) }
func (l tailLogger) Error(msg string, args ...any) { l.Logger.Error(msg, l.args(args)...) }

// args tidies the key/value pairs of a plugin's log line (the logger
// named after its binary), as go-plugin hands them over from the
// plugin's JSON: every number arrives as a float64, which the text log
// would print as 5e+09, so whole numbers become integers again; and the
// pairs, which arrive in a map's random order, are sorted by key, with
// go-plugin's "timestamp" last.
func (l tailLogger) args(args []any) []any {
	if !l.keep || len(args) < 2 {
		return args
	}
	type kv struct {
		k string
		v any
	}
	pairs := make([]kv, 0, len(args)/2)
	for i := 0; i+1 < len(args); i += 2 {
		k, _ := args[i].(string)
		v := args[i+1]
		if f, ok := v.(float64); ok && f == math.Trunc(f) && math.Abs(f) < 1<<63 {
			v = int64(f)
		}
		pairs = append(pairs, kv{k, v})
	}
	slices.SortStableFunc(pairs, func(a, b kv) int {
		if (a.k == "timestamp") != (b.k == "timestamp") {
			if a.k == "timestamp" {
				return 1
			}
			return -1
		}
		return strings.Compare(a.k, b.k)
	})
	out := make([]any, 0, len(args))
	for _, p := range pairs {
		out = append(out, p.k, p.v)
	}
	if len(args)%2 == 1 {
		out = append(out, args[len(args)-1])
	}
	return out
}

func (l tailLogger) Named(name string) hclog.Logger {
	return tailLogger{l.Logger.Named(name), l.tail, l.base, name == l.base}
}

func (l tailLogger) ResetNamed(name string) hclog.Logger {
	return tailLogger{l.Logger.ResetNamed(name), l.tail, l.base, false}
}

func (l tailLogger) With(args ...any) hclog.Logger {
	return tailLogger{l.Logger.With(args...), l.tail, l.base, l.keep}
}
