package bpf

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf/btf"

	"github.com/flowtap/flowtap/events"
)

// encodeRecord is the inverse of Decode's byte copy: the bytes the kernel
// would write for r.
func encodeRecord(r *flowtapFlowRecord) []byte {
	b := make([]byte, recordSize)
	copy(b, unsafe.Slice((*byte)(unsafe.Pointer(r)), recordSize))
	return b
}

// recordFor builds a raw record from an event (the inverse of Decode).
func recordFor(ev events.Event, bootToWall int64) flowtapFlowRecord {
	p := ev.Payload.(*events.PacketFlowBase)
	r := flowtapFlowRecord{
		TsNs:      uint64(ev.Timestamp - bootToWall),
		Cookie:    ev.Context.SocketCookie,
		CgroupId:  ev.Context.CgroupID,
		Len:       p.Length,
		Sport:     p.SrcPort,
		Dport:     p.DstPort,
		Direction: uint8(p.Direction),
		TcpFlags:  uint8(p.Flags),
	}
	if p.Src.Is4() {
		r.Family = recordAFInet
		s, d := p.Src.As4(), p.Dst.As4()
		copy(r.Saddr[:], s[:])
		copy(r.Daddr[:], d[:])
	} else {
		r.Family = recordAFInet6
		r.Saddr, r.Daddr = p.Src.As16(), p.Dst.As16()
	}
	return r
}

// TestRecordLayout pins that the Go struct bpf2go generated and the C
// struct in the embedded object agree field by field, and that no field
// relies on implicit padding.
func TestRecordLayout(t *testing.T) {
	spec, err := loadFlowtap()
	if err != nil {
		t.Fatal(err)
	}
	var st *btf.Struct
	if err := spec.Types.TypeByName("flow_record", &st); err != nil {
		t.Fatalf("flow_record not in the object's BTF: %v", err)
	}
	if got, want := int(st.Size), recordSize; got != want {
		t.Fatalf("C struct flow_record is %d bytes, Go flowtapFlowRecord is %d", got, want)
	}
	if recordSize != 72 {
		t.Errorf("record size = %d, the README documents 72", recordSize)
	}
	gt := reflect.TypeOf(flowtapFlowRecord{})
	var goFields []reflect.StructField
	for i := range gt.NumField() {
		if f := gt.Field(i); f.Name != "_" {
			goFields = append(goFields, f)
		}
	}
	if len(goFields) != len(st.Members) {
		t.Fatalf("Go struct has %d fields, C struct %d members", len(goFields), len(st.Members))
	}
	end := uintptr(0)
	for i, m := range st.Members {
		f := goFields[i]
		if uintptr(m.Offset.Bytes()) != f.Offset {
			t.Errorf("member %s at C offset %d, Go field %s at %d", m.Name, m.Offset.Bytes(), f.Name, f.Offset)
		}
		if f.Offset != end {
			t.Errorf("implicit padding before %s (offset %d, previous field ended at %d)", m.Name, f.Offset, end)
		}
		end = f.Offset + f.Type.Size()
	}
	if end != uintptr(recordSize) {
		t.Errorf("implicit tail padding: fields end at %d, struct is %d bytes", end, recordSize)
	}
	// The map the programs write must be a ring buffer, and the lost
	// counter a one-slot per-CPU array.
	if m := spec.Maps[flowtapMapFlowRecords]; m.Type.String() != "RingBuf" || m.MaxEntries != DefaultRingBufferSize {
		t.Errorf("flow_records: type %s, max entries %d", m.Type, m.MaxEntries)
	}
	if m := spec.Maps[flowtapMapLostRecords]; m.Type.String() != "PerCPUArray" || m.MaxEntries != 1 {
		t.Errorf("lost_records: type %s, max entries %d", m.Type, m.MaxEntries)
	}
}

func TestDecodeRoundTrip(t *testing.T) {
	const offset = int64(1_700_000_000_000_000_000)
	mapped := netip.MustParseAddr("::ffff:10.1.2.3")
	for _, tc := range []struct {
		name string
		ev   events.Event
	}{
		{"v4 egress SYN", events.Event{
			ID: events.IDNetPacketFlowBase, Timestamp: offset + 123456789,
			Context: events.Context{SocketCookie: 4242, CgroupID: 1},
			Payload: &events.PacketFlowBase{
				Direction: events.Egress,
				Src:       netip.MustParseAddr("127.0.0.1"), Dst: netip.MustParseAddr("192.0.2.200"),
				SrcPort: 54321, DstPort: 443, Flags: events.FlagSYN, Length: 60,
			},
		}},
		{"v6 ingress FIN", events.Event{
			ID: events.IDNetPacketFlowBase, Timestamp: offset + 1,
			Context: events.Context{SocketCookie: 1 << 62, CgroupID: 1<<40 + 7},
			Payload: &events.PacketFlowBase{
				Direction: events.Ingress,
				Src:       netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("::1"),
				SrcPort: 80, DstPort: 65535, Flags: events.FlagFIN | events.FlagACK, Length: 1500,
			},
		}},
		{"v4-mapped v6 RST stays mapped", events.Event{
			ID: events.IDNetPacketFlowBase, Timestamp: offset,
			Context: events.Context{SocketCookie: 9, CgroupID: 2},
			Payload: &events.PacketFlowBase{
				Direction: events.Egress,
				Src:       mapped, Dst: netip.IPv6Unspecified(),
				SrcPort: 1, DstPort: 2, Flags: events.FlagRST, Length: 40,
			},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := recordFor(tc.ev, offset)
			got, err := Decode(encodeRecord(&r), offset)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, tc.ev) {
				t.Fatalf("Decode round trip:\n got  %+v %+v\n want %+v %+v", got, got.Payload, tc.ev, tc.ev.Payload)
			}
			p := got.Payload.(*events.PacketFlowBase)
			want := tc.ev.Payload.(*events.PacketFlowBase)
			if p.Src.Is4() != want.Src.Is4() || p.Src.Is4In6() != want.Src.Is4In6() {
				t.Errorf("address form changed: got %v, want %v", p.Src, want.Src)
			}
		})
	}
}

func TestDecodeFieldsFromKnownBytes(t *testing.T) {
	// Hand-written bytes, independent of the generated struct: a v4
	// ingress SYN|ACK from 127.0.0.1:8080 to 127.0.0.2:40000.
	raw := make([]byte, 72)
	le := binary.LittleEndian
	le.PutUint64(raw[0:], 5_000_000_000)            // ts_ns
	le.PutUint64(raw[8:], 77)                       // cookie
	le.PutUint64(raw[16:], 1)                       // cgroup_id
	copy(raw[24:], []byte{127, 0, 0, 1})            // saddr
	copy(raw[40:], []byte{127, 0, 0, 2})            // daddr
	le.PutUint32(raw[56:], 60)                      // len
	le.PutUint16(raw[60:], 8080)                    // sport
	le.PutUint16(raw[62:], 40000)                   // dport
	le.PutUint16(raw[64:], 2)                       // family
	raw[66] = 1                                     // direction
	raw[67] = byte(events.FlagSYN | events.FlagACK) // flags
	ev, err := Decode(raw, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := events.Event{
		ID: events.IDNetPacketFlowBase, Timestamp: 5_000_000_010,
		Context: events.Context{SocketCookie: 77, CgroupID: 1},
		Payload: &events.PacketFlowBase{
			Direction: events.Ingress,
			Src:       netip.MustParseAddr("127.0.0.1"), Dst: netip.MustParseAddr("127.0.0.2"),
			SrcPort: 8080, DstPort: 40000, Flags: events.FlagSYN | events.FlagACK, Length: 60,
		},
	}
	if !reflect.DeepEqual(ev, want) {
		t.Fatalf("got %+v %+v, want %+v %+v", ev, ev.Payload, want, want.Payload)
	}
}

func TestDecodeRejects(t *testing.T) {
	good := flowtapFlowRecord{Family: recordAFInet, Direction: recordDirEgress, TcpFlags: 2}
	if _, err := Decode(encodeRecord(&good), 0); err != nil {
		t.Fatalf("valid record rejected: %v", err)
	}
	badFamily := good
	badFamily.Family = 1 // AF_UNIX
	badDir := good
	badDir.Direction = 3
	zeroDir := good
	zeroDir.Direction = 0
	for _, tc := range []struct {
		name string
		raw  []byte
		want string
	}{
		{"nil", nil, "got 0 bytes, want 72"},
		{"short", encodeRecord(&good)[:71], "got 71 bytes"},
		{"long", append(encodeRecord(&good), 0), "got 73 bytes"},
		{"unknown family", encodeRecord(&badFamily), "unknown address family 1"},
		{"unknown direction", encodeRecord(&badDir), "unknown direction 3"},
		{"zero direction", encodeRecord(&zeroDir), "unknown direction 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := Decode(tc.raw, 0)
			if err == nil {
				t.Fatalf("Decode accepted bad input: %+v", ev)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
			if ev.Payload != nil || ev.ID != 0 {
				t.Errorf("error result carries an event: %+v", ev)
			}
		})
	}
}

func TestDecodeAllocations(t *testing.T) {
	r := flowtapFlowRecord{Family: recordAFInet6, Direction: recordDirIngress, TcpFlags: 1}
	raw := encodeRecord(&r)
	var sink events.Event
	allocs := testing.AllocsPerRun(1000, func() {
		sink, _ = Decode(raw, 0)
	})
	_ = sink
	if allocs > 1 {
		t.Fatalf("Decode allocates %.1f times per record, want at most 1 (the payload)", allocs)
	}
}

func FuzzDecode(f *testing.F) {
	v4 := flowtapFlowRecord{TsNs: 1, Cookie: 2, CgroupId: 3, Family: recordAFInet, Direction: recordDirEgress, TcpFlags: 2, Sport: 1, Dport: 2, Len: 60}
	copy(v4.Saddr[:], []byte{127, 0, 0, 1})
	v6 := flowtapFlowRecord{Family: recordAFInet6, Direction: recordDirIngress, TcpFlags: 0x11}
	v6.Saddr[15], v6.Daddr[15] = 1, 1
	f.Add(encodeRecord(&v4), int64(0))
	f.Add(encodeRecord(&v6), int64(-5))
	f.Add([]byte{}, int64(0))
	f.Add(bytes.Repeat([]byte{0xff}, 72), int64(1<<62))
	familyOff := int(unsafe.Offsetof(v4.Family))
	dirOff := int(unsafe.Offsetof(v4.Direction))

	f.Fuzz(func(t *testing.T, raw []byte, bootToWall int64) {
		ev, err := Decode(raw, bootToWall)
		valid := len(raw) == recordSize &&
			(raw[dirOff] == recordDirIngress || raw[dirOff] == recordDirEgress)
		if valid {
			fam := binary.LittleEndian.Uint16(raw[familyOff:])
			valid = fam == recordAFInet || fam == recordAFInet6
		}
		if (err == nil) != valid {
			t.Fatalf("Decode error = %v, but input validity = %v", err, valid)
		}
		if err != nil {
			return
		}
		p, ok := ev.Payload.(*events.PacketFlowBase)
		if !ok || ev.ID != events.IDNetPacketFlowBase || p.EventID() != ev.ID {
			t.Fatalf("bad event %+v", ev)
		}
		if p.Direction != events.Ingress && p.Direction != events.Egress {
			t.Fatalf("bad direction %d", p.Direction)
		}
		if !p.Src.IsValid() || !p.Dst.IsValid() || p.Src.Is4() != p.Dst.Is4() {
			t.Fatalf("bad addresses %v %v", p.Src, p.Dst)
		}
		// Re-encoding and decoding again gives the same event.
		r := recordFor(ev, bootToWall)
		ev2, err := Decode(encodeRecord(&r), bootToWall)
		if err != nil {
			t.Fatalf("re-encoded record rejected: %v", err)
		}
		if !reflect.DeepEqual(ev, ev2) {
			t.Fatalf("not stable: %+v vs %+v", ev.Payload, ev2.Payload)
		}
		// Field rendering never panics.
		_ = p.AppendFields(nil)
	})
}

func BenchmarkDecode(b *testing.B) {
	r := flowtapFlowRecord{Family: recordAFInet6, Direction: recordDirIngress, TcpFlags: 2}
	raw := encodeRecord(&r)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(raw, 0); err != nil {
			b.Fatal(err)
		}
	}
}
