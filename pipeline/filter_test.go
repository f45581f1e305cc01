// SPDX-License-Identifier: Apache-2.0

package pipeline

import (
	"net/netip"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/flowtap/flowtap/configs"
	"github.com/flowtap/flowtap/events"
)

func begin(dir events.ConnDirection, src string, dport uint16) events.Event {
	return events.Event{ID: events.IDNetFlowTCPBegin, Payload: &events.FlowBegin{Flow: events.Flow{
		Direction: dir, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr("10.0.0.1"), DstPort: dport}}}
}

// TestRouterAppliesFilters checks that each pipeline's filter keeps only
// its events, and that lost-record markers pass every filter.
func TestRouterAppliesFilters(t *testing.T) {
	cat, err := events.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	cfg := &configs.Config{Source: "test", Pipelines: []configs.Pipeline{
		{Name: "privileged", Events: []string{"flows"}, Filter: "conn_direction=incoming and dst_port<1024 and not src=127.0.0.0/8"},
		{Name: "all", Events: []string{"net_flow_tcp_begin"}},
	}}
	plan, err := Resolve(cat, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s0, got0 := testSink(0)
	s1, got1 := testSink(1)
	sinks := []*target{s0, s1}
	r := newRouter(plan, sinks, "h")
	for _, ev := range []events.Event{
		begin(events.Incoming, "192.0.2.1", 22),   // privileged, all
		begin(events.Incoming, "127.0.0.1", 22),   // all
		begin(events.Outgoing, "192.0.2.1", 22),   // all
		begin(events.Incoming, "192.0.2.1", 8080), // all
		{ID: events.IDRecordsLost, Payload: &events.RecordsLost{Lost: 1}},
	} {
		r.route(ev)
	}
	r.flush()
	counts := []int{len(*got0), len(*got1)}
	if counts[0] != 2 || counts[1] != 5 {
		t.Errorf("sinks got %v events, want [2 5] (one flow and the lost marker; everything)", counts)
	}
}

// TestReloadKeepsUnchangedPipelines checks how a reload sorts pipelines:
// one that keeps its name and sinks keeps its running sinks (with the new
// filter); a removed one is drained.
func TestReloadKeepsUnchangedPipelines(t *testing.T) {
	cat, err := events.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	stdout := []configs.SinkConfig{{Plugin: "stdout"}}
	old := &configs.Config{Source: "old", Pipelines: []configs.Pipeline{
		{Name: "keep", Events: []string{"flows"}, Sinks: stdout},
		{Name: "drop", Events: []string{"flows"}, Sinks: stdout},
	}}
	plan, err := Resolve(cat, old)
	if err != nil {
		t.Fatal(err)
	}
	keep, _ := testSink(0)
	drop, _ := testSink(1)
	next := &configs.Config{Source: "new", Pipelines: []configs.Pipeline{
		{Name: "keep", Events: []string{"net_flow_tcp_begin"}, Filter: "dst_port=22", Sinks: stdout},
	}}
	rl := newReloader(Options{Config: old, Catalogue: cat, Load: func() (*configs.Config, error) { return next, nil }},
		plan, []*target{keep, drop}, true, hclog.NewNullLogger())
	sw, err := rl.prepare(t.Context(), next)
	if err != nil {
		t.Fatal(err)
	}
	if len(sw.added) != 0 || len(sw.removed) != 1 || sw.removed[0] != drop {
		t.Fatalf("added %d, removed %v; want none added and the 'drop' sink removed", len(sw.added), sw.removed)
	}
	if len(sw.routes) != 1 || len(sw.routes[0].sinks) != 1 || sw.routes[0].sinks[0] != keep || sw.routes[0].filter == nil {
		t.Fatalf("routes = %+v; want 'keep' with its running sink and the new filter", sw.routes)
	}
	if !sw.routes[0].plan.Emits(events.IDNetFlowTCPBegin) || sw.routes[0].plan.Emits(events.IDNetFlowTCPEnd) {
		t.Error("the kept pipeline did not get its new selection")
	}

	// A config that needs the kernel when the capture did not start is
	// refused.
	rl.kernel = false
	if _, err := rl.prepare(t.Context(), next); err == nil {
		t.Error("prepare accepted a config that needs a capture this run does not have")
	}
}
