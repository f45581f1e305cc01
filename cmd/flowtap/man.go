// SPDX-License-Identifier: Apache-2.0

package main

import (
	"github.com/spf13/cobra"

	"github.com/flowtap/flowtap/events"
)

func newMan() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "man EVENT",
		Short: "Print an event's manual page: description, sets, fields with types, dependencies, related events",
		Long: "Print an event's manual page (Markdown), generated from the event catalogue so it always\n" +
			"matches what flowtap emits. 'flowtap list' names the events. With --dir, write every\n" +
			"event's page into that directory instead (make docs does this for docs/events/).",
		Args: func(cmd *cobra.Command, args []string) error {
			if dir != "" {
				return cobra.NoArgs(cmd, args)
			}
			return cobra.ExactArgs(1)(cmd, args)
		},
		ValidArgsFunction: completeEvents,
		RunE: func(cmd *cobra.Command, args []string) error {
			cat, err := events.Builtin()
			if err != nil {
				return err
			}
			if dir != "" {
				return cat.WriteManDir(dir)
			}
			return cat.WriteMan(cmd.OutOrStdout(), args[0])
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "write every event's page as DIR/<event>.md (and remove stale pages there)")
	return cmd
}
