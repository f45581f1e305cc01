// SPDX-License-Identifier: Apache-2.0

package supervise

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/testutil"
	"github.com/flowtap/flowtap/plugins/host"
	"github.com/flowtap/flowtap/plugins/sdk"
)

// BenchmarkSupervisedSink measures the pipeline's delivery path, in
// events per second: events offered to a supervised sink (Enqueue, the
// queue, batching, acknowledgements) and written to a sink that discards
// them,
//
//   - process: across the gRPC plugin boundary, to a real plugin process
//     (testdata/flaky with no options);
//   - in-process: to an sdk.Sink in this process, through the same
//     conversion (Payload.AppendFields, names) but no encoding and no
//     process: the yardstick.
//
// Each op offers one batch's worth of events (batch=N, also the sink's
// BatchSize); the timer includes draining the queue at the end.
func BenchmarkSupervisedSink(b *testing.B) {
	for _, n := range []int{512, 1024, 2048, 4096} {
		for _, where := range []string{"process", "in-process"} {
			b.Run(fmt.Sprintf("%s/batch=%d", where, n), func(b *testing.B) {
				cfg := Config{
					Name: "bench", BatchSize: n, QueueSize: 4 * n,
					Logger: hclog.NewNullLogger(),
					Host:   host.Config{Logger: hclog.NewNullLogger(), Names: names},
				}
				if where == "process" {
					cfg.Host.Plugin = plugin(b, flakyPkg)
				} else {
					cfg.Launch = func(context.Context) (Plugin, error) { return &inProcess{}, nil }
				}
				s, err := Start(context.Background(), cfg)
				if err != nil {
					b.Fatal(err)
				}
				evs := make([]events.Event, n)
				for i := range evs {
					evs[i] = event(i)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					for i := range evs {
						s.Enqueue(evs[i])
					}
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				if err := s.Close(ctx); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if c := s.Counters(); c.Acked != uint64(b.N*n) {
					b.Fatalf("acked %d of %d", c.Acked, b.N*n)
				}
				b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}

// inProcess is a Plugin that converts each batch as the SDK hands it to a
// sink and gives it to a discarding sdk.Sink, in this process.
type inProcess struct {
	evs     []sdk.Event
	fields  []events.Field
	sfields []sdk.Field
	sink    discard
}

type discard struct{}

func (discard) Info() sdk.Info                           { return sdk.Info{Name: "discard"} }
func (discard) Configure(context.Context, []byte) error  { return nil }
func (discard) Write(context.Context, []sdk.Event) error { return nil }
func (discard) Close(context.Context) error              { return nil }

func (p *inProcess) WriteAsync(ctx context.Context, batch []events.Event, done func(error)) error {
	p.evs, p.fields, p.sfields = p.evs[:0], p.fields[:0], p.sfields[:0]
	for i := range batch {
		ev := &batch[i]
		first := len(p.fields)
		if ev.Payload != nil {
			p.fields = ev.Payload.AppendFields(p.fields)
		}
		p.sfields = testutil.AppendSDKFields(p.sfields, p.fields[first:])
		p.evs = append(p.evs, sdk.Event{Timestamp: ev.Timestamp, ID: sdk.ID(ev.ID), Name: names(ev.ID),
			Context: testutil.SDKContext(ev.Context), Fields: p.sfields[first:len(p.sfields):len(p.sfields)]})
	}
	err := p.sink.Write(ctx, p.evs)
	if done != nil {
		done(err)
	}
	return nil
}

func (p *inProcess) Flush(context.Context) error { return nil }
func (p *inProcess) Ping(context.Context) error  { return nil }
func (p *inProcess) Kill()                       {}
func (p *inProcess) Close(context.Context) error { return nil }
func (p *inProcess) PID() int                    { return 0 }

// BenchmarkQueue is the router's side of the queue: 256 events offered
// one at a time (Enqueue) or at once (EnqueueBatch), then taken by the
// worker's pop, in one goroutine. ns/op is per event.
func BenchmarkQueue(b *testing.B) {
	evs := make([]events.Event, 256)
	for i := range evs {
		evs[i] = event(i)
	}
	for _, mode := range []string{"one", "batch"} {
		b.Run(mode, func(b *testing.B) {
			var queued, dropped, lost atomic.Uint64
			q := newQueue(DefaultQueueSize, DefaultBatchSize, Block, &queued, &dropped, &lost)
			out := make([]events.Event, 0, len(evs))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if i%len(evs) == 0 {
					if mode == "batch" {
						q.pushAll(evs)
					} else {
						for j := range evs {
							q.push(evs[j])
						}
					}
					out, _ = q.pop(out[:0], len(evs))
				}
			}
		})
	}
}
