// SPDX-License-Identifier: Apache-2.0

// Package supervise delivers a pipeline's events to one sink plugin and
// keeps that plugin running: a bounded queue with an overflow policy in
// front of it, batches with acknowledgements, restarts with exponential
// backoff when the plugin crashes or hangs, and at-least-once delivery
// across restarts (what was not acknowledged is sent again).
//
// One Delivery is one configured sink of a pipeline. The router calls
// EnqueueBatch with each derivation step's events; a worker goroutine batches the queue into
// host.Plugin.WriteAsync calls. When the plugin fails (it exits, its
// stream breaks, a batch is not acknowledged within AckTimeout, a health
// check goes unanswered, or the sink rejects a batch), the worker waits,
// restarts the plugin if it is broken, and resends every batch not
// acknowledged. After MaxAttempts failures in a row it gives up: the sink
// is failed (Failed, Err), its queue drops everything, and the caller
// applies its on_failure policy.
//
// Counters say what happened to every event (see Counters).
package supervise

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/plugins/host"
)

// Defaults of Config's zero values.
const (
	DefaultQueueSize = 8192
	// DefaultBatchSize: across the plugin boundary, batches of 2048
	// events move about 1.8 M events/s, half the rate of an in-process
	// sink or more; batches of 512 about 1.5 M (BenchmarkSupervisedSink).
	// Latency does not grow with it: a partial batch leaves after
	// DefaultFlushInterval.
	DefaultBatchSize      = 2048
	DefaultFlushInterval  = 100 * time.Millisecond
	DefaultMaxAttempts    = 5
	DefaultInitialBackoff = 200 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	DefaultAckTimeout     = 30 * time.Second
	DefaultHealthInterval = 5 * time.Second
	// DefaultDrainTimeout bounds the delivery of what a sink holds when
	// flowtap stops.
	DefaultDrainTimeout = 60 * time.Second
	// DropLogInterval is the least time between two log lines about a
	// sink's queue dropping events.
	DropLogInterval = 10 * time.Second
)

// ErrHung is the failure of a plugin that did not acknowledge a batch
// within the acknowledgement timeout.
var ErrHung = errors.New("plugin considered hung")

// ErrLost marks the error Close returns when events were lost: the sink
// failed, or shutdown ran out of time, before they were delivered.
var ErrLost = errors.New("events lost")

// Plugin is a running sink plugin as the supervisor drives it;
// *host.Plugin implements it.
type Plugin interface {
	WriteAsync(ctx context.Context, batch []events.Event, done func(error)) error
	Flush(ctx context.Context) error
	Ping(ctx context.Context) error
	Kill()
	Close(ctx context.Context) error
	PID() int
}

// Interface guard: the host's running plugin is a Plugin.
var _ Plugin = (*host.Plugin)(nil)

// Config configures a supervised sink. Zero values mean the defaults.
type Config struct {
	// Name labels the sink in logs and errors.
	Name string
	// Host says which plugin to start and how; its Name defaults to Name.
	Host host.Config
	// SinkConfig is handed to the plugin's Configure at every start.
	SinkConfig map[string]any
	// Launch starts and configures a plugin. Nil means host.Start with
	// Host, then Configure with SinkConfig. Tests replace it.
	Launch func(ctx context.Context) (Plugin, error)

	// QueueSize bounds the events waiting for the plugin.
	QueueSize int
	// Policy is what a full queue does; "" means Block.
	Policy Policy
	// BatchSize is the most events in one Write.
	BatchSize int
	// FlushInterval bounds how long an event waits in a partial batch.
	FlushInterval time.Duration

	// MaxAttempts is how many failures in a row (a crash, a hang, a
	// rejected batch, a failed restart) the sink survives; the next one
	// fails it. An acknowledged batch resets the count.
	MaxAttempts int
	// InitialBackoff is the wait after the first failure; each further
	// failure in a row doubles it, up to MaxBackoff.
	InitialBackoff, MaxBackoff time.Duration
	// AckTimeout bounds the wait for a batch's acknowledgement; a plugin
	// that takes longer counts as hung, and is killed and restarted.
	AckTimeout time.Duration
	// HealthInterval is how often an idle plugin is health-checked
	// (host.Plugin.Ping, bounded by AckTimeout).
	HealthInterval time.Duration
	// DrainTimeout bounds Close: what is not delivered by then is lost
	// (counted in Counters.Lost, logged) and Close fails with ErrLost.
	DrainTimeout time.Duration

	// Logger receives the supervisor's own log lines. Nil: hclog.Default().
	Logger hclog.Logger
}

// withDefaults returns cfg with its zero values replaced.
func (cfg Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.QueueSize, DefaultQueueSize)
	def(&cfg.BatchSize, DefaultBatchSize)
	def(&cfg.MaxAttempts, DefaultMaxAttempts)
	defD(&cfg.FlushInterval, DefaultFlushInterval)
	defD(&cfg.InitialBackoff, DefaultInitialBackoff)
	defD(&cfg.MaxBackoff, DefaultMaxBackoff)
	defD(&cfg.AckTimeout, DefaultAckTimeout)
	defD(&cfg.HealthInterval, DefaultHealthInterval)
	defD(&cfg.DrainTimeout, DefaultDrainTimeout)
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.InitialBackoff)
	if cfg.Policy == "" {
		cfg.Policy = Block
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.Default()
	}
	if cfg.Host.Name == "" {
		cfg.Host.Name = cfg.Name
	}
	if cfg.Launch == nil {
		if cfg.Host.AckTimeout == 0 {
			cfg.Host.AckTimeout = cfg.AckTimeout
		}
		hc, sc := cfg.Host, cfg.SinkConfig
		cfg.Launch = func(ctx context.Context) (Plugin, error) {
			s, err := host.Start(ctx, hc)
			if err != nil {
				return nil, err
			}
			if err := s.Configure(ctx, sc); err != nil {
				_ = s.Close(ctx)
				return nil, err
			}
			return s, nil
		}
	}
	return cfg
}

// Counters count a sink's events. Every event offered to Enqueue ends,
// once the sink is closed, either acknowledged or dropped:
// Acked + Dropped equals the events offered.
type Counters struct {
	// Queued: events taken into the queue.
	Queued uint64
	// Sent: events sent to a plugin, resends included.
	Sent uint64
	// Acked: events the sink acknowledged (each event once).
	Acked uint64
	// Retried: events sent again after a failure (a crash, a hang, a
	// rejection).
	Retried uint64
	// Dropped: events not delivered: refused or evicted by the queue
	// policy, or discarded because the sink failed (or its shutdown ran
	// out of time).
	Dropped uint64
	// Lost: the part of Dropped the queue policy did not choose: events
	// discarded because the sink failed, because shutdown ran out of
	// time (DrainTimeout), or because one is too large for the protocol.
	Lost uint64
	// DuplicatesResent: the events the sink's destination may hold more
	// than once: retried events whose earlier send may have reached it
	// (the plugin died or hung before acknowledging them, or the sink
	// said part of a failed batch may have arrived,
	// sdk.PartialWriteError), and those the sink said it may have
	// delivered twice itself (sdk.NoteDuplicates).
	DuplicatesResent uint64
	// Restarts: how many times the plugin was restarted.
	Restarts uint64
}

// State is where a sink's delivery stands (Delivery.State): what the
// metrics (flowtap_sink_up, flowtap_sink_state) and readiness report.
type State int32

// States of a Delivery.
const (
	// Up: the plugin runs and the last batch it settled, or the last
	// health check, succeeded (also the state from Start until the first
	// batch).
	Up State = iota
	// Retrying: the plugin failed (it crashed, hung, broke its stream or
	// rejected a batch) and the supervisor is restarting it or resending,
	// within restart.max_attempts. It is Up again once a batch is
	// acknowledged, a health check passes, or a restarted plugin has
	// nothing to resend.
	Retrying
	// Failed: the supervisor gave up (Failed is closed, Err says why);
	// everything offered from now on is dropped.
	Failed
	// Closed: Close delivered what it could and ended the plugin.
	Closed
)

// States lists every State, in order.
func States() []State { return []State{Up, Retrying, Failed, Closed} }

// String is the state's name: up, retrying, failed or closed.
func (st State) String() string {
	switch st {
	case Up:
		return "up"
	case Retrying:
		return "retrying"
	case Failed:
		return "failed"
	case Closed:
		return "closed"
	}
	return fmt.Sprintf("state(%d)", int32(st))
}

// Delivery is a supervised sink plugin: the delivery of one configured
// sink's events. EnqueueBatch may be called from one goroutine at a time
// (the router); Counters, State, QueueDepth, Failed, Err and PID from any.
type Delivery struct {
	cfg Config
	log hclog.Logger
	q   *queue

	queued, sent, acked, retried, dropped, lost, dups, restarts atomic.Uint64
	// drops logs the queue's drops while they happen, rate-limited.
	drops dropLog
	state atomic.Int32

	// ctx is the worker's; Close cancels it when its own deadline passes.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the worker has ended
	failed chan struct{} // closed when the sink has failed
	errMu  sync.Mutex
	err    error
	pid    atomic.Int64

	// The worker's state; only the worker goroutine touches it.
	p        Plugin
	batch    []events.Event // being filled
	inflight map[*batchBuf]struct{}
	retry    []*batchBuf // failed batches, in the order they failed
	batches  uint64      // batches made so far: the next one's order
	failure  error       // the first failure since the last recovery
	attempts int         // failures in a row
	free     []*batchBuf
}

// batchBuf is one batch the sink has not acknowledged.
type batchBuf struct {
	evs []events.Event
	// maybe: how many of its events may have reached the sink's
	// destination in the last send that failed (all of them when the
	// plugin died or hung; what the sink said when it rejected it), so
	// resending it may duplicate them.
	maybe int
	// resend: it failed once, so sending it again is a retry.
	resend bool
	// order is the batch's place in the sink's stream (Delivery.batches
	// when it was made): batches failed together are retried in this
	// order, so the sink receives the events in the order they came.
	order uint64
}

// Start launches and configures the plugin and starts delivering to it.
// A plugin that cannot start now (a missing binary, a rejected config)
// fails Start: restarts are for plugins that worked.
func Start(ctx context.Context, cfg Config) (*Delivery, error) {
	s := &Delivery{
		done:     make(chan struct{}),
		failed:   make(chan struct{}),
		inflight: map[*batchBuf]struct{}{},
	}
	if cfg.Host.OnDuplicates == nil {
		cfg.Host.OnDuplicates = func(n int) { s.dups.Add(uint64(n)) }
	}
	cfg = cfg.withDefaults()
	if !slices.Contains(Policies(), cfg.Policy) {
		return nil, fmt.Errorf("sink %s: unknown queue policy %q (valid: %v)", cfg.Name, cfg.Policy, Policies())
	}
	p, err := cfg.Launch(ctx)
	if err != nil {
		return nil, err
	}
	s.cfg, s.log, s.p = cfg, cfg.Logger, p
	s.pid.Store(int64(p.PID()))
	s.drops = dropLog{log: cfg.Logger, sink: cfg.Name, policy: cfg.Policy, every: DropLogInterval}
	s.q = newQueue(cfg.QueueSize, cfg.BatchSize, cfg.Policy, &s.queued, &s.dropped, &s.lost)
	s.q.onDrop = s.drops.note
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.run()
	return s, nil
}

// EnqueueBatch offers the events of evs, in order, to the sink's queue,
// with one lock of the queue for all of them: the router queues what a
// batch of kernel records derived at once. The queue applies its policy
// when full: Block waits for room, the drop policies never wait. The sink
// keeps no reference to evs.
func (s *Delivery) EnqueueBatch(evs []events.Event) { s.q.pushAll(evs) }

// Counters returns the sink's counters so far.
func (s *Delivery) Counters() Counters {
	return Counters{
		Queued:           s.queued.Load(),
		Sent:             s.sent.Load(),
		Acked:            s.acked.Load(),
		Retried:          s.retried.Load(),
		Dropped:          s.dropped.Load(),
		Lost:             s.lost.Load(),
		DuplicatesResent: s.dups.Load(),
		Restarts:         s.restarts.Load(),
	}
}

// State returns where the delivery stands now.
func (s *Delivery) State() State { return State(s.state.Load()) }

// QueueDepth returns how many events wait in the sink's queue.
func (s *Delivery) QueueDepth() int { return s.q.len() }

// QueueCapacity returns the most events the sink's queue holds.
func (s *Delivery) QueueCapacity() int { return s.cfg.QueueSize }

// setState moves to st unless the delivery has failed or closed: those
// are final.
func (s *Delivery) setState(st State) {
	for {
		cur := s.state.Load()
		if State(cur) == Failed || State(cur) == Closed || State(cur) == st {
			return
		}
		if s.state.CompareAndSwap(cur, int32(st)) {
			return
		}
	}
}

// Failed is closed when the sink has given up on its plugin; Err says why.
func (s *Delivery) Failed() <-chan struct{} { return s.failed }

// Err returns why the sink failed, or nil.
func (s *Delivery) Err() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

// PID returns the process ID of the current plugin process (0 while none
// runs).
func (s *Delivery) PID() int { return int(s.pid.Load()) }

// Close ends the sink: no more events are taken, the queue is delivered
// (restarting the plugin if needed), every batch acknowledged, and the
// plugin closed. If ctx ends first, or DrainTimeout passes, what is not
// delivered is dropped (counted as Lost, logged) and the plugin is
// killed. It returns the sink's failure, if it failed; an error wrapping
// ErrLost if events were lost; or the plugin's Close error.
func (s *Delivery) Close(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DrainTimeout)
	defer cancel()
	s.q.close()
	select {
	case <-s.done:
	case <-ctx.Done():
		s.cancel()
		<-s.done
	}
	s.cancel()
	s.drops.flush()
	return s.Err()
}

// run is the worker: it batches the queue into writes until the queue is
// closed and drained, then closes the plugin.
func (s *Delivery) run() {
	defer close(s.done)
	size := s.cfg.BatchSize
	s.batch = make([]events.Event, 0, size)
	// The timer is due at flushAt while a batch is partial or batches
	// are in flight (FlushInterval after the first of them, not pushed
	// back by later wake-ups), and at the next health check otherwise:
	// an idle sink does not wake the process every FlushInterval (a
	// ticker did: about half of an idle flowtap's wake-ups). An idle
	// worker is woken by the next push (queue.sleep), which starts the
	// flush timer for it.
	timer := time.NewTimer(s.cfg.FlushInterval)
	defer timer.Stop()
	var flushAt time.Time
	lastHealth := time.Now()
	for {
		var drained bool
		s.batch, drained = s.q.pop(s.batch, size-len(s.batch))
		if len(s.batch) >= size {
			if !s.send() {
				return
			}
			continue
		}
		if drained {
			s.finish()
			return
		}
		now := time.Now()
		var due time.Time
		switch {
		case len(s.batch) > 0 || len(s.inflight) > 0:
			if flushAt.IsZero() {
				flushAt = now.Add(s.cfg.FlushInterval)
			}
			due = flushAt
		default:
			if !s.q.sleep() {
				continue // an event came since the pop
			}
			flushAt = time.Time{}
			due = lastHealth.Add(s.cfg.HealthInterval)
		}
		timer.Reset(due.Sub(now))
		select {
		case <-s.q.wake:
		case <-s.ctx.Done():
			s.abandon(s.ctx.Err())
			return
		case <-timer.C:
			flushAt = time.Time{}
			if len(s.batch) > 0 && !s.send() {
				return
			}
			if s.q.len() > 0 {
				continue
			}
			// Idle: settle what is in flight, and check the plugin's
			// health now and then.
			if len(s.inflight) > 0 {
				s.flushInflight()
				if !s.recover() {
					return
				}
			} else if time.Since(lastHealth) >= s.cfg.HealthInterval {
				lastHealth = time.Now()
				ctx, cancel := s.ackContext()
				err := s.hung(s.p.Ping(ctx))
				cancel()
				if err != nil {
					s.fail(err)
				} else if s.failure == nil && len(s.retry) == 0 {
					s.setState(Up)
				}
				if !s.recover() {
					return
				}
			}
		}
	}
}

// send writes the batch being filled, and recovers from any failure. It
// returns false when the sink has given up.
func (s *Delivery) send() bool {
	b := s.newBuf()
	b.order = s.batches
	s.batches++
	// The batch being filled becomes b's, and b's empty array the next
	// one to fill: no copy of (up to) BatchSize events, no clearing.
	b.evs, s.batch = s.batch, b.evs[:0]
	s.write(b)
	return s.recover()
}

// write sends b on the current plugin; its outcome arrives in settled.
func (s *Delivery) write(b *batchBuf) {
	n := uint64(len(b.evs))
	if b.resend {
		s.retried.Add(n)
		s.dups.Add(uint64(b.maybe))
		b.maybe = 0
	}
	// In flight before the call: its outcome may arrive within it.
	s.inflight[b] = struct{}{}
	ctx, cancel := s.ackContext()
	err := s.p.WriteAsync(ctx, b.evs, func(err error) { s.settled(b, s.hung(err)) })
	err = s.hung(err)
	cancel()
	if err != nil {
		delete(s.inflight, b) // nothing of it was sent; done is not called
	}
	switch {
	case err == nil:
		s.sent.Add(n)
	case errors.Is(err, host.ErrTooLarge):
		// Retrying cannot help; the rest of the run can go on.
		s.log.Error("events lost: dropping a batch the sink protocol cannot carry", "sink", s.cfg.Name, "events", n, "error", err)
		s.dropped.Add(n)
		s.lost.Add(n)
		s.putBuf(b)
	default:
		// Nothing of b was sent.
		b.resend = true
		s.retry = append(s.retry, b)
		s.fail(err)
	}
}

// settled receives a batch's outcome. It runs inside a call on the plugin,
// on the worker goroutine.
func (s *Delivery) settled(b *batchBuf, err error) {
	delete(s.inflight, b)
	if err == nil {
		s.acked.Add(uint64(len(b.evs)))
		s.attempts = 0
		s.putBuf(b)
		s.setState(Up)
		return
	}
	b.resend = true
	if errors.Is(err, host.ErrRejected) {
		b.maybe = min(host.MaybeDelivered(err), len(b.evs))
	} else {
		b.maybe = len(b.evs) // died or hung: it may have arrived whole
	}
	s.retry = append(s.retry, b)
	s.fail(err)
}

// ackContext bounds a call that waits for acknowledgements by AckTimeout.
func (s *Delivery) ackContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, s.cfg.AckTimeout)
}

// hung turns the end of an ackContext's deadline into the error that says
// what it means: the plugin did not acknowledge within AckTimeout. Every
// call on the plugin that waits for it is bounded by an ackContext, whose
// deadline a batch's failure carries even when it is settled in a later
// call; the worker's own context ends by cancellation, not a deadline.
func (s *Delivery) hung(err error) error {
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrHung) || s.ctx.Err() != nil {
		return err
	}
	return fmt.Errorf("not acknowledged within %s: %w (%w)", seconds(s.cfg.AckTimeout), ErrHung, err)
}

// seconds writes d as "30 s".
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + " s"
}

// noteCallError records the failure of a Flush: its batches have
// reported theirs through settled already, unless the call itself failed
// (ctx ended before it could start).
func (s *Delivery) noteCallError(err error) {
	if err != nil && s.failure == nil && len(s.retry) == 0 {
		s.fail(err)
	}
}

// flushInflight asks the plugin to settle the batches in flight, waiting
// AckTimeout at most, and notes a failed call.
func (s *Delivery) flushInflight() {
	ctx, cancel := s.ackContext()
	defer cancel()
	s.noteCallError(s.hung(s.p.Flush(ctx)))
}

// fail records a failure; recover handles it.
func (s *Delivery) fail(err error) {
	if s.failure == nil {
		s.failure = err
	}
}

// recover handles the failure recorded since the last call, if any: it
// waits, restarts the plugin if it is broken, and resends every batch not
// acknowledged, until they are sent or the sink gives up. It returns false
// when the sink has given up (or is being abandoned).
func (s *Delivery) recover() bool {
	for s.failure != nil {
		err := s.failure
		s.failure = nil
		s.attempts++
		attempt := s.attempts
		if s.ctx.Err() != nil {
			s.abandon(err)
			return false
		}
		if errors.Is(err, host.ErrOutputClosed) {
			s.outputClosed(err)
			return false
		}
		if s.attempts > s.cfg.MaxAttempts {
			s.giveUp(err)
			return false
		}
		s.setState(Retrying)
		broken := s.p == nil || !errors.Is(err, host.ErrRejected)
		if !broken {
			// The plugin is healthy and refused a batch: settle the
			// others in flight, and retry on the same plugin.
			ctx, cancel := s.ackContext()
			ferr := s.hung(s.p.Flush(ctx))
			cancel()
			if ferr != nil && !errors.Is(ferr, host.ErrRejected) {
				broken = true
			}
			s.failure = nil // what Flush found is this same failure
		}
		if broken && s.p != nil {
			s.kill()
		}
		// A batch acknowledged meanwhile reset the count; this failure
		// still counts.
		s.attempts = max(s.attempts, attempt)
		wait := s.backoff()
		s.log.Warn("sink plugin failed; retrying", "sink", s.cfg.Name, "attempt", s.attempts,
			"of", s.cfg.MaxAttempts, "restart", broken, "in", wait, "unacknowledged_batches", len(s.retry), "error", err)
		select {
		case <-time.After(wait):
		case <-s.ctx.Done():
			s.abandon(err)
			return false
		}
		if s.p == nil {
			ctx, cancel := context.WithTimeout(s.ctx, host.DefaultStartTimeout+s.cfg.AckTimeout)
			p, lerr := s.cfg.Launch(ctx)
			cancel()
			if lerr != nil {
				s.fail(fmt.Errorf("restart: %w", lerr))
				continue
			}
			s.p = p
			s.pid.Store(int64(p.PID()))
			s.restarts.Add(1)
			s.log.Info("sink plugin restarted", "sink", s.cfg.Name, "pid", p.PID(), "resending_batches", len(s.retry))
			if len(s.retry) == 0 {
				s.setState(Up) // nothing waits for an acknowledgement
			}
		}
		retry := s.retry
		s.retry = nil
		for i, b := range retry {
			if s.failure != nil {
				s.retry = append(s.retry, retry[i:]...)
				break
			}
			s.write(b)
		}
	}
	return true
}

// backoff is the wait before the current attempt.
func (s *Delivery) backoff() time.Duration {
	d := s.cfg.InitialBackoff
	for i := 1; i < s.attempts && d < s.cfg.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, s.cfg.MaxBackoff)
}

// kill ends the current plugin at once; what it had in flight fails into
// the retry list, as batches that may have reached the sink.
func (s *Delivery) kill() {
	p := s.p
	s.p = nil
	s.pid.Store(0)
	p.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = p.Close(ctx) // settles the batches in flight (settled), then ends
	// A failure Close reported for those batches is the one being
	// handled.
	s.failure = nil
	s.retryInflight(func(b *batchBuf) { b.resend, b.maybe = true, len(b.evs) }) // count them lost in flight
}

// retryInflight moves the batches still in flight (not settled) to the
// retry list, after mark(b) for each, and puts the list in the batches'
// order: those settled as failed meanwhile and these, which were in flight
// together, go out again as they came.
func (s *Delivery) retryInflight(mark func(*batchBuf)) {
	for b := range s.inflight {
		delete(s.inflight, b)
		mark(b)
		s.retry = append(s.retry, b)
	}
	slices.SortStableFunc(s.retry, func(a, b *batchBuf) int { return cmp.Compare(a.order, b.order) })
}

// finish delivers the last partial batch, settles everything, and closes
// the plugin.
func (s *Delivery) finish() {
	if len(s.batch) > 0 && !s.send() {
		return
	}
	for len(s.inflight) > 0 || len(s.retry) > 0 {
		if err := s.ctx.Err(); err != nil { // Close ran out of time
			s.abandon(err)
			return
		}
		if len(s.inflight) > 0 {
			s.flushInflight()
		}
		if s.failure == nil && len(s.retry) > 0 {
			s.fail(errors.New("unacknowledged batches left at shutdown"))
		}
		if !s.recover() {
			return
		}
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.AckTimeout)
	defer cancel()
	if err := s.p.Close(ctx); err != nil {
		s.setErr(fmt.Errorf("sink %s: %w", s.cfg.Name, err))
	}
	s.pid.Store(0)
	s.setState(Closed)
}

// giveUp fails the sink: its plugin is stopped, and everything it had not
// acknowledged, and everything queued or offered from now on, is dropped.
// A plugin that still answers (it refused the batches: a full disk, say)
// is closed, not killed: killed, it could die between a partial write of
// a batch in flight and the removal of that part (the file sink's
// rollback), and no later start would repair the file. A plugin that
// hangs or broke is killed.
func (s *Delivery) giveUp(err error) {
	s.setErr(fmt.Errorf("sink %s: plugin failed %d times in a row (max_attempts %d), giving up: %w",
		s.cfg.Name, s.attempts, s.cfg.MaxAttempts, err))
	s.log.Error("sink plugin keeps failing: giving up", "sink", s.cfg.Name, "attempts", s.attempts, "error", err)
	if s.p != nil && errors.Is(err, host.ErrRejected) {
		s.closePlugin(func(b *batchBuf) { b.resend, b.maybe = true, len(b.evs) })
	}
	s.drop()
	s.state.Store(int32(Failed))
	close(s.failed)
}

// outputClosed ends the sink whose output (flowtap's standard output)
// lost its reader: no retry can write there. It ends like a sink that
// gave up (Failed, Err wrapping host.ErrOutputClosed, what it holds
// dropped), but it is no error of the plugin's, so it is logged at INFO:
// the pipeline stops flowtap quietly, as a Unix tool whose output was
// closed.
func (s *Delivery) outputClosed(err error) {
	s.setErr(fmt.Errorf("sink %s: %w", s.cfg.Name, err))
	s.log.Info("sink output closed: dropping what the sink holds", "sink", s.cfg.Name)
	if s.p != nil {
		// The plugin is healthy: close it rather than kill it (a killed
		// plugin is an error in the host's log).
		s.closePlugin(func(*batchBuf) {})
	}
	s.drop()
	s.state.Store(int32(Failed))
	close(s.failed)
}

// closePlugin ends the current plugin in order: its Close, bounded by
// closeGrace, lets the sink finish the batch it is writing and settles
// the batches in flight; those it did not settle go to the retry list,
// after mark. A plugin that does not close in time is killed.
func (s *Delivery) closePlugin(mark func(*batchBuf)) {
	p := s.p
	s.p = nil
	s.pid.Store(0)
	ctx, cancel := context.WithTimeout(context.Background(), closeGrace)
	_ = p.Close(ctx) // settles the batches in flight (settled), then ends the process
	cancel()
	s.failure = nil // what Close reported for those batches is the failure being handled
	s.retryInflight(mark)
}

// closeGrace bounds how long a plugin that is given up on, or whose
// output closed, has to finish its write and close.
const closeGrace = 5 * time.Second

// abandon stops delivering because Close ran out of time: what is not
// delivered is lost, and Close says so.
func (s *Delivery) abandon(err error) {
	n := s.drop()
	s.log.Error("events lost: the sink did not deliver them before the drain timeout (queue.drain_timeout)", "sink", s.cfg.Name,
		"lost", n, "drain_timeout", s.cfg.DrainTimeout, "error", err)
	s.setErr(fmt.Errorf("sink %s: %w: %d events not delivered within the drain timeout (%s): %w", s.cfg.Name, ErrLost, n, s.cfg.DrainTimeout, err))
	s.setState(Closed)
}

// drop kills the plugin (if any) and counts everything not acknowledged
// as dropped and lost; it returns how many events that was.
func (s *Delivery) drop() uint64 {
	if s.p != nil {
		s.kill()
	}
	n := len(s.batch)
	for _, b := range s.retry {
		n += len(b.evs)
	}
	s.retry, s.batch = nil, s.batch[:0]
	s.dropped.Add(uint64(n))
	s.lost.Add(uint64(n))
	return uint64(n) + uint64(s.q.disable())
}

func (s *Delivery) setErr(err error) {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

// newBuf returns an empty batch buffer.
func (s *Delivery) newBuf() *batchBuf {
	if n := len(s.free); n > 0 {
		b := s.free[n-1]
		s.free = s.free[:n-1]
		return b
	}
	return &batchBuf{evs: make([]events.Event, 0, s.cfg.BatchSize)}
}

// putBuf recycles b.
func (s *Delivery) putBuf(b *batchBuf) {
	clear(b.evs)
	b.evs, b.maybe, b.resend = b.evs[:0], 0, false
	s.free = append(s.free, b)
}
