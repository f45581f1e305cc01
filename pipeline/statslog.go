// SPDX-License-Identifier: Apache-2.0

package pipeline

import (
	"context"
	"math"
	"time"

	"github.com/hashicorp/go-hclog"
)

// logStats logs, every interval until ctx ends, one INFO line "stats"
// with the counters that moved since the previous line (statsLine).
func logStats(ctx context.Context, mon *Monitor, every time.Duration, log hclog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	prev, at := mon.Snapshot(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cur := mon.Snapshot()
			log.Info("stats", statsLine(prev, cur, now.Sub(at))...)
			prev, at = cur, now
		}
	}
}

// statsLine is the key/value pairs of the stats line: the interval, then
// what moved between prev and cur, in this order: events per second and
// each event's count, the capture's records and lost records, flow table
// evictions, each cache's counters, each sink's counters (keys
// sink.PIPELINE.NAME.COUNTER), reloads. A counter that did not move is
// left out, so a quiet interval logs the interval alone.
func statsLine(prev, cur Snapshot, elapsed time.Duration) []any {
	// Durations as text, in the JSON log format too.
	kv := []any{"interval", elapsed.Round(time.Second).String()}
	add := func(key string, before, now uint64) {
		if now > before {
			kv = append(kv, key, now-before)
		}
	}
	before := map[string]uint64{}
	for _, e := range prev.Events {
		before[e.Name] = e.Count
	}
	var moved uint64
	for _, e := range cur.Events {
		moved += e.Count - min(e.Count, before[e.Name])
	}
	if moved > 0 && elapsed > 0 {
		kv = append(kv, "events_per_second", math.Round(float64(moved)/elapsed.Seconds()*10)/10)
	}
	for _, e := range cur.Events {
		add(e.Name, before[e.Name], e.Count)
	}
	add("records", prev.Capture.Records, cur.Capture.Records)
	add("lost_records", prev.Capture.LostRecords, cur.Capture.LostRecords)
	add("flows.evicted_idle", prev.Flows.EvictedIdle, cur.Flows.EvictedIdle)
	add("flows.evicted_full", prev.Flows.EvictedFull, cur.Flows.EvictedFull)
	for _, c := range cur.Caches {
		var p CacheStats
		for _, pc := range prev.Caches {
			if pc.Name == c.Name {
				p = pc.CacheStats
			}
		}
		add("cache."+c.Name+".hits", p.Hits, c.Hits)
		add("cache."+c.Name+".misses", p.Misses, c.Misses)
		add("cache."+c.Name+".evictions", p.Evictions, c.Evictions)
		add("cache."+c.Name+".expiries", p.Expiries, c.Expiries)
	}
	for _, k := range cur.Sinks {
		var p SinkStatus
		for _, ps := range prev.Sinks {
			if ps.Pipeline == k.Pipeline && ps.Name == k.Name {
				p = ps
			}
		}
		key := "sink." + k.Pipeline + "." + k.Name + "."
		add(key+"queued", p.Queued, k.Queued)
		add(key+"sent", p.Sent, k.Sent)
		add(key+"acked", p.Acked, k.Acked)
		add(key+"retried", p.Retried, k.Retried)
		add(key+"dropped", p.Dropped, k.Dropped)
		add(key+"lost", p.Lost, k.Lost)
		add(key+"duplicates_resent", p.DuplicatesResent, k.DuplicatesResent)
		add(key+"restarts", p.Restarts, k.Restarts)
	}
	add("reloads_ok", prev.Reloads.OK, cur.Reloads.OK)
	add("reloads_failed", prev.Reloads.Failed, cur.Reloads.Failed)
	return kv
}
