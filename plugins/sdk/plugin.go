// SPDX-License-Identifier: Apache-2.0

package sdk

import (
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/flowtap/flowtap/plugins/internal/wire"
	"github.com/flowtap/flowtap/plugins/internal/wire/grpcopt"
)

// ProtocolVersion is the version of the sink protocol this SDK speaks
// (plugins/internal/wire). It changes only when a host and a plugin built
// against different versions could no longer understand each other: the
// host then refuses the plugin at start, saying which side to rebuild.
// Version 2 sends each batch in a binary event encoding; version 1 sent a
// protobuf message per event and per field.
const ProtocolVersion = wire.ProtocolVersion

// Plugin returns s as the go-plugin plugin Serve serves, for harnesses
// that run a sink in the test's own process (sdktest does, with
// go-plugin's TestPluginGRPCConn, under the name "sink"). A plugin's main
// calls Serve instead.
func Plugin(s Sink) plugin.Plugin { return &wire.GRPCPlugin{Impl: newServer(s)} }

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
	level := hclog.LevelFromString(os.Getenv(wire.LogLevelEnv))
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	var logger hclog.Logger = durationText{hclog.New(&hclog.LoggerOptions{
		Level: level,
		// os.Stderr is read now, before go-plugin replaces it with the
		// pipe it forwards as the host's SyncStderr: log lines must reach
		// the host's logger, not its stderr.
		Output:     os.Stderr,
		JSONFormat: true,
	})}
	pluginLogger.Store(&logger)
	tuneGC()
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  wire.Handshake,
		VersionedPlugins: wire.VersionedPlugins(newServer(s)),
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, grpcopt.ServerOptions(wire.MaxBatchBytes)...)...)
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

// ValidateOnly reports whether the host started this plugin only to check
// its configuration (flowtap config validate, and the check before a run
// or a reload). Configure should then validate without side effects
// (create no file or directory, open no connection) and report what would
// fail; no Write follows, only Close.
func ValidateOnly() bool {
	return os.Getenv(wire.ValidateOnlyEnv) == "1"
}

// AckTimeout returns how long the host waits for the acknowledgement of a
// batch (the return of Write) before it counts the plugin as hung, kills
// it and sends the batch again: 30 s unless the host says otherwise. A
// sink that retries within Write should give up well before it.
func AckTimeout() time.Duration {
	if d, err := time.ParseDuration(os.Getenv(wire.AckTimeoutEnv)); err == nil && d > 0 {
		return d
	}
	return wire.DefaultAckTimeout
}

// Output returns where a sink that prints for people (like the stdout
// sink) should write: the host's own standard output, handed to the
// plugin as a file descriptor, so output does not travel back to the host
// over gRPC. Without one (a host that passes none, or a sink under unit
// test) it writes to os.Stdout as it is at the time of each write, which
// go-plugin forwards to the host. Writes are unbuffered: buffer and flush
// before acknowledging a batch, so output is complete when Write returns.
func Output() io.Writer {
	outputOnce.Do(func() {
		if fd, err := strconv.Atoi(os.Getenv(wire.OutputFDEnv)); err == nil && fd > 2 {
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
