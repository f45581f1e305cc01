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
	var cfg *configs.Config
	var err error
	if o.configPath != "" {
		cfg, err = configs.Load(o.configPath)
	} else {
		cfg, err = configs.Default()
	}
	if err != nil {
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
			return nil, blameFlags(ps, set, len(o.events) > 0, len(o.filters) > 0, ownFilter)
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

// loadBuiltin is load with the built-in catalogue, which it returns too.
func (o *overrides) loadBuiltin(cmd *cobra.Command) (*events.Catalogue, *configs.Config, error) {
	cat, err := events.Builtin()
	if err != nil {
		return nil, nil, err
	}
	cfg, err := o.load(cmd, cat)
	return cat, cfg, err
}

// preflight runs what 'run' checks before it starts anything: the
// privileges the capture needs, if kernel (first, so no plugin starts
// when they are missing), then every sink's config as its plugin judges it, all problems
// together, so nothing starts half-configured.
func preflight(ctx context.Context, cat *events.Catalogue, cfg *configs.Config, kernel bool, log hclog.Logger) error {
	plan, err := pipeline.Resolve(cat, cfg)
	if err != nil {
		return err
	}
	if kernel && plan.Shared.NeedsKernel() {
		if err := bpf.CheckPrivileges(); err != nil {
			return err
		}
	}
	// The plugins' own log lines would repeat when they start for real;
	// what they reject comes back in the problems.
	if ps := pipeline.CheckSinks(ctx, cfg, hclog.NewNullLogger()); len(ps) > 0 {
		return ps
	}
	log.Debug("config valid, sink configs accepted by their plugins", "pipelines", len(cfg.Pipelines))
	return nil
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
	var noPlugins bool
	cmd := &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a config file completely, as 'run' does before it starts anything",
		Long: "Check a config file completely, as 'run' does before it starts anything: unknown keys,\n" +
			"values of the wrong type or out of range, unknown events and sets, filters on fields the\n" +
			"selected events lack, and every sink's config as its own plugin judges it (each plugin is\n" +
			"started, configured and closed). Every problem is printed, each naming the file, the\n" +
			"pipeline, the key and what would be valid. FLOWTAP_* environment variables apply as in\n" +
			"'run'. Exit status 0 means the config is valid.",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeConfigFile,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.configPath = args[0]
			_, cfg, err := o.loadBuiltin(cmd)
			if err != nil {
				return err
			}
			if !noPlugins {
				ctx, stop := context.WithCancel(cmd.Context())
				defer stop()
				if ps := pipeline.CheckSinks(ctx, cfg, hclog.NewNullLogger()); len(ps) > 0 {
					return ps
				}
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
	f.BoolVar(&noPlugins, "no-plugins", false, "skip starting the sink plugins to check their configs")
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
