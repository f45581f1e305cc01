package bpf

import (
	"fmt"
	"net/netip"
	"unsafe"

	"github.com/flowtap/flowtap/events"
)

// Values of flow_record fields, as flowtap.bpf.c writes them.
const (
	recordDirIngress = 1
	recordDirEgress  = 2
	recordAFInet     = 2  // AF_INET
	recordAFInet6    = 10 // AF_INET6
)

// recordSize is the size in bytes of one ring buffer record (struct
// flow_record in flowtap.bpf.c).
const recordSize = int(unsafe.Sizeof(flowtapFlowRecord{}))

// Decode turns one ring buffer record into a net_packet_flow_base event.
// raw must be exactly one record (72 bytes, host byte order, as
// the kernel wrote it). bootToWall is added to the record's CLOCK_BOOTTIME
// timestamp to get wall-clock nanoseconds since the Unix epoch.
//
// Decode rejects records of the wrong size, with an unknown address family
// or with an unknown direction. It allocates only the event payload.
func Decode(raw []byte, bootToWall int64) (events.Event, error) {
	var rec flowtapFlowRecord
	if len(raw) != recordSize {
		return events.Event{}, fmt.Errorf("decode flow record: got %d bytes, want %d (is flowtap_bpfel.o out of date? run go generate ./bpf/)", len(raw), recordSize)
	}
	// The record is a plain little-endian C struct with explicit padding and
	// the generated Go struct has the same layout (see TestRecordLayout), so
	// a byte copy decodes it. Copying (rather than casting) keeps unaligned
	// input safe.
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&rec)), recordSize), raw)

	p := &events.PacketFlowBase{
		SrcPort: rec.Sport,
		DstPort: rec.Dport,
		Flags:   events.TCPFlags(rec.TcpFlags),
		Length:  rec.Len,
	}
	switch rec.Direction {
	case recordDirIngress:
		p.Direction = events.Ingress
	case recordDirEgress:
		p.Direction = events.Egress
	default:
		return events.Event{}, fmt.Errorf("decode flow record: unknown direction %d (want 1=ingress or 2=egress)", rec.Direction)
	}
	switch rec.Family {
	case recordAFInet:
		p.Src = netip.AddrFrom4([4]byte(rec.Saddr[:4]))
		p.Dst = netip.AddrFrom4([4]byte(rec.Daddr[:4]))
	case recordAFInet6:
		p.Src = netip.AddrFrom16(rec.Saddr)
		p.Dst = netip.AddrFrom16(rec.Daddr)
	default:
		return events.Event{}, fmt.Errorf("decode flow record: unknown address family %d (want %d=AF_INET or %d=AF_INET6)", rec.Family, recordAFInet, recordAFInet6)
	}
	return events.Event{
		ID:        events.IDNetPacketFlowBase,
		Timestamp: int64(rec.TsNs) + bootToWall,
		Context: events.Context{
			SocketCookie: rec.Cookie,
			CgroupID:     rec.CgroupId,
		},
		Payload: p,
	}, nil
}
