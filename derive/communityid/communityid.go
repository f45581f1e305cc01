// SPDX-License-Identifier: Apache-2.0

// Package communityid computes Community ID v1 flow hashes: the string
// Zeek, Suricata and other network tools put on a flow so that their
// records of one connection can be joined ("1:" + base64 of a SHA-1).
//
// The hash covers, in this order: the seed (2 bytes, network order), the
// source and destination addresses (4 or 16 bytes each), the IP protocol
// number (1 byte), a zero pad byte and, for protocols with ports (TCP,
// UDP, SCTP), the source and destination ports (2 bytes each, network
// order). The endpoints are ordered first so that both directions of a
// flow hash alike: the one with the smaller address comes first, or, when
// the addresses are equal, the one with the smaller port as Zeek and
// Suricata compare ports (see portLess). ICMP's type/code treatment is not
// implemented: flowtap reports TCP flows only.
package communityid

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// IP protocol numbers with ports.
const (
	ProtoTCP  = 6
	ProtoUDP  = 17
	ProtoSCTP = 132
)

// Prefix is the version prefix of a v1 Community ID.
const Prefix = "1:"

// Hasher computes Community IDs with one seed. Its zero value uses seed 0,
// the default of Zeek and Suricata. A Hasher is a value with no state: it
// is safe for concurrent use.
type Hasher struct {
	Seed uint16
}

// maxInput is the longest hash input: seed, two IPv6 addresses, protocol,
// pad, two ports.
const maxInput = 2 + 16 + 16 + 1 + 1 + 2 + 2

// Sum returns the 20-byte SHA-1 the Community ID encodes, and false when
// the addresses are invalid or of different families. IPv4-mapped IPv6
// addresses are hashed as IPv4, as they are on the wire.
func (h Hasher) Sum(proto uint8, src, dst netip.Addr, srcPort, dstPort uint16) ([sha1.Size]byte, bool) {
	src, dst = src.Unmap(), dst.Unmap()
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return [sha1.Size]byte{}, false
	}
	// The smaller endpoint first: by address, then by port.
	if c := src.Compare(dst); c > 0 || c == 0 && portLess(dstPort, srcPort) {
		src, dst = dst, src
		srcPort, dstPort = dstPort, srcPort
	}
	var buf [maxInput]byte
	b := binary.BigEndian.AppendUint16(buf[:0], h.Seed)
	b = append(b, src.AsSlice()...)
	b = append(b, dst.AsSlice()...)
	b = append(b, proto, 0)
	if hasPorts(proto) {
		b = binary.BigEndian.AppendUint16(b, srcPort)
		b = binary.BigEndian.AppendUint16(b, dstPort)
	}
	return sha1.Sum(b), true
}

// ID returns the Community ID of a flow, "1:" and the base64 of Sum, or
// "" when the addresses are invalid or of different families.
func (h Hasher) ID(proto uint8, src, dst netip.Addr, srcPort, dstPort uint16) string {
	sum, ok := h.Sum(proto, src, dst, srcPort, dstPort)
	if !ok {
		return ""
	}
	var out [len(Prefix) + 28]byte // base64 of 20 bytes is 28 characters
	copy(out[:], Prefix)
	base64.StdEncoding.Encode(out[len(Prefix):], sum[:])
	return string(out[:])
}

// TCP returns the Community ID of a TCP flow.
func (h Hasher) TCP(src, dst netip.Addr, srcPort, dstPort uint16) string {
	return h.ID(ProtoTCP, src, dst, srcPort, dstPort)
}

// portLess orders the ports of two endpoints with equal addresses (every
// loopback connection) as Zeek and Suricata do: both compare the ports in
// network byte order held in a host integer, which on the little-endian
// hosts they run on (x86-64, arm64) compares the ports with their bytes
// swapped. The specification's Python reference compares the numbers
// instead, and gets other hashes for some such flows (an open question of
// the specification); flowtap gives Zeek's and Suricata's, on any host.
func portLess(a, b uint16) bool { return bits.ReverseBytes16(a) < bits.ReverseBytes16(b) }

// hasPorts reports whether the protocol's ports are part of the hash.
func hasPorts(proto uint8) bool {
	return proto == ProtoTCP || proto == ProtoUDP || proto == ProtoSCTP
}
