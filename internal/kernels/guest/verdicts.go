// SPDX-License-Identifier: Apache-2.0

package guest

import (
	"bytes"
	"strings"
	"sync"
)

// Verdicts are the tests a verbose test binary reported, by outcome.
// Names are full (TestX/sub for a subtest).
type Verdicts struct {
	Passed  int      `json:"passed"`
	Failed  []string `json:"failed,omitempty"`
	Skipped []string `json:"skipped,omitempty"`
}

// Watcher is an io.Writer for a test binary's verbose (-test.v) output:
// it collects the verdict lines ("--- PASS: TestX (0.01s)") and keeps the
// last lines. Safe for concurrent writes (stdout and stderr).
type Watcher struct {
	mu      sync.Mutex
	partial []byte
	v       Verdicts
	tail    []string
	keep    int
}

// NewWatcher returns a Watcher that keeps the last keep lines.
func NewWatcher(keep int) *Watcher { return &Watcher{keep: keep} }

// Write consumes output; it never fails.
func (w *Watcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.line(string(bytes.TrimRight(w.partial[:i], "\r")))
		w.partial = w.partial[i+1:]
	}
	// A line longer than this is not a verdict: keep the tail bounded.
	if len(w.partial) > 64<<10 {
		w.line(string(w.partial))
		w.partial = w.partial[:0]
	}
	return len(p), nil
}

// Close takes an unterminated last line into account.
func (w *Watcher) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.partial) > 0 {
		w.line(string(w.partial))
		w.partial = nil
	}
	return nil
}

// Verdicts returns what was collected.
func (w *Watcher) Verdicts() Verdicts {
	w.mu.Lock()
	defer w.mu.Unlock()
	v := w.v
	v.Failed = append([]string(nil), v.Failed...)
	v.Skipped = append([]string(nil), v.Skipped...)
	return v
}

// Tail returns the last lines seen.
func (w *Watcher) Tail() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.tail...)
}

func (w *Watcher) line(s string) {
	if w.keep > 0 {
		if len(w.tail) == w.keep {
			w.tail = append(w.tail[:0], w.tail[1:]...)
		}
		w.tail = append(w.tail, s)
	}
	outcome, name, ok := ParseVerdict(s)
	if !ok {
		return
	}
	switch outcome {
	case "PASS":
		w.v.Passed++
	case "FAIL":
		w.v.Failed = append(w.v.Failed, name)
	case "SKIP":
		w.v.Skipped = append(w.v.Skipped, name)
	}
}

// ParseVerdict reads one verdict line of verbose test output,
// "--- FAIL: TestX/sub (1.20s)" (indented for a subtest), and returns
// its outcome (PASS, FAIL or SKIP) and the test's name.
func ParseVerdict(line string) (outcome, name string, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimLeft(line, " \t"), "--- ")
	if !found {
		return "", "", false
	}
	outcome, rest, found = strings.Cut(rest, ": ")
	if !found || (outcome != "PASS" && outcome != "FAIL" && outcome != "SKIP") {
		return "", "", false
	}
	name, dur, found := strings.Cut(rest, " (")
	if !found || name == "" || strings.ContainsAny(name, " \t") || !strings.HasSuffix(dur, "s)") {
		return "", "", false
	}
	return outcome, name, true
}
