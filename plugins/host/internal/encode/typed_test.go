// SPDX-License-Identifier: Apache-2.0

package encode

import (
	"bytes"
	"math"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/plugins/internal/wire"
)

// samplePayload returns a payload of event id, its values drawn from r
// among few enough choices that strings and lists repeat (the same memory
// or not) from one event to the next.
func samplePayload(r *rand.Rand, id events.ID) events.Payload {
	addrs := []netip.Addr{
		netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::ffff:10.1.2.3"),
		netip.MustParseAddr("2001:db8::7"), {},
	}
	shared := []string{"api.example.com"}
	lists := [][]string{nil, {}, shared, shared, {"api.example.com"}, {"a.example", "b.example"}}
	texts := []string{"", "127.0.0.1", "10.1.2.3"}
	pick := func(n int) int { return r.IntN(n) }
	flow := func() events.Flow {
		return events.Flow{
			Direction: events.ConnDirection(pick(3)),
			Src:       addrs[pick(len(addrs))], Dst: addrs[pick(len(addrs))],
			SrcPort: uint16(r.Uint32()), DstPort: uint16(pick(3) * 200),
			SrcDNS: lists[pick(len(lists))], DstDNS: lists[pick(len(lists))],
			SrcText: texts[pick(len(texts))], DstText: texts[pick(len(texts))],
		}
	}
	big := func() uint64 { return r.Uint64() >> uint(pick(64)) }
	counters := func() events.Counters {
		return events.Counters{BytesSent: big(), BytesReceived: big(), PacketsSent: big(), PacketsReceived: big()}
	}
	a := func() netip.Addr { return addrs[pick(len(addrs))] }
	switch id {
	case events.IDNetFlowTCPBegin:
		return &events.FlowBegin{Flow: flow(), HandshakeNs: big()}
	case events.IDNetFlowTCPEnd:
		return &events.FlowEnd{Flow: flow(), DurationNs: big(), Counters: counters(), Reason: events.CloseReason(pick(6))}
	case events.IDNetFlowTCPFailed:
		return &events.FlowFailed{Flow: flow(), Reason: events.FailReason(pick(4))}
	case events.IDNetPacketFlowBase:
		return &events.PacketFlowBase{Direction: events.PacketDirection(pick(3)), Src: a(), Dst: a(), SrcPort: 1, DstPort: 2,
			Flags: events.TCPFlags(pick(64)), Length: uint32(pick(1500)), Counters: counters(), NoSocket: pick(2) == 1}
	case events.IDNetTCPSocketBase:
		return &events.TCPSocketBase{Report: events.SocketReport(pick(3)), Local: a(), Remote: a(), LocalPort: 3, RemotePort: 4,
			State: uint8(pick(12)), Counters: counters()}
	case events.IDRecordsLost:
		return &events.RecordsLost{Lost: big(), Total: big(), From: -int64(big() >> 1), To: int64(big() >> 1)}
	case events.IDNetPacketDNSBase:
		return &events.PacketDNSBase{DNSPacket: events.DNSPacket{Direction: events.Ingress, Src: a(), Dst: a(), SrcPort: 53, DstPort: 5},
			Length: 30, Payload: []byte{1, 2}}
	case events.IDNetPacketDNS:
		return &events.PacketDNS{DNSPacket: events.DNSPacket{Direction: events.Egress, Src: a(), Dst: a(), SrcPort: 5, DstPort: 53},
			QueryName: "a.example", QueryType: "A", RCode: "NOERROR", Answers: lists[pick(len(lists))]}
	}
	return nil
}

// TestTypedMatchesGeneric: for every event of the catalogue, in random
// mixes and with messages split by a size limit, AppendPayload writes the
// very bytes that Append writes from Payload.AppendFields, and the flow
// events take the typed path.
func TestTypedMatchesGeneric(t *testing.T) {
	cat, err := events.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	var ids []events.ID
	for _, d := range cat.Definitions() {
		ids = append(ids, d.ID)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, id := range ids {
		if p := samplePayload(r, id); p == nil || p.EventID() != id {
			t.Fatalf("samplePayload has no payload of %s (id %d): add one", cat.Name(id), id)
		}
	}
	typed := map[payloadType]bool{}
	var generic, fast Encoder
	for round := range 200 {
		limit := math.MaxInt
		if round%3 == 1 {
			limit = wire.HeaderLen + 150 + r.IntN(400) // splits batches, and undoes events
		}
		generic.Start(nil)
		fast.Start(nil)
		var fields []events.Field
		for range r.IntN(40) {
			id := ids[r.IntN(len(ids))]
			if round%2 == 0 { // long runs of one event type repeat more
				id = ids[round/2%len(ids)]
			}
			p := samplePayload(r, id)
			name := cat.Name(id)
			ctx := events.Context{SocketCookie: r.Uint64() >> 40, PID: uint32(r.IntN(3)), Comm: []string{"", "curl", "nginx"}[r.IntN(3)], HostName: "host"}
			ts := int64(r.Uint64())
			fields = p.AppendFields(fields[:0])
			okGeneric := generic.Append(limit, uint32(id), name, ts, &ctx, fields)
			okFast := fast.AppendPayload(limit, uint32(id), name, ts, &ctx, p)
			if okGeneric != okFast {
				t.Fatalf("round %d, %s: Append fits %v, AppendPayload %v", round, name, okGeneric, okFast)
			}
			if sc := fast.recent[uint32(id)%uint32(len(fast.recent))]; sc != nil && sc.typed != typedNone {
				typed[sc.typed] = true
			}
			if !okGeneric { // a new message, as the host starts one
				if a, b := generic.Finish(), fast.Finish(); !bytes.Equal(a, b) {
					t.Fatalf("round %d: batches differ:\ngeneric %x\ntyped   %x", round, a, b)
				}
				generic.Start(nil)
				fast.Start(nil)
			}
		}
		if a, b := generic.Finish(), fast.Finish(); !bytes.Equal(a, b) {
			t.Fatalf("round %d: batches differ:\ngeneric %x\ntyped   %x", round, a, b)
		}
	}
	for _, want := range []payloadType{typedFlowBegin, typedFlowEnd, typedFlowFailed} {
		if !typed[want] {
			t.Errorf("payload type %d never took the typed path", want)
		}
	}
}
