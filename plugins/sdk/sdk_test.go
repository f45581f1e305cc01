// SPDX-License-Identifier: Apache-2.0

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

	"github.com/flowtap/flowtap/plugins/internal/wire"
	"github.com/flowtap/flowtap/plugins/internal/wire/proto"
)

func TestEventField(t *testing.T) {
	ev := Event{Fields: []Field{{Name: "a", Value: Uint(1)}, {Name: "b", Value: String("x")}}}
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
	client, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{wire.PluginName: Plugin(rec)})
	t.Cleanup(func() { client.Close() })
	raw, err := client.Dispense(wire.PluginName)
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
		b := &proto.Batch{Seq: seq, Events: encode(t, make([]Event, n)...)}
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
