// SPDX-License-Identifier: Apache-2.0

package filter

import (
	"flag"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	testutil.Golden(t, filepath.Join("testdata", name), got, *update)
}

func catalogue(t testing.TB) *events.Catalogue {
	t.Helper()
	cat, err := events.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// defs returns the definitions of the named events.
func defs(t testing.TB, names ...string) []*events.Definition {
	t.Helper()
	cat := catalogue(t)
	var out []*events.Definition
	for _, n := range names {
		d, ok := cat.Lookup(n)
		if !ok {
			t.Fatalf("no event %q", n)
		}
		out = append(out, d)
	}
	return out
}

func flowDefs(t testing.TB) []*events.Definition {
	return defs(t, events.NameNetFlowTCPBegin, events.NameNetFlowTCPEnd, events.NameNetFlowTCPFailed)
}

// TestParseGolden pins how expressions parse (canonical form) and the
// messages of syntax errors.
func TestParseGolden(t *testing.T) {
	cases := []string{
		`dst_port=443`,
		`dst_port == 443`,
		`dst_port=1-1023 and conn_direction=incoming`,
		`a=1 or b=2 and c=3`,
		`(a=1 or b=2) and c=3`,
		`not a=1 and b=2`,
		`!(a=1 || b=2) && c!=3`,
		`dst=10.0.0.0/8,fe80::/10`,
		`dst_dns=*.example.com`,
		`comm="my app","x\"y"`,
		`handshake_ns>=1000000`,
		`android=1`,
		`orange=1 or notable=2`,
		``,
		`   `,
		`dst_port`,
		`dst_port=`,
		`dst_port=80 and`,
		`dst_port=80 dst=1.2.3.4`,
		`(dst_port=80`,
		`dst_port=80)`,
		`=80`,
		`Dst=1`,
		`comm="open`,
		`dst_port=80,`,
		`and=1`,
		`dst_port ~ 80`,
		strings.Repeat("(", MaxDepth+1) + "a=1" + strings.Repeat(")", MaxDepth+1),
	}
	var b strings.Builder
	for _, c := range cases {
		e, err := Parse(c)
		if err != nil {
			fmt.Fprintf(&b, "%s\n  error: %v\n", c, err)
			continue
		}
		fmt.Fprintf(&b, "%s\n  parsed: %s\n", c, e.Canonical())
	}
	golden(t, "parse.golden", b.String())
}

// TestCompileErrorsGolden pins the messages of clauses that do not fit
// the selected events' fields.
func TestCompileErrorsGolden(t *testing.T) {
	cases := []struct {
		events []string
		expr   string
	}{
		{[]string{events.NameNetFlowTCPBegin}, `dst_prt=80`},
		{[]string{events.NameNetFlowTCPBegin}, `close_reason=rst`},
		{[]string{events.NameNetFlowTCPBegin}, `dst_port=70000`},
		{[]string{events.NameNetFlowTCPBegin}, `dst_port=1023-1`},
		{[]string{events.NameNetFlowTCPBegin}, `dst_port<1-5`},
		{[]string{events.NameNetFlowTCPBegin}, `dst_port=http`},
		{[]string{events.NameNetFlowTCPBegin}, `conn_direction=incomming`},
		{[]string{events.NameNetFlowTCPBegin}, `conn_direction>incoming`},
		{[]string{events.NameNetFlowTCPBegin}, `dst=10.0.0.0/8,localhost`},
		{[]string{events.NameNetFlowTCPBegin}, `pid=-1`},
		{[]string{events.NameNetFlowTCPBegin}, `dst=10.0.0.0/33`},
		{[]string{events.NameNetFlowTCPBegin}, `src=127.0.0.1,::1 and comm=curl,wget and dst_dns!=*.local`},
		{[]string{events.NameNetFlowTCPEnd}, `close_reason=rts or pid=x`},
		{[]string{events.NameNetPacketFlowBase}, `no_socket=yes`},
		{[]string{events.NameRecordsLost}, `interval_start=soon`},
	}
	var b strings.Builder
	for _, c := range cases {
		_, err := New(c.expr, defs(t, c.events...))
		fmt.Fprintf(&b, "%s on %s\n", c.expr, strings.Join(c.events, ","))
		if err == nil {
			b.WriteString("  ok\n")
			continue
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(&b, "  error: %s\n", line)
		}
	}
	golden(t, "compile.golden", b.String())
}

func flow(dir events.ConnDirection, src, dst string, sport, dport uint16) events.Flow {
	return events.Flow{Direction: dir, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), SrcPort: sport, DstPort: dport}
}

func TestMatch(t *testing.T) {
	in := flow(events.Incoming, "192.0.2.7", "10.1.2.3", 40000, 22)
	out := flow(events.Outgoing, "10.1.2.3", "2001:db8::5", 50000, 443)
	out.DstDNS = []string{"cdn.example.com", "Www.Example.ORG"}
	lo := flow(events.Incoming, "127.0.0.1", "127.0.0.1", 40001, 80)
	mapped := flow(events.Outgoing, "::ffff:10.9.9.9", "::ffff:8.8.8.8", 1, 53)
	ctx := events.Context{PID: 42, UID: 1000, Comm: "sshd", CgroupID: 7}
	evs := map[string]events.Event{
		"in":     {ID: events.IDNetFlowTCPBegin, Context: ctx, Payload: &events.FlowBegin{Flow: in, HandshakeNs: 500}},
		"out":    {ID: events.IDNetFlowTCPEnd, Payload: &events.FlowEnd{Flow: out, Reason: events.CloseRST, DurationNs: 9}},
		"lo":     {ID: events.IDNetFlowTCPFailed, Payload: &events.FlowFailed{Flow: lo, Reason: events.FailRefused}},
		"mapped": {ID: events.IDNetFlowTCPBegin, Payload: &events.FlowBegin{Flow: mapped}},
		"base":   {ID: events.IDNetPacketFlowBase, Payload: &events.PacketFlowBase{Direction: events.Ingress, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), SrcPort: 5, DstPort: 6, NoSocket: true}},
	}
	all := append(flowDefs(t), defs(t, events.NameNetPacketFlowBase)...)
	tests := []struct {
		expr string
		want string // names of matching events, sorted
	}{
		{`dst_port=22`, "in"},
		{`dst_port!=22`, "base lo mapped out"},
		{`dst_port=1-1023`, "base in lo mapped out"},
		{`dst_port=22,443`, "in out"},
		{`dst_port<80`, "base in mapped"},
		{`dst_port<=80`, "base in lo mapped"},
		{`dst_port>80`, "out"},
		{`dst_port>=443`, "out"},
		{`conn_direction=incoming`, "in lo"},
		{`conn_direction!=incoming`, "base mapped out"},
		{`conn_direction=incoming and dst_port=1-1023 and not src=127.0.0.0/8`, "in"},
		{`dst=10.0.0.0/8`, "base in"},
		{`dst=2001:db8::/32`, "out"},
		{`dst=8.8.8.8`, "mapped"},
		{`src=::ffff:10.0.0.0/104`, "base mapped out"},
		{`dst_dns=*.example.com`, "out"},
		{`dst_dns=www.example.org`, "out"},
		{`dst_dns=*.example.net`, ""},
		{`dst_dns!=*.example.com`, "base in lo mapped"},
		{`comm=ssh*`, "in"},
		{`comm!=sshd`, "base lo mapped out"},
		{`pid=42 and uid=1000 and cgroup_id=7`, "in"},
		{`pid=0`, "base lo mapped out"},
		{`close_reason=rst`, "out"},
		{`close_reason!=rst`, "base in lo mapped"},
		{`reason=refused or close_reason=fin`, "lo"},
		{`handshake_ns>100`, "in"},
		{`duration_ns=9`, "out"},
		{`no_socket=true`, "base"},
		{`direction=ingress and tcp_flags=none`, "base"},
		{`(dst_port=22 or dst_port=80) and conn_direction=incoming`, "in lo"},
		{`!(dst_port=22 || dst_port=80)`, "base mapped out"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			f, err := New(tt.expr, all)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, name := range []string{"base", "in", "lo", "mapped", "out"} {
				ev := evs[name]
				m := f.Match(&ev)
				if m {
					got = append(got, name)
				}
				// The typed fast paths must agree with the rendered
				// fields, which an opaque payload forces.
				ev.Payload = opaque{ev.Payload}
				if f.Match(&ev) != m {
					t.Errorf("event %s: typed access says %v, rendered fields say %v", name, m, !m)
				}
			}
			if g := strings.Join(got, " "); g != tt.want {
				t.Errorf("matched %q, want %q", g, tt.want)
			}
		})
	}
}

func TestMatchWorkload(t *testing.T) {
	const id = "3f4c0b5e8a9d7c6b1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d"
	pod := &events.Workload{ContainerID: id, ContainerRuntime: "containerd", ContainerName: "web",
		ContainerImage: "docker.io/library/nginx:1.27", PodName: "web-0", PodNamespace: "payments", PodUID: "6f1d2c3b-4a59-4e8f-9b7a-0c1d2e3f4a5b"}
	plain := &events.Workload{ContainerID: strings.Repeat("a", 64), ContainerRuntime: "docker", ContainerName: "db", ContainerImage: "localhost/db:1"}
	begin := func(ctx events.Context) events.Event {
		return events.Event{ID: events.IDNetFlowTCPBegin, Context: ctx,
			Payload: &events.FlowBegin{Flow: flow(events.Outgoing, "10.0.0.1", "10.0.0.2", 1, 80)}}
	}
	evs := map[string]events.Event{
		"pod":     begin(events.Context{Workload: pod, Exe: "/usr/sbin/nginx", PPID: 1}),
		"plain":   begin(events.Context{Workload: plain, Exe: "/app"}),
		"host":    begin(events.Context{Workload: &events.Workload{}, Exe: "/usr/bin/curl", PPID: 900}),
		"unknown": begin(events.Context{}),
	}
	tests := []struct{ expr, want string }{
		{`pod_namespace=payments`, "pod"},
		{`pod_namespace=pay*`, "pod"},
		{`pod_namespace!=payments`, "host plain unknown"},
		{`pod_name=web-?`, "pod"},
		{`pod_uid=6f1d2c3b-*`, "pod"},
		{`container_id=3f4c0b5e8a9d*`, "pod"},
		{`container_id=*`, "plain pod"},
		{`container_name=db,web`, "plain pod"},
		{`container_image=*/nginx:*`, "pod"},
		{`container_runtime=docker`, "plain"},
		{`host=true`, "host"},
		{`host=false`, "plain pod"},
		{`host=true,false`, "host plain pod"},
		{`not host=true`, "plain pod unknown"},
		{`exe=/usr/*`, "host pod"},
		{`ppid=900`, "host"},
		{`host=false and not pod_namespace=kube-system`, "plain pod"},
	}
	for _, tt := range tests {
		f, err := New(tt.expr, flowDefs(t))
		if err != nil {
			t.Fatalf("%s: %v", tt.expr, err)
		}
		var got []string
		for _, name := range []string{"host", "plain", "pod", "unknown"} {
			ev := evs[name]
			if f.Match(&ev) {
				got = append(got, name)
			}
		}
		if g := strings.Join(got, " "); g != tt.want {
			t.Errorf("%s: matched %q, want %q", tt.expr, g, tt.want)
		}
	}
	if _, err := New(`host=yes`, flowDefs(t)); err == nil || !strings.Contains(err.Error(), "not a bool") {
		t.Errorf("host=yes: %v", err)
	}
}

// opaque hides a payload's type, so a filter can only read the fields it
// renders.
type opaque struct{ p events.Payload }

func (o opaque) EventID() events.ID                             { return o.p.EventID() }
func (o opaque) AppendFields(dst []events.Field) []events.Field { return o.p.AppendFields(dst) }

func TestMatchUnknownEventAndNil(t *testing.T) {
	f, err := New(`dst_port=22`, defs(t, events.NameNetFlowTCPBegin))
	if err != nil {
		t.Fatal(err)
	}
	ev := events.Event{ID: events.IDNetFlowTCPEnd, Payload: &events.FlowEnd{Flow: flow(events.Incoming, "1.1.1.1", "2.2.2.2", 1, 22)}}
	if f.Match(&ev) {
		t.Error("an event the filter was not compiled for matched")
	}
	var none *Filter
	if !none.Match(&ev) {
		t.Error("a nil filter rejected an event")
	}
	if f.Clone().String() != "dst_port=22" {
		t.Error("clone lost the expression")
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pat, s string
		want   bool
	}{
		{"*", "", true}, {"*.a", "x.a", true}, {"*.a", ".a", true}, {"*.a", "a", false},
		{"a*b*c", "axxbyyc", true}, {"a*b*c", "axxbyy", false}, {"?", "x", true}, {"?", "", false},
		{"a**", "a", true}, {"*x*", "yyxyy", true}, {"ab", "abc", false}, {"a*a", "a", false}, {"a*a", "aa", true},
		{"x?*y", "xay", true}, {"x?*y", "xy", false},
	}
	for _, tt := range tests {
		if g := newGlob(tt.pat); g.match(tt.s, false) != tt.want {
			t.Errorf("glob %q on %q = %v", tt.pat, tt.s, !tt.want)
		}
	}
}

// FuzzParse checks that the parser never panics, that what it accepts
// prints as a canonical form that parses to itself, and that compiling
// never panics either.
func FuzzParse(f *testing.F) {
	for _, s := range []string{`dst_port=1-1023`, `a=1 or (b!=2 and not c="x y")`, `dst=10.0.0.0/8,::1`, `!!a<=3`, `comm="\""`} {
		f.Add(s)
	}
	all := catalogue(f).Definitions()
	f.Fuzz(func(t *testing.T, s string) {
		e, err := Parse(s)
		if err != nil {
			return
		}
		c := e.Canonical()
		e2, err := Parse(c)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", c, s, err)
		}
		if c2 := e2.Canonical(); c2 != c {
			t.Fatalf("canonical form unstable: %q -> %q", c, c2)
		}
		if f, err := Compile(e, all); err == nil {
			ev := events.Event{ID: events.IDNetFlowTCPBegin, Payload: &events.FlowBegin{}}
			f.Match(&ev)
		}
	})
}

// BenchmarkMatch measures the cost of matching one flow event with a
// three-clause filter (the bound: 100 ns).
func BenchmarkMatch(b *testing.B) {
	fl := flow(events.Incoming, "192.0.2.7", "10.1.2.3", 40000, 443)
	fl.DstDNS = []string{"a.example.org", "b.example.com"}
	fl.SrcText, fl.DstText = events.AddrText(fl.Src), events.AddrText(fl.Dst)
	ev := events.Event{ID: events.IDNetFlowTCPEnd, Context: events.Context{Comm: "wget"},
		Payload: &events.FlowEnd{Flow: fl, Reason: events.CloseRST, DurationNs: 5000}}
	// Each filter matches the event, so every clause is evaluated: the
	// most an "and" of three clauses costs.
	cases := []struct{ name, expr string }{
		{"3clauses", `conn_direction=incoming and dst_port=1-1023 and not src=127.0.0.0/8`},
		{"3clauses_dns", `dst_dns=*.example.com and dst_port=443 and comm!=curl`},
		{"3clauses_end_fields", `close_reason=rst and duration_ns>1000 and dst=10.0.0.0/8`},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			f, err := New(c.expr, flowDefs(b))
			if err != nil {
				b.Fatal(err)
			}
			if !f.Match(&ev) {
				b.Fatal("the benchmark event does not match")
			}
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				if f.Match(&ev) {
					n++
				}
			}
			_ = n
		})
	}
}
