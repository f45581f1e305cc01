// SPDX-License-Identifier: Apache-2.0

package pipeline

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/flowtap/flowtap/configs"
	"github.com/flowtap/flowtap/events"
)

func TestDNSEnabled(t *testing.T) {
	cat, err := events.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	off, on := false, true
	plan := func(ids ...events.ID) *events.Plan {
		p, err := cat.Resolve(ids...)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tt := range []struct {
		name    string
		plan    *events.Plan
		enabled *bool
		want    bool
		err     string
	}{
		{"flow events, unset: on", plan(events.IDNetFlowTCPBegin), nil, true, ""},
		{"flow events, explicitly on", plan(events.IDNetFlowTCPEnd), &on, true, ""},
		{"flow events, off", plan(events.IDNetFlowTCPBegin), &off, false, ""},
		{"net_packet_dns: on", plan(events.IDNetPacketDNS), nil, true, ""},
		{"net_packet_dns, off: error", plan(events.IDNetPacketDNS), &off, false, "DNS capture is turned off"},
		{"no DNS field: off", plan(events.IDNetPacketFlowBase), &on, false, ""},
	} {
		got, err := dnsEnabled(tt.plan, configs.DNS{Enabled: tt.enabled})
		if got != tt.want || (err == nil) != (tt.err == "") || err != nil && !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: dnsEnabled = %v, %v; want %v, error %q", tt.name, got, err, tt.want, tt.err)
		}
	}
}

// dnsAnswer is a wire response: name CNAME edge, edge A addr.
func dnsAnswer(t *testing.T, name, edge string, addr netip.Addr) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 9, Response: true})
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	b.StartAnswers()
	b.AResource(dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(edge), Class: dnsmessage.ClassINET, TTL: 30}, dnsmessage.AResource{A: addr.As4()})
	b.CNAMEResource(dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(name), Class: dnsmessage.ClassINET, TTL: 30}, dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName(edge)})
	out, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDNSStage(t *testing.T) {
	var got []events.Event
	d := newDNSStage(0, func() bool { return true }, func(ev events.Event) { got = append(got, ev) })
	addr := netip.MustParseAddr("192.0.2.9")
	wire := dnsAnswer(t, "www.example.", "edge.example.", addr)
	base := func(dir events.PacketDirection, proto events.DNSProto, payload []byte, truncated bool) events.Event {
		return events.Event{ID: events.IDNetPacketDNSBase, Timestamp: 1e9, Context: events.Context{CgroupID: 7},
			Payload: &events.PacketDNSBase{DNSPacket: events.DNSPacket{Direction: dir, Proto: proto, SrcPort: 53}, Payload: payload, Truncated: truncated}}
	}
	d.handle(base(events.Egress, events.DNSOverUDP, wire, false)) // the server's send: not cached
	if n := d.cache.Names(addr, 7, 1e9); n != nil {
		t.Fatalf("egress answer cached: %q", n)
	}
	d.handle(base(events.Ingress, events.DNSOverUDP, wire, false))
	if n := d.cache.Names(addr, 7, 1e9); !reflect.DeepEqual(n, []string{"www.example", "edge.example"}) {
		t.Fatalf("names = %q", n)
	}
	tcp := append([]byte{byte(len(wire) >> 8), byte(len(wire))}, wire...)
	d.handle(base(events.Ingress, events.DNSOverTCP, tcp[:20], false))     // split: truncated
	d.handle(base(events.Ingress, events.DNSOverUDP, wire[:20], true))     // cut by the kernel
	d.handle(base(events.Ingress, events.DNSOverUDP, []byte{1, 2}, false)) // garbage
	d.handle(base(events.Ingress, events.DNSOverTCP, tcp, false))
	if s := d.stats; s.Messages != 6 || s.Truncated != 2 || s.Malformed != 1 || s.PartialUsed != 0 {
		t.Errorf("stats = %+v", s)
	}
	if len(got) != 3 {
		t.Fatalf("%d net_packet_dns events, want 3", len(got))
	}
	p := got[2].Payload.(*events.PacketDNS)
	want := &events.PacketDNS{DNSPacket: events.DNSPacket{Direction: events.Ingress, Proto: events.DNSOverTCP, SrcPort: 53}, ID: 9, Response: true,
		QueryName: "www.example", QueryType: "A", RCode: "NOERROR",
		Answers: []string{"edge.example A 30 192.0.2.9", "www.example CNAME 30 edge.example"}}
	if !reflect.DeepEqual(p, want) || got[2].Context.CgroupID != 7 {
		t.Errorf("net_packet_dns = %+v\nwant %+v", p, want)
	}
}

// TestDNSStageUsesWholeRecordsOfTruncatedAnswers: an answer cut short (by
// the kernel's capture bound, or a TCP message longer than its segment)
// still names the addresses of the records before the cut.
func TestDNSStageUsesWholeRecordsOfTruncatedAnswers(t *testing.T) {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 1, Response: true})
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("big.example."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	b.StartAnswers()
	hdr := func(n string) dnsmessage.ResourceHeader {
		return dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(n), Class: dnsmessage.ClassINET, TTL: 30}
	}
	b.CNAMEResource(hdr("big.example."), dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName("edge.example.")})
	b.AResource(hdr("edge.example."), dnsmessage.AResource{A: [4]byte{192, 0, 2, 1}})
	b.AResource(hdr("edge.example."), dnsmessage.AResource{A: [4]byte{192, 0, 2, 2}})
	wire, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	cut := wire[:len(wire)-3] // the last record broken
	tcp := append([]byte{byte(len(wire) >> 8), byte(len(wire))}, cut...)
	for name, p := range map[string]*events.PacketDNSBase{
		"udp cut by the kernel":               {DNSPacket: events.DNSPacket{Direction: events.Ingress, Proto: events.DNSOverUDP}, Payload: cut, Truncated: true},
		"tcp message longer than its segment": {DNSPacket: events.DNSPacket{Direction: events.Ingress, Proto: events.DNSOverTCP}, Payload: tcp},
	} {
		t.Run(name, func(t *testing.T) {
			emitted := 0
			d := newDNSStage(0, func() bool { return true }, func(events.Event) { emitted++ })
			d.handle(events.Event{ID: events.IDNetPacketDNSBase, Timestamp: 1e9, Context: events.Context{CgroupID: 7}, Payload: p})
			if n := d.cache.Names(netip.MustParseAddr("192.0.2.1"), 7, 1e9); !reflect.DeepEqual(n, []string{"big.example", "edge.example"}) {
				t.Errorf("whole record before the cut: names %q", n)
			}
			if n := d.cache.Names(netip.MustParseAddr("192.0.2.2"), 7, 1e9); n != nil {
				t.Errorf("broken record: names %q", n)
			}
			if s := d.stats; s.Truncated != 1 || s.PartialUsed != 1 || s.Malformed != 0 || emitted != 0 {
				t.Errorf("stats %+v, %d events emitted; want 1 truncated, used, none emitted", s, emitted)
			}
		})
	}
}

func TestReloadDNSCheck(t *testing.T) {
	cat, err := events.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	plan := func(id events.ID) *events.Plan {
		p, err := cat.Resolve(id)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	off := false
	for _, tt := range []struct {
		name    string
		running bool
		enabled *bool
		plan    *events.Plan
		wantErr bool
	}{
		{"DNS running", true, nil, plan(events.IDNetPacketDNS), false},
		{"net_packet_dns without DNS capture", false, nil, plan(events.IDNetPacketDNS), true},
		{"flow names without DNS capture: a warning", false, nil, plan(events.IDNetFlowTCPBegin), false},
		{"DNS turned off by config", false, &off, plan(events.IDNetFlowTCPBegin), false},
		{"net_packet_dns, DNS turned off by config", false, &off, plan(events.IDNetPacketDNS), true},
	} {
		rl := &reloader{dns: tt.running, log: hclog.NewNullLogger()}
		cfg := &configs.Config{Capture: configs.Capture{DNS: configs.DNS{Enabled: tt.enabled}}}
		if err := rl.checkDNS(tt.plan, cfg); (err != nil) != tt.wantErr {
			t.Errorf("%s: checkDNS = %v, want error %v", tt.name, err, tt.wantErr)
		}
	}
}
