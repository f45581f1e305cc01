// SPDX-License-Identifier: Apache-2.0

// Package wire is what the flowtap host (plugins/host) and the sink SDK
// (plugins/sdk) share to talk to each other: the protocol version, the
// go-plugin handshake and plugin binding, the environment variables the
// host sets for a plugin, the message bound, and the header and kind
// codes of the event encoding (README.md). The gRPC service itself is in
// wire/proto, the gRPC options both ends use in wire/grpcopt.
//
// It is a Go module of its own, so that the SDK module needs nothing
// else of flowtap; it is internal, so that nobody else depends on it.
package wire

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/flowtap/flowtap/plugins/internal/wire/proto"
)

// ProtocolVersion is the version of the sink protocol (proto/sink.proto
// and the event encoding) that the host and the SDK speak. It changes
// only when a host and a plugin built against different versions could
// no longer understand each other. Version 3 adds the owner's parent,
// start and executable and the workload to every event (layout 2);
// version 2 sent each batch in the binary event encoding (layout 1);
// version 1 sent a protobuf message per event and per field.
const ProtocolVersion = 3

// PluginName is the name the sink is dispensed under in the go-plugin
// plugin set.
const PluginName = "sink"

// MaxBatchBytes is the largest message a plugin accepts on its Write
// stream. The host splits larger batches into messages of at most its own
// limit (4 MiB unless configured), which may not exceed this one.
const MaxBatchBytes = 64 << 20

// Environment variables the host sets for a plugin.
const (
	// LogLevelEnv is the level of the host's own logger (an hclog level
	// name, e.g. "info"), so a plugin does not produce log lines the host
	// would drop.
	LogLevelEnv = "FLOWTAP_PLUGIN_LOG_LEVEL"
	// ValidateOnlyEnv is "1" when the host started the plugin only to
	// check a configuration (sdk.ValidateOnly).
	ValidateOnlyEnv = "FLOWTAP_VALIDATE_ONLY"
	// OutputFDEnv names the file descriptor of the host's standard
	// output, handed to the plugin (sdk.Output).
	OutputFDEnv = "FLOWTAP_OUTPUT_FD"
	// AckTimeoutEnv is how long the host waits for a batch's
	// acknowledgement before it counts the plugin as hung, as a Go
	// duration (sdk.AckTimeout); unset means DefaultAckTimeout.
	AckTimeoutEnv = "FLOWTAP_ACK_TIMEOUT"
)

// DefaultAckTimeout is how long the host waits for a batch's
// acknowledgement unless told otherwise.
const DefaultAckTimeout = 30 * time.Second

// Handshake is the go-plugin handshake between the flowtap host and a sink
// plugin. The magic cookie is not a security measure: it lets a plugin
// binary started by hand explain that it is a plugin instead of hanging.
// The "v1" in its value is the cookie's own version, not the protocol's
// (VersionedPlugins carries that): it never changes with the protocol, so
// that a plugin of any protocol version completes the handshake and can
// be told which version it speaks.
var Handshake = plugin.HandshakeConfig{
	// ProtocolVersion is left zero: VersionedPlugins carries the versions.
	MagicCookieKey:   "FLOWTAP_SINK_PLUGIN",
	MagicCookieValue: "e3c1a9b4-flowtap-sink-v1",
}

// The event encoding's header (README.md, "The event encoding").
const (
	// Layout is the version of the event encoding, the first byte of
	// Batch.events.
	Layout = 2
	// HeaderLen is the length of the header: the layout byte and the
	// event count.
	HeaderLen = 5
)

// The context's strings that an event may send as repeats of the
// previous event's of its schema, numbered as the encoder and the decoder
// keep them; the fields' strings follow (field i's is CtxStrings+i).
const (
	SlotComm = iota
	SlotHost
	SlotExe
	SlotContainerID
	SlotContainerRuntime
	SlotContainerName
	SlotContainerImage
	SlotPodName
	SlotPodNamespace
	SlotPodUID
	CtxStrings
)

// Workload tags of the event encoding: what follows an event's exe.
const (
	WorkloadUnknown   = 0 // not known (yet)
	WorkloadHost      = 1 // the host: no container
	WorkloadContainer = 2 // a container's: its strings and pod labels follow
	WorkloadSame      = 3 // the same as the previous event's of its schema
)

// Kind codes of field values in the event encoding.
const (
	KindInvalid = 0 // no value bytes
	KindString  = 1 // rstring
	KindUint    = 2 // uvarint
	KindInt     = 3 // zigzag varint
	KindBool    = 4 // one byte, 0 or 1
	KindStrings = 5 // rlist
)

// VersionedPlugins returns the go-plugin plugin sets, by protocol version,
// serving server (the SDK's side); the host passes nil: its side only
// dispenses clients. It is a function rather than a shared map so that no
// caller can modify another's plugin set.
func VersionedPlugins(server proto.SinkServer) map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{
		ProtocolVersion: {PluginName: &GRPCPlugin{Impl: server}},
	}
}

// GRPCPlugin is the go-plugin binding of the sink service over gRPC. On
// the plugin side GRPCServer serves Impl; on the host side GRPCClient
// returns the raw proto.SinkClient, which the host wraps.
type GRPCPlugin struct {
	// NetRPCUnsupportedPlugin refuses go-plugin's older net/rpc transport.
	plugin.NetRPCUnsupportedPlugin
	// Impl is the sink service to serve; nil on the host side.
	Impl proto.SinkServer
}

// Interface guard: GRPCPlugin is a go-plugin gRPC plugin.
var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer registers Impl on s.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if p.Impl == nil {
		return errors.New("serve sink: GRPCPlugin.Impl is nil")
	}
	proto.RegisterSinkServer(s, p.Impl)
	return nil
}

// GRPCClient returns a proto.SinkClient on conn.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return proto.NewSinkClient(conn), nil
}
