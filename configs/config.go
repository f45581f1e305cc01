// Package configs loads and validates flowtap's pipeline configuration and
// holds the embedded default pipeline.
package configs

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
)

//go:embed default.yaml
var defaultYAML []byte

// Config is a whole flowtap configuration.
type Config struct {
	// Source names where the config came from (a file path, or
	// "embedded default"); error messages use it.
	Source string `mapstructure:"-"`
	// Capture configures the kernel capture and the derivation shared by
	// every pipeline.
	Capture Capture `mapstructure:"capture"`
	// Log configures flowtap's own log.
	Log       Log        `mapstructure:"log"`
	Pipelines []Pipeline `mapstructure:"pipelines"`
}

// Capture configures the one kernel capture and derivation that all
// pipelines share. Zero values mean the built-in defaults.
type Capture struct {
	// Cgroup is the cgroup v2 directory the programs attach to; "" means
	// the cgroup v2 mount found in /proc/mounts.
	Cgroup string `mapstructure:"cgroup"`
	// RingBufferSize is the BPF ring buffer size in bytes.
	RingBufferSize int `mapstructure:"ring_buffer_size"`
	// FlowTableSize bounds the connections tracked at once.
	FlowTableSize int `mapstructure:"flow_table_size"`
	// FlowIdleTimeout evicts a connection nothing was heard of for this long.
	FlowIdleTimeout time.Duration `mapstructure:"flow_idle_timeout"`
	// SYNTimeout reports an attempt without SYN-ACK as failed after this long.
	SYNTimeout time.Duration `mapstructure:"syn_timeout"`
	// DNS configures the DNS cache that fills src_dns and dst_dns.
	DNS DNS `mapstructure:"dns"`
}

// DNS configures DNS capture and the name cache.
type DNS struct {
	// Enabled turns DNS capture and the cache off when false. Nil (unset)
	// means on whenever a selected event has a DNS field.
	Enabled *bool `mapstructure:"enabled"`
	// CacheSize bounds the cache's entries; 0 means the default.
	CacheSize int `mapstructure:"cache_size"`
}

// Log configures flowtap's own log (hclog).
type Log struct {
	// Level is trace, debug, info, warn or error; "" means info.
	Level string `mapstructure:"level"`
	// Format is text or json; "" means text.
	Format string `mapstructure:"format"`
}

// Pipeline selects events and delivers them to one or more sinks.
type Pipeline struct {
	Name string `mapstructure:"name"`
	// Events are selection expressions: event names, set names, globs,
	// "-name" to exclude (see events.ParseSelection).
	Events []string `mapstructure:"events"`
	// Filter keeps only the events it matches; "" keeps all.
	Filter string `mapstructure:"filter"`
	Sinks  []Sink `mapstructure:"sinks"`
}

// Sink names a sink plugin and the configuration handed to its Configure.
type Sink struct {
	// Plugin is a built-in sink's name (e.g. "stdout") or a path to a
	// plugin binary.
	Plugin string         `mapstructure:"plugin"`
	Config map[string]any `mapstructure:"config"`
	// SHA256, when set, pins the plugin binary: its SHA-256 (hex) must
	// match before it is launched.
	SHA256 string `mapstructure:"sha256"`
	// Queue bounds the events waiting for this sink.
	Queue Queue `mapstructure:"queue"`
	// Restart governs how a crashed or hung plugin is restarted.
	Restart Restart `mapstructure:"restart"`
	// OnFailure is what happens when the plugin keeps failing after its
	// restarts: "stop" (flowtap stops with an error; the default) or
	// "disable" (this sink is dropped, the others go on).
	OnFailure string `mapstructure:"on_failure"`
}

// Queue is a sink's bounded queue.
type Queue struct {
	// Size is the most events waiting; 0 means the default.
	Size int `mapstructure:"size"`
	// Policy is what a full queue does: "block" (the default),
	// "drop_newest" or "drop_oldest".
	Policy string `mapstructure:"policy"`
}

// Restart is a sink plugin's restart policy.
type Restart struct {
	// MaxAttempts is how many restarts in a row are tried before the
	// sink counts as failed; 0 means the default.
	MaxAttempts int `mapstructure:"max_attempts"`
	// InitialBackoff and MaxBackoff bound the exponential wait between
	// restarts; 0 means the defaults.
	InitialBackoff time.Duration `mapstructure:"initial_backoff"`
	MaxBackoff     time.Duration `mapstructure:"max_backoff"`
}

// Default returns the embedded default configuration: the flows set to the
// stdout sink.
func Default() (*Config, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(defaultYAML)); err != nil {
		return nil, fmt.Errorf("read embedded default config: %w", err)
	}
	return decode(v, "embedded default")
}

// Load reads a configuration file through viper. The format follows the
// extension: .yaml/.yml, .toml or .json.
func Load(path string) (*Config, error) {
	ext := strings.TrimPrefix(filepath.Ext(path), ".")
	switch ext {
	case "yaml", "yml", "toml", "json":
	default:
		return nil, fmt.Errorf("config %s: unsupported extension %q: use .yaml, .yml, .toml or .json", path, filepath.Ext(path))
	}
	v := viper.New()
	v.SetConfigFile(path)
	if err := v.ReadInConfig(); err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	return decode(v, path)
}

// decode unmarshals strictly: an unknown key is an error, never ignored.
func decode(v *viper.Viper, source string) (*Config, error) {
	cfg := &Config{Source: source}
	if err := v.UnmarshalExact(cfg, func(dc *mapstructure.DecoderConfig) {
		dc.WeaklyTypedInput = false // "events: 3" is a mistake, not ["3"]
	}); err != nil {
		return nil, fmt.Errorf("config %s: %w (valid top-level keys: capture, log, pipelines; pipeline keys: name, events, filter, sinks; sink keys: plugin, config, sha256, queue, restart, on_failure)", source, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Validate checks what can be checked without the event catalogue or the
// plugins: every pipeline has a unique name, some events and some sinks,
// and every sink names a plugin. All problems are reported at once.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Pipelines) == 0 {
		errs = append(errs, errors.New("no pipelines: add at least one under 'pipelines'"))
	}
	seen := map[string]bool{}
	for i, p := range c.Pipelines {
		where := fmt.Sprintf("pipelines[%d]", i)
		if p.Name == "" {
			errs = append(errs, fmt.Errorf("%s: 'name' is empty: give every pipeline a name", where))
		} else {
			where = fmt.Sprintf("pipeline %q", p.Name)
			if seen[p.Name] {
				errs = append(errs, fmt.Errorf("%s: name used twice: pipeline names must be unique", where))
			}
			seen[p.Name] = true
		}
		if len(p.Events) == 0 {
			errs = append(errs, fmt.Errorf("%s: 'events' is empty: name events or sets, e.g. [flows]", where))
		}
		if len(p.Sinks) == 0 {
			errs = append(errs, fmt.Errorf("%s: 'sinks' is empty: add a sink, e.g. {plugin: stdout}", where))
		}
		for j, s := range p.Sinks {
			if strings.TrimSpace(s.Plugin) == "" {
				errs = append(errs, fmt.Errorf("%s: sinks[%d]: 'plugin' is empty: name a built-in sink (stdout) or a plugin binary path", where, j))
			}
			errs = append(errs, validateSink(fmt.Sprintf("%s: sinks[%d]", where, j), s)...)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("config %s: %w", c.Source, errors.Join(errs...))
	}
	return nil
}

// OverrideEvents replaces every pipeline's selection, as --events does.
func (c *Config) OverrideEvents(exprs []string) {
	for i := range c.Pipelines {
		c.Pipelines[i].Events = append([]string(nil), exprs...)
	}
}

// SetStdoutFormat sets the "format" of every stdout sink, as --output does.
// It reports whether any stdout sink exists to take it.
func (c *Config) SetStdoutFormat(format string) bool {
	found := false
	for i := range c.Pipelines {
		for j := range c.Pipelines[i].Sinks {
			s := &c.Pipelines[i].Sinks[j]
			if s.Plugin != "stdout" {
				continue
			}
			cfg := make(map[string]any, len(s.Config)+1)
			for k, v := range s.Config {
				cfg[k] = v
			}
			cfg["format"] = format
			s.Config = cfg
			found = true
		}
	}
	return found
}
