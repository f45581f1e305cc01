// SPDX-License-Identifier: Apache-2.0

package events

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Source says where instances of an event come from.
type Source uint8

// Event sources.
const (
	// SourceKernel events are produced by a kernel program (a base producer).
	SourceKernel Source = iota + 1
	// SourceDerived events are computed in user space from other events.
	SourceDerived
)

// String returns "kernel" or "derived".
func (s Source) String() string {
	switch s {
	case SourceKernel:
		return "kernel"
	case SourceDerived:
		return "derived"
	}
	return "unknown"
}

// FieldSpec declares one payload field: its name, its type as Tracee spells
// it (string, uint16, []string, ...) and what it means.
type FieldSpec struct {
	Name string `json:"name"`
	Type string `json:"type"`
	Doc  string `json:"description"`
}

// Definition is the declarative description of one event: the single place
// its name, sets, fields and dependencies are written down. Documentation,
// selection, validation and planning are all computed from it.
type Definition struct {
	ID          ID
	Name        string
	Version     string
	Description string
	Sets        []string
	Fields      []FieldSpec
	// Dependencies are the events this one is derived from. A derived event
	// has at least one; a kernel event has none.
	Dependencies []ID
	Source       Source
	// Producer names the component that emits a kernel event (e.g. the BPF
	// program set that must be loaded); Deriver names the derivation stage
	// that computes a derived event.
	Producer string
	Deriver  string
	// Internal events are plumbing: they are emitted only when selected by
	// their exact name, never through a set or a glob.
	Internal bool
	// UseCases say what the event is good for, one line each, for its
	// manual page.
	UseCases []string
}

// Catalogue is a validated, immutable set of event definitions.
type Catalogue struct {
	defs   []*Definition // sorted by ID
	byName map[string]*Definition
	byID   map[ID]*Definition
	sets   map[string][]ID
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// NewCatalogue validates defs and builds a catalogue. It fails, naming the
// offending event, on a duplicate ID or name, a malformed name, a missing
// or unknown dependency, a kernel event without a producer, a derived
// event without a deriver, or a dependency cycle.
func NewCatalogue(defs []Definition) (*Catalogue, error) {
	c := &Catalogue{
		byName: make(map[string]*Definition, len(defs)),
		byID:   make(map[ID]*Definition, len(defs)),
		sets:   make(map[string][]ID),
	}
	var errs []error
	for i := range defs {
		d := defs[i] // copy: the catalogue owns its definitions
		d.Sets = append([]string(nil), d.Sets...)
		d.Fields = append([]FieldSpec(nil), d.Fields...)
		d.Dependencies = append([]ID(nil), d.Dependencies...)
		d.UseCases = append([]string(nil), d.UseCases...)
		if !nameRE.MatchString(d.Name) {
			errs = append(errs, fmt.Errorf("event %d: name %q must match %s", d.ID, d.Name, nameRE))
			continue
		}
		if prev, dup := c.byID[d.ID]; dup {
			errs = append(errs, fmt.Errorf("event %q: id %d already used by %q", d.Name, d.ID, prev.Name))
			continue
		}
		if _, dup := c.byName[d.Name]; dup {
			errs = append(errs, fmt.Errorf("event %q: defined twice", d.Name))
			continue
		}
		switch d.Source {
		case SourceKernel:
			if d.Producer == "" || len(d.Dependencies) > 0 {
				errs = append(errs, fmt.Errorf("event %q: a kernel event needs a producer and no dependencies", d.Name))
			}
		case SourceDerived:
			if d.Deriver == "" || len(d.Dependencies) == 0 {
				errs = append(errs, fmt.Errorf("event %q: a derived event needs a deriver and at least one dependency", d.Name))
			}
		default:
			errs = append(errs, fmt.Errorf("event %q: source must be kernel or derived", d.Name))
		}
		for _, s := range d.Sets {
			if !nameRE.MatchString(s) {
				errs = append(errs, fmt.Errorf("event %q: set name %q must match %s", d.Name, s, nameRE))
			}
		}
		c.byID[d.ID] = &d
		c.byName[d.Name] = &d
		c.defs = append(c.defs, &d)
	}
	for _, d := range c.defs {
		for _, dep := range d.Dependencies {
			if _, ok := c.byID[dep]; !ok {
				errs = append(errs, fmt.Errorf("event %q: depends on unknown event id %d", d.Name, dep))
			}
		}
		if !d.Internal {
			for _, s := range d.Sets {
				c.sets[s] = append(c.sets[s], d.ID)
			}
		}
	}
	for s := range c.sets {
		if _, clash := c.byName[s]; clash {
			errs = append(errs, fmt.Errorf("set %q: has the same name as an event", s))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("event catalogue: %w", errors.Join(errs...))
	}
	if err := c.checkCycles(); err != nil {
		return nil, fmt.Errorf("event catalogue: %w", err)
	}
	sort.Slice(c.defs, func(i, j int) bool { return c.defs[i].ID < c.defs[j].ID })
	return c, nil
}

// checkCycles rejects a dependency cycle, naming its path.
func (c *Catalogue) checkCycles() error {
	const (
		unvisited = iota
		visiting
		done
	)
	state := make(map[ID]int, len(c.defs))
	var stack []string
	var visit func(d *Definition) error
	visit = func(d *Definition) error {
		switch state[d.ID] {
		case visiting:
			start := 0
			for i, n := range stack {
				if n == d.Name {
					start = i
				}
			}
			return fmt.Errorf("dependency cycle: %s -> %s", strings.Join(stack[start:], " -> "), d.Name)
		case done:
			return nil
		}
		state[d.ID] = visiting
		stack = append(stack, d.Name)
		for _, dep := range d.Dependencies {
			if err := visit(c.byID[dep]); err != nil {
				return err
			}
		}
		stack = stack[:len(stack)-1]
		state[d.ID] = done
		return nil
	}
	ids := make([]*Definition, len(c.defs))
	copy(ids, c.defs)
	sort.Slice(ids, func(i, j int) bool { return ids[i].ID < ids[j].ID })
	for _, d := range ids {
		if err := visit(d); err != nil {
			return err
		}
	}
	return nil
}

// Lookup returns the definition with the given name.
func (c *Catalogue) Lookup(name string) (*Definition, bool) {
	d, ok := c.byName[name]
	return d, ok
}

// ByID returns the definition with the given ID.
func (c *Catalogue) ByID(id ID) (*Definition, bool) {
	d, ok := c.byID[id]
	return d, ok
}

// Name returns the name of event id, or "event_<id>" for an unknown ID so a
// sink never prints an empty name.
func (c *Catalogue) Name(id ID) string {
	if d, ok := c.byID[id]; ok {
		return d.Name
	}
	return fmt.Sprintf("event_%d", id)
}

// Definitions returns all definitions ordered by ID. The returned
// definitions must not be modified.
func (c *Catalogue) Definitions() []*Definition {
	return append([]*Definition(nil), c.defs...)
}

// Sets returns the names of all sets, sorted.
func (c *Catalogue) Sets() []string {
	out := make([]string, 0, len(c.sets))
	for s := range c.sets {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// SetMembers returns the IDs of the public events in set s.
func (c *Catalogue) SetMembers(s string) []ID {
	return append([]ID(nil), c.sets[s]...)
}
