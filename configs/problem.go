// SPDX-License-Identifier: Apache-2.0

package configs

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong with a configuration: where (the file, the
// pipeline, the key) and what, including what would be valid.
type Problem struct {
	// File is the config's source: a path, "embedded default", or
	// "environment" for a FLOWTAP_* variable.
	File string
	// Pipeline names the pipeline the key belongs to; "" for capture, log
	// and top-level keys.
	Pipeline string
	// Key is the key's path, e.g. "pipelines[1].sinks[0].queue.policy", or
	// the environment variable's name.
	Key string
	// Line and Column locate a syntax error in File (from 1); 0 when the
	// problem is a key's.
	Line, Column int
	// Message says what is wrong and what would be valid.
	Message string
}

// Error renders the problem as 'FILE: pipeline "NAME": KEY: MESSAGE', or
// 'FILE:LINE:COLUMN: MESSAGE' for a syntax error.
func (p Problem) Error() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", p.Line, p.Column)
	}
	b.WriteString(": ")
	if p.Pipeline != "" {
		fmt.Fprintf(&b, "pipeline %q: ", p.Pipeline)
	}
	if p.Key != "" {
		b.WriteString(p.Key)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Problems are every problem found in one configuration. Validation
// collects them all, so a user fixes a config in one round, not one error
// per run.
type Problems []Problem

// Error lists the problems, one per line, after a count.
func (ps Problems) Error() string {
	var b strings.Builder
	if len(ps) == 1 {
		b.WriteString("invalid config: 1 problem:")
	} else {
		fmt.Fprintf(&b, "invalid config: %d problems:", len(ps))
	}
	for _, p := range ps {
		b.WriteString("\n  ")
		b.WriteString(p.Error())
	}
	return b.String()
}

// Err returns ps as an error, or nil when there are none.
func (ps Problems) Err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// add appends a problem.
func (ps *Problems) add(file, pipeline, key, format string, args ...any) {
	*ps = append(*ps, Problem{File: file, Pipeline: pipeline, Key: key, Message: fmt.Sprintf(format, args...)})
}

// sortKeys returns m's keys, sorted.
func sortKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
