// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/flowtap/flowtap/bpf"
	"github.com/flowtap/flowtap/bpf/limits"
	"github.com/flowtap/flowtap/configs"
	"github.com/flowtap/flowtap/derive"
	"github.com/flowtap/flowtap/derive/dnscache"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/identity"
	"github.com/flowtap/flowtap/pipeline"
	"github.com/flowtap/flowtap/sinks"
)

func newExplain() *cobra.Command {
	var o overrides
	cmd := &cobra.Command{
		Use:   "explain",
		Short: "Print the resolved plan: kernel programs, base events, derivations, and what each pipeline receives",
		Long: "Print what 'run' would do with the same config and flags, without starting anything:\n" +
			"the BPF programs loaded, the base events read from the kernel, the derivations run,\n" +
			"and for each pipeline the events it receives, its filter and its sinks. All pipelines\n" +
			"share one capture and one derivation.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cat, cfg, err := o.loadBuiltin(cmd)
			if err != nil {
				return err
			}
			plan, err := pipeline.Resolve(cat, cfg)
			if err != nil {
				return err
			}
			progs, err := pipeline.PlannedPrograms(plan.Shared, cfg)
			if err != nil {
				return err
			}
			return writeExplain(cmd.OutOrStdout(), cat, cfg, plan, progs)
		},
	}
	o.registerSelection(cmd.Flags())
	o.registerCapture(cmd.Flags())
	return cmd
}

// writeExplain prints the plan for people.
func writeExplain(w io.Writer, cat *events.Catalogue, cfg *configs.Config, plan *pipeline.Plan, progs []bpf.ProgramInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "config: %s\n\n", cfg.Source)
	writeCapture(tw, cfg.Capture)

	fmt.Fprintf(tw, "kernel programs (%s), loaded once for all pipelines (where the kernel lacks a feature, its programs are left out: see 'flowtap doctor'):\n", strings.Join(plan.Shared.Producers, ", "))
	if len(progs) == 0 {
		fmt.Fprintln(tw, "  none: the selection needs nothing from the kernel")
	}
	for _, p := range progs {
		fmt.Fprintf(tw, "  %s\t%s\t%s\tfeature %s\n", p.Name, p.Section, p.Type, strings.Join(p.Features, ", "))
	}

	fmt.Fprintln(tw, "\nbase events (from the kernel):")
	derived := map[string][]*events.Definition{}
	var derivers []string
	for _, id := range plan.Shared.Needed {
		d, _ := cat.ByID(id)
		if d.Source == events.SourceKernel {
			fmt.Fprintf(tw, "  %s\t%s\n", d.Name, emitted(plan.Shared, d))
			continue
		}
		if derived[d.Deriver] == nil {
			derivers = append(derivers, d.Deriver)
		}
		derived[d.Deriver] = append(derived[d.Deriver], d)
	}
	if plan.Shared.NeedsKernel() {
		fmt.Fprintf(tw, "  %s\tto every pipeline when the ring buffer overflows\n", events.NameRecordsLost)
	}

	fmt.Fprintln(tw, "\nderivations:")
	if len(derivers) == 0 {
		fmt.Fprintln(tw, "  none")
	}
	for _, name := range derivers {
		inputs := map[string]bool{}
		var outs []string
		for _, d := range derived[name] {
			outs = append(outs, d.Name)
			for _, dep := range d.Dependencies {
				inputs[cat.Name(dep)] = true
			}
		}
		in := make([]string, 0, len(inputs))
		for n := range inputs {
			in = append(in, n)
		}
		sort.Strings(in)
		fmt.Fprintf(tw, "  %s\t%s -> %s\n", name, strings.Join(in, ", "), strings.Join(outs, ", "))
	}

	fmt.Fprintln(tw, "\npipelines:")
	for _, pp := range plan.Pipelines {
		fmt.Fprintf(tw, "  %s\n", pp.Config.Name)
		names := make([]string, len(pp.Plan.Emit))
		for i, id := range pp.Plan.Emit {
			names[i] = cat.Name(id)
		}
		fmt.Fprintf(tw, "    events:\t%s\n", strings.Join(names, ", "))
		if pp.Filter != nil {
			fmt.Fprintf(tw, "    filter:\t%s\n", pp.Filter.Expr().Canonical())
		} else {
			fmt.Fprintln(tw, "    filter:\tnone (every selected event)")
		}
		for j, s := range pp.Config.Sinks {
			fmt.Fprintf(tw, "    sink %d:\t%s %s\n", j, s.Plugin, sinkConfigText(sinks.Redacted(s.Plugin, s.Config)))
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write plan: %w", err)
	}
	return nil
}

// writeCapture prints the capture settings in effect, defaults resolved.
func writeCapture(w io.Writer, c configs.Capture) {
	orDefault := func(v, def any, isZero bool) string {
		if isZero {
			return fmt.Sprintf("%v (default)", def)
		}
		return fmt.Sprint(v)
	}
	cgroup := c.Cgroup
	if cgroup == "" {
		cgroup = "the cgroup v2 mount (the whole host)"
	}
	fmt.Fprintln(w, "capture (flags > FLOWTAP_* environment > config file > defaults):")
	fmt.Fprintf(w, "  cgroup:\t%s\n", cgroup)
	fmt.Fprintf(w, "  ring_buffer_size:\t%s\n", orDefault(c.RingBufferSize, limits.DefaultRingBufferSize, c.RingBufferSize == 0))
	fmt.Fprintf(w, "  flow_table_size:\t%s\n", orDefault(c.FlowTableSize, derive.DefaultMaxFlows, c.FlowTableSize == 0))
	fmt.Fprintf(w, "  flow_idle_timeout:\t%s\n", orDefault(c.FlowIdleTimeout, derive.DefaultIdleTimeout, c.FlowIdleTimeout == 0))
	fmt.Fprintf(w, "  syn_timeout:\t%s\n", orDefault(c.SYNTimeout, derive.DefaultSYNTimeout, c.SYNTimeout == 0))
	dns := "on when a selected event needs it (default)"
	if c.DNS.Enabled != nil {
		dns = fmt.Sprint(*c.DNS.Enabled)
		if !*c.DNS.Enabled {
			dns += ": bpf/dns_programs is not loaded, src_dns and dst_dns stay empty"
		}
	}
	fmt.Fprintf(w, "  dns.enabled:\t%s\n", dns)
	fmt.Fprintf(w, "  dns.cache_size:\t%s\n", orDefault(c.DNS.CacheSize, dnscache.DefaultSize, c.DNS.CacheSize == 0))
	fmt.Fprintf(w, "  community_id_seed:\t%d\n", c.CommunityIDSeed)
	wl := c.Workload
	if wl.Enabled != nil && !*wl.Enabled {
		fmt.Fprintf(w, "  workload:\toff: no container, pod or executable on events\n\n")
		return
	}
	sock := func(p, def string) string {
		if p == "" {
			return def + " (default)"
		}
		return p
	}
	fmt.Fprintf(w, "  workload:\tcontainerd %s, docker %s, podman %s; pod_labels [%s]; cache_size %s\n\n",
		sock(wl.ContainerdSocket, identity.DefaultContainerdSocket), sock(wl.DockerSocket, identity.DefaultDockerSocket),
		sock(wl.PodmanSocket, identity.DefaultPodmanSocket), strings.Join(wl.PodLabels, ", "),
		orDefault(wl.CacheSize, identity.DefaultCacheSize, wl.CacheSize == 0))
}

// emitted says whether any pipeline receives a base event itself.
func emitted(p *events.Plan, d *events.Definition) string {
	if p.Emits(d.ID) {
		return "read, and delivered to pipelines that select it"
	}
	return "read for the derivations only"
}

// sinkConfigText renders a sink config compactly, keys sorted. Pass it
// the config redacted (sinks.Redacted): it prints every value it gets.
func sinkConfigText(m map[string]any) string {
	if len(m) == 0 {
		return "{}"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %v", k, m[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}
