package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/flowtap/flowtap/configs"
	"github.com/flowtap/flowtap/plugins/host"
)

// sinkCheckTimeout bounds starting one plugin, configuring it and closing
// it during validation.
const sinkCheckTimeout = 20 * time.Second

// CheckSinks starts the plugin of every sink of cfg, hands it its config
// (Configure), and closes it, collecting what the plugins reject. A
// plugin that cannot be found or started is a problem of its sink's
// "plugin" key; a config it rejects is one problem per key it names.
func CheckSinks(ctx context.Context, cfg *configs.Config, log hclog.Logger) configs.Problems {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	var ps configs.Problems
	for i, p := range cfg.Pipelines {
		for j, s := range p.Sinks {
			if s.Plugin == "" {
				continue // Validate reported it
			}
			key := fmt.Sprintf("pipelines[%d].sinks[%d]", i, j)
			add := func(k, msg string) {
				ps = append(ps, configs.Problem{File: cfg.Source, Pipeline: p.Name, Key: k, Message: msg})
			}
			err := checkSink(ctx, s, fmt.Sprintf("pipeline %q sink %d (%s)", p.Name, j, s.Plugin), log)
			if err == nil {
				continue
			}
			var many host.ConfigErrors
			var one host.ConfigError
			switch {
			case errors.As(err, &many):
				for _, e := range many {
					add(configKey(key, e.Key), fmt.Sprintf("rejected by the %s plugin: %s", s.Plugin, e.Message))
				}
			case errors.As(err, &one):
				add(configKey(key, one.Key), fmt.Sprintf("rejected by the %s plugin: %s", s.Plugin, one.Message))
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

// checkSink starts one plugin, configures it and closes it.
func checkSink(ctx context.Context, s configs.SinkConfig, label string, log hclog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, sinkCheckTimeout)
	defer cancel()
	client, err := host.Start(ctx, host.Config{
		Name: label, Plugin: s.Plugin, SHA256: s.SHA256, Logger: log.Named("validate"),
		Stdout: io.Discard, Stderr: io.Discard, ValidateOnly: true,
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
