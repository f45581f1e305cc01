// SPDX-License-Identifier: Apache-2.0

package pipeline

import (
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/filter"
)

// router hands each event to the queues of the sinks whose pipeline
// selected it. Lost-record markers go to every pipeline that consumes
// kernel events, selected or not: they say its data has a gap.
type router struct {
	routes []route
	host   string
	// enrich fills each event's workload and process fields before the
	// filters see it; nil when workload identity is off.
	enrich *runningIdentity
	match  events.Event // the event being matched against a filter
}

type route struct {
	plan   *events.Plan
	filter *filter.Filter // nil: every selected event
	sinks  []*target
}

func newRouter(plan *Plan, sinks []*target, host string) *router {
	r := &router{host: host}
	for i, pp := range plan.Pipelines {
		rt := route{plan: pp.Plan, filter: pp.Filter}
		for _, s := range sinks {
			if s.pipeline == i {
				rt.sinks = append(rt.sinks, s)
			}
		}
		r.routes = append(r.routes, rt)
	}
	return r
}

func (r *router) route(ev events.Event) {
	ev.Context.HostName = r.host
	if r.enrich != nil {
		r.enrich.Enrich(&ev.Context, ev.Timestamp)
	}
	for i := range r.routes {
		rt := &r.routes[i]
		if !rt.plan.Emits(ev.ID) && !(ev.ID == events.IDRecordsLost && rt.plan.NeedsKernel()) {
			continue
		}
		// Lost-record markers pass every filter: they report a gap.
		if rt.filter != nil && ev.ID != events.IDRecordsLost {
			// Matched through the router's own copy: a pointer to ev
			// would move every routed event to the heap.
			r.match = ev
			if !rt.filter.Match(&r.match) {
				continue
			}
		}
		for _, s := range rt.sinks {
			s.pending = append(s.pending, ev)
		}
	}
}

// flush queues what route gave each sink since the last flush, in one
// hand-over per sink. Each derivation step (a batch, a tick, the close)
// ends with it, so a swap of routes finds nothing pending.
func (r *router) flush() {
	for i := range r.routes {
		for _, s := range r.routes[i].sinks {
			if len(s.pending) > 0 {
				s.enqueue(s.pending)
				clear(s.pending) // keep no payload alive
				s.pending = s.pending[:0]
			}
		}
	}
}
