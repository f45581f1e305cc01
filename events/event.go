// SPDX-License-Identifier: Apache-2.0

// Package events holds flowtap's event model, the catalogue of event
// definitions, the selection grammar users pick events with, and the
// dependency resolution that turns a selection into a plan.
package events

import (
	"net/netip"
)

// ID identifies an event definition. IDs are stable across releases: sinks
// and stored data may refer to them.
type ID uint16

// Built-in event IDs. Base events sit below 1000, derived events above.
const (
	IDNetPacketFlowBase ID = 1
	IDNetTCPSocketBase  ID = 2
	IDRecordsLost       ID = 3
	IDNetPacketDNSBase  ID = 4
	IDNetFlowTCPBegin   ID = 1001
	IDNetFlowTCPEnd     ID = 1002
	IDNetFlowTCPFailed  ID = 1003
	IDNetPacketDNS      ID = 1004
)

// Built-in event names, as Tracee spells them where Tracee has them.
const (
	NameNetPacketFlowBase = "net_packet_flow_base"
	NameNetTCPSocketBase  = "net_tcp_socket_base"
	NameRecordsLost       = "flowtap_records_lost"
	NameNetFlowTCPBegin   = "net_flow_tcp_begin"
	NameNetFlowTCPEnd     = "net_flow_tcp_end"
	NameNetFlowTCPFailed  = "net_flow_tcp_failed"
	NameNetPacketDNSBase  = "net_packet_dns_base"
	NameNetPacketDNS      = "net_packet_dns"
)

// Event is one occurrence of a catalogue event: when it happened, where it
// came from, and its typed payload. Events are values; a producer or deriver
// hands them on and never mutates one after emitting it.
type Event struct {
	// ID names the definition this event is an instance of.
	ID ID
	// Timestamp is nanoseconds since the Unix epoch (wall clock).
	Timestamp int64
	// Context says which socket, cgroup and process the event belongs to.
	Context Context
	// Payload carries the event's own fields; its concrete type is fixed
	// by ID (see Definition.Fields for the field list it produces).
	Payload Payload
}

// Context is what flowtap knows about where an event came from. Zero values
// mean "not known" (process details are not visible from every hook).
type Context struct {
	SocketCookie uint64
	CgroupID     uint64
	PID          uint32
	UID          uint32
	Comm         string
	HostName     string
	// PPID is the owner's parent process id, as it was when the socket
	// got its owner.
	PPID uint32
	// ProcessStart is when the owner process started (ns since the Unix
	// epoch): PID and ProcessStart together name one process, even after
	// its pid is reused.
	ProcessStart int64
	// Exe is the path of the owner's executable.
	Exe string
	// Workload is the container and pod the socket's cgroup belongs to:
	// nil while not known, a Workload without ContainerID for the host.
	// A Workload is shared by many events and never modified.
	Workload *Workload
}

// Workload is the container (and Kubernetes pod) a socket belongs to.
// Fields a container runtime did not say (no runtime reachable, not a
// Kubernetes container) are empty.
type Workload struct {
	// ContainerID is the full 64-hex-digit container id; "" for the host.
	ContainerID string
	// ContainerRuntime is docker, containerd, cri-o or podman.
	ContainerRuntime string
	// ContainerName is the runtime's name for the container (for a
	// Kubernetes container: its name in the pod spec).
	ContainerName string
	// ContainerImage is the image the container runs, as the runtime
	// names it (e.g. docker.io/library/nginx:1.27).
	ContainerImage string
	// PodName, PodNamespace and PodUID name the Kubernetes pod.
	PodName      string
	PodNamespace string
	PodUID       string
	// PodLabels are the pod's labels selected by
	// capture.workload.pod_labels, as "key=value", sorted by key.
	PodLabels []string
}

// Host reports whether w is known and no container's: the socket belongs
// to a process on the host.
func (w *Workload) Host() bool { return w != nil && w.ContainerID == "" }

// ShortID returns the first 12 digits of the container id, as docker
// and podman print it.
func (w *Workload) ShortID() string {
	if w == nil || len(w.ContainerID) < 12 {
		return ""
	}
	return w.ContainerID[:12]
}

// Payload is the typed body of an event. AppendFields appends the payload's
// fields, in the order the catalogue declares them, so generic consumers
// (sinks, filters) can walk any event without knowing its Go type.
type Payload interface {
	EventID() ID
	AppendFields(dst []Field) []Field
}

// Field is one named, typed value of an event payload.
type Field struct {
	Name  string
	Value Value
}

// Kind is the type of a field value.
type Kind uint8

// Field value kinds.
const (
	KindInvalid Kind = iota
	KindString
	KindUint
	KindInt
	KindBool
	KindStrings
)

// Value is a typed field value. Exactly the member that Kind names is set;
// this keeps payloads typed without boxing every value in an interface.
type Value struct {
	Kind    Kind
	Str     string
	Uint    uint64
	Int     int64
	Bool    bool
	Strings []string
}

// String returns a value of kind KindString.
func String(s string) Value { return Value{Kind: KindString, Str: s} }

// Uint returns a value of kind KindUint.
func Uint(u uint64) Value { return Value{Kind: KindUint, Uint: u} }

// Int returns a value of kind KindInt.
func Int(i int64) Value { return Value{Kind: KindInt, Int: i} }

// Bool returns a value of kind KindBool.
func Bool(b bool) Value { return Value{Kind: KindBool, Bool: b} }

// Strings returns a value of kind KindStrings. A nil list is reported as an
// empty list, never as null.
func Strings(l []string) Value {
	if l == nil {
		l = []string{}
	}
	return Value{Kind: KindStrings, Strings: l}
}

// PacketDirection says whether the kernel saw a packet leave or enter a
// local socket.
type PacketDirection uint8

// Packet directions, as seen by the cgroup skb hooks.
const (
	Ingress PacketDirection = 1
	Egress  PacketDirection = 2
)

// String returns "ingress" or "egress".
func (d PacketDirection) String() string {
	switch d {
	case Ingress:
		return "ingress"
	case Egress:
		return "egress"
	}
	return "unknown"
}

// TCPFlags is the flags byte of a TCP header.
type TCPFlags uint8

// TCP header flags.
const (
	FlagFIN TCPFlags = 0x01
	FlagSYN TCPFlags = 0x02
	FlagRST TCPFlags = 0x04
	FlagPSH TCPFlags = 0x08
	FlagACK TCPFlags = 0x10
	FlagURG TCPFlags = 0x20
	FlagECE TCPFlags = 0x40
	FlagCWR TCPFlags = 0x80
)

// Has reports whether all flags in f are set.
func (t TCPFlags) Has(f TCPFlags) bool { return t&f == f }

// String renders the flags tcpdump-style, e.g. "SYN|ACK".
func (t TCPFlags) String() string {
	names := [...]string{"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"}
	out := make([]byte, 0, 16)
	for i, n := range names {
		if t&(1<<i) != 0 {
			if len(out) > 0 {
				out = append(out, '|')
			}
			out = append(out, n...)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return string(out)
}

// Counters are one local socket's TCP totals, from the kernel's own
// sequence-based accounting: payload bytes (acknowledged when sent,
// in order when received; no headers, no retransmissions, no SYN or FIN)
// and segments (all, handshake and retransmissions included), each way.
type Counters struct {
	BytesSent       uint64
	BytesReceived   uint64
	PacketsSent     uint64
	PacketsReceived uint64
}

// appendCounterFields appends the four counters as fields.
func (c *Counters) appendCounterFields(dst []Field) []Field {
	return append(dst,
		Field{"bytes_sent", Uint(c.BytesSent)},
		Field{"bytes_received", Uint(c.BytesReceived)},
		Field{"packets_sent", Uint(c.PacketsSent)},
		Field{"packets_received", Uint(c.PacketsReceived)},
	)
}

// PacketFlowBase is the payload of net_packet_flow_base: one flow-relevant
// TCP packet (SYN, SYN-ACK, FIN or RST) as a cgroup skb hook saw it.
type PacketFlowBase struct {
	Direction PacketDirection
	Src       netip.Addr
	Dst       netip.Addr
	SrcPort   uint16
	DstPort   uint16
	Flags     TCPFlags
	// Length is the IP packet length in bytes.
	Length uint32
	// Counters are the local socket's totals as they stood when the packet
	// passed the hook (zero when not known, e.g. a request socket).
	Counters Counters
	// NoSocket marks a packet that no local socket took, which the kernel
	// answered itself with a reset (e.g. a SYN to a closed port). Such a
	// record describes the arriving packet (Direction is Ingress).
	NoSocket bool
}

// EventID implements Payload.
func (*PacketFlowBase) EventID() ID { return IDNetPacketFlowBase }

// AppendFields implements Payload.
func (p *PacketFlowBase) AppendFields(dst []Field) []Field {
	dst = append(dst,
		Field{"direction", String(p.Direction.String())},
		Field{"src", String(addrString(p.Src))},
		Field{"dst", String(addrString(p.Dst))},
		Field{"src_port", Uint(uint64(p.SrcPort))},
		Field{"dst_port", Uint(uint64(p.DstPort))},
		Field{"tcp_flags", String(p.Flags.String())},
		Field{"length", Uint(uint64(p.Length))},
	)
	dst = p.Counters.appendCounterFields(dst)
	return append(dst, Field{"no_socket", Bool(p.NoSocket)})
}

// SocketReport says why the kernel reported a socket.
type SocketReport uint8

// Socket reports.
const (
	// SocketClosed: the socket entered TCP_CLOSE (it is gone, or became
	// a TIME_WAIT mini-socket); its counters are final.
	SocketClosed SocketReport = 1
	// SocketSnapshot: the socket is alive; flowtap asked for its counters
	// (periodically, and at shutdown).
	SocketSnapshot SocketReport = 2
)

// String returns "closed" or "snapshot".
func (r SocketReport) String() string {
	switch r {
	case SocketClosed:
		return "closed"
	case SocketSnapshot:
		return "snapshot"
	}
	return "unknown"
}

// TCPSocketBase is the payload of net_tcp_socket_base: a local TCP socket
// reported outside its packets, with its counters.
type TCPSocketBase struct {
	Report     SocketReport
	Local      netip.Addr
	Remote     netip.Addr
	LocalPort  uint16
	RemotePort uint16
	// State is the socket's TCP state (as in include/net/tcp_states.h)
	// before it closed, or at the snapshot.
	State    uint8
	Counters Counters
}

// EventID implements Payload.
func (*TCPSocketBase) EventID() ID { return IDNetTCPSocketBase }

// AppendFields implements Payload.
func (s *TCPSocketBase) AppendFields(dst []Field) []Field {
	dst = append(dst,
		Field{"report", String(s.Report.String())},
		Field{"local", String(addrString(s.Local))},
		Field{"local_port", Uint(uint64(s.LocalPort))},
		Field{"remote", String(addrString(s.Remote))},
		Field{"remote_port", Uint(uint64(s.RemotePort))},
		Field{"state", Uint(uint64(s.State))},
	)
	return s.Counters.appendCounterFields(dst)
}

// RecordsLost is the payload of flowtap_records_lost: the kernel could not
// submit Lost records (the ring buffer was full) between From and To
// (nanoseconds since the Unix epoch). Flow events derived in that interval
// may be missing or incomplete.
type RecordsLost struct {
	Lost  uint64
	Total uint64
	From  int64
	To    int64
}

// EventID implements Payload.
func (*RecordsLost) EventID() ID { return IDRecordsLost }

// AppendFields implements Payload.
func (r *RecordsLost) AppendFields(dst []Field) []Field {
	return append(dst,
		Field{"lost", Uint(r.Lost)},
		Field{"lost_total", Uint(r.Total)},
		Field{"interval_start", Int(r.From)},
		Field{"interval_end", Int(r.To)},
	)
}

// ConnDirection says which side of a TCP connection a local endpoint is.
type ConnDirection uint8

// Connection directions.
const (
	// Outgoing: a local socket sent the SYN.
	Outgoing ConnDirection = 1
	// Incoming: a local listener received the SYN.
	Incoming ConnDirection = 2
)

// String returns "outgoing" or "incoming".
func (d ConnDirection) String() string {
	switch d {
	case Outgoing:
		return "outgoing"
	case Incoming:
		return "incoming"
	}
	return "unknown"
}

// Flow is the set of fields shared by every flow event. Src and Dst run
// from the connection's initiator to its responder, whichever endpoint is
// local.
type Flow struct {
	Direction ConnDirection
	Src       netip.Addr
	Dst       netip.Addr
	SrcPort   uint16
	DstPort   uint16
	SrcDNS    []string
	DstDNS    []string
	// SrcText and DstText are Src and Dst rendered by AddrText. A producer
	// that emits several events per connection sets them once, so that
	// every event does not render (and allocate) the addresses again;
	// when empty, AppendFields renders Src and Dst itself.
	SrcText string
	DstText string
	// FlowID identifies the local endpoint's flow: the same on its begin
	// and end (and on a failed attempt's one event), different for every
	// other endpoint and flow of the host (derive.Tracker assigns it).
	FlowID string
	// CommunityID is the connection's Community ID v1 (the same for both
	// endpoints of a connection, and the string Zeek and Suricata give
	// the same 5-tuple).
	CommunityID string
}

// appendFlowFields appends the fields every flow event has, in the order of
// the reference manual page.
func (f *Flow) appendFlowFields(dst []Field) []Field {
	return append(dst,
		Field{"conn_direction", String(f.Direction.String())},
		Field{"src", String(f.SrcField())},
		Field{"dst", String(f.DstField())},
		Field{"src_port", Uint(uint64(f.SrcPort))},
		Field{"dst_port", Uint(uint64(f.DstPort))},
		Field{"src_dns", Strings(f.SrcDNS)},
		Field{"dst_dns", Strings(f.DstDNS)},
		Field{"flow_id", String(f.FlowID)},
		Field{"community_id", String(f.CommunityID)},
	)
}

// SrcField is the value of the src field: SrcText, or Src rendered.
func (f *Flow) SrcField() string { return textOr(f.SrcText, f.Src) }

// DstField is the value of the dst field: DstText, or Dst rendered.
func (f *Flow) DstField() string { return textOr(f.DstText, f.Dst) }

// FlowBegin is the payload of net_flow_tcp_begin.
type FlowBegin struct {
	Flow
	// HandshakeNs is the time from the (first) SYN to the SYN-ACK, as the
	// local endpoint saw them: the connection latency for outgoing flows,
	// the server's answer time for incoming ones.
	HandshakeNs uint64
}

// EventID implements Payload.
func (*FlowBegin) EventID() ID { return IDNetFlowTCPBegin }

// AppendFields implements Payload.
func (b *FlowBegin) AppendFields(dst []Field) []Field {
	return append(b.appendFlowFields(dst), Field{"handshake_ns", Uint(b.HandshakeNs)})
}

// CloseReason says why a flow ended.
type CloseReason uint8

// Close reasons.
const (
	// CloseFIN: both directions were closed with FIN.
	CloseFIN CloseReason = iota + 1
	// CloseRST: a reset ended the connection.
	CloseRST
	// CloseEvicted: flowtap dropped the flow (idle timeout, table full,
	// or a new connection on the same 4-tuple while it was open).
	CloseEvicted
	// CloseShutdown: flowtap stopped while the flow was open.
	CloseShutdown
)

// String returns fin, rst, evicted or shutdown.
func (r CloseReason) String() string {
	switch r {
	case CloseFIN:
		return "fin"
	case CloseRST:
		return "rst"
	case CloseEvicted:
		return "evicted"
	case CloseShutdown:
		return "shutdown"
	}
	return "unknown"
}

// FlowEnd is the payload of net_flow_tcp_end.
type FlowEnd struct {
	Flow
	// DurationNs runs from the flow's begin to its end.
	DurationNs uint64
	// Counters are the local endpoint's totals: Sent is what it sent.
	Counters Counters
	Reason   CloseReason
	// Incomplete: records of the flow may have been lost (the ring
	// buffer was full), so what the end says may be short or late.
	Incomplete bool
}

// EventID implements Payload.
func (*FlowEnd) EventID() ID { return IDNetFlowTCPEnd }

// AppendFields implements Payload.
func (e *FlowEnd) AppendFields(dst []Field) []Field {
	dst = e.appendFlowFields(dst)
	dst = append(dst, Field{"duration_ns", Uint(e.DurationNs)})
	dst = e.Counters.appendCounterFields(dst)
	return append(dst, Field{"close_reason", String(e.Reason.String())}, Field{"incomplete", Bool(e.Incomplete)})
}

// FailReason says why a connection attempt never established.
type FailReason uint8

// Failure reasons.
const (
	// FailRefused: an RST answered the SYN.
	FailRefused FailReason = iota + 1
	// FailTimeout: no SYN-ACK came within the configured time.
	FailTimeout
)

// String returns refused or timeout.
func (r FailReason) String() string {
	switch r {
	case FailRefused:
		return "refused"
	case FailTimeout:
		return "timeout"
	}
	return "unknown"
}

// FlowFailed is the payload of net_flow_tcp_failed: a connection attempt
// that never established, as one local endpoint saw it.
type FlowFailed struct {
	Flow
	Reason FailReason
}

// EventID implements Payload.
func (*FlowFailed) EventID() ID { return IDNetFlowTCPFailed }

// AppendFields implements Payload.
func (f *FlowFailed) AppendFields(dst []Field) []Field {
	return append(f.appendFlowFields(dst), Field{"reason", String(f.Reason.String())})
}

// textOr returns text, or a rendered when text is empty.
func textOr(text string, a netip.Addr) string {
	if text != "" {
		return text
	}
	return AddrText(a)
}

// AddrText renders an address as events report it: without the
// IPv4-in-IPv6 form, so dual-stack sockets carrying IPv4 traffic are
// reported with plain IPv4 addresses; "" for the zero Addr.
func AddrText(a netip.Addr) string { return addrString(a) }

// addrString is AddrText.
func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.Unmap().String()
}
