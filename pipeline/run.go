package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/flowtap/flowtap/bpf"
	"github.com/flowtap/flowtap/configs"
	"github.com/flowtap/flowtap/derive"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/filter"
	"github.com/flowtap/flowtap/identity"
	"github.com/flowtap/flowtap/replay"
)

// Options configure Run.
type Options struct {
	Config    *configs.Config
	Catalogue *events.Catalogue
	// CgroupPath is where the kernel programs attach; "" means the cgroup
	// v2 mount found in /proc/mounts.
	CgroupPath string
	// RingBufferSize is the BPF ring buffer size in bytes; 0 = default.
	RingBufferSize int
	Logger         hclog.Logger
	// Stdout and Stderr receive the sink plugins' standard streams; nil
	// means the process's own.
	Stdout, Stderr io.Writer
	// BatchSize is the most events handed to a sink in one Write;
	// FlushInterval bounds how long an event waits in a partial batch.
	// Zero means supervise's defaults (DefaultBatchSize,
	// DefaultFlushInterval), which the supervised sinks apply.
	BatchSize     int
	FlushInterval time.Duration
	// Tracker bounds the flow tracker (table size, timeouts).
	Tracker derive.Config
	// DNSStats, when set, receives the DNS stage's counters at the end
	// (tests read them).
	DNSStats *DNSStats
	// Reload, when set, asks Run to re-read the config (SIGHUP) with Load,
	// which returns the new config with every override applied and checked
	// (Config.Check), or its problems. See reload.go.
	Reload <-chan struct{}
	Load   func() (*configs.Config, error)
	// Replay, when set, takes the base events from a capture file instead
	// of the kernel: no BPF program loads and no privilege is needed, the
	// flow tracker's clock follows the capture's timestamps, and Run
	// returns once the file is delivered and the sinks have drained.
	Replay *Replay
}

// Replay is a capture file for Run to replay (package replay).
type Replay struct {
	// Name names the file in logs and errors ("-" for standard input).
	Name string
	// Input is the file's content, classic pcap or pcapng.
	Input io.Reader
	// Local are the local networks (replay.Options.Local); empty means
	// every address.
	Local []netip.Prefix
}

// source produces base events in batches: the kernel capture, or a
// capture file.
type source interface {
	RunBatches(ctx context.Context, max int, emit func([]events.Event)) error
	Recycle(batch []events.Event)
}

// Stats are the totals of one run.
type Stats struct {
	BaseEvents    uint64 // base events read from the kernel
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
// timeouts, close grace, idle eviction).
const tickInterval = 250 * time.Millisecond

// baseBatch is the most base events the capture derives from at a time.
const baseBatch = 256

// Run starts the sinks, the kernel capture (if the plan needs it) and the
// derivation stage, and delivers events until ctx is cancelled. Then it
// drains: the capture stops, every open flow gets its end, every sink
// delivers its queue, has it acknowledged and closes. A sink whose plugin
// keeps failing stops the run with its error (on_failure: stop) or is
// dropped while the others go on (on_failure: disable).
func Run(ctx context.Context, opts Options) (Stats, error) {
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	plan, err := Resolve(opts.Catalogue, opts.Config)
	if err != nil {
		return Stats{}, err
	}
	if plan.Shared.NeedsKernel() && opts.Replay == nil {
		// Fail on missing privileges before any plugin is launched.
		if err := bpf.CheckPrivileges(); err != nil {
			return Stats{}, err
		}
	}

	dnsOn, err := dnsEnabled(plan.Shared, opts.Config.Capture.DNS)
	if err != nil {
		return Stats{}, fmt.Errorf("config %s: %w", opts.Config.Source, err)
	}
	// The producer of base events: the kernel capture, or a capture file
	// (then clock moves the tracker along the file's timestamps). A file
	// that is not a capture fails before any plugin is launched.
	var (
		src     source
		capture *bpf.Capture
		file    *replay.Producer
	)
	if plan.Shared.NeedsKernel() && opts.Replay != nil {
		file = replay.New(opts.Replay.Input, replay.Options{Name: opts.Replay.Name, Local: opts.Replay.Local, DNS: dnsOn,
			SnapshotEvery: snapshotInterval(opts.Tracker), MaxConns: opts.Tracker.MaxFlows, Logger: log.Named("replay")})
		if err := file.Open(); err != nil {
			return Stats{}, err
		}
	}

	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	sinks, err := startSinks(runCtx, plan, opts, log)
	if err != nil {
		return Stats{}, err
	}
	watchCtx, stopWatching := context.WithCancel(runCtx)
	defer stopWatching()
	watchSinks(watchCtx, sinks, cancel, log)

	switch {
	case file != nil:
		src = file
		// A capture has no socket close reports to wait for.
		opts.Tracker.CloseGrace = replay.CloseGrace
		log.Info("replay started: no kernel program loads", "file", opts.Replay.Name, "dns", dnsOn, "events", names(opts.Catalogue, plan.Shared.Emit))
	case plan.Shared.NeedsKernel():
		cgroup := opts.CgroupPath
		if cgroup == "" {
			if cgroup, err = bpf.FindCgroup2Mount(); err != nil {
				closeSinks(sinks, nil, log)
				return Stats{}, err
			}
		}
		hooks, err := KernelHooks(plan.Shared, opts.Config.Capture)
		if err != nil {
			closeSinks(sinks, nil, log)
			return Stats{}, fmt.Errorf("config %s: %w", opts.Config.Source, err)
		}
		hooks.CgroupPath, hooks.RingBufferSize, hooks.Logger = cgroup, opts.RingBufferSize, log.Named("bpf")
		capture, err = bpf.Open(hooks)
		if err != nil {
			closeSinks(sinks, nil, log)
			return Stats{}, err
		}
		src = capture
		log.Info("capture started", "cgroup", cgroup, "dns", dnsOn, "events", names(opts.Catalogue, plan.Shared.Emit))
	default:
		log.Info("selection needs no kernel program: none loaded", "events", names(opts.Catalogue, plan.Shared.Emit))
	}

	var stats Stats
	// Derivation and routing. The capture goroutine runs them on each
	// batch it reads (no hand-over to another goroutine); this goroutine
	// advances the tracker's clock and applies reloads. mu makes each of
	// these one step: no batch sees half of a swap or a tick.
	var mu sync.Mutex
	host, _ := os.Hostname()
	r := newRouter(plan, sinks, host)
	if capture != nil {
		enricher, err := startIdentity(opts.Config.Capture.Workload, log.Named("identity"))
		if err != nil {
			log.Warn("workload identity is off", "error", err)
		}
		if enricher != nil {
			r.enrich = enricher
			defer enricher.stop()
		}
	}
	var dns *dnsStage
	if dnsOn {
		// Whether a pipeline selects net_packet_dns can change on reload.
		dns = newDNSStage(opts.Config.Capture.DNS.CacheSize,
			func() bool { return r.emits(events.IDNetPacketDNS) },
			func(ev events.Event) { stats.DerivedEvents++; r.route(ev) })
		opts.Tracker.Names = dns.cache
	}
	tracker := derive.NewTracker(opts.Tracker, func(ev events.Event) {
		stats.DerivedEvents++
		r.route(ev)
	})
	runTracker := plan.Shared.Needs(events.DeriverFlowTracker)
	var clock *replay.Clock // nil: the wall clock's ticker advances the tracker
	if file != nil {
		clock = replay.NewClock(tracker)
	}
	deriveBatch := func(evs []events.Event) {
		mu.Lock()
		for _, ev := range evs {
			if clock != nil && runTracker {
				clock.Advance(ev.Timestamp) // what fell due before this event comes first
			}
			stats.BaseEvents++
			r.route(ev)
			if ev.ID == events.IDNetPacketDNSBase {
				if dns != nil {
					dns.handle(ev)
				}
				continue
			}
			if runTracker {
				tracker.Handle(ev)
			}
		}
		r.flush()
		mu.Unlock()
		src.Recycle(evs)
	}

	// Producer: the kernel capture. It runs on its own context: at the
	// end the live sockets are snapshotted first (so open flows end with
	// current counters), then the capture drains the ring buffer and stops.
	captureErr := make(chan error, 1)
	switch {
	case capture != nil:
		captureCtx, stopCapture := context.WithCancel(context.Background())
		go func() {
			captureErr <- capture.RunBatches(captureCtx, baseBatch, deriveBatch)
		}()
		go snapshots(runCtx, capture, snapshotInterval(opts.Tracker), stopCapture, log)
	case file != nil:
		// The file reports its open connections itself, in its own time,
		// and ends by itself; a stop (signal, failed sink) cuts it short.
		go func() { captureErr <- src.RunBatches(runCtx, baseBatch, deriveBatch) }()
	default:
		captureErr <- nil
	}

	// liveNow is the time on the clock of the events' timestamps: the
	// kernel capture's, which a wall clock step does not move (so a step
	// cannot time out every pending SYN or idle flow at once).
	liveNow := func() int64 {
		if capture != nil {
			return capture.Now()
		}
		return time.Now().UnixNano()
	}
	var ticks <-chan time.Time // none for a replay: its clock is the file's
	if clock == nil {
		tick := time.NewTicker(tickInterval)
		defer tick.Stop()
		ticks = tick.C
	}
	rl := newReloader(opts, plan, sinks, capture != nil, log)
	rl.dns = dnsOn
	reloadCtx, stopReload := context.WithCancel(runCtx)
	go rl.run(reloadCtx)
	var retiring retirer
	var errs []error
	for open := true; open; {
		select {
		case sw := <-rl.swaps:
			// Between two batches: no event sees half of the swap.
			mu.Lock()
			r.routes = sw.routes
			runTracker = runTracker || sw.tracker
			mu.Unlock()
			for _, s := range sw.removed {
				retiring.retire(s, log)
			}
			watchSinks(watchCtx, sw.added, cancel, log)
			sinks = sw.sinks
			close(sw.applied)
		case err := <-captureErr:
			// The capture delivered its last batch.
			switch {
			case err != nil && file != nil:
				errs = append(errs, err) // it names the file
			case err != nil:
				errs = append(errs, fmt.Errorf("kernel capture: %w", err))
			}
			open = false
		case <-ticks:
			mu.Lock()
			if runTracker {
				tracker.Tick(liveNow())
			}
			r.flush()
			mu.Unlock()
		}
	}
	if runTracker {
		end := liveNow()
		if file != nil {
			// The capture's end is the agent's stop: what fell due by
			// then happens first.
			end = file.End()
			clock.Advance(end)
		}
		tracker.Close(end)
		r.flush()
		ts := tracker.Stats()
		log.Info("flow tracker", "begun", ts.Begun, "ended", ts.Ended, "failed", ts.Failed,
			"evicted_idle", ts.EvictedIdle, "evicted_full", ts.EvictedFull, "ended_without_close_report", ts.CloseMissing)
	}
	if dns != nil {
		dns.log(log)
		if opts.DNSStats != nil {
			*opts.DNSStats = dns.stats
			opts.DNSStats.Cache = dns.cache.Stats()
		}
	}
	stopReload()
	<-rl.done
	stopWatching() // a sink failing while it drains is reported by closeSinks
	retired := retiring.stats()

	if file != nil {
		stats.Replay = file.Stats()
		logReplay(log, opts.Replay.Name, stats.Replay)
	}
	if capture != nil {
		st := capture.Stats()
		stats.LostRecords = st.Lost
		if err := capture.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close kernel capture: %w", err))
		}
	}
	cause := context.Cause(runCtx)
	if errors.Is(cause, context.Canceled) {
		cause = nil
	}
	sinkStats, err := closeSinks(sinks, cause, log)
	if err != nil {
		errs = append(errs, err)
	}
	stats.Sinks = append(sinkStats, retired...)
	for _, st := range stats.Sinks {
		stats.Delivered += st.Acked
	}
	if cause != nil {
		errs = append([]error{cause}, errs...)
	}
	log.Info("stopped", "base_events", stats.BaseEvents, "derived_events", stats.DerivedEvents,
		"delivered", stats.Delivered, "lost_records", stats.LostRecords)
	return stats, errors.Join(errs...)
}

// snapshotInterval is how often live sockets are reported while running:
// a third of the idle timeout, so a live connection is never evicted as
// idle, and at most a minute, so long flows' counters stay fresh.
func snapshotInterval(cfg derive.Config) time.Duration {
	idle := cfg.IdleTimeout
	if idle <= 0 {
		idle = derive.DefaultIdleTimeout
	}
	return min(max(idle/3, time.Second), time.Minute)
}

// snapshots asks the kernel for a report of live sockets every interval;
// when ctx ends it takes a last one and stops the capture, which then
// delivers what is left in the ring buffer.
func snapshots(ctx context.Context, capture *bpf.Capture, every time.Duration, stop func(), log hclog.Logger) {
	defer stop()
	if !capture.Has(bpf.FeatureSnapshots) {
		// Open said so, once.
		<-ctx.Done()
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := capture.Snapshot(); err != nil {
				log.Warn("final socket snapshot failed: open flows end with the counters last seen", "error", err)
			}
			return
		case <-t.C:
			if err := capture.Snapshot(); err != nil {
				log.Warn("socket snapshot failed", "error", err)
			}
		}
	}
}

// logReplay logs a replay's counters: how every packet of the file was used.
func logReplay(log hclog.Logger, name string, s replay.Stats) {
	log.Info("replay", "file", name, "packets", s.Packets, "used", s.Used, "base_events", s.Events,
		"not_ip", s.NotIP, "other_protocol", s.OtherProtocol, "fragments", s.Fragments, "not_local", s.NotLocal,
		"snaplen_cut", s.Snaplen, "malformed", s.Malformed, "unknown_link_type", s.UnknownLinkType,
		"skipped_blocks", s.SkippedBlocks, "out_of_window", s.OutOfWindow, "evicted", s.Evicted)
}

func names(cat *events.Catalogue, ids []events.ID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = cat.Name(id)
	}
	return out
}

// router hands each event to the queues of the sinks whose pipeline
// selected it. Lost-record markers go to every pipeline that consumes
// kernel events, selected or not: they say its data has a gap.
type router struct {
	routes []route
	host   string
	// enrich fills each event's workload and process fields; nil when
	// workload identity is off.
	enrich *runningIdentity
	match  events.Event // the event being matched against a filter
}

type route struct {
	plan   *events.Plan
	filter *filter.Filter // nil: every selected event
	sinks  []*sink
}

func newRouter(plan *Plan, sinks []*sink, host string) *router {
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

// runningIdentity is the workload identity enricher and its resolver's
// stop.
type runningIdentity struct {
	*identity.Enricher
	cancel context.CancelFunc
}

// stop stops the resolver and closes the runtimes' connections.
func (ri *runningIdentity) stop() {
	ri.cancel()
	ri.Close()
}

// startIdentity starts workload identity as capture.workload says: nil
// when it is turned off. The cgroup ids the kernel reports are the
// cgroup2 mount's, whichever subtree the capture watches.
func startIdentity(cfg configs.Workload, log hclog.Logger) (*runningIdentity, error) {
	if cfg.Enabled != nil && !*cfg.Enabled {
		return nil, nil
	}
	root, err := bpf.FindCgroup2Mount()
	if err != nil {
		return nil, err
	}
	rts, err := identity.Runtimes(identity.Sockets{Containerd: cfg.ContainerdSocket, Docker: cfg.DockerSocket, Podman: cfg.PodmanSocket})
	if err != nil {
		return nil, err
	}
	e := identity.New(identity.Options{CgroupRoot: root, Runtimes: rts, PodLabels: cfg.PodLabels, CacheSize: cfg.CacheSize, Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	e.Start(ctx)
	return &runningIdentity{Enricher: e, cancel: cancel}, nil
}
