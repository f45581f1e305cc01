// SPDX-License-Identifier: Apache-2.0

// Command flowtap watches TCP connections from inside the Linux kernel and
// delivers them as events to sink plugins. This file only parses flags and
// wires packages together; the work happens in pipeline/, bpf/, derive/ and
// plugins/.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/flowtap/flowtap/configs"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/buildinfo"
	"github.com/flowtap/flowtap/internal/gctune"
	"github.com/flowtap/flowtap/internal/sysfilter"
	"github.com/flowtap/flowtap/pipeline"
	"github.com/flowtap/flowtap/plugins/host"
	"github.com/flowtap/flowtap/plugins/sdk"
	"github.com/flowtap/flowtap/sinks"
)

func main() {
	// flowtap's own seccomp filter, on every thread, before anything else
	// runs (a thread under a filter of its own, as the plugin launcher
	// is, would make it fail): see filterSystemCalls.
	filterErr := filterSystemCalls()
	if filterErr != nil && !errors.Is(filterErr, sysfilter.ErrUnavailable) {
		fmt.Fprintln(os.Stderr, "flowtap:", filterErr)
		os.Exit(1)
	}
	if err := newRoot(filterErr).Execute(); err != nil {
		var exit exitError
		if errors.As(err, &exit) {
			os.Exit(exit.code) // what to say was printed
		}
		fmt.Fprintln(os.Stderr, "flowtap:", err)
		os.Exit(1)
	}
}

// newRoot returns flowtap's command. filterErr is why flowtap runs
// without its seccomp filter (nil: it runs under it, or, in tests, the
// caller did not try); flowtap run logs it.
func newRoot(filterErr error) *cobra.Command {
	root := &cobra.Command{
		Use:           "flowtap",
		Short:         "Watch TCP connections from inside the kernel and deliver them as events",
		SilenceUsage:  true,
		SilenceErrors: true,
		// --version prints what 'flowtap version' does.
		Version: newVersionInfo().text(),
	}
	root.SetVersionTemplate("{{.Version}}")
	// Read through the flag set (Lookup), where a given flag overrides
	// the config's log.level.
	root.PersistentFlags().String("log-level", "info", "log level: trace, debug, info, warn, error (config: log.level)")
	root.AddCommand(newRun(filterErr), newReplay(), newList(), newVersion(), newConfigCmd(), newExplain(), newMan(), newDoctor(), newStatus())
	completeFlags(root)
	return root
}

func newRun(filterErr error) *cobra.Command {
	var (
		o          overrides
		cpuProfile string
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Capture flows and deliver them to the configured sinks",
		Long: "Capture flows and deliver them to the configured sinks. Without --config, the embedded\n" +
			"default runs: the 'flows' set printed by the stdout sink. The config is checked completely\n" +
			"before anything starts (see 'flowtap config validate'). Settings come from, highest first:\n" +
			"flags, FLOWTAP_* environment variables (e.g. FLOWTAP_CAPTURE_RING_BUFFER_SIZE), the config\n" +
			"file, the defaults. SIGHUP re-reads the config: pipelines that keep their name and sinks\n" +
			"keep running and lose nothing; an invalid config is rejected and the old one stays.\n" +
			"With --metrics-addr, Prometheus metrics, /healthz and /readyz are served there ('flowtap\n" +
			"status' reads them). Every --stats-interval one log line has the counters that moved.\n" +
			"Stop with Ctrl-C or SIGTERM: open flows get their end, sinks flush, and flowtap exits 0.\n" +
			"When standard output is closed (flowtap run | head), flowtap stops the same way, quietly.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cat, err := events.Builtin()
			if err != nil {
				return err
			}
			logCfg, metricsAddr := configs.Log{}, ""
			if cfg, err := o.loadPartial(cmd, cat); cfg != nil {
				logCfg = cfg.Log
				if err == nil {
					metricsAddr = cfg.Metrics.Listen
				}
			}
			log := newLogger(logCfg, os.Stderr)
			tuneGC(log)
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// The first signal drains (sinks deliver what they hold, exit
			// 0); a second one ends flowtap at once (the plugins die
			// with it).
			defer context.AfterFunc(ctx, func() {
				stop()
				log.Info("stopping: draining the sinks (signal again to exit at once)")
			})()
			// The endpoints come first: /healthz answers and /readyz says
			// "starting" while the sinks are checked and the capture
			// attaches. A config with problems serves none: preflight
			// reports them.
			mon := pipeline.NewMonitor()
			if addr := metricsAddr; addr != "" {
				stopMetrics, err := serveMetrics(addr, mon, log)
				if err != nil {
					return err
				}
				defer stopMetrics()
			}
			sockets, err := host.NewSocketDir()
			if err != nil {
				return err
			}
			defer sockets.Remove()
			if filterErr != nil {
				log.Warn("flowtap runs without its seccomp filter", "reason", filterErr)
			}
			// The thread plugins start from drops its bounding set now,
			// while flowtap may (CAP_SETPCAP).
			if err := host.PrepareLauncher(); err != nil {
				return err
			}
			cat, cfg, err := preflight(ctx, cmd, &o, true, sockets.Path, log)
			if err != nil {
				return err
			}
			stopProfile, err := startCPUProfile(cpuProfile)
			if err != nil {
				return err
			}
			defer stopProfile()
			_, err = pipeline.Run(ctx, pipeline.Options{
				Config: cfg, Catalogue: cat, Logger: log, SocketDir: sockets.Path, Monitor: mon,
				Reload: reloadSignals(ctx),
				Load: func() (*configs.Config, error) {
					return o.check(ctx, cmd, cat, pipeline.CheckOptions{StartPlugins: true, BeforeRun: true, SocketDir: sockets.Path})
				},
				Started: func() error { return dropPrivileges(log) },
			})
			return err
		},
	}
	f := cmd.Flags()
	o.registerSelection(f)
	o.registerCapture(f)
	o.registerOperation(f)
	registerCPUProfile(f, &cpuProfile)
	return cmd
}

func newList() *cobra.Command {
	var asJSON, builtinSinks bool
	cmd := &cobra.Command{
		Use:   "list [--sinks [SINK...]]",
		Short: "List the events flowtap can produce, with their sets and fields (--sinks: the built-in sinks and their keys)",
		Args: func(cmd *cobra.Command, args []string) error {
			if builtinSinks {
				return nil
			}
			return cobra.NoArgs(cmd, args)
		},
		ValidArgsFunction: completeSinks,
		RunE: func(cmd *cobra.Command, args []string) error {
			if builtinSinks {
				return listSinks(cmd.OutOrStdout(), asJSON, args)
			}
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
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the catalogue (or the sinks) as JSON")
	cmd.Flags().BoolVar(&builtinSinks, "sinks", false, "list the built-in sinks and their config keys instead of the events")
	return cmd
}

// listSinks prints the built-in sinks named (all without names) with
// their config keys (from the sink's config struct), their types and
// which are secret.
func listSinks(w io.Writer, asJSON bool, only []string) error {
	type key struct {
		Name   string `json:"name"`
		Type   string `json:"type"`
		Secret bool   `json:"secret,omitempty"`
	}
	type sink struct {
		Name        string `json:"name"`
		Description string `json:"description"`
		Keys        []key  `json:"keys"`
	}
	var out []sink
	for _, name := range only {
		if !slices.Contains(sinks.Names(), name) {
			hint := ""
			if c := events.Closest(name, sinks.Names()); c != "" {
				hint = fmt.Sprintf(": did you mean %q?", c)
			}
			return fmt.Errorf("no built-in sink %q%s (built-in: %s)", name, hint, strings.Join(sinks.Names(), ", "))
		}
	}
	for _, b := range sinks.Builtins() {
		if len(only) > 0 && !slices.Contains(only, b.Name) {
			continue
		}
		s := sink{Name: b.Name, Description: b.Description}
		for _, k := range b.Keys() {
			s.Keys = append(s.Keys, key{Name: k.Name, Type: k.Type, Secret: k.Secret})
		}
		out = append(out, s)
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for i, s := range out {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		fmt.Fprintf(tw, "%s: %s\n", s.Name, s.Description)
		for _, k := range s.Keys {
			if k.Secret {
				fmt.Fprintf(tw, "  %s\t%s\tsecret: never shown\n", k.Name, k.Type)
			} else {
				fmt.Fprintf(tw, "  %s\t%s\n", k.Name, k.Type)
			}
		}
	}
	return tw.Flush()
}

func newVersion() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print flowtap's version, commit, plugin protocol and event schema versions",
		Long: fmt.Sprintf("Print flowtap's version (a semantic version from the git tag it was built from), the commit\n"+
			"and its date, whether the tree was modified, the Go toolchain, the sink plugin protocol\n"+
			"version (%d: a plugin built for another is refused) and the event schema version (%s).\n"+
			"'flowtap --version' prints the same.", sdk.ProtocolVersion, events.SchemaVersion),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(newVersionInfo())
			}
			_, err := io.WriteString(cmd.OutOrStdout(), newVersionInfo().text())
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the versions as a JSON object")
	return cmd
}

// versionInfo is what 'flowtap version' prints.
type versionInfo struct {
	buildinfo.Info
	PluginProtocol int    `json:"plugin_protocol"`
	EventSchema    string `json:"event_schema"`
}

func newVersionInfo() versionInfo {
	return versionInfo{Info: buildinfo.Get(), PluginProtocol: sdk.ProtocolVersion, EventSchema: events.SchemaVersion}
}

// text is the version for people: the version alone on the first line,
// so that 'flowtap --version | head -1' is the version.
func (v versionInfo) text() string {
	return fmt.Sprintf("flowtap %s\n"+
		"commit:          %s\n"+
		"commit date:     %s\n"+
		"modified tree:   %t\n"+
		"go:              %s %s\n"+
		"plugin protocol: %d\n"+
		"event schema:    %s\n",
		v.Version, v.Commit, v.Date, v.Dirty, v.GoVersion, v.Platform, v.PluginProtocol, v.EventSchema)
}

// tuneGC sets the garbage collector's target and soft memory limit (package
// gctune) for a command that derives events, and logs them at debug level.
func tuneGC(log hclog.Logger) {
	gc := gctune.Apply()
	log.Debug("garbage collector", "gogc", gc.GCPercent, "gogc_from_env", gc.FromEnv,
		"memory_limit", gc.MemoryLimit, "memory_limit_from_env", gc.LimitFromEnv)
}

// registerCPUProfile adds --cpu-profile to a command's flags.
func registerCPUProfile(f *pflag.FlagSet, path *string) {
	f.StringVar(path, "cpu-profile", "", "write a Go CPU profile of flowtap (not its plugins) to this file, for performance work")
}

// startCPUProfile starts a Go CPU profile into path (--cpu-profile), and
// returns what stops it and closes the file; with path empty it does
// nothing.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
