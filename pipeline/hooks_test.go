// SPDX-License-Identifier: Apache-2.0

package pipeline

import (
	"slices"
	"testing"

	"github.com/flowtap/flowtap/configs"
	"github.com/flowtap/flowtap/events"
)

// TestKernelHooksPerSelection pins which kernel programs each selection
// loads: flow events alone cost no per-packet program; DNS adds the DNS
// packet programs; net_packet_flow_base selected by name adds the flow
// packet programs and the state program that goes with them.
func TestKernelHooksPerSelection(t *testing.T) {
	cat, err := events.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	// The sock_ops program reads the caller of connect() itself (on a
	// kernel where it cannot, connect4/6 come back).
	flows := []string{"flowtap_sockops", "flowtap_files", "flowtap_reset", "flowtap_snapshot"}
	dns := []string{"flowtap_dns_ingress", "flowtap_dns_egress"}
	off := false
	for _, tt := range []struct {
		name   string
		events []events.ID
		dnsOff bool
		want   []string
	}{
		{"flows, DNS off", []events.ID{events.IDNetFlowTCPBegin, events.IDNetFlowTCPEnd, events.IDNetFlowTCPFailed}, true, flows},
		{"flows", []events.ID{events.IDNetFlowTCPBegin, events.IDNetFlowTCPEnd, events.IDNetFlowTCPFailed}, false, append(slices.Clone(dns), flows...)},
		{"net_packet_dns", []events.ID{events.IDNetPacketDNS}, false, append(slices.Clone(dns), flows...)},
		{"packet events", []events.ID{events.IDNetFlowTCPBegin, events.IDNetPacketFlowBase}, true, []string{
			"flowtap_ingress", "flowtap_egress", "flowtap_connect4", "flowtap_connect6", "flowtap_sockops",
			"flowtap_files", "flowtap_owners", "flowtap_state", "flowtap_subflows", "flowtap_reset", "flowtap_snapshot"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := cat.Resolve(tt.events...)
			if err != nil {
				t.Fatal(err)
			}
			cfg := &configs.Config{Source: "test"}
			if tt.dnsOff {
				cfg.Capture.DNS.Enabled = &off
			}
			progs, err := PlannedPrograms(plan, cfg)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range progs {
				got = append(got, p.Name)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("programs %v, want %v", got, tt.want)
			}
		})
	}
}
