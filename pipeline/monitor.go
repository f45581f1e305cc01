// SPDX-License-Identifier: Apache-2.0

package pipeline

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/flowtap/flowtap/bpf"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/plugins/supervise"
)

// Monitor lets other goroutines watch a Run: the metrics endpoint, the
// readiness check, the periodic stats line and 'flowtap status' all read
// its Snapshot. Create one with NewMonitor and hand it to one Run in
// Options.Monitor; it answers before Run has started (PhaseStarting:
// nothing attached yet) and after it returned (PhaseStopped: the final
// counters). A Monitor is safe for concurrent use.
type Monitor struct {
	mu    sync.Mutex
	phase Phase
	r     *run // nil until Run has assembled its parts

	reloadsOK, reloadsFailed atomic.Uint64
}

// NewMonitor returns a Monitor of a Run that has not started.
func NewMonitor() *Monitor { return &Monitor{} }

// Phase is where a Run stands.
type Phase int

// Phases of a Run, in order.
const (
	// PhaseStarting: Run is checking privileges, starting the sinks and
	// attaching the capture.
	PhaseStarting Phase = iota
	// PhaseRunning: events flow.
	PhaseRunning
	// PhaseStopping: the capture stopped; open flows end and the sinks
	// drain.
	PhaseStopping
	// PhaseStopped: Run returned.
	PhaseStopped
)

// String is the phase's name: starting, running, stopping or stopped.
func (p Phase) String() string {
	switch p {
	case PhaseStarting:
		return "starting"
	case PhaseRunning:
		return "running"
	case PhaseStopping:
		return "stopping"
	case PhaseStopped:
		return "stopped"
	}
	return fmt.Sprintf("phase(%d)", int(p))
}

// Snapshot is a Run's state and counters at one moment. Counters count
// from the Run's start; those of a sink start again when a reload starts
// it anew.
type Snapshot struct {
	Phase   Phase
	Capture CaptureStatus
	// Events counts the events the run produced, base events from the
	// producer and derived ones, by ID order: every event the config's
	// plan needs (0 until the first), and any other that occurred.
	Events []EventCount
	// Flows is the flow tracker's table; Running is false when no
	// selected event needs it.
	Flows FlowTableStatus
	// Caches are the run's caches: "dns" (derive/dnscache) and any other
	// part of the run registered (stage.addCache).
	Caches []CacheStatus
	// Sinks are the running sinks, in config order (not those a reload
	// retired).
	Sinks   []SinkStatus
	Reloads ReloadCounts
}

// CaptureStatus is the producer of base events.
type CaptureStatus struct {
	// Source is "kernel" (the BPF capture), "file" (a replayed capture
	// file) or "none" (a selection that needs no kernel program); ""
	// before Run has opened it.
	Source string
	// Attached: the kernel programs are attached and their ring buffer
	// read (Source "kernel" only).
	Attached bool
	// RingBufferBytes is the ring buffer's size.
	RingBufferBytes int
	// Records are the ring buffer records read; LostRecords those the
	// kernel could not write (the ring was full).
	Records, LostRecords uint64
	// Features are the capture's features and whether each is available.
	Features []bpf.FeatureStatus
	// ProgramStatsEnabled reports kernel.bpf_stats_enabled: only then do
	// the programs' Runs and RunTime count (flowtap never turns it on).
	ProgramStatsEnabled bool
	// Programs are the loaded programs' kernel counters.
	Programs []bpf.ProgramStats
}

// EventCount is how many events of one type a run produced.
type EventCount struct {
	ID    events.ID
	Name  string
	Count uint64
}

// FlowTableStatus is the flow tracker's table.
type FlowTableStatus struct {
	// Running: the flow tracker runs in this run.
	Running bool
	// Entries are the connections tracked now, Capacity the most.
	Entries, Capacity int
	// EvictedIdle and EvictedFull count connections evicted by the idle
	// timeout and because the table was full.
	EvictedIdle, EvictedFull uint64
}

// CacheStats are the counters of a cache of the run.
type CacheStats struct {
	Entries   int    // entries held now
	Hits      uint64 // lookups that found an entry
	Misses    uint64 // lookups that found none
	Evictions uint64 // entries dropped to make room
	Expiries  uint64 // entries dropped because they expired
}

// CacheStatus is one named cache's counters.
type CacheStatus struct {
	Name string
	CacheStats
}

// SinkStatus is one running sink.
type SinkStatus struct {
	// Pipeline is the pipeline's name, Index the sink's place in its
	// list, Plugin the plugin as configured.
	Pipeline string
	Index    int
	Plugin   string
	// Name tells the pipeline's sinks apart (the metrics' sink label):
	// the plugin's name (a built-in sink's, or its binary's file name),
	// with "-<index>" added when the pipeline has more than one sink of
	// that name.
	Name  string
	State supervise.State
	// QueueDepth events wait in the sink's queue of QueueCapacity.
	QueueDepth, QueueCapacity int
	supervise.Counters
	// Err says why the sink failed ("" unless State is Failed).
	Err string
}

// ReloadCounts count the config reloads (SIGHUP) applied and rejected.
type ReloadCounts struct {
	OK, Failed uint64
}

// NotReady is one part of a run that is not ready (the /readyz body).
type NotReady struct {
	// Component is "run", "capture" or "sink".
	Component string `json:"component"`
	// Pipeline and Sink name a sink (SinkStatus.Name).
	Pipeline string `json:"pipeline,omitempty"`
	Sink     string `json:"sink,omitempty"`
	// State is the phase of the run or the sink's state.
	State string `json:"state,omitempty"`
	// Reason says what is wrong, for people.
	Reason string `json:"reason"`
}

// NotReady lists what keeps the run from being ready; empty means ready:
// the run is running, the kernel capture (if it uses one) is attached,
// and every sink is up. A sink that is retrying after a failure, or that
// failed (on_failure: disable keeps the run going without it), is not.
func (s Snapshot) NotReady() []NotReady {
	var out []NotReady
	switch s.Phase {
	case PhaseStarting:
		out = append(out, NotReady{Component: "capture", State: s.Phase.String(), Reason: "starting: the capture is not attached yet"})
	case PhaseStopping, PhaseStopped:
		out = append(out, NotReady{Component: "run", State: s.Phase.String(), Reason: "flowtap is stopping: the capture is detached"})
	case PhaseRunning:
		if s.Capture.Source == "kernel" && !s.Capture.Attached {
			out = append(out, NotReady{Component: "capture", State: "detached", Reason: "the kernel capture is not attached"})
		}
	}
	if s.Phase != PhaseRunning {
		return out
	}
	for _, k := range s.Sinks {
		if k.State == supervise.Up {
			continue
		}
		nr := NotReady{Component: "sink", Pipeline: k.Pipeline, Sink: k.Name, State: k.State.String()}
		switch k.State {
		case supervise.Retrying:
			nr.Reason = "its plugin failed: restarting it or resending its batches"
		case supervise.Failed:
			nr.Reason = "it gave up, its events are dropped: " + k.Err
		default:
			nr.Reason = "it is " + k.State.String()
		}
		out = append(out, nr)
	}
	return out
}

// Snapshot returns the run's state and counters now. It briefly holds
// the derivation's lock (the flow tracker and caches belong to it) and
// asks the kernel for the capture's counters.
func (m *Monitor) Snapshot() Snapshot {
	m.mu.Lock()
	s := Snapshot{Phase: m.phase}
	r := m.r
	m.mu.Unlock()
	s.Reloads = ReloadCounts{OK: m.reloadsOK.Load(), Failed: m.reloadsFailed.Load()}
	if r == nil {
		return s
	}
	r.prod.status(&s.Capture)
	r.stage.snapshot(&s, r.opts.Catalogue)
	return s
}

// attach makes m watch r, assembled.
func (m *Monitor) attach(r *run) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.r = r
}

// setPhase moves the run to p.
func (m *Monitor) setPhase(p Phase) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.phase = p
}

// noteReload counts a reload, applied or rejected.
func (m *Monitor) noteReload(ok bool) {
	if ok {
		m.reloadsOK.Add(1)
	} else {
		m.reloadsFailed.Add(1)
	}
}

// snapshot fills s with what the stage holds, under its lock: the event
// counts, what its derivers and registered parts report, and the sinks
// of the current routes.
func (st *stage) snapshot(s *Snapshot, cat *events.Catalogue) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for id, n := range st.counts {
		if n == 0 && !st.wanted.Has(events.ID(id)) {
			continue
		}
		s.Events = append(s.Events, EventCount{ID: events.ID(id), Name: cat.Name(events.ID(id)), Count: n})
	}
	for _, report := range st.reporters {
		report(s)
	}
	for _, rt := range st.router.routes {
		for _, t := range rt.sinks {
			k := SinkStatus{Pipeline: t.stats.Pipeline, Index: t.stats.Index, Plugin: t.stats.Plugin, Name: t.name,
				State: t.sup.State(), QueueDepth: t.sup.QueueDepth(), QueueCapacity: t.sup.QueueCapacity(), Counters: t.sup.Counters()}
			if err := t.sup.Err(); err != nil {
				k.Err = err.Error()
			}
			s.Sinks = append(s.Sinks, k)
		}
	}
}

// addCache registers a cache of the run for the snapshot: stats is called
// under the derivation's lock, so it may read state the derivation
// goroutine owns. Parts outside the deriver table (such as an enricher
// in the router) call it once, before the loop starts.
func (st *stage) addCache(name string, stats func() CacheStats) {
	st.reporters = append(st.reporters, func(s *Snapshot) {
		s.Caches = append(s.Caches, CacheStatus{Name: name, CacheStats: stats()})
	})
}
