package nats

import (
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/flowtap/flowtap/plugins/sdk"
)

// BenchmarkWrite is the sink's Write of batches of flow events into real
// nats-server processes on loopback (built from go.mod's module, as the
// cluster tests do): with JetStream into a file-backed stream of one
// replica on one server (R1) and of three replicas on a three-node
// cluster (R3), each Write returning once the stream acknowledged every
// message; and on core NATS, published and flushed. Batch sizes and
// in-flight windows vary; it reports events/s.
//
//	go test -run '^$' -bench BenchmarkWrite -benchtime 100x ./sinks/nats/
func BenchmarkWrite(b *testing.B) {
	for _, tc := range []struct {
		name     string
		nodes    int
		replicas int // 0: core NATS
		batches  []int
		windows  []int
	}{
		{"R1", 1, 1, []int{2048}, []int{1024, 4096}},
		{"R3", 3, 3, []int{2048}, []int{1024, 4096}},
		{"core", 1, 0, []int{2048}, []int{1024}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := startCluster(b, tc.nodes)
			for _, batch := range tc.batches {
				for _, window := range tc.windows {
					name := fmt.Sprintf("batch=%d/window=%d", batch, window)
					if tc.replicas == 0 {
						name = fmt.Sprintf("batch=%d", batch)
					}
					b.Run(name, func(b *testing.B) { benchWrite(b, c, tc.replicas, batch, window) })
				}
			}
		})
	}
}

// benchWrite writes batches of batch events into a new stream of
// replicas (0: core NATS) on c, window messages in flight.
func benchWrite(b *testing.B, c *natsCluster, replicas, batch, window int) {
	cfg := map[string]any{"servers": c.urls(), "subject": "flowtap.{host}.{event}", "max_in_flight": window}
	if replicas > 0 {
		str := c.addStream("BENCH", replicas, nil, "flowtap.>")
		defer func() { _ = c.jetStream().DeleteStream(b.Context(), str.CachedInfo().Config.Name) }()
		cfg["stream"] = "BENCH"
	} else {
		cfg["jetstream"] = false
	}
	raw, _ := json.Marshal(cfg)
	s := New()
	if err := s.Configure(b.Context(), raw); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = s.Close(b.Context()) }()
	evs := flowEvents(1, batch)
	for i := range evs {
		evs[i].Context.HostName = "bench-host"
	}
	next := 0 // events written so far: each new, or the stream drops it
	selfCPU, serverCPU := processCPU(os.Getpid()), c.cpu()
	b.ReportAllocs()
	for b.Loop() {
		renumber(evs, next)
		next += batch
		if err := s.Write(b.Context(), evs); err != nil {
			b.Fatal(err)
		}
	}
	events := float64(b.N * batch)
	b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
	// CPU time per event, of the sink (this process) and of the servers:
	// on a shared machine a steadier figure than events/s.
	b.ReportMetric(float64(processCPU(os.Getpid())-selfCPU)/float64(time.Microsecond)/events, "sink-cpu-µs/event")
	b.ReportMetric(float64(c.cpu()-serverCPU)/float64(time.Microsecond)/events, "server-cpu-µs/event")
}

// renumber gives evs the timestamps after next, so that each is an event
// the stream has not seen.
func renumber(evs []sdk.Event, next int) {
	for j := range evs {
		evs[j].Timestamp = int64(next + j + 1)
	}
}
