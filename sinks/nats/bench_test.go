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
	for _, mode := range []struct {
		name      string
		jetstream bool
	}{{"jetstream", true}, {"core", false}} {
		b.Run(mode.name, func(b *testing.B) {
			ts := startServer(b, func(o *server.Options) { o.JetStream = mode.jetstream })
			cfg := map[string]any{"servers": []string{ts.url()}, "subject": "flowtap.{event}", "jetstream": mode.jetstream}
			if mode.jetstream {
				ts.addStream("FLOWTAP", "flowtap.>")
				cfg["stream"] = "FLOWTAP"
			}
			raw, _ := json.Marshal(cfg)
			s := New()
			if err := s.Configure(b.Context(), raw); err != nil {
				b.Fatal(err)
			}
			defer s.Close(b.Context())
			evs := flowEvents(1, batch)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				// Distinct events in every batch: the stream drops repeats.
				for j := range evs {
					evs[j].Timestamp = int64(i*batch + j + 1)
				}
				if err := s.Write(b.Context(), evs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
