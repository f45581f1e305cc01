// SPDX-License-Identifier: Apache-2.0

// Package configs loads and validates flowtap's pipeline configuration and
// holds the embedded default pipeline.
package configs

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	"github.com/flowtap/flowtap/bpf/limits"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/naming"
	"github.com/flowtap/flowtap/plugins/host"
	"github.com/flowtap/flowtap/plugins/supervise"
	"github.com/flowtap/flowtap/sinks"
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
	Log Log `mapstructure:"log"`
	// Metrics configures the Prometheus metrics and health endpoints.
	Metrics   Metrics    `mapstructure:"metrics"`
	Pipelines []Pipeline `mapstructure:"pipelines"`

	// loadProblems are what loading found before Validate: keys of the
	// wrong shape (left out of the config) and bad environment
	// variables. Check reports them with its own.
	loadProblems Problems
	// envKeys maps config keys an environment variable set to the
	// variable, so that a bad value is reported as the variable's.
	envKeys map[string]string
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
	// CommunityIDSeed is the seed of the flow events' community_id
	// (Community ID v1). Zeek and Suricata default to 0; tools that join
	// on it must use the same seed.
	CommunityIDSeed uint16 `mapstructure:"community_id_seed"`
	// Workload configures the container, pod and process identity that
	// events carry.
	Workload Workload `mapstructure:"workload"`
}

// Workload configures workload identity: which container runtimes are
// asked for names, images and pods, and what is reported.
type Workload struct {
	// Enabled turns workload identity off when false: no cgroup or /proc
	// lookups, no runtime clients. Nil (unset) means on.
	Enabled *bool `mapstructure:"enabled"`
	// ContainerdSocket, DockerSocket and PodmanSocket are the runtimes'
	// API sockets: "" means the runtime's default path, "none" not to ask
	// that runtime. A runtime that does not answer is skipped (container
	// ids are still reported).
	ContainerdSocket string `mapstructure:"containerd_socket"`
	DockerSocket     string `mapstructure:"docker_socket"`
	PodmanSocket     string `mapstructure:"podman_socket"`
	// PodLabels are the pod labels reported in pod_labels (exact keys,
	// e.g. app or app.kubernetes.io/name); empty means none.
	PodLabels []string `mapstructure:"pod_labels"`
	// CacheSize bounds the cgroups, containers and processes remembered;
	// 0 means the default.
	CacheSize int `mapstructure:"cache_size"`
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
	// StatsInterval is how often one INFO line logs the counters that
	// moved since the last one. Nil (unset) means DefaultStatsInterval;
	// 0 turns the line off.
	StatsInterval *time.Duration `mapstructure:"stats_interval"`
}

// DefaultStatsInterval is how often the counters are logged when
// log.stats_interval is not set.
const DefaultStatsInterval = 60 * time.Second

// StatsEvery is how often the counters are logged: log.stats_interval,
// DefaultStatsInterval when it is unset; 0 means never.
func (l Log) StatsEvery() time.Duration {
	if l.StatsInterval == nil {
		return DefaultStatsInterval
	}
	return *l.StatsInterval
}

// Metrics configures the HTTP endpoints for Prometheus and health checks
// (package metrics): /metrics, /healthz and /readyz.
type Metrics struct {
	// Listen is the address to serve them on, HOST:PORT (e.g.
	// 127.0.0.1:9464, or :9464 for every address); "" (the default)
	// serves nothing.
	Listen string `mapstructure:"listen"`
}

// Pipeline selects events and delivers them to one or more sinks.
type Pipeline struct {
	Name string `mapstructure:"name"`
	// Events are selection expressions: event names, set names, globs,
	// "-name" to exclude (see events.ParseSelection).
	Events []string `mapstructure:"events"`
	// Filter keeps only the events it matches; "" keeps all.
	Filter string       `mapstructure:"filter"`
	Sinks  []SinkConfig `mapstructure:"sinks"`
}

// SinkConfig names a sink plugin and the configuration handed to its Configure.
type SinkConfig struct {
	// Plugin is a built-in sink's name (sinks.Names: stdout, file,
	// webhook, nats) or a path to a plugin binary.
	Plugin string         `mapstructure:"plugin"`
	Config map[string]any `mapstructure:"config"`
	// SHA256, when set, pins the plugin binary: its SHA-256 (hex) must
	// match before it is launched.
	SHA256 string `mapstructure:"sha256"`
	// RunAs is the user the plugin runs as: "user", "user:group",
	// "uid:gid". Empty: when flowtap runs as root, the first of
	// host.DefaultUsers that exists ("flowtap", else "nobody"); otherwise
	// flowtap's own user. The plugin holds no capability either way.
	RunAs string `mapstructure:"run_as"`
	// Queue bounds the events waiting for this sink.
	Queue Queue `mapstructure:"queue"`
	// Restart governs how a crashed or hung plugin is restarted.
	Restart Restart `mapstructure:"restart"`
	// OnFailure is what happens when the plugin keeps failing after its
	// restarts: "stop" (flowtap stops with an error; the default) or
	// "disable" (this sink is dropped, the others go on).
	OnFailure supervise.OnFailure `mapstructure:"on_failure"`
}

// Queue is a sink's bounded queue.
type Queue struct {
	// Size is the most events waiting; 0 means the default.
	Size int `mapstructure:"size"`
	// Policy is what a full queue does: "block" (the default),
	// "drop_newest" or "drop_oldest" (supervise.Policies).
	Policy supervise.Policy `mapstructure:"policy"`
	// BatchSize is the most events handed to the sink in one Write; 0
	// means the default (supervise.DefaultBatchSize, 2048). A sink whose
	// destination takes little at a time (a small disk) wants less.
	BatchSize int `mapstructure:"batch_size"`
	// DrainTimeout bounds how long flowtap waits at shutdown for the sink
	// to deliver what it holds; what is left then is lost, logged as
	// such, and makes flowtap's exit status non-zero. 0 means the default
	// (supervise.DefaultDrainTimeout).
	DrainTimeout time.Duration `mapstructure:"drain_timeout"`
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

// Default returns the embedded default configuration (the flows set to
// the stdout sink), with FLOWTAP_* environment overrides applied.
func Default() (*Config, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(defaultYAML)); err != nil {
		return nil, fmt.Errorf("read embedded default config: %w", err)
	}
	return decode(v, "embedded default")
}

// Load reads a configuration file through viper. The format follows the
// extension: .yaml/.yml, .toml or .json. FLOWTAP_* environment variables
// override the file's capture and log settings (see ApplyEnv). Every
// problem the file has (unknown keys, values of the wrong type or out of
// range) is reported at once, as Problems.
func Load(path string) (*Config, error) {
	ext := strings.TrimPrefix(filepath.Ext(path), ".")
	switch ext {
	case "yaml", "yml", "toml", "json":
	default:
		return nil, Problems{{File: path, Message: fmt.Sprintf("unsupported extension %q: use .yaml, .yml, .toml or .json", filepath.Ext(path))}}
	}
	if err := checkConfigFile(path); err != nil {
		return nil, err
	}
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, readError(path, err)
	}
	v := viper.New()
	v.SetConfigType(ext)
	if err := v.ReadConfig(bytes.NewReader(src)); err != nil {
		var parseErr viper.ConfigParseError
		if errors.As(err, &parseErr) && (ext == "yaml" || ext == "yml") {
			if p, ok := yamlProblem(path, src); ok {
				return nil, Problems{p}
			}
		}
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	cfg, err := decode(v, path)
	if cfg != nil {
		cfg.resolvePlugins(path)
	}
	return cfg, err
}

// readError is the error of a config file that cannot be read: the path
// once (an *fs.PathError's own text would name it a second time).
func readError(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("read config %s: %w", path, err)
}

// checkConfigFile refuses, when flowtap runs as root, a config file that
// others may write: whoever can change it chooses the plugins flowtap
// runs and where its events go.
func checkConfigFile(path string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return readError(path, err)
	}
	if fi.Mode().Perm()&0o002 != 0 {
		return Problems{{File: path, Message: fmt.Sprintf("writable by others (mode %04o) and flowtap runs as root: refusing to use it, since anyone could choose the plugins flowtap runs (fix: chmod o-w %s)", fi.Mode().Perm(), path)}}
	}
	return nil
}

// resolvePlugins makes every relative plugin path (one with a "/", such
// as ./sinks/x) relative to the directory of the config file at path,
// never to flowtap's working directory.
func (c *Config) resolvePlugins(path string) {
	dir := filepath.Dir(path)
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	for i := range c.Pipelines {
		for j := range c.Pipelines[i].Sinks {
			s := &c.Pipelines[i].Sinks[j]
			if strings.Contains(s.Plugin, "/") && !filepath.IsAbs(s.Plugin) {
				s.Plugin = filepath.Join(dir, s.Plugin)
			}
		}
	}
}

// decode checks the raw settings' shape, unmarshals what fits, applies
// the environment and validates the values. On problems it returns them
// (Problems) with the config as far as it decoded: Check reports them
// again, with those of the catalogue's checks.
func decode(v *viper.Viper, source string) (*Config, error) {
	raw := v.AllSettings()
	shape := checkShape(source, raw)
	cfg := &Config{Source: source}
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(), mapstructure.StringToSliceHookFunc(",")),
		ErrorUnused:      true,
		WeaklyTypedInput: false, // "events: 3" is a mistake, not ["3"]
		Result:           cfg,
	})
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", source, err)
	}
	if err := dec.Decode(raw); err != nil {
		if len(shape) > 0 {
			return nil, shape
		}
		// checkShape should have caught whatever fails here.
		return nil, fmt.Errorf("config %s: %w", source, err)
	}
	cfg.loadProblems = append(shape, cfg.ApplyEnv(os.Environ())...)
	cfg.envKeys = map[string]string{}
	for name, key := range EnvKeys() {
		if _, ok := os.LookupEnv(name); ok {
			cfg.envKeys[key] = name
		}
	}
	return cfg, withoutEchoes(cfg.validateAll(), len(cfg.loadProblems)).Err()
}

// validateAll returns the problems loading found and those of Validate,
// a bad value an environment variable set reported as the variable's.
func (c *Config) validateAll() Problems {
	ps := append(Problems(nil), c.loadProblems...)
	var more Problems
	if err := c.Validate(); errors.As(err, &more) {
		for i := range more {
			if name := c.envKeys[more[i].Key]; name != "" && more[i].Pipeline == "" {
				more[i].File, more[i].Key = EnvSource, name
			}
		}
		ps = append(ps, more...)
	}
	return ps
}

// Valid values of the enumerated keys.
var (
	logLevels  = []string{"trace", "debug", "info", "warn", "error"}
	logFormats = []string{"text", "json"}
)

// Validate checks every value that can be checked without the event
// catalogue or the plugins: sizes and durations in range, known log levels
// and formats, queue and failure policies, SHA-256 pins, unique pipeline
// names, pipelines with events and sinks. It returns every problem at once,
// as Problems. Check adds the checks that need the catalogue.
func (c *Config) Validate() error {
	var ps Problems
	f := c.Source
	cp := &c.Capture
	if cp.Cgroup != "" && !filepath.IsAbs(cp.Cgroup) {
		ps.add(f, "", "capture.cgroup", "%q is not an absolute path: name a cgroup v2 directory such as /sys/fs/cgroup/myapp, or leave it out for the whole host", cp.Cgroup)
	}
	if cp.RingBufferSize != 0 {
		if err := limits.ValidateRingBufferSize(cp.RingBufferSize); err != nil {
			ps.add(f, "", "capture.ring_buffer_size", "%v (or 0 for the default, %d)", err, limits.DefaultRingBufferSize)
		}
	}
	nonNegative := func(key string, n int64, what string) {
		if n < 0 {
			ps.add(f, "", key, "%d is negative: give %s, or 0 for the default", n, what)
		}
	}
	nonNegative("capture.flow_table_size", int64(cp.FlowTableSize), "the most connections tracked at once")
	nonNegative("capture.flow_idle_timeout", int64(cp.FlowIdleTimeout), "a duration such as 5m")
	nonNegative("capture.syn_timeout", int64(cp.SYNTimeout), "a duration such as 5s")
	nonNegative("capture.dns.cache_size", int64(cp.DNS.CacheSize), "the most names cached")
	nonNegative("capture.workload.cache_size", int64(cp.Workload.CacheSize), "the most cgroups, containers and processes remembered")
	for _, k := range []struct{ key, path string }{
		{"capture.workload.containerd_socket", cp.Workload.ContainerdSocket},
		{"capture.workload.docker_socket", cp.Workload.DockerSocket},
		{"capture.workload.podman_socket", cp.Workload.PodmanSocket},
	} {
		if k.path != "" && k.path != "none" && !filepath.IsAbs(k.path) {
			ps.add(f, "", k.key, "%q is not an absolute path: name the runtime's API socket, \"none\" not to ask it, or leave it out for the default", k.path)
		}
	}
	oneOf := func(pipeline, key, val string, valid []string) {
		if val != "" && !slices.Contains(valid, val) {
			hint := ""
			if s := events.Closest(val, valid); s != "" {
				hint = fmt.Sprintf(": did you mean %q?", s)
			}
			ps.add(f, pipeline, key, "%q is not valid%s (valid: %s)", val, hint, strings.Join(valid, ", "))
		}
	}
	oneOf("", "log.level", c.Log.Level, logLevels)
	oneOf("", "log.format", c.Log.Format, logFormats)
	if d := c.Log.StatsInterval; d != nil && *d < 0 {
		ps.add(f, "", "log.stats_interval", "%v is negative: give a duration such as 1m, or 0 to log no counters", *d)
	}
	if c.Metrics.Listen != "" {
		if err := CheckListenAddr(c.Metrics.Listen); err != nil {
			ps.add(f, "", "metrics.listen", "%v", err)
		}
	}

	if len(c.Pipelines) == 0 {
		ps.add(f, "", "pipelines", "no pipelines: add at least one, e.g. {name: default, events: [flows], sinks: [{plugin: stdout}]}")
	}
	seen := map[string]bool{}
	for i, p := range c.Pipelines {
		name := p.Name
		key := func(k string) string { return fmt.Sprintf("pipelines[%d].%s", i, k) }
		switch {
		case name == "":
			name = fmt.Sprintf("#%d", i)
			ps.add(f, name, key("name"), "empty: give every pipeline a name (%s)", naming.Rule)
		case !naming.Valid(name):
			ps.add(f, name, key("name"), "use %s only", naming.Rule)
		case seen[name]:
			ps.add(f, name, key("name"), "used by an earlier pipeline: names must be unique")
		}
		seen[p.Name] = true
		if len(p.Events) == 0 {
			ps.add(f, name, key("events"), "empty: name events or sets, e.g. [flows] (see 'flowtap list')")
		}
		if len(p.Sinks) == 0 {
			ps.add(f, name, key("sinks"), "empty: add a sink, e.g. {plugin: stdout}")
		}
		for j, s := range p.Sinks {
			sk := func(k string) string { return fmt.Sprintf("pipelines[%d].sinks[%d].%s", i, j, k) }
			if strings.TrimSpace(s.Plugin) == "" {
				ps.add(f, name, sk("plugin"), "empty: name a built-in sink (%s) or the path to a plugin binary", strings.Join(sinks.Names(), ", "))
			}
			if s.SHA256 != "" && !isSHA256(s.SHA256) {
				ps.add(f, name, sk("sha256"), "%q is not a SHA-256: write the 64 hex digits sha256sum prints for the plugin binary", s.SHA256)
			}
			if s.Queue.Size < 0 {
				ps.add(f, name, sk("queue.size"), "%d is negative: give the most events waiting, or 0 for the default", s.Queue.Size)
			}
			oneOf(name, sk("queue.policy"), string(s.Queue.Policy), names(supervise.Policies()))
			if s.Queue.BatchSize < 0 {
				ps.add(f, name, sk("queue.batch_size"), "%d is negative: give the most events per write, or 0 for the default", s.Queue.BatchSize)
			}
			if s.Queue.DrainTimeout < 0 {
				ps.add(f, name, sk("queue.drain_timeout"), "%v is negative: give how long shutdown waits for the sink, e.g. 60s, or 0 for the default", s.Queue.DrainTimeout)
			}
			if s.RunAs != "" {
				if _, err := host.LookupIdentity(s.RunAs); err != nil {
					ps.add(f, name, sk("run_as"), "%v", err)
				}
			}
			if s.Restart.MaxAttempts < 0 {
				ps.add(f, name, sk("restart.max_attempts"), "%d is negative: give how many restarts to try, or 0 for the default", s.Restart.MaxAttempts)
			}
			if s.Restart.InitialBackoff < 0 || s.Restart.MaxBackoff < 0 {
				ps.add(f, name, sk("restart"), "backoffs must not be negative")
			} else if s.Restart.MaxBackoff > 0 && s.Restart.InitialBackoff > s.Restart.MaxBackoff {
				ps.add(f, name, sk("restart.initial_backoff"), "%v is longer than max_backoff %v", s.Restart.InitialBackoff, s.Restart.MaxBackoff)
			}
			oneOf(name, sk("on_failure"), string(s.OnFailure), names(supervise.OnFailures()))
		}
	}
	return ps.Err()
}

// CheckListenAddr checks a HOST:PORT address to listen on, such as
// metrics.listen and --metrics-addr take: a port is required (0 picks a
// free one), a host is optional (":9464" listens on every address).
func CheckListenAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not HOST:PORT: write e.g. 127.0.0.1:9464, or :9464 for every address", addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: the port %q is not a number from 0 to 65535 (0: any free port, logged)", addr, port)
	}
	if strings.ContainsAny(host, " /") {
		return fmt.Errorf("%q: %q is not a host name or IP address", addr, host)
	}
	return nil
}

// names are the values of a string type, as strings.
func names[T ~string](values []T) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = string(v)
	}
	return out
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F') {
			return false
		}
	}
	return true
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
