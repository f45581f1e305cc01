// SPDX-License-Identifier: Apache-2.0

package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/flowtap/flowtap/configs"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/plugins/host"
	"github.com/flowtap/flowtap/plugins/sdk"
	"github.com/flowtap/flowtap/sinks"
)

// sinkCheckTimeout bounds starting one plugin, configuring it and closing
// it during validation.
const sinkCheckTimeout = 20 * time.Second

// CheckOptions say how CheckSinks judges the sinks' configs.
type CheckOptions struct {
	// Catalogue is the event catalogue: the stdout sink's template is
	// executed on every event its pipeline selects. Nil: events.Builtin.
	Catalogue *events.Catalogue
	// StartPlugins starts every sink's plugin to have its Configure judge
	// its config (as a run would, without side effects: sdk.ValidateOnly),
	// under the same loss of privilege as a run (run_as, no
	// capabilities). Without it no plugin starts: a built-in sink's config
	// is checked in flowtap's own process (sinks.Builtin.Check), any other
	// plugin's is not checked.
	StartPlugins bool
	// BeforeRun says that a run follows the check at once and starts the
	// plugins itself, before any kernel program loads: a built-in sink
	// whose in-process check is complete (sinks.Builtin.CheckComplete)
	// is then not started twice. A binary that cannot start still fails
	// the run before anything is attached; 'flowtap config validate'
	// leaves BeforeRun false and starts every plugin.
	BeforeRun bool
	// SocketDir is host.Config.SocketDir for the plugins started.
	SocketDir string
	// Logger receives the started plugins' log lines. Nil: none.
	Logger hclog.Logger
}

// CheckSinks checks every sink of cfg (see CheckOptions), collecting every
// problem: a plugin that cannot be found or started is a problem of its
// sink's "plugin" key; a config it rejects is one problem per key it
// names. Pipelines whose selection has problems (cfg.Check) are judged
// without their template samples.
func CheckSinks(ctx context.Context, cfg *configs.Config, opts CheckOptions) configs.Problems {
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	cat := opts.Catalogue
	if cat == nil {
		var err error
		if cat, err = events.Builtin(); err != nil {
			return configs.Problems{{File: cfg.Source, Message: err.Error()}}
		}
	}
	var ps configs.Problems
	for i, p := range cfg.Pipelines {
		for j, s := range p.Sinks {
			if strings.TrimSpace(s.Plugin) == "" {
				continue // Validate reported it
			}
			key := fmt.Sprintf("pipelines[%d].sinks[%d]", i, j)
			add := func(k, msg string) {
				ps = append(ps, configs.Problem{File: cfg.Source, Pipeline: p.Name, Key: k, Message: msg})
			}
			var err error
			b, builtin := sinks.Lookup(s.Plugin)
			if builtin {
				err = checkBuiltin(b, s.Config, samples(cat, p.Events))
			}
			runsAs := ""
			switch {
			case err != nil || !opts.StartPlugins:
			case opts.BeforeRun && builtin && b.CheckComplete:
				// The run starts it in a moment: what would keep it from
				// starting is checked now.
				if _, err = runAs(s); err == nil {
					_, err = host.Verify(s.Plugin, s.SHA256)
				}
			default:
				err = checkSink(ctx, s, fmt.Sprintf("pipeline %q sink %d (%s)", p.Name, j, s.Plugin), opts.SocketDir, log)
				if id, _ := runAs(s); id != nil && id.UID != uint32(os.Geteuid()) {
					// A path it cannot write is often why: say whose.
					runsAs = fmt.Sprintf(" (the plugin runs as %s: see run_as)", id)
				}
			}
			if err == nil {
				continue
			}
			var many host.ConfigErrors
			var one host.ConfigError
			var sdkMany sdk.ConfigErrors
			var sdkOne sdk.ConfigError
			switch {
			case errors.As(err, &many):
				for _, e := range many {
					add(configKey(key, e.Key), fmt.Sprintf("rejected by the %s plugin: %s%s", s.Plugin, e.Message, runsAs))
				}
			case errors.As(err, &one):
				add(configKey(key, one.Key), fmt.Sprintf("rejected by the %s plugin: %s%s", s.Plugin, one.Message, runsAs))
			case errors.As(err, &sdkMany):
				for _, e := range sdkMany {
					add(configKey(key, e.Key), fmt.Sprintf("rejected by the %s sink: %s", s.Plugin, e.Message))
				}
			case errors.As(err, &sdkOne):
				add(configKey(key, sdkOne.Key), fmt.Sprintf("rejected by the %s sink: %s", s.Plugin, sdkOne.Message))
			default:
				add(key+".plugin", err.Error())
			}
		}
	}
	return ps
}

func configKey(sink, key string) string {
	if key == "" {
		return sink + ".config"
	}
	return sink + ".config." + key
}

// checkBuiltin checks a built-in sink's config in this process.
func checkBuiltin(b sinks.Builtin, config map[string]any, samples []sdk.Event) error {
	if config == nil {
		config = map[string]any{}
	}
	raw, err := json.Marshal(config)
	if err != nil {
		return fmt.Errorf("encode the sink config as JSON: %w", err)
	}
	return b.Check(raw, samples)
}

// samples returns one event with zero values of each event the selection
// exprs selects (none if it does not resolve: cfg.Check says why).
func samples(cat *events.Catalogue, exprs []string) []sdk.Event {
	ids, err := cat.Select(exprs...)
	if err != nil {
		return nil
	}
	out := make([]sdk.Event, 0, len(ids))
	for _, id := range ids {
		d, ok := cat.ByID(id)
		if !ok {
			continue
		}
		ev := sdk.Event{ID: sdk.ID(id), Name: d.Name}
		for _, f := range d.Fields {
			ev.Fields = append(ev.Fields, sdk.Field{Name: f.Name, Value: zeroValue(f.Type)})
		}
		out = append(out, ev)
	}
	return out
}

// zeroValue is the zero value of a catalogue field type.
func zeroValue(typ string) sdk.Value {
	switch {
	case typ == "[]string":
		return sdk.Value{Kind: sdk.KindStrings, Strings: []string{}}
	case typ == "bool":
		return sdk.Value{Kind: sdk.KindBool}
	case strings.HasPrefix(typ, "uint"):
		return sdk.Value{Kind: sdk.KindUint}
	case strings.HasPrefix(typ, "int"):
		return sdk.Value{Kind: sdk.KindInt}
	}
	return sdk.Value{Kind: sdk.KindString}
}

// checkSink starts one plugin, configures it and closes it.
func checkSink(ctx context.Context, s configs.SinkConfig, label, socketDir string, log hclog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, sinkCheckTimeout)
	defer cancel()
	runAs, err := runAs(s)
	if err != nil {
		return err
	}
	client, err := host.Start(ctx, host.Config{
		Name: label, Plugin: s.Plugin, SHA256: s.SHA256, Logger: log.Named("validate"),
		Stdout: io.Discard, Stderr: io.Discard, ValidateOnly: true, RunAs: runAs, SocketDir: socketDir,
	})
	if err != nil {
		return err
	}
	cerr := client.Configure(ctx, s.Config)
	if err := client.Close(ctx); err != nil && cerr == nil {
		log.Debug("close plugin after validation", "sink", label, "error", err)
	}
	return cerr
}

// runAs is who a sink's plugin runs as: its run_as, or the default.
func runAs(s configs.SinkConfig) (*host.Identity, error) {
	if s.RunAs == "" {
		return host.DefaultIdentity(), nil
	}
	id, err := host.LookupIdentity(s.RunAs)
	if err != nil {
		return nil, fmt.Errorf("run_as: %w", err)
	}
	return id, nil
}
