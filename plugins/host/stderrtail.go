package host

import (
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
	l.Logger.Debug(msg, args...)
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
