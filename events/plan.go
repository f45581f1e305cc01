// SPDX-License-Identifier: Apache-2.0

package events

import (
	"fmt"
	"sort"
)

// IDSet is a fixed-size bitmap of event IDs: membership tests on the hot
// path cost one load and a mask, with no hashing.
type IDSet struct {
	bits [1 << 16 / 64]uint64
}

// Add puts id in the set.
func (s *IDSet) Add(id ID) { s.bits[id/64] |= 1 << (id % 64) }

// Has reports whether id is in the set.
func (s *IDSet) Has(id ID) bool { return s.bits[id/64]&(1<<(id%64)) != 0 }

// Plan is the resolved form of a selection: what to emit, and everything
// that must run to produce it.
type Plan struct {
	// Emit are the selected events, in ID order: only these reach sinks.
	Emit []ID
	// Needed are the selected events and all their transitive
	// dependencies, dependencies first.
	Needed []ID
	// Producers are the kernel producers to start, sorted. Empty when the
	// selection needs nothing from the kernel: then no BPF program loads.
	Producers []string
	// Derivers are the derivation stages to run, in dependency order.
	Derivers []string

	emit IDSet
}

// Emits reports whether the plan delivers event id to sinks.
func (p *Plan) Emits(id ID) bool { return p.emit.Has(id) }

// NeedsKernel reports whether the plan loads any kernel program.
func (p *Plan) NeedsKernel() bool { return len(p.Producers) > 0 }

// Needs reports whether a producer or deriver with the given name runs.
func (p *Plan) Needs(component string) bool {
	for _, n := range p.Producers {
		if n == component {
			return true
		}
	}
	for _, n := range p.Derivers {
		if n == component {
			return true
		}
	}
	return false
}

// Resolve turns selected event IDs into a plan, pulling in every
// dependency. The catalogue is acyclic (NewCatalogue checks), so a
// depth-first walk yields dependencies before dependents.
func (c *Catalogue) Resolve(selected ...ID) (*Plan, error) {
	p := &Plan{}
	seen := map[ID]bool{}
	var visit func(id ID) error
	visit = func(id ID) error {
		if seen[id] {
			return nil
		}
		seen[id] = true
		d, ok := c.byID[id]
		if !ok {
			return fmt.Errorf("resolve selection: unknown event id %d", id)
		}
		for _, dep := range d.Dependencies {
			if err := visit(dep); err != nil {
				return err
			}
		}
		p.Needed = append(p.Needed, id)
		switch d.Source {
		case SourceKernel:
			p.Producers = appendUnique(p.Producers, d.Producer)
		case SourceDerived:
			p.Derivers = appendUnique(p.Derivers, d.Deriver)
		}
		return nil
	}
	sorted := append([]ID(nil), selected...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	for _, id := range sorted {
		if err := visit(id); err != nil {
			return nil, err
		}
		if !p.emit.Has(id) {
			p.emit.Add(id)
			p.Emit = append(p.Emit, id)
		}
	}
	sort.Strings(p.Producers)
	return p, nil
}

// Merge returns a plan that runs everything any of the plans needs and
// emits the union of what they emit. Pipelines share one capture and one
// derivation this way.
func (c *Catalogue) Merge(plans ...*Plan) (*Plan, error) {
	var ids []ID
	for _, p := range plans {
		ids = append(ids, p.Emit...)
	}
	return c.Resolve(ids...)
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}
