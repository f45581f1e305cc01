// SPDX-License-Identifier: Apache-2.0

package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/testutil"
	"github.com/flowtap/flowtap/plugins/host/internal/encode"
	"github.com/flowtap/flowtap/plugins/internal/wire"
	"github.com/flowtap/flowtap/plugins/sdk"
)

// allEvents flattens what fake received.
func allEvents(fake *fakeSink) []sdk.Event {
	fake.mu.Lock()
	defer fake.mu.Unlock()
	var out []sdk.Event
	for _, b := range fake.batches {
		out = append(out, b...)
	}
	return out
}

// wantEvents is what a sink should receive for evs.
func wantEvents(evs []events.Event) []sdk.Event {
	out := make([]sdk.Event, len(evs))
	for i, ev := range evs {
		out[i] = sdkEvent(ev)
	}
	return out
}

// numbered returns n flow events with timestamps 0 to n-1.
func numbered(n int) []events.Event {
	evs := flowEnds(n)
	for i := range evs {
		evs[i].Timestamp = int64(i)
	}
	return evs
}

func TestWriteAsync(t *testing.T) {
	fake := &fakeSink{}
	s := startInProcess(t, fake)
	if err := s.Configure(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	var sent []events.Event
	var outcomes []string
	for i := range 20 {
		batch := numbered(1 + i%5)
		for j := range batch {
			batch[j].Timestamp = int64(len(sent) + j)
		}
		sent = append(sent, batch...)
		err := s.WriteAsync(t.Context(), batch, func(err error) {
			outcomes = append(outcomes, fmt.Sprintf("%d:%v", i, err))
		})
		if err != nil {
			t.Fatal(err)
		}
		// The caller may reuse the batch at once.
		clear(batch)
		if len(s.pending) > DefaultMaxInFlight {
			t.Fatalf("%d messages in flight, the limit is %d", len(s.pending), DefaultMaxInFlight)
		}
	}
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 20 {
		want = append(want, fmt.Sprintf("%d:<nil>", i))
	}
	if !reflect.DeepEqual(outcomes, want) {
		t.Errorf("done calls = %v, want %v", outcomes, want)
	}
	if got := allEvents(fake); !reflect.DeepEqual(got, wantEvents(sent)) {
		t.Errorf("sink got %d events, want the %d sent, in order", len(got), len(sent))
	}
	// Write after WriteAsync, on the same stream.
	if err := s.Write(t.Context(), []events.Event{flowBegin()}); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(t.Context()); err != nil {
		t.Errorf("second Flush = %v", err)
	}
}

func TestWriteAsyncRejected(t *testing.T) {
	fake := &fakeSink{}
	s := startInProcess(t, fake)
	if err := s.Configure(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	var errs []error
	for i := range 5 {
		batch := []events.Event{flowBegin()}
		if i == 1 || i == 3 {
			batch = append(batch, events.Event{ID: idReject})
		}
		if err := s.WriteAsync(t.Context(), batch, func(err error) { errs = append(errs, err) }); err != nil {
			t.Fatal(err)
		}
	}
	err := s.Flush(t.Context())
	if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "write batch 2 ") {
		t.Errorf("Flush = %v, want the rejection of batch 2 (the first failure)", err)
	}
	for i, err := range errs {
		if rejected := i == 1 || i == 3; rejected != errors.Is(err, ErrRejected) {
			t.Errorf("batch %d: done(%v)", i+1, err)
		}
	}
	if err := s.Flush(t.Context()); err != nil {
		t.Errorf("Flush after reporting = %v, want nil", err)
	}
	if n := len(allEvents(fake)); n != 3 {
		t.Errorf("sink accepted %d events, want 3", n)
	}
}

// gateSink holds every Write until the test lets it through.
type gateSink struct {
	discardSink
	gate     chan struct{}
	finished atomic.Int32
}

func (g *gateSink) Write(ctx context.Context, _ []sdk.Event) error {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	g.finished.Add(1)
	return nil
}

// TestWriteAsyncInFlight: with MaxInFlight messages unacknowledged,
// WriteAsync waits for the oldest.
func TestWriteAsyncInFlight(t *testing.T) {
	g := &gateSink{gate: make(chan struct{})}
	s := startInProcessConfig(t, g, Config{MaxInFlight: 2})
	if err := s.Configure(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := s.WriteAsync(t.Context(), []events.Event{flowBegin()}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := g.finished.Load(); n != 0 {
		t.Fatalf("the sink finished %d writes before the gate opened", n)
	}
	go func() {
		for range 3 {
			g.gate <- struct{}{}
		}
	}()
	if err := s.WriteAsync(t.Context(), []events.Event{flowBegin()}, nil); err != nil {
		t.Fatal(err)
	}
	if n := g.finished.Load(); n < 1 {
		t.Errorf("a third batch went out with %d of two acknowledged", n)
	}
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := g.finished.Load(); n != 3 {
		t.Errorf("sink finished %d writes, want 3", n)
	}
}

// TestFlushContext: Flush gives up when its context ends; the batches in
// flight fail with the context's error and the next Write works.
func TestFlushContext(t *testing.T) {
	fake := &fakeSink{}
	s := startInProcess(t, fake)
	if err := s.Configure(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	var doneErr error
	if err := s.WriteAsync(t.Context(), []events.Event{{ID: idBlock}}, func(err error) { doneErr = err }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := s.Flush(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Flush = %v, want DeadlineExceeded", err)
	}
	if !errors.Is(doneErr, context.DeadlineExceeded) {
		t.Errorf("done(%v), want DeadlineExceeded", doneErr)
	}
	if err := s.Write(t.Context(), []events.Event{flowBegin()}); err != nil {
		t.Errorf("Write after a broken Flush = %v", err)
	}
}

// TestCloseFlushes: Close waits for the WriteAsync batches and reports a
// failure no Flush has.
func TestCloseFlushes(t *testing.T) {
	fake := &fakeSink{}
	s := startInProcess(t, fake)
	if err := s.Configure(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	calls := 0
	for _, batch := range [][]events.Event{{flowBegin()}, {{ID: idReject}}, {flowEnd()}} {
		if err := s.WriteAsync(t.Context(), batch, func(error) { calls++ }); err != nil {
			t.Fatal(err)
		}
	}
	err := s.Close(t.Context())
	if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), `close sink "test sink"`) {
		t.Errorf("Close = %v, want the rejection", err)
	}
	if calls != 3 || len(allEvents(fake)) != 2 || fake.closes != 1 {
		t.Errorf("done called %d times, sink got %d events and %d closes", calls, len(allEvents(fake)), fake.closes)
	}
	if err := s.WriteAsync(t.Context(), []events.Event{flowBegin()}, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteAsync after Close = %v", err)
	}
	if err := s.Flush(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Flush after Close = %v", err)
	}
}

// TestWriteSplits: a batch larger than MaxBatchBytes reaches the sink in
// parts, each within the limit, all in order.
func TestWriteSplits(t *testing.T) {
	const limit = 2048
	var c batchEncoder
	sent := numbered(100)
	if err := c.encode(sent, limit-envelopeBytes, names); err != nil {
		t.Fatal(err)
	}
	if len(c.parts) < 5 {
		t.Fatalf("100 flow events in %d parts of %d bytes", len(c.parts), limit)
	}
	for i, p := range c.parts {
		if len(p) > limit-envelopeBytes {
			t.Errorf("part %d: %d bytes", i, len(p))
		}
	}

	fake := &fakeSink{}
	s := startInProcessConfig(t, fake, Config{MaxBatchBytes: limit})
	if err := s.Configure(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(t.Context(), sent); err != nil {
		t.Fatal(err)
	}
	if len(fake.batches) != len(c.parts) {
		t.Errorf("sink got %d writes, want %d", len(fake.batches), len(c.parts))
	}
	if got := allEvents(fake); !reflect.DeepEqual(got, wantEvents(sent)) {
		t.Errorf("sink got %d events, want the %d sent, in order", len(got), len(sent))
	}
}

// TestWriteRejectedPart: the error of a split batch says which part the
// sink rejected and how many it did.
func TestWriteRejectedPart(t *testing.T) {
	fake := &fakeSink{}
	s := startInProcessConfig(t, fake, Config{MaxBatchBytes: 2048})
	if err := s.Configure(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	batch := numbered(100)
	batch[50] = events.Event{ID: idReject}
	err := s.Write(t.Context(), batch)
	if !errors.Is(err, ErrRejected) {
		t.Fatalf("Write = %v, want ErrRejected", err)
	}
	for _, want := range []string{`write batch 1 to sink "test sink"`, "disk full", "(events ", "the sink rejected 1 of the batch's"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if n := len(allEvents(fake)); n == 0 || n >= 99 {
		t.Errorf("sink accepted %d events: want the parts without the rejected event", n)
	}
}

// TestWriteTooLarge: an event too large for a message fails the Write at
// once, naming the sink and the event; nothing of the batch is sent.
func TestWriteTooLarge(t *testing.T) {
	fake := &fakeSink{}
	s := startInProcessConfig(t, fake, Config{MaxBatchBytes: 4096})
	if err := s.Configure(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	huge := flowBegin()
	huge.Context.Comm = strings.Repeat("x", 5000)
	batch := append(numbered(50), huge)
	err := s.Write(t.Context(), batch)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Write = %v, want ErrTooLarge", err)
	}
	for _, want := range []string{`sink "test sink"`, "event 50 of the batch (net_flow_tcp_begin)", "than the 4064 bytes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if err := s.WriteAsync(t.Context(), batch, func(error) { t.Error("done called for a batch not sent") }); !errors.Is(err, ErrTooLarge) {
		t.Errorf("WriteAsync = %v, want ErrTooLarge", err)
	}
	if n := len(allEvents(fake)); n != 0 {
		t.Errorf("sink got %d events of a batch that failed", n)
	}
	if err := s.Write(t.Context(), batch[:50]); err != nil {
		t.Errorf("Write without the large event = %v", err)
	}
}

// TestEncodeReuse: once warm, encoding allocates only what the payloads'
// AppendFields do.
func TestEncodeReuse(t *testing.T) {
	var c batchEncoder
	batch := []events.Event{{ID: idAllKinds, Payload: allKinds{idAllKinds}}, {ID: 77}, {ID: idAllKinds, Payload: allKinds{idAllKinds}}}
	encode := func() {
		if err := c.encode(batch, math.MaxInt32, names); err != nil {
			t.Fatal(err)
		}
		c.release()
	}
	encode()
	var fields []events.Field
	payloadAllocs := testing.AllocsPerRun(100, func() {
		for _, ev := range batch {
			if ev.Payload != nil {
				fields = ev.Payload.AppendFields(fields[:0])
			}
		}
	})
	if n := testing.AllocsPerRun(100, encode); n != payloadAllocs {
		t.Errorf("encode allocates %v times per batch, the payloads %v", n, payloadAllocs)
	}
}

// TestEncoderSchemaCacheBound: a producer whose field lists keep changing
// does not grow the schema cache without end.
func TestEncoderSchemaCacheBound(t *testing.T) {
	var enc encode.Encoder
	enc.Start(nil)
	for i := range 5000 {
		f := []events.Field{{Name: fmt.Sprint("f", i), Value: events.Uint(1)}}
		if !enc.Append(math.MaxInt, 1, "e", 0, &events.Context{}, f) {
			t.Fatal("does not fit")
		}
	}
	if enc.Count() != 5000 {
		t.Errorf("%d events", enc.Count())
	}
}

// TestPluginLargeBatch writes a batch larger than one message to a real
// plugin, then one holding an event larger than a message.
func TestPluginLargeBatch(t *testing.T) {
	bin := buildPlugin(t, discardPkg)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	s, err := Start(ctx, Config{Name: "p / discard", Plugin: bin, Logger: hclog.NewNullLogger(), Names: names})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if err := s.Configure(ctx, nil); err != nil {
		t.Fatal(err)
	}
	big := flowEnds(50_000) // about 6 MiB encoded
	if err := s.Write(ctx, big); err != nil {
		t.Fatalf("Write of %d events = %v", len(big), err)
	}
	huge := flowBegin()
	huge.Context.Comm = strings.Repeat("x", DefaultMaxBatchBytes)
	err = s.Write(ctx, []events.Event{flowBegin(), huge})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), `sink "p / discard"`) {
		t.Errorf("Write of an event over the limit = %v, want ErrTooLarge naming the sink", err)
	}
	if err := s.Write(ctx, big[:10]); err != nil {
		t.Errorf("Write after a too-large event = %v", err)
	}
}

// TestStartOldProtocol: a plugin speaking an older protocol version is
// refused at Start, with an error that says what to do.
func TestStartOldProtocol(t *testing.T) {
	bin := buildPlugin(t, "./testdata/otherprotocol")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err := Start(ctx, Config{Name: "p / old", Plugin: bin, Logger: hclog.NewNullLogger(), Stdout: io.Discard})
	if err == nil {
		t.Fatal("Start of a version 1 plugin succeeded")
	}
	want := fmt.Sprintf("plugin speaks sink protocol version 1, this host speaks %d: rebuild the plugin", wire.ProtocolVersion)
	for _, w := range []string{`start sink "p / old"`, want} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
}

// TestStartNewProtocol: a plugin speaking a newer protocol version than
// the host's completes go-plugin's negotiation (the host offers it) and is
// refused by its negotiated version, with an error that says which side
// to update.
func TestStartNewProtocol(t *testing.T) {
	newer := wire.ProtocolVersion + 1
	bin := filepath.Join(t.TempDir(), "flowtap-sink-newprotocol")
	testutil.BuildBinary(t, "./testdata/otherprotocol", bin, "-ldflags", fmt.Sprintf("-X main.version=%d", newer))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err := Start(ctx, Config{Name: "p / new", Plugin: bin, Logger: hclog.NewNullLogger(), Stdout: io.Discard})
	if err == nil {
		t.Fatalf("Start of a version %d plugin succeeded", newer)
	}
	want := fmt.Sprintf("plugin speaks sink protocol version %d, newer than this host's %d: update flowtap", newer, wire.ProtocolVersion)
	for _, w := range []string{`start sink "p / new"`, "protocol version: ", want} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
}

// TestConcurrentWriteAsync: WriteAsync, Write and Flush from several
// goroutines at once; every batch arrives and every done runs once.
func TestConcurrentWriteAsync(t *testing.T) {
	fake := &fakeSink{}
	s := startInProcessConfig(t, fake, Config{MaxInFlight: 3})
	if err := s.Configure(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var done atomic.Int32
	for g := range 4 {
		wg.Go(func() {
			for i := range 25 {
				var err error
				switch (g + i) % 3 {
				case 0:
					err = s.Write(t.Context(), []events.Event{flowBegin()})
				case 1:
					err = s.WriteAsync(t.Context(), []events.Event{flowBegin()}, func(err error) {
						if err != nil {
							t.Error(err)
						}
						done.Add(1)
					})
				default:
					err = s.Flush(t.Context())
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	writes, asyncs := 0, 0
	for g := range 4 {
		for i := range 25 {
			switch (g + i) % 3 {
			case 0:
				writes++
			case 1:
				asyncs++
			}
		}
	}
	if n := len(allEvents(fake)); n != writes+asyncs {
		t.Errorf("sink got %d events, want %d", n, writes+asyncs)
	}
	if n := int(done.Load()); n != asyncs {
		t.Errorf("done ran %d times, want %d", n, asyncs)
	}
	if m := fake.maxInWrite.Load(); m != 1 {
		t.Errorf("sink saw %d concurrent Writes", m)
	}
}
