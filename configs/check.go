package configs

import (
	"errors"
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
	var ps Problems
	if err := c.Validate(); err != nil {
		errors.As(err, &ps)
	}
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
	return ps.Err()
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
