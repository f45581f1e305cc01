// SPDX-License-Identifier: Apache-2.0

// Package sdktest runs a flowtap sink in one process, behind the real
// sink protocol, for its author's tests: the sink is served by the SDK's
// gRPC server (as sdk.Serve does), and the Harness plays the flowtap host,
// encoding batches in the wire format and checking the answers. What a
// test sees is what the sink would do under flowtap, without building a
// binary or starting a process.
//
//	h := sdktest.New(t, mysink.New())
//	if err := h.Configure(map[string]any{"path": dir}); err != nil { ... }
//	err := h.Write(sdktest.Event("net_flow_tcp_begin", sdktest.F("dst_port", 443)))
//	err = h.Close()
//
// It is part of the SDK: a sink's tests need no other flowtap package.
package sdktest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/flowtap/flowtap/plugins/internal/wire"
	"github.com/flowtap/flowtap/plugins/internal/wire/proto"
	"github.com/flowtap/flowtap/plugins/sdk"
	"github.com/flowtap/flowtap/plugins/sdk/internal/encode"
)

// Timeout bounds every call the Harness makes.
const Timeout = 30 * time.Second

// Harness is a flowtap host for one sink, in the test's process. Its
// methods may be called from one goroutine at a time.
type Harness struct {
	tb     testing.TB
	client proto.SinkClient
	enc    encode.Encoder
	fields []encode.Field
	seq    uint64
}

// New serves s over the sink protocol and returns a Harness connected to
// it. The connection is closed when the test ends (the sink's Close is not
// called then; call Close to test it).
func New(tb testing.TB, s sdk.Sink) *Harness {
	tb.Helper()
	client, _ := plugin.TestPluginGRPCConn(tb, false, map[string]plugin.Plugin{wire.PluginName: sdk.Plugin(s)})
	tb.Cleanup(func() { _ = client.Close() })
	raw, err := client.Dispense(wire.PluginName)
	if err != nil {
		tb.Fatalf("sdktest: dispense sink: %v", err)
	}
	rpc, ok := raw.(proto.SinkClient)
	if !ok {
		tb.Fatalf("sdktest: dispensed %T, not a sink client", raw)
	}
	return &Harness{tb: tb, client: rpc}
}

func (h *Harness) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), Timeout)
}

// Info asks the sink for its Info, and checks the protocol version it
// reports.
func (h *Harness) Info() (sdk.Info, error) {
	ctx, cancel := h.ctx()
	defer cancel()
	resp, err := h.client.Info(ctx, &proto.InfoRequest{})
	if err != nil {
		return sdk.Info{}, fmt.Errorf("info: %w", err)
	}
	if v := resp.GetProtocolVersion(); v != sdk.ProtocolVersion {
		return sdk.Info{}, fmt.Errorf("info: sink reports protocol version %d, want %d", v, sdk.ProtocolVersion)
	}
	return sdk.Info{Name: resp.GetName(), Version: resp.GetVersion()}, nil
}

// Configure sends config as the sink's configuration, the way flowtap
// sends the "config" of a pipeline's sink: a map or struct is encoded as
// JSON; a string or []byte is sent as it is. A rejection comes back as
// sdk.ConfigErrors, one per problem, as the sink reported them.
func (h *Harness) Configure(config any) error {
	var raw []byte
	switch c := config.(type) {
	case nil:
		raw = []byte("{}")
	case string:
		raw = []byte(c)
	case []byte:
		raw = c
	default:
		var err error
		if raw, err = json.Marshal(c); err != nil {
			return fmt.Errorf("configure: encode config: %w", err)
		}
	}
	ctx, cancel := h.ctx()
	defer cancel()
	resp, err := h.client.Configure(ctx, &proto.ConfigureRequest{ConfigJson: raw})
	if err != nil {
		return fmt.Errorf("configure: %w", err)
	}
	if len(resp.GetErrors()) == 0 {
		return nil
	}
	errs := make(sdk.ConfigErrors, len(resp.GetErrors()))
	for i, e := range resp.GetErrors() {
		errs[i] = sdk.ConfigError{Key: e.GetKey(), Message: e.GetMessage()}
	}
	return errs
}

// ErrRejected is what Write returns (wrapped, with the sink's message)
// when the sink's Write returned an error.
var ErrRejected = errors.New("sink rejected the batch")

// Write sends one batch, as one message, and waits for the sink's
// acknowledgement: nil if the sink accepted it, an error wrapping
// ErrRejected if the sink's Write failed.
func (h *Harness) Write(batch ...sdk.Event) error {
	if len(batch) == 0 {
		return errors.New("write: flowtap never sends an empty batch")
	}
	h.enc.Start(nil)
	for i := range batch {
		ev := &batch[i]
		c := encode.Context(ev.Context)
		h.fields = h.fields[:0]
		for _, f := range ev.Fields {
			h.fields = append(h.fields, encode.Field{Name: f.Name, Value: encode.Value{
				Kind: encode.Kind(f.Value.Kind), Str: f.Value.Str, Uint: f.Value.Uint, Int: f.Value.Int, Bool: f.Value.Bool, Strings: f.Value.Strings}})
		}
		h.enc.Append(math.MaxInt, uint16(ev.ID), ev.Name, ev.Timestamp, &c, h.fields)
	}
	data := h.enc.Finish()
	ctx, cancel := h.ctx()
	defer cancel()
	stream, err := h.client.Write(ctx)
	if err != nil {
		return fmt.Errorf("write: open stream: %w", err)
	}
	h.seq++
	if err := stream.Send(&proto.Batch{Seq: h.seq, Events: data}); err != nil {
		return fmt.Errorf("write: send: %w", err)
	}
	ack, err := stream.Recv()
	if err != nil {
		return fmt.Errorf("write: no acknowledgement: %w", err)
	}
	_ = stream.CloseSend()
	if _, err := stream.Recv(); err != io.EOF {
		return fmt.Errorf("write: the sink did not end the stream cleanly: %v", err)
	}
	if ack.GetSeq() != h.seq {
		return fmt.Errorf("write: acknowledgement for batch %d, want %d", ack.GetSeq(), h.seq)
	}
	if msg := ack.GetError(); msg != "" {
		return fmt.Errorf("%w: %s", ErrRejected, msg)
	}
	return nil
}

// Close closes the sink and returns its Close error.
func (h *Harness) Close() error {
	ctx, cancel := h.ctx()
	defer cancel()
	resp, err := h.client.Close(ctx, &proto.CloseRequest{})
	if err != nil {
		return fmt.Errorf("close: %w", err)
	}
	if msg := resp.GetError(); msg != "" {
		return errors.New(msg)
	}
	return nil
}

// Event returns an event named name with the given fields and a fixed
// timestamp and context, for tests. Its ID is 0.
func Event(name string, fields ...sdk.Field) sdk.Event {
	return sdk.Event{
		Timestamp: 1_700_000_000_000_000_000,
		Name:      name,
		Context:   sdk.Context{PID: 4242, UID: 1000, Comm: "curl", HostName: "test-host"},
		Fields:    fields,
	}
}

// F returns a field named name holding v: a string, an integer, a bool
// or a []string. Any other type panics: it is a mistake in the test.
func F(name string, v any) sdk.Field {
	var val sdk.Value
	switch x := v.(type) {
	case string:
		val = sdk.Value{Kind: sdk.KindString, Str: x}
	case bool:
		val = sdk.Value{Kind: sdk.KindBool, Bool: x}
	case int:
		val = sdk.Value{Kind: sdk.KindInt, Int: int64(x)}
	case int64:
		val = sdk.Value{Kind: sdk.KindInt, Int: x}
	case uint:
		val = sdk.Value{Kind: sdk.KindUint, Uint: uint64(x)}
	case uint16:
		val = sdk.Value{Kind: sdk.KindUint, Uint: uint64(x)}
	case uint32:
		val = sdk.Value{Kind: sdk.KindUint, Uint: uint64(x)}
	case uint64:
		val = sdk.Value{Kind: sdk.KindUint, Uint: x}
	case []string:
		if x == nil {
			x = []string{}
		}
		val = sdk.Value{Kind: sdk.KindStrings, Strings: x}
	default:
		panic(fmt.Sprintf("sdktest.F(%q): unsupported value type %T", name, v))
	}
	return sdk.Field{Name: name, Value: val}
}

// SetValidateOnly makes sdk.ValidateOnly report true for the rest of the
// test, as when flowtap starts a plugin only to check its configuration
// (flowtap config validate): a sink's tests use it to check that its
// Configure then creates nothing and connects nowhere. It sets an
// environment variable (tb.Setenv), so the test may not run in parallel.
func SetValidateOnly(tb testing.TB) {
	tb.Setenv(wire.ValidateOnlyEnv, "1")
}
