// SPDX-License-Identifier: Apache-2.0

package main

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/sinks"
)

// Shell completion ('flowtap completion bash|zsh|fish|powershell', from
// cobra) completes, besides commands and flags: event names after 'man';
// event and set names, with '-' to exclude and commas between them, in
// --events; sink names after 'list --sinks'; config files by extension;
// the values of --output and --log-level.

// completeFlags registers the flag completions of every command under
// root.
func completeFlags(root *cobra.Command) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for name, fn := range map[string]cobra.CompletionFunc{
			"events":    completeSelection,
			"output":    cobra.FixedCompletions([]string{"json", "table"}, cobra.ShellCompDirectiveNoFileComp),
			"log-level": cobra.FixedCompletions([]string{"trace", "debug", "info", "warn", "error"}, cobra.ShellCompDirectiveNoFileComp),
			"config":    completeConfigFile,
		} {
			if c.LocalFlags().Lookup(name) != nil || (c == root && c.PersistentFlags().Lookup(name) != nil) {
				// Registered once per command and flag; an error here is
				// a flag registered twice, a bug the tests catch.
				_ = c.RegisterFlagCompletionFunc(name, fn)
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// completeConfigFile offers files with a config extension.
func completeConfigFile(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return []cobra.Completion{"yaml", "yml", "toml", "json"}, cobra.ShellCompDirectiveFilterFileExt
}

// completeEvents offers the catalogue's event names that start with
// toComplete (the argument of 'man').
func completeEvents(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	cat, err := events.Builtin()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var out []cobra.Completion
	for _, d := range cat.Definitions() {
		if strings.HasPrefix(d.Name, toComplete) {
			out = append(out, cobra.CompletionWithDesc(d.Name, d.Summary()))
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeSelection completes the last item of a selection such as
// "flows,-net_flow_tcp_end": event and set names, after an optional '-'
// (exclude), keeping what comes before the last comma.
func completeSelection(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	cat, err := events.Builtin()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	head, last := "", toComplete
	if i := strings.LastIndexByte(toComplete, ','); i >= 0 {
		head, last = toComplete[:i+1], toComplete[i+1:]
	}
	if strings.HasPrefix(last, "-") {
		head, last = head+"-", last[1:]
	}
	var out []cobra.Completion
	for _, s := range cat.Sets() {
		if strings.HasPrefix(s, last) {
			out = append(out, cobra.CompletionWithDesc(head+s, "set of events"))
		}
	}
	for _, d := range cat.Definitions() {
		if strings.HasPrefix(d.Name, last) {
			out = append(out, cobra.CompletionWithDesc(head+d.Name, d.Summary()))
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
}

// completeSinks offers the built-in sink names not given yet (the
// arguments of 'list --sinks').
func completeSinks(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if f := cmd.Flags().Lookup("sinks"); f == nil || !f.Changed {
		return nil, cobra.ShellCompDirectiveNoFileComp // 'list' alone takes no arguments
	}
	var out []cobra.Completion
	for _, b := range sinks.Builtins() {
		given := false
		for _, a := range args {
			given = given || a == b.Name
		}
		if !given && strings.HasPrefix(b.Name, toComplete) {
			out = append(out, cobra.CompletionWithDesc(b.Name, b.Description))
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
