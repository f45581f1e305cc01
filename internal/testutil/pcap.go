// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"encoding/binary"
	"net/netip"
)

// ConnectionsPcap returns a classic pcap file (LINKTYPE_RAW, IPv4) of n
// complete TCP connections, one a millisecond: from 10.0.x.y, a port of
// its own, to 10.1.0.1:80, each a handshake, a request of 100 bytes and a
// response of 200, and a FIN from each side. 'flowtap replay' derives a
// begin and an end per local endpoint from each (two per connection
// without --local).
func ConnectionsPcap(n int) []byte {
	b := make([]byte, 0, 24+n*7*80)
	b = binary.LittleEndian.AppendUint32(b, 0xa1b2c3d4)
	b = binary.LittleEndian.AppendUint16(b, 2)
	b = binary.LittleEndian.AppendUint16(b, 4)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, 65535)
	b = binary.LittleEndian.AppendUint32(b, 101) // LINKTYPE_RAW
	server := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, 0, 1}), 80)
	const (
		fin = 0x01
		syn = 0x02
		psh = 0x08
		ack = 0x10
	)
	start := int64(1_700_000_000) * 1e6 // µs
	for i := range n {
		client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), uint16(10000+i%50000))
		t := start + int64(i)*1000
		isnC, isnS := uint32(1000+i), uint32(5000+i)
		pkt := func(us int64, from, to netip.AddrPort, seq, ackn uint32, flags byte, payload int) {
			ip := tcpPacket(from, to, seq, ackn, flags, payload)
			b = binary.LittleEndian.AppendUint32(b, uint32((t+us)/1e6))
			b = binary.LittleEndian.AppendUint32(b, uint32((t+us)%1e6))
			b = binary.LittleEndian.AppendUint32(b, uint32(len(ip)))
			b = binary.LittleEndian.AppendUint32(b, uint32(len(ip)))
			b = append(b, ip...)
		}
		pkt(0, client, server, isnC, 0, syn, 0)
		pkt(50, server, client, isnS, isnC+1, syn|ack, 0)
		pkt(100, client, server, isnC+1, isnS+1, ack|psh, 100)
		pkt(150, server, client, isnS+1, isnC+101, ack|psh, 200)
		pkt(200, client, server, isnC+101, isnS+201, fin|ack, 0)
		pkt(250, server, client, isnS+201, isnC+102, fin|ack, 0)
		pkt(300, client, server, isnC+102, isnS+202, ack, 0)
	}
	return b
}

// tcpPacket builds an IPv4 TCP packet with payload bytes of zeros.
func tcpPacket(from, to netip.AddrPort, seq, ackn uint32, flags byte, payload int) []byte {
	p := make([]byte, 40+payload)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8], p[9] = 64, 6
	a, c := from.Addr().As4(), to.Addr().As4()
	copy(p[12:], a[:])
	copy(p[16:], c[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(p[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(p[20:], from.Port())
	binary.BigEndian.PutUint16(p[22:], to.Port())
	binary.BigEndian.PutUint32(p[24:], seq)
	binary.BigEndian.PutUint32(p[28:], ackn)
	p[32], p[33] = 5<<4, flags
	binary.BigEndian.PutUint16(p[34:], 0xffff)
	return p
}
