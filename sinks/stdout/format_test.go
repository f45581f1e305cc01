// SPDX-License-Identifier: Apache-2.0

package stdout

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/testutil"
	"github.com/flowtap/flowtap/plugins/sdk"
)

func TestTableAlignment(t *testing.T) {
	tf := tableFormatter{loc: time.UTC}
	v6 := testutil.SDKFlowBegin()
	v6.Name = events.NameNetFlowTCPEnd
	v6.Context = sdk.Context{Comm: "a-much-longer-c", PID: 4194304}
	v6.Fields = []sdk.Field{
		{Name: "conn_direction", Value: sdk.String("incoming")},
		{Name: "src", Value: sdk.String("2001:db8::1")},
		{Name: "dst", Value: sdk.String("::1")},
		{Name: "src_port", Value: sdk.Uint(55555)},
		{Name: "dst_port", Value: sdk.Uint(22)},
	}
	other := sdk.Event{Timestamp: 5, ID: 7, Fields: []sdk.Field{
		{Name: "note", Value: sdk.String("has space")},
		{Name: "empty", Value: sdk.String("")},
		{Name: "n", Value: sdk.Int(-1)},
	}}
	ev := testutil.SDKFlowBegin()
	out := string(tf.appendHeader(nil))
	out += string(tf.appendEvent(nil, &ev))
	out += string(tf.appendEvent(nil, &v6))
	out += string(tf.appendEvent(nil, &other))
	pod, ctr, host := testutil.SDKFlowBegin(), testutil.SDKFlowBegin(), testutil.SDKFlowBegin()
	pod.Context.ContainerID, pod.Context.PodName = strings.Repeat("3f", 32), "web-0"
	ctr.Context.ContainerID = strings.Repeat("3f", 32)
	host.Context.Host = true
	for _, e := range []*sdk.Event{&pod, &ctr, &host} {
		e.Fields = e.Fields[:5]
		out += string(tf.appendEvent(nil, e))
	}
	want := "" +
		"TIME             EVENT                 COMM                 PID  WORKLOAD          DETAILS\n" +
		"22:13:20.123456  net_flow_tcp_begin    curl                1234  -                 10.0.0.1:43210 -> 93.184.216.34:443 conn_direction=outgoing dst_dns=[example.com,www.example.com]\n" +
		"22:13:20.123456  net_flow_tcp_end      a-much-longer-c  4194304  -                 [2001:db8::1]:55555 -> [::1]:22 conn_direction=incoming\n" +
		"00:00:00.000000  event_7               -                      -  -                 note=\"has space\" n=-1\n" +
		"22:13:20.123456  net_flow_tcp_begin    curl                1234  web-0             10.0.0.1:43210 -> 93.184.216.34:443 conn_direction=outgoing\n" +
		"22:13:20.123456  net_flow_tcp_begin    curl                1234  3f3f3f3f3f3f      10.0.0.1:43210 -> 93.184.216.34:443 conn_direction=outgoing\n" +
		"22:13:20.123456  net_flow_tcp_begin    curl                1234  host              10.0.0.1:43210 -> 93.184.216.34:443 conn_direction=outgoing\n"
	if out != want {
		t.Errorf("table:\n%s\nwant:\n%s", out, want)
	}
	// Every column starts at the same offset on every line.
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	for _, col := range []string{"EVENT", "COMM", "WORKLOAD", "DETAILS"} {
		at := strings.Index(lines[0], col)
		for _, l := range lines[1:] {
			if l[at-2:at] != "  " || l[at] == ' ' {
				t.Errorf("column %s does not start at %d in %q", col, at, l)
			}
		}
	}
}

// TestTableHumanUnits: in the table, nanosecond fields read as durations
// and byte counts in binary units; other numbers stay as they are.
func TestTableHumanUnits(t *testing.T) {
	tf := tableFormatter{loc: time.UTC}
	ev := sdk.Event{Name: events.NameNetFlowTCPEnd, Fields: []sdk.Field{
		{Name: "duration_ns", Value: sdk.Uint(1_500_000)},
		{Name: "handshake_ns", Value: sdk.Uint(123_456)},
		{Name: "bytes_sent", Value: sdk.Uint(934)},
		{Name: "bytes_received", Value: sdk.Uint(1_258_291)},
		{Name: "packets_sent", Value: sdk.Uint(12345)},
		{Name: "ns", Value: sdk.Uint(5)},
		{Name: "reason_ns", Value: sdk.String("not a number")},
	}}
	got := string(tf.appendEvent(nil, &ev))
	want := "00:00:00.000000  net_flow_tcp_end      -                      -  -                 " +
		"duration=1.5ms handshake=123µs bytes_sent=934 B bytes_received=1.2 MiB packets_sent=12345 ns=5 reason_ns=\"not a number\"\n"
	if got != want {
		t.Errorf("table line:\n%q\nwant:\n%q", got, want)
	}
}

func TestTableQuotesAmbiguousText(t *testing.T) {
	tf := tableFormatter{loc: time.UTC}
	ev := sdk.Event{Name: "x", Context: sdk.Context{Comm: "evil\nname", PID: 1}, Fields: []sdk.Field{
		{Name: "s", Value: sdk.String("a=b")},
		{Name: "l", Value: sdk.Strings([]string{"ok", "x,y"})},
	}}
	got := string(tf.appendEvent(nil, &ev))
	if strings.Count(got, "\n") != 1 {
		t.Fatalf("event spans lines: %q", got)
	}
	for _, want := range []string{`"evil\nname"`, `s="a=b"`, `l=[ok,"x,y"]`} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %s", got, want)
		}
	}
}

func BenchmarkTableFormat(b *testing.B) {
	ev := testutil.SDKFlowBegin()
	tf := tableFormatter{loc: time.UTC}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = tf.appendEvent(buf[:0], &ev)
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkSinkWriteJSON is the whole Write path of a 100-event batch.
func BenchmarkSinkWriteJSON(b *testing.B) {
	s := New()
	s.out = io.Discard
	if err := s.Configure(b.Context(), []byte(`{"format":"json"}`)); err != nil {
		b.Fatal(err)
	}
	batch := make([]sdk.Event, 100)
	for i := range batch {
		batch[i] = testutil.SDKFlowBegin()
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Write(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "events/s")
}
