// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/plugins/sdk"
)

// AppendSDKFields appends fields, flowtap's internal event fields, as the
// SDK's fields (what a sink receives), for tests and benchmarks that hand
// events to an sdk.Sink in-process. The SDK has its own types on purpose
// (plugins/sdk/README.md): this copy is the in-process stand-in for the
// encoding that carries them to a plugin.
func AppendSDKFields(dst []sdk.Field, fields []events.Field) []sdk.Field {
	for _, f := range fields {
		v := f.Value
		dst = append(dst, sdk.Field{Name: f.Name, Value: sdk.Value{
			Kind: sdk.Kind(v.Kind), Str: v.Str, Uint: v.Uint, Int: v.Int, Bool: v.Bool, Strings: v.Strings,
		}})
	}
	return dst
}

// SDKFlowBegin is a net_flow_tcp_begin event as a sink receives it, with
// every kind of context and a few awkward values (the largest cookie, an
// empty list), for the built-in sinks' format tests.
func SDKFlowBegin() sdk.Event {
	return sdk.Event{
		Timestamp: 1700000000123456789,
		ID:        sdk.ID(events.IDNetFlowTCPBegin),
		Name:      events.NameNetFlowTCPBegin,
		Context: sdk.Context{
			SocketCookie: 18446744073709551615,
			CgroupID:     4242,
			PID:          1234,
			UID:          1000,
			Comm:         "curl",
			HostName:     "box",
		},
		Fields: []sdk.Field{
			{Name: "conn_direction", Value: sdk.String("outgoing")},
			{Name: "src", Value: sdk.String("10.0.0.1")},
			{Name: "dst", Value: sdk.String("93.184.216.34")},
			{Name: "src_port", Value: sdk.Uint(43210)},
			{Name: "dst_port", Value: sdk.Uint(443)},
			{Name: "src_dns", Value: sdk.Strings(nil)},
			{Name: "dst_dns", Value: sdk.Strings([]string{"example.com", "www.example.com"})},
		},
	}
}

// SDKContext converts an event's context to the SDK's, as the encoding
// carries it: the workload's fields flattened, Host for a known socket of
// no container.
func SDKContext(c events.Context) sdk.Context {
	out := sdk.Context{SocketCookie: c.SocketCookie, CgroupID: c.CgroupID, PID: c.PID, UID: c.UID, Comm: c.Comm,
		HostName: c.HostName, PPID: c.PPID, ProcessStart: c.ProcessStart, Exe: c.Exe}
	if w := c.Workload; w != nil {
		out.Host = w.ContainerID == ""
		out.ContainerID, out.ContainerRuntime, out.ContainerName, out.ContainerImage = w.ContainerID, w.ContainerRuntime, w.ContainerName, w.ContainerImage
		out.PodName, out.PodNamespace, out.PodUID, out.PodLabels = w.PodName, w.PodNamespace, w.PodUID, w.PodLabels
	}
	return out
}
