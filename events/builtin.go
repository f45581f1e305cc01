// SPDX-License-Identifier: Apache-2.0

package events

// Producer and deriver names used by the built-in catalogue. The pipeline
// maps them to the components that implement them.
const (
	// ProducerKernel is flowtap's kernel program set in bpf/: cgroup skb
	// programs, socket hooks, the TCP state tracepoint and the socket
	// iterators, sharing one ring buffer.
	ProducerKernel = "bpf/flow_programs"
	// DeriverFlowTracker is the flow tracker in derive/.
	DeriverFlowTracker = "derive/flow_tracker"
	// ProducerKernelDNS is the DNS path of the cgroup skb programs: UDP
	// and TCP port 53 payloads into the same ring buffer. A separate name
	// so that a plan loads it only when a selected event needs DNS, and
	// the loader removes it (a load-time constant) otherwise.
	ProducerKernelDNS = "bpf/dns_programs"
	// DeriverDNS parses DNS messages (derive/dnscache) into net_packet_dns
	// and feeds the DNS cache that fills src_dns and dst_dns.
	DeriverDNS = "derive/dns"
)

// Set names.
const (
	SetNetworkEvents = "network_events"
	SetFlows         = "flows"
)

// counterFields are the per-socket totals carried by end events.
var counterFields = []FieldSpec{
	{"bytes_sent", "uint64", "TCP payload bytes the local endpoint sent"},
	{"bytes_received", "uint64", "TCP payload bytes the local endpoint received"},
	{"packets_sent", "uint64", "TCP segments the local socket sent (for an accepted socket: from the end of the handshake)"},
	{"packets_received", "uint64", "TCP segments the local socket received (for an accepted socket: from the end of the handshake)"},
}

// fields concatenates field lists into a new slice.
func fields(lists ...[]FieldSpec) []FieldSpec {
	var out []FieldSpec
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

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
	{"flow_id", "string", "identifier of this local endpoint's flow, 16 hex digits: the same on its begin and end (or on its one failed event), different for every other flow and endpoint of this host (a loopback connection's two endpoints have two); joins an end to its begin"},
	{"community_id", "string", "Community ID v1 of the connection ('1:' and a base64 SHA-1 of the seeded, ordered 5-tuple): the same for both endpoints, and the string Zeek and Suricata compute for it (capture.community_id_seed, default 0)"},
}

// flowDeps are the base events every flow event is derived from. The DNS
// base event fills src_dns and dst_dns; the pipeline may turn DNS capture
// off (capture.dns.enabled: false), and then those fields stay empty.
var flowDeps = []ID{IDNetPacketFlowBase, IDNetTCPSocketBase, IDNetPacketDNSBase}

// dnsFields are the addressing fields of both DNS events.
var dnsFields = []FieldSpec{
	{"direction", "string", "'ingress' or 'egress', as the local socket saw the packet"},
	{"proto", "string", "'udp' or 'tcp'"},
	{"src", "string", "source IP address"},
	{"dst", "string", "destination IP address"},
	{"src_port", "uint16", "source port"},
	{"dst_port", "uint16", "destination port"},
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
			Fields: fields([]FieldSpec{
				{"direction", "string", "'ingress' or 'egress', as the local socket saw the packet"},
				{"src", "string", "source IP address from the IP header"},
				{"dst", "string", "destination IP address from the IP header"},
				{"src_port", "uint16", "source port from the TCP header"},
				{"dst_port", "uint16", "destination port from the TCP header"},
				{"tcp_flags", "string", "TCP flags, e.g. SYN|ACK"},
				{"length", "uint32", "IP packet length in bytes"},
			}, counterFields, []FieldSpec{
				{"no_socket", "bool", "no local socket took the packet and the kernel answered it with a reset (e.g. a SYN to a closed port)"},
			}),
			Source:   SourceKernel,
			Producer: ProducerKernel,
			Internal: true,
		},
		{
			ID:           IDNetFlowTCPBegin,
			Name:         NameNetFlowTCPBegin,
			Version:      "1.1.0",
			Description:  "A TCP connection's handshake completed, as one local endpoint saw it: 'outgoing' when a local socket sent the SYN and received the SYN-ACK, 'incoming' when a local listener received the SYN and sent the SYN-ACK. Fires once per local socket endpoint; a loopback connection yields two.",
			Sets:         []string{SetNetworkEvents, SetFlows},
			Fields:       fields(flowFields, []FieldSpec{{"handshake_ns", "uint64", "nanoseconds from the first SYN to the SYN-ACK as the local endpoint saw them: connection latency for outgoing flows, the server's answer time for incoming ones"}}),
			Dependencies: flowDeps,
			Source:       SourceDerived,
			Deriver:      DeriverFlowTracker,
			UseCases: []string{
				"**Network security monitoring**: who connects to which service, e.g. incoming connections to privileged ports from outside (`flowtap run --filter 'conn_direction=incoming and dst_port<1024 and not src=127.0.0.0/8'`)",
				"**Inventory**: which processes talk to which peers and names (pid, comm, dst_dns)",
				"**Latency**: handshake_ns is the connection latency of outgoing flows and the answer time of local servers",
			},
		},
		{
			ID:          IDNetFlowTCPEnd,
			Name:        NameNetFlowTCPEnd,
			Version:     "1.2.0",
			Description: "A TCP connection that began ended: FIN in both directions, RST, eviction from the flow table, or flowtap stopping. Exactly one per begun flow and local endpoint, with the same orientation as its begin, its duration and the local endpoint's byte and packet counts. A half-close is not an end.",
			Sets:        []string{SetNetworkEvents, SetFlows},
			Fields: fields(flowFields,
				[]FieldSpec{{"duration_ns", "uint64", "nanoseconds from the begin to the end"}},
				counterFields,
				[]FieldSpec{{"close_reason", "string", "fin (both directions closed), rst, evicted (idle timeout, flow table full, or a new connection on the same addresses and ports while this one was open) or shutdown (flowtap stopped)"}},
				[]FieldSpec{{"incomplete", "bool", "true when records of this flow may have been lost (the kernel's ring buffer was full, see flowtap_records_lost): its counters, close reason and duration come from what was seen, and may be short or late"}}),
			Dependencies: flowDeps,
			Source:       SourceDerived,
			Deriver:      DeriverFlowTracker,
			UseCases: []string{
				"**Traffic accounting**: bytes and packets each way per connection, with its duration",
				"**Troubleshooting**: close_reason tells orderly closes (fin) from resets (rst) and from flows flowtap stopped following (evicted, shutdown); incomplete marks flows whose records fell into a loss of kernel records",
				"**Incident response**: a complete record of every connection, begin to end",
			},
		},
		{
			ID:           IDNetFlowTCPFailed,
			Name:         NameNetFlowTCPFailed,
			Version:      "1.1.0",
			Description:  "A TCP connection attempt that never established, as one local endpoint saw it: 'refused' when an RST answered the SYN, 'timeout' when no SYN-ACK came in time. Outgoing for local connects; incoming for attempts against this host, so a port scan shows up.",
			Sets:         []string{SetNetworkEvents, SetFlows},
			Fields:       fields(flowFields, []FieldSpec{{"reason", "string", "refused (RST answered the SYN) or timeout (no SYN-ACK within the configured time)"}}),
			Dependencies: flowDeps,
			Source:       SourceDerived,
			Deriver:      DeriverFlowTracker,
			UseCases: []string{
				"**Scan detection**: incoming refused or unanswered attempts against this host show a port scan",
				"**Troubleshooting**: outgoing attempts refused by a peer, or never answered (firewalls, dead services)",
			},
		},
		{
			ID:          IDNetTCPSocketBase,
			Name:        NameNetTCPSocketBase,
			Version:     "1.0.0",
			Description: "A local TCP socket reported by the kernel outside its packets: when it closes (with its final counters) or when flowtap asks for a snapshot of live sockets. Internal: feeds the flow tracker; emitted only when selected by name.",
			Sets:        []string{SetNetworkEvents},
			Fields: fields([]FieldSpec{
				{"report", "string", "closed or snapshot"},
				{"local", "string", "local IP address"},
				{"local_port", "uint16", "local TCP port"},
				{"remote", "string", "remote IP address"},
				{"remote_port", "uint16", "remote TCP port"},
				{"state", "uint8", "TCP state before closing, or at the snapshot (include/net/tcp_states.h)"},
			}, counterFields),
			Source:   SourceKernel,
			Producer: ProducerKernel,
			Internal: true,
		},
		{
			ID:          IDRecordsLost,
			Name:        NameRecordsLost,
			Version:     "1.0.0",
			Description: "The kernel could not hand flowtap some records because the ring buffer was full: how many in which interval, and the total so far. Flow events in that interval may be missing. Delivered to every pipeline that consumes kernel events, selected or not.",
			Fields: []FieldSpec{
				{"lost", "uint64", "records lost in the interval"},
				{"lost_total", "uint64", "records lost since flowtap started"},
				{"interval_start", "int64", "start of the interval, ns since the Unix epoch"},
				{"interval_end", "int64", "end of the interval, ns since the Unix epoch"},
			},
			Source:   SourceKernel,
			Producer: ProducerKernel,
		},
		{
			ID:          IDNetPacketDNSBase,
			Name:        NameNetPacketDNSBase,
			Version:     "1.0.0",
			Description: "A UDP datagram or TCP segment to or from port 53 seen by the cgroup skb programs, with its payload (bounded; longer ones are truncated and counted). Internal: the base of net_packet_dns and of the DNS cache behind src_dns and dst_dns; emitted only when selected by name.",
			Sets:        []string{SetNetworkEvents},
			Fields: fields(dnsFields, []FieldSpec{
				{"length", "uint32", "transport payload length on the wire"},
				{"truncated", "bool", "the kernel captured only the first bytes of the payload"},
				{"netns_cookie", "uint64", "network namespace cookie of the socket (0 when not known)"},
			}),
			Source:   SourceKernel,
			Producer: ProducerKernelDNS,
			Internal: true,
		},
		{
			ID:          IDNetPacketDNS,
			Name:        NameNetPacketDNS,
			Version:     "1.0.0",
			Description: "A DNS query or response a local socket sent or received (UDP or TCP port 53), parsed: query name and type, response code and answers. Messages that do not parse are counted, not emitted.",
			Sets:        []string{SetNetworkEvents},
			Fields: fields(dnsFields, []FieldSpec{
				{"dns_id", "uint16", "DNS message ID"},
				{"response", "bool", "the message is a response (QR bit)"},
				{"query_name", "string", "name in the first question, without the trailing dot"},
				{"query_type", "string", "type in the first question, e.g. A, AAAA"},
				{"rcode", "string", "response code, e.g. NOERROR, NXDOMAIN"},
				{"answers", "[]string", "answer records as 'name TYPE ttl data'"},
			}),
			UseCases: []string{
				"See which names the workloads on this host look up, and which fail (rcode NXDOMAIN, SERVFAIL).",
				"Spot lookups of unexpected domains, or DNS over TCP where UDP is the rule.",
				"Check what addresses a name resolved to when a connection went somewhere unexpected.",
			},
			Dependencies: []ID{IDNetPacketDNSBase},
			Source:       SourceDerived,
			Deriver:      DeriverDNS,
		},
	}
}

// Builtin returns the validated catalogue of flowtap's built-in events.
func Builtin() (*Catalogue, error) {
	return NewCatalogue(BuiltinDefinitions())
}
