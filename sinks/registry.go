// Package sinks is the table of flowtap's built-in sinks: each one's name,
// constructor, config struct and sample. The table drives the plugin
// binaries (cmd/flowtap-sink-<name> is Serve("<name>")), the names the
// config loader suggests, and `flowtap list --sinks`. The sinks themselves
// are the packages below: stdout, file, webhook and nats.
package sinks

import (
	"fmt"
	"os"

	"github.com/flowtap/flowtap/plugins/sdk"
	"github.com/flowtap/flowtap/sinks/file"
	"github.com/flowtap/flowtap/sinks/internal/sinkconf"
	"github.com/flowtap/flowtap/sinks/nats"
	"github.com/flowtap/flowtap/sinks/stdout"
	"github.com/flowtap/flowtap/sinks/webhook"
)

// Builtin is one built-in sink.
type Builtin struct {
	// Name is the sink's name in a pipeline's "plugin" key; its plugin
	// binary is flowtap-sink-<Name>.
	Name string
	// Description says what it does, in one line.
	Description string
	// New returns an unconfigured sink.
	New func() sdk.Sink
	// Config returns a pointer to a zero config struct: its json tags
	// are the sink's keys, its sinkconf tags say which are secret.
	Config func() any
	// Sample returns the sink's sample pipeline file (sample.yaml).
	Sample func() []byte
}

// Keys lists the sink's configuration keys, from its config struct.
func (b Builtin) Keys() []sinkconf.Key { return sinkconf.Keys(b.Config()) }

// Builtins returns the table, in the order flowtap lists the sinks.
func Builtins() []Builtin {
	return []Builtin{
		{
			Name: "stdout", Description: "a table, JSON lines or a Go template on flowtap's standard output",
			New: func() sdk.Sink { return stdout.New() }, Config: func() any { return new(stdout.Config) }, Sample: stdout.Sample,
		},
		{
			Name: "file", Description: "JSON lines appended to a file, rotated by size and age",
			New: func() sdk.Sink { return file.New() }, Config: func() any { return new(file.Config) }, Sample: file.Sample,
		},
		{
			Name: "webhook", Description: "batches of events POSTed as JSON to an HTTP(S) endpoint",
			New: func() sdk.Sink { return webhook.New() }, Config: func() any { return new(webhook.Config) }, Sample: webhook.Sample,
		},
		{
			Name: "nats", Description: "one JSON message per event to NATS JetStream or core NATS",
			New: func() sdk.Sink { return nats.New() }, Config: func() any { return new(nats.Config) }, Sample: nats.Sample,
		},
	}
}

// Lookup returns the built-in sink called name.
func Lookup(name string) (Builtin, bool) {
	for _, b := range Builtins() {
		if b.Name == name {
			return b, true
		}
	}
	return Builtin{}, false
}

// Names lists the built-in sinks' names, in table order.
func Names() []string {
	bs := Builtins()
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.Name
	}
	return out
}

// Serve serves the built-in sink called name to the flowtap host: the
// whole main function of its plugin binary. An unknown name is a
// programming error of the binary; it exits with status 2.
func Serve(name string) {
	b, ok := Lookup(name)
	if !ok {
		fmt.Fprintf(os.Stderr, "flowtap-sink-%s: no built-in sink %q (the built-in sinks are %v)\n", name, name, Names())
		os.Exit(2)
	}
	sdk.Serve(b.New())
}
