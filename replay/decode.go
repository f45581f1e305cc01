// SPDX-License-Identifier: Apache-2.0

package replay

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/flowtap/flowtap/events"
)

// Link-layer header types (LINKTYPE_* values, as pcap and pcapng files
// name them) the decoder reads.
const (
	linkNull     = 0   // BSD loopback: 4-byte address family, capturing host's byte order
	linkEthernet = 1   // Ethernet II, with 802.1Q/802.1ad tags
	linkRaw12    = 12  // DLT_RAW as most systems number it: a bare IP packet
	linkRaw14    = 14  // DLT_RAW on OpenBSD
	linkRaw      = 101 // LINKTYPE_RAW
	linkLoop     = 108 // OpenBSD loopback: 4-byte address family, big-endian
	linkSLL      = 113 // Linux cooked capture v1 ("any" interface)
	linkIPv4     = 228 // a bare IPv4 packet
	linkIPv6     = 229 // a bare IPv6 packet
	linkSLL2     = 276 // Linux cooked capture v2
)

// Ethernet types the decoder follows.
const (
	etherIPv4   = 0x0800
	etherIPv6   = 0x86dd
	etherVLAN   = 0x8100 // 802.1Q
	etherQinQ   = 0x88a8 // 802.1ad
	etherQinQv1 = 0x9100 // pre-standard QinQ
)

// IP protocol numbers.
const (
	protoHopByHop = 0
	protoTCP      = 6
	protoUDP      = 17
	protoRouting  = 43
	protoFragment = 44
	protoAH       = 51
	protoDestOpts = 60
)

// Bounds of the header walks, the same as the kernel programs'.
const (
	maxVLANTags      = 8
	maxIPv6ExtHeader = 6 // IPV6_MAX_EXT_HEADERS in flowtap.bpf.c
)

// kind says why a packet was not used.
type kind uint8

const (
	kindNotIP       kind = iota + 1 // no IPv4 or IPv6 inside (ARP, LLDP, ...)
	kindOtherProto                  // IP, but not TCP or UDP (ICMP, ESP, ...)
	kindFragment                    // a non-first IP fragment: no TCP or UDP header
	kindSnaplen                     // the capture's snapshot length cut the headers
	kindMalformed                   // the headers contradict themselves or the packet
	kindUnknownLink                 // a link type the decoder does not read
)

// decodeError says why a packet was not used.
type decodeError struct {
	kind   kind
	reason string
}

func (e *decodeError) Error() string { return e.reason }

// The common, harmless reasons, allocated once.
var (
	errNotIP      = &decodeError{kindNotIP, "not an IPv4 or IPv6 packet"}
	errOtherProto = &decodeError{kindOtherProto, "neither TCP nor UDP"}
	errFragment   = &decodeError{kindFragment, "a non-first IP fragment"}
	errUnknown    = &decodeError{kindUnknownLink, "unknown link type"}
)

func malformed(format string, args ...any) error {
	return &decodeError{kindMalformed, fmt.Sprintf(format, args...)}
}

// packet is what the decoder reads from one captured packet: the fields of
// the base events and what the counters need.
type packet struct {
	src, dst     netip.Addr
	proto        uint8
	sport, dport uint16
	flags        events.TCPFlags
	seq          uint32
	// ipLen is the IP packet's length (headers and payload) from its header.
	ipLen uint32
	// payloadLen is the transport payload's length on the wire; payload
	// is the part of it the capture holds (all of it unless the snapshot
	// length cut it).
	payloadLen uint32
	payload    []byte
}

// short reports a header that needs need bytes where the capture has
// fewer: cut by the snapshot length when the packet on the wire was long
// enough (wire bytes from the same place), else malformed.
func short(what string, need, have, wire int) error {
	if wire >= need {
		return &decodeError{kindSnaplen, fmt.Sprintf("%s needs %d bytes, the capture kept %d of %d (snapshot length)", what, need, have, wire)}
	}
	return malformed("%s needs %d bytes, the packet has %d", what, need, wire)
}

// decodePacket reads the IP, TCP or UDP headers of one captured packet of
// link type link. data is what the capture holds, wireLen the packet's
// length on the wire.
func decodePacket(link uint32, data []byte, wireLen uint32, p *packet) error {
	wire := max(int(wireLen), len(data))
	off, etherType, err := linkHeader(link, data, wire)
	if err != nil {
		return err
	}
	b, wire := data[off:], wire-off
	switch etherType {
	case etherIPv4:
		return p.ipv4(b, wire)
	case etherIPv6:
		return p.ipv6(b, wire)
	}
	return errNotIP
}

// linkHeader returns the length of the link-layer header and the type of
// what follows (an Ethernet type).
func linkHeader(link uint32, b []byte, wire int) (off int, etherType uint16, err error) {
	switch link {
	case linkEthernet:
		if len(b) < 14 {
			return 0, 0, short("Ethernet header", 14, len(b), wire)
		}
		return vlanTags(b, 12, wire)
	case linkSLL:
		if len(b) < 16 {
			return 0, 0, short("Linux cooked (SLL) header", 16, len(b), wire)
		}
		return vlanTags(b, 14, wire)
	case linkSLL2:
		if len(b) < 20 {
			return 0, 0, short("Linux cooked v2 (SLL2) header", 20, len(b), wire)
		}
		// The protocol comes first; VLAN tags (if any) follow the header.
		et := binary.BigEndian.Uint16(b)
		if isVLAN(et) {
			return vlanTagsAfter(b, 20, et, wire)
		}
		return 20, et, nil
	case linkRaw, linkRaw12, linkRaw14, linkIPv4, linkIPv6:
		if len(b) < 1 {
			return 0, 0, short("IP header", 1, 0, wire)
		}
		return 0, ipVersion(b[0]), nil
	case linkNull, linkLoop:
		if len(b) < 4 {
			return 0, 0, short("loopback header", 4, len(b), wire)
		}
		family := binary.BigEndian.Uint32(b)
		if link == linkNull && family > 0xffff {
			// Written in the capturing host's byte order: a little-endian
			// host's family reads as a large big-endian number.
			family = binary.LittleEndian.Uint32(b)
		}
		switch family {
		case 2: // AF_INET everywhere
			return 4, etherIPv4, nil
		case 10, 24, 28, 30: // AF_INET6: Linux, NetBSD/OpenBSD, FreeBSD, Darwin
			return 4, etherIPv6, nil
		}
		return 4, 0, nil
	}
	return 0, 0, errUnknown
}

// ipVersion maps the version nibble of a bare IP packet to an Ethernet type.
func ipVersion(b byte) uint16 {
	switch b >> 4 {
	case 4:
		return etherIPv4
	case 6:
		return etherIPv6
	}
	return 0
}

func isVLAN(et uint16) bool { return et == etherVLAN || et == etherQinQ || et == etherQinQv1 }

// vlanTags reads the Ethernet type at b[at:] and walks the VLAN tags that
// may follow it.
func vlanTags(b []byte, at, wire int) (int, uint16, error) {
	et := binary.BigEndian.Uint16(b[at:])
	if !isVLAN(et) {
		return at + 2, et, nil
	}
	return vlanTagsAfter(b, at+2, et, wire)
}

// vlanTagsAfter walks VLAN tags (2 bytes of tag control, 2 of the next
// type) starting at b[off:], the type before them being et.
func vlanTagsAfter(b []byte, off int, et uint16, wire int) (int, uint16, error) {
	for i := 0; isVLAN(et); i++ {
		if i == maxVLANTags {
			return 0, 0, malformed("more than %d VLAN tags", maxVLANTags)
		}
		if len(b) < off+4 {
			return 0, 0, short("VLAN tag", off+4, len(b), wire)
		}
		et = binary.BigEndian.Uint16(b[off+2:])
		off += 4
	}
	return off, et, nil
}

// ipv4 reads an IPv4 header and what follows; wire is the packet's length
// on the wire from the IP header on.
func (p *packet) ipv4(b []byte, wire int) error {
	if len(b) < 20 {
		return short("IPv4 header", 20, len(b), wire)
	}
	if v := b[0] >> 4; v != 4 {
		return malformed("IPv4 header with version %d", v)
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < 20 {
		return malformed("IPv4 header length %d, less than 20", ihl)
	}
	total := int(binary.BigEndian.Uint16(b[2:]))
	if total == 0 {
		// A segmentation-offload packet captured before the NIC split it
		// (BIG TCP on loopback): its length is the packet's.
		total = wire
	}
	if total < ihl || total > wire {
		return malformed("IPv4 total length %d, the header is %d and the packet %d bytes", total, ihl, wire)
	}
	p.proto = b[9]
	if p.proto != protoTCP && p.proto != protoUDP {
		return errOtherProto
	}
	if binary.BigEndian.Uint16(b[6:])&0x1fff != 0 {
		return errFragment
	}
	if len(b) < ihl {
		return short("IPv4 header with options", ihl, len(b), wire)
	}
	p.src, p.dst = netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
	p.ipLen = uint32(total)
	return p.transport(b[ihl:min(len(b), total)], total-ihl)
}

// ipv6 reads an IPv6 header, walks its extension headers (hop-by-hop,
// routing, destination options, authentication, fragment: as the kernel
// programs do, at most 6) and reads what follows.
func (p *packet) ipv6(b []byte, wire int) error {
	if len(b) < 40 {
		return short("IPv6 header", 40, len(b), wire)
	}
	if v := b[0] >> 4; v != 6 {
		return malformed("IPv6 header with version %d", v)
	}
	total := 40 + int(binary.BigEndian.Uint16(b[4:]))
	if total == 40 && wire > 40 {
		total = wire // a jumbogram, or a segmentation-offload packet (see ipv4)
	}
	if total > wire {
		return malformed("IPv6 payload length %d, the packet has %d bytes after its header", total-40, wire-40)
	}
	p.src, p.dst = netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
	p.ipLen = uint32(total)
	next, off := b[6], 40
	for range maxIPv6ExtHeader {
		var size int
		switch next {
		case protoTCP, protoUDP:
			p.proto = next
			return p.transportAt(b, off, total)
		case protoHopByHop, protoRouting, protoDestOpts, protoAH, protoFragment:
			if len(b) < off+8 {
				return short("IPv6 extension header", off+8, len(b), total)
			}
			switch next {
			case protoAH:
				size = (int(b[off+1]) + 2) * 4
			case protoFragment:
				if binary.BigEndian.Uint16(b[off+2:])&0xfff8 != 0 {
					return errFragment
				}
				size = 8
			default:
				size = (int(b[off+1]) + 1) * 8
			}
		default:
			return errOtherProto // ICMPv6, ESP, no next header, or one the kernel does not walk
		}
		next = b[off]
		off += size
		if off > total {
			return malformed("IPv6 extension headers run %d bytes past the packet", off-total)
		}
	}
	if next != protoTCP && next != protoUDP {
		return errOtherProto
	}
	p.proto = next
	return p.transportAt(b, off, total)
}

// transportAt reads the TCP or UDP header at b[off:] of an IP packet of
// total bytes on the wire, of which the capture holds b.
func (p *packet) transportAt(b []byte, off, total int) error {
	if off > len(b) {
		return short("IPv6 extension headers", off, len(b), total)
	}
	return p.transport(b[off:min(len(b), total)], total-off)
}

// transport reads a TCP or UDP header: b is what the capture holds of the
// IP payload, n its length on the wire.
func (p *packet) transport(b []byte, n int) error {
	if p.proto == protoUDP {
		if len(b) < 8 {
			return short("UDP header", 8, len(b), n)
		}
		p.sport, p.dport = binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:])
		p.flags, p.seq = 0, 0
		p.payloadLen, p.payload = uint32(n-8), b[8:]
		return nil
	}
	if len(b) < 20 {
		return short("TCP header", 20, len(b), n)
	}
	doff := int(b[12]>>4) * 4
	if doff < 20 || doff > n {
		return malformed("TCP data offset %d, the segment is %d bytes", doff, n)
	}
	p.sport, p.dport = binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:])
	p.seq = binary.BigEndian.Uint32(b[4:])
	p.flags = events.TCPFlags(b[13])
	p.payloadLen, p.payload = uint32(n-doff), b[min(doff, len(b)):]
	return nil
}
