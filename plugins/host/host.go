// SPDX-License-Identifier: Apache-2.0

// Package host runs flowtap sink plugins: it finds a plugin binary, starts
// it with hashicorp/go-plugin, and drives the sink protocol
// (plugins/internal/wire): Info, Configure, Write with acknowledgements, Close.
//
// Events cross to the plugin in the event encoding of plugins/internal/wire, a
// few messages in flight at a time: Write sends a batch and waits for its
// acknowledgement; WriteAsync and Flush let the caller prepare the next
// batch while the plugin handles the last.
//
// One Plugin is one plugin process. The host does not restart a plugin that
// dies; a Write then fails with an error saying so, and the caller decides
// (plugins/supervise restarts it and resends what was not acknowledged).
//
// Before launching a binary, Start refuses one that group or others may
// write when flowtap runs as root, and one whose SHA-256 differs from
// Config.SHA256 when that is set. The connection is authenticated both
// ways with go-plugin's AutoMTLS.
package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/plugins/internal/wire"
	"github.com/flowtap/flowtap/plugins/internal/wire/grpcopt"
	"github.com/flowtap/flowtap/plugins/internal/wire/proto"
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
	// ErrClosed: the Plugin was used after Close.
	ErrClosed = errors.New("sink is closed")
	// ErrTooLarge: an event of the batch is too large to travel in a
	// message of its own (see Config.MaxBatchBytes). Nothing of the batch
	// was sent. Retrying cannot succeed.
	ErrTooLarge = errors.New("event too large for the sink protocol")
)

// PartialError is the rejection of a batch some of whose events may
// already have reached the sink's destination: parts of it the sink
// accepted, or what the sink said may have arrived
// (sdk.PartialWriteError). Sending the batch again may duplicate them.
type PartialError struct {
	// Err is the rejection; it wraps ErrRejected.
	Err error
	// MaybeDelivered is how many events of the batch may have arrived.
	MaybeDelivered int
}

func (e *PartialError) Error() string {
	return fmt.Sprintf("%v (%d events of the batch may have reached the destination)", e.Err, e.MaybeDelivered)
}

// Unwrap returns Err.
func (e *PartialError) Unwrap() error { return e.Err }

// MaybeDelivered returns how many events of a failed batch may have
// reached the sink's destination, as far as the sink said (PartialError);
// 0 when it said nothing. A batch that failed because the plugin died or
// hung may have arrived whole, whatever this says.
func MaybeDelivered(err error) int {
	var pe *PartialError
	if errors.As(err, &pe) {
		return pe.MaybeDelivered
	}
	return 0
}

// DefaultMaxBatchBytes is the default Config.MaxBatchBytes: gRPC's own
// default message cap, about 30,000 flow events.
const DefaultMaxBatchBytes = 4 << 20

// envelopeBytes is room for the rest of a proto.Batch around its events
// (field tags, lengths, seq).
const envelopeBytes = 32

// DefaultMaxInFlight is the default Config.MaxInFlight.
const DefaultMaxInFlight = 8

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
	// Output, when set, is handed to the plugin as a file of its own (fd 3,
	// announced in wire.OutputFDEnv): sinks that print for people write
	// there directly through sdk.Output, rather than through go-plugin's
	// forwarding of the plugin's stdout over gRPC, which costs a copy and
	// a round of syscalls on both sides per write. Nil: sdk.Output falls
	// back to the plugin's forwarded stdout (Stdout above).
	Output *os.File
	// Stderr receives what the plugin writes to its standard error after
	// the handshake (SyncStderr); log lines go to Logger. Nil means
	// os.Stderr.
	Stderr io.Writer
	// Names returns the catalogue name of an event ID, sent with every
	// event. Nil, or an empty result, sends "event_<id>". The host caches
	// the names: a given ID must always get the same one.
	Names func(events.ID) string
	// MaxBatchBytes bounds the encoded size of one message on the Write
	// stream. A batch that encodes to more travels as several messages,
	// which the sink sees as several Writes; a single event larger than
	// this fails its Write with ErrTooLarge. 0 means
	// DefaultMaxBatchBytes; the most is wire.MaxBatchBytes, the cap of the
	// plugin's gRPC server.
	MaxBatchBytes int
	// MaxInFlight bounds how many messages may be sent and not yet
	// acknowledged. 0 means DefaultMaxInFlight.
	MaxInFlight int
	// SHA256, when set, pins the plugin binary: Start refuses to launch
	// it unless its SHA-256 is this (64 hex digits).
	SHA256 string
	// ValidateOnly starts the plugin only to check a configuration: it
	// learns so through sdk.ValidateOnly and configures without side
	// effects.
	ValidateOnly bool
	// RunAs is the user and group the plugin runs as; nil keeps flowtap's
	// own (see DefaultIdentity for what flowtap's config uses when a sink
	// sets none). Either way the plugin holds no capability.
	RunAs *Identity
	// SocketDir is the private directory in which each plugin gets a
	// directory of its own for its go-plugin socket (see
	// NewSocketDir); "" means the system's temporary directory. The
	// plugin's directory is removed when the plugin is killed.
	SocketDir string
	// AckTimeout, when set, tells the plugin how long the host waits for
	// a batch's acknowledgement (sdk.AckTimeout), so that a sink can keep
	// its own retries within it.
	AckTimeout time.Duration
	// OnDuplicates, when set, is called with the events of a batch the
	// sink says it may have delivered more than once while handling it
	// (sdk.NoteDuplicates). It is called like WriteAsync's done: inside a
	// call on the Plugin, with the Plugin locked.
	OnDuplicates func(n int)
}

// limits returns the message size and in-flight limits of cfg, defaults
// applied.
func (cfg *Config) limits() (maxBytes, maxInFlight int) {
	maxBytes = cfg.MaxBatchBytes
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBatchBytes
	}
	maxBytes = max(min(maxBytes, wire.MaxBatchBytes)-envelopeBytes, wire.HeaderLen)
	maxInFlight = cfg.MaxInFlight
	if maxInFlight <= 0 {
		maxInFlight = DefaultMaxInFlight
	}
	return maxBytes, maxInFlight
}

// Plugin is a running sink plugin. Its methods may be called from several
// goroutines; calls are serialised.
type Plugin struct {
	label string // Config.Name, for errors and logs
	path  string // the plugin binary
	// onDuplicates is Config.OnDuplicates.
	onDuplicates func(n int)
	logger       hclog.Logger
	names        func(events.ID) string

	client     *plugin.Client // nil when the plugin runs in-process (tests)
	procCancel context.CancelFunc
	pid        int              // the plugin process; 0 in-process
	grpcConn   *grpc.ClientConn // for health checks; nil in-process
	rpc        proto.SinkClient
	info       Info

	stdout, stderr *stdioWriter // nil when the plugin runs in-process
	drainToken     []byte
	// output is Config.Output: a rejection while it has no reader is
	// ErrOutputClosed.
	output *os.File

	maxBytes    int // the most a message's events may encode to
	maxInFlight int

	// sem serialises the methods and guards everything below it.
	sem      chan struct{}
	closed   bool
	closeErr error
	seq      uint64 // the last message sent, on any stream
	batches  uint64 // batches written, numbering them in errors
	ws       *writeStream
	enc      batchEncoder
	msg      proto.Batch // reused; gRPC has marshalled it when Send returns
	// pending are the messages sent on ws and not yet acknowledged,
	// oldest first.
	pending []pendingMsg
	// asyncErr is the first failure of a WriteAsync batch since the last
	// Flush.
	asyncErr error
	// lastCause is why the last Write stream failed.
	lastCause error

	// abortMu guards abort and closing: Close uses abort to break the
	// call in flight, and closing makes a call that starts after that
	// break itself at once.
	abortMu sync.Mutex
	abort   context.CancelFunc
	closing bool
	killed  bool
}

// pendingMsg is one message awaiting its acknowledgement.
type pendingMsg struct {
	seq  uint64
	b    *batchState
	part int
}

// batchState follows one batch, sent as one message or more, until the
// last is acknowledged or the stream fails.
type batchState struct {
	num      uint64 // the batch's number, for errors
	events   int
	first    []int // per part: its first event; nil for a single part
	left     int   // parts not yet acknowledged
	rejected int   // parts the sink rejected
	err      error // the first rejection
	// maybe counts the events that may have reached the sink's
	// destination: those of parts it accepted, and those it said may
	// have arrived of parts it rejected.
	maybe    int
	done     func(error)
	async    bool // written by WriteAsync: a failure goes to asyncErr
	finished bool
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

// Verify makes the checks Start makes of a plugin's binary before it
// runs it, and runs nothing: plugin resolves (Resolve), the binary passes
// the trust checks of openTrusted and, when pin is set, has that SHA-256.
// It returns the binary's path. A check before a run uses it for a plugin
// it need not start (pipeline.CheckOptions.BeforeRun); Start checks again,
// on the descriptor it executes.
func Verify(plugin, pin string) (string, error) {
	path, err := Resolve(plugin)
	if err != nil {
		return "", err
	}
	bin, err := openTrusted(path, pin, os.Geteuid())
	if err != nil {
		return "", err
	}
	return path, bin.Close()
}

// noFilterOnce says once that plugins run without a seccomp filter.
var noFilterOnce sync.Once

// Start resolves and launches the plugin, completes the go-plugin
// handshake, and checks that the plugin speaks wire.ProtocolVersion. ctx
// bounds only the start: if it ends first the process is killed. The
// plugin process is killed if the host dies (Pdeathsig); the caller must
// Close the Plugin to end it otherwise.
//
// The plugin holds no privilege (see launch.go): no capabilities,
// NoNewPrivs, and the user Config.RunAs. Its binary must pass the checks
// of openTrusted, and the descriptor that was checked is what executes.
func Start(ctx context.Context, cfg Config) (*Plugin, error) {
	label := cfg.Name
	if label == "" {
		label = cfg.Plugin
	}
	path, err := Resolve(cfg.Plugin)
	if err != nil {
		return nil, fmt.Errorf("start sink %q: %w", label, err)
	}
	launch, err := getLauncher()
	if err != nil {
		return nil, fmt.Errorf("start sink %q: %w", label, err)
	}
	cred, err := credential(cfg.RunAs)
	if err != nil {
		return nil, fmt.Errorf("start sink %q: %w", label, err)
	}
	socketGroup := ""
	if cred != nil && cfg.RunAs.UID != uint32(os.Geteuid()) {
		// The plugin makes its socket usable by its group only; flowtap
		// joins that group to reach it.
		if err := joinGroup(cfg.RunAs.GID); err != nil {
			return nil, fmt.Errorf("start sink %q: %w", label, err)
		}
		socketGroup = strconv.FormatUint(uint64(cfg.RunAs.GID), 10)
	}
	bin, err := openTrusted(path, cfg.SHA256, os.Geteuid())
	if err != nil {
		return nil, fmt.Errorf("start sink %q: %w", label, err)
	}
	defer bin.Close()
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.Default()
	}
	logger = logger.With("sink", label)
	if launch.noFilter != nil {
		noFilterOnce.Do(func() { logger.Warn("plugins run without their seccomp filter", "reason", launch.noFilter) })
	}
	stdout, stderr := cfg.Stdout, cfg.Stderr
	if stdout == nil {
		stdout = os.Stdout
	}
	if stderr == nil {
		stderr = os.Stderr
	}

	token := newDrainToken()
	s := &Plugin{
		label:        label,
		path:         path,
		logger:       logger,
		names:        cfg.Names,
		onDuplicates: cfg.OnDuplicates,
		stdout:       newStdioWriter(stdout, token),
		stderr:       newStdioWriter(stderr, token),
		drainToken:   token,
		output:       cfg.Output,
		sem:          make(chan struct{}, 1),
	}
	s.maxBytes, s.maxInFlight = cfg.limits()

	// The process outlives ctx, so it gets its own context; ctx cancels
	// it only until the start has succeeded.
	procCtx, procCancel := context.WithCancel(context.Background())
	s.procCancel = procCancel
	cmd := exec.CommandContext(procCtx, path)
	// The plugin dies with the host, even when the host is SIGKILLed:
	// Pdeathsig fires when the thread that started the child exits, and
	// the launcher thread lives as long as the process. Its own process
	// group keeps the signals meant for flowtap's group (a terminal's,
	// timeout(1)'s SIGTERM) from killing it before flowtap has drained
	// it: flowtap stops its plugins itself.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: cred, Setpgid: true}
	cmd.Env = []string{wire.LogLevelEnv + "=" + logLevel(logger)}
	if cfg.ValidateOnly {
		cmd.Env = append(cmd.Env, wire.ValidateOnlyEnv+"=1")
	}
	if cfg.AckTimeout > 0 {
		cmd.Env = append(cmd.Env, wire.AckTimeoutEnv+"="+cfg.AckTimeout.String())
	}
	if cfg.Output != nil {
		cmd.ExtraFiles = []*os.File{cfg.Output} // fd 3 in the plugin
		cmd.Env = append(cmd.Env, wire.OutputFDEnv+"=3")
	}

	tail := &stderrTail{}
	startTimeout := DefaultStartTimeout
	if deadline, ok := ctx.Deadline(); ok {
		startTimeout = max(min(time.Until(deadline), startTimeout), time.Millisecond)
	}
	// Other protocol versions, older and newer, are offered only so that
	// a plugin speaking one completes go-plugin's negotiation: the host
	// then decides by the negotiated version, and says what is wrong.
	versions := wire.VersionedPlugins(nil)
	for v := 1; v <= offeredVersions; v++ {
		if v != wire.ProtocolVersion {
			versions[v] = plugin.PluginSet{wire.PluginName: &wire.GRPCPlugin{}}
		}
	}
	s.client = plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  wire.Handshake,
		VersionedPlugins: versions,
		// go-plugin makes a directory of its own for the plugin's
		// socket, in SocketDir (private to flowtap), and removes it
		// when the plugin is killed, whatever killed it.
		// go-plugin hands the runner a command of its own, with the
		// environment it sets (handshake, certificate, socket
		// directory); the plugin gets that and ours, ours last.
		RunnerFunc: func(_ hclog.Logger, c *exec.Cmd, _ string) (runner.Runner, error) {
			cmd.Env = append(c.Env, cmd.Env...)
			cmd.Stdin = c.Stdin
			return newProcRunner(cmd, path, bin, launch)
		},
		UnixSocketConfig: &plugin.UnixSocketConfig{TempDir: cfg.SocketDir, Group: socketGroup},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Managed:          false,
		AutoMTLS:         true,
		StartTimeout:     startTimeout,
		Logger:           tailLogger{Logger: logger, tail: tail, base: filepath.Base(path)},
		SyncStdout:       s.stdout,
		SyncStderr:       s.stderr,
		GRPCDialOptions:  grpcopt.DialOptions(),
	})
	stopWatch := context.AfterFunc(ctx, procCancel)

	fail := func(what string, err error) (*Plugin, error) {
		stopWatch()
		s.kill()
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = fmt.Errorf("%w (%w)", ctxErr, err)
		}
		return nil, fmt.Errorf("start sink %q (%s): %s: %w", label, path, what, err)
	}
	rpcClient, err := s.client.Client()
	if err != nil {
		if strings.Contains(err.Error(), "Failed to read any lines") || strings.Contains(err.Error(), "exited before we could connect") {
			// Kill waits for go-plugin's goroutine reading the
			// plugin's stderr: the tail is complete after it.
			s.kill()
			why := "the plugin exited before the handshake"
			if stderr := tail.String(); stderr != "" {
				why += "; its standard error: " + stderr
			}
			return fail("plugin handshake (is it a flowtap sink plugin built with plugins/sdk?)", fmt.Errorf("%s: %w", why, err))
		}
		if strings.Contains(err.Error(), "Unrecognized remote plugin message") {
			return fail("plugin handshake", fmt.Errorf("the plugin printed to its standard output before the handshake (a sink must not write to stdout before sdk.Serve; log with sdk.Logger): %w", err))
		}
		return fail("plugin handshake (is it a flowtap sink plugin built with plugins/sdk?)", err)
	}
	s.grpcConn = nil
	if gc, ok := rpcClient.(*plugin.GRPCClient); ok {
		s.grpcConn = gc.Conn
	}
	if err := checkVersion(s.client.NegotiatedVersion()); err != nil {
		return fail("protocol version", err)
	}
	raw, err := rpcClient.Dispense(wire.PluginName)
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
	s.pid, _ = strconv.Atoi(s.client.ID())
	logger.Debug("sink plugin started", "path", path, "name", s.info.Name, "version", s.info.Version)
	return s, nil
}

// newInProcess wraps a sink client whose server runs without a process of
// its own (go-plugin's TestPluginGRPCConn), for tests.
func newInProcess(ctx context.Context, cfg Config, rpc proto.SinkClient) (*Plugin, error) {
	label := cfg.Name
	s := &Plugin{label: label, logger: hclog.NewNullLogger(), names: cfg.Names, onDuplicates: cfg.OnDuplicates, sem: make(chan struct{}, 1)}
	s.maxBytes, s.maxInFlight = cfg.limits()
	if err := s.init(ctx, rpc); err != nil {
		return nil, fmt.Errorf("start sink %q: info: %w", label, err)
	}
	return s, nil
}

// init asks the plugin for its Info and checks its protocol version.
func (s *Plugin) init(ctx context.Context, rpc proto.SinkClient) error {
	resp, err := rpc.Info(ctx, &proto.InfoRequest{})
	if err != nil {
		return err
	}
	if err := checkVersion(int(resp.GetProtocolVersion())); err != nil {
		return err
	}
	s.rpc = rpc
	s.info = Info{Name: resp.GetName(), Version: resp.GetVersion()}
	return nil
}

// offeredVersions is the highest protocol version the host offers in the
// go-plugin handshake (all of 1 to it): a plugin speaking any of them gets
// as far as checkVersion, which says which side to rebuild. A plugin
// speaking a version above it fails go-plugin's negotiation itself.
const offeredVersions = 32

// checkVersion refuses a plugin that speaks protocol version v, unless v
// is the host's, saying which side is older.
func checkVersion(v int) error {
	switch {
	case v == wire.ProtocolVersion:
		return nil
	case v > wire.ProtocolVersion:
		return fmt.Errorf("plugin speaks sink protocol version %d, newer than this host's %d: update flowtap, or build the plugin against this flowtap's plugins/sdk", v, wire.ProtocolVersion)
	}
	return fmt.Errorf("plugin speaks sink protocol version %d, this host speaks %d: rebuild the plugin against this flowtap's plugins/sdk", v, wire.ProtocolVersion)
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

// Info is what a plugin says about itself.
type Info struct {
	// Name is the sink's short name, e.g. "stdout".
	Name string
	// Version is the sink's own version, free-form.
	Version string
}

// ConfigError is one problem a plugin found with one key of its
// configuration (the SDK's sdk.ConfigError, as it arrives).
type ConfigError struct {
	// Key names the configuration key; "" when the problem is not about
	// one key.
	Key string
	// Message says what is wrong.
	Message string
}

// Error returns "key: message", or the message alone when Key is empty.
func (e ConfigError) Error() string {
	if e.Key == "" {
		return e.Message
	}
	return e.Key + ": " + e.Message
}

// ConfigErrors are the problems a plugin found with its configuration,
// one per key.
type ConfigErrors []ConfigError

// Error joins the problems with "; ".
func (es ConfigErrors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

// Info returns what the plugin said about itself at Start.
func (s *Plugin) Info() Info { return s.info }

// Configure sends the sink its configuration, JSON-encoded; nil means an
// empty object. If the sink rejects it, the error lists every problem as
// "key: message" and unwraps (errors.As) to ConfigErrors.
func (s *Plugin) Configure(ctx context.Context, config map[string]any) error {
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
	errs := make(ConfigErrors, len(resp.GetErrors()))
	for i, e := range resp.GetErrors() {
		errs[i] = ConfigError{Key: e.GetKey(), Message: e.GetMessage()}
	}
	return fmt.Errorf("configure sink %q: %w", s.label, errs)
}

// Write sends one batch and waits for the plugin's acknowledgement. A nil
// error means the sink accepted the batch; an error wrapping ErrRejected
// means the sink refused it; an error wrapping ErrTooLarge means an event
// cannot be sent at all, and nothing was; any other error means the
// batch's fate is unknown (the plugin died, or ctx ended first) and the
// next Write opens a new stream. An empty batch is not sent.
//
// The host encodes the batch before Write returns: the caller may reuse
// batch at once. A batch that encodes to more than Config.MaxBatchBytes
// travels as several messages, and the sink sees it as several Writes; if
// it rejects one of them, the error says which events that part held, and
// the sink may have accepted the others.
//
// Write does not wait for batches written earlier with WriteAsync beyond
// what its own acknowledgement needs (they are acknowledged in order, so
// they are settled too: their done functions run, their failures wait for
// Flush).
func (s *Plugin) Write(ctx context.Context, batch []events.Event) error {
	if err := s.acquire(ctx); err != nil {
		return fmt.Errorf("write to sink %q: %w", s.label, err)
	}
	defer s.release()
	var result error
	b, err := s.write(ctx, batch, func(err error) { result = err }, false)
	if err != nil || b == nil {
		return err
	}
	return result
}

// WriteAsync sends one batch without waiting for its acknowledgement, so
// that the caller can prepare the next batch while the plugin handles this
// one. It returns once the batch is encoded (the caller may reuse batch at
// once) and sent, after waiting, if Config.MaxInFlight messages already
// await their acknowledgement, for the oldest of them.
//
// If WriteAsync returns an error, nothing of the batch was sent (the error
// is one Write would return) and done is not called. Otherwise the
// batch's outcome, nil or an error as Write would return it, reaches done
// (if not nil) and, if it is a failure, the next Flush. done is called
// exactly once, in the order the batches were written, from inside a call
// on s: this WriteAsync or a later WriteAsync, Write, Flush or Close, in
// the goroutine making that call, with s locked. So done must not call s,
// and should be quick.
//
// ctx bounds the call, not the batch's journey: if ctx ends while the call
// waits for the plugin, the stream breaks and every batch in flight fails
// with ctx's error, as in Write.
func (s *Plugin) WriteAsync(ctx context.Context, batch []events.Event, done func(error)) error {
	if err := s.acquire(ctx); err != nil {
		return fmt.Errorf("write to sink %q: %w", s.label, err)
	}
	defer s.release()
	_, err := s.write(ctx, batch, done, true)
	return err
}

// Flush waits until every batch written with WriteAsync has been
// acknowledged (or has failed) and returns the first failure of a
// WriteAsync batch since the previous Flush, or nil if the sink accepted
// them all. If ctx ends first, the stream breaks and the batches still in
// flight fail with ctx's error.
func (s *Plugin) Flush(ctx context.Context) error {
	if err := s.acquire(ctx); err != nil {
		return fmt.Errorf("flush sink %q: %w", s.label, err)
	}
	defer s.release()
	if len(s.pending) > 0 {
		stop := s.watch(ctx, s.ws)
		for len(s.pending) > 0 {
			s.settleOne(ctx)
		}
		stop()
	}
	err := s.asyncErr
	s.asyncErr = nil
	if err == nil && s.closed {
		return fmt.Errorf("flush sink %q: %w", s.label, ErrClosed)
	}
	return err
}

// write encodes and sends batch, then, unless async, waits until the sink
// has answered it. It returns the batch's state once something of it was
// sent (its outcome then reaches done), else an error. The caller holds
// the lock.
func (s *Plugin) write(ctx context.Context, batch []events.Event, done func(error), async bool) (*batchState, error) {
	if s.closed {
		return nil, fmt.Errorf("write to sink %q: %w", s.label, ErrClosed)
	}
	if len(batch) == 0 {
		return nil, nil
	}
	if err := s.enc.encode(batch, s.maxBytes, s.eventName); err != nil {
		return nil, fmt.Errorf("write to sink %q: %w", s.label, err)
	}
	defer s.enc.release()
	ws, err := s.writeStream()
	if err != nil {
		return nil, fmt.Errorf("write to sink %q: open write stream: %w", s.label, s.transportError(err))
	}
	stop := s.watch(ctx, ws)
	defer stop()

	s.batches++
	b := &batchState{num: s.batches, events: len(batch), left: len(s.enc.parts), done: done, async: async}
	if len(s.enc.parts) > 1 {
		b.first = append([]int(nil), s.enc.first...)
	}
	for k, part := range s.enc.parts {
		for len(s.pending) >= s.maxInFlight {
			s.settleOne(ctx)
		}
		if s.ws != ws { // the stream failed while we waited
			if k == 0 {
				return nil, fmt.Errorf("write batch %d to sink %q: %w", b.num, s.label, s.lastCause)
			}
			break // b failed with the other messages in flight
		}
		s.seq++
		s.msg.Seq, s.msg.Events = s.seq, part
		err := ws.stream.Send(&s.msg)
		s.msg.Events = nil
		if err != nil {
			if err != io.EOF { // io.EOF: the real error comes from Recv
				ws.cancel()
			}
			<-ws.done
			// Acks that arrived before the stream ended still count.
			for len(s.pending) > 0 && len(ws.acks) > 0 {
				s.ack(ctx, <-ws.acks)
			}
			cause := s.streamFailed(ctx, ws.err)
			if k == 0 {
				return nil, fmt.Errorf("write batch %d to sink %q: %w", b.num, s.label, cause)
			}
			if !b.finished {
				s.finish(b, fmt.Errorf("write batch %d to sink %q: %w", b.num, s.label, cause))
			}
			return b, nil
		}
		s.pending = append(s.pending, pendingMsg{seq: s.seq, b: b, part: k})
	}
	if !async {
		for !b.finished {
			s.settleOne(ctx)
		}
	}
	return b, nil
}

// watch makes the end of ctx break ws, and returns the function that
// stops watching: if ctx has ended by then, ws is broken even if the call
// completed, so it is dropped and whatever is still in flight on it fails.
func (s *Plugin) watch(ctx context.Context, ws *writeStream) (stop func()) {
	if ctx.Done() == nil {
		return func() {}
	}
	stopWatch := context.AfterFunc(ctx, ws.cancel)
	return func() {
		if !stopWatch() && s.ws == ws {
			<-ws.done
			s.streamFailed(ctx, ws.err)
		}
	}
}

// settleOne waits for the next acknowledgement or the end of the stream,
// and settles what it decides. There must be a message in flight.
func (s *Plugin) settleOne(ctx context.Context) {
	ws := s.ws
	select {
	case a := <-ws.acks:
		s.ack(ctx, a)
	case <-ws.done:
		select { // an ack that arrived just before the stream ended counts
		case a := <-ws.acks:
			s.ack(ctx, a)
		default:
			s.streamFailed(ctx, ws.err)
		}
	}
}

// ack settles the oldest message in flight with the plugin's answer.
func (s *Plugin) ack(ctx context.Context, a *proto.Ack) {
	p := s.pending[0]
	if got := a.GetSeq(); got != p.seq {
		s.streamFailed(ctx, fmt.Errorf("protocol error: plugin acknowledged message %d, expected %d", got, p.seq))
		return
	}
	copy(s.pending, s.pending[1:])
	s.pending[len(s.pending)-1] = pendingMsg{}
	s.pending = s.pending[:len(s.pending)-1]
	b := p.b
	b.left--
	if msg := a.GetError(); msg != "" {
		b.rejected++
		if b.err == nil {
			b.err = s.rejection(b, p.part, msg)
		}
		b.maybe += min(int(a.GetMaybeDelivered()), b.partEvents(p.part))
	} else {
		b.maybe += b.partEvents(p.part)
	}
	if d := a.GetDuplicates(); d > 0 && s.onDuplicates != nil {
		s.onDuplicates(min(int(d), b.partEvents(p.part)))
	}
	if b.left == 0 && !b.finished {
		s.finish(b, b.err)
	}
}

// rejection is the error of a batch whose part the sink rejected:
// ErrOutputClosed when the plugin's output has lost its reader (the sink
// could not write it, and never will), else ErrRejected.
func (s *Plugin) rejection(b *batchState, part int, msg string) error {
	if s.output != nil && OutputClosed(s.output) {
		return fmt.Errorf("write batch %d to sink %q: %w (the sink said: %s)", b.num, s.label, ErrOutputClosed, msg)
	}
	if b.first == nil {
		return fmt.Errorf("write batch %d to sink %q: %w: %s", b.num, s.label, ErrRejected, msg)
	}
	end := b.events
	if part+1 < len(b.first) {
		end = b.first[part+1]
	}
	return &partError{
		err: fmt.Errorf("write batch %d to sink %q: %w: part %d of %d (events %d to %d): %s",
			b.num, s.label, ErrRejected, part+1, len(b.first), b.first[part], end-1, msg),
		b: b,
	}
}

// partError is the rejection of a part of a batch; it adds how many parts
// the sink rejected in all, known only when the batch is settled.
type partError struct {
	err error
	b   *batchState
}

func (e *partError) Error() string {
	return fmt.Sprintf("%v (the sink rejected %d of the batch's %d parts)", e.err, e.b.rejected, len(e.b.first))
}

func (e *partError) Unwrap() error { return e.err }

// partEvents is how many events part k of b holds.
func (b *batchState) partEvents(k int) int {
	if b.first == nil {
		return b.events
	}
	end := b.events
	if k+1 < len(b.first) {
		end = b.first[k+1]
	}
	return end - b.first[k]
}

// finish settles batch b with err.
func (s *Plugin) finish(b *batchState, err error) {
	b.finished = true
	if err != nil && b.maybe > 0 && errors.Is(err, ErrRejected) {
		err = &PartialError{Err: err, MaybeDelivered: min(b.maybe, b.events)}
	}
	if b.async && err != nil && s.asyncErr == nil {
		s.asyncErr = err
	}
	if b.done != nil {
		b.done(err)
	}
}

// streamFailed drops the broken Write stream, fails every message in
// flight on it, and returns why the stream failed. err is what ended it.
func (s *Plugin) streamFailed(ctx context.Context, err error) error {
	s.dropStream()
	cause := s.failureCause(ctx, err)
	s.lastCause = cause
	pending := s.pending
	s.pending = s.pending[:0]
	for _, p := range pending {
		if !p.b.finished {
			s.finish(p.b, fmt.Errorf("write batch %d to sink %q: %w", p.b.num, s.label, cause))
		}
	}
	clear(pending)
	return cause
}

// failureCause explains why a Write stream failed with err.
func (s *Plugin) failureCause(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	s.abortMu.Lock()
	closing, killed := s.closing, s.killed
	s.abortMu.Unlock()
	if killed {
		return errors.New("plugin process killed by the host")
	}
	if closing {
		return fmt.Errorf("aborted by Close: %w", ErrClosed)
	}
	if status.Code(err) == codes.ResourceExhausted {
		return fmt.Errorf("the plugin refused a message as too large, lower MaxBatchBytes (now %d; the plugin accepts %d): %w",
			s.maxBytes+envelopeBytes, wire.MaxBatchBytes, err)
	}
	if err == io.EOF {
		err = errors.New("plugin ended the write stream")
	}
	return s.transportError(err)
}

// transportError adds that the plugin process has exited, when it has:
// gRPC's own error then only says the connection is gone.
func (s *Plugin) transportError(err error) error {
	if s.client != nil && s.client.Exited() {
		return fmt.Errorf("plugin process exited: %w", err)
	}
	return err
}

// writeStream returns the open Write stream, opening one if needed.
func (s *Plugin) writeStream() (*writeStream, error) {
	if s.ws != nil {
		return s.ws, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := s.rpc.Write(ctx, grpc.ForceCodecV2(grpcopt.Codec))
	if err != nil {
		cancel()
		return nil, err
	}
	ws := &writeStream{
		stream: stream,
		cancel: cancel,
		// Room for every ack the plugin may owe: the receiver never
		// waits for the caller.
		acks: make(chan *proto.Ack, s.maxInFlight),
		done: make(chan struct{}),
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

// finishStream ends the Write stream cleanly, if one is open: it tells
// the plugin no more batches come, waits (bounded by ctx) for the
// acknowledgement of those in flight and for the plugin to end the
// stream. It returns the failures of WriteAsync batches not yet reported
// by Flush.
func (s *Plugin) finishStream(ctx context.Context) error {
	if ws := s.ws; ws != nil {
		_ = ws.stream.CloseSend()
		if len(s.pending) > 0 {
			stop := s.watch(ctx, ws)
			for len(s.pending) > 0 {
				s.settleOne(ctx)
			}
			stop()
		}
		if s.ws == ws {
			select {
			case <-ws.done:
			case <-ctx.Done():
			}
			s.dropStream()
		}
	}
	err := s.asyncErr
	s.asyncErr = nil
	return err
}

// setAbort registers how to break the call in flight (nil: none). If Close
// has begun, abort is called at once.
func (s *Plugin) setAbort(abort context.CancelFunc) {
	s.abortMu.Lock()
	defer s.abortMu.Unlock()
	s.abort = abort
	if s.closing && abort != nil {
		abort()
	}
}

// dropStream ends the Write stream, if one is open.
func (s *Plugin) dropStream() {
	if s.ws == nil {
		return
	}
	s.ws.cancel()
	<-s.ws.done
	s.ws = nil
	s.setAbort(nil)
}

// Close ends the sink: it ends the Write stream, after waiting (bounded by
// ctx) for the acknowledgement of the batches WriteAsync sent, calls the
// plugin's Close, waits until everything the plugin wrote to stdout and
// stderr has reached Config.Stdout and Config.Stderr, and stops the
// process. It returns the sink's Close error, if any, joined with the
// failures of WriteAsync batches that no Flush has reported. A call still
// in flight (a Write waiting for its acknowledgement, say) is aborted.
// Close may be called more than once; later calls return the first
// call's result.
func (s *Plugin) Close(ctx context.Context) error {
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
	if err := s.finishStream(ctx); err != nil {
		errs = append(errs, err)
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
func (s *Plugin) waitDrained(ctx context.Context) {
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
func (s *Plugin) kill() {
	if s.client == nil {
		return
	}
	s.client.Kill()
	s.procCancel()
	s.stdout.close()
	s.stderr.close()
}

// acquire takes the call lock, unless ctx ends first.
func (s *Plugin) acquire(ctx context.Context) error {
	select {
	case s.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Plugin) release() { <-s.sem }

// eventName is the wire name of an event ID.
func (s *Plugin) eventName(id events.ID) string {
	if s.names != nil {
		if name := s.names(id); name != "" {
			return name
		}
	}
	return "event_" + strconv.Itoa(int(id))
}

// PID returns the plugin's process ID; 0 when the plugin runs in the
// host's process (tests).
func (s *Plugin) PID() int { return s.pid }

// Ping checks that the plugin process answers, bounded by ctx: go-plugin's
// gRPC health service, served by the plugin apart from the sink's own
// calls, so a sink busy in a long Write still answers. A plugin that does
// not answer before ctx ends is hung (or stopped). Ping does not wait for
// the Plugin's other calls.
func (s *Plugin) Ping(ctx context.Context) error {
	var err error
	if s.grpcConn != nil {
		_, err = grpc_health_v1.NewHealthClient(s.grpcConn).Check(ctx,
			&grpc_health_v1.HealthCheckRequest{Service: plugin.GRPCServiceName})
	} else {
		_, err = s.rpc.Info(ctx, &proto.InfoRequest{})
	}
	if err != nil {
		return fmt.Errorf("health check of sink %q: %w", s.label, s.transportError(err))
	}
	return nil
}

// Kill ends the plugin process at once (SIGKILL), without asking the sink
// to close, and breaks any call in flight: for a plugin that is hung or
// must be replaced. Batches not acknowledged fail. Close must still be
// called to release the Plugin; it then returns quickly.
func (s *Plugin) Kill() {
	if s.procCancel != nil {
		s.procCancel() // exec.CommandContext sends SIGKILL
	}
	s.abortMu.Lock()
	s.closing, s.killed = true, true
	if s.abort != nil {
		s.abort()
	}
	s.abortMu.Unlock()
}
