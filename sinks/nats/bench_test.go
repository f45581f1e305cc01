// SPDX-License-Identifier: Apache-2.0

package nats

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/testutil"
	"github.com/flowtap/flowtap/plugins/host"
	"github.com/flowtap/flowtap/plugins/sdk"
	"github.com/flowtap/flowtap/plugins/supervise"
)

// BenchmarkWrite is the sink's Write of batches of flow events into real
// nats-server processes on loopback (built from go.mod's module, as the
// cluster tests do): with JetStream into a file-backed stream of one
// replica on one server (R1) and of three replicas on a three-node
// cluster (R3), each Write returning once the stream acknowledged every
// message; and on core NATS, published and flushed. Batch sizes,
// in-flight windows and events per message (packed messages) vary; it
// reports events/s, and the CPU time per event of the sink (this process)
// and of the servers.
//
//	go test -run '^$' -bench BenchmarkWrite -benchtime 5s ./sinks/nats/
func BenchmarkWrite(b *testing.B) {
	// flowtap's batch is 2048 events.
	shapes := []writeShape{{512, 1024, 1}, {2048, 256, 1}, {2048, 1024, 1}, {2048, 4096, 1}, {8192, 4096, 1},
		{2048, 1024, 16}, {2048, 1024, 64}, {2048, 1024, 256}, {8192, 1024, 256}}
	for _, tc := range []struct {
		name     string
		nodes    int
		replicas int // 0: core NATS
		shapes   []writeShape
	}{
		{"R1", 1, 1, shapes},
		{"R3", 3, 3, shapes},
		{"core", 1, 0, []writeShape{{2048, 0, 1}, {2048, 0, 64}}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := startCluster(b, tc.nodes)
			for _, sh := range tc.shapes {
				name := fmt.Sprintf("batch=%d/window=%d/events_per_message=%d", sh.batch, sh.window, sh.perMessage)
				if tc.replicas == 0 {
					name = fmt.Sprintf("batch=%d/events_per_message=%d", sh.batch, sh.perMessage)
				}
				b.Run(name, func(b *testing.B) { benchWrite(b, c, tc.replicas, sh) })
			}
		})
	}
}

// writeShape is how BenchmarkWrite writes: batches of batch events,
// window messages in flight (0: the default), perMessage events a
// message.
type writeShape struct{ batch, window, perMessage int }

// benchWrite writes batches of sh.batch events into a new stream of
// replicas (0: core NATS) on c.
func benchWrite(b *testing.B, c *natsCluster, replicas int, sh writeShape) {
	batch := sh.batch
	cfg := map[string]any{"servers": c.urls(), "subject": "flowtap.{host}.{event}", "events_per_message": sh.perMessage}
	if sh.window > 0 {
		cfg["max_in_flight"] = sh.window
	}
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

// BenchmarkPlugin is delivery as an agent does it: flowtap's supervisor
// hands batches of 2048 events (its default) over gRPC to the real sink
// plugin process, which writes them into an R1 or R3 stream on real
// nats-server processes, one event a message or packed. It reports
// events/s from the first event offered to the last acknowledged, and
// the CPU time per event of the agent side (this process), the plugin
// and the servers.
//
//	go test -run '^$' -bench BenchmarkPlugin -benchtime 5s ./sinks/nats/
func BenchmarkPlugin(b *testing.B) {
	bin := filepath.Join(b.TempDir(), pluginName)
	testutil.BuildBinary(b, "github.com/flowtap/flowtap/cmd/flowtap-sink-nats", bin)
	cat, err := events.Builtin()
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name            string
		nodes, replicas int
	}{{"R1", 1, 1}, {"R3", 3, 3}} {
		b.Run(tc.name, func(b *testing.B) {
			c := startCluster(b, tc.nodes)
			for _, per := range []int{1, 16, 64, 256} {
				b.Run(fmt.Sprintf("events_per_message=%d", per), func(b *testing.B) { benchPlugin(b, c, bin, cat, tc.replicas, per) })
			}
		})
	}
}

// benchPlugin delivers batches through the supervisor and the plugin
// process into a new stream of replicas on c, per events a message.
func benchPlugin(b *testing.B, c *natsCluster, bin string, cat *events.Catalogue, replicas, per int) {
	str := c.addStream("BENCH", replicas, nil, "flowtap.>")
	defer func() { _ = c.jetStream().DeleteStream(context.Background(), str.CachedInfo().Config.Name) }()
	sup, err := supervise.Start(b.Context(), supervise.Config{
		Name: "nats",
		Host: host.Config{Plugin: bin, Logger: hclog.NewNullLogger(), Names: cat.Name},
		SinkConfig: map[string]any{"servers": c.urls(), "subject": "flowtap.{host}.{event}", "stream": "BENCH",
			"events_per_message": per},
		Logger: hclog.NewNullLogger(),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = sup.Close(context.Background()) }()
	const batch = supervise.DefaultBatchSize
	evs := make([]events.Event, batch)
	next := 0
	start, selfCPU, serverCPU, pluginCPU := time.Now(), processCPU(os.Getpid()), c.cpu(), processCPU(sup.PID())
	for b.Loop() {
		for j := range evs {
			evs[j] = fleetEvent("bench-host", next+j+1)
		}
		next += batch
		sup.EnqueueBatch(evs)
	}
	for sup.Counters().Acked < uint64(next) {
		if cn := sup.Counters(); cn.Dropped > 0 {
			b.Fatalf("dropped: %+v", cn)
		}
		time.Sleep(time.Millisecond)
	}
	elapsed, n := time.Since(start), float64(next)
	b.ReportMetric(n/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(processCPU(os.Getpid())-selfCPU)/float64(time.Microsecond)/n, "agent-cpu-µs/event")
	b.ReportMetric(float64(processCPU(sup.PID())-pluginCPU)/float64(time.Microsecond)/n, "plugin-cpu-µs/event")
	b.ReportMetric(float64(c.cpu()-serverCPU)/float64(time.Microsecond)/n, "server-cpu-µs/event")
}
