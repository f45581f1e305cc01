// SPDX-License-Identifier: Apache-2.0

package pipeline

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/flowtap/flowtap/configs"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/testutil"
	"github.com/flowtap/flowtap/plugins/supervise"
)

// Run's own tests: a fake producer feeds base events, fake deliveries
// stand in for the supervised sink plugins, and the real stage (flow
// tracker, DNS stage, router) and reloader run between them.

// fakeProducer emits the batches a test sends on feed. Live (eventClock
// false), it runs until ctx ends, as the kernel capture does; as a file
// (eventClock true), it ends when feed is closed.
type fakeProducer struct {
	feed   chan []events.Event
	file   bool
	endAt  int64
	clock  atomic.Int64
	closed atomic.Bool
}

func newFakeProducer(file bool, endAt int64) *fakeProducer {
	return &fakeProducer{feed: make(chan []events.Event), file: file, endAt: endAt}
}

func (f *fakeProducer) run(ctx context.Context, emit func([]events.Event)) error {
	for {
		select {
		case b, ok := <-f.feed:
			if !ok {
				return nil
			}
			emit(b)
		case <-ctx.Done():
			return nil
		}
	}
}

func (f *fakeProducer) recycle([]events.Event)   {}
func (f *fakeProducer) now() int64               { return f.clock.Load() }
func (f *fakeProducer) eventClock() bool         { return f.file }
func (f *fakeProducer) end() int64               { return f.endAt }
func (f *fakeProducer) status(cs *CaptureStatus) { cs.Source = "fake" }
func (f *fakeProducer) close(*Stats) error {
	f.closed.Store(true)
	return nil
}

// fakeDelivery records what the router queues for one sink.
type fakeDelivery struct {
	name   string
	mu     sync.Mutex
	got    []events.Event
	closed bool
	failed chan struct{}
	err    error
	state  atomic.Int32 // a supervise.State
}

func (d *fakeDelivery) EnqueueBatch(evs []events.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got = append(d.got, evs...)
}

func (d *fakeDelivery) Failed() <-chan struct{} { return d.failed }
func (d *fakeDelivery) Err() error              { return d.err }
func (d *fakeDelivery) QueueDepth() int         { return 0 }
func (d *fakeDelivery) QueueCapacity() int      { return supervise.DefaultQueueSize }

// State is Failed once the delivery failed, else what setState set (Up
// at first).
func (d *fakeDelivery) State() supervise.State {
	select {
	case <-d.failed:
		return supervise.Failed
	default:
	}
	return supervise.State(d.state.Load())
}

func (d *fakeDelivery) Counters() supervise.Counters {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := uint64(len(d.got))
	return supervise.Counters{Queued: n, Sent: n, Acked: n}
}

func (d *fakeDelivery) Close(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	return d.err
}

// ids returns the IDs of the events received so far.
func (d *fakeDelivery) ids() []events.ID {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]events.ID, len(d.got))
	for i, ev := range d.got {
		out[i] = ev.ID
	}
	return out
}

func (d *fakeDelivery) isClosed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

// fakeSinks starts fake deliveries and keeps them by sink label.
type fakeSinks struct {
	mu      sync.Mutex
	started []*fakeDelivery
	fail    map[string]error // pipeline name -> error its sink fails with
}

func (f *fakeSinks) start(_ context.Context, cfg supervise.Config) (delivery, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := &fakeDelivery{name: cfg.Name, failed: make(chan struct{})}
	for p, err := range f.fail {
		if strings.Contains(cfg.Name, `"`+p+`"`) {
			d.err = err
			close(d.failed)
		}
	}
	f.started = append(f.started, d)
	return d, nil
}

// of returns the started delivery of pipeline p's first sink.
func (f *fakeSinks) of(t *testing.T, p string) *fakeDelivery {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range f.started {
		if strings.Contains(d.name, `"`+p+`"`) {
			return d
		}
	}
	t.Fatalf("no sink started for pipeline %q", p)
	return nil
}

// Base events of one outgoing connection, 10.0.0.1:40000 -> 10.0.0.2:80,
// as the local host's hooks see it.
var (
	local  = netip.MustParseAddr("10.0.0.1")
	remote = netip.MustParseAddr("10.0.0.2")
)

func packet(ts int64, dir events.PacketDirection, flags events.TCPFlags) events.Event {
	p := &events.PacketFlowBase{Direction: dir, Src: local, Dst: remote, SrcPort: 40000, DstPort: 80, Flags: flags}
	if dir == events.Ingress {
		p.Src, p.Dst, p.SrcPort, p.DstPort = remote, local, 80, 40000
	}
	return events.Event{ID: events.IDNetPacketFlowBase, Timestamp: ts, Context: events.Context{SocketCookie: 7, PID: 42}, Payload: p}
}

func handshake(ts int64) []events.Event {
	return []events.Event{
		packet(ts, events.Egress, events.FlagSYN),
		packet(ts+1e6, events.Ingress, events.FlagSYN|events.FlagACK),
	}
}

func pipelineConfig(source string, ps ...configs.Pipeline) *configs.Config {
	return &configs.Config{Source: source, Pipelines: ps}
}

func flowsTo(name string, sel ...string) configs.Pipeline {
	return configs.Pipeline{Name: name, Events: sel, Sinks: []configs.SinkConfig{{Plugin: "fake-" + name}}}
}

// startRun runs Run in the background; wait returns its result.
func startRun(t *testing.T, ctx context.Context, opts Options) (wait func() (Stats, error)) {
	t.Helper()
	cat, err := events.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	opts.Catalogue = cat
	type result struct {
		st  Stats
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := Run(ctx, opts)
		done <- result{st, err}
	}()
	return func() (Stats, error) {
		select {
		case r := <-done:
			return r.st, r.err
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return within 30 s")
			return Stats{}, nil
		}
	}
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRunStartDeliverShutdown: Run starts the sinks and the producer, the
// stage derives a flow's begin from its handshake and routes it, and a
// stop ends the open flow (close reason shutdown, at the producer's end),
// closes the producer and drains and closes the sink.
func TestRunStartDeliverShutdown(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	prod := newFakeProducer(false, 5e9)
	sinks := &fakeSinks{}
	wait := startRun(t, ctx, Options{
		Config:   pipelineConfig("test", flowsTo("flows", "flows")),
		producer: prod, startDelivery: sinks.start,
	})
	prod.feed <- handshake(1e9)
	d := func() *fakeDelivery { return sinks.of(t, "flows") }
	eventually(t, "the begin", func() bool { return slices.Equal(d().ids(), []events.ID{events.IDNetFlowTCPBegin}) })
	cancel()
	st, err := wait()
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := d().ids(); !slices.Equal(got, []events.ID{events.IDNetFlowTCPBegin, events.IDNetFlowTCPEnd}) {
		t.Fatalf("sink got %v, want a begin and its end", got)
	}
	end := d().got[1]
	if p := end.Payload.(*events.FlowEnd); p.Reason != events.CloseShutdown || end.Timestamp != 5e9 {
		t.Errorf("end: reason %v at %d, want shutdown at the producer's end 5e9", p.Reason, end.Timestamp)
	}
	if !d().isClosed() || !prod.closed.Load() {
		t.Errorf("sink closed %v, producer closed %v; want both", d().isClosed(), prod.closed.Load())
	}
	if st.BaseEvents != 2 || st.DerivedEvents != 2 || st.Delivered != 2 || len(st.Sinks) != 1 {
		t.Errorf("stats %+v; want 2 base, 2 derived, 2 delivered, one sink", st)
	}
}

// TestRunReload: a reload swaps routes between two batches. A new
// pipeline's sink starts and gets what follows; a removed pipeline's sink
// drains and closes, and its counters come after the running sinks'.
func TestRunReload(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	prod := newFakeProducer(false, 5e9)
	sinks := &fakeSinks{}
	logs := &testutil.SyncBuffer{}
	reload := make(chan struct{}, 1)
	next := pipelineConfig("next", flowsTo("begins", "net_flow_tcp_begin"))
	wait := startRun(t, ctx, Options{
		Config:   pipelineConfig("first", flowsTo("ends", "net_flow_tcp_end")),
		Logger:   hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Info}),
		Reload:   reload,
		Load:     func() (*configs.Config, error) { return next, nil },
		producer: prod, startDelivery: sinks.start,
	})
	prod.feed <- handshake(1e9)
	reload <- struct{}{}
	eventually(t, "the reload", func() bool { return strings.Contains(logs.String(), "config reloaded") })
	prod.feed <- handshake(2e9)[:1] // a second connection's SYN: nothing derived yet
	cancel()
	st, err := wait()
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	ends, begins := sinks.of(t, "ends"), sinks.of(t, "begins")
	if got := ends.ids(); len(got) != 0 || !ends.isClosed() {
		t.Errorf("removed pipeline's sink got %v, closed %v; want nothing (its flow ended after the swap) and closed", got, ends.isClosed())
	}
	// The handshake before the reload began the flow; the begins
	// pipeline did not exist then, and its end is not selected.
	if got := begins.ids(); len(got) != 0 {
		t.Errorf("new pipeline's sink got %v, want nothing: the only begin came before it", got)
	}
	if len(st.Sinks) != 2 || st.Sinks[0].Pipeline != "begins" || st.Sinks[1].Pipeline != "ends" {
		t.Errorf("sink stats %+v; want the running sink, then the retired one", st.Sinks)
	}
}

// TestRunReloadNewSinkGetsEvents: after a reload the stage routes the
// next batch to the new pipeline's sink.
func TestRunReloadNewSinkGetsEvents(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	prod := newFakeProducer(false, 5e9)
	sinks := &fakeSinks{}
	logs := &testutil.SyncBuffer{}
	reload := make(chan struct{}, 1)
	next := pipelineConfig("next", flowsTo("keep", "flows"), flowsTo("added", "net_flow_tcp_begin"))
	wait := startRun(t, ctx, Options{
		Config:   pipelineConfig("first", flowsTo("keep", "flows")),
		Logger:   hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Info}),
		Reload:   reload,
		Load:     func() (*configs.Config, error) { return next, nil },
		producer: prod, startDelivery: sinks.start,
	})
	reload <- struct{}{}
	eventually(t, "the reload", func() bool { return strings.Contains(logs.String(), "config reloaded") })
	prod.feed <- handshake(1e9)
	added := sinks.of(t, "added")
	eventually(t, "the begin at the new sink", func() bool { return len(added.ids()) == 1 })
	cancel()
	if _, err := wait(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := sinks.of(t, "keep").ids(); !slices.Equal(got, []events.ID{events.IDNetFlowTCPBegin, events.IDNetFlowTCPEnd}) {
		t.Errorf("kept pipeline's sink got %v, want begin and end", got)
	}
	if n := len(sinks.started); n != 2 {
		t.Errorf("%d sinks started, want 2: the kept pipeline keeps its running sink", n)
	}
}

// TestRunFileEndsByItself: a producer whose events carry the clock (a
// capture file) ends the run by itself; the stage follows the events'
// time, so an unanswered SYN times out at the end of the input, not on a
// wall-clock tick.
func TestRunFileEndsByItself(t *testing.T) {
	prod := newFakeProducer(true, 60e9)
	sinks := &fakeSinks{}
	wait := startRun(t, t.Context(), Options{
		Config:   pipelineConfig("test", flowsTo("flows", "flows")),
		producer: prod, startDelivery: sinks.start,
	})
	prod.feed <- handshake(1e9)[:1]
	close(prod.feed)
	st, err := wait()
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	d := sinks.of(t, "flows")
	if got := d.ids(); !slices.Equal(got, []events.ID{events.IDNetFlowTCPFailed}) {
		t.Fatalf("sink got %v, want one failed attempt", got)
	}
	if ev := d.got[0]; ev.Payload.(*events.FlowFailed).Reason != events.FailTimeout || ev.Timestamp != 11e9 {
		t.Errorf("failed: %+v at %d, want a timeout at 11e9 (the SYN plus the 10 s SYN timeout)", ev.Payload, ev.Timestamp)
	}
	if st.BaseEvents != 1 || !d.isClosed() {
		t.Errorf("stats %+v, sink closed %v", st, d.isClosed())
	}
}

// TestRunSinkFailureStops: a sink that fails (on_failure: stop, the
// default) stops the run with its error, after the drain.
func TestRunSinkFailureStops(t *testing.T) {
	prod := newFakeProducer(false, 5e9)
	boom := errors.New("plugin keeps crashing")
	sinks := &fakeSinks{fail: map[string]error{"flows": boom}}
	wait := startRun(t, t.Context(), Options{
		Config:   pipelineConfig("test", flowsTo("flows", "flows")),
		producer: prod, startDelivery: sinks.start,
	})
	st, err := wait()
	if !errors.Is(err, boom) {
		t.Fatalf("Run: %v, want the sink's error", err)
	}
	if !prod.closed.Load() || len(st.Sinks) != 1 || st.Sinks[0].Failed == "" {
		t.Errorf("producer closed %v, sink stats %+v; want it closed and the sink marked failed", prod.closed.Load(), st.Sinks)
	}
}

// TestDeriverTable: every deriver the built-in catalogue names has an
// entry in the deriver table, and a plan naming one it lacks is refused.
func TestDeriverTable(t *testing.T) {
	cat, err := events.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range cat.Definitions() {
		if d.Deriver == "" {
			continue
		}
		if err := checkDerivers(&events.Plan{Derivers: []string{d.Deriver}}); err != nil {
			t.Errorf("event %s: %v", d.Name, err)
		}
	}
	if err := checkDerivers(&events.Plan{Derivers: []string{"derive/nothing"}}); err == nil || !strings.Contains(err.Error(), `"derive/nothing"`) {
		t.Errorf("unknown deriver: %v, want an error naming it", err)
	}
}

// TestRunReloadKeepsFlowIDs: the flow tracker outlives a reload, so a
// flow begun before it ends after it with the same flow_id.
func TestRunReloadKeepsFlowIDs(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	prod := newFakeProducer(false, 5e9)
	sinks := &fakeSinks{}
	logs := &testutil.SyncBuffer{}
	reload := make(chan struct{}, 1)
	next := pipelineConfig("next", flowsTo("flows", "flows"), flowsTo("begins", "net_flow_tcp_begin"))
	wait := startRun(t, ctx, Options{
		Config:   pipelineConfig("first", flowsTo("flows", "flows")),
		Logger:   hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Info}),
		Reload:   reload,
		Load:     func() (*configs.Config, error) { return next, nil },
		producer: prod, startDelivery: sinks.start,
	})
	prod.feed <- handshake(1e9)
	d := func() *fakeDelivery { return sinks.of(t, "flows") }
	eventually(t, "the begin", func() bool { return len(d().ids()) == 1 })
	reload <- struct{}{}
	eventually(t, "the reload", func() bool { return strings.Contains(logs.String(), "config reloaded") })
	cancel()
	if _, err := wait(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := d().got
	if len(got) != 2 {
		t.Fatalf("sink got %v, want the begin and its end", d().ids())
	}
	b, e := got[0].Payload.(*events.FlowBegin), got[1].Payload.(*events.FlowEnd)
	if b.FlowID == "" || b.FlowID != e.FlowID || b.CommunityID != e.CommunityID {
		t.Errorf("begin flow_id %q community_id %q, end %q %q: want the same", b.FlowID, b.CommunityID, e.FlowID, e.CommunityID)
	}
}
