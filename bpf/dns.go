// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"fmt"
	"unsafe"

	"github.com/flowtap/flowtap/bpf/limits"
	"github.com/flowtap/flowtap/events"
)

// recordTypeOffset is the offset of the type byte, the same in struct
// flow_record and struct dns_record (TestRecordLayout pins both).
const recordTypeOffset = 122

// dnsHeaderSize is the size of struct dns_record, the header of a DNS
// record; the captured payload follows it.
const dnsHeaderSize = int(unsafe.Sizeof(flowtapDnsRecord{}))

// dnsFlagTruncated is DNS_FLAG_TRUNCATED of dns_record.flags.
const dnsFlagTruncated = 0x01

// Transport protocols of dns_record.proto.
const (
	ipprotoTCP = 6
	ipprotoUDP = 17
)

// dnsTruncatedLocked reads the kernel's DNS truncation counter (the last
// value read once the capture is closed). c.mu must be held.
func (c *Capture) dnsTruncatedLocked() uint64 {
	if c.closed {
		return c.dnsTrunc
	}
	var per []uint64
	if err := c.objs.DnsTruncated.Lookup(uint32(0), &per); err != nil {
		c.log.Error("read DNS truncation counter", "error", err)
		return c.dnsTrunc
	}
	var total uint64
	for _, v := range per {
		total += v
	}
	c.dnsTrunc = total
	return total
}

// decodeDNS turns a DNS record (header and captured payload) into a
// net_packet_dns_base event. The payload is copied: the reader reuses
// its buffer.
func (d *decoder) decodeDNS(raw []byte) (events.Event, error) {
	var rec flowtapDnsRecord
	if len(raw) < dnsHeaderSize {
		return events.Event{}, fmt.Errorf("decode dns record: got %d bytes, want at least %d", len(raw), dnsHeaderSize)
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&rec)), dnsHeaderSize), raw)
	payload := raw[dnsHeaderSize:]
	if int(rec.CapLen) != len(payload) || rec.CapLen > limits.DNSMaxPayload || rec.CapLen > rec.MsgLen {
		return events.Event{}, fmt.Errorf("decode dns record: %d payload bytes, header says %d captured of %d (at most %d)", len(payload), rec.CapLen, rec.MsgLen, limits.DNSMaxPayload)
	}
	p := &events.PacketDNSBase{
		DNSPacket:   events.DNSPacket{SrcPort: rec.Sport, DstPort: rec.Dport},
		Length:      rec.MsgLen,
		Truncated:   rec.Flags&dnsFlagTruncated != 0,
		NetNSCookie: rec.NetnsCookie,
		Payload:     append([]byte(nil), payload...),
	}
	var err error
	if p.Src, p.Dst, err = recordAddrs(rec.Family, &rec.Saddr, &rec.Daddr); err != nil {
		return events.Event{}, fmt.Errorf("decode dns record: %w", err)
	}
	if p.Direction, err = recordDirection(rec.Direction); err != nil {
		return events.Event{}, fmt.Errorf("decode dns record: %w", err)
	}
	switch rec.Proto {
	case ipprotoUDP:
		p.Proto = events.DNSOverUDP
	case ipprotoTCP:
		p.Proto = events.DNSOverTCP
	default:
		return events.Event{}, fmt.Errorf("decode dns record: unknown transport %d (want 6=TCP or 17=UDP)", rec.Proto)
	}
	ev := events.Event{
		ID:        events.IDNetPacketDNSBase,
		Timestamp: int64(rec.TsNs) + d.bootToWall,
		Context: events.Context{
			SocketCookie: rec.Cookie,
			CgroupID:     rec.CgroupId,
			PID:          rec.Pid,
			UID:          rec.Uid,
			Comm:         d.comm(&rec.Comm),
			PPID:         rec.Ppid,
		},
		Payload: p,
	}
	if rec.StartNs != 0 {
		ev.Context.ProcessStart = int64(rec.StartNs) + d.bootToWall
	}
	return ev, nil
}
