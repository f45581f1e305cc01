// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"fmt"
	"net/netip"
	"unsafe"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/slab"
)

// Values of flow_record fields, as flowtap.bpf.c writes them.
const (
	recordTypePacket   = 1 // a flow-relevant packet (cgroup_skb)
	recordTypeClosed   = 2 // a socket entered TCP_CLOSE
	recordTypeSnapshot = 3 // a counted socket, reported by Snapshot
	recordTypeNoSocket = 4 // a packet no socket took, reset by the kernel
	recordTypeDNS      = 5 // a DNS payload (struct dns_record + payload)
	recordDirIngress   = 1
	recordDirEgress    = 2
	recordAFInet       = 2  // AF_INET
	recordAFInet6      = 10 // AF_INET6
)

// recordSize is the size in bytes of one ring buffer record (struct
// flow_record in flowtap.bpf.c).
const recordSize = int(unsafe.Sizeof(flowtapFlowRecord{}))

// maxInternedComms bounds a decoder's comm cache; when it is full the cache
// starts over.
const maxInternedComms = 1024

// decoder turns records into events. It interns owner task names, so the
// comm of a busy process does not cost an allocation per record. A
// decoder is not safe for concurrent use.
type decoder struct {
	bootToWall int64
	comms      map[[16]byte]string
	// Payloads are carved from slabs (when slab is set): one allocation
	// per slab.Size records instead of one per record. A payload kept
	// alive keeps its slab alive, a few KiB.
	slab    bool
	packets []events.PacketFlowBase
	sockets []events.TCPSocketBase
}

func newDecoder(bootToWall int64) decoder {
	return decoder{bootToWall: bootToWall, comms: make(map[[16]byte]string), slab: true}
}

// newPacket returns a zeroed payload for a packet record.
func (d *decoder) newPacket() *events.PacketFlowBase {
	if !d.slab {
		return new(events.PacketFlowBase)
	}
	return slab.Carve(&d.packets)
}

// newSocket returns a zeroed payload for a socket record.
func (d *decoder) newSocket() *events.TCPSocketBase {
	if !d.slab {
		return new(events.TCPSocketBase)
	}
	return slab.Carve(&d.sockets)
}

// decode turns one ring buffer record into an event: a packet record into
// a net_packet_flow_base event (*events.PacketFlowBase), a no-socket reset
// record into the same with NoSocket set and Direction Ingress (the
// incoming packet no socket took), a closed-socket or
// snapshot record into a net_tcp_socket_base event (*events.TCPSocketBase
// with Report events.SocketClosed or events.SocketSnapshot). raw must be
// exactly one record (144 bytes, host byte order, as the kernel wrote it).
// bootToWall is added to the record's CLOCK_BOOTTIME timestamp to get
// wall-clock nanoseconds since the Unix epoch. Addresses are kept in the
// form the kernel gave (an IPv4-mapped IPv6 address stays mapped).
//
// decode rejects records of the wrong size, of an unknown type, with an
// unknown address family, or packet records with an unknown direction.
// Fields that do not apply to a record's type are ignored. With slabs off it allocates
// the event payload and the owner's task name, if any (Capture's reader
// carves payloads from slabs and interns the names).
func (d *decoder) decode(raw []byte) (events.Event, error) {
	if len(raw) >= recordSize && raw[recordTypeOffset] == recordTypeDNS {
		return d.decodeDNS(raw)
	}
	var rec flowtapFlowRecord
	if len(raw) != recordSize {
		return events.Event{}, fmt.Errorf("decode flow record: got %d bytes, want %d (is flowtap_bpfel.o out of date? run go generate ./bpf/)", len(raw), recordSize)
	}
	// The record is a plain little-endian C struct with explicit padding and
	// the generated Go struct has the same layout (see TestRecordLayout), so
	// a byte copy decodes it. Copying (rather than casting) keeps unaligned
	// input safe.
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&rec)), recordSize), raw)

	src, dst, err := recordAddrs(rec.Family, &rec.Saddr, &rec.Daddr)
	if err != nil {
		return events.Event{}, fmt.Errorf("decode flow record: %w", err)
	}
	counters := events.Counters{
		BytesSent:       rec.BytesSent,
		BytesReceived:   rec.BytesReceived,
		PacketsSent:     rec.PacketsSent,
		PacketsReceived: rec.PacketsReceived,
	}

	var id events.ID
	var payload events.Payload
	switch rec.Type {
	case recordTypePacket:
		p := d.newPacket()
		*p = events.PacketFlowBase{
			Src:      src,
			Dst:      dst,
			SrcPort:  rec.Sport,
			DstPort:  rec.Dport,
			Flags:    events.TCPFlags(rec.TcpFlags),
			Length:   rec.Len,
			Counters: counters,
		}
		if p.Direction, err = recordDirection(rec.Direction); err != nil {
			return events.Event{}, fmt.Errorf("decode flow record: packet record with %w", err)
		}
		id, payload = events.IDNetPacketFlowBase, p
	case recordTypeNoSocket:
		// The incoming packet the kernel answered with a reset because
		// no socket took it; it has no socket, counters or owner.
		p := d.newPacket()
		*p = events.PacketFlowBase{
			Direction: events.Ingress,
			Src:       src,
			Dst:       dst,
			SrcPort:   rec.Sport,
			DstPort:   rec.Dport,
			Flags:     events.TCPFlags(rec.TcpFlags),
			Length:    rec.Len,
			NoSocket:  true,
		}
		id, payload = events.IDNetPacketFlowBase, p
	case recordTypeClosed, recordTypeSnapshot:
		report := events.SocketClosed
		if rec.Type == recordTypeSnapshot {
			report = events.SocketSnapshot
		}
		sk := d.newSocket()
		*sk = events.TCPSocketBase{
			Report:     report,
			Local:      src,
			Remote:     dst,
			LocalPort:  rec.Sport,
			RemotePort: rec.Dport,
			State:      rec.State,
			Counters:   counters,
		}
		id, payload = events.IDNetTCPSocketBase, sk
	default:
		return events.Event{}, fmt.Errorf("decode flow record: unknown record type %d (want %d=packet, %d=socket closed, %d=socket snapshot or %d=no-socket reset; is flowtap_bpfel.o out of date?)",
			rec.Type, recordTypePacket, recordTypeClosed, recordTypeSnapshot, recordTypeNoSocket)
	}
	ev := events.Event{
		ID:        id,
		Timestamp: int64(rec.TsNs) + d.bootToWall,
		Context: events.Context{
			SocketCookie: rec.Cookie,
			CgroupID:     rec.CgroupId,
			PID:          rec.Pid,
			UID:          rec.Uid,
			Comm:         d.comm(&rec.Comm),
			PPID:         rec.Ppid,
		},
		Payload: payload,
	}
	if rec.StartNs != 0 {
		ev.Context.ProcessStart = int64(rec.StartNs) + d.bootToWall
	}
	return ev, nil
}

// recordAddrs turns a record's family and address bytes into addresses:
// IPv4 in the first 4 bytes, IPv6 in all 16.
func recordAddrs(family uint16, saddr, daddr *[16]byte) (src, dst netip.Addr, err error) {
	switch family {
	case recordAFInet:
		return netip.AddrFrom4([4]byte(saddr[:4])), netip.AddrFrom4([4]byte(daddr[:4])), nil
	case recordAFInet6:
		return netip.AddrFrom16(*saddr), netip.AddrFrom16(*daddr), nil
	}
	return netip.Addr{}, netip.Addr{}, fmt.Errorf("unknown address family %d (want %d=AF_INET or %d=AF_INET6)", family, recordAFInet, recordAFInet6)
}

// recordDirection turns a record's direction byte into a direction.
func recordDirection(d uint8) (events.PacketDirection, error) {
	switch d {
	case recordDirIngress:
		return events.Ingress, nil
	case recordDirEgress:
		return events.Egress, nil
	}
	return 0, fmt.Errorf("unknown direction %d (want %d=ingress or %d=egress)", d, recordDirIngress, recordDirEgress)
}

// comm returns the task name in b: the bytes before the first NUL. With a
// cache (d.comms not nil) repeated names share one string.
func (d *decoder) comm(b *[16]byte) string {
	n := 0
	for n < len(b) && b[n] != 0 {
		n++
	}
	if n == 0 {
		return ""
	}
	if d.comms == nil {
		return string(b[:n])
	}
	// Bytes after the NUL are not part of the name: zero them in the key.
	var key [16]byte
	copy(key[:n], b[:n])
	if s, ok := d.comms[key]; ok {
		return s
	}
	if len(d.comms) >= maxInternedComms {
		clear(d.comms)
	}
	s := string(b[:n])
	d.comms[key] = s
	return s
}
