// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/flowtap/flowtap/configs"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/pipeline"
	"github.com/flowtap/flowtap/plugins/host"
	"github.com/flowtap/flowtap/replay"
)

func newReplay() *cobra.Command {
	var (
		o          overrides
		local      []string
		cpuProfile string
	)
	cmd := &cobra.Command{
		Use:   "replay FILE",
		Short: "Derive flows from a capture file (pcap or pcapng) and deliver them to the configured sinks",
		Long: "Derive flows from a capture file and deliver them to the configured sinks, as 'run' does from\n" +
			"the kernel: the same selection, pipelines, filters and sinks. FILE is a classic pcap or pcapng\n" +
			"file ('-' reads standard input), e.g. from 'tcpdump -w'. No BPF program loads and no privilege\n" +
			"is needed. Time is the capture's: SYN timeouts and evictions happen as they would have live.\n" +
			"--local names this host's networks: packets from them are what it sent, packets to them what it\n" +
			"received; without it every address is local and each connection is reported from both ends.\n" +
			"A capture has no process context: pid, comm, uid, cgroup and socket cookie are 0. At the end of\n" +
			"the file open flows end (close_reason shutdown), the sinks drain, and flowtap exits 0; a file\n" +
			"cut short in a record is an error after everything before it was delivered. See replay/README.md.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			prefixes, err := replay.ParseLocal(local)
			if err != nil {
				return fmt.Errorf("--local: %w", err)
			}
			cat, err := events.Builtin()
			if err != nil {
				return err
			}
			logCfg := configs.Log{}
			if cfg, _ := o.loadPartial(cmd, cat); cfg != nil {
				logCfg = cfg.Log
			}
			log := newLogger(logCfg, os.Stderr)
			tuneGC(log)
			name := args[0]
			var in io.Reader = os.Stdin
			if name != "-" {
				f, err := os.Open(name)
				if err != nil {
					return fmt.Errorf("replay: %w", err)
				}
				defer f.Close()
				in = f
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			sockets, err := host.NewSocketDir()
			if err != nil {
				return err
			}
			defer sockets.Remove()
			cat, cfg, err := preflight(ctx, cmd, &o, false, sockets.Path, log)
			if err != nil {
				return err
			}
			stopProfile, err := startCPUProfile(cpuProfile)
			if err != nil {
				return err
			}
			defer stopProfile()
			_, err = pipeline.Run(ctx, pipeline.Options{
				Config: cfg, Catalogue: cat, Logger: log, SocketDir: sockets.Path,
				Replay: &pipeline.Replay{Name: name, Input: in, Local: prefixes},
			})
			return err
		},
	}
	f := cmd.Flags()
	o.registerSelection(f)
	o.registerDerivation(f)
	registerCPUProfile(f, &cpuProfile)
	f.StringSliceVar(&local, "local", nil, "this host's addresses: CIDR prefixes or addresses, comma-separated or repeated (e.g. 10.0.0.0/8,fd00::/8); default: every address")
	return cmd
}
