// SPDX-License-Identifier: Apache-2.0

package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/flowtap/flowtap/bpf"
	"github.com/flowtap/flowtap/configs"
	"github.com/flowtap/flowtap/derive"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/plugins/host"
	"github.com/flowtap/flowtap/replay"
)

// Options configure Run. Every capture and derivation setting comes from
// Config.Capture (cgroup, ring buffer, flow table, timeouts, DNS), as the
// config file, FLOWTAP_* variables and flags set it.
type Options struct {
	Config    *configs.Config
	Catalogue *events.Catalogue
	Logger    hclog.Logger
	// Stdout and Stderr receive the sink plugins' standard streams; nil
	// means the process's own.
	Stdout, Stderr io.Writer
	// SocketDir is the private directory of the plugins' sockets
	// (host.NewSocketDir); "" means the system's temporary directory.
	SocketDir string
	// BatchSize is the most events handed to a sink in one Write;
	// FlushInterval bounds how long an event waits in a partial batch.
	// Zero means supervise's defaults (DefaultBatchSize,
	// DefaultFlushInterval), which the supervised sinks apply.
	BatchSize     int
	FlushInterval time.Duration
	// DNSStats, when set, receives the DNS stage's counters at the end
	// (tests read them).
	DNSStats *DNSStats
	// Reload, when set, asks Run to re-read the config (SIGHUP) with Load,
	// which returns the new config with every override applied and checked
	// (Config.Check), or its problems. See reload.go.
	Reload <-chan struct{}
	Load   func() (*configs.Config, error)
	// Started, when set, is called once everything has started (the
	// kernel programs loaded and attached, the sinks running), before the
	// first event: flowtap drops the privileges it no longer needs there.
	// An error stops the run.
	Started func() error
	// Replay, when set, takes the base events from a capture file instead
	// of the kernel: no BPF program loads and no privilege is needed, the
	// flow tracker's clock follows the capture's timestamps, and Run
	// returns once the file is delivered and the sinks have drained.
	Replay *Replay
	// Monitor, when set, lets other goroutines watch the run: its phase,
	// counters and readiness (the metrics endpoint, 'flowtap status').
	// Every Config.Log.StatsEvery() the counters that moved are logged
	// in one line whether it is set or not.
	Monitor *Monitor

	// producer and startDelivery replace the kernel capture (or file) and
	// the supervised plugins, for the package's tests.
	producer      producer
	startDelivery startDelivery
}

// Stats are the totals of one run.
type Stats struct {
	BaseEvents    uint64 // base events from the producer (kernel or file)
	DerivedEvents uint64 // events computed by derivation
	Delivered     uint64 // events acknowledged by sinks (summed over sinks)
	LostRecords   uint64 // records the kernel could not submit (ring buffer full)
	// Replay are the capture file's counters (Options.Replay).
	Replay replay.Stats
	// Sinks are each sink's counters (queued, sent, acked, retried,
	// dropped, duplicates resent, restarts): the sinks running at the end
	// in config order, then those a reload retired.
	Sinks []SinkStats
}

// tickInterval is how often the flow tracker's clock advances (SYN
// timeouts, close grace, idle eviction) when the producer's clock runs
// by itself (the kernel's).
const tickInterval = 250 * time.Millisecond

// Run starts the sinks, the producer of base events (the kernel capture,
// or Options.Replay's file) and the derivation stage, and delivers events
// until ctx is cancelled or the file ends. Then it drains: the producer
// stops, every open flow gets its end, every sink delivers its queue, has
// it acknowledged and closes. A sink whose plugin keeps failing stops the
// run with its error (on_failure: stop) or is dropped while the others go
// on (on_failure: disable).
func Run(ctx context.Context, opts Options) (Stats, error) {
	r, err := assemble(ctx, opts)
	if err != nil {
		return Stats{}, err
	}
	r.loop()
	return r.shutdown()
}

// run is one Run's parts, assembled.
type run struct {
	opts  Options
	mon   *Monitor
	log   hclog.Logger
	prod  producer
	stage *stage
	sinks []*target
	stats Stats

	ctx          context.Context // ends with a stop: ctx, or a failed sink
	cancel       context.CancelCauseFunc
	watchCtx     context.Context // ends before the sinks close
	stopWatching context.CancelFunc
	rl           *reloader
	stopReload   context.CancelFunc
	retiring     retirer
	produced     chan error       // the producer's end
	identity     *runningIdentity // nil: workload identity is off
	errs         []error
}

// assemble resolves the plan, opens the producer (a file first: one that
// is not a capture fails before any plugin starts), starts the sinks,
// opens the kernel capture and builds the stage. On error everything
// started is stopped again.
func assemble(ctx context.Context, opts Options) (_ *run, err error) {
	r := &run{opts: opts, mon: opts.Monitor, log: opts.Logger, produced: make(chan error, 1)}
	if r.log == nil {
		r.log = hclog.NewNullLogger()
	}
	if r.mon == nil {
		r.mon = NewMonitor()
	}
	plan, err := Resolve(opts.Catalogue, opts.Config)
	if err != nil {
		return nil, err
	}
	if err := checkDerivers(plan.Shared); err != nil {
		return nil, err
	}
	kernelNeeded := plan.Shared.NeedsKernel() && opts.Replay == nil && opts.producer == nil
	if kernelNeeded {
		// Fail on missing privileges before any plugin is launched.
		if err := bpf.CheckPrivileges(); err != nil {
			return nil, err
		}
	}
	capture := opts.Config.Capture
	dnsOn, err := dnsEnabled(plan.Shared, capture.DNS)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", opts.Config.Source, err)
	}
	tracker := trackerConfig(capture)
	if opts.Replay == nil && opts.producer == nil {
		// The kernel capture reports lost records about once a second:
		// an attempt waits that long more before it is reported failed.
		tracker.LossGrace = derive.DefaultLossGrace
	}
	selected := names(opts.Catalogue, plan.Shared.Emit)
	switch {
	case opts.producer != nil:
		r.prod = opts.producer
	case opts.Replay != nil && plan.Shared.NeedsKernel():
		// A capture has no socket close reports to wait for.
		tracker.CloseGrace = replay.CloseGrace
		r.prod, err = openFile(opts.Replay, replay.Options{DNS: dnsOn, SnapshotEvery: tracker.SnapshotInterval(), MaxConns: tracker.MaxFlows}, selected, r.log)
		if err != nil {
			return nil, err
		}
	case !plan.Shared.NeedsKernel():
		r.log.Info("selection needs no kernel program: none loaded", "events", selected)
		r.prod = idle{}
	}

	r.ctx, r.cancel = context.WithCancelCause(ctx)
	if r.sinks, err = startSinks(r.ctx, plan, opts, r.log); err != nil {
		r.cancel(nil)
		return nil, err
	}
	defer func() {
		if err != nil {
			closeSinks(r.sinks, nil, r.log)
			r.cancel(nil)
		}
	}()
	if r.prod == nil {
		hooks, err := KernelHooks(plan.Shared, capture)
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", opts.Config.Source, err)
		}
		hooks.CgroupPath, hooks.RingBufferSize = capture.Cgroup, capture.RingBufferSize
		if r.prod, err = openKernel(hooks, tracker.SnapshotInterval(), selected, r.log); err != nil {
			return nil, err
		}
		// The kernel's events name cgroups and processes of this host:
		// workload identity describes them.
		if r.identity, err = startIdentity(capture.Workload, r.log.Named("identity")); err != nil {
			r.log.Warn("workload identity is off", "error", err)
		}
	}
	host, _ := os.Hostname()
	rt := newRouter(plan, r.sinks, host)
	if r.identity != nil {
		rt.enrich = r.identity
	}
	env := &deriveEnv{tracker: tracker, dns: dnsOn, dnsCacheSize: capture.DNS.CacheSize, dnsStats: opts.DNSStats, log: r.log}
	if r.stage, err = newStage(plan.Shared, rt, env, r.prod.eventClock(), &r.stats, idBound(opts.Catalogue)); err != nil {
		r.prod.close(&r.stats)
		r.identity.stop()
		return nil, err
	}
	if r.identity != nil {
		e := r.identity.Enricher
		r.stage.addCache("workload", func() CacheStats {
			c := e.CacheStats()
			return CacheStats{Entries: c.Entries, Hits: c.Hits, Misses: c.Misses, Evictions: c.Evictions}
		})
	}
	r.watchCtx, r.stopWatching = context.WithCancel(r.ctx)
	watchSinks(r.watchCtx, r.sinks, r.cancel, r.log)
	r.rl = newReloader(opts, plan, r.sinks, plan.Shared.NeedsKernel() && opts.Replay == nil, r.log)
	r.rl.dns, r.rl.mon = dnsOn, r.mon
	if opts.Started != nil {
		if err := opts.Started(); err != nil {
			r.stopWatching()
			r.prod.close(&r.stats)
			return nil, err
		}
	}
	r.mon.attach(r)
	return r, nil
}

// idBound is one more than the largest event ID of cat: the stage counts
// events by ID below it.
func idBound(cat *events.Catalogue) int {
	n := int(events.IDRecordsLost) + 1
	for _, d := range cat.Definitions() {
		n = max(n, int(d.ID)+1)
	}
	return n
}

// loop runs the producer and, on Run's goroutine, ticks the stage and
// applies reloads, until the producer has delivered its last batch.
func (r *run) loop() {
	r.mon.setPhase(PhaseRunning)
	if every := r.opts.Config.Log.StatsEvery(); every > 0 {
		go logStats(r.ctx, r.mon, every, r.log)
	}
	if out := outputFile(r.opts.Stdout); out != nil && printsToStdout(r.opts.Config) {
		go r.watchStdout(out)
	}
	go func() {
		r.produced <- r.prod.run(r.ctx, func(evs []events.Event) {
			r.stage.deriveBatch(evs)
			r.prod.recycle(evs)
		})
	}()
	var ticks <-chan time.Time // none when the events carry the clock
	if !r.prod.eventClock() {
		tick := time.NewTicker(tickInterval)
		defer tick.Stop()
		ticks = tick.C
	}
	reloadCtx, stopReload := context.WithCancel(r.ctx)
	r.stopReload = stopReload
	go r.rl.run(reloadCtx)
	for {
		select {
		case sw := <-r.rl.swaps:
			r.stage.swap(sw)
			for _, s := range sw.removed {
				r.retiring.retire(s, r.log)
			}
			watchSinks(r.watchCtx, sw.added, r.cancel, r.log)
			r.sinks = sw.sinks
			close(sw.applied)
		case err := <-r.produced:
			if err != nil {
				r.errs = append(r.errs, err)
			}
			return
		case <-ticks:
			r.stage.tick(r.prod.now())
		}
	}
}

// shutdown ends the open flows at the producer's end, closes the
// producer, delivers and closes the sinks, and totals the run.
func (r *run) shutdown() (Stats, error) {
	defer r.cancel(nil)
	defer r.mon.setPhase(PhaseStopped)
	r.mon.setPhase(PhaseStopping)
	r.stage.close(r.prod.end())
	r.identity.stop()
	r.stopReload()
	<-r.rl.done
	r.stopWatching() // a sink failing while it drains is reported by closeSinks
	retired := r.retiring.stats()
	if err := r.prod.close(&r.stats); err != nil {
		r.errs = append(r.errs, err)
	}
	cause := context.Cause(r.ctx)
	if errors.Is(cause, context.Canceled) || errors.Is(cause, errOutputClosed) {
		cause = nil // a stop, not a failure
	}
	sinkStats, err := closeSinks(r.sinks, cause, r.log)
	if err != nil {
		r.errs = append(r.errs, err)
	}
	r.stats.Sinks = append(sinkStats, retired...)
	for _, st := range r.stats.Sinks {
		r.stats.Delivered += st.Acked
	}
	if cause != nil {
		r.errs = append([]error{cause}, r.errs...)
	}
	r.log.Info("stopped", "base_events", r.stats.BaseEvents, "derived_events", r.stats.DerivedEvents,
		"delivered", r.stats.Delivered, "lost_records", r.stats.LostRecords)
	return r.stats, errors.Join(r.errs...)
}

// watchStdout stops the run, quietly, when out (flowtap's standard output,
// where the stdout sink prints) loses its reader, as with 'flowtap run |
// head -1': a Unix tool ends when its output is closed. It notices within
// a fraction of a second even when no event comes to fail a write; a
// write that fails first stops the run through its sink (watchSinks).
func (r *run) watchStdout(out *os.File) {
	if host.WaitOutputClosed(r.ctx, out) {
		r.log.Info("standard output closed: stopping flowtap")
		r.cancel(errOutputClosed)
	}
}

// printsToStdout reports whether a sink of cfg is the built-in stdout
// sink, which prints to flowtap's standard output.
func printsToStdout(cfg *configs.Config) bool {
	for _, p := range cfg.Pipelines {
		for _, s := range p.Sinks {
			if s.Plugin == "stdout" {
				return true
			}
		}
	}
	return false
}

// trackerConfig is the flow tracker's part of the capture settings.
func trackerConfig(c configs.Capture) derive.Config {
	return derive.Config{MaxFlows: c.FlowTableSize, IdleTimeout: c.FlowIdleTimeout, SYNTimeout: c.SYNTimeout,
		CommunityIDSeed: c.CommunityIDSeed}
}

func names(cat *events.Catalogue, ids []events.ID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = cat.Name(id)
	}
	return out
}
