package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/plugins/proto"
)

func TestEventField(t *testing.T) {
	ev := Event{Fields: []Field{{Name: "a", Value: events.Uint(1)}, {Name: "b", Value: events.String("x")}}}
	if v, ok := ev.Field("b"); !ok || v.Kind != KindString || v.Str != "x" {
		t.Errorf("Field(b) = %v, %v", v, ok)
	}
	if v, ok := ev.Field("c"); ok || v.Kind != KindInvalid {
		t.Errorf("Field(c) = %v, %v; want not found", v, ok)
	}
}

func TestConfigErrorMessages(t *testing.T) {
	errs := ConfigErrors{{Key: "format", Message: "bad"}, {Message: "not JSON"}}
	if got, want := errs.Error(), "format: bad; not JSON"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestConfigErrorsToProto(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want []string // key=message
	}{
		{ConfigErrors{{"a", "x"}, {"b", "y"}}, []string{"a=x", "b=y"}},
		{fmt.Errorf("wrapped: %w", ConfigErrors{{"a", "x"}}), []string{"a=x"}},
		{ConfigError{"a", "x"}, []string{"a=x"}},
		{&ConfigError{"a", "x"}, []string{"a=x"}},
		{ConfigErrors{}, []string{"=sink returned an error without a message"}},
		{errors.New("boom"), []string{"=boom"}},
	} {
		got := configErrorsToProto(tc.err)
		if len(got) != len(tc.want) {
			t.Errorf("%#v: got %v, want %v", tc.err, got, tc.want)
			continue
		}
		for i, e := range got {
			if s := e.GetKey() + "=" + e.GetMessage(); s != tc.want[i] {
				t.Errorf("%#v [%d]: got %s, want %s", tc.err, i, s, tc.want[i])
			}
		}
	}
}

// TestToEventsWindows checks that batch conversion reuses memory without
// letting one event's fields run into the next one's.
func TestToEventsWindows(t *testing.T) {
	s := newServer(nil)
	str := func(v string) *proto.Field { return &proto.Field{Name: "s", Value: &proto.Field_Str{Str: v}} }
	batch := &proto.Batch{Events: []*proto.Event{
		{Id: 1, Name: "one", Fields: []*proto.Field{str("a")}, Context: &proto.Context{Pid: 7, Comm: "c"}},
		{Id: 2, Fields: []*proto.Field{str("b"), {Name: "l", Value: &proto.Field_Strings{}}, {Name: "none"}}},
	}}
	evs := s.toEvents(batch)
	if len(evs) != 2 || evs[0].Context.PID != 7 || evs[0].Context.Comm != "c" || evs[1].ID != 2 {
		t.Fatalf("toEvents = %+v", evs)
	}
	evs[0].Fields = append(evs[0].Fields, Field{Name: "extra"})
	if evs[1].Fields[0].Value.Str != "b" {
		t.Errorf("appending to event 0's fields overwrote event 1's: %+v", evs[1].Fields)
	}
	if l := evs[1].Fields[1].Value; l.Kind != KindStrings || l.Strings == nil || len(l.Strings) != 0 {
		t.Errorf("empty list = %+v, want a non-nil empty list", l)
	}
	if v := evs[1].Fields[2].Value; v.Kind != KindInvalid {
		t.Errorf("unset value = %+v, want KindInvalid", v)
	}
	// A second, smaller batch reuses the first one's memory.
	first := &s.fields[:1][0]
	evs = s.toEvents(&proto.Batch{Events: []*proto.Event{{Fields: []*proto.Field{str("z")}}}})
	if &evs[0].Fields[0] != first || evs[0].Fields[0].Value.Str != "z" {
		t.Errorf("second batch did not reuse the field buffer")
	}
}

// recorder is a Sink that records the calls the SDK makes.
type recorder struct {
	calls  []string
	closed int
}

func (r *recorder) Info() Info { return Info{Name: "rec", Version: "1"} }
func (r *recorder) Configure(_ context.Context, c []byte) error {
	r.calls = append(r.calls, "configure "+string(c))
	return nil
}
func (r *recorder) Write(_ context.Context, b []Event) error {
	r.calls = append(r.calls, fmt.Sprintf("write %d", len(b)))
	return nil
}
func (r *recorder) Close(context.Context) error {
	r.closed++
	r.calls = append(r.calls, "close")
	return nil
}

// TestServerLifecycle drives the gRPC server directly, out of order, and
// checks that the sink only ever sees the order Sink promises.
func TestServerLifecycle(t *testing.T) {
	rec := &recorder{}
	client, _ := plugin.TestPluginGRPCConn(t, false, VersionedPlugins(rec)[ProtocolVersion])
	t.Cleanup(func() { client.Close() })
	raw, err := client.Dispense(PluginName)
	if err != nil {
		t.Fatal(err)
	}
	c := raw.(proto.SinkClient)
	ctx := t.Context()

	info, err := c.Info(ctx, &proto.InfoRequest{})
	if err != nil || info.GetName() != "rec" || info.GetProtocolVersion() != ProtocolVersion {
		t.Fatalf("Info = %v, %v", info, err)
	}

	write := func(seq uint64, n int) *proto.Ack {
		t.Helper()
		stream, err := c.Write(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b := &proto.Batch{Seq: seq}
		for range n {
			b.Events = append(b.Events, &proto.Event{})
		}
		if err := stream.Send(b); err != nil {
			t.Fatal(err)
		}
		ack, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != io.EOF {
			t.Fatalf("stream end: %v, want EOF", err)
		}
		return ack
	}

	if ack := write(1, 1); ack.GetSeq() != 1 || ack.GetError() == "" {
		t.Errorf("Write before Configure: ack %v, want an error", ack)
	}
	if resp, err := c.Configure(ctx, &proto.ConfigureRequest{}); err != nil || len(resp.GetErrors()) != 0 {
		t.Fatalf("Configure = %v, %v", resp, err)
	}
	if _, err := c.Configure(ctx, &proto.ConfigureRequest{}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("second Configure: %v, want FailedPrecondition", err)
	}
	if ack := write(2, 3); ack.GetSeq() != 2 || ack.GetError() != "" {
		t.Errorf("Write: ack %v", ack)
	}
	if ack := write(3, 0); ack.GetSeq() != 3 || ack.GetError() != "" {
		t.Errorf("empty Write: ack %v", ack)
	}
	for range 2 {
		resp, err := c.Close(ctx, &proto.CloseRequest{})
		if err != nil || resp.GetError() != "" || resp.GetDrained() {
			t.Errorf("Close = %v, %v", resp, err)
		}
	}
	if ack := write(4, 1); ack.GetError() == "" {
		t.Errorf("Write after Close: ack %v, want an error", ack)
	}
	want := []string{"configure {}", "write 3", "close"}
	if fmt.Sprint(rec.calls) != fmt.Sprint(want) {
		t.Errorf("sink saw %q, want %q", rec.calls, want)
	}
}
