// SPDX-License-Identifier: Apache-2.0

// Package pipeline wires flowtap together: it resolves every configured
// pipeline's selection into one shared plan, runs the kernel capture and the
// derivation stage once, and routes each event to the sinks of every
// pipeline that selected it.
package pipeline

import (
	"errors"
	"fmt"

	"github.com/flowtap/flowtap/configs"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/filter"
)

// Plan is the resolved form of a configuration: one plan per pipeline and
// the merged plan that says what runs.
type Plan struct {
	// Pipelines holds one resolved plan per configured pipeline, in
	// config order.
	Pipelines []PipelinePlan
	// Shared is what runs for all pipelines together: each base event is
	// produced and each derivation computed once.
	Shared *events.Plan
}

// PipelinePlan is one configured pipeline with its resolved selection.
type PipelinePlan struct {
	Config configs.Pipeline
	Plan   *events.Plan
	// Filter keeps the events of Plan.Emit it matches; nil keeps all.
	Filter *filter.Filter
}

// Resolve checks every pipeline's selection against the catalogue and
// builds the shared plan. All problems are reported at once, each naming
// its pipeline.
func Resolve(cat *events.Catalogue, cfg *configs.Config) (*Plan, error) {
	out := &Plan{}
	var errs []error
	var all []*events.Plan
	for _, p := range cfg.Pipelines {
		ids, err := cat.Select(p.Events...)
		if err != nil {
			errs = append(errs, fmt.Errorf("pipeline %q: events: %w", p.Name, err))
			continue
		}
		if len(ids) == 0 {
			errs = append(errs, fmt.Errorf("pipeline %q: events %q select nothing: every event is excluded again", p.Name, p.Events))
			continue
		}
		ep, err := cat.Resolve(ids...)
		if err != nil {
			errs = append(errs, fmt.Errorf("pipeline %q: %w", p.Name, err))
			continue
		}
		var f *filter.Filter
		if p.Filter != "" {
			defs := make([]*events.Definition, 0, len(ids))
			for _, id := range ids {
				d, _ := cat.ByID(id)
				defs = append(defs, d)
			}
			if f, err = filter.New(p.Filter, defs); err != nil {
				errs = append(errs, fmt.Errorf("pipeline %q: filter: %w", p.Name, err))
				continue
			}
		}
		out.Pipelines = append(out.Pipelines, PipelinePlan{Config: p, Plan: ep, Filter: f})
		all = append(all, ep)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("config %s: %w", cfg.Source, errors.Join(errs...))
	}
	shared, err := cat.Merge(all...)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", cfg.Source, err)
	}
	out.Shared = shared
	return out, nil
}
