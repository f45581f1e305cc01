// SPDX-License-Identifier: Apache-2.0

package pipeline

import (
	"reflect"
	"strings"
	"testing"

	"github.com/flowtap/flowtap/configs"
	"github.com/flowtap/flowtap/events"
)

func TestResolveSharesOnePlan(t *testing.T) {
	cat, err := events.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	cfg := &configs.Config{Source: "test", Pipelines: []configs.Pipeline{
		{Name: "begins", Events: []string{"net_flow_tcp_begin"}, Sinks: []configs.SinkConfig{{Plugin: "stdout"}}},
		{Name: "ends", Events: []string{"flows", "-net_flow_tcp_begin"}, Sinks: []configs.SinkConfig{{Plugin: "stdout"}}},
	}}
	p, err := Resolve(cat, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Pipelines) != 2 {
		t.Fatalf("%d pipeline plans", len(p.Pipelines))
	}
	if !p.Pipelines[0].Plan.Emits(events.IDNetFlowTCPBegin) || p.Pipelines[0].Plan.Emits(events.IDNetFlowTCPEnd) {
		t.Error("pipeline 'begins' routes the wrong events")
	}
	if p.Pipelines[1].Plan.Emits(events.IDNetFlowTCPBegin) || !p.Pipelines[1].Plan.Emits(events.IDNetFlowTCPEnd) {
		t.Error("pipeline 'ends' routes the wrong events")
	}
	if !p.Shared.Emits(events.IDNetFlowTCPBegin) || !p.Shared.Emits(events.IDNetFlowTCPEnd) || p.Shared.Emits(events.IDNetPacketFlowBase) {
		t.Errorf("shared plan emits %v", p.Shared.Emit)
	}
	// Flow events have DNS fields: the kernel's flow and DNS producers.
	if want := []string{events.ProducerKernelDNS, events.ProducerKernel}; !reflect.DeepEqual(p.Shared.Producers, want) || len(p.Shared.Derivers) != 1 {
		t.Errorf("shared plan runs producers %v derivers %v: want producers %v and one deriver, each once", p.Shared.Producers, p.Shared.Derivers, want)
	}
}

func TestResolveNamesEveryBadPipeline(t *testing.T) {
	cat, err := events.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	cfg := &configs.Config{Source: "x.yaml", Pipelines: []configs.Pipeline{
		{Name: "typo", Events: []string{"flow"}},
		{Name: "empty", Events: []string{"flows,-flows"}},
	}}
	_, err = Resolve(cat, cfg)
	if err == nil {
		t.Fatal("Resolve accepted bad selections")
	}
	for _, want := range []string{"config x.yaml", `pipeline "typo": events: unknown event or set "flow": did you mean "flows"?`, `pipeline "empty": events ["flows,-flows"] select nothing`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
