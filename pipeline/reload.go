// SPDX-License-Identifier: Apache-2.0

package pipeline

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/flowtap/flowtap/configs"
	"github.com/flowtap/flowtap/events"
)

// Reloading (SIGHUP): the reloader goroutine re-reads the config
// (Options.Load), resolves it, and starts the sinks of new or changed
// pipelines, all while events keep flowing; then it hands the main loop a
// swap, which the loop applies between two derivation steps (batches or
// ticks), under the stage's lock: no event is routed by half a swap. A pipeline that keeps
// its name and its sinks keeps its running sinks and their queues and only
// changes selection and filter, so it loses nothing; a removed pipeline's
// sinks stop receiving, drain what they hold and close; the capture and
// derivation keep running throughout. An invalid config changes nothing.

// swap is a prepared configuration for the main loop to switch to.
type swap struct {
	routes  []route
	sinks   []*target    // every sink after the swap
	added   []*target    // started: to watch
	removed []*target    // to drain and close
	plan    *events.Plan // the new shared plan: the derivers it needs turn on
	applied chan struct{}
}

// reloader prepares swaps. Its fields belong to its goroutine.
type reloader struct {
	opts    Options
	log     hclog.Logger
	mon     *Monitor // counts the reloads
	kernel  bool     // the kernel capture runs
	dns     bool     // DNS capture runs
	current *configs.Config
	// running maps pipeline names to their sinks.
	running map[string][]*target
	swaps   chan *swap
	done    chan struct{}
}

func newReloader(opts Options, plan *Plan, sinks []*target, kernel bool, log hclog.Logger) *reloader {
	rl := &reloader{opts: opts, log: log, kernel: kernel, current: opts.Config,
		running: map[string][]*target{}, swaps: make(chan *swap), done: make(chan struct{})}
	for _, s := range sinks {
		name := plan.Pipelines[s.pipeline].Config.Name
		rl.running[name] = append(rl.running[name], s)
	}
	return rl
}

// run waits for reload requests until ctx ends.
func (rl *reloader) run(ctx context.Context) {
	defer close(rl.done)
	if rl.opts.Reload == nil || rl.opts.Load == nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-rl.opts.Reload:
			rl.reload(ctx)
		}
	}
}

// reload re-reads the config and, if it is valid, hands the main loop a
// swap and waits until it is applied.
func (rl *reloader) reload(ctx context.Context) {
	rl.log.Info("reloading config")
	cfg, err := rl.opts.Load()
	if err == nil {
		err = rl.checkLive(cfg)
	}
	var sw *swap
	if err == nil {
		sw, err = rl.prepare(ctx, cfg)
	}
	if err != nil {
		var ps configs.Problems
		if errors.As(err, &ps) {
			for _, p := range ps {
				rl.log.Error("config reload rejected: the running config stays", "problem", p.Error())
			}
		} else {
			rl.log.Error("config reload rejected: the running config stays", "error", err)
		}
		rl.mon.noteReload(false)
		return
	}
	select {
	case rl.swaps <- sw:
	case <-ctx.Done():
		closeSinks(sw.added, nil, rl.log)
		return
	}
	select {
	case <-sw.applied:
	case <-ctx.Done():
		return
	}
	if cfg.Log.Level != rl.current.Log.Level {
		level := hclog.Info
		if cfg.Log.Level != "" {
			level = hclog.LevelFromString(cfg.Log.Level)
		}
		rl.log.SetLevel(level)
	}
	rl.current = cfg
	rl.running = map[string][]*target{}
	for i, rt := range sw.routes {
		rl.running[cfg.Pipelines[i].Name] = rt.sinks
	}
	rl.mon.noteReload(true)
	rl.log.Info("config reloaded", "pipelines", len(cfg.Pipelines), "started_sinks", len(sw.added), "closed_sinks", len(sw.removed))
}

// checkLive rejects a config that needs what cannot start while running,
// and warns about settings that take effect only after a restart.
func (rl *reloader) checkLive(cfg *configs.Config) error {
	if keys := rl.current.ChangedCaptureKeys(cfg); len(keys) > 0 {
		rl.log.Warn("config reload: capture settings cannot change while flowtap runs: restart flowtap to apply them",
			"changed", strings.Join(keys, ", "))
	}
	if cfg.Log.Format != rl.current.Log.Format {
		rl.log.Warn("config reload: log.format changes after a restart")
	}
	if cfg.Log.StatsEvery() != rl.current.Log.StatsEvery() {
		rl.log.Warn("config reload: log.stats_interval changes after a restart")
	}
	if cfg.Metrics != rl.current.Metrics {
		rl.log.Warn("config reload: metrics.listen changes after a restart")
	}
	return nil
}

// prepare resolves cfg and starts the sinks of new and changed pipelines.
func (rl *reloader) prepare(ctx context.Context, cfg *configs.Config) (*swap, error) {
	plan, err := Resolve(rl.opts.Catalogue, cfg)
	if err != nil {
		return nil, err
	}
	if plan.Shared.NeedsKernel() && !rl.kernel {
		return nil, errors.New("the new config needs the kernel capture, which this run did not start: restart flowtap")
	}
	if err := rl.checkDNS(plan.Shared, cfg); err != nil {
		return nil, err
	}
	if err := checkDerivers(plan.Shared); err != nil {
		return nil, err
	}
	oldSinks := map[string][]configs.SinkConfig{}
	for _, p := range rl.current.Pipelines {
		oldSinks[p.Name] = p.Sinks
	}
	// Start the sinks of pipelines that are new or whose sinks changed.
	fresh := &Plan{Shared: plan.Shared}
	var freshIdx []int
	for i, pp := range plan.Pipelines {
		old, ok := oldSinks[pp.Config.Name]
		if ok && reflect.DeepEqual(old, pp.Config.Sinks) && rl.running[pp.Config.Name] != nil {
			continue
		}
		fresh.Pipelines = append(fresh.Pipelines, pp)
		freshIdx = append(freshIdx, i)
	}
	added, err := startSinks(ctx, fresh, rl.opts, rl.log)
	if err != nil {
		return nil, err
	}
	sw := &swap{added: added, plan: plan.Shared, applied: make(chan struct{})}
	sw.routes = make([]route, len(plan.Pipelines))
	keep := map[*target]bool{}
	for i, pp := range plan.Pipelines {
		sw.routes[i] = route{plan: pp.Plan, filter: pp.Filter}
	}
	for _, s := range added {
		i := freshIdx[s.pipeline]
		s.pipeline = i
		sw.routes[i].sinks = append(sw.routes[i].sinks, s)
	}
	for i, pp := range plan.Pipelines {
		if sw.routes[i].sinks == nil {
			sw.routes[i].sinks = rl.running[pp.Config.Name]
			for _, s := range sw.routes[i].sinks {
				keep[s] = true
			}
		}
		sw.sinks = append(sw.sinks, sw.routes[i].sinks...)
	}
	for _, list := range rl.running {
		for _, s := range list {
			if !keep[s] {
				sw.removed = append(sw.removed, s)
			}
		}
	}
	return sw, nil
}

// retirer drains and closes the sinks of removed pipelines.
type retirer struct {
	wg      sync.WaitGroup
	mu      sync.Mutex
	retired []SinkStats
}

// retire closes s (the router no longer sends to it) in the background:
// it delivers what it holds and its plugin closes. A failure while it
// drains is logged, and stops nothing.
func (rt *retirer) retire(s *target, log hclog.Logger) {
	s.retired.Store(true)
	rt.wg.Add(1)
	go func() {
		defer rt.wg.Done()
		st, _ := closeSinks([]*target{s}, nil, log)
		rt.mu.Lock()
		rt.retired = append(rt.retired, st...)
		rt.mu.Unlock()
	}()
}

// stats waits for every retiring sink and returns their counters.
func (rt *retirer) stats() []SinkStats {
	rt.wg.Wait()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.retired
}
