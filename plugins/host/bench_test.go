// SPDX-License-Identifier: Apache-2.0

package host

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/testutil"
	"github.com/flowtap/flowtap/plugins/sdk"
)

// benchBatchSizes are the batch sizes of the Write benchmarks.
var benchBatchSizes = []int{256, 1024, 4096}

// flowEnds returns n realistic net_flow_tcp_end events: outgoing and
// incoming connections, IPv4 and IPv6, with counters, a few DNS names,
// and a handful of processes, as a busy host would report them.
func flowEnds(n int) []events.Event {
	comms := []string{"curl", "nginx", "postgres", "java", "sshd"}
	dns := [][]string{
		{"api.example.com"},
		{"cdn-edge-17.example.net", "static.example.org"},
		nil,
		{"db-primary.internal.example.com"},
	}
	batch := make([]events.Event, n)
	for i := range batch {
		var src, dst netip.Addr
		if i%4 == 3 {
			src = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)})
			dst = netip.MustParseAddr("2001:db8:ffff::443")
		} else {
			src = netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
			dst = netip.AddrFrom4([4]byte{93, 184, 216, byte(34 + i%7)})
		}
		dir := events.Outgoing
		if i%3 == 0 {
			dir = events.Incoming
		}
		batch[i] = events.Event{
			ID:        events.IDNetFlowTCPEnd,
			Timestamp: 1_700_000_000_000_000_000 + int64(i)*50_000,
			Context: events.Context{
				SocketCookie: 0x4000_0000 + uint64(i),
				CgroupID:     8812,
				PID:          uint32(1000 + i%5),
				UID:          uint32(1000 * (i % 2)),
				Comm:         comms[i%len(comms)],
				HostName:     "node-7.prod.example.internal",
			},
			Payload: &events.FlowEnd{
				Flow: events.Flow{
					Direction: dir,
					Src:       src,
					Dst:       dst,
					SrcPort:   uint16(32768 + i%28000),
					DstPort:   443,
					DstDNS:    dns[i%len(dns)],
				},
				DurationNs: uint64(1_500_000 + i*1_000),
				Counters: events.Counters{
					BytesSent:       uint64(512 + i*3),
					BytesReceived:   uint64(48_000 + i*17),
					PacketsSent:     uint64(6 + i%10),
					PacketsReceived: uint64(40 + i%30),
				},
				Reason: events.CloseFIN,
			},
		}
	}
	return batch
}

// rendered returns evs with their flows' address texts filled in, as the
// flow tracker (derive) hands them to the pipeline: it renders a
// connection's addresses once, for all the events of the connection, so
// the conversion at the sink boundary copies them instead of formatting
// them.
func rendered(evs []events.Event) []events.Event {
	for i := range evs {
		if end, ok := evs[i].Payload.(*events.FlowEnd); ok {
			end.SrcText, end.DstText = events.AddrText(end.Src), events.AddrText(end.Dst)
		}
	}
	return evs
}

// BenchmarkWriteAcrossPlugin measures events from the host to a sink
// plugin and back (the acknowledgements), in events per second:
//
//   - process/discard: a real plugin process whose sink drops every batch:
//     the cost of the conversion, the encoding and the process boundary;
//     "sync" calls Write per batch, "async" WriteAsync (and one Flush at
//     the end, timed);
//   - process/stdout-json: the real stdout plugin printing JSON, forwarded
//     by go-plugin to a host stdout that discards it;
//   - process/stdout-json-output: the same, printing to a file the host
//     hands it (Config.Output, sdk.Output; here /dev/null) instead;
//   - process/echo-450B: the discard plugin printing a line of 450 bytes
//     (about the size of a JSON line) per event without formatting anything:
//     the cost of go-plugin's stdout forwarding;
//   - grpc-in-process/discard: the same protocol over go-plugin's
//     TestPluginGRPCConn, without a second process;
//   - process/discard-rendered: as process/discard, with the events'
//     addresses rendered beforehand, as the pipeline's flow tracker hands
//     them over (see rendered).
//
// allocs/op are the host's allocations per batch; the plugin's are in
// plugins/sdk's BenchmarkDecode. FLOWTAP_BENCH_PLUGIN_CPUPROFILE=path makes
// the discard plugin write a CPU profile of itself to path.
func BenchmarkWriteAcrossPlugin(b *testing.B) {
	discardBin := buildPlugin(b, discardPkg)
	stdoutBin := buildPlugin(b, stdoutPkg)
	type benchCase struct {
		name     string
		bin      string
		config   map[string]any
		batch    int
		async    bool
		output   bool // hand the plugin a file for sdk.Output (/dev/null)
		rendered bool // addresses rendered beforehand
	}
	var cases []benchCase
	for _, mode := range []string{"sync", "async"} {
		for _, n := range benchBatchSizes {
			cases = append(cases, benchCase{fmt.Sprintf("process/discard/%s/batch=%d", mode, n), discardBin, nil, n, mode == "async", false, false})
		}
	}
	for _, mode := range []string{"sync", "async"} {
		cases = append(cases,
			benchCase{"process/stdout-json/" + mode + "/batch=1024", stdoutBin, map[string]any{"format": "json"}, 1024, mode == "async", false, false},
			benchCase{"process/stdout-json-output/" + mode + "/batch=1024", stdoutBin, map[string]any{"format": "json"}, 1024, mode == "async", true, false},
			benchCase{"process/echo-450B/" + mode + "/batch=1024", discardBin, map[string]any{"echo": 450}, 1024, mode == "async", false, false},
		)
	}
	cases = append(cases, benchCase{"grpc-in-process/discard/sync/batch=1024", "", nil, 1024, false, false, false})
	for _, n := range benchBatchSizes {
		cases = append(cases, benchCase{fmt.Sprintf("process/discard-rendered/async/batch=%d", n), discardBin, nil, n, true, false, true})
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			var s *Plugin
			if tc.bin == "" {
				s = startInProcess(b, discardSink{})
			} else {
				var err error
				// FLOWTAP_BENCH_MAX_IN_FLIGHT=n tries another MaxInFlight.
				inFlight, _ := strconv.Atoi(os.Getenv("FLOWTAP_BENCH_MAX_IN_FLIGHT"))
				cfg := Config{Plugin: tc.bin, Logger: hclog.NewNullLogger(), Stdout: io.Discard, Names: names, MaxInFlight: inFlight}
				if tc.output {
					devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
					if err != nil {
						b.Fatal(err)
					}
					defer devNull.Close()
					cfg.Output = devNull
				}
				s, err = Start(ctx, cfg)
				if err != nil {
					b.Fatal(err)
				}
			}
			defer s.Close(ctx)
			config := tc.config
			if prof := os.Getenv("FLOWTAP_BENCH_PLUGIN_CPUPROFILE"); prof != "" && tc.bin == discardBin {
				config = map[string]any{"cpuprofile": prof}
				for k, v := range tc.config {
					config[k] = v
				}
			}
			if err := s.Configure(ctx, config); err != nil {
				b.Fatal(err)
			}
			batch := flowEnds(tc.batch)
			if tc.rendered {
				batch = rendered(batch)
			}
			// Warm up: the first batches grow the buffers of both sides.
			for range 3 {
				if err := s.Write(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			pid := 0
			if s.client != nil {
				pid, _ = strconv.Atoi(s.client.ID())
			}
			hostCPU, pluginCPU := cpuTime(b, 0), cpuTime(b, pid)
			b.ResetTimer()
			for range b.N {
				var err error
				if tc.async {
					err = s.WriteAsync(ctx, batch, nil)
				} else {
					err = s.Write(ctx, batch)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			if err := s.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			n := float64(b.N * tc.batch)
			b.ReportMetric(n/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(cpuTime(b, 0)-hostCPU)/n, "host-cpu-ns/event")
			if pid != 0 {
				b.ReportMetric(float64(cpuTime(b, pid)-pluginCPU)/n, "plugin-cpu-ns/event")
			}
		})
	}
}

// cpuTime is the CPU time (user and system) process pid has used so far,
// in nanoseconds; pid 0 is this process. The kernel counts another
// process's time in clock ticks (10 ms), fine over a benchmark's second.
func cpuTime(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	if pid == 0 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			tb.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// utime and stime are fields 14 and 15; the command name before them,
	// in parentheses, may hold spaces.
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		tb.Fatalf("parse /proc/%d/stat: %v, %v", pid, err1, err2)
	}
	const tick = 10 * time.Millisecond // USER_HZ is 100 on Linux
	return time.Duration(utime+stime) * tick
}

// BenchmarkWriteInProcess is the yardstick of BenchmarkWriteAcrossPlugin:
// the same events, through the same conversion (names, Payload.AppendFields
// into reused buffers), handed to a discarding sdk.Sink in this process,
// with no encoding and no process boundary. "rendered-" is the yardstick
// of process/discard-rendered.
func BenchmarkWriteInProcess(b *testing.B) {
	for _, variant := range []string{"", "rendered-"} {
		for _, n := range benchBatchSizes {
			b.Run(fmt.Sprintf("%sbatch=%d", variant, n), func(b *testing.B) {
				benchWriteInProcess(b, n, variant != "")
			})
		}
	}
}

func benchWriteInProcess(b *testing.B, n int, pre bool) {
	ctx := context.Background()
	var sink sdk.Sink = discardSink{}
	var conv sdkConverter
	batch := flowEnds(n)
	if pre {
		batch = rendered(batch)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := sink.Write(ctx, conv.convert(batch, names)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
}

// sdkConverter turns events into sdk.Events in reused memory, as the SDK
// hands them to a sink.
type sdkConverter struct {
	events  []sdk.Event
	fields  []events.Field
	sfields []sdk.Field
}

func (c *sdkConverter) convert(evs []events.Event, name func(events.ID) string) []sdk.Event {
	c.events, c.fields, c.sfields = c.events[:0], c.fields[:0], c.sfields[:0]
	for i := range evs {
		ev := &evs[i]
		first := len(c.fields)
		if ev.Payload != nil {
			c.fields = ev.Payload.AppendFields(c.fields)
		}
		c.sfields = testutil.AppendSDKFields(c.sfields, c.fields[first:])
		c.events = append(c.events, sdk.Event{
			Timestamp: ev.Timestamp,
			ID:        sdk.ID(ev.ID),
			Name:      name(ev.ID),
			Context:   testutil.SDKContext(ev.Context),
			Fields:    c.sfields[first:len(c.sfields):len(c.sfields)],
		})
	}
	return c.events
}

// BenchmarkEncode is the host's side alone: converting a batch of 1024
// flow events and encoding it. "rendered" has the addresses rendered, as
// the flow tracker hands them over; "addresses" has not, and the encoding
// renders them (and allocates their strings).
func BenchmarkEncode(b *testing.B) {
	for _, variant := range []string{"addresses", "rendered"} {
		b.Run(variant, func(b *testing.B) {
			var c batchEncoder
			batch := flowEnds(1024)
			if variant == "rendered" {
				batch = rendered(batch)
			}
			size := 0
			b.ReportAllocs()
			for b.Loop() {
				if err := c.encode(batch, DefaultMaxBatchBytes, names); err != nil {
					b.Fatal(err)
				}
				size = len(c.parts[0])
				c.release()
			}
			b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(size)/float64(len(batch)), "bytes/event")
		})
	}
}

type discardSink struct{}

func (discardSink) Info() sdk.Info                           { return sdk.Info{Name: "discard"} }
func (discardSink) Configure(context.Context, []byte) error  { return nil }
func (discardSink) Write(context.Context, []sdk.Event) error { return nil }
func (discardSink) Close(context.Context) error              { return nil }
