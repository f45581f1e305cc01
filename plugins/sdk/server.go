package sdk

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/plugins/proto"
)

// maxDrainToken bounds the drain token a host may ask the plugin to echo.
const maxDrainToken = 256

// serverState is where a served sink is in its lifecycle.
type serverState uint8

const (
	stateNew             serverState = iota // Configure not yet called
	stateConfigured                         // Configure succeeded: Write allowed
	stateConfigureFailed                    // Configure failed: only Close left
	stateClosed                             // Close called: nothing left
)

// server serves one Sink over gRPC and keeps the promises Sink documents:
// one call at a time, Configure once before Write, Close once and last.
type server struct {
	proto.UnimplementedSinkServer

	impl Sink

	// mu serialises Configure, Write and Close, across all Write streams,
	// and guards everything below.
	mu    sync.Mutex
	state serverState
	// events and fields are reused from batch to batch; see Sink.
	events []Event
	fields []Field
}

// Interface guard: server implements the generated service.
var _ proto.SinkServer = (*server)(nil)

func newServer(impl Sink) *server { return &server{impl: impl} }

// Info implements proto.SinkServer.
func (s *server) Info(context.Context, *proto.InfoRequest) (*proto.InfoResponse, error) {
	info := s.impl.Info()
	return &proto.InfoResponse{
		Name:            info.Name,
		Version:         info.Version,
		ProtocolVersion: ProtocolVersion,
	}, nil
}

// Configure implements proto.SinkServer. Configuration problems travel in
// the response, not as an RPC error, so the host gets them key by key.
func (s *server) Configure(ctx context.Context, req *proto.ConfigureRequest) (*proto.ConfigureResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateNew:
	case stateClosed:
		return nil, status.Error(codes.FailedPrecondition, "configure: sink is closed")
	default:
		return nil, status.Error(codes.FailedPrecondition, "configure: sink is already configured")
	}
	config := req.GetConfigJson()
	if len(config) == 0 {
		config = []byte("{}")
	}
	if err := s.impl.Configure(ctx, config); err != nil {
		s.state = stateConfigureFailed
		return &proto.ConfigureResponse{Errors: configErrorsToProto(err)}, nil
	}
	s.state = stateConfigured
	return &proto.ConfigureResponse{}, nil
}

// configErrorsToProto turns the error Configure returned into at least one
// ConfigError: structured when the sink used ConfigError(s), else one
// key-less error with the message.
func configErrorsToProto(err error) []*proto.ConfigError {
	var list ConfigErrors
	var one ConfigError
	var onePtr *ConfigError
	switch {
	case errors.As(err, &list) && len(list) > 0:
	case errors.As(err, &one):
		list = ConfigErrors{one}
	case errors.As(err, &onePtr) && onePtr != nil:
		list = ConfigErrors{*onePtr}
	default:
		list = ConfigErrors{{Message: errMessage(err)}}
	}
	out := make([]*proto.ConfigError, len(list))
	for i, e := range list {
		out[i] = &proto.ConfigError{Key: e.Key, Message: e.Message}
	}
	return out
}

// Write implements proto.SinkServer: one Ack per Batch, in order.
func (s *server) Write(stream proto.Sink_WriteServer) error {
	ctx := stream.Context()
	for {
		batch, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		ack := &proto.Ack{Seq: batch.GetSeq()}
		if err := s.write(ctx, batch); err != nil {
			ack.Error = errMessage(err)
		}
		if err := stream.Send(ack); err != nil {
			return err
		}
	}
}

// write hands one batch to the sink, if the lifecycle allows it.
func (s *server) write(ctx context.Context, batch *proto.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateConfigured:
	case stateClosed:
		return errors.New("sink is closed")
	default:
		return errors.New("sink is not configured: Configure must succeed before Write")
	}
	if len(batch.GetEvents()) == 0 {
		return nil
	}
	return s.impl.Write(ctx, s.toEvents(batch))
}

// toEvents converts a wire batch into s.events, reusing memory. All fields
// of the batch live in one slice; each event gets a capacity-limited window
// of it so that a sink appending to one event's fields cannot overwrite the
// next event's.
func (s *server) toEvents(batch *proto.Batch) []Event {
	pes := batch.GetEvents()
	nfields := 0
	for _, pe := range pes {
		nfields += len(pe.GetFields())
	}
	if cap(s.fields) < nfields {
		s.fields = make([]Field, 0, max(nfields, 2*cap(s.fields)))
	}
	if cap(s.events) < len(pes) {
		s.events = make([]Event, 0, max(len(pes), 2*cap(s.events)))
	}
	fields := s.fields[:nfields]
	evs := s.events[:len(pes)]
	off := 0
	for i, pe := range pes {
		c := pe.GetContext()
		pfs := pe.GetFields()
		fs := fields[off : off+len(pfs) : off+len(pfs)]
		off += len(pfs)
		for j, pf := range pfs {
			fs[j] = Field{Name: pf.GetName(), Value: valueFromProto(pf)}
		}
		evs[i] = Event{
			Timestamp: pe.GetTimestamp(),
			ID:        pe.GetId(),
			Name:      pe.GetName(),
			Context: Context{
				SocketCookie: c.GetSocketCookie(),
				CgroupID:     c.GetCgroupId(),
				PID:          c.GetPid(),
				UID:          c.GetUid(),
				Comm:         c.GetComm(),
				HostName:     c.GetHostName(),
			},
			Fields: fs,
		}
	}
	return evs
}

// emptyStrings is the shared empty list: it has no capacity, so nothing
// can write through it.
var emptyStrings = []string{}

// valueFromProto converts a wire field value. An unset value is
// KindInvalid.
func valueFromProto(f *proto.Field) Value {
	switch v := f.GetValue().(type) {
	case *proto.Field_Str:
		return events.String(v.Str)
	case *proto.Field_Uint:
		return events.Uint(v.Uint)
	case *proto.Field_Int:
		return events.Int(v.Int)
	case *proto.Field_Bool:
		return events.Bool(v.Bool)
	case *proto.Field_Strings:
		l := v.Strings.GetValues()
		if l == nil {
			l = emptyStrings
		}
		return Value{Kind: KindStrings, Strings: l}
	}
	return Value{}
}

// Close implements proto.SinkServer. The sink's Close runs at most once;
// a repeated Close RPC only repeats the drain.
func (s *server) Close(ctx context.Context, req *proto.CloseRequest) (*proto.CloseResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &proto.CloseResponse{}
	if s.state != stateClosed {
		s.state = stateClosed
		if err := s.impl.Close(ctx); err != nil {
			resp.Error = errMessage(err)
		}
	}
	// Echo the drain token after everything the sink wrote. Under Serve,
	// os.Stdout and os.Stderr are go-plugin's forwarding pipes, which
	// preserve order, so when the host sees the token it has seen all the
	// sink's output. go-plugin itself does not flush them when it shuts
	// down.
	if tok := req.GetDrainToken(); len(tok) > 0 && len(tok) <= maxDrainToken {
		_, errOut := os.Stdout.Write(tok)
		_, errErr := os.Stderr.Write(tok)
		resp.Drained = errOut == nil && errErr == nil
	}
	return resp, nil
}

// errMessage is err's message, never empty: on the wire an empty message
// means success.
func errMessage(err error) string {
	if msg := err.Error(); msg != "" {
		return msg
	}
	return "sink returned an error without a message"
}
