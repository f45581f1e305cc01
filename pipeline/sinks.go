// SPDX-License-Identifier: Apache-2.0

package pipeline

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/flowtap/flowtap/configs"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/plugins/host"
	"github.com/flowtap/flowtap/plugins/supervise"
)

// SinkStats are one sink's counters at the end of a run.
type SinkStats struct {
	// Pipeline is the pipeline's name; Index the sink's place in its list.
	Pipeline string
	Index    int
	// Plugin is the sink's plugin, as configured.
	Plugin string
	supervise.Counters
	// Failed holds why the sink failed, if it did ("" otherwise).
	Failed string
}

// sinkCloseTimeout bounds the delivery of what is queued when the run
// ends, for all sinks together; what is not delivered by then is dropped.
const sinkCloseTimeout = 60 * time.Second

// target is one configured sink of a pipeline, as the router sees it: a supervised plugin.
type target struct {
	label string
	// name tells the pipeline's sinks apart (SinkStatus.Name).
	name      string
	pipeline  int
	stats     SinkStats
	onFailure supervise.OnFailure
	sup       delivery
	// enqueue offers events to the sink's queue (sup.EnqueueBatch).
	enqueue func([]events.Event)
	// pending are the events routed to the sink in the current
	// derivation step, queued together at its end (router.flush).
	pending []events.Event
	// retired: a reload removed the sink; its failure stops nothing.
	retired atomic.Bool
}

// delivery is what the pipeline needs of a sink's supervised delivery
// (supervise.Delivery); the package's tests stand in for it.
type delivery interface {
	// EnqueueBatch offers events to the sink's queue.
	EnqueueBatch(evs []events.Event)
	// Failed is closed when the supervisor gives up; Err says why.
	Failed() <-chan struct{}
	Err() error
	Counters() supervise.Counters
	// State, QueueDepth and QueueCapacity say how the sink is doing
	// (Snapshot).
	State() supervise.State
	QueueDepth() int
	QueueCapacity() int
	// Close delivers what is queued and ends the plugin.
	Close(ctx context.Context) error
}

// startDelivery starts one sink's supervised delivery.
type startDelivery func(ctx context.Context, cfg supervise.Config) (delivery, error)

// superviseStart is startDelivery with the real supervisor and plugin.
func superviseStart(ctx context.Context, cfg supervise.Config) (delivery, error) {
	s, err := supervise.Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Interface guard: a supervised sink is a delivery.
var _ delivery = (*supervise.Delivery)(nil)

// outputFile is the file sink plugins print to directly: the process's
// standard output, or the Stdout option when it is a file. Any other
// writer gets the plugins' forwarded stdout instead.
func outputFile(w io.Writer) *os.File {
	if w == nil {
		return os.Stdout
	}
	f, _ := w.(*os.File)
	return f
}

// startSinks starts every sink of every pipeline, each behind its
// supervisor. A sink that cannot start fails the whole start.
func startSinks(ctx context.Context, plan *Plan, opts Options, log hclog.Logger) ([]*target, error) {
	start := opts.startDelivery
	if start == nil {
		start = superviseStart
	}
	var sinks []*target
	for i, pp := range plan.Pipelines {
		for j, sc := range pp.Config.Sinks {
			label := fmt.Sprintf("pipeline %q sink %d (%s)", pp.Config.Name, j, sc.Plugin)
			id, err := runAs(sc)
			if err != nil {
				closeSinks(sinks, nil, log)
				return nil, fmt.Errorf("start %s: %w", label, err)
			}
			sup, err := start(ctx, supervise.Config{
				Name: label,
				Host: host.Config{
					RunAs:     id,
					SocketDir: opts.SocketDir,
					Name:      label,
					Plugin:    sc.Plugin,
					Logger:    log.Named("sink").With("pipeline", pp.Config.Name, "plugin", sc.Plugin),
					Stdout:    opts.Stdout,
					Output:    outputFile(opts.Stdout),
					Stderr:    opts.Stderr,
					Names:     opts.Catalogue.Name,
					SHA256:    sc.SHA256,
				},
				SinkConfig:     sc.Config,
				QueueSize:      sc.Queue.Size,
				Policy:         sc.Queue.Policy,
				DrainTimeout:   sc.Queue.DrainTimeout,
				BatchSize:      cmp.Or(sc.Queue.BatchSize, opts.BatchSize),
				FlushInterval:  opts.FlushInterval,
				MaxAttempts:    sc.Restart.MaxAttempts,
				InitialBackoff: sc.Restart.InitialBackoff,
				MaxBackoff:     sc.Restart.MaxBackoff,
				Logger:         log.Named("supervise"),
			})
			if err != nil {
				closeSinks(sinks, nil, log)
				return nil, fmt.Errorf("start %s: %w", label, err)
			}
			onFailure := cmp.Or(sc.OnFailure, supervise.Stop)
			sinks = append(sinks, &target{
				label:     label,
				name:      sinkName(pp.Config.Sinks, j),
				pipeline:  i,
				stats:     SinkStats{Pipeline: pp.Config.Name, Index: j, Plugin: sc.Plugin},
				onFailure: onFailure,
				sup:       sup,
				enqueue:   sup.EnqueueBatch,
			})
		}
	}
	return sinks, nil
}

// sinkName is what tells sink j of a pipeline's list apart from the
// others (SinkStatus.Name, the metrics' sink label): its plugin's name (a
// built-in sink's name, or the binary's file name without the
// flowtap-sink- prefix), with "-<j>" added when another sink of the list
// has that name too.
func sinkName(list []configs.SinkConfig, j int) string {
	short := func(plugin string) string {
		return strings.TrimPrefix(filepath.Base(plugin), host.BinaryPrefix)
	}
	name := short(list[j].Plugin)
	for i, other := range list {
		if i != j && short(other.Plugin) == name {
			return fmt.Sprintf("%s-%d", name, j)
		}
	}
	return name
}

// errOutputClosed is why a run stopped when flowtap's standard output
// lost its reader: a clean stop (see host.ErrOutputClosed).
var errOutputClosed = errors.New("standard output closed")

// watchSinks applies each sink's on_failure policy when it gives up:
// "stop" ends the run with the sink's error, "disable" drops the sink and
// lets the others go on. A sink whose output (flowtap's standard output)
// lost its reader stops the run quietly, whatever its policy: flowtap
// behaves as a Unix tool whose output was closed. It returns when ctx
// ends.
func watchSinks(ctx context.Context, sinks []*target, stop context.CancelCauseFunc, log hclog.Logger) {
	for _, s := range sinks {
		go func() {
			select {
			case <-ctx.Done():
			case <-s.sup.Failed():
				if errors.Is(s.sup.Err(), host.ErrOutputClosed) {
					log.Info("standard output closed: stopping flowtap", "sink", s.label)
					stop(errOutputClosed)
					return
				}
				if s.retired.Load() {
					log.Error("retired sink failed while draining", "sink", s.label, "error", s.sup.Err())
					return
				}
				if s.onFailure == supervise.Disable {
					log.Error("sink disabled after repeated failures (on_failure: disable): its events are dropped, the other sinks go on",
						"sink", s.label, "error", s.sup.Err())
					return
				}
				log.Error("sink failed (on_failure: stop): stopping flowtap", "sink", s.label, "error", s.sup.Err())
				stop(s.sup.Err())
			}
		}()
	}
}

// closeSinks delivers what every sink has queued, closes them, logs their
// counters and returns their totals, and the errors of sinks whose
// failure stops the run, except reported (the error that already stopped
// it). A disabled sink's failure was logged when it happened.
func closeSinks(sinks []*target, reported error, log hclog.Logger) ([]SinkStats, error) {
	ctx, cancel := context.WithTimeout(context.Background(), sinkCloseTimeout)
	defer cancel()
	// Close them all at once: each drains its own queue.
	errs := make([]error, len(sinks))
	done := make(chan int, len(sinks))
	for i, s := range sinks {
		go func() {
			errs[i] = s.sup.Close(ctx)
			done <- i
		}()
	}
	for range sinks {
		<-done
	}
	stats := make([]SinkStats, len(sinks))
	var failed []error
	for i, s := range sinks {
		st := s.stats
		st.Counters = s.sup.Counters()
		if err := errs[i]; err != nil {
			st.Failed = err.Error()
			switch {
			case reported != nil && errors.Is(reported, err):
			case errors.Is(err, host.ErrOutputClosed):
			case s.sup.Err() != nil && s.onFailure == supervise.Disable:
			default:
				failed = append(failed, fmt.Errorf("close %s: %w", s.label, err))
			}
		}
		stats[i] = st
		c := st.Counters
		log.Info("sink counters", "sink", s.label, "queued", c.Queued, "sent", c.Sent, "acked", c.Acked,
			"retried", c.Retried, "dropped", c.Dropped, "lost", c.Lost, "duplicates_resent", c.DuplicatesResent,
			"restarts", c.Restarts, "failed", st.Failed != "")
	}
	return stats, errors.Join(failed...)
}
