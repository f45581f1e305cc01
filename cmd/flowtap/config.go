// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/flowtap/flowtap/bpf"
	"github.com/flowtap/flowtap/configs"
	"github.com/flowtap/flowtap/derive"
	"github.com/flowtap/flowtap/derive/dnscache"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/pipeline"
	"github.com/flowtap/flowtap/plugins/host"
)

// overrides are the command-line flags that change a config. Precedence,
// highest first: a flag given on the command line, a FLOWTAP_* environment
// variable, the config file, the built-in default.
type overrides struct {
	configPath  string
	events      []string
	filters     []string
	output      string
	cgroup      string
	ringBuffer  int
	tableSize   int
	idleTimeout time.Duration
	synTimeout  time.Duration
	dns         bool
	dnsCache    int
	metricsAddr string
	statsEvery  time.Duration
}

// registerSelection adds the flags that pick a config and change its
// pipelines (run, explain, config validate).
func (o *overrides) registerSelection(f *pflag.FlagSet) {
	f.StringVarP(&o.configPath, "config", "c", "", "pipeline config file (YAML, TOML or JSON); default: the embedded default")
	f.StringArrayVarP(&o.events, "events", "e", nil, "events to select, replacing every pipeline's: names, sets, -name, globs (e.g. flows,-net_flow_tcp_end)")
	f.StringArrayVarP(&o.filters, "filter", "f", nil, "filter every pipeline also applies, e.g. 'dst_port=1-1023 and not src=127.0.0.0/8' (repeat to AND several; see filter/README.md)")
}

// registerOperation adds the flags of a running agent's operation: the
// metrics endpoint and the stats line (run).
func (o *overrides) registerOperation(f *pflag.FlagSet) {
	f.StringVar(&o.metricsAddr, "metrics-addr", "", "serve Prometheus metrics on /metrics, and /healthz and /readyz, at HOST:PORT, e.g. 127.0.0.1:9464 (config: metrics.listen; default: off)")
	f.DurationVar(&o.statsEvery, "stats-interval", configs.DefaultStatsInterval, "log one line with the counters that moved this often; 0 logs none (config: log.stats_interval)")
}

// registerCapture adds the flags that override capture settings (run).
func (o *overrides) registerCapture(f *pflag.FlagSet) {
	f.StringVar(&o.cgroup, "cgroup", "", "cgroup v2 directory to attach to (config: capture.cgroup; default: the cgroup v2 mount from /proc/mounts)")
	f.IntVar(&o.ringBuffer, "ring-buffer-size", 0, "BPF ring buffer size in bytes, a power-of-two multiple of the page size (config: capture.ring_buffer_size; default: 32 MiB)")
	o.registerDerivation(f)
}

// registerDerivation adds the flags that override what the kernel's base
// events go through, wherever they come from: output format, flow tracker,
// DNS (run, replay).
func (o *overrides) registerDerivation(f *pflag.FlagSet) {
	f.StringVarP(&o.output, "output", "o", "table", "format of the stdout sink: json or table")
	f.IntVar(&o.tableSize, "flow-table-size", derive.DefaultMaxFlows, "most connections tracked at once; the least recently active is evicted beyond it (config: capture.flow_table_size)")
	f.DurationVar(&o.idleTimeout, "flow-idle-timeout", derive.DefaultIdleTimeout, "evict a connection nothing was heard of for this long (config: capture.flow_idle_timeout)")
	f.DurationVar(&o.synTimeout, "syn-timeout", derive.DefaultSYNTimeout, "report an attempt without SYN-ACK after this long as failed, reason timeout (config: capture.syn_timeout)")
	f.BoolVar(&o.dns, "dns", true, "capture DNS answers to fill src_dns/dst_dns, on whenever a selected event needs it; --dns=false loads no DNS code (config: capture.dns.enabled)")
	f.IntVar(&o.dnsCache, "dns-cache-size", dnscache.DefaultSize, "most entries (address, workload, name) in the DNS cache; the least recently used is evicted (config: capture.dns.cache_size)")
}

// load reads the config (or the embedded default) with the environment
// applied, applies the flags that were given, and checks the result
// against the catalogue. It does not start plugins.
func (o *overrides) load(cmd *cobra.Command, cat *events.Catalogue) (*configs.Config, error) {
	cfg, err := o.loadPartial(cmd, cat)
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

// loadPartial is load, except that a config with problems comes back too,
// as far as it decoded, with the problems (configs.Problems), so that the
// sink checks can add theirs.
func (o *overrides) loadPartial(cmd *cobra.Command, cat *events.Catalogue) (*configs.Config, error) {
	var cfg *configs.Config
	var err error
	if o.configPath != "" {
		cfg, err = configs.Load(o.configPath)
	} else {
		cfg, err = configs.Default()
	}
	// A config with problems still comes back as far as it decoded:
	// Check below reports its problems with those of the later rounds.
	if cfg == nil {
		return nil, err
	}
	f := cmd.Flags()
	if len(o.events) > 0 {
		cfg.OverrideEvents(o.events)
	}
	// A pipeline without a filter of its own has only the command line's.
	ownFilter := map[int]bool{}
	for i, p := range cfg.Pipelines {
		ownFilter[i] = p.Filter != ""
	}
	for _, expr := range o.filters {
		cfg.AddFilter(expr)
	}
	if f.Lookup("output") != nil && f.Changed("output") {
		if o.output != "json" && o.output != "table" {
			return nil, fmt.Errorf("--output %q: use json or table", o.output)
		}
		if !cfg.SetStdoutFormat(o.output) {
			return nil, fmt.Errorf("--output %s: the config has no stdout sink to format", o.output)
		}
	}
	// Flags given on the command line override the file and the
	// environment; a problem with a value a flag set names the flag.
	c := &cfg.Capture
	set := map[string]string{} // config key -> flag
	override := func(flag, key string, apply func()) {
		if f.Lookup(flag) != nil && f.Changed(flag) {
			apply()
			set[key] = "--" + flag
		}
	}
	override("cgroup", "capture.cgroup", func() { c.Cgroup = o.cgroup })
	override("ring-buffer-size", "capture.ring_buffer_size", func() { c.RingBufferSize = o.ringBuffer })
	override("flow-table-size", "capture.flow_table_size", func() { c.FlowTableSize = o.tableSize })
	override("flow-idle-timeout", "capture.flow_idle_timeout", func() { c.FlowIdleTimeout = o.idleTimeout })
	override("syn-timeout", "capture.syn_timeout", func() { c.SYNTimeout = o.synTimeout })
	override("dns", "capture.dns.enabled", func() { c.DNS.Enabled = &o.dns })
	override("dns-cache-size", "capture.dns.cache_size", func() { c.DNS.CacheSize = o.dnsCache })
	override("log-level", "log.level", func() { cfg.Log.Level = f.Lookup("log-level").Value.String() })
	override("metrics-addr", "metrics.listen", func() { cfg.Metrics.Listen = o.metricsAddr })
	override("stats-interval", "log.stats_interval", func() { d := o.statsEvery; cfg.Log.StatsInterval = &d })
	if err := cfg.Check(cat); err != nil {
		var ps configs.Problems
		if errors.As(err, &ps) {
			return cfg, blameFlags(ps, set, len(o.events) > 0, len(o.filters) > 0, ownFilter)
		}
		return nil, err
	}
	return cfg, nil
}

// commandLine is the Problem.File of a problem a flag caused.
const commandLine = "command line"

// blameFlags puts the problems a command-line flag caused on the command
// line, naming the flag, instead of on the file (or the embedded
// default) whose value the flag replaced: set maps config keys to the
// flags that set them; events, filters say whether --events and --filter
// were given, and ownFilter which pipelines had a filter of their own (a
// problem with the others' filter is --filter's). --events replaces every
// pipeline's selection, so its problem, the same for each, is reported
// once.
func blameFlags(ps configs.Problems, set map[string]string, events, filters bool, ownFilter map[int]bool) configs.Problems {
	var out configs.Problems
	seen := map[string]bool{}
	for _, p := range ps {
		var i int
		var field string
		indexed, _ := fmt.Sscanf(p.Key, "pipelines[%d].%s", &i, &field)
		switch {
		case set[p.Key] != "" && p.Pipeline == "":
			p.File, p.Key = commandLine, set[p.Key]
		case events && indexed == 2 && field == "events":
			p.File, p.Pipeline, p.Key = commandLine, "", "--events"
		case filters && indexed == 2 && field == "filter" && !ownFilter[i]:
			p.File, p.Pipeline, p.Key = commandLine, "", "--filter"
		}
		if p.File == commandLine {
			if seen[p.Key+p.Message] {
				continue
			}
			seen[p.Key+p.Message] = true
		}
		out = append(out, p)
	}
	return out
}

// check loads the config as loadPartial does and checks its sinks too
// (pipeline.CheckSinks), returning every problem of every round together.
// Plugins start (opts.StartPlugins) only for a config without other
// problems: flowtap runs no plugin for a config it already knows is
// wrong.
func (o *overrides) check(ctx context.Context, cmd *cobra.Command, cat *events.Catalogue, opts pipeline.CheckOptions) (*configs.Config, error) {
	cfg, err := o.loadPartial(cmd, cat)
	if cfg == nil {
		return nil, err
	}
	var ps configs.Problems
	if err != nil && !errors.As(err, &ps) {
		return nil, err
	}
	opts.Catalogue = cat
	opts.StartPlugins = opts.StartPlugins && len(ps) == 0
	ps = append(ps, pipeline.CheckSinks(ctx, cfg, opts)...)
	if len(ps) > 0 {
		return nil, ps
	}
	return cfg, nil
}

// loadBuiltin is load with the built-in catalogue, which it returns too.
func (o *overrides) loadBuiltin(cmd *cobra.Command) (*events.Catalogue, *configs.Config, error) {
	cat, err := events.Builtin()
	if err != nil {
		return nil, nil, err
	}
	cfg, err := o.load(cmd, cat)
	return cat, cfg, err
}

// preflight loads and checks the config as 'run' and 'replay' do before
// they start anything: every problem of the file, the flags and the
// sinks at once; then, if kernel, the privileges the capture needs
// (before any plugin starts for real).
func preflight(ctx context.Context, cmd *cobra.Command, o *overrides, kernel bool, socketDir string, log hclog.Logger) (*events.Catalogue, *configs.Config, error) {
	cat, err := events.Builtin()
	if err != nil {
		return nil, nil, err
	}
	if kernel {
		// No plugin starts, not even to check its config, when the
		// capture cannot run.
		cfg, err := o.load(cmd, cat)
		if err == nil {
			plan, err := pipeline.Resolve(cat, cfg)
			if err != nil {
				return nil, nil, err
			}
			if plan.Shared.NeedsKernel() {
				if err := bpf.CheckPrivileges(); err != nil {
					return nil, nil, err
				}
			}
		}
	}
	// The plugins' own log lines would repeat when they start for real;
	// what they reject comes back in the problems.
	cfg, err := o.check(ctx, cmd, cat, pipeline.CheckOptions{StartPlugins: true, BeforeRun: true, SocketDir: socketDir})
	if err != nil {
		return nil, nil, err
	}
	log.Debug("config valid, sink configs accepted by their plugins", "pipelines", len(cfg.Pipelines))
	return cat, cfg, nil
}

// newLogger builds flowtap's log from the config's log settings.
func newLogger(l configs.Log, w io.Writer) hclog.Logger {
	level := hclog.Info
	if l.Level != "" {
		level = hclog.LevelFromString(l.Level)
	}
	return hclog.New(&hclog.LoggerOptions{Name: "flowtap", Level: level, Output: w, JSONFormat: l.Format == "json"})
}

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Work with config files",
	}
	cmd.AddCommand(newConfigValidate())
	return cmd
}

func newConfigValidate() *cobra.Command {
	var o overrides
	var checkPlugins, noPlugins bool
	cmd := &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a config file completely, as 'run' does before it starts anything",
		Long: "Check a config file completely, as 'run' does before it starts anything: unknown keys,\n" +
			"values of the wrong type or out of range, unknown events and sets, filters on fields the\n" +
			"selected events lack, and the built-in sinks' configs (checked inside flowtap, the stdout\n" +
			"sink's template executed on every event its pipeline selects). No plugin starts: with\n" +
			"--check-plugins every sink's plugin is also started, as unprivileged as in a run, to judge\n" +
			"its own config (third-party plugins are checked only this way). Every problem is printed,\n" +
			"each naming the file, the pipeline, the key and what would be valid. FLOWTAP_* environment\n" +
			"variables apply as in 'run'. Exit status 0 means the config is valid.",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeConfigFile,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.configPath = args[0]
			cat, err := events.Builtin()
			if err != nil {
				return err
			}
			ctx, stop := context.WithCancel(cmd.Context())
			defer stop()
			opts := pipeline.CheckOptions{StartPlugins: checkPlugins && !noPlugins}
			if opts.StartPlugins {
				sd, err := host.NewSocketDir()
				if err != nil {
					return err
				}
				defer sd.Remove()
				opts.SocketDir = sd.Path
			}
			cfg, err := o.check(ctx, cmd, cat, opts)
			if err != nil {
				return err
			}
			noun := "pipelines"
			if len(cfg.Pipelines) == 1 {
				noun = "pipeline"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: valid (%d %s)\n", cfg.Source, len(cfg.Pipelines), noun)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.events, "events", "e", nil, "validate with this selection replacing every pipeline's, as 'run --events' would")
	f.StringArrayVarP(&o.filters, "filter", "f", nil, "validate with this filter added to every pipeline, as 'run --filter' would")
	f.BoolVar(&checkPlugins, "check-plugins", false, "also start every sink's plugin (unprivileged, as in a run) to have it judge its config")
	f.BoolVar(&noPlugins, "no-plugins", false, "start no plugin (the default now; kept for scripts)")
	_ = f.MarkHidden("no-plugins")
	return cmd
}

// reloadSignals turns SIGHUP into reload requests until ctx ends. A
// request arriving while one is pending merges with it.
func reloadSignals(ctx context.Context) <-chan struct{} {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	out := make(chan struct{}, 1)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out
}
