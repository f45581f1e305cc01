// SPDX-License-Identifier: Apache-2.0

package pipeline

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/flowtap/flowtap/bpf"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/replay"
)

// producer is where a run's base events come from: the kernel capture
// (bpf.Capture), a capture file (replay.Producer), or nothing (a selection
// that needs no kernel program). Run treats them alike: it hands each
// batch to the stage, ticks the stage on the producer's clock, and at the
// end ends open flows at the producer's end and closes it.
type producer interface {
	// run hands base events to emit in batches, on run's goroutine, until
	// the input ends (a file) or ctx is cancelled (the kernel: a final
	// snapshot of the live sockets first), and returns once it has
	// delivered everything it holds. Its error names the producer.
	run(ctx context.Context, emit func([]events.Event)) error
	// recycle hands back a batch emit is done with, for reuse.
	recycle(batch []events.Event)
	// now is the time on the events' clock, for ticks.
	now() int64
	// eventClock reports that the events carry the only clock (a file):
	// the stage follows their timestamps, and Run starts no ticker.
	eventClock() bool
	// end is when flows still open at the end are ended: the producer's
	// last moment.
	end() int64
	// close releases the producer, adds its counters to stats and logs
	// them.
	close(stats *Stats) error
	// status fills what a Snapshot says about the producer; it is called
	// from any goroutine, also after close.
	status(cs *CaptureStatus)
}

// baseBatch is the most base events a producer hands over at a time.
const baseBatch = 256

// Replay is a capture file for Run to replay (package replay).
type Replay struct {
	// Name names the file in logs and errors ("-" for standard input).
	Name string
	// Input is the file's content, classic pcap or pcapng.
	Input io.Reader
	// Local are the local networks (replay.Options.Local); empty means
	// every address.
	Local []netip.Prefix
}

// kernel is the kernel capture as a producer.
type kernel struct {
	c *bpf.Capture
	// every is how often live sockets are snapshotted while running.
	every time.Duration
	log   hclog.Logger
}

// openKernel loads and attaches the kernel programs that hooks (from
// KernelHooks, with the cgroup and ring size set) select; "" as the
// cgroup means the cgroup v2 mount's root.
func openKernel(hooks bpf.Options, every time.Duration, selected []string, log hclog.Logger) (*kernel, error) {
	if hooks.CgroupPath == "" {
		var err error
		if hooks.CgroupPath, err = bpf.FindCgroup2Mount(); err != nil {
			return nil, err
		}
	}
	hooks.Logger = log.Named("bpf")
	c, err := bpf.Open(hooks)
	if err != nil {
		return nil, err
	}
	log.Info("capture started", "cgroup", hooks.CgroupPath, "dns", hooks.DNS, "events", selected)
	return &kernel{c: c, every: every, log: log}, nil
}

// run reads the ring buffer on a context of its own: when ctx ends, the
// live sockets are snapshotted first (so open flows end with current
// counters), then the capture drains the ring buffer and stops.
func (k *kernel) run(ctx context.Context, emit func([]events.Event)) error {
	captureCtx, stopCapture := context.WithCancel(context.Background())
	defer stopCapture()
	stopped := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		k.snapshots(ctx, stopped, stopCapture)
	}()
	err := k.c.RunBatches(captureCtx, baseBatch, emit)
	close(stopped)
	<-done
	if err != nil {
		return fmt.Errorf("kernel capture: %w", err)
	}
	return nil
}

// snapshots asks the kernel for a report of live sockets every k.every;
// when ctx ends it takes a last one and stops the capture, which then
// delivers what is left in the ring buffer. It returns at once when the
// capture stopped by itself (stopped).
func (k *kernel) snapshots(ctx context.Context, stopped <-chan struct{}, stop func()) {
	if !k.c.Has(bpf.FeatureSnapshots) {
		// Open said so, once.
		select {
		case <-stopped:
		case <-ctx.Done():
			stop()
		}
		return
	}
	t := time.NewTicker(k.every)
	defer t.Stop()
	for {
		select {
		case <-stopped:
			return
		case <-ctx.Done():
			if err := k.c.Snapshot(); err != nil {
				k.log.Warn("final socket snapshot failed: open flows end with the counters last seen", "error", err)
			}
			stop()
			return
		case <-t.C:
			if err := k.c.Snapshot(); err != nil {
				k.log.Warn("socket snapshot failed", "error", err)
			}
		}
	}
}

func (k *kernel) recycle(batch []events.Event) { k.c.Recycle(batch) }

// now is the capture's clock (bpf.Capture.Now), which a wall clock step
// does not move: a step cannot time out every pending SYN or idle flow
// at once. It goes no further than what the capture has delivered
// (bpf.Capture.CaughtUp): while the reader lags behind the programs (a
// sink with the block policy holds the pipeline up), a SYN-ACK still in
// the ring must not be taken for a timeout, nor an idle flow's report
// for its absence.
func (k *kernel) now() int64       { return min(k.c.Now(), k.c.CaughtUp()) }
func (k *kernel) eventClock() bool { return false }
func (k *kernel) end() int64       { return k.c.Now() }

func (k *kernel) status(cs *CaptureStatus) {
	st := k.c.Stats()
	*cs = CaptureStatus{Source: "kernel", Attached: k.c.Attached(), RingBufferBytes: k.c.RingBufferSize(),
		Records: st.Records, LostRecords: st.Lost, Features: k.c.Features()}
	var err error
	if cs.ProgramStatsEnabled, err = bpf.StatsEnabled(); err != nil {
		k.log.Debug("BPF program statistics unknown", "error", err)
	}
	if cs.Programs, err = k.c.ProgramStats(); err != nil {
		k.log.Debug("BPF program statistics unknown", "error", err)
	}
}

func (k *kernel) close(stats *Stats) error {
	stats.LostRecords = k.c.Stats().Lost
	if err := k.c.Close(); err != nil {
		return fmt.Errorf("close kernel capture: %w", err)
	}
	return nil
}

// file is a capture file as a producer. It reports its open connections
// itself, in capture time, and ends by itself; a stop (signal, failed
// sink) cuts it short.
type file struct {
	p    *replay.Producer
	name string
	log  hclog.Logger
}

// openFile reads the file's header: a file that is not a capture fails
// here, before any plugin is launched.
func openFile(r *Replay, opts replay.Options, selected []string, log hclog.Logger) (*file, error) {
	opts.Name, opts.Local, opts.Logger = r.Name, r.Local, log.Named("replay")
	p := replay.New(r.Input, opts)
	if err := p.Open(); err != nil {
		return nil, err
	}
	log.Info("replay started: no kernel program loads", "file", r.Name, "dns", opts.DNS, "events", selected)
	return &file{p: p, name: r.Name, log: log}, nil
}

// fileHandoff is how many batches the file's reader may be ahead of
// derivation.
const fileHandoff = 8

// run reads and decodes the file on a goroutine of its own, beside
// derivation on run's goroutine: a capture is read as fast as the two
// stages go together, each on a core, instead of one after the other.
// Batches reach emit in the file's order. run's error names the file.
func (f *file) run(ctx context.Context, emit func([]events.Event)) error {
	batches := make(chan []events.Event, fileHandoff)
	done := make(chan error, 1)
	go func() {
		defer close(batches)
		done <- f.p.RunBatches(ctx, baseBatch, func(b []events.Event) { batches <- b })
	}()
	for b := range batches {
		emit(b)
	}
	return <-done
}

func (f *file) recycle(batch []events.Event) { f.p.Recycle(batch) }
func (f *file) now() int64                   { return f.p.End() }
func (f *file) eventClock() bool             { return true }

// end is the capture's end: the agent's stop.
func (f *file) end() int64 { return f.p.End() }

func (f *file) status(cs *CaptureStatus) { cs.Source = "file" }

func (f *file) close(stats *Stats) error {
	s := f.p.Stats()
	stats.Replay = s
	f.log.Info("replay", "file", f.name, "packets", s.Packets, "used", s.Used, "base_events", s.Events,
		"not_ip", s.NotIP, "other_protocol", s.OtherProtocol, "fragments", s.Fragments, "not_local", s.NotLocal,
		"snaplen_cut", s.Snaplen, "malformed", s.Malformed, "unknown_link_type", s.UnknownLinkType,
		"skipped_blocks", s.SkippedBlocks, "out_of_window", s.OutOfWindow, "evicted", s.Evicted)
	return nil
}

// idle is the producer of a selection that needs no kernel program: it
// produces nothing, and the run ends at once.
type idle struct{}

func (idle) run(context.Context, func([]events.Event)) error { return nil }
func (idle) recycle([]events.Event)                          {}
func (idle) now() int64                                      { return time.Now().UnixNano() }
func (idle) eventClock() bool                                { return false }
func (idle) end() int64                                      { return time.Now().UnixNano() }
func (idle) close(*Stats) error                              { return nil }
func (idle) status(cs *CaptureStatus)                        { cs.Source = "none" }
