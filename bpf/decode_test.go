// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/flowtap/flowtap/bpf/limits"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/slab"
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
	r := flowtapFlowRecord{
		TsNs:     uint64(ev.Timestamp - bootToWall),
		Cookie:   ev.Context.SocketCookie,
		CgroupId: ev.Context.CgroupID,
		Pid:      ev.Context.PID,
		Uid:      ev.Context.UID,
	}
	copy(r.Comm[:], ev.Context.Comm)
	var src, dst netip.Addr
	var c events.Counters
	switch p := ev.Payload.(type) {
	case *events.PacketFlowBase:
		r.Type = recordTypePacket
		if p.NoSocket {
			r.Type = recordTypeNoSocket
		}
		r.Len, r.Sport, r.Dport = p.Length, p.SrcPort, p.DstPort
		r.Direction, r.TcpFlags = uint8(p.Direction), uint8(p.Flags)
		src, dst, c = p.Src, p.Dst, p.Counters
	case *events.TCPSocketBase:
		r.Type = recordTypeClosed
		if p.Report == events.SocketSnapshot {
			r.Type = recordTypeSnapshot
		}
		r.Sport, r.Dport, r.State = p.LocalPort, p.RemotePort, p.State
		src, dst, c = p.Local, p.Remote, p.Counters
	}
	r.BytesSent, r.BytesReceived, r.PacketsSent, r.PacketsReceived = c.BytesSent, c.BytesReceived, c.PacketsSent, c.PacketsReceived
	if src.Is4() {
		r.Family = recordAFInet
		s, d := src.As4(), dst.As4()
		copy(r.Saddr[:], s[:])
		copy(r.Daddr[:], d[:])
	} else {
		r.Family = recordAFInet6
		r.Saddr, r.Daddr = src.As16(), dst.As16()
	}
	return r
}

// TestRecordLayout pins that the Go struct bpf2go generated and the C
// struct in the embedded object agree field by field, that no field
// relies on implicit padding, and the map definitions.
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
	if recordSize != 144 {
		t.Errorf("record size = %d, the README documents 144", recordSize)
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
	// The offsets the README documents.
	for name, off := range map[string]uintptr{"BytesSent": 24, "Saddr": 56, "Comm": 88, "Pid": 104, "Len": 112, "Family": 120, "Type": 122, "State": 125, "StartNs": 128, "Ppid": 136} {
		if f, ok := gt.FieldByName(name); !ok || f.Offset != off {
			t.Errorf("%s at offset %d, the README documents %d", name, f.Offset, off)
		}
	}

	for _, m := range []struct {
		name    string
		typ     ebpf.MapType
		entries uint32
		flags   uint32
	}{
		{flowtapMapFlowRecords, ebpf.RingBuf, limits.DefaultRingBufferSize, 0},
		{flowtapMapLostRecords, ebpf.PerCPUArray, 1, 0},
		// Counters are per socket and not inherited by accepted
		// children; owners are.
		{flowtapMapSockStates, ebpf.SkStorage, 0, unix.BPF_F_NO_PREALLOC | unix.BPF_F_CLONE},
		{flowtapMapStartOwners, ebpf.Hash, 1 << 18, unix.BPF_F_NO_PREALLOC},
	} {
		s := spec.Maps[m.name]
		if s == nil || s.Type != m.typ || s.MaxEntries != m.entries || s.Flags != m.flags {
			t.Errorf("map %s: %+v, want type %v, %d entries, flags %#x", m.name, s, m.typ, m.entries, m.flags)
		}
	}
}

var (
	testOffset = int64(1_700_000_000_000_000_000)
	someCount  = events.Counters{BytesSent: 1 << 40, BytesReceived: 5, PacketsSent: 7, PacketsReceived: 1<<64 - 1}
)

func TestDecodeRoundTrip(t *testing.T) {
	mapped := netip.MustParseAddr("::ffff:10.1.2.3")
	owner := events.Context{SocketCookie: 4242, CgroupID: 1, PID: 31337, UID: 1000, Comm: "curl"}
	for _, tc := range []struct {
		name string
		ev   events.Event
	}{
		{"v4 egress SYN", events.Event{
			ID: events.IDNetPacketFlowBase, Timestamp: testOffset + 123456789,
			Context: owner,
			Payload: &events.PacketFlowBase{
				Direction: events.Egress,
				Src:       netip.MustParseAddr("127.0.0.1"), Dst: netip.MustParseAddr("192.0.2.200"),
				SrcPort: 54321, DstPort: 443, Flags: events.FlagSYN, Length: 60,
				Counters: events.Counters{PacketsSent: 1},
			},
		}},
		{"v6 ingress FIN without owner", events.Event{
			ID: events.IDNetPacketFlowBase, Timestamp: testOffset + 1,
			Context: events.Context{SocketCookie: 1 << 62, CgroupID: 1<<40 + 7},
			Payload: &events.PacketFlowBase{
				Direction: events.Ingress,
				Src:       netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("::1"),
				SrcPort: 80, DstPort: 65535, Flags: events.FlagFIN | events.FlagACK, Length: 1500,
				Counters: someCount,
			},
		}},
		{"v4-mapped v6 RST stays mapped", events.Event{
			ID: events.IDNetPacketFlowBase, Timestamp: testOffset,
			Context: events.Context{SocketCookie: 9, CgroupID: 2, Comm: "0123456789abcdef"},
			Payload: &events.PacketFlowBase{
				Direction: events.Egress,
				Src:       mapped, Dst: netip.IPv6Unspecified(),
				SrcPort: 1, DstPort: 2, Flags: events.FlagRST, Length: 40,
			},
		}},
		{"v6 no-socket SYN", events.Event{
			ID: events.IDNetPacketFlowBase, Timestamp: testOffset + 4,
			Payload: &events.PacketFlowBase{
				Direction: events.Ingress, NoSocket: true,
				Src: netip.MustParseAddr("2001:db8::7"), Dst: netip.MustParseAddr("::1"),
				SrcPort: 40001, DstPort: 22, Flags: events.FlagSYN, Length: 80,
			},
		}},
		{"v4 no-socket ACK", events.Event{
			ID: events.IDNetPacketFlowBase, Timestamp: testOffset + 4,
			Payload: &events.PacketFlowBase{
				Direction: events.Ingress, NoSocket: true,
				Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"),
				SrcPort: 40001, DstPort: 22, Flags: events.FlagACK, Length: 40,
			},
		}},
		{"v4 socket closed", events.Event{
			ID: events.IDNetTCPSocketBase, Timestamp: testOffset + 5,
			Context: owner,
			Payload: &events.TCPSocketBase{
				Report: events.SocketClosed,
				Local:  netip.MustParseAddr("127.0.0.1"), Remote: netip.MustParseAddr("127.0.0.2"),
				LocalPort: 40000, RemotePort: 8080, State: 5, Counters: someCount,
			},
		}},
		{"mapped socket snapshot", events.Event{
			ID: events.IDNetTCPSocketBase, Timestamp: testOffset + 6,
			Context: events.Context{SocketCookie: 3},
			Payload: &events.TCPSocketBase{
				Report: events.SocketSnapshot,
				Local:  mapped, Remote: netip.MustParseAddr("::ffff:127.0.0.1"),
				LocalPort: 1, RemotePort: 65535, State: 1,
			},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := recordFor(tc.ev, testOffset)
			for _, dec := range []struct {
				name string
				fn   func([]byte) (events.Event, error)
			}{
				{"Decode", func(b []byte) (events.Event, error) { return Decode(b, testOffset) }},
				{"interning decoder", func() func([]byte) (events.Event, error) {
					d := newDecoder(testOffset)
					return d.decode
				}()},
			} {
				got, err := dec.fn(encodeRecord(&r))
				if err != nil {
					t.Fatalf("%s: %v", dec.name, err)
				}
				if !reflect.DeepEqual(got, tc.ev) {
					t.Fatalf("%s round trip:\n got  %+v %+v\n want %+v %+v", dec.name, got, got.Payload, tc.ev, tc.ev.Payload)
				}
			}
		})
	}
}

func TestDecodeFieldsFromKnownBytes(t *testing.T) {
	// Hand-written bytes, independent of the generated struct.
	le := binary.LittleEndian
	base := func(typ byte) []byte {
		raw := make([]byte, 144)
		le.PutUint64(raw[0:], 5_000_000_000)   // ts_ns
		le.PutUint64(raw[8:], 77)              // cookie
		le.PutUint64(raw[16:], 1)              // cgroup_id
		le.PutUint64(raw[24:], 100)            // bytes_sent
		le.PutUint64(raw[32:], 200)            // bytes_received
		le.PutUint64(raw[40:], 3)              // packets_sent
		le.PutUint64(raw[48:], 4)              // packets_received
		copy(raw[56:], []byte{127, 0, 0, 1})   // saddr
		copy(raw[72:], []byte{127, 0, 0, 2})   // daddr
		copy(raw[88:], "nginx\x00junk")        // comm: NUL-terminated
		le.PutUint32(raw[104:], 4321)          // pid
		le.PutUint32(raw[108:], 33)            // uid
		le.PutUint16(raw[116:], 8080)          // sport
		le.PutUint16(raw[118:], 40000)         // dport
		le.PutUint16(raw[120:], 2)             // family
		raw[122] = typ                         // type
		le.PutUint64(raw[128:], 3_000_000_000) // start_ns: 3 s after boot
		le.PutUint32(raw[136:], 17)            // ppid
		return raw
	}
	ctx := events.Context{SocketCookie: 77, CgroupID: 1, PID: 4321, UID: 33, Comm: "nginx", PPID: 17, ProcessStart: 3_000_000_010}
	counters := events.Counters{BytesSent: 100, BytesReceived: 200, PacketsSent: 3, PacketsReceived: 4}

	pkt := base(1)
	le.PutUint32(pkt[112:], 60)                      // len
	pkt[123] = 1                                     // direction: ingress
	pkt[124] = byte(events.FlagSYN | events.FlagACK) // tcp_flags
	pkt[125] = 10                                    // state (not decoded for packets)
	closed := base(2)
	closed[125] = 9 // state: LAST_ACK
	snap := base(3)
	snap[125] = 1

	for _, tc := range []struct {
		name string
		raw  []byte
		want events.Event
	}{
		{"packet", pkt, events.Event{
			ID: events.IDNetPacketFlowBase, Timestamp: 5_000_000_010, Context: ctx,
			Payload: &events.PacketFlowBase{
				Direction: events.Ingress,
				Src:       netip.MustParseAddr("127.0.0.1"), Dst: netip.MustParseAddr("127.0.0.2"),
				SrcPort: 8080, DstPort: 40000, Flags: events.FlagSYN | events.FlagACK, Length: 60,
				Counters: counters,
			},
		}},
		{"closed", closed, events.Event{
			ID: events.IDNetTCPSocketBase, Timestamp: 5_000_000_010, Context: ctx,
			Payload: &events.TCPSocketBase{
				Report: events.SocketClosed,
				Local:  netip.MustParseAddr("127.0.0.1"), Remote: netip.MustParseAddr("127.0.0.2"),
				LocalPort: 8080, RemotePort: 40000, State: 9, Counters: counters,
			},
		}},
		{"snapshot", snap, events.Event{
			ID: events.IDNetTCPSocketBase, Timestamp: 5_000_000_010, Context: ctx,
			Payload: &events.TCPSocketBase{
				Report: events.SocketSnapshot,
				Local:  netip.MustParseAddr("127.0.0.1"), Remote: netip.MustParseAddr("127.0.0.2"),
				LocalPort: 8080, RemotePort: 40000, State: 1, Counters: counters,
			},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := Decode(tc.raw, 10)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(ev, tc.want) {
				t.Fatalf("got %+v %+v, want %+v %+v", ev, ev.Payload, tc.want, tc.want.Payload)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	good := flowtapFlowRecord{Type: recordTypePacket, Family: recordAFInet, Direction: recordDirEgress, TcpFlags: 2}
	if _, err := Decode(encodeRecord(&good), 0); err != nil {
		t.Fatalf("valid record rejected: %v", err)
	}
	// A socket record has no direction: whatever is there is ignored.
	sock := flowtapFlowRecord{Type: recordTypeClosed, Family: recordAFInet6, Direction: 77}
	if _, err := Decode(encodeRecord(&sock), 0); err != nil {
		t.Fatalf("valid socket record rejected: %v", err)
	}
	with := func(f func(r *flowtapFlowRecord)) []byte {
		r := good
		f(&r)
		return encodeRecord(&r)
	}
	for _, tc := range []struct {
		name string
		raw  []byte
		want string
	}{
		{"nil", nil, "got 0 bytes, want 144"},
		{"short", encodeRecord(&good)[:143], "got 143 bytes"},
		{"long", append(encodeRecord(&good), 0), "got 145 bytes"},
		{"old 72-byte record", encodeRecord(&good)[:72], "got 72 bytes, want 144"},
		{"zero type", with(func(r *flowtapFlowRecord) { r.Type = 0 }), "unknown record type 0"},
		{"unknown type", with(func(r *flowtapFlowRecord) { r.Type = 6 }), "unknown record type 6"},
		{"no-socket record, unknown family", with(func(r *flowtapFlowRecord) { r.Type, r.Family = recordTypeNoSocket, 3 }), "unknown address family 3"},
		{"unknown family", with(func(r *flowtapFlowRecord) { r.Family = 1 }), "unknown address family 1"},
		{"socket record, unknown family", with(func(r *flowtapFlowRecord) { r.Type, r.Family = recordTypeSnapshot, 0 }), "unknown address family 0"},
		{"unknown direction", with(func(r *flowtapFlowRecord) { r.Direction = 3 }), "unknown direction 3"},
		{"zero direction", with(func(r *flowtapFlowRecord) { r.Direction = 0 }), "unknown direction 0"},
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

func TestDecodeComm(t *testing.T) {
	rec := func(comm string) []byte {
		r := flowtapFlowRecord{Type: recordTypePacket, Family: recordAFInet, Direction: recordDirIngress}
		copy(r.Comm[:], comm)
		return encodeRecord(&r)
	}
	d := newDecoder(0)
	for _, tc := range []struct{ raw, want string }{
		{"", ""},
		{"sshd", "sshd"},
		{"sshd\x00\x00garbage", "sshd"},
		{"0123456789abcdef", "0123456789abcdef"}, // 16 bytes, no NUL
		{"\x00hidden", ""},
	} {
		for _, dec := range []func([]byte) (events.Event, error){d.decode, func(b []byte) (events.Event, error) { return Decode(b, 0) }} {
			ev, err := dec(rec(tc.raw))
			if err != nil {
				t.Fatal(err)
			}
			if ev.Context.Comm != tc.want {
				t.Errorf("comm bytes %q decoded as %q, want %q", tc.raw, ev.Context.Comm, tc.want)
			}
		}
	}
	// The reader's decoder interns: one string for one name, whatever
	// follows its NUL.
	a, _ := d.decode(rec("sshd\x00x"))
	b, _ := d.decode(rec("sshd\x00y"))
	if unsafe.StringData(a.Context.Comm) != unsafe.StringData(b.Context.Comm) {
		t.Error("the same comm decoded twice gives two strings")
	}
	// The cache is bounded.
	for i := range 3 * maxInternedComms {
		d.decode(rec(string(rune('a'+i%26)) + strings.Repeat("x", i%13) + string(rune('A'+i/26%26)) + string(rune('0'+i/676))))
	}
	if len(d.comms) > maxInternedComms {
		t.Errorf("comm cache holds %d names, limit %d", len(d.comms), maxInternedComms)
	}
}

func TestDecodeAllocations(t *testing.T) {
	r := flowtapFlowRecord{Type: recordTypePacket, Family: recordAFInet6, Direction: recordDirIngress, TcpFlags: 1}
	copy(r.Comm[:], "postgres")
	raw := encodeRecord(&r)
	d := newDecoder(0)
	var sink events.Event
	allocs := testing.AllocsPerRun(1000, func() {
		sink, _ = d.decode(raw)
	})
	_ = sink
	// Payloads come from slabs of slab.Size: one allocation per slab.
	if allocs > 2.0/slab.Size {
		t.Fatalf("the reader's decoder allocates %.3f times per record, want at most %.3f (a payload slab per %d records)", allocs, 2.0/slab.Size, slab.Size)
	}
	r.Type = recordTypeClosed
	raw = encodeRecord(&r)
	if allocs := testing.AllocsPerRun(1000, func() { sink, _ = d.decode(raw) }); allocs > 2.0/slab.Size {
		t.Fatalf("decoding a socket record allocates %.3f times, want at most %.3f", allocs, 2.0/slab.Size)
	}
	// Each record gets a payload of its own.
	a, _ := d.decode(raw)
	b, _ := d.decode(raw)
	if a.Payload.(*events.TCPSocketBase) == b.Payload.(*events.TCPSocketBase) {
		t.Fatal("two records share one payload")
	}
}

func FuzzDecode(f *testing.F) {
	v4 := flowtapFlowRecord{TsNs: 1, Cookie: 2, CgroupId: 3, Type: recordTypePacket, Family: recordAFInet, Direction: recordDirEgress, TcpFlags: 2, Sport: 1, Dport: 2, Len: 60, Pid: 9, PacketsSent: 1}
	copy(v4.Saddr[:], []byte{127, 0, 0, 1})
	copy(v4.Comm[:], "bash")
	v6 := flowtapFlowRecord{Type: recordTypePacket, Family: recordAFInet6, Direction: recordDirIngress, TcpFlags: 0x11}
	v6.Saddr[15], v6.Daddr[15] = 1, 1
	closed := flowtapFlowRecord{Type: recordTypeClosed, Family: recordAFInet, State: 5, BytesSent: 10}
	snap := flowtapFlowRecord{Type: recordTypeSnapshot, Family: recordAFInet6, State: 1, Direction: 9}
	copy(snap.Comm[:], "0123456789abcdef")
	nosock := flowtapFlowRecord{Type: recordTypeNoSocket, Family: recordAFInet, Direction: recordDirIngress, TcpFlags: 2, Sport: 5, Dport: 6, Len: 60}
	for _, r := range []flowtapFlowRecord{v4, v6, closed, snap, nosock} {
		f.Add(encodeRecord(&r), int64(0))
	}
	f.Add([]byte{}, int64(-5))
	f.Add(bytes.Repeat([]byte{0xff}, 144), int64(1<<62))
	for _, raw := range dnsSeeds() {
		f.Add(raw, int64(7))
	}
	familyOff := int(unsafe.Offsetof(v4.Family))
	dirOff := int(unsafe.Offsetof(v4.Direction))
	typeOff := int(unsafe.Offsetof(v4.Type))

	f.Fuzz(func(t *testing.T, raw []byte, bootToWall int64) {
		ev, err := Decode(raw, bootToWall)
		if len(raw) >= recordSize && raw[typeOff] == recordTypeDNS {
			checkDNSDecode(t, raw, bootToWall, ev, err)
			return
		}
		valid := len(raw) == recordSize
		if valid {
			fam := binary.LittleEndian.Uint16(raw[familyOff:])
			switch raw[typeOff] {
			case recordTypePacket:
				valid = raw[dirOff] == recordDirIngress || raw[dirOff] == recordDirEgress
			case recordTypeClosed, recordTypeSnapshot, recordTypeNoSocket:
			default:
				valid = false
			}
			valid = valid && (fam == recordAFInet || fam == recordAFInet6)
		}
		if (err == nil) != valid {
			t.Fatalf("Decode error = %v, but input validity = %v", err, valid)
		}
		if err != nil {
			return
		}
		if ev.Payload == nil || ev.Payload.EventID() != ev.ID {
			t.Fatalf("bad event %+v", ev)
		}
		switch p := ev.Payload.(type) {
		case *events.PacketFlowBase:
			if p.Direction != events.Ingress && p.Direction != events.Egress {
				t.Fatalf("bad direction %d", p.Direction)
			}
			if !p.Src.IsValid() || !p.Dst.IsValid() || p.Src.Is4() != p.Dst.Is4() {
				t.Fatalf("bad addresses %v %v", p.Src, p.Dst)
			}
		case *events.TCPSocketBase:
			if p.Report != events.SocketClosed && p.Report != events.SocketSnapshot {
				t.Fatalf("bad report %d", p.Report)
			}
			if !p.Local.IsValid() || !p.Remote.IsValid() || p.Local.Is4() != p.Remote.Is4() {
				t.Fatalf("bad addresses %v %v", p.Local, p.Remote)
			}
		default:
			t.Fatalf("unexpected payload %T", p)
		}
		if c := ev.Context.Comm; len(c) > 16 || strings.IndexByte(c, 0) >= 0 {
			t.Fatalf("bad comm %q", c)
		}
		// Re-encoding and decoding again gives the same event, with the
		// interning decoder too.
		r := recordFor(ev, bootToWall)
		ev2, err := Decode(encodeRecord(&r), bootToWall)
		if err != nil {
			t.Fatalf("re-encoded record rejected: %v", err)
		}
		d := newDecoder(bootToWall)
		ev3, err := d.decode(raw)
		if err != nil {
			t.Fatalf("interning decoder rejected what Decode accepted: %v", err)
		}
		if !reflect.DeepEqual(ev, ev2) || !reflect.DeepEqual(ev, ev3) {
			t.Fatalf("not stable: %+v vs %+v vs %+v", ev.Payload, ev2.Payload, ev3.Payload)
		}
		// Field rendering never panics.
		_ = ev.Payload.AppendFields(nil)
	})
}

func BenchmarkDecode(b *testing.B) {
	r := flowtapFlowRecord{Type: recordTypePacket, Family: recordAFInet6, Direction: recordDirIngress, TcpFlags: 2}
	copy(r.Comm[:], "nginx")
	raw := encodeRecord(&r)
	d := newDecoder(0)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.decode(raw); err != nil {
			b.Fatal(err)
		}
	}
}
