// SPDX-License-Identifier: Apache-2.0

package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/testutil"
	"github.com/flowtap/flowtap/plugins/internal/wire"
	"github.com/flowtap/flowtap/plugins/internal/wire/proto"
	"github.com/flowtap/flowtap/plugins/sdk"
)

// Test-only event IDs.
const (
	idAllKinds events.ID = 900 // allKinds payload
	idReject   events.ID = 901 // fakeSink rejects batches holding one
	idBlock    events.ID = 902 // fakeSink blocks until its ctx ends
)

// names is the Names function of the tests.
func names(id events.ID) string {
	switch id {
	case events.IDNetFlowTCPBegin:
		return events.NameNetFlowTCPBegin
	case events.IDNetFlowTCPEnd:
		return events.NameNetFlowTCPEnd
	case idAllKinds:
		return "all_kinds"
	case idReject:
		return "reject"
	case idBlock:
		return "block"
	}
	return ""
}

// allKinds is a payload with a field of every kind.
type allKinds struct{ id events.ID }

func (p allKinds) EventID() events.ID { return p.id }
func (allKinds) AppendFields(dst []events.Field) []events.Field {
	return append(dst,
		events.Field{Name: "s", Value: events.String("x \"y\"\n")},
		events.Field{Name: "u", Value: events.Uint(1 << 63)},
		events.Field{Name: "i", Value: events.Int(-5)},
		events.Field{Name: "b", Value: events.Bool(true)},
		events.Field{Name: "l", Value: events.Strings([]string{"a", "b"})},
		events.Field{Name: "e", Value: events.Strings(nil)},
		events.Field{Name: "n", Value: events.Value{}},
	)
}

// fakeSink records what the SDK hands it; events whose name is "reject"
// or "block" make Write fail or wait for its context.
type fakeSink struct {
	mu       sync.Mutex
	config   string
	batches  [][]sdk.Event
	closes   int
	closeErr error
	ctxErr   error
	entered  chan struct{} // receives when a blocking Write starts

	inWrite, maxInWrite atomic.Int32
}

func (f *fakeSink) Info() sdk.Info { return sdk.Info{Name: "fake", Version: "1.0"} }

func (f *fakeSink) Configure(_ context.Context, config []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.config = string(config)
	var c map[string]any
	if err := json.Unmarshal(config, &c); err != nil {
		return err
	}
	if _, bad := c["bad"]; bad {
		return fmt.Errorf("validate: %w", sdk.ConfigErrors{{Key: "bad", Message: "is bad"}, {Key: "worse", Message: "also"}})
	}
	return nil
}

func (f *fakeSink) Write(ctx context.Context, batch []sdk.Event) error {
	n := f.inWrite.Add(1)
	defer f.inWrite.Add(-1)
	for {
		m := f.maxInWrite.Load()
		if n <= m || f.maxInWrite.CompareAndSwap(m, n) {
			break
		}
	}
	for _, ev := range batch {
		switch ev.Name {
		case "reject":
			return errors.New("disk full")
		case "block":
			if f.entered != nil {
				f.entered <- struct{}{}
			}
			<-ctx.Done()
			f.mu.Lock()
			f.ctxErr = ctx.Err()
			f.mu.Unlock()
			return ctx.Err()
		}
	}
	// The SDK reuses the batch's memory: keep a deep copy.
	cp := make([]sdk.Event, len(batch))
	for i, ev := range batch {
		cp[i] = ev
		cp[i].Fields = make([]sdk.Field, len(ev.Fields))
		for j, fl := range ev.Fields {
			if fl.Value.Strings != nil {
				fl.Value.Strings = append([]string{}, fl.Value.Strings...)
			}
			cp[i].Fields[j] = fl
		}
	}
	f.mu.Lock()
	f.batches = append(f.batches, cp)
	f.mu.Unlock()
	return nil
}

func (f *fakeSink) Close(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closes++
	return f.closeErr
}

// startInProcess serves impl and connects a host Plugin to it in this
// process, with go-plugin's TestPluginGRPCConn.
func startInProcess(t testing.TB, impl sdk.Sink) *Plugin {
	t.Helper()
	return startInProcessConfig(t, impl, Config{})
}

// startInProcessConfig is startInProcess with the limits of cfg; its Name
// and Names are set here.
func startInProcessConfig(t testing.TB, impl sdk.Sink, cfg Config) *Plugin {
	t.Helper()
	cfg.Name, cfg.Names = "test sink", names
	client, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{wire.PluginName: sdk.Plugin(impl)})
	t.Cleanup(func() { _ = client.Close() })
	raw, err := client.Dispense(wire.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	s, err := newInProcess(context.Background(), cfg, raw.(proto.SinkClient))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// podWorkload is shared by every flowBegin, as the enricher shares one
// Workload among a container's events: the encoding sends it once per
// run of events and then as "the same".
var podWorkload = &events.Workload{ContainerID: strings.Repeat("3f", 32), ContainerRuntime: "containerd", ContainerName: "client",
	ContainerImage: "localhost/client:1", PodName: "web-0", PodNamespace: "payments", PodUID: "6f1d2c3b-4a59-4e8f-9b7a-0c1d2e3f4a5b",
	PodLabels: []string{"app=web"}}

func flowBegin() events.Event {
	return events.Event{
		ID:        events.IDNetFlowTCPBegin,
		Timestamp: 1700000000000000001,
		Context: events.Context{SocketCookie: 99, CgroupID: 7, PID: 1234, UID: 1000, Comm: "curl", HostName: "box",
			PPID: 1, ProcessStart: 1699999999000000000, Exe: "/usr/bin/curl", Workload: podWorkload},
		Payload: &events.FlowBegin{Flow: events.Flow{
			Direction: events.Outgoing,
			Src:       netip.MustParseAddr("10.0.0.1"),
			Dst:       netip.MustParseAddr("93.184.216.34"),
			SrcPort:   43210,
			DstPort:   443,
			DstDNS:    []string{"example.com"},
		}},
	}
}

func flowEnd() events.Event {
	return events.Event{
		ID:        events.IDNetFlowTCPEnd,
		Timestamp: 1700000000000000002,
		Context:   events.Context{Comm: "sshd", PID: 1, Workload: &events.Workload{}},
		Payload: &events.FlowEnd{Flow: events.Flow{
			Direction: events.Incoming,
			Src:       netip.MustParseAddr("::ffff:192.0.2.1"),
			Dst:       netip.MustParseAddr("2001:db8::1"),
			SrcPort:   5555,
			DstPort:   22,
		}},
	}
}

// sdkEvent is what a sink should receive for ev.
func sdkEvent(ev events.Event) sdk.Event {
	fields := []sdk.Field{}
	if ev.Payload != nil {
		fields = testutil.AppendSDKFields(fields, ev.Payload.AppendFields(nil))
	}
	return sdk.Event{Timestamp: ev.Timestamp, ID: sdk.ID(ev.ID), Name: names(ev.ID), Context: testutil.SDKContext(ev.Context), Fields: fields}
}

func TestInProcessInfo(t *testing.T) {
	s := startInProcess(t, &fakeSink{})
	if got, want := s.Info(), (Info{Name: "fake", Version: "1.0"}); got != want {
		t.Errorf("Info() = %+v, want %+v", got, want)
	}
}

func TestInProcessConfigureErrors(t *testing.T) {
	fake := &fakeSink{}
	s := startInProcess(t, fake)
	err := s.Configure(t.Context(), map[string]any{"bad": 1})
	var errs ConfigErrors
	if !errors.As(err, &errs) {
		t.Fatalf("Configure error %v does not unwrap to ConfigErrors", err)
	}
	want := ConfigErrors{{Key: "bad", Message: "is bad"}, {Key: "worse", Message: "also"}}
	if !reflect.DeepEqual(errs, want) {
		t.Errorf("ConfigErrors = %v, want %v", errs, want)
	}
	if got, want := err.Error(), `configure sink "test sink": bad: is bad; worse: also`; got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
	// The sink was not configured, so it accepts no batch.
	err = s.Write(t.Context(), []events.Event{flowBegin()})
	if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "not configured") {
		t.Errorf("Write after failed Configure: %v, want a rejection for not being configured", err)
	}
	// Configure is called once.
	if err := s.Configure(t.Context(), nil); err == nil || !strings.Contains(err.Error(), "already configured") {
		t.Errorf("second Configure: %v", err)
	}
}

func TestInProcessWrite(t *testing.T) {
	fake := &fakeSink{}
	s := startInProcess(t, fake)
	if err := s.Configure(t.Context(), map[string]any{"format": "json", "n": 2}); err != nil {
		t.Fatal(err)
	}
	if fake.config != `{"format":"json","n":2}` {
		t.Errorf("sink got config %s", fake.config)
	}
	batches := [][]events.Event{
		{flowBegin(), flowEnd()},
		{{ID: idAllKinds, Timestamp: -1, Payload: allKinds{idAllKinds}}, {ID: 77}},
		{flowEnd()},
		{flowBegin(), flowBegin(), flowEnd(), flowBegin(), {ID: 77}},
	}
	for _, b := range batches {
		if err := s.Write(t.Context(), b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Write(t.Context(), nil); err != nil {
		t.Errorf("empty Write: %v", err)
	}
	if len(fake.batches) != len(batches) {
		t.Fatalf("sink got %d batches, want %d", len(fake.batches), len(batches))
	}
	for i, b := range batches {
		for j, ev := range b {
			want := sdkEvent(ev)
			if ev.ID == 77 {
				want.Name = "event_77"
			}
			if got := fake.batches[i][j]; !reflect.DeepEqual(got, want) {
				t.Errorf("batch %d event %d:\n got %+v\nwant %+v", i, j, got, want)
			}
		}
	}
	// Spot-check a few conversions explicitly, in case both sides of the
	// comparison above were wrong the same way.
	ak := fake.batches[1][0]
	if v, _ := ak.Field("u"); v.Uint != 1<<63 {
		t.Errorf("uint field = %+v", v)
	}
	if v, _ := ak.Field("e"); v.Kind != sdk.KindStrings || v.Strings == nil || len(v.Strings) != 0 {
		t.Errorf("empty list = %+v", v)
	}
	if v, _ := fake.batches[0][1].Field("src"); v.Str != "192.0.2.1" {
		t.Errorf("mapped IPv4 src = %q", v.Str)
	}
	if s.seq != uint64(len(batches)) {
		t.Errorf("seq = %d after %d batches", s.seq, len(batches))
	}
	// The workload of a container's events, and the host's.
	if c := fake.batches[3][1].Context; c.PodNamespace != "payments" || c.ContainerID != podWorkload.ContainerID || c.Exe != "/usr/bin/curl" || c.Host {
		t.Errorf("pod event's context: %+v", c)
	}
	if c := fake.batches[3][2].Context; !c.Host || c.ContainerID != "" {
		t.Errorf("host event's context: %+v", c)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestInProcessWriteRejected(t *testing.T) {
	fake := &fakeSink{}
	s := startInProcess(t, fake)
	if err := s.Configure(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	err := s.Write(t.Context(), []events.Event{flowBegin(), {ID: idReject}})
	if !errors.Is(err, ErrRejected) {
		t.Fatalf("Write = %v, want ErrRejected", err)
	}
	if got, want := err.Error(), `write batch 1 to sink "test sink": batch rejected by sink: disk full`; got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
	// The stream survives a rejection.
	if err := s.Write(t.Context(), []events.Event{flowBegin()}); err != nil {
		t.Fatalf("Write after a rejection: %v", err)
	}
	if len(fake.batches) != 1 {
		t.Errorf("sink accepted %d batches, want 1", len(fake.batches))
	}
}

func TestInProcessWriteContext(t *testing.T) {
	fake := &fakeSink{}
	s := startInProcess(t, fake)
	if err := s.Configure(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	err := s.Write(ctx, []events.Event{{ID: idBlock}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Write = %v, want DeadlineExceeded", err)
	}
	// The next Write opens a new stream and succeeds; by then the sink has
	// seen its context end.
	if err := s.Write(t.Context(), []events.Event{flowBegin()}); err != nil {
		t.Fatalf("Write after a timeout: %v", err)
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if fake.ctxErr == nil {
		t.Error("the sink's Write context did not end")
	}
	if len(fake.batches) != 1 {
		t.Errorf("sink accepted %d batches, want 1", len(fake.batches))
	}
}

func TestInProcessClose(t *testing.T) {
	fake := &fakeSink{closeErr: errors.New("flush failed")}
	s := startInProcess(t, fake)
	if err := s.Configure(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(t.Context(), []events.Event{flowBegin()}); err != nil {
		t.Fatal(err)
	}
	err := s.Close(t.Context())
	if err == nil || err.Error() != `close sink "test sink": flush failed` {
		t.Errorf("Close = %v", err)
	}
	if err2 := s.Close(t.Context()); err2 != err {
		t.Errorf("second Close = %v, want the first's %v", err2, err)
	}
	if fake.closes != 1 {
		t.Errorf("sink closed %d times", fake.closes)
	}
	if err := s.Write(t.Context(), []events.Event{flowBegin()}); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close = %v, want ErrClosed", err)
	}
	if err := s.Configure(t.Context(), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Configure after Close = %v, want ErrClosed", err)
	}
}

// TestInProcessCloseAbortsWrite: Close does not wait for a Write the
// plugin never answers.
func TestInProcessCloseAbortsWrite(t *testing.T) {
	fake := &fakeSink{entered: make(chan struct{}, 1)}
	s := startInProcess(t, fake)
	if err := s.Configure(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	werr := make(chan error, 1)
	go func() { werr <- s.Write(context.Background(), []events.Event{{ID: idBlock}}) }()
	<-fake.entered
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Errorf("Close = %v", err)
	}
	if err := <-werr; !errors.Is(err, ErrClosed) {
		t.Errorf("aborted Write = %v, want ErrClosed", err)
	}
	if fake.closes != 1 {
		t.Errorf("sink closed %d times", fake.closes)
	}
}

// TestInProcessConcurrentWrites: Write may be called from many
// goroutines, but the sink sees one batch at a time, and every batch.
func TestInProcessConcurrentWrites(t *testing.T) {
	fake := &fakeSink{}
	s := startInProcess(t, fake)
	if err := s.Configure(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 25 {
				if err := s.Write(t.Context(), []events.Event{flowBegin(), flowEnd()}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := len(fake.batches); n != 200 {
		t.Errorf("sink got %d batches, want 200", n)
	}
	if m := fake.maxInWrite.Load(); m != 1 {
		t.Errorf("sink saw %d concurrent Writes", m)
	}
}

// partialSink fails every batch after saying 2 of its events may have
// arrived, and notes 1 duplicate in every Write: what the webhook sink does
// after a partial or unclear failure.
type partialSink struct{ fakeSink }

func (p *partialSink) Write(ctx context.Context, batch []sdk.Event) error {
	sdk.NoteDuplicates(ctx, 1)
	if len(batch) > 1 {
		return &sdk.PartialWriteError{MaybeDelivered: 2, Err: errors.New("second request failed")}
	}
	return nil
}

// TestInProcessPartialWrite: what a sink says may have arrived of a failed
// batch reaches the host's error (PartialError, MaybeDelivered, still an
// ErrRejected), and the duplicates it notes reach Config.OnDuplicates,
// for a batch accepted or not.
func TestInProcessPartialWrite(t *testing.T) {
	var dups int
	s := startInProcessConfig(t, &partialSink{}, Config{OnDuplicates: func(n int) { dups += n }})
	if err := s.Configure(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	err := s.Write(t.Context(), []events.Event{flowBegin(), flowBegin(), flowBegin()})
	if !errors.Is(err, ErrRejected) || MaybeDelivered(err) != 2 || !strings.Contains(err.Error(), "2 events of the batch may have reached the destination") {
		t.Fatalf("Write = %v (maybe delivered %d), want a rejection with 2 maybe delivered", err, MaybeDelivered(err))
	}
	if err := s.Write(t.Context(), []events.Event{flowBegin()}); err != nil || MaybeDelivered(err) != 0 {
		t.Fatalf("Write = %v", err)
	}
	if dups != 2 {
		t.Errorf("OnDuplicates got %d, want 2 (one per Write)", dups)
	}
}
