// SPDX-License-Identifier: Apache-2.0

// Package sinks is the table of flowtap's built-in sinks: each one's name,
// constructor, config struct and sample. The table drives the plugin
// binaries (cmd/flowtap-sink-<name> is Serve("<name>")), the names the
// config loader suggests, and `flowtap list --sinks`. The sinks themselves
// are the packages below: stdout, file, webhook and nats.
package sinks

import (
	"fmt"
	"net/url"
	"os"
	"strings"

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
	// Check reports every problem of a config (JSON) without side
	// effects (no file created, no connection), in flowtap's own process:
	// flowtap config validate checks built-in sinks this way without
	// starting their plugins. samples are the events the sink's pipeline
	// selects, one of each with zero values (the stdout sink executes its
	// template on them).
	Check func(config []byte, samples []sdk.Event) error
	// CheckComplete says that Check judges everything the plugin's
	// Configure does: the plugin reads no file and opens nothing its
	// identity (run_as) could be refused. Before a run, flowtap then
	// does not start the plugin only to have it judge the config: the run
	// starts it moments later (pipeline.CheckOptions.BeforeRun).
	CheckComplete bool
}

// Keys lists the sink's configuration keys, from its config struct.
func (b Builtin) Keys() []sinkconf.Key { return sinkconf.Keys(b.Config()) }

// Builtins returns the table, in the order flowtap lists the sinks.
func Builtins() []Builtin {
	return []Builtin{
		{
			Name: "stdout", Description: "a table, JSON lines or a Go template on flowtap's standard output",
			New: func() sdk.Sink { return stdout.New() }, Config: func() any { return new(stdout.Config) }, Sample: stdout.Sample,
			Check: stdout.CheckConfig, CheckComplete: true,
		},
		{
			Name: "file", Description: "JSON lines appended to a file, rotated by size and age",
			New: func() sdk.Sink { return file.New() }, Config: func() any { return new(file.Config) }, Sample: file.Sample,
			Check: func(c []byte, _ []sdk.Event) error { return file.CheckConfig(c) },
		},
		{
			Name: "webhook", Description: "batches of events POSTed as JSON to an HTTP(S) endpoint",
			New: func() sdk.Sink { return webhook.New() }, Config: func() any { return new(webhook.Config) }, Sample: webhook.Sample,
			Check: func(c []byte, _ []sdk.Event) error { return webhook.CheckConfig(c) },
		},
		{
			Name: "nats", Description: "one JSON message per event to NATS JetStream or core NATS",
			New: func() sdk.Sink { return nats.New() }, Config: func() any { return new(nats.Config) }, Sample: nats.Sample,
			Check: func(c []byte, _ []sdk.Event) error { return nats.CheckConfig(c) },
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

// Redacted is config with every value that may be a secret replaced by
// "<redacted>", for showing it (flowtap explain, logs, errors). For a
// built-in sink, its config struct says which keys are secret (the
// sinkconf:"secret" tag); for any other plugin, keys whose name suggests
// a credential (password, token, secret, key, auth, creds, nkey,
// cookie). Everywhere, the password of a URL with user information
// ("https://user:pass@host") is redacted too. config itself is not
// changed.
func Redacted(plugin string, config map[string]any) map[string]any {
	secret := map[string]bool{}
	if b, ok := Lookup(plugin); ok {
		for _, k := range sinkconf.Secrets(b.Config()) {
			secret[k] = true
		}
	}
	return redactMap("", config, secret, !isBuiltin(plugin))
}

// RedactedValue is the text shown in place of a secret.
const RedactedValue = "<redacted>"

func isBuiltin(plugin string) bool {
	_, ok := Lookup(plugin)
	return ok
}

func redactMap(prefix string, m map[string]any, secret map[string]bool, guess bool) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		key := prefix + k
		if secret[key] || guess && secretName(k) {
			out[k] = RedactedValue
			continue
		}
		out[k] = redactValue(key, v, secret, guess)
	}
	return out
}

func redactValue(key string, v any, secret map[string]bool, guess bool) any {
	switch x := v.(type) {
	case map[string]any:
		return redactMap(key+".", x, secret, guess)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = redactValue(key, e, secret, guess)
		}
		return out
	case string:
		return redactURL(x)
	}
	return v
}

// redactURL hides the password of a URL with user information.
func redactURL(s string) string {
	if !strings.Contains(s, "@") || !strings.Contains(s, "://") {
		return s
	}
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}

// secretName reports whether a key's name suggests it holds a credential.
func secretName(k string) bool {
	k = strings.ToLower(k)
	for _, w := range []string{"pass", "token", "secret", "auth", "cred", "nkey", "cookie", "private", "key"} {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}
