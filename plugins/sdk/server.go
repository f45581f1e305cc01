// SPDX-License-Identifier: Apache-2.0

package sdk

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flowtap/flowtap/plugins/internal/wire/proto"
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
	// dec decodes batches, reusing its memory from batch to batch; see
	// Sink.
	dec decoder
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

// Write implements proto.SinkServer: one Ack per Batch, in order. A batch
// whose events do not decode ends the stream with InvalidArgument: the
// host is not speaking the protocol, and nothing later on the stream can
// be trusted.
func (s *server) Write(stream proto.Sink_WriteServer) error {
	ctx := stream.Context()
	var batch proto.Batch // reused: each receive allocates a fresh Events
	for {
		if err := stream.RecvMsg(&batch); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		ack := &proto.Ack{Seq: batch.GetSeq()}
		wctx, dups := withDuplicates(ctx)
		n, err := s.write(wctx, batch.GetEvents())
		if err != nil {
			var bad badBatchError
			if errors.As(err, &bad) {
				return status.Errorf(codes.InvalidArgument, "batch %d: %v", batch.GetSeq(), bad.err)
			}
			ack.Error = errMessage(err)
			ack.MaybeDelivered = uint32(maybeDelivered(err, n))
		}
		ack.Duplicates = uint32(max(0, min(dups.Load(), int64(n))))
		if err := stream.Send(ack); err != nil {
			return err
		}
	}
}

// badBatchError is a batch that does not decode.
type badBatchError struct{ err error }

func (e badBatchError) Error() string { return e.err.Error() }

// write decodes one batch and hands it to the sink, if the lifecycle
// allows it, and returns the batch's size with the sink's answer. data is
// the batch's own memory: the decoded strings point into it, so nothing
// may modify it afterwards.
func (s *server) write(ctx context.Context, data []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateConfigured:
	case stateClosed:
		return 0, errors.New("sink is closed")
	default:
		return 0, errors.New("sink is not configured: Configure must succeed before Write")
	}
	batch, err := s.dec.decode(data)
	if err != nil {
		return 0, badBatchError{err}
	}
	if len(batch) == 0 {
		return 0, nil
	}
	return len(batch), s.impl.Write(ctx, batch)
}

// emptyStrings is the shared empty list: it has no capacity, so nothing
// can write through it.
var emptyStrings = []string{}

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
