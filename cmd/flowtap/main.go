// Command flowtap watches TCP connections from inside the Linux kernel and
// delivers them as events to sink plugins. This file only parses flags and
// wires packages together; the work happens in pipeline/, bpf/, derive/ and
// plugins/.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/flowtap/flowtap/configs"
	"github.com/flowtap/flowtap/derive"
	"github.com/flowtap/flowtap/derive/dnscache"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/buildinfo"
	"github.com/flowtap/flowtap/pipeline"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "flowtap:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	var logLevel string
	root := &cobra.Command{
		Use:           "flowtap",
		Short:         "Watch TCP connections from inside the kernel and deliver them as events",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&logLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	logger := func() (hclog.Logger, error) {
		lvl := hclog.LevelFromString(logLevel)
		if lvl == hclog.NoLevel {
			return nil, fmt.Errorf("--log-level %q: use trace, debug, info, warn or error", logLevel)
		}
		return hclog.New(&hclog.LoggerOptions{Name: "flowtap", Level: lvl, Output: os.Stderr}), nil
	}
	root.AddCommand(newRun(logger), newList(), newVersion())
	return root
}

func newRun(logger func() (hclog.Logger, error)) *cobra.Command {
	var (
		configPath   string
		selection    []string
		output       string
		cgroup       string
		ringBuffer   int
		tracker      derive.Config
		cpuProfile   string
		dns          bool
		dnsCacheSize int
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Capture flows and deliver them to the configured sinks",
		Long: "Capture flows and deliver them to the configured sinks. Without --config, the embedded\n" +
			"default runs: the 'flows' set printed by the stdout sink. Stop with Ctrl-C or SIGTERM:\n" +
			"open flows get their end, sinks flush, and flowtap exits 0.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logger()
			if err != nil {
				return err
			}
			cat, err := events.Builtin()
			if err != nil {
				return err
			}
			var cfg *configs.Config
			if configPath != "" {
				cfg, err = configs.Load(configPath)
			} else {
				cfg, err = configs.Default()
			}
			if err != nil {
				return err
			}
			if len(selection) > 0 {
				cfg.OverrideEvents(selection)
			}
			if cmd.Flags().Changed("output") {
				if output != "json" && output != "table" {
					return fmt.Errorf("--output %q: use json or table", output)
				}
				if !cfg.SetStdoutFormat(output) {
					return fmt.Errorf("--output %s: the config has no stdout sink to format", output)
				}
			}
			if cmd.Flags().Changed("dns") {
				cfg.Capture.DNS.Enabled = &dns
			}
			if cmd.Flags().Changed("dns-cache-size") {
				cfg.Capture.DNS.CacheSize = dnsCacheSize
			}
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return fmt.Errorf("--cpu-profile: %w", err)
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return fmt.Errorf("--cpu-profile: %w", err)
				}
				defer pprof.StopCPUProfile()
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			_, err = pipeline.Run(ctx, pipeline.Options{
				Config: cfg, Catalogue: cat, Logger: log,
				CgroupPath: cgroup, RingBufferSize: ringBuffer, Tracker: tracker,
			})
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&configPath, "config", "c", "", "pipeline config file (YAML, TOML or JSON); default: the embedded default")
	f.StringArrayVarP(&selection, "events", "e", nil, "events to select, replacing every pipeline's: names, sets, -name, globs (e.g. flows,-net_flow_tcp_end)")
	f.StringVarP(&output, "output", "o", "table", "format of the stdout sink: json or table")
	f.StringVar(&cgroup, "cgroup", "", "cgroup v2 directory to attach to (default: the cgroup v2 mount from /proc/mounts)")
	f.IntVar(&ringBuffer, "ring-buffer-size", 0, "BPF ring buffer size in bytes, a power-of-two multiple of the page size (default: bpf.DefaultRingBufferSize)")
	f.IntVar(&tracker.MaxFlows, "flow-table-size", derive.DefaultMaxFlows, "most connections tracked at once; the least recently active is evicted beyond it")
	f.DurationVar(&tracker.IdleTimeout, "flow-idle-timeout", derive.DefaultIdleTimeout, "evict a connection nothing was heard of for this long")
	f.StringVar(&cpuProfile, "cpu-profile", "", "write a Go CPU profile of flowtap (not its plugins) to this file, for performance work")
	f.DurationVar(&tracker.SYNTimeout, "syn-timeout", derive.DefaultSYNTimeout, "report an attempt without SYN-ACK after this long as failed (reason timeout)")
	f.BoolVar(&dns, "dns", true, "capture DNS answers to fill src_dns/dst_dns (on when a selected event needs it); --dns=false loads no DNS code (config: capture.dns.enabled)")
	f.IntVar(&dnsCacheSize, "dns-cache-size", dnscache.DefaultSize, "most entries (address, workload, name) in the DNS cache; least recently used evicted (config: capture.dns.cache_size)")
	return cmd
}

func newList() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the events flowtap can produce, with their sets and fields",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cat, err := events.Builtin()
			if err != nil {
				return err
			}
			if asJSON {
				return cat.WriteListJSON(cmd.OutOrStdout())
			}
			return cat.WriteListTable(cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the catalogue as JSON")
	return cmd
}

func newVersion() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print flowtap's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), buildinfo.String())
		},
	}
}
