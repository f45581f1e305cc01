package events

// Producer and deriver names used by the built-in catalogue. The pipeline
// maps them to the components that implement them.
const (
	// ProducerCgroupSKB is the set of cgroup skb programs in bpf/.
	ProducerCgroupSKB = "bpf/cgroup_skb"
	// DeriverFlowTracker is the flow tracker in derive/.
	DeriverFlowTracker = "derive/flow_tracker"
)

// Set names.
const (
	SetNetworkEvents = "network_events"
	SetFlows         = "flows"
)

// flowFields are the fields of every TCP flow event, exactly as the
// reference manual page of net_flow_tcp_begin lists them.
var flowFields = []FieldSpec{
	{"conn_direction", "string", "'outgoing' when a local socket sent the SYN, 'incoming' when a local listener received it"},
	{"src", "string", "IP address of the connection's initiator (the SYN sender)"},
	{"dst", "string", "IP address of the connection's responder"},
	{"src_port", "uint16", "TCP port of the initiator"},
	{"dst_port", "uint16", "TCP port of the responder"},
	{"src_dns", "[]string", "domain names this host resolved to src, from the DNS cache (empty when none)"},
	{"dst_dns", "[]string", "domain names this host resolved to dst, from the DNS cache (empty when none)"},
}

// BuiltinDefinitions returns the definitions of flowtap's built-in events.
// Each call returns fresh values.
func BuiltinDefinitions() []Definition {
	return []Definition{
		{
			ID:          IDNetPacketFlowBase,
			Name:        NameNetPacketFlowBase,
			Version:     "1.0.0",
			Description: "A flow-relevant TCP packet (SYN, SYN-ACK, FIN or RST) seen by the cgroup skb programs. Internal: the base of the flow events; emitted only when selected by name.",
			Sets:        []string{SetNetworkEvents},
			Fields: []FieldSpec{
				{"direction", "string", "'ingress' or 'egress', as the local socket saw the packet"},
				{"src", "string", "source IP address from the IP header"},
				{"dst", "string", "destination IP address from the IP header"},
				{"src_port", "uint16", "source port from the TCP header"},
				{"dst_port", "uint16", "destination port from the TCP header"},
				{"tcp_flags", "string", "TCP flags, e.g. SYN|ACK"},
				{"length", "uint32", "IP packet length in bytes"},
			},
			Source:   SourceKernel,
			Producer: ProducerCgroupSKB,
			Internal: true,
		},
		{
			ID:           IDNetFlowTCPBegin,
			Name:         NameNetFlowTCPBegin,
			Version:      "1.0.0",
			Description:  "A TCP connection's handshake completed, as one local endpoint saw it: 'outgoing' when a local socket sent the SYN and received the SYN-ACK, 'incoming' when a local listener received the SYN and sent the SYN-ACK. Fires once per local socket endpoint; a loopback connection yields two.",
			Sets:         []string{SetNetworkEvents, SetFlows},
			Fields:       flowFields,
			Dependencies: []ID{IDNetPacketFlowBase},
			Source:       SourceDerived,
			Deriver:      DeriverFlowTracker,
		},
		{
			ID:           IDNetFlowTCPEnd,
			Name:         NameNetFlowTCPEnd,
			Version:      "1.0.0",
			Description:  "A TCP connection that began ended: FIN in both directions, RST, or flowtap stopping. Exactly one per begun flow and local endpoint, with the same orientation as its begin.",
			Sets:         []string{SetNetworkEvents, SetFlows},
			Fields:       flowFields,
			Dependencies: []ID{IDNetPacketFlowBase},
			Source:       SourceDerived,
			Deriver:      DeriverFlowTracker,
		},
	}
}

// Builtin returns the validated catalogue of flowtap's built-in events.
func Builtin() (*Catalogue, error) {
	return NewCatalogue(BuiltinDefinitions())
}
