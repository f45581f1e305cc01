// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf/btf"

	"github.com/flowtap/flowtap/bpf/limits"
	"github.com/flowtap/flowtap/events"
)

// encodeDNS builds a raw DNS record: header then payload.
func encodeDNS(h flowtapDnsRecord, payload []byte) []byte {
	b := make([]byte, dnsHeaderSize, dnsHeaderSize+len(payload))
	copy(b, unsafe.Slice((*byte)(unsafe.Pointer(&h)), dnsHeaderSize))
	return append(b, payload...)
}

func dnsSeeds() [][]byte {
	v4 := flowtapDnsRecord{TsNs: 5, Cookie: 6, CgroupId: 7, NetnsCookie: 8, MsgLen: 3, CapLen: 3, Sport: 53, Dport: 40000,
		Family: recordAFInet, Type: recordTypeDNS, Direction: recordDirIngress, Proto: ipprotoUDP, Pid: 4}
	copy(v4.Saddr[:], []byte{127, 0, 0, 53})
	copy(v4.Daddr[:], []byte{127, 0, 0, 1})
	copy(v4.Comm[:], "dig")
	v6 := flowtapDnsRecord{MsgLen: 2000, CapLen: 4, Sport: 40000, Dport: 53, Family: recordAFInet6, Type: recordTypeDNS,
		Direction: recordDirEgress, Proto: ipprotoTCP, Flags: dnsFlagTruncated}
	v6.Saddr[15], v6.Daddr[15] = 1, 1
	return [][]byte{encodeDNS(v4, []byte{1, 2, 3}), encodeDNS(v6, []byte{0, 4, 9, 9})}
}

func TestDNSRecordLayout(t *testing.T) {
	spec, err := loadFlowtap()
	if err != nil {
		t.Fatal(err)
	}
	var st *btf.Struct
	if err := spec.Types.TypeByName("dns_record", &st); err != nil {
		t.Fatalf("dns_record not in the object's BTF: %v", err)
	}
	if int(st.Size) != dnsHeaderSize || dnsHeaderSize != recordSize {
		t.Fatalf("dns_record is %d bytes in C, %d in Go; want %d like flow_record", st.Size, dnsHeaderSize, recordSize)
	}
	gt := reflect.TypeOf(flowtapDnsRecord{})
	for name, off := range map[string]uintptr{"NetnsCookie": 24, "MsgLen": 32, "CapLen": 36, "Saddr": 56, "Daddr": 72, "Comm": 88, "Pid": 104, "Family": 120, "Type": recordTypeOffset, "Proto": 124, "Flags": 125} {
		if f, ok := gt.FieldByName(name); !ok || f.Offset != off {
			t.Errorf("%s at offset %d, want %d", name, f.Offset, off)
		}
	}
	if f, _ := reflect.TypeOf(flowtapFlowRecord{}).FieldByName("Type"); f.Offset != recordTypeOffset {
		t.Errorf("flow_record type at %d, want %d", f.Offset, recordTypeOffset)
	}
	var sc *btf.Struct
	if err := spec.Types.TypeByName("dns_scratch", &sc); err != nil {
		t.Fatal(err)
	}
	if int(sc.Size) < dnsHeaderSize+limits.DNSMaxPayload {
		t.Errorf("dns_scratch is %d bytes, smaller than header and %d payload bytes", sc.Size, limits.DNSMaxPayload)
	}
}

func TestDecodeDNS(t *testing.T) {
	seeds := dnsSeeds()
	ev, err := Decode(seeds[0], 1000)
	if err != nil {
		t.Fatal(err)
	}
	want := events.Event{
		ID: events.IDNetPacketDNSBase, Timestamp: 1005,
		Context: events.Context{SocketCookie: 6, CgroupID: 7, PID: 4, Comm: "dig"},
		Payload: &events.PacketDNSBase{
			DNSPacket: events.DNSPacket{Direction: events.Ingress, Proto: events.DNSOverUDP,
				Src: netip.MustParseAddr("127.0.0.53"), Dst: netip.MustParseAddr("127.0.0.1"),
				SrcPort: 53, DstPort: 40000},
			Length: 3, NetNSCookie: 8, Payload: []byte{1, 2, 3},
		},
	}
	if !reflect.DeepEqual(ev, want) {
		t.Fatalf("Decode = %+v %+v\nwant %+v %+v", ev, ev.Payload, want, want.Payload)
	}
	// The payload is a copy: the reader reuses its buffer.
	seeds[0][dnsHeaderSize] = 99
	if ev.Payload.(*events.PacketDNSBase).Payload[0] != 1 {
		t.Fatal("payload aliases the raw record")
	}
	ev, err = Decode(seeds[1], 0)
	if err != nil {
		t.Fatal(err)
	}
	p := ev.Payload.(*events.PacketDNSBase)
	if !p.Truncated || p.Proto != events.DNSOverTCP || p.Direction != events.Egress || p.Length != 2000 || len(p.Payload) != 4 || p.Src != netip.IPv6Loopback() {
		t.Fatalf("truncated TCP record decoded as %+v", p)
	}
}

func TestDecodeDNSRejects(t *testing.T) {
	base := flowtapDnsRecord{MsgLen: 2, CapLen: 2, Family: recordAFInet, Type: recordTypeDNS, Direction: recordDirIngress, Proto: ipprotoUDP}
	with := func(f func(*flowtapDnsRecord), payload int) []byte {
		r := base
		f(&r)
		return encodeDNS(r, make([]byte, payload))
	}
	for _, tt := range []struct {
		name string
		raw  []byte
		want string
	}{
		{"payload shorter than cap_len", with(func(*flowtapDnsRecord) {}, 1), "header says 2 captured"},
		{"cap_len beyond the maximum", with(func(r *flowtapDnsRecord) { r.CapLen, r.MsgLen = limits.DNSMaxPayload+1, 5000 }, limits.DNSMaxPayload+1), "at most"},
		{"cap_len beyond msg_len", with(func(r *flowtapDnsRecord) { r.MsgLen = 1 }, 2), "captured of 1"},
		{"family", with(func(r *flowtapDnsRecord) { r.Family = 3 }, 2), "unknown address family 3"},
		{"direction", with(func(r *flowtapDnsRecord) { r.Direction = 0 }, 2), "unknown direction 0"},
		{"proto", with(func(r *flowtapDnsRecord) { r.Proto = 1 }, 2), "unknown transport 1"},
	} {
		if _, err := Decode(tt.raw, 0); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one containing %q", tt.name, err, tt.want)
		}
	}
}

// checkDNSDecode is FuzzDecode's oracle for DNS records.
func checkDNSDecode(t *testing.T, raw []byte, bootToWall int64, ev events.Event, err error) {
	var h flowtapDnsRecord
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&h)), dnsHeaderSize), raw)
	pl := len(raw) - dnsHeaderSize
	valid := int(h.CapLen) == pl && pl <= limits.DNSMaxPayload && h.CapLen <= h.MsgLen &&
		(h.Family == recordAFInet || h.Family == recordAFInet6) &&
		(h.Direction == recordDirIngress || h.Direction == recordDirEgress) &&
		(h.Proto == ipprotoUDP || h.Proto == ipprotoTCP)
	if (err == nil) != valid {
		t.Fatalf("Decode error = %v, but DNS record validity = %v", err, valid)
	}
	if err != nil {
		return
	}
	p, ok := ev.Payload.(*events.PacketDNSBase)
	if !ok || ev.ID != events.IDNetPacketDNSBase || len(p.Payload) != pl || !p.Src.IsValid() || p.Src.Is4() != p.Dst.Is4() {
		t.Fatalf("bad DNS event %+v %+v", ev, ev.Payload)
	}
	d := newDecoder(bootToWall)
	ev2, err := d.decode(raw)
	if err != nil || !reflect.DeepEqual(ev, ev2) {
		t.Fatalf("interning decoder differs: %v %+v", err, ev2)
	}
	_ = p.AppendFields(nil)
}
