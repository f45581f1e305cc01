// SPDX-License-Identifier: Apache-2.0

package sdk

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flowtap/flowtap/plugins/internal/wire"
	"github.com/flowtap/flowtap/plugins/internal/wire/proto"
	wireenc "github.com/flowtap/flowtap/plugins/sdk/internal/encode"
)

// testEncoder is the SDK's test encoder (internal/encode) for Events.
// The host's own encoder writes the same format; its in-process tests
// (plugins/host) decode with this SDK.
type testEncoder struct {
	wireenc.Encoder
	fields []wireenc.Field
}

// Append adds ev's parts to the batch (encode.Encoder.Append).
func (e *testEncoder) Append(limit int, id ID, name string, ts int64, c *Context, fields []Field) bool {
	e.fields = e.fields[:0]
	for _, f := range fields {
		v := f.Value
		e.fields = append(e.fields, wireenc.Field{Name: f.Name, Value: wireenc.Value{Kind: wireenc.Kind(v.Kind), Str: v.Str, Uint: v.Uint, Int: v.Int, Bool: v.Bool, Strings: v.Strings}})
	}
	ec := wireenc.Context(*c)
	return e.Encoder.Append(limit, uint16(id), name, ts, &ec, e.fields)
}

// encode encodes evs as one batch with the test encoder.
func encode(tb testing.TB, evs ...Event) []byte {
	tb.Helper()
	var enc testEncoder
	enc.Start(nil)
	for i := range evs {
		ev := &evs[i]
		if !enc.Append(math.MaxInt, ev.ID, ev.Name, ev.Timestamp, &ev.Context, ev.Fields) {
			tb.Fatalf("event %d does not fit", i)
		}
	}
	return enc.Finish()
}

// allKindsEvent has a field of every kind, with awkward values.
func allKindsEvent() Event {
	return Event{
		Timestamp: math.MinInt64,
		ID:        math.MaxUint16,
		Name:      "all_kinds",
		Context: Context{
			SocketCookie: math.MaxUint64, CgroupID: 1, PID: math.MaxUint32, UID: 0,
			Comm: "名前\x00\xff", HostName: "höst",
		},
		Fields: []Field{
			{Name: "s", Value: String("x \"y\"\n")},
			{Name: "empty", Value: String("")},
			{Name: "u", Value: Uint(math.MaxUint64)},
			{Name: "u0", Value: Uint(0)},
			{Name: "i", Value: Int(math.MinInt64)},
			{Name: "imax", Value: Int(math.MaxInt64)},
			{Name: "ineg", Value: Int(-1)},
			{Name: "t", Value: Bool(true)},
			{Name: "f", Value: Bool(false)},
			{Name: "l", Value: Strings([]string{"a", "", "ü"})},
			{Name: "none", Value: Strings(nil)},
			{Name: "invalid", Value: Value{}},
			{Name: "", Value: Uint(7)},
			{Name: "ключ 🔑", Value: String("значение 🔒")},
		},
	}
}

func TestDecodeRoundTrip(t *testing.T) {
	huge := strings.Repeat("ü", 1<<20)
	hugeList := make([]string, 100_000)
	for i := range hugeList {
		hugeList[i] = string(rune('a' + i%26))
	}
	flow := Event{Timestamp: 1, ID: 1002, Name: "net_flow_tcp_end", Fields: []Field{
		{Name: "src", Value: String("10.0.0.1")},
		{Name: "dst_dns", Value: Strings([]string{"example.com"})},
		{Name: "bytes_sent", Value: Uint(1 << 40)},
	}}
	for _, tc := range []struct {
		name string
		evs  []Event
	}{
		{"all kinds", []Event{allKindsEvent()}},
		{"zero event", []Event{{}}},
		{"no fields", []Event{{ID: 3, Name: "x", Fields: []Field{}}}},
		{"huge string", []Event{{Name: "h", Fields: []Field{{Name: "s", Value: String(huge)}}, Context: Context{Comm: huge}}}},
		{"huge list", []Event{{Name: "h", Fields: []Field{{Name: "l", Value: Strings(hugeList)}}}}},
		// Shapes interleave: each schema is defined once and then reused.
		{"shapes", []Event{flow, allKindsEvent(), flow, {}, allKindsEvent(), flow}},
		// Same ID and name, another shape: a schema of its own.
		{"same id, other kinds", []Event{flow, {Timestamp: 1, ID: 1002, Name: "net_flow_tcp_end", Fields: []Field{
			{Name: "src", Value: Uint(1)},
			{Name: "dst_dns", Value: Strings(nil)},
			{Name: "bytes_sent", Value: Uint(1)},
		}}, flow}},
		// Same ID, name and kinds, another field name.
		{"same id, other names", []Event{flow, {Timestamp: 1, ID: 1002, Name: "net_flow_tcp_end", Fields: []Field{
			{Name: "src", Value: String("10.0.0.1")},
			{Name: "src_dns", Value: Strings([]string{"example.com"})},
			{Name: "bytes_sent", Value: Uint(1 << 40)},
		}}, flow}},
		// IDs 1 and 17 share the encoder's recent-schema slot.
		{"colliding ids", []Event{{ID: 1, Name: "a"}, {ID: 17, Name: "b"}, {ID: 1, Name: "a"}, {ID: 17, Name: "b"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d decoder
			got, err := d.decode(encode(t, tc.evs...))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.evs) {
				t.Fatalf("decoded %d events, want %d", len(got), len(tc.evs))
			}
			for i := range got {
				want := tc.evs[i]
				if want.Fields == nil {
					want.Fields = []Field{} // the decoder always gives a list
				}
				if !reflect.DeepEqual(got[i], want) {
					t.Errorf("event %d:\n got %+.200v\nwant %+.200v", i, got[i], want)
				}
			}
		})
	}
}

// TestDecodeSchemasOncePerBatch checks the encoding's compactness: a
// schema is defined once per batch, not per event.
func TestDecodeSchemasOncePerBatch(t *testing.T) {
	ev := allKindsEvent()
	one := len(encode(t, ev))
	two := len(encode(t, ev, ev))
	var enc testEncoder
	enc.Start(nil)
	enc.Append(math.MaxInt, ev.ID, ev.Name, ev.Timestamp, &ev.Context, ev.Fields)
	afterSchema := enc.Len()
	enc.Append(math.MaxInt, ev.ID, ev.Name, ev.Timestamp, &ev.Context, ev.Fields)
	perEvent := enc.Len() - afterSchema
	if two-one != perEvent || perEvent >= one-wire.HeaderLen {
		t.Errorf("1 event: %d bytes, 2 events: %d, second event alone %d: the schema is repeated", one, two, perEvent)
	}
	// A new batch defines it again.
	enc.Start(nil)
	enc.Append(math.MaxInt, ev.ID, ev.Name, ev.Timestamp, &ev.Context, ev.Fields)
	if enc.Len() != one {
		t.Errorf("first event of a second batch: %d bytes, want %d", enc.Len(), one)
	}
}

func TestEncoderLimit(t *testing.T) {
	ev := allKindsEvent()
	one := len(encode(t, ev))
	var enc testEncoder
	enc.Start(nil)
	if !enc.Append(one, ev.ID, ev.Name, ev.Timestamp, &ev.Context, ev.Fields) {
		t.Fatal("an event exactly at the limit does not fit")
	}
	if enc.Append(one, ev.ID, ev.Name, ev.Timestamp, &ev.Context, ev.Fields) || enc.Len() != one || enc.Count() != 1 {
		t.Fatalf("an event over the limit was added: %d bytes, %d events", enc.Len(), enc.Count())
	}
	var d decoder
	if got, err := d.decode(enc.Finish()); err != nil || len(got) != 1 {
		t.Fatalf("decode after a refused Append = %d events, %v", len(got), err)
	}
	// A refused event that defined a schema leaves it undefined: the next
	// batch defines it again.
	enc.Start(nil)
	if enc.Append(wire.HeaderLen+3, ev.ID, ev.Name, ev.Timestamp, &ev.Context, ev.Fields) {
		t.Fatal("event fits in 3 bytes")
	}
	enc.Start(nil)
	enc.Append(math.MaxInt, ev.ID, ev.Name, ev.Timestamp, &ev.Context, ev.Fields)
	if _, err := d.decode(enc.Finish()); err != nil {
		t.Fatalf("batch after a refused schema: %v", err)
	}
}

// TestDecodeMemory checks how decoded batches use memory: windows that a
// sink can append to safely, strings that outlive the batch, names that
// are interned, and reuse from batch to batch.
func TestDecodeMemory(t *testing.T) {
	var d decoder
	a := Event{ID: 1, Name: "one", Fields: []Field{{Name: "s", Value: String("a")}, {Name: "l", Value: Strings([]string{"x", "y"})}}}
	b := Event{ID: 2, Name: "two", Fields: []Field{{Name: "s", Value: String("b")}, {Name: "l", Value: Strings([]string{"z"})}}}
	evs, err := d.decode(encode(t, a, b))
	if err != nil {
		t.Fatal(err)
	}
	evs[0].Fields = append(evs[0].Fields, Field{Name: "extra"})
	evs[0].Fields[1].Value.Strings = append(evs[0].Fields[1].Value.Strings, "extra")
	if evs[1].Fields[0].Value.Str != "b" || evs[1].Fields[1].Value.Strings[0] != "z" {
		t.Errorf("appending to event 0 overwrote event 1: %+v", evs[1])
	}
	kept, keptName := evs[1].Fields[0].Value.Str, evs[1].Name

	firstField := &d.fields[:1][0]
	c := Event{ID: 2, Name: "two", Fields: []Field{{Name: "s", Value: String("c")}, {Name: "l", Value: Strings(nil)}}}
	data := encode(t, c)
	evs, err = d.decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if &evs[0].Fields[0] != firstField {
		t.Error("the second batch did not reuse the field slab")
	}
	if kept != "b" {
		t.Errorf("a string kept from the first batch changed to %q", kept)
	}
	if unsafeData(evs[0].Name) != unsafeData(keptName) {
		t.Error("the event name is not interned")
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(data)))
	if s := evs[0].Fields[0].Value.Str; s != "c" || unsafeData(s) < start || unsafeData(s) >= start+uintptr(len(data)) {
		t.Error("a string value does not point into the batch")
	}
	if l := evs[0].Fields[1].Value; l.Kind != KindStrings || l.Strings == nil || len(l.Strings) != 0 {
		t.Errorf("empty list = %#v, want a non-nil empty list", l)
	}
}

// TestDecodeAllocs: once warm, decoding allocates nothing.
func TestDecodeAllocs(t *testing.T) {
	evs := make([]Event, 100)
	for i := range evs {
		evs[i] = allKindsEvent()
	}
	data := encode(t, evs...)
	var d decoder
	if _, err := d.decode(data); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, err := d.decode(data); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("decode allocates %v times per batch", n)
	}
}

func TestDecodeErrors(t *testing.T) {
	valid := encode(t, allKindsEvent(), allKindsEvent())
	withCount := func(b []byte, n uint32) []byte {
		b = bytes.Clone(b)
		binary.LittleEndian.PutUint32(b[1:], n)
		return b
	}
	// A schema of one field of the given kind, then an event of it.
	oneField := func(kind byte, value ...byte) []byte {
		b := []byte{wire.Layout, 1, 0, 0, 0}
		b = append(b, 0, 1, 1, 'e', 1, kind, 1, 'f') // schema 0: id 1, "e", field "f"
		b = append(b, 1)                             // event of schema 0
		b = append(b, make([]byte, 8)...)            // timestamp
		b = append(b, 0, 0, 0, 0, 1, 1)              // context, comm and host name empty
		b = append(b, 0, 0, 1, 0)                    // ppid, process start, exe empty, workload unknown
		return append(b, value...)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "shorter than"},
		{"bad layout", append([]byte{9}, valid[1:]...), "layout 9"},
		{"count too high", withCount(valid, 3), "header claims 3"},
		{"count absurd", withCount(valid, math.MaxUint32), "more than"},
		{"count too low", withCount(valid, 1), "more events than"},
		{"unknown schema", []byte{wire.Layout, 1, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, "schema 4 is not defined"},
		{"unknown kind", oneField(6), "unknown kind 6"},
		{"bool 2", oneField(wire.KindBool, 2), "bool"},
		{"varint overflow", oneField(wire.KindUint, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), "overflows"},
		{"list longer than data", oneField(wire.KindStrings, 100, 1, 'a'), "truncated"},
		{"string longer than data", oneField(wire.KindString, 100, 'a'), "truncated"},
		{"pid over 32 bits", func() []byte {
			b := []byte{wire.Layout, 1, 0, 0, 0, 0, 1, 1, 'e', 0, 1}
			b = append(b, make([]byte, 8)...)
			return append(b, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x10, 0, 0, 0)
		}(), "32 bits"},
		{"repeat in a first event", func() []byte {
			b := oneField(wire.KindString, 1)
			b[len(b)-7] = 0 // the comm repeats
			return b
		}(), "it is the first"},
		{"repeated list in a first event", oneField(wire.KindStrings, 0), "it is the first"},
		{"repeated string in a first event", oneField(wire.KindString, 0), "it is the first"},
		{"unknown workload tag", func() []byte {
			b := oneField(wire.KindString, 1)
			b[len(b)-2] = 7 // the workload tag
			return b
		}(), "workload tag"},
		{"fields longer than data", []byte{wire.Layout, 0, 0, 0, 0, 0, 1, 1, 'e', 100, 1, 'f'}, "100 fields"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d decoder
			_, err := d.decode(tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("decode = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	// Every proper prefix of a valid batch fails, without panicking.
	for n := range len(valid) {
		var d decoder
		if _, err := d.decode(valid[:n]); err == nil {
			t.Errorf("prefix of %d of %d bytes decoded", n, len(valid))
		}
	}
}

// FuzzDecode: malformed input yields an error, never a panic, and what
// decodes re-encodes to a batch that decodes to the same events.
func FuzzDecode(f *testing.F) {
	f.Add(encode(f, allKindsEvent(), Event{}, allKindsEvent()))
	f.Add(encode(f, Event{Name: "x", Fields: []Field{{Name: "l", Value: Strings([]string{"a"})}}}))
	f.Add([]byte{wire.Layout, 0, 0, 0, 0})
	// A batch of other shapes, decoded first into the memory the input
	// is then decoded into: what it leaves there must not show.
	dirtyEv := allKindsEvent()
	dirtyEv.Fields = append(dirtyEv.Fields, dirtyEv.Fields...)
	dirty := encode(f, dirtyEv, allKindsEvent(), dirtyEv)
	f.Fuzz(func(t *testing.T, data []byte) {
		var d decoder
		evs, err := d.decode(data)
		var reused decoder
		if _, err := reused.decode(dirty); err != nil {
			t.Fatal(err)
		}
		evs2, err2 := reused.decode(data)
		if (err == nil) != (err2 == nil) || len(evs) != len(evs2) || len(evs) > 0 && !reflect.DeepEqual(evs, evs2) {
			t.Fatalf("decoding into used memory differs: %v / %v\n%+v\n%+v", err, err2, evs, evs2)
		}
		if err != nil {
			return
		}
		again, err := (&decoder{}).decode(encode(t, evs...))
		if err != nil {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, evs) {
			t.Fatalf("round trip changed the events:\n got %+v\nwant %+v", again, evs)
		}
	})
}

// TestWriteBadBatch: a batch that does not decode ends the Write stream
// with InvalidArgument, and the sink never sees it.
func TestWriteBadBatch(t *testing.T) {
	rec := &recorder{}
	client, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{wire.PluginName: Plugin(rec)})
	t.Cleanup(func() { client.Close() })
	raw, err := client.Dispense(wire.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	c := raw.(proto.SinkClient)
	ctx := t.Context()
	if _, err := c.Configure(ctx, &proto.ConfigureRequest{}); err != nil {
		t.Fatal(err)
	}
	stream, err := c.Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&proto.Batch{Seq: 1, Events: []byte{wire.Layout, 1}}); err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "batch 1") {
		t.Errorf("Recv = %v, want InvalidArgument naming batch 1", err)
	}
	if len(rec.calls) != 1 {
		t.Errorf("sink saw %q", rec.calls)
	}
}

// TestStringsOutliveBatch sends two batches across gRPC and checks that
// strings kept from the first are intact after the second: the decoded
// strings point into memory that gRPC never reuses.
func TestStringsOutliveBatch(t *testing.T) {
	keep := &keeper{}
	client, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{wire.PluginName: Plugin(keep)})
	t.Cleanup(func() { client.Close() })
	raw, err := client.Dispense(wire.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	c := raw.(proto.SinkClient)
	ctx := t.Context()
	if _, err := c.Configure(ctx, &proto.ConfigureRequest{}); err != nil {
		t.Fatal(err)
	}
	stream, err := c.Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range []string{"first-value", "other-value", "third-value"} {
		ev := Event{Name: "e", Context: Context{Comm: v}, Fields: []Field{{Name: "s", Value: String(v)}}}
		if err := stream.Send(&proto.Batch{Seq: uint64(i + 1), Events: encode(t, ev)}); err != nil {
			t.Fatal(err)
		}
		if ack, err := stream.Recv(); err != nil || ack.GetError() != "" {
			t.Fatalf("ack %v, %v", ack, err)
		}
	}
	if want := []string{"first-value", "first-value", "other-value", "other-value", "third-value", "third-value"}; !reflect.DeepEqual(keep.kept, want) {
		t.Errorf("kept strings = %q, want %q", keep.kept, want)
	}
}

// keeper keeps the strings of every event, without copying them.
type keeper struct {
	recorder
	kept []string
}

func (k *keeper) Write(_ context.Context, b []Event) error {
	for _, ev := range b {
		k.kept = append(k.kept, ev.Context.Comm, ev.Fields[0].Value.Str)
	}
	return nil
}

// BenchmarkDecode is the plugin's side alone: decoding a batch of 1024
// flow events into sdk.Events.
func BenchmarkDecode(b *testing.B) {
	evs := make([]Event, 1024)
	for i := range evs {
		evs[i] = Event{
			Timestamp: 1_700_000_000_000_000_000 + int64(i),
			ID:        1002,
			Name:      "net_flow_tcp_end",
			Context:   Context{SocketCookie: 1 << 30, CgroupID: 8812, PID: 1000, UID: 1000, Comm: "curl", HostName: "node-7.prod.example.internal"},
			Fields: []Field{
				{Name: "conn_direction", Value: String("outgoing")},
				{Name: "src", Value: String("10.1.2.3")},
				{Name: "dst", Value: String("93.184.216.34")},
				{Name: "src_port", Value: Uint(40000)},
				{Name: "dst_port", Value: Uint(443)},
				{Name: "src_dns", Value: Strings(nil)},
				{Name: "dst_dns", Value: Strings([]string{"api.example.com"})},
				{Name: "duration_ns", Value: Uint(1_500_000)},
				{Name: "bytes_sent", Value: Uint(512)},
				{Name: "bytes_received", Value: Uint(48_000)},
				{Name: "packets_sent", Value: Uint(6)},
				{Name: "packets_received", Value: Uint(40)},
				{Name: "close_reason", Value: String("fin")},
			},
		}
	}
	data := encode(b, evs...)
	var d decoder
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.decode(data); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(evs))/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(len(data))/float64(len(evs)), "bytes/event")
}

// unsafeData is the address of s's bytes.
func unsafeData(s string) uintptr { return uintptr(unsafe.Pointer(unsafe.StringData(s))) }

// TestEncodeUnknownKind: a value of a kind the encoding does not know
// travels as a value of unknown kind, and the fields after it are intact.
func TestEncodeUnknownKind(t *testing.T) {
	ev := Event{Name: "e", Fields: []Field{
		{Name: "odd", Value: Value{Kind: 99, Str: "x", Uint: 1}},
		{Name: "after", Value: Uint(7)},
	}}
	var d decoder
	got, err := d.decode(encode(t, ev, ev))
	if err != nil {
		t.Fatal(err)
	}
	want := []Field{{Name: "odd"}, {Name: "after", Value: Uint(7)}}
	for _, g := range got {
		if !reflect.DeepEqual(g.Fields, want) {
			t.Errorf("fields = %+v, want %+v", g.Fields, want)
		}
	}
}

// TestDecodeRepeats: strings and lists that are the very ones of the
// previous event of the same schema travel as one byte, and decode to the
// same values; a repeated list is a copy, not the previous event's list.
func TestDecodeRepeats(t *testing.T) {
	mk := func(comm, dst string, dns []string) Event {
		return Event{ID: 1002, Name: "end", Context: Context{Comm: comm, HostName: "node-7.prod.example.internal"}, Fields: []Field{
			{Name: "dst", Value: String(dst)},
			{Name: "dns", Value: Strings(dns)},
			{Name: "n", Value: Uint(1)},
		}}
	}
	ab, a := []string{"a.example", "b.example"}, []string{"a.example"}
	other := Event{ID: 7, Name: "other", Context: Context{Comm: "curl", HostName: "elsewhere"}, Fields: []Field{{Name: "dst", Value: String("x")}}}
	evs := []Event{
		mk("curl", "10.0.0.1", ab),
		mk("curl", "10.0.0.1", ab), // all repeated
		other,                      // another schema between: repeats are per schema
		mk("curl", "10.0.0.2", a),
		mk("sshd", "10.0.0.2", nil),
		mk("sshd", "10.0.0.2", nil),
		mk("", "", []string{}),
		mk("", "", nil),
		mk("curl", "10.0.0.1", []string{"a.example", "b.example"}), // equal, not the same: sent again
		other,
	}
	data := encode(t, evs...)
	var d decoder
	got, err := d.decode(data)
	if err != nil {
		t.Fatal(err)
	}
	for i := range evs {
		if !reflect.DeepEqual(got[i], evs[i]) {
			t.Errorf("event %d:\n got %+v\nwant %+v", i, got[i], evs[i])
		}
	}
	if &got[0].Fields[1].Value.Strings[0] == &got[1].Fields[1].Value.Strings[0] {
		t.Error("a repeated list shares memory with the previous event's")
	}
	// The second event is all repeats: its record is its tag, timestamp,
	// four one-byte numbers, and a byte per string, list and number.
	one := len(encode(t, evs[0]))
	if two := len(encode(t, evs[0], evs[1])); two-one != 1+8+4+2+3+4 {
		t.Errorf("a repeated event takes %d bytes", two-one)
	}
}

// TestDecodeReuseClearsStale: a batch decoded into memory that held
// another batch's events of other shapes shows nothing of them.
func TestDecodeReuseClearsStale(t *testing.T) {
	a := allKindsEvent()
	b := allKindsEvent()
	slices.Reverse(b.Fields)
	b.Context = Context{}
	b.Name, b.ID = "reversed", 5
	c := Event{Name: "bare", Fields: []Field{}}
	var d decoder
	for _, batch := range [][]Event{{a, a, c}, {b, c, b}, {c, a, b}, {b, b, b}} {
		got, err := d.decode(encode(t, batch...))
		if err != nil {
			t.Fatal(err)
		}
		for i := range batch {
			if !reflect.DeepEqual(got[i], batch[i]) {
				t.Fatalf("event %d:\n got %+v\nwant %+v", i, got[i], batch[i])
			}
		}
	}
}

// TestDecodeWorkload: the process and workload context round-trips in
// each of its forms: not known, the host, a container's (with pod and
// labels), the same container again, another container of the pod.
func TestDecodeWorkload(t *testing.T) {
	labels := []string{"app=web", "tier=front"}
	pod := Context{PID: 7, PPID: 1, ProcessStart: -3, Exe: "/app", Comm: "app",
		ContainerID: strings.Repeat("3f", 32), ContainerRuntime: "containerd", ContainerName: "web", ContainerImage: "localhost/web:1",
		PodName: "web-0", PodNamespace: "payments", PodUID: "6f1d2c3b-4a59-4e8f-9b7a-0c1d2e3f4a5b", PodLabels: labels}
	other := pod
	other.ContainerID, other.ContainerName, other.ContainerImage, other.PodLabels = strings.Repeat("aa", 32), "db", "localhost/db:1", nil
	host := Context{PID: 9, Exe: "/usr/bin/curl", Comm: "curl", Host: true}
	unknown := Context{PID: 9, Comm: "curl"}
	var evs []Event
	for _, c := range []Context{unknown, host, pod, pod, other, host, unknown} {
		evs = append(evs, Event{ID: 1001, Name: "net_flow_tcp_begin", Timestamp: 5, Context: c,
			Fields: []Field{{Name: "dst", Value: String("10.0.0.1")}}})
	}
	var d decoder
	got, err := d.decode(encode(t, evs...))
	if err != nil {
		t.Fatal(err)
	}
	for i := range evs {
		if !reflect.DeepEqual(got[i].Context, evs[i].Context) {
			t.Errorf("event %d:\n got %+v\nwant %+v", i, got[i].Context, evs[i].Context)
		}
	}
	if got[2].Context.ShortID() != strings.Repeat("3f", 6) {
		t.Errorf("short id %q", got[2].Context.ShortID())
	}
}
