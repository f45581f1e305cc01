// SPDX-License-Identifier: Apache-2.0

package pipeline

import (
	"testing"

	"github.com/flowtap/flowtap/configs"
	"github.com/flowtap/flowtap/events"
)

// TestRouterDeliversBySelection checks that each pipeline's sinks get
// exactly the events it selected, plus the lost-record markers that every
// kernel-consuming pipeline must see.
func TestRouterDeliversBySelection(t *testing.T) {
	cat, err := events.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	cfg := &configs.Config{Source: "test", Pipelines: []configs.Pipeline{
		{Name: "begins", Events: []string{"net_flow_tcp_begin"}},
		{Name: "ends", Events: []string{"net_flow_tcp_end"}},
		{Name: "base", Events: []string{"net_packet_flow_base"}},
	}}
	plan, err := Resolve(cat, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var sinks []*target
	gotEvents := map[*target]*[]events.Event{}
	for i := range cfg.Pipelines {
		for j := 0; j < 2; j++ { // two sinks per pipeline
			s, got := testSink(i)
			gotEvents[s] = got
			sinks = append(sinks, s)
		}
	}
	r := newRouter(plan, sinks, "host-a")
	for _, ev := range []events.Event{
		{ID: events.IDNetFlowTCPBegin, Payload: &events.FlowBegin{}},
		{ID: events.IDNetFlowTCPEnd, Payload: &events.FlowEnd{}},
		{ID: events.IDNetFlowTCPFailed, Payload: &events.FlowFailed{}},
		{ID: events.IDNetPacketFlowBase, Payload: &events.PacketFlowBase{}},
		{ID: events.IDRecordsLost, Payload: &events.RecordsLost{Lost: 3}},
	} {
		r.route(ev)
	}
	r.flush()
	want := map[int][]events.ID{
		0: {events.IDNetFlowTCPBegin, events.IDRecordsLost},
		1: {events.IDNetFlowTCPEnd, events.IDRecordsLost},
		2: {events.IDNetPacketFlowBase, events.IDRecordsLost},
	}
	for _, s := range sinks {
		var got []events.ID
		for _, ev := range *gotEvents[s] {
			got = append(got, ev.ID)
			if ev.Context.HostName != "host-a" {
				t.Errorf("event %d lacks the host name: %+v", ev.ID, ev.Context)
			}
		}
		if len(got) != len(want[s.pipeline]) {
			t.Fatalf("pipeline %d sink got %v, want %v", s.pipeline, got, want[s.pipeline])
		}
		for i := range got {
			if got[i] != want[s.pipeline][i] {
				t.Fatalf("pipeline %d sink got %v, want %v", s.pipeline, got, want[s.pipeline])
			}
		}
	}
}

// testSink returns a sink of the given pipeline that keeps what the router
// hands it, in the slice it also returns.
func testSink(pipeline int) (*target, *[]events.Event) {
	got := &[]events.Event{}
	return &target{pipeline: pipeline, enqueue: func(evs []events.Event) { *got = append(*got, evs...) }}, got
}
