package sdk

import (
	"context"
	"errors"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/flowtap/flowtap/plugins/internal/grpcopt"
	"github.com/flowtap/flowtap/plugins/proto"
)

// ProtocolVersion is the version of the sink protocol (plugins/proto) this
// SDK speaks. It changes only when a host and a plugin built against
// different versions could no longer understand each other. Version 3
// adds the process and workload context to the event encoding (layout 2);
// version 2 sent each batch in the binary event encoding of
// plugins/proto (layout 1); version 1 sent a protobuf message per event
// and per field.
const ProtocolVersion = 3

// PluginName is the name the sink is dispensed under in the go-plugin
// plugin set.
const PluginName = "sink"

// MaxBatchBytes is the largest message a plugin accepts on its Write
// stream. The host splits larger batches into messages of at most its own
// limit (4 MiB unless configured), which may not exceed this one.
const MaxBatchBytes = 64 << 20

// LogLevelEnv is the environment variable the host sets to the level of
// its own logger (an hclog level name, e.g. "info"), so a plugin does not
// produce log lines the host would drop. Serve reads it; the default is
// "info".
const LogLevelEnv = "FLOWTAP_PLUGIN_LOG_LEVEL"

// Handshake is the go-plugin handshake between the flowtap host and a sink
// plugin. The magic cookie is not a security measure: it lets a plugin
// binary started by hand explain that it is a plugin instead of hanging.
var Handshake = plugin.HandshakeConfig{
	// ProtocolVersion is left zero: VersionedPlugins carries the versions.
	MagicCookieKey:   "FLOWTAP_SINK_PLUGIN",
	MagicCookieValue: "e3c1a9b4-flowtap-sink-v1",
}

// VersionedPlugins returns the go-plugin plugin sets, by protocol version,
// for serving s. The host passes nil: its side only dispenses clients.
// It is a function rather than a shared map so that no caller can modify
// another's plugin set.
func VersionedPlugins(s Sink) map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{
		ProtocolVersion: {PluginName: &GRPCPlugin{Impl: s}},
	}
}

// GRPCPlugin is the go-plugin binding of Sink over gRPC. On the plugin side
// GRPCServer serves Impl; on the host side GRPCClient returns the raw
// proto.SinkClient, which the flowtap host (plugins/host) wraps.
type GRPCPlugin struct {
	// NetRPCUnsupportedPlugin refuses go-plugin's older net/rpc transport.
	plugin.NetRPCUnsupportedPlugin
	// Impl is the sink to serve; nil on the host side.
	Impl Sink
}

// Interface guard: GRPCPlugin is a go-plugin gRPC plugin.
var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer registers the Sink service for Impl on s.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if p.Impl == nil {
		return errors.New("serve sink: GRPCPlugin.Impl is nil")
	}
	proto.RegisterSinkServer(s, newServer(p.Impl))
	return nil
}

// GRPCClient returns a proto.SinkClient on conn.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return proto.NewSinkClient(conn), nil
}

// Serve serves s to the flowtap host and returns when the host has closed
// the plugin. It is all a plugin's main function needs to do:
//
//	func main() { sdk.Serve(mysink.New()) }
//
// Serve logs, as JSON lines, to the process's original standard error;
// go-plugin turns each line back into a log entry on the host's logger, at
// the same level. Sinks get that logger from Logger. Run by hand rather
// than by the host, Serve prints that the binary is a plugin and exits
// with status 1.
func Serve(s Sink) {
	level := hclog.LevelFromString(os.Getenv(LogLevelEnv))
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	logger := hclog.New(&hclog.LoggerOptions{
		Level: level,
		// os.Stderr is read now, before go-plugin replaces it with the
		// pipe it forwards as the host's SyncStderr: log lines must reach
		// the host's logger, not its stderr.
		Output:     os.Stderr,
		JSONFormat: true,
	})
	pluginLogger.Store(&logger)
	tuneGC()
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: VersionedPlugins(s),
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, grpcopt.ServerOptions(MaxBatchBytes)...)...)
		},
		Logger: logger,
	})
}

// pluginGCPercent is the garbage collector's target a plugin runs with
// unless GOGC says otherwise. A plugin's live heap is small (the decoder
// reuses its memory) while every batch arrives in fresh memory, so with
// Go's default of 100 it collects several times per megabyte received: a
// tenth of its CPU time at high rates. 400 collects a quarter as often for
// a few more MiB of memory.
const pluginGCPercent = 400

// tuneGC applies pluginGCPercent, unless the user set GOGC.
func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(pluginGCPercent)
	}
}

// ValidateOnlyEnv names the environment variable through which the host
// says it started the plugin only to check a configuration (flowtap
// config validate, and the check before a run or a reload): see
// ValidateOnly.
const ValidateOnlyEnv = "FLOWTAP_VALIDATE_ONLY"

// ValidateOnly reports whether the host started this plugin only to check
// its configuration. Configure should then validate without side effects
// (create no file or directory, open no connection) and report what would
// fail; no Write follows, only Close.
func ValidateOnly() bool {
	return os.Getenv(ValidateOnlyEnv) == "1"
}

// OutputFDEnv names the environment variable through which the host
// tells a plugin which file descriptor is its output (see Output).
const OutputFDEnv = "FLOWTAP_OUTPUT_FD"

// Output returns where a sink that prints for people (like the stdout
// sink) should write: the host's own standard output, handed to the
// plugin as a file descriptor, so output does not travel back to the host
// over gRPC. Without one (a host that passes none, or a sink under unit
// test) it writes to os.Stdout as it is at the time of each write, which
// go-plugin forwards to the host. Writes are unbuffered: buffer and flush
// before acknowledging a batch, so output is complete when Write returns.
func Output() io.Writer {
	outputOnce.Do(func() {
		if fd, err := strconv.Atoi(os.Getenv(OutputFDEnv)); err == nil && fd > 2 {
			if f := os.NewFile(uintptr(fd), "flowtap-output"); f != nil {
				output = f
				return
			}
		}
		output = stdoutWriter{}
	})
	return output
}

var (
	outputOnce sync.Once
	output     io.Writer
)

// stdoutWriter writes to whatever os.Stdout is when it writes: go-plugin
// replaces os.Stdout after the handshake.
type stdoutWriter struct{}

func (stdoutWriter) Write(p []byte) (int, error) { return os.Stdout.Write(p) }

// pluginLogger holds the logger Serve set up; nil before Serve.
var pluginLogger atomic.Pointer[hclog.Logger]

// defaultLogger is what Logger returns before Serve: plain text on
// standard error, so a sink under unit test can still log.
var defaultLogger = hclog.New(&hclog.LoggerOptions{
	Name:   "sink",
	Level:  hclog.Info,
	Output: os.Stderr,
})

// Logger returns the logger a sink should use for its diagnostics. Inside
// Serve it writes JSON lines that reach the host's logger (labelled with the
// plugin's binary name and the host's name for this sink); before Serve,
// for example in a sink's unit tests, it writes text to standard error.
// It is safe for concurrent use. Call it when needed rather than keeping
// the result from before Serve.
func Logger() hclog.Logger {
	if l := pluginLogger.Load(); l != nil {
		return *l
	}
	return defaultLogger
}
