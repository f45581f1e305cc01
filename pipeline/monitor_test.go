// SPDX-License-Identifier: Apache-2.0

package pipeline

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/flowtap/flowtap/configs"
	"github.com/flowtap/flowtap/plugins/host"
	"github.com/flowtap/flowtap/plugins/supervise"
)

// TestMonitor follows a run through a Monitor: starting (not ready: the
// capture is not attached), running (ready; events counted by name; a
// sink that retries makes it not ready until it is up again), stopped
// (not ready, the final counts kept).
func TestMonitor(t *testing.T) {
	mon := NewMonitor()
	if s := mon.Snapshot(); s.Phase != PhaseStarting || len(s.NotReady()) != 1 || s.NotReady()[0].Component != "capture" {
		t.Fatalf("before Run: phase %v, not ready %+v; want starting, the capture", s.Phase, s.NotReady())
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	prod := newFakeProducer(false, 5e9)
	sinks := &fakeSinks{}
	wait := startRun(t, ctx, Options{
		Config:   pipelineConfig("test", flowsTo("flows", "flows")),
		Monitor:  mon,
		producer: prod, startDelivery: sinks.start,
	})
	prod.feed <- handshake(1e9)
	eventually(t, "the begin", func() bool { return len(sinks.of(t, "flows").ids()) == 1 })
	s := mon.Snapshot()
	if s.Phase != PhaseRunning || len(s.NotReady()) != 0 {
		t.Fatalf("running: phase %v, not ready %+v", s.Phase, s.NotReady())
	}
	counts := map[string]uint64{}
	for _, e := range s.Events {
		counts[e.Name] = e.Count
	}
	want := map[string]uint64{"net_packet_flow_base": 2, "net_tcp_socket_base": 0, "net_packet_dns_base": 0, "flowtap_records_lost": 0,
		"net_flow_tcp_begin": 1, "net_flow_tcp_end": 0, "net_flow_tcp_failed": 0}
	if !reflect.DeepEqual(counts, want) {
		t.Errorf("events %v, want %v", counts, want)
	}
	if !s.Flows.Running || s.Flows.Entries != 1 || s.Flows.Capacity != 65536 {
		t.Errorf("flow table %+v, want one entry of 65536", s.Flows)
	}
	if len(s.Sinks) != 1 || s.Sinks[0].Name != "fake-flows" || s.Sinks[0].Pipeline != "flows" || s.Sinks[0].Queued != 1 || s.Sinks[0].State != supervise.Up {
		t.Errorf("sinks %+v", s.Sinks)
	}

	d := sinks.of(t, "flows")
	d.state.Store(int32(supervise.Retrying))
	nr := mon.Snapshot().NotReady()
	wantNR := []NotReady{{Component: "sink", Pipeline: "flows", Sink: "fake-flows", State: "retrying",
		Reason: "its plugin failed: restarting it or resending its batches"}}
	if !reflect.DeepEqual(nr, wantNR) {
		t.Errorf("retrying sink: not ready %+v, want %+v", nr, wantNR)
	}
	d.state.Store(int32(supervise.Up))
	if nr := mon.Snapshot().NotReady(); len(nr) != 0 {
		t.Errorf("sink up again: not ready %+v", nr)
	}

	cancel()
	if _, err := wait(); err != nil {
		t.Fatal(err)
	}
	s = mon.Snapshot()
	if s.Phase != PhaseStopped || len(s.NotReady()) == 0 || s.NotReady()[0].Component != "run" {
		t.Errorf("after Run: phase %v, not ready %+v", s.Phase, s.NotReady())
	}
	for _, e := range s.Events {
		if e.Name == "net_flow_tcp_end" && e.Count != 1 {
			t.Errorf("after Run: %d ends counted, want the shutdown's 1", e.Count)
		}
	}
}

// TestMonitorCountsReloads: an applied reload and a rejected one.
func TestMonitorCountsReloads(t *testing.T) {
	mon := NewMonitor()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	reload := make(chan struct{}, 1)
	bad := true
	wait := startRun(t, ctx, Options{
		Config:  pipelineConfig("first", flowsTo("flows", "flows")),
		Monitor: mon,
		Reload:  reload,
		Load: func() (*configs.Config, error) {
			if bad {
				return nil, errors.New("no such file")
			}
			return pipelineConfig("next", flowsTo("flows", "flows")), nil
		},
		producer: newFakeProducer(false, 5e9), startDelivery: (&fakeSinks{}).start,
	})
	reload <- struct{}{}
	eventually(t, "the rejected reload", func() bool { return mon.Snapshot().Reloads == ReloadCounts{Failed: 1} })
	bad = false // read by the reloader only after the next request
	reload <- struct{}{}
	eventually(t, "the applied reload", func() bool { return mon.Snapshot().Reloads == ReloadCounts{OK: 1, Failed: 1} })
	cancel()
	if _, err := wait(); err != nil {
		t.Fatal(err)
	}
}

// TestRunOutputClosedStopsCleanly: a sink whose output lost its reader
// stops the run, as a stop and not a failure: Run returns nil.
func TestRunOutputClosedStopsCleanly(t *testing.T) {
	prod := newFakeProducer(false, 5e9)
	closed := fmt.Errorf("sink x: write batch 3: %w", host.ErrOutputClosed)
	sinks := &fakeSinks{fail: map[string]error{"flows": closed}}
	wait := startRun(t, t.Context(), Options{
		Config:   pipelineConfig("test", flowsTo("flows", "flows")),
		producer: prod, startDelivery: sinks.start,
	})
	if _, err := wait(); err != nil {
		t.Fatalf("Run = %v, want nil: a closed output is a stop", err)
	}
	if !prod.closed.Load() {
		t.Error("the producer was not closed")
	}
}

func TestSinkName(t *testing.T) {
	list := []configs.SinkConfig{{Plugin: "stdout"}, {Plugin: "file"}, {Plugin: "/opt/x/flowtap-sink-file"}, {Plugin: "./my-sink"}}
	var got []string
	for j := range list {
		got = append(got, sinkName(list, j))
	}
	if want := []string{"stdout", "file-1", "file-2", "my-sink"}; !reflect.DeepEqual(got, want) {
		t.Errorf("sink names %q, want %q", got, want)
	}
}

// TestStatsLine pins the stats line: the interval, then only the
// counters that moved, by how much.
func TestStatsLine(t *testing.T) {
	prev := Snapshot{
		Events:  []EventCount{{Name: "net_flow_tcp_begin", Count: 10}, {Name: "net_flow_tcp_end", Count: 5}},
		Capture: CaptureStatus{Records: 100},
		Caches:  []CacheStatus{{Name: "dns", CacheStats: CacheStats{Hits: 1, Misses: 2}}},
		Sinks:   []SinkStatus{{Pipeline: "p", Name: "stdout", Counters: supervise.Counters{Queued: 15, Sent: 15, Acked: 15}}},
	}
	cur := prev
	cur.Events = []EventCount{{Name: "net_flow_tcp_begin", Count: 70}, {Name: "net_flow_tcp_end", Count: 5}, {Name: "net_flow_tcp_failed", Count: 3}}
	cur.Capture = CaptureStatus{Records: 160, LostRecords: 7}
	cur.Flows = FlowTableStatus{EvictedIdle: 2}
	cur.Caches = []CacheStatus{{Name: "dns", CacheStats: CacheStats{Hits: 4, Misses: 2}}}
	cur.Sinks = []SinkStatus{{Pipeline: "p", Name: "stdout", Counters: supervise.Counters{Queued: 78, Sent: 80, Acked: 75, Retried: 2, Dropped: 1, Restarts: 1}}}
	cur.Reloads = ReloadCounts{OK: 1}
	got := fmt.Sprint(statsLine(prev, cur, 10*time.Second+40*time.Millisecond))
	want := "[interval 10s events_per_second 6.3 net_flow_tcp_begin 60 net_flow_tcp_failed 3 records 60 lost_records 7 flows.evicted_idle 2 " +
		"cache.dns.hits 3 sink.p.stdout.queued 63 sink.p.stdout.sent 65 sink.p.stdout.acked 60 sink.p.stdout.retried 2 " +
		"sink.p.stdout.dropped 1 sink.p.stdout.restarts 1 reloads_ok 1]"
	if got != want {
		t.Errorf("stats line\n%s\nwant\n%s", got, want)
	}
	if quiet := fmt.Sprint(statsLine(cur, cur, time.Minute)); quiet != "[interval 1m0s]" {
		t.Errorf("quiet interval: %s", quiet)
	}
}
