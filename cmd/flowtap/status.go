// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/flowtap/flowtap/internal/buildinfo"
	"github.com/flowtap/flowtap/internal/human"
	"github.com/flowtap/flowtap/metrics"
	"github.com/flowtap/flowtap/pipeline"
)

// defaultMetricsAddr is where 'flowtap status' looks without --addr: the
// address the README and the manifests use.
const defaultMetricsAddr = "127.0.0.1:9464"

// serveMetrics serves mon's metrics and health endpoints on addr until
// the returned stop is called.
func serveMetrics(addr string, mon *pipeline.Monitor, log hclog.Logger) (stop func(), err error) {
	h, err := metrics.Handler(mon, buildinfo.Get(), log.Named("metrics"))
	if err != nil {
		return nil, err
	}
	srv, err := metrics.Listen(addr, h)
	if err != nil {
		return nil, fmt.Errorf("%w (--metrics-addr, config metrics.listen)", err)
	}
	log.Info("serving metrics", "address", srv.Addr().String(), "endpoints", strings.Join([]string{metrics.PathMetrics, metrics.PathHealth, metrics.PathReady}, " "))
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			log.Warn("stop serving metrics", "error", err)
		}
	}, nil
}

func newStatus() *cobra.Command {
	var (
		addr   string
		window time.Duration
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Ask a running flowtap for a short summary: uptime, events/s, loss, each sink's state and queue",
		Long: "Ask a running flowtap, through the metrics endpoint it serves (run --metrics-addr, config\n" +
			"metrics.listen), for a short summary: its version and uptime, whether it is ready and if not\n" +
			"why, events per second (measured over --interval) and the busiest events, records lost in\n" +
			"the kernel, the flow table, and each sink's state, queue, acknowledged and dropped events and\n" +
			"restarts. Exit status 0 when it is ready, 1 when it cannot be reached, 2 when it is not ready.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), window+10*time.Second)
			defer cancel()
			st, err := metrics.Query(ctx, &http.Client{Timeout: 5 * time.Second}, addr, window)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(st); err != nil {
					return err
				}
			} else if err := writeStatus(cmd.OutOrStdout(), st); err != nil {
				return err
			}
			if st.Readiness.Status != "ready" {
				return errNotReady
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", defaultMetricsAddr, "the running flowtap's metrics address, HOST:PORT or a URL (its --metrics-addr)")
	f.DurationVar(&window, "interval", time.Second, "measure the rates over this long (0: one scrape, no rates)")
	f.BoolVar(&asJSON, "json", false, "print the summary as JSON (durations in nanoseconds)")
	return cmd
}

// errNotReady makes 'flowtap status' exit 2 after printing the summary.
var errNotReady = exitError{code: 2}

// exitError ends flowtap with an exit status and no message of its own
// (what to say was printed).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// topEvents is how many of the busiest events the summary names.
const topEvents = 4

// writeStatus prints st for people.
func writeStatus(w io.Writer, st metrics.Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	ready := st.Readiness.Status
	if ready != "ready" {
		ready += " (" + st.Readiness.Phase + ")"
	}
	fmt.Fprintf(tw, "flowtap %s at %s: %s\n", st.Version, st.URL, ready)
	for _, nr := range st.Readiness.NotReady {
		what := nr.Component
		if nr.Sink != "" {
			what = fmt.Sprintf("sink %s/%s", nr.Pipeline, nr.Sink)
		}
		fmt.Fprintf(tw, "  not ready: %s: %s\n", what, nr.Reason)
	}
	fmt.Fprintf(tw, "uptime:\t%s\n", human.Duration(st.Uptime))
	var total uint64
	for _, e := range st.Events {
		total += e.Total
	}
	if st.Window > 0 {
		var top []string
		for i, e := range st.Events {
			if i == topEvents || e.PerSecond == 0 {
				break
			}
			top = append(top, fmt.Sprintf("%s %s", e.Name, human.Rate(e.PerSecond)))
		}
		line := fmt.Sprintf("%s/s over %s", human.Rate(st.EventsPerSecond), human.Duration(st.Window))
		if len(top) > 0 {
			line += ": " + strings.Join(top, ", ")
		}
		fmt.Fprintf(tw, "events:\t%s\n", line)
	}
	fmt.Fprintf(tw, "events total:\t%s\n", human.Count(total))
	lost := human.Count(st.RecordsLost)
	if st.LostPerSecond > 0 {
		lost += fmt.Sprintf(", %s/s now", human.Rate(st.LostPerSecond))
	}
	fmt.Fprintf(tw, "records lost:\t%s\n", lost)
	if st.FlowCapacity > 0 {
		fmt.Fprintf(tw, "flows tracked:\t%s of %s\n", human.Count(uint64(st.FlowEntries)), human.Count(uint64(st.FlowCapacity)))
	}
	if len(st.Sinks) == 0 {
		fmt.Fprintln(tw, "sinks:\tnone")
		return tw.Flush()
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "sinks:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  PIPELINE\tSINK\tSTATE\tQUEUE\tACKED\tDROPPED\tRESTARTS")
	for _, k := range st.Sinks {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s of %s\t%s\t%s\t%d\n", k.Pipeline, k.Sink, k.State,
			human.Count(uint64(k.QueueDepth)), human.Count(uint64(k.QueueCapacity)), human.Count(k.Acked), human.Count(k.Dropped), k.Restarts)
	}
	return tw.Flush()
}
