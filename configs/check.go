// SPDX-License-Identifier: Apache-2.0

package configs

import (
	"fmt"
	"strings"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/filter"
)

// Check runs Validate and the checks that need the event catalogue: each
// pipeline's events must name known events or sets (the closest valid one
// is suggested) and select something, and its filter must parse and name
// only fields the selected events have, with values of the right type. It
// returns every problem at once, as Problems, or nil. Whether each sink's
// plugin accepts its config is checked by pipeline.Validate, which starts
// the plugins.
func (c *Config) Check(cat *events.Catalogue) error {
	ps := c.validateAll()
	for i, p := range c.Pipelines {
		name := p.Name
		if name == "" {
			name = fmt.Sprintf("#%d", i)
		}
		key := fmt.Sprintf("pipelines[%d].", i)
		if len(p.Events) == 0 {
			continue // Validate reported it
		}
		ids, err := cat.Select(p.Events...)
		if err != nil {
			ps.add(c.Source, name, key+"events", "%v", err)
			continue
		}
		if len(ids) == 0 {
			ps.add(c.Source, name, key+"events", "%q select nothing: every event included is excluded again", strings.Join(p.Events, ","))
			continue
		}
		if p.Filter == "" {
			continue
		}
		defs := make([]*events.Definition, 0, len(ids))
		for _, id := range ids {
			d, _ := cat.ByID(id)
			defs = append(defs, d)
		}
		if _, err := filter.New(p.Filter, defs); err != nil {
			for _, e := range unjoin(err) {
				ps.add(c.Source, name, key+"filter", "%v", e)
			}
		}
	}
	return withoutEchoes(ps, len(c.loadProblems)).Err()
}

// withoutEchoes drops the problems after the first n (those loading
// found) that only repeat one of them: a key whose value had the wrong
// shape was left out of the config, so a later round may find it
// missing, or find what was under it wrong.
func withoutEchoes(ps Problems, n int) Problems {
	out := ps[:n:n]
	for _, p := range ps[n:] {
		echo := false
		for _, q := range ps[:n] {
			if q.Key != "" && q.File == p.File && related(q.Key, p.Key) {
				echo = true
				break
			}
		}
		if !echo {
			out = append(out, p)
		}
	}
	return out
}

// related reports whether key a is b, or one is inside the other.
func related(a, b string) bool {
	inside := func(k, parent string) bool {
		return strings.HasPrefix(k, parent) && len(k) > len(parent) && (k[len(parent)] == '.' || k[len(parent)] == '[')
	}
	return a == b || inside(a, b) || inside(b, a)
}

// unjoin splits an errors.Join result into its errors.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// AddFilter narrows every pipeline by expr, as --filter does: a pipeline
// with a filter of its own keeps the events both match.
func (c *Config) AddFilter(expr string) {
	for i := range c.Pipelines {
		p := &c.Pipelines[i]
		if p.Filter == "" {
			p.Filter = expr
		} else {
			p.Filter = "(" + p.Filter + ") and (" + expr + ")"
		}
	}
}
