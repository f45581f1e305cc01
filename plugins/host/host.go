// Package host runs flowtap sink plugins: it finds a plugin binary, starts
// it with hashicorp/go-plugin, and drives the sink protocol
// (plugins/proto): Info, Configure, Write with acknowledgements, Close.
//
// One Sink is one plugin process. The host does not restart a plugin that
// dies; a Write then fails with an error saying so, and the caller decides.
package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/plugins/proto"
	"github.com/flowtap/flowtap/plugins/sdk"
)

// DefaultStartTimeout bounds how long Start waits for a plugin's handshake
// when its context has no earlier deadline.
const DefaultStartTimeout = 10 * time.Second

// drainTimeout bounds how long Close waits for a plugin's forwarded stdout
// and stderr to arrive when its context has no earlier deadline.
const drainTimeout = 10 * time.Second

// Errors a caller may want to tell apart; match them with errors.Is.
var (
	// ErrRejected: the sink's Write returned an error, so it did not
	// accept the batch. The plugin is healthy; retrying may succeed.
	ErrRejected = errors.New("batch rejected by sink")
	// ErrClosed: the Sink was used after Close.
	ErrClosed = errors.New("sink is closed")
)

// Config says which plugin to start and where its output goes.
type Config struct {
	// Name labels the sink in logs and errors, e.g.
	// "pipeline default / sink stdout". Empty means Plugin.
	Name string
	// Plugin is a sink name ("stdout") or a path to a plugin binary; see
	// Resolve.
	Plugin string
	// Logger receives the plugin's log lines and go-plugin's own. Nil
	// means hclog.Default().
	Logger hclog.Logger
	// Stdout receives what the plugin writes to its standard output
	// (go-plugin's SyncStdout). Nil means os.Stdout.
	Stdout io.Writer
	// Stderr receives what the plugin writes to its standard error after
	// the handshake (SyncStderr); log lines go to Logger. Nil means
	// os.Stderr.
	Stderr io.Writer
	// Names returns the catalogue name of an event ID, sent with every
	// event. Nil, or an empty result, sends "event_<id>".
	Names func(events.ID) string
}

// Sink is a running sink plugin. Its methods may be called from several
// goroutines; calls are serialised.
type Sink struct {
	label  string // Config.Name, for errors and logs
	path   string // the plugin binary
	logger hclog.Logger
	names  func(events.ID) string

	client     *plugin.Client // nil when the plugin runs in-process (tests)
	procCancel context.CancelFunc
	rpc        proto.SinkClient
	info       sdk.Info

	stdout, stderr *stdioWriter // nil when the plugin runs in-process
	drainToken     []byte

	// sem serialises Write and Close and guards everything below it.
	sem      chan struct{}
	closed   bool
	closeErr error
	seq      uint64
	ws       *writeStream
	conv     converter

	// abortMu guards abort and closing: Close uses abort to break the
	// call in flight, and closing makes a call that starts after that
	// break itself at once.
	abortMu sync.Mutex
	abort   context.CancelFunc
	closing bool
}

// writeStream is one open Write stream and the goroutine receiving its
// acks.
type writeStream struct {
	stream proto.Sink_WriteClient
	cancel context.CancelFunc
	acks   chan *proto.Ack
	done   chan struct{} // closed when the receiving goroutine ends
	err    error         // why it ended; read after done
}

// Start resolves and launches the plugin, completes the go-plugin
// handshake, and checks that the plugin speaks sdk.ProtocolVersion. ctx
// bounds only the start: if it ends first the process is killed. The
// plugin process is killed if the host dies (Pdeathsig); the caller must
// Close the Sink to end it otherwise.
func Start(ctx context.Context, cfg Config) (*Sink, error) {
	label := cfg.Name
	if label == "" {
		label = cfg.Plugin
	}
	path, err := Resolve(cfg.Plugin)
	if err != nil {
		return nil, fmt.Errorf("start sink %q: %w", label, err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.Default()
	}
	logger = logger.With("sink", label)
	stdout, stderr := cfg.Stdout, cfg.Stderr
	if stdout == nil {
		stdout = os.Stdout
	}
	if stderr == nil {
		stderr = os.Stderr
	}

	token := newDrainToken()
	s := &Sink{
		label:      label,
		path:       path,
		logger:     logger,
		names:      cfg.Names,
		stdout:     newStdioWriter(stdout, token),
		stderr:     newStdioWriter(stderr, token),
		drainToken: token,
		sem:        make(chan struct{}, 1),
	}

	// The process outlives ctx, so it gets its own context; ctx cancels
	// it only until the start has succeeded.
	procCtx, procCancel := context.WithCancel(context.Background())
	s.procCancel = procCancel
	cmd := exec.CommandContext(procCtx, path)
	// The plugin dies with the host, even when the host is SIGKILLed.
	// (Pdeathsig fires when the thread that started the child exits; Go
	// keeps its threads for the life of the process unless a goroutine
	// locked to one ends.)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Env = []string{sdk.LogLevelEnv + "=" + logLevel(logger)}

	startTimeout := DefaultStartTimeout
	if deadline, ok := ctx.Deadline(); ok {
		startTimeout = max(min(time.Until(deadline), startTimeout), time.Millisecond)
	}
	s.client = plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: sdk.VersionedPlugins(nil),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Managed:          false,
		StartTimeout:     startTimeout,
		Logger:           logger,
		SyncStdout:       s.stdout,
		SyncStderr:       s.stderr,
	})
	stopWatch := context.AfterFunc(ctx, procCancel)

	fail := func(what string, err error) (*Sink, error) {
		stopWatch()
		s.kill()
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = fmt.Errorf("%w (%w)", ctxErr, err)
		}
		return nil, fmt.Errorf("start sink %q (%s): %s: %w", label, path, what, err)
	}
	rpcClient, err := s.client.Client()
	if err != nil {
		return fail("plugin handshake (is it a flowtap sink plugin built with plugins/sdk?)", err)
	}
	raw, err := rpcClient.Dispense(sdk.PluginName)
	if err != nil {
		return fail("dispense sink", err)
	}
	rpc, ok := raw.(proto.SinkClient)
	if !ok {
		return fail("dispense sink", fmt.Errorf("plugin returned %T, not a sink client", raw))
	}
	if err := s.init(ctx, rpc); err != nil {
		return fail("info", err)
	}
	if !stopWatch() {
		return fail("start", context.Cause(ctx))
	}
	logger.Debug("sink plugin started", "path", path, "name", s.info.Name, "version", s.info.Version)
	return s, nil
}

// newInProcess wraps a sink client whose server runs without a process of
// its own (go-plugin's TestPluginGRPCConn), for tests.
func newInProcess(ctx context.Context, label string, rpc proto.SinkClient, names func(events.ID) string) (*Sink, error) {
	s := &Sink{label: label, logger: hclog.NewNullLogger(), names: names, sem: make(chan struct{}, 1)}
	if err := s.init(ctx, rpc); err != nil {
		return nil, fmt.Errorf("start sink %q: info: %w", label, err)
	}
	return s, nil
}

// init asks the plugin for its Info and checks its protocol version.
func (s *Sink) init(ctx context.Context, rpc proto.SinkClient) error {
	resp, err := rpc.Info(ctx, &proto.InfoRequest{})
	if err != nil {
		return err
	}
	if v := resp.GetProtocolVersion(); v != sdk.ProtocolVersion {
		return fmt.Errorf("plugin speaks sink protocol version %d, this host speaks %d: rebuild the plugin against this flowtap's plugins/sdk", v, sdk.ProtocolVersion)
	}
	s.rpc = rpc
	s.info = sdk.Info{Name: resp.GetName(), Version: resp.GetVersion()}
	return nil
}

// logLevel names the level of l for the plugin, so it does not send lines
// l would drop.
func logLevel(l hclog.Logger) string {
	level := l.GetLevel()
	if level == hclog.NoLevel {
		return hclog.Info.String()
	}
	return level.String()
}

// Info returns what the plugin said about itself at Start.
func (s *Sink) Info() sdk.Info { return s.info }

// Configure sends the sink its configuration, JSON-encoded; nil means an
// empty object. If the sink rejects it, the error lists every problem as
// "key: message" and unwraps (errors.As) to sdk.ConfigErrors.
func (s *Sink) Configure(ctx context.Context, config map[string]any) error {
	if config == nil {
		config = map[string]any{}
	}
	raw, err := json.Marshal(config)
	if err != nil {
		return fmt.Errorf("configure sink %q: encode config: %w", s.label, err)
	}
	if err := s.acquire(ctx); err != nil {
		return fmt.Errorf("configure sink %q: %w", s.label, err)
	}
	defer s.release()
	if s.closed {
		return fmt.Errorf("configure sink %q: %w", s.label, ErrClosed)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.setAbort(cancel)
	defer s.setAbort(nil)
	resp, err := s.rpc.Configure(ctx, &proto.ConfigureRequest{ConfigJson: raw})
	if err != nil {
		return fmt.Errorf("configure sink %q: %w", s.label, s.transportError(err))
	}
	if len(resp.GetErrors()) == 0 {
		return nil
	}
	errs := make(sdk.ConfigErrors, len(resp.GetErrors()))
	for i, e := range resp.GetErrors() {
		errs[i] = sdk.ConfigError{Key: e.GetKey(), Message: e.GetMessage()}
	}
	return fmt.Errorf("configure sink %q: %w", s.label, errs)
}

// Write sends one batch and waits for the plugin's acknowledgement. A nil
// error means the sink accepted the batch; an error wrapping ErrRejected
// means the sink refused it; any other error means the batch's fate is
// unknown (the plugin died, or ctx ended first) and the next Write opens a
// new stream. An empty batch is not sent.
func (s *Sink) Write(ctx context.Context, batch []events.Event) error {
	if err := s.acquire(ctx); err != nil {
		return fmt.Errorf("write to sink %q: %w", s.label, err)
	}
	defer s.release()
	if s.closed {
		return fmt.Errorf("write to sink %q: %w", s.label, ErrClosed)
	}
	if len(batch) == 0 {
		return nil
	}
	ws, err := s.writeStream()
	if err != nil {
		return fmt.Errorf("write to sink %q: open write stream: %w", s.label, s.transportError(err))
	}
	s.seq++
	seq := s.seq
	msg := s.conv.batch(seq, batch, s.eventName)

	if ctx.Done() != nil {
		// Ending ctx breaks the stream: Send and the wait below return.
		// If it ends after the ack arrived, the stream is broken all the
		// same; drop it so that the next Write opens a fresh one.
		stop := context.AfterFunc(ctx, ws.cancel)
		defer func() {
			if !stop() {
				s.dropStream()
			}
		}()
	}
	// gRPC has marshalled msg when Send returns, and the converter only
	// reuses it in the next Write.
	if err := ws.stream.Send(msg); err != nil {
		if err != io.EOF { // io.EOF: the real error comes from Recv
			ws.cancel()
		}
		<-ws.done
		return s.writeFailed(ctx, seq, len(batch), ws.err)
	}
	var ack *proto.Ack
	select {
	case ack = <-ws.acks:
	case <-ws.done:
		select { // an ack that arrived just before the stream ended counts
		case ack = <-ws.acks:
		default:
			return s.writeFailed(ctx, seq, len(batch), ws.err)
		}
	}
	if got := ack.GetSeq(); got != seq {
		s.dropStream()
		return fmt.Errorf("write batch %d to sink %q: protocol error: plugin acknowledged batch %d", seq, s.label, got)
	}
	if msg := ack.GetError(); msg != "" {
		return fmt.Errorf("write batch %d to sink %q: %w: %s", seq, s.label, ErrRejected, msg)
	}
	return nil
}

// writeFailed drops the broken stream and explains why the write failed.
func (s *Sink) writeFailed(ctx context.Context, seq uint64, n int, err error) error {
	s.dropStream()
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("write batch %d to sink %q: %w", seq, s.label, ctxErr)
	}
	s.abortMu.Lock()
	closing := s.closing
	s.abortMu.Unlock()
	if closing {
		return fmt.Errorf("write batch %d to sink %q: aborted by Close: %w", seq, s.label, ErrClosed)
	}
	if status.Code(err) == codes.ResourceExhausted {
		return fmt.Errorf("write batch %d to sink %q: batch of %d events is too large for the plugin (limit %d bytes), send smaller batches: %w",
			seq, s.label, n, sdk.MaxBatchBytes, err)
	}
	if err == io.EOF {
		err = errors.New("plugin ended the write stream")
	}
	return fmt.Errorf("write batch %d to sink %q: %w", seq, s.label, s.transportError(err))
}

// transportError adds that the plugin process has exited, when it has:
// gRPC's own error then only says the connection is gone.
func (s *Sink) transportError(err error) error {
	if s.client != nil && s.client.Exited() {
		return fmt.Errorf("plugin process exited: %w", err)
	}
	return err
}

// writeStream returns the open Write stream, opening one if needed.
func (s *Sink) writeStream() (*writeStream, error) {
	if s.ws != nil {
		return s.ws, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := s.rpc.Write(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	ws := &writeStream{
		stream: stream,
		cancel: cancel,
		acks:   make(chan *proto.Ack, 1),
		done:   make(chan struct{}),
	}
	go func() {
		defer close(ws.done)
		for {
			ack, err := stream.Recv()
			if err != nil {
				ws.err = err
				return
			}
			select {
			case ws.acks <- ack:
			case <-ctx.Done():
				ws.err = ctx.Err()
				return
			}
		}
	}()
	s.ws = ws
	s.setAbort(cancel)
	return ws, nil
}

// setAbort registers how to break the call in flight (nil: none). If Close
// has begun, abort is called at once.
func (s *Sink) setAbort(abort context.CancelFunc) {
	s.abortMu.Lock()
	defer s.abortMu.Unlock()
	s.abort = abort
	if s.closing && abort != nil {
		abort()
	}
}

// dropStream ends the Write stream, if one is open.
func (s *Sink) dropStream() {
	if s.ws == nil {
		return
	}
	s.ws.cancel()
	<-s.ws.done
	s.ws = nil
	s.setAbort(nil)
}

// Close ends the sink: it ends the Write stream, calls the plugin's Close,
// waits until everything the plugin wrote to stdout and stderr has reached
// Config.Stdout and Config.Stderr, and stops the process. It returns the
// sink's Close error, if any. A Write still in flight is aborted. Close may
// be called more than once; later calls return the first call's result.
func (s *Sink) Close(ctx context.Context) error {
	select {
	case s.sem <- struct{}{}:
	default:
		// A call is in flight: break it rather than wait for a plugin
		// that may never answer.
		s.abortMu.Lock()
		s.closing = true
		if s.abort != nil {
			s.abort()
		}
		s.abortMu.Unlock()
		s.sem <- struct{}{}
	}
	defer s.release()
	if s.closed {
		return s.closeErr
	}
	s.closed = true

	var errs []error
	if s.ws != nil {
		// Let the plugin finish the stream cleanly: CloseSend, then wait
		// for it to end its side.
		_ = s.ws.stream.CloseSend()
		select {
		case <-s.ws.done:
		case <-ctx.Done():
		}
		s.dropStream()
	}
	resp, err := s.rpc.Close(ctx, &proto.CloseRequest{DrainToken: s.drainToken})
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("close RPC: %w", s.transportError(err)))
	case resp.GetError() != "":
		errs = append(errs, errors.New(resp.GetError()))
	}
	if resp.GetDrained() {
		s.waitDrained(ctx)
	}
	s.kill()
	if len(errs) > 0 {
		s.closeErr = fmt.Errorf("close sink %q: %w", s.label, errors.Join(errs...))
	}
	return s.closeErr
}

// waitDrained waits until the drain token has come through stdout and
// stderr, bounded by ctx and drainTimeout.
func (s *Sink) waitDrained(ctx context.Context) {
	if s.stdout == nil {
		return
	}
	timer := time.NewTimer(drainTimeout)
	defer timer.Stop()
	for _, w := range []*stdioWriter{s.stdout, s.stderr} {
		select {
		case <-w.seen:
		case <-ctx.Done():
			s.logger.Warn("sink output may be truncated: closing before the plugin's output arrived", "error", ctx.Err())
			return
		case <-timer.C:
			s.logger.Warn("sink output may be truncated: the plugin's output did not arrive", "waited", drainTimeout)
			return
		}
	}
}

// kill stops the process (go-plugin asks it to shut down, then kills it
// after two seconds), waits for it and its log stream, and stops the stdio
// forwarding. It is a no-op for an in-process plugin and when repeated.
func (s *Sink) kill() {
	if s.client == nil {
		return
	}
	s.client.Kill()
	s.procCancel()
	s.stdout.close()
	s.stderr.close()
}

// acquire takes the call lock, unless ctx ends first.
func (s *Sink) acquire(ctx context.Context) error {
	select {
	case s.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Sink) release() { <-s.sem }

// eventName is the wire name of an event ID.
func (s *Sink) eventName(id events.ID) string {
	if s.names != nil {
		if name := s.names(id); name != "" {
			return name
		}
	}
	return "event_" + strconv.Itoa(int(id))
}
