// SPDX-License-Identifier: Apache-2.0

package pipeline

import (
	"fmt"
	"sync"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/replay"
)

// stage is what every base event goes through: the derivers of the
// deriver table that the run needs, and the router. Each of its steps (a
// batch, a tick, a swap, the close) holds its lock from start to end, so
// no event sees half of another step. The producer's goroutine runs the
// batches; Run's goroutine the ticks, swaps and the close.
type stage struct {
	mu     sync.Mutex
	router *router
	// steps are the derivers built for this run, in table order; step
	// i's deriver takes the events of byInput[id] that include i.
	steps   []step
	byInput [][]int
	// clock, for a producer whose events carry the only clock (a capture
	// file), ticks the derivers at each deadline the events' timestamps
	// pass; nil when Run's ticker does.
	clock *replay.Clock
	stats *Stats
	// counts counts the events the stage produced (base and derived) by
	// ID; wanted are those a plan needs, reported while still 0.
	counts []uint64
	wanted events.IDSet
	// reporters add what parts of the run hold to a Snapshot, under the
	// lock (derivers, addCache).
	reporters []func(*Snapshot)
}

// step is one deriver of the run.
type step struct {
	spec *deriverSpec
	d    deriver
	// on: the current plan (or an earlier one) needs it.
	on bool
}

// newStage builds the derivers the run can feed (their inputs produced),
// turning on those plan needs. eventClock makes the stage follow the
// events' timestamps instead of ticks. ids bounds the event IDs it counts
// (the catalogue's largest, plus one).
func newStage(plan *events.Plan, r *router, env *deriveEnv, eventClock bool, stats *Stats, ids int) (*stage, error) {
	s := &stage{router: r, byInput: make([][]int, ids), stats: stats, counts: make([]uint64, ids)}
	s.want(plan)
	env.emit = func(ev events.Event) {
		stats.DerivedEvents++
		s.count(ev.ID)
		r.route(ev)
	}
	env.report = func(f func(*Snapshot)) { s.reporters = append(s.reporters, f) }
	env.addCache = s.addCache
	env.selected = r.emits
	for i := range derivers {
		spec := &derivers[i]
		d, err := spec.new(env)
		if err != nil {
			return nil, err
		}
		if d == nil {
			continue
		}
		for _, id := range spec.inputs {
			if int(id) >= len(s.byInput) {
				return nil, fmt.Errorf("deriver %s: input event ID %d is outside the catalogue (%d IDs)", spec.name, id, len(s.byInput))
			}
			s.byInput[id] = append(s.byInput[id], len(s.steps))
		}
		s.steps = append(s.steps, step{spec: spec, d: d, on: spec.runs(plan)})
	}
	if eventClock {
		s.clock = replay.NewClock(s)
	}
	return s, nil
}

// deriveBatch routes a batch of base events and derives from them: one
// step.
func (s *stage) deriveBatch(evs []events.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ev := range evs {
		if s.clock != nil {
			s.clock.Advance(ev.Timestamp) // what fell due before this event comes first
		}
		s.stats.BaseEvents++
		s.count(ev.ID)
		s.router.route(ev)
		if int(ev.ID) >= len(s.byInput) {
			continue // no deriver takes it (counted, routed)
		}
		for _, i := range s.byInput[ev.ID] {
			if st := &s.steps[i]; st.on {
				st.d.handle(ev)
			}
		}
	}
	s.router.flush()
}

// count counts one event of id. The caller holds the lock.
func (s *stage) count(id events.ID) {
	if int(id) < len(s.counts) {
		s.counts[id]++
	}
}

// want marks the events plan needs (and the lost-record markers, when it
// needs the kernel) as reported even while none occurred.
func (s *stage) want(plan *events.Plan) {
	for _, id := range plan.Needed {
		s.wanted.Add(id)
	}
	if plan.NeedsKernel() {
		s.wanted.Add(events.IDRecordsLost)
	}
}

// tick advances the derivers' clocks to now: one step.
func (s *stage) tick(now int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Tick(now)
	s.router.flush()
}

// swap switches to the routes of a reloaded config, and turns on the
// derivers its plan needs: one step, between two batches.
func (s *stage) swap(sw *swap) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.router.routes = sw.routes
	s.want(sw.plan)
	for i := range s.steps {
		s.steps[i].on = s.steps[i].on || s.steps[i].spec.runs(sw.plan)
	}
}

// close ends what the derivers hold open at end (after what fell due by
// then), dependents first (the tracker still names its flows from the DNS
// cache), and delivers what that derived.
func (s *stage) close(end int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.clock != nil {
		s.clock.Advance(end)
	}
	for i := len(s.steps) - 1; i >= 0; i-- {
		if s.steps[i].on {
			s.steps[i].d.close(end)
		}
	}
	s.router.flush()
}

// NextDeadline is the earliest deadline of the derivers that run
// (replay.Ticker, for the clock).
func (s *stage) NextDeadline() (int64, bool) {
	var next int64
	found := false
	for _, st := range s.steps {
		if !st.on {
			continue
		}
		if t, ok := st.d.nextDeadline(); ok && (!found || t < next) {
			next, found = t, true
		}
	}
	return next, found
}

// Tick ticks the derivers that run (replay.Ticker, for the clock; tick
// for Run's ticker). The caller holds the lock.
func (s *stage) Tick(now int64) {
	for _, st := range s.steps {
		if st.on {
			st.d.tick(now)
		}
	}
}
