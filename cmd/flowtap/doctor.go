// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/flowtap/flowtap/bpf"
)

// errCoreUnavailable makes doctor exit non-zero after its report, which
// already says why.
var errCoreUnavailable = errors.New("the core flow capture cannot run on this kernel (see the report above)")

func newDoctor() *cobra.Command {
	var asJSON, verifierLog bool
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Say what this kernel can do for flowtap: BTF, cgroup v2, capabilities, and each feature",
		Long: "Say what this kernel and this process can do for flowtap: the kernel release, BTF, the\n" +
			"cgroup v2 mount, the capabilities, and for each feature (core flow capture, DNS, owners and\n" +
			"closes of sockets that existed before start, MPTCP, no-socket resets, snapshots) whether\n" +
			"it is available, with the kernel's reason when not. Features are probed by loading their\n" +
			"programs into the kernel (nothing is attached), so run it as flowtap runs: as root or with\n" +
			"CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON. Exit status 1 when the core cannot run.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := bpf.Probe()
			if err != nil {
				return err
			}
			if asJSON {
				err = r.WriteJSON(cmd.OutOrStdout())
			} else {
				err = r.WriteText(cmd.OutOrStdout(), verifierLog)
			}
			if err != nil {
				return err
			}
			if !r.CoreOK {
				return errCoreUnavailable
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as one JSON object")
	cmd.Flags().BoolVar(&verifierLog, "verifier-log", false, "print the whole verifier log of every program the kernel refused")
	return cmd
}
