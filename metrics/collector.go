// SPDX-License-Identifier: Apache-2.0

// Package metrics serves a running flowtap's Prometheus metrics and health
// checks over HTTP (--metrics-addr, config metrics.listen): /metrics in
// the Prometheus text format, /healthz (the process is alive) and /readyz
// (the capture is attached and every sink is up, else 503 with a JSON
// body naming what is not). It also reads them back for 'flowtap
// status' (Query). The numbers come from a pipeline.Monitor: each scrape
// takes one Snapshot of the run, so the metrics of one scrape agree with
// each other. README.md lists every metric.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowtap/flowtap/internal/buildinfo"
	"github.com/flowtap/flowtap/pipeline"
	"github.com/flowtap/flowtap/plugins/supervise"
)

// Namespace prefixes every flowtap metric.
const Namespace = "flowtap"

// collector turns a Monitor's Snapshot into metrics, at each scrape.
// Every label has a bounded set of values: event names (the catalogue),
// pipeline and sink names (the config), BPF program and feature names
// (the embedded object), cache names, and fixed enumerations.
type collector struct {
	mon *pipeline.Monitor

	events                                 *prometheus.Desc
	attached, ringBytes, records, lost     *prometheus.Desc
	feature, statsEnabled                  *prometheus.Desc
	progRuns, progSeconds, progRecursion   *prometheus.Desc
	flowEntries, flowCapacity, flowEvicted *prometheus.Desc
	cacheEntries, cacheHits, cacheMisses   *prometheus.Desc
	cacheEvictions, cacheExpiries          *prometheus.Desc
	sinkEvents, sinkDups, sinkLost         *prometheus.Desc
	sinkQueue                              *prometheus.Desc
	sinkQueueCap, sinkRestarts, sinkUp     *prometheus.Desc
	sinkState, reloads, ready, buildInfo   *prometheus.Desc
	build                                  buildinfo.Info
}

func newCollector(mon *pipeline.Monitor, build buildinfo.Info) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(Namespace+"_"+name, help, labels, nil)
	}
	sink := []string{"pipeline", "sink"}
	return &collector{
		mon:   mon,
		build: build,

		events: d("events_total", "Events flowtap produced, by event name: base events from the kernel (or a replayed file) and events derived from them, whether or not a pipeline selects them.", "event"),

		attached:  d("capture_attached", "1 while the kernel programs are attached and their ring buffer is read, else 0."),
		ringBytes: d("ring_buffer_bytes", "Size of the BPF ring buffer the kernel programs write records to, in bytes (capture.ring_buffer_size)."),
		records:   d("records_total", "Records read from the BPF ring buffer."),
		lost:      d("records_lost_total", "Records the kernel programs could not write because the ring buffer was full: events flowtap never saw."),
		feature:   d("capture_feature_available", "1 when a capture feature's kernel programs loaded and attached on this kernel, 0 when it is unavailable (see 'flowtap doctor').", "feature"),
		statsEnabled: d("bpf_stats_enabled", "1 while the sysctl kernel.bpf_stats_enabled is on, which flowtap_bpf_program_runs_total and "+
			"flowtap_bpf_program_run_seconds_total need. flowtap never turns it on: it costs every BPF program on the host two clock reads per run."),
		progRuns: d("bpf_program_runs_total", "Runs of each of flowtap's BPF programs, counted by the kernel only while kernel.bpf_stats_enabled is 1 "+
			"(present only then; sysctl -w kernel.bpf_stats_enabled=1 turns it on).", "program"),
		progSeconds: d("bpf_program_run_seconds_total", "Time spent in each of flowtap's BPF programs, counted by the kernel only while kernel.bpf_stats_enabled is 1 "+
			"(present only then).", "program"),
		progRecursion: d("bpf_program_recursion_misses_total", "Runs the kernel skipped because the program was already running on that CPU (tracing programs).", "program"),

		flowEntries:  d("flow_table_entries", "Connection endpoints the flow tracker follows now."),
		flowCapacity: d("flow_table_capacity", "Most connection endpoints the flow tracker follows at once (capture.flow_table_size)."),
		flowEvicted:  d("flow_table_evictions_total", "Connections the flow tracker stopped following before they closed: reason idle (nothing heard for capture.flow_idle_timeout) or full (the table was full).", "reason"),

		cacheEntries:   d("cache_entries", "Entries held by a cache of the run: dns (names from DNS answers), metadata (workload identity).", "cache"),
		cacheHits:      d("cache_hits_total", "Lookups that found an entry in the cache.", "cache"),
		cacheMisses:    d("cache_misses_total", "Lookups that found no entry in the cache.", "cache"),
		cacheEvictions: d("cache_evictions_total", "Entries dropped from the cache to make room.", "cache"),
		cacheExpiries:  d("cache_expiries_total", "Entries dropped from the cache because they expired (a DNS answer's TTL ran out).", "cache"),

		sinkEvents: d("sink_events_total", "Events of a sink by what happened to them: queued (taken into its queue), sent (to the plugin, resends included), "+
			"acked (acknowledged by the sink, each once), dropped (never delivered: the queue policy, a failed sink, a shutdown out of time), "+
			"resent (sent again after a failure).", "pipeline", "sink", "state"),
		sinkLost: d("sink_lost_total", "The part of the dropped events no queue policy chose: discarded because the sink failed, its drain ran out of time, "+
			"or an event was too large for the protocol.", sink...),
		sinkDups:     d("sink_duplicates_resent_total", "Resent events whose earlier send may have reached the sink (it died or hung before acknowledging): the most copies it may hold beyond one.", sink...),
		sinkQueue:    d("sink_queue_depth", "Events waiting in the sink's queue.", sink...),
		sinkQueueCap: d("sink_queue_capacity", "Most events the sink's queue holds (queue.size).", sink...),
		sinkRestarts: d("sink_restarts_total", "Restarts of the sink's plugin process.", sink...),
		sinkUp:       d("sink_up", "1 while the sink delivers (state up), 0 while it retries after a failure or has failed.", sink...),
		sinkState:    d("sink_state", "1 for the sink's current state: up, retrying (restarting or resending after a failure), failed (gave up: its events are dropped) or closed.", "pipeline", "sink", "state"),

		reloads:   d("config_reloads_total", "Config reloads (SIGHUP) by result: ok (applied) or failed (rejected: the running config stays).", "result"),
		ready:     d("ready", "1 when /readyz answers 200: the capture is attached and every sink is up."),
		buildInfo: d("build_info", "Always 1; the labels say which flowtap this is.", "version", "commit", "goversion"),
	}
}

// Describe sends every metric's description.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.events, c.attached, c.ringBytes, c.records, c.lost, c.feature, c.statsEnabled,
		c.progRuns, c.progSeconds, c.progRecursion, c.flowEntries, c.flowCapacity, c.flowEvicted,
		c.cacheEntries, c.cacheHits, c.cacheMisses, c.cacheEvictions, c.cacheExpiries,
		c.sinkEvents, c.sinkDups, c.sinkLost, c.sinkQueue, c.sinkQueueCap, c.sinkRestarts, c.sinkUp, c.sinkState,
		c.reloads, c.ready, c.buildInfo} {
		ch <- d
	}
}

// Collect takes one Snapshot and sends its metrics.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.mon.Snapshot()
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	flag := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}

	gauge(c.buildInfo, 1, c.build.Version, c.build.Commit, c.build.GoVersion)
	gauge(c.ready, flag(s.Phase == pipeline.PhaseRunning && len(s.NotReady()) == 0))
	for _, e := range s.Events {
		counter(c.events, float64(e.Count), e.Name)
	}

	if cs := s.Capture; cs.Source == "kernel" {
		gauge(c.attached, flag(cs.Attached))
		gauge(c.ringBytes, float64(cs.RingBufferBytes))
		counter(c.records, float64(cs.Records))
		counter(c.lost, float64(cs.LostRecords))
		for _, f := range cs.Features {
			if !f.Skipped {
				gauge(c.feature, flag(f.Available), f.Name)
			}
		}
		gauge(c.statsEnabled, flag(cs.ProgramStatsEnabled))
		for _, p := range cs.Programs {
			if cs.ProgramStatsEnabled {
				counter(c.progRuns, float64(p.Runs), p.Name)
				counter(c.progSeconds, p.RunTime.Seconds(), p.Name)
			}
			counter(c.progRecursion, float64(p.RecursionMisses), p.Name)
		}
	}

	if f := s.Flows; f.Running {
		gauge(c.flowEntries, float64(f.Entries))
		gauge(c.flowCapacity, float64(f.Capacity))
		counter(c.flowEvicted, float64(f.EvictedIdle), "idle")
		counter(c.flowEvicted, float64(f.EvictedFull), "full")
	}
	for _, k := range s.Caches {
		gauge(c.cacheEntries, float64(k.Entries), k.Name)
		counter(c.cacheHits, float64(k.Hits), k.Name)
		counter(c.cacheMisses, float64(k.Misses), k.Name)
		counter(c.cacheEvictions, float64(k.Evictions), k.Name)
		counter(c.cacheExpiries, float64(k.Expiries), k.Name)
	}

	for _, k := range s.Sinks {
		p, n := k.Pipeline, k.Name
		counter(c.sinkEvents, float64(k.Queued), p, n, "queued")
		counter(c.sinkEvents, float64(k.Sent), p, n, "sent")
		counter(c.sinkEvents, float64(k.Acked), p, n, "acked")
		counter(c.sinkEvents, float64(k.Dropped), p, n, "dropped")
		counter(c.sinkEvents, float64(k.Retried), p, n, "resent")
		counter(c.sinkDups, float64(k.DuplicatesResent), p, n)
		counter(c.sinkLost, float64(k.Lost), p, n)
		gauge(c.sinkQueue, float64(k.QueueDepth), p, n)
		gauge(c.sinkQueueCap, float64(k.QueueCapacity), p, n)
		counter(c.sinkRestarts, float64(k.Restarts), p, n)
		gauge(c.sinkUp, flag(k.State == supervise.Up), p, n)
		for _, st := range supervise.States() {
			gauge(c.sinkState, flag(k.State == st), p, n, st.String())
		}
	}

	counter(c.reloads, float64(s.Reloads.OK), "ok")
	counter(c.reloads, float64(s.Reloads.Failed), "failed")
}
