// SPDX-License-Identifier: Apache-2.0

package events

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func builtin(t testing.TB) *Catalogue {
	t.Helper()
	c, err := Builtin()
	if err != nil {
		t.Fatalf("Builtin: %v", err)
	}
	return c
}

func TestSelect(t *testing.T) {
	c := builtin(t)
	tests := []struct {
		name  string
		exprs []string
		want  []ID
	}{
		{"single name", []string{"net_flow_tcp_begin"}, []ID{IDNetFlowTCPBegin}},
		{"set flows", []string{"flows"}, []ID{IDNetFlowTCPBegin, IDNetFlowTCPEnd, IDNetFlowTCPFailed}},
		{"set network_events leaves out internal", []string{"network_events"}, []ID{IDNetFlowTCPBegin, IDNetFlowTCPEnd, IDNetFlowTCPFailed, IDNetPacketDNS}},
		{"internal by exact name", []string{"net_packet_flow_base"}, []ID{IDNetPacketFlowBase}},
		{"set minus names", []string{"flows,-net_flow_tcp_end,-net_flow_tcp_failed"}, []ID{IDNetFlowTCPBegin}},
		{"exclusion before inclusion", []string{"-net_flow_tcp_end", "flows"}, []ID{IDNetFlowTCPBegin, IDNetFlowTCPFailed}},
		{"glob", []string{"net_flow_*"}, []ID{IDNetFlowTCPBegin, IDNetFlowTCPEnd, IDNetFlowTCPFailed}},
		{"glob skips internal", []string{"net_*"}, []ID{IDNetFlowTCPBegin, IDNetFlowTCPEnd, IDNetFlowTCPFailed, IDNetPacketDNS}},
		{"internal DNS base by exact name", []string{"net_packet_dns_base"}, []ID{IDNetPacketDNSBase}},
		{"negated glob", []string{"flows,-*_end"}, []ID{IDNetFlowTCPBegin, IDNetFlowTCPFailed}},
		{"spaces and duplicates", []string{" flows , net_flow_tcp_begin "}, []ID{IDNetFlowTCPBegin, IDNetFlowTCPEnd, IDNetFlowTCPFailed}},
		{"everything excluded", []string{"flows,-flows"}, []ID{}},
		{"several expressions", []string{"net_flow_tcp_end", "net_packet_flow_base"}, []ID{IDNetPacketFlowBase, IDNetFlowTCPEnd}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Select(tt.exprs...)
			if err != nil {
				t.Fatalf("Select(%q): %v", tt.exprs, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Select(%q) = %v, want %v", tt.exprs, got, tt.want)
			}
		})
	}
}

func TestSelectErrors(t *testing.T) {
	c := builtin(t)
	tests := []struct {
		expr string
		want string
	}{
		{"net_flow_tcp_begn", `unknown event or set "net_flow_tcp_begn": did you mean "net_flow_tcp_begin"?`},
		{"flow", `unknown event or set "flow": did you mean "flows"?`},
		{"flows,-net_flow_tcp_ned", `did you mean "net_flow_tcp_end"?`},
		{"-flows", `only excludes`},
		{"", `selection is empty`},
		{"flows,,net_flow_tcp_end", `empty item between commas`},
		{"-", `'-' must be followed`},
		{"Flows", `invalid character 'F'`},
		{"nothing_*", `matches no public event`},
		{"net_tcp_*", `matches no public event`},
		{"net_[", `invalid character '['`},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			_, err := c.Select(tt.expr)
			if err == nil {
				t.Fatalf("Select(%q) succeeded, want error containing %q", tt.expr, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Select(%q) error = %q, want it to contain %q", tt.expr, err, tt.want)
			}
		})
	}
}

func TestResolvePullsDependencies(t *testing.T) {
	c := builtin(t)
	ids, err := c.Select("net_flow_tcp_begin")
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Resolve(ids...)
	if err != nil {
		t.Fatal(err)
	}
	if want := []ID{IDNetPacketFlowBase, IDNetTCPSocketBase, IDNetPacketDNSBase, IDNetFlowTCPBegin}; !reflect.DeepEqual(p.Needed, want) {
		t.Errorf("Needed = %v, want %v", p.Needed, want)
	}
	if want := []ID{IDNetFlowTCPBegin}; !reflect.DeepEqual(p.Emit, want) {
		t.Errorf("Emit = %v, want %v", p.Emit, want)
	}
	if !p.Emits(IDNetFlowTCPBegin) || p.Emits(IDNetPacketFlowBase) || p.Emits(IDNetFlowTCPEnd) {
		t.Errorf("Emits wrong: begin=%v base=%v end=%v", p.Emits(IDNetFlowTCPBegin), p.Emits(IDNetPacketFlowBase), p.Emits(IDNetFlowTCPEnd))
	}
	// Flow events have DNS fields, so the plan asks for DNS capture.
	if want := []string{ProducerKernelDNS, ProducerKernel}; !reflect.DeepEqual(p.Producers, want) {
		t.Errorf("Producers = %v, want %v", p.Producers, want)
	}
	if want := []string{DeriverFlowTracker}; !reflect.DeepEqual(p.Derivers, want) {
		t.Errorf("Derivers = %v, want %v", p.Derivers, want)
	}
	if !p.NeedsKernel() {
		t.Error("NeedsKernel = false for a flow event")
	}
}

func TestResolveNothingLoadsNoKernelProgram(t *testing.T) {
	c := builtin(t)
	ids, err := c.Select("flows,-flows")
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Resolve(ids...)
	if err != nil {
		t.Fatal(err)
	}
	if p.NeedsKernel() || len(p.Producers) != 0 || len(p.Derivers) != 0 {
		t.Fatalf("empty selection plans producers %v derivers %v", p.Producers, p.Derivers)
	}
}

func TestLongerCycleRejectedWithItsPath(t *testing.T) {
	defs := []Definition{
		{ID: 1, Name: "k", Source: SourceKernel, Producer: "bpf/x"},
		{ID: 2, Name: "u", Source: SourceDerived, Deriver: "d", Dependencies: []ID{3}},
		{ID: 3, Name: "replayed", Source: SourceDerived, Deriver: "replay", Dependencies: []ID{4}},
		{ID: 4, Name: "clock", Source: SourceDerived, Deriver: "tick", Dependencies: []ID{3}},
	}
	if _, err := NewCatalogue(defs); err == nil || !strings.Contains(err.Error(), "dependency cycle: replayed -> clock -> replayed") {
		t.Fatalf("cycle not rejected with its path: %v", err)
	}
}

func TestNewCatalogueRejects(t *testing.T) {
	ok := Definition{ID: 1, Name: "base", Source: SourceKernel, Producer: "p"}
	tests := []struct {
		name string
		defs []Definition
		want string
	}{
		{"cycle", []Definition{ok,
			{ID: 2, Name: "a", Source: SourceDerived, Deriver: "d", Dependencies: []ID{3}},
			{ID: 3, Name: "b", Source: SourceDerived, Deriver: "d", Dependencies: []ID{2}},
		}, "dependency cycle: a -> b -> a"},
		{"self cycle", []Definition{ok,
			{ID: 2, Name: "a", Source: SourceDerived, Deriver: "d", Dependencies: []ID{2}},
		}, "dependency cycle: a -> a"},
		{"duplicate id", []Definition{ok, {ID: 1, Name: "other", Source: SourceKernel, Producer: "p"}}, `id 1 already used by "base"`},
		{"duplicate name", []Definition{ok, {ID: 2, Name: "base", Source: SourceKernel, Producer: "p"}}, `"base": defined twice`},
		{"unknown dependency", []Definition{{ID: 2, Name: "a", Source: SourceDerived, Deriver: "d", Dependencies: []ID{9}}}, "unknown event id 9"},
		{"bad name", []Definition{{ID: 2, Name: "A-b", Source: SourceKernel, Producer: "p"}}, `name "A-b" must match`},
		{"derived without deps", []Definition{{ID: 2, Name: "a", Source: SourceDerived, Deriver: "d"}}, "needs a deriver and at least one dependency"},
		{"kernel without producer", []Definition{{ID: 2, Name: "a", Source: SourceKernel}}, "needs a producer"},
		{"set named like event", []Definition{ok, {ID: 2, Name: "k", Source: SourceKernel, Producer: "p", Sets: []string{"base"}}}, `set "base": has the same name as an event`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewCatalogue(tt.defs)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewCatalogue error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestBuiltinFlowFieldsMatchReference(t *testing.T) {
	// The reference manual page of net_flow_tcp_begin fixes these, first
	// and in this order; flowtap's additions come after them.
	want := []FieldSpec{
		{Name: "conn_direction", Type: "string"}, {Name: "src", Type: "string"}, {Name: "dst", Type: "string"},
		{Name: "src_port", Type: "uint16"}, {Name: "dst_port", Type: "uint16"},
		{Name: "src_dns", Type: "[]string"}, {Name: "dst_dns", Type: "[]string"},
	}
	c := builtin(t)
	for _, name := range []string{NameNetFlowTCPBegin, NameNetFlowTCPEnd, NameNetFlowTCPFailed} {
		d, ok := c.Lookup(name)
		if !ok {
			t.Fatalf("%s missing", name)
		}
		if len(d.Fields) < len(want) {
			t.Fatalf("%s has %d fields, want at least the reference's %d", name, len(d.Fields), len(want))
		}
		for i, f := range d.Fields[:len(want)] {
			if f.Name != want[i].Name || f.Type != want[i].Type {
				t.Errorf("%s field %d = %s %s, want %s %s", name, i, f.Name, f.Type, want[i].Name, want[i].Type)
			}
		}
		if !reflect.DeepEqual(d.Sets, []string{SetNetworkEvents, SetFlows}) {
			t.Errorf("%s sets = %v", name, d.Sets)
		}
	}
}

// TestPayloadFieldsMatchCatalogue pins that every payload emits exactly the
// fields its definition declares, in order, with a matching kind.
func TestPayloadFieldsMatchCatalogue(t *testing.T) {
	c := builtin(t)
	a4 := netip.MustParseAddr("127.0.0.1")
	payloads := []Payload{
		&PacketFlowBase{Direction: Egress, Src: a4, Dst: a4, SrcPort: 1, DstPort: 2, Flags: FlagSYN, Length: 60},
		&FlowBegin{Flow: Flow{Direction: Outgoing, Src: a4, Dst: a4, SrcPort: 1, DstPort: 2}, HandshakeNs: 5},
		&FlowEnd{Flow: Flow{Direction: Incoming, Src: a4, Dst: a4, SrcPort: 1, DstPort: 2}, DurationNs: 9, Reason: CloseFIN},
		&FlowFailed{Flow: Flow{Direction: Incoming, Src: a4, Dst: a4, SrcPort: 1, DstPort: 2}, Reason: FailRefused},
		&TCPSocketBase{Report: SocketClosed, Local: a4, Remote: a4, LocalPort: 1, RemotePort: 2, State: 7},
		&RecordsLost{Lost: 3, Total: 4, From: 1, To: 2},
		&PacketDNSBase{DNSPacket: DNSPacket{Direction: Ingress, Proto: DNSOverUDP, Src: a4, Dst: a4, SrcPort: 53, DstPort: 2}, Length: 30, Payload: []byte{1}},
		&PacketDNS{DNSPacket: DNSPacket{Direction: Egress, Proto: DNSOverTCP, Src: a4, Dst: a4, SrcPort: 2, DstPort: 53}, QueryName: "a.example", QueryType: "A", RCode: "NOERROR"},
	}
	kindOf := map[string]Kind{"string": KindString, "uint8": KindUint, "uint16": KindUint, "uint32": KindUint, "uint64": KindUint, "int64": KindInt, "bool": KindBool, "[]string": KindStrings}
	for _, p := range payloads {
		d, ok := c.ByID(p.EventID())
		if !ok {
			t.Fatalf("payload %T has unknown id %d", p, p.EventID())
		}
		fields := p.AppendFields(nil)
		if len(fields) != len(d.Fields) {
			t.Fatalf("%s: payload has %d fields, definition %d", d.Name, len(fields), len(d.Fields))
		}
		for i, f := range fields {
			if f.Name != d.Fields[i].Name || f.Value.Kind != kindOf[d.Fields[i].Type] {
				t.Errorf("%s field %d: payload %s kind %d, definition %s %s", d.Name, i, f.Name, f.Value.Kind, d.Fields[i].Name, d.Fields[i].Type)
			}
		}
	}
}

func TestFlowFieldsRenderPlainIPv4AndEmptyLists(t *testing.T) {
	b := &FlowBegin{Flow: Flow{Direction: Outgoing, Src: netip.MustParseAddr("::ffff:10.1.2.3"), Dst: netip.MustParseAddr("::1"), SrcPort: 5, DstPort: 6}}
	f := b.AppendFields(nil)
	if f[1].Value.Str != "10.1.2.3" || f[2].Value.Str != "::1" {
		t.Errorf("src/dst = %q/%q", f[1].Value.Str, f[2].Value.Str)
	}
	if f[5].Value.Strings == nil || len(f[5].Value.Strings) != 0 {
		t.Errorf("src_dns = %#v, want empty non-nil list", f[5].Value.Strings)
	}
}

func TestFlowAddressText(t *testing.T) {
	f := Flow{Src: netip.MustParseAddr("::ffff:10.0.0.1"), Dst: netip.MustParseAddr("::1")}
	plain := f.appendFlowFields(nil)
	f.SrcText, f.DstText = AddrText(f.Src), AddrText(f.Dst)
	cached := f.appendFlowFields(nil)
	if plain[1].Value.Str != "10.0.0.1" || cached[1].Value.Str != "10.0.0.1" || plain[2].Value.Str != "::1" || cached[2].Value.Str != "::1" {
		t.Fatalf("rendered %q/%q, cached %q/%q", plain[1].Value.Str, plain[2].Value.Str, cached[1].Value.Str, cached[2].Value.Str)
	}
	f.SrcText = "given"
	if got := f.appendFlowFields(nil)[1].Value.Str; got != "given" {
		t.Fatalf("SrcText ignored: %q", got)
	}
	if testing.AllocsPerRun(100, func() { f.appendFlowFields(make([]Field, 0, 8)) }) > 1 {
		t.Fatal("cached texts still allocate per event")
	}
}

func TestTCPFlagsString(t *testing.T) {
	for flags, want := range map[TCPFlags]string{0: "none", FlagSYN: "SYN", FlagSYN | FlagACK: "SYN|ACK", FlagFIN | FlagACK: "FIN|ACK", FlagRST: "RST"} {
		if got := flags.String(); got != want {
			t.Errorf("%#x.String() = %q, want %q", uint8(flags), got, want)
		}
	}
}

func TestListOutputs(t *testing.T) {
	c := builtin(t)
	var table bytes.Buffer
	if err := c.WriteListTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"net_packet_flow_base (internal)", "net_flow_tcp_begin", "network_events,flows", "src_dns []string", "net_packet_flow_base,net_tcp_socket_base,net_packet_dns_base\n"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table output lacks %q:\n%s", want, table.String())
		}
	}
	var js bytes.Buffer
	if err := c.WriteListJSON(&js); err != nil {
		t.Fatal(err)
	}
	var entries []listEntry
	if err := json.Unmarshal(js.Bytes(), &entries); err != nil {
		t.Fatalf("list --json is not JSON: %v", err)
	}
	if len(entries) != 8 || entries[4].Name != NameNetFlowTCPBegin || entries[4].Dependencies[0] != NameNetPacketFlowBase || !entries[0].Internal {
		t.Fatalf("unexpected entries: %+v", entries)
	}
}

func TestIDSet(t *testing.T) {
	var s IDSet
	for _, id := range []ID{0, 63, 64, 1001, 65535} {
		if s.Has(id) {
			t.Fatalf("empty set has %d", id)
		}
		s.Add(id)
		if !s.Has(id) {
			t.Fatalf("set lacks %d after Add", id)
		}
	}
	if s.Has(1002) || s.Has(62) {
		t.Fatal("set has ids never added")
	}
}

func FuzzSelect(f *testing.F) {
	for _, s := range []string{"flows", "-flows", "net_*,-net_flow_tcp_end", "a,,b", "[", "net_flow_tcp_begin ,  flows", "*", "?"} {
		f.Add(s)
	}
	c, err := Builtin()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		ids, err := c.Select(expr)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		for _, id := range ids {
			if _, ok := c.ByID(id); !ok {
				t.Fatalf("Select(%q) returned unknown id %d", expr, id)
			}
		}
		if _, err := c.Resolve(ids...); err != nil {
			t.Fatalf("Resolve after Select(%q): %v", expr, err)
		}
	})
}

func BenchmarkPlanEmits(b *testing.B) {
	c := builtin(b)
	p, err := c.Resolve(IDNetFlowTCPBegin)
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for i := 0; b.Loop(); i++ {
		if p.Emits(ID(i % 2000)) {
			n++
		}
	}
	_ = n
}

func TestResolveDNSEvent(t *testing.T) {
	c := builtin(t)
	p, err := c.Resolve(IDNetPacketDNS)
	if err != nil {
		t.Fatal(err)
	}
	if want := []ID{IDNetPacketDNSBase, IDNetPacketDNS}; !reflect.DeepEqual(p.Needed, want) {
		t.Errorf("Needed = %v, want %v", p.Needed, want)
	}
	if want := []string{ProducerKernelDNS}; !reflect.DeepEqual(p.Producers, want) {
		t.Errorf("Producers = %v, want %v", p.Producers, want)
	}
	if want := []string{DeriverDNS}; !reflect.DeepEqual(p.Derivers, want) {
		t.Errorf("Derivers = %v, want %v", p.Derivers, want)
	}
	// A selection without DNS fields needs no DNS capture.
	p, err = c.Resolve(IDNetPacketFlowBase)
	if err != nil {
		t.Fatal(err)
	}
	if p.Needs(ProducerKernelDNS) {
		t.Errorf("net_packet_flow_base alone asks for DNS capture: %v", p.Producers)
	}
}
