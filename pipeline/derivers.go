// SPDX-License-Identifier: Apache-2.0

package pipeline

import (
	"cmp"
	"fmt"

	"github.com/hashicorp/go-hclog"

	"github.com/flowtap/flowtap/derive"
	"github.com/flowtap/flowtap/events"
)

// A deriver computes derived events from base events. It runs inside the
// stage, under its lock: one call at a time, in the events' order.
type deriver interface {
	// handle derives from one base event of the deriver's inputs.
	handle(ev events.Event)
	// nextDeadline says when tick has something to do next (the events'
	// clock); false: nothing is pending.
	nextDeadline() (int64, bool)
	// tick advances the deriver's clock to now (ns, the events' clock):
	// timeouts fire.
	tick(now int64)
	// close ends what is still open at end and logs the deriver's
	// counters.
	close(end int64)
}

// deriverSpec is one entry of the deriver table: the implementation of a
// catalogue Definition.Deriver name.
type deriverSpec struct {
	// name is the Definition.Deriver it implements.
	name string
	// inputs are the base events it takes.
	inputs []events.ID
	// runs says whether a plan needs it running. Once it runs it runs to
	// the end of the run: what it holds open must still end.
	runs func(*events.Plan) bool
	// new builds it for a run. A nil deriver (and nil error) means its
	// inputs are not produced in this run (DNS capture off).
	new func(env *deriveEnv) (deriver, error)
}

// deriveEnv is what a deriver's constructor gets from the run.
type deriveEnv struct {
	// tracker bounds the flow tracker.
	tracker derive.Config
	// dns: DNS capture runs; dnsCacheSize bounds the name cache.
	dns          bool
	dnsCacheSize int
	// names resolves addresses for derivers that need it: the DNS
	// deriver, built first, sets it.
	names derive.Resolver
	// dnsStats, if set, receives the DNS deriver's counters at close.
	dnsStats *DNSStats
	// emit hands on a derived event (counted, routed).
	emit func(events.Event)
	// selected says whether a pipeline selects an event now (it changes
	// on reload).
	selected func(events.ID) bool
	// report registers what a deriver adds to a Snapshot, and addCache a
	// cache's counters (stage.addCache); the stage calls them under its
	// lock.
	report   func(func(*Snapshot))
	addCache func(name string, stats func() CacheStats)
	log      hclog.Logger
}

// derivers is the deriver table, one entry per Definition.Deriver of the
// catalogue, in construction order: a deriver that serves another (the
// DNS cache names the flow tracker's addresses) comes first. Adding a
// derivation is adding an entry here and its file; Run, reload and the
// stage stay as they are. checkDerivers refuses a plan naming a deriver
// the table lacks.
var derivers = []deriverSpec{
	{
		name:   events.DeriverDNS,
		inputs: []events.ID{events.IDNetPacketDNSBase},
		// The DNS stage also feeds the cache behind src_dns and dst_dns:
		// it runs whenever DNS records are captured, net_packet_dns
		// selected or not.
		runs: func(p *events.Plan) bool { return p.Needs(events.ProducerKernelDNS) },
		new:  newDNSDeriver,
	},
	{
		name: events.DeriverFlowTracker,
		// Lost-record markers too: while records are lost, the tracker
		// must not take a missing record for a timeout.
		inputs: []events.ID{events.IDNetPacketFlowBase, events.IDNetTCPSocketBase, events.IDRecordsLost},
		runs:   func(p *events.Plan) bool { return p.Needs(events.DeriverFlowTracker) },
		new:    newTrackerDeriver,
	},
}

// checkDerivers fails, naming it, on a deriver the plan needs and the
// table does not implement.
func checkDerivers(plan *events.Plan) error {
	for _, name := range plan.Derivers {
		found := false
		for i := range derivers {
			found = found || derivers[i].name == name
		}
		if !found {
			return fmt.Errorf("the plan needs deriver %q, which pipeline's deriver table does not implement", name)
		}
	}
	return nil
}

// trackerDeriver is the flow tracker (derive.Tracker) as a deriver.
type trackerDeriver struct {
	t   *derive.Tracker
	log hclog.Logger
}

func newTrackerDeriver(env *deriveEnv) (deriver, error) {
	cfg := env.tracker
	cfg.Names = env.names
	d := &trackerDeriver{t: derive.NewTracker(cfg, env.emit), log: env.log}
	capacity := cmp.Or(cfg.MaxFlows, derive.DefaultMaxFlows)
	env.report(func(s *Snapshot) {
		ts := d.t.Stats()
		s.Flows = FlowTableStatus{Running: true, Entries: ts.Flows, Capacity: capacity, EvictedIdle: ts.EvictedIdle, EvictedFull: ts.EvictedFull}
	})
	return d, nil
}

func (d *trackerDeriver) handle(ev events.Event)      { d.t.Handle(ev) }
func (d *trackerDeriver) nextDeadline() (int64, bool) { return d.t.NextDeadline() }
func (d *trackerDeriver) tick(now int64)              { d.t.Tick(now) }

func (d *trackerDeriver) close(end int64) {
	d.t.Close(end)
	ts := d.t.Stats()
	d.log.Info("flow tracker", "begun", ts.Begun, "ended", ts.Ended, "failed", ts.Failed,
		"evicted_idle", ts.EvictedIdle, "evicted_full", ts.EvictedFull, "evicted_reused", ts.EvictedReused,
		"ended_without_close_report", ts.CloseMissing, "loss_markers", ts.LossMarkers,
		"unresolved_attempts", ts.Unresolved, "incomplete", ts.Incomplete)
}

// dnsDeriver is the DNS stage (dns.go) as a deriver.
type dnsDeriver struct {
	d     *dnsStage
	stats *DNSStats
	log   hclog.Logger
}

func newDNSDeriver(env *deriveEnv) (deriver, error) {
	if !env.dns {
		return nil, nil
	}
	d := newDNSStage(env.dnsCacheSize, func() bool { return env.selected(events.IDNetPacketDNS) }, env.emit)
	env.names = d.cache
	env.addCache("dns", func() CacheStats {
		cs := d.cache.Stats()
		return CacheStats{Entries: cs.Entries, Hits: cs.Hits, Misses: cs.Misses, Evictions: cs.Evictions, Expiries: cs.Expiries}
	})
	return &dnsDeriver{d: d, stats: env.dnsStats, log: env.log}, nil
}

func (d *dnsDeriver) handle(ev events.Event)    { d.d.handle(ev) }
func (*dnsDeriver) nextDeadline() (int64, bool) { return 0, false }
func (*dnsDeriver) tick(int64)                  {}
func (d *dnsDeriver) close(int64) {
	d.d.log(d.log)
	if d.stats != nil {
		*d.stats = d.d.stats
		d.stats.Cache = d.d.cache.Stats()
	}
}
