// SPDX-License-Identifier: Apache-2.0

package events

import "net/netip"

// DNSProto is the transport a DNS message travelled over.
type DNSProto uint8

// DNS transports.
const (
	DNSOverUDP DNSProto = 17 // IPPROTO_UDP
	DNSOverTCP DNSProto = 6  // IPPROTO_TCP
)

// String returns "udp" or "tcp".
func (p DNSProto) String() string {
	switch p {
	case DNSOverUDP:
		return "udp"
	case DNSOverTCP:
		return "tcp"
	}
	return "unknown"
}

// DNSPacket is where a DNS message travelled: the fields both DNS events
// start with.
type DNSPacket struct {
	Direction PacketDirection
	Proto     DNSProto
	Src       netip.Addr
	Dst       netip.Addr
	SrcPort   uint16
	DstPort   uint16
}

func (p *DNSPacket) appendPacketFields(dst []Field) []Field {
	return append(dst,
		Field{"direction", String(p.Direction.String())},
		Field{"proto", String(p.Proto.String())},
		Field{"src", String(addrString(p.Src))},
		Field{"dst", String(addrString(p.Dst))},
		Field{"src_port", Uint(uint64(p.SrcPort))},
		Field{"dst_port", Uint(uint64(p.DstPort))},
	)
}

// PacketDNSBase is the payload of net_packet_dns_base: one UDP datagram or
// TCP segment to or from port 53 as a cgroup skb hook saw it, with its
// payload (the DNS message; over TCP the segment's bytes, starting with
// the 2-byte length prefix when the segment starts a message).
type PacketDNSBase struct {
	DNSPacket
	// Length is the transport payload length on the wire; Payload holds
	// its first bytes, all of them unless Truncated.
	Length uint32
	// Truncated says the kernel captured only the first len(Payload)
	// bytes of a longer payload.
	Truncated bool
	// NetNSCookie identifies the socket's network namespace (0 when the
	// kernel cannot tell).
	NetNSCookie uint64
	Payload     []byte
}

// EventID implements Payload.
func (*PacketDNSBase) EventID() ID { return IDNetPacketDNSBase }

// AppendFields implements Payload.
func (p *PacketDNSBase) AppendFields(dst []Field) []Field {
	return append(p.appendPacketFields(dst),
		Field{"length", Uint(uint64(p.Length))},
		Field{"truncated", Bool(p.Truncated)},
		Field{"netns_cookie", Uint(p.NetNSCookie)},
	)
}

// PacketDNS is the payload of net_packet_dns: one parsed DNS message.
type PacketDNS struct {
	DNSPacket
	// ID is the DNS message ID; Response is the QR bit.
	ID       uint16
	Response bool
	// QueryName is the first question's name without the trailing dot,
	// QueryType its type ("A", "AAAA", "TYPE65", ...).
	QueryName string
	QueryType string
	// RCode is the response code ("NOERROR", "NXDOMAIN", ...).
	RCode string
	// Answers are the answer section's records, one per entry, rendered
	// as "name TYPE ttl data", e.g. "www.example.com CNAME 300 example.com".
	Answers []string
}

// EventID implements Payload.
func (*PacketDNS) EventID() ID { return IDNetPacketDNS }

// AppendFields implements Payload.
func (p *PacketDNS) AppendFields(dst []Field) []Field {
	return append(p.appendPacketFields(dst),
		Field{"dns_id", Uint(uint64(p.ID))},
		Field{"response", Bool(p.Response)},
		Field{"query_name", String(p.QueryName)},
		Field{"query_type", String(p.QueryType)},
		Field{"rcode", String(p.RCode)},
		Field{"answers", Strings(p.Answers)},
	)
}
