// SPDX-License-Identifier: Apache-2.0

package pipeline

import (
	"fmt"

	"github.com/flowtap/flowtap/bpf"
	"github.com/flowtap/flowtap/configs"
	"github.com/flowtap/flowtap/events"
)

// KernelHooks turns what a plan selects into what the kernel capture
// loads: the cheapest hooks that serve the selection. Flow events come
// from the sock_ops and connect programs alone; a per-packet program is
// added only for DNS capture (a flow event's src_dns/dst_dns, or
// net_packet_dns) and for net_packet_flow_base selected by name, whose
// events are then every flow-relevant packet. cgroup, ring size and
// logger are left for the caller.
func KernelHooks(plan *events.Plan, capture configs.Capture) (bpf.Options, error) {
	dns, err := dnsEnabled(plan, capture.DNS)
	if err != nil {
		return bpf.Options{}, err
	}
	return bpf.Options{DNS: dns, PacketFlows: plan.Emits(events.IDNetPacketFlowBase)}, nil
}

// PlannedPrograms lists the kernel programs a run of cfg loads, in load
// order, on a kernel that has every feature; nil when the plan needs no
// kernel program.
func PlannedPrograms(plan *events.Plan, cfg *configs.Config) ([]bpf.ProgramInfo, error) {
	if !plan.NeedsKernel() {
		return nil, nil
	}
	hooks, err := KernelHooks(plan, cfg.Capture)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", cfg.Source, err)
	}
	return bpf.PlannedPrograms(hooks)
}
