package host

import (
	"context"
	"io"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/plugins/sdk"
)

// flowBatch returns n flow events, begins and ends alternating.
func flowBatch(n int) []events.Event {
	batch := make([]events.Event, n)
	for i := range batch {
		if i%2 == 0 {
			batch[i] = flowBegin()
		} else {
			batch[i] = flowEnd()
		}
	}
	return batch
}

// BenchmarkWriteAcrossPlugin measures Write from the host to a sink plugin
// and back (the ack), in events per second:
//
//   - process/discard: a real plugin process whose sink drops every batch:
//     the cost of the protocol and the process boundary;
//   - process/stdout-json: the real stdout plugin printing JSON, forwarded
//     by go-plugin to a host stdout that discards it;
//   - in-process/discard: the same protocol over go-plugin's
//     TestPluginGRPCConn, without a second process.
func BenchmarkWriteAcrossPlugin(b *testing.B) {
	discardBin := buildPlugin(b, discardPkg)
	stdoutBin := buildPlugin(b, stdoutPkg)
	for _, tc := range []struct {
		name   string
		bin    string
		config map[string]any
		batch  int
	}{
		{"process/discard/batch=1", discardBin, nil, 1},
		{"process/discard/batch=100", discardBin, nil, 100},
		{"process/discard/batch=1000", discardBin, nil, 1000},
		{"process/stdout-json/batch=100", stdoutBin, map[string]any{"format": "json"}, 100},
		{"in-process/discard/batch=100", "", nil, 100},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			var s *Sink
			if tc.bin == "" {
				s = startInProcess(b, discardSink{})
			} else {
				var err error
				s, err = Start(ctx, Config{Plugin: tc.bin, Logger: hclog.NewNullLogger(), Stdout: io.Discard, Names: names})
				if err != nil {
					b.Fatal(err)
				}
			}
			defer s.Close(ctx)
			if err := s.Configure(ctx, tc.config); err != nil {
				b.Fatal(err)
			}
			batch := flowBatch(tc.batch)
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Write(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*tc.batch)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkConvert is the host's event-to-wire conversion of a 100-event
// batch; once warm it should not allocate.
func BenchmarkConvert(b *testing.B) {
	var c converter
	batch := flowBatch(100)
	b.ReportAllocs()
	for b.Loop() {
		c.batch(1, batch, names)
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "events/s")
}

type discardSink struct{}

func (discardSink) Info() sdk.Info                           { return sdk.Info{Name: "discard"} }
func (discardSink) Configure(context.Context, []byte) error  { return nil }
func (discardSink) Write(context.Context, []sdk.Event) error { return nil }
func (discardSink) Close(context.Context) error              { return nil }
