package nats

import (
	"encoding/json"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// BenchmarkWrite is the sink's Write of batches of 2048 flow events (the
// supervisor's default batch) into an embedded server on loopback: with
// JetStream, each message stored in a file-backed stream and
// acknowledged; on core NATS, published and flushed. It reports events/s.
//
//	go test -run '^$' -bench BenchmarkWrite -benchtime 50x ./sinks/nats/
func BenchmarkWrite(b *testing.B) {
	const batch = 2048
	// Servers and sinks are set up here, so that what they log comes
	// before the benchmarks' result lines, not inside them.
	sinks := map[string]*Sink{}
	for _, js := range []bool{true, false} {
		ts := startServer(b, func(o *server.Options) { o.JetStream = js })
		cfg := map[string]any{"servers": []string{ts.url()}, "subject": "flowtap.{event}", "jetstream": js}
		if js {
			ts.addStream("FLOWTAP", "flowtap.>")
			cfg["stream"] = "FLOWTAP"
		}
		raw, _ := json.Marshal(cfg)
		s := New()
		if err := s.Configure(b.Context(), raw); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Close(b.Context()) })
		sinks[map[bool]string{true: "jetstream", false: "core"}[js]] = s
	}
	evs := flowEvents(1, batch)
	next := 0 // events written so far, across runs: the stream drops repeats
	for _, mode := range []string{"jetstream", "core"} {
		b.Run(mode, func(b *testing.B) {
			s := sinks[mode]
			b.ReportAllocs()
			for b.Loop() {
				for j := range evs {
					evs[j].Timestamp = int64(next + j + 1)
				}
				next += batch
				if err := s.Write(b.Context(), evs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
