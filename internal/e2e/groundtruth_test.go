// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowtap/flowtap/bpf"
	"github.com/flowtap/flowtap/derive/communityid"
	"github.com/flowtap/flowtap/internal/e2e/harness"
	"github.com/flowtap/flowtap/internal/privdrop"
	"github.com/flowtap/flowtap/internal/privtest"
	"github.com/flowtap/flowtap/internal/workload"
)

// synTimeout is what the test configures as flowtap's --syn-timeout; the
// workload's timed-out attempts wait a second longer before giving up.
const synTimeout = 2 * time.Second

// TestGroundTruth holds flowtap's flow events against a workload that
// reports exactly what it did (internal/workload): loopback connections
// over IPv4, IPv6, IPv4-mapped and dual-stack sockets, connections between
// two network namespaces, refused and timed-out attempts. The server runs
// in its own process and starts before flowtap; the client runs in another.
//
// The contract it pins, for the workload's endpoints only:
//
//   - every connection has exactly one net_flow_tcp_begin and one
//     net_flow_tcp_end per local endpoint. Both ends of loopback and
//     namespace connections are local, so: outgoing (the client's socket)
//     and incoming (the server's). src/dst run initiator → responder;
//     IPv4-mapped addresses are reported as IPv4.
//   - begin: handshake_ns > 0; context pid/comm of the endpoint's process
//     (client for outgoing, server for incoming), and exe, the workload's
//     binary, on every event whose pid is checked: a process's first
//     event names it too.
//   - end: bytes_sent/bytes_received exactly the payload bytes of that
//     endpoint (outgoing: sent = client→server; incoming: sent =
//     server→client), packets both ways > 0, 0 < duration_ns within the
//     connection's lifetime, close_reason "fin", same pid/comm as begin.
//   - every failed attempt has exactly one outgoing net_flow_tcp_failed
//     with the reason the workload expects (refused / timeout) and the
//     client's pid/comm.
//   - a refused attempt against a port on this host — a closed loopback
//     port, or a closed port in a namespace whose sockets flowtap watches —
//     ALSO has exactly one incoming net_flow_tcp_failed, reason "refused":
//     DESIGN says a port scan of this host must be visible, and the
//     responder side of such an attempt is local (its kernel answered the
//     SYN with the RST). No process owns a closed port's answer, so its
//     context is not checked, except that it must not be the client's.
//     A timed-out attempt has no incoming side: its SYNs reach nobody.
//   - flow identity: an endpoint's begin and end carry the same flow_id
//     (incoming ones too), no other endpoint's events carry it, and each
//     event carries its connection's community_id (Community ID v1, seed
//     0, computed here independently of the agent's tracker).
//   - no other flow events for those endpoints, no lost records, and
//     flowtap exits 0 on SIGINT.
//
// It runs once for each set of kernel programs a selection can load: flow
// events alone (sock_ops and the connect programs, no per-packet program),
// with DNS capture (the default), and with net_packet_flow_base selected
// by name (the flows then come from the packet programs).
func TestGroundTruth(t *testing.T) {
	for i, tc := range []struct {
		name string
		args []string
	}{
		{"flows", []string{"--events", "flows", "--dns=false"}},
		{"flows and DNS", []string{"--events", "flows"}},
		{"packet events", []string{"--events", "flows,net_packet_flow_base"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			groundTruth(t, fmt.Sprintf("ft%d", i), byte(210+i), workload.Plan{
				IPv4: 170, IPv4Mapped: 15, DualStackV4: 15, // 200 IPv4 on the wire
				IPv6: 185, DualStackV6: 15, // 200 IPv6
				RefusedIPv4: 20, RefusedIPv6: 20,
				Netns: workload.NetnsPlan{Conns: 100, Refused: 10, Timeouts: 10},
			}, tc.args...)
		})
	}
}

// TestGroundTruthDegraded is TestGroundTruth, smaller, with two optional
// features whose programs the kernel's verifier refuses (DNS capture,
// snapshots): flowtap
// starts, names each lost feature in one WARN line with its program and
// the kernel's reason, and the flow events, which need none of them here,
// are exact.
func TestGroundTruthDegraded(t *testing.T) {
	t.Setenv(bpf.BreakProgramsEnv, "flowtap_dns_ingress,flowtap_snapshot")
	a := groundTruth(t, "ftd", 214, workload.Plan{
		IPv4: 30, IPv4Mapped: 5, DualStackV4: 5,
		IPv6: 35, DualStackV6: 5,
		RefusedIPv4: 5, RefusedIPv6: 5,
		Netns: workload.NetnsPlan{Conns: 20, Refused: 4, Timeouts: 2},
	}, "--events", "flows")
	var warns []string
	for _, line := range strings.Split(a.Log(), "\n") {
		if strings.Contains(line, "[WARN]") && strings.Contains(line, "feature unavailable") {
			warns = append(warns, line)
		}
	}
	for _, w := range []struct{ feature, program string }{
		{bpf.FeatureDNS, "flowtap_dns_ingress"},
		{bpf.FeatureSnapshots, "flowtap_snapshot"},
	} {
		n := 0
		for _, line := range warns {
			if strings.Contains(line, "feature="+w.feature+" ") && strings.Contains(line, "program="+w.program) && strings.Contains(line, "verifier refused") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d WARN lines name feature %s, program %s and the verifier's refusal, want 1; WARN lines:\n%s", n, w.feature, w.program, strings.Join(warns, "\n"))
		}
	}
	// Besides the two broken on purpose, one for each feature this
	// kernel lacks anyway (no-socket resets before Linux 6.10) that a
	// flows selection loads (not packet flows).
	want := 2
	for name := range unavailableFeatures(t, harness.Binaries(t)) {
		switch name {
		case bpf.FeatureDNS, bpf.FeatureSnapshots, bpf.FeaturePacketFlows:
		default:
			want++
		}
	}
	if len(warns) != want {
		t.Errorf("%d 'feature unavailable' WARN lines, want %d:\n%s", len(warns), want, strings.Join(warns, "\n"))
	}
}

// groundTruth runs the workload plan (with its own servers, and a
// namespace pair named after prefix and second) against 'flowtap run
// args...' and holds flowtap's events to what the workload did. It
// returns the stopped agent.
func groundTruth(t *testing.T, prefix string, second byte, plan workload.Plan, args ...string) *harness.Agent {
	privtest.Require(t)
	bin := harness.Binaries(t)
	ctx := context.Background()
	exe := filepath.Join(bin, "flowtap-workload")

	topo := newTopology(t, ctx, prefix, second)

	// The server side, started before flowtap: flowtap must attribute
	// sockets whose listener it never saw being created.
	nsAddr := netip.AddrPortFrom(topo.ServerAddr, 0)
	lo4, lo6 := netip.MustParseAddrPort("127.0.0.1:0"), netip.MustParseAddrPort("[::1]:0")
	srv, err := workload.StartServe(ctx, exe, workload.ServeConfig{
		Listen: []workload.Endpoint{{Addr: lo4}, {Addr: lo6}, {Addr: netip.MustParseAddrPort("[::]:0")}, {Addr: nsAddr, Netns: topo.ServerNS}},
		Closed: []workload.Endpoint{{Addr: lo4}, {Addr: lo6}, {Addr: nsAddr, Netns: topo.ServerNS}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	info := srv.Info()

	args = append(slices.Clone(args), "--output", "json")
	if strings.Contains(harness.RunHelp(bin), "--syn-timeout") {
		args = append(args, "--syn-timeout", synTimeout.String())
	} else {
		t.Errorf("flowtap run has no --syn-timeout flag: timed-out attempts are judged with flowtap's default")
	}
	a := harness.Start(t, bin, args...)

	plan.Servers = &info
	plan.Netns.Client = topo.ClientNS
	if plan.Netns.Timeouts > 0 {
		plan.Netns.TimeoutTarget = netip.AddrPortFrom(topo.DropAddr, 80)
	}
	plan.ConnectTimeout = workload.Duration(synTimeout + time.Second)
	plan.Parallel = 4
	plan.MaxDuration = workload.Duration(2 * time.Minute)
	rep := runWorkload(t, exe, plan)
	wantConns := plan.IPv4 + plan.IPv4Mapped + plan.DualStackV4 + plan.IPv6 + plan.DualStackV6 + plan.Netns.Conns
	if n := len(rep.Connections); n != wantConns {
		t.Fatalf("the workload made %d connections, want %d", n, wantConns)
	}
	wantFailed := plan.RefusedIPv4 + plan.RefusedIPv6 + plan.Netns.Refused + plan.Netns.Timeouts
	if n := len(rep.Failed); n != wantFailed {
		t.Fatalf("the workload made %d failed attempts, want %d", n, wantFailed)
	}

	want := expectations(rep)
	// Every process of the workload executes its binary: every event
	// whose pid is checked names it as exe, the first of a process too
	// (flowtap reads /proc when it first sees a process).
	real, err := filepath.EvalSymlinks(exe)
	if err != nil {
		t.Fatal(err)
	}
	for k, w := range want {
		if w.pid != 0 {
			w.exe = real
			want[k] = w
		}
	}
	if missing := unavailableFeatures(t, bin); missing[bpf.FeatureNoSocketResets] != "" {
		// Attempts this host refused show from their initiator; from
		// the responder only where the packet programs see the reset
		// (packet flows, IPv4).
		t.Logf("the kernel lacks %s (%s): incoming refused attempts optional", bpf.FeatureNoSocketResets, missing[bpf.FeatureNoSocketResets])
		for k, w := range want {
			if k.event == evFailed && k.dir == "incoming" && w.reason == workload.ReasonRefused {
				w.optional = true
				want[k] = w
			}
		}
	}
	for k, w := range want {
		if w.n > 1 {
			t.Logf("the workload used %s for %s %s %d times", k, k.event, k.dir, w.n)
		}
	}
	ours := relevance(rep, info, topo)
	waitForEvents(a, want, ours, 30*time.Second, 5*time.Second)
	// flowtap runs under its seccomp filter on this kernel too (a WARN
	// would say it could not).
	if st, err := privdrop.ReadStatus(fmt.Sprint(a.PID())); err != nil {
		t.Error(err)
	} else if st.Seccomp != 2 || !st.NoNewPrivs {
		t.Errorf("flowtap runs with Seccomp %d, NoNewPrivs %v; want its filter (mode 2) and NoNewPrivs", st.Seccomp, st.NoNewPrivs)
	}
	a.Stop(t)

	sum, err := srv.Stop()
	if err != nil || sum.Served != len(rep.Connections) || sum.Errors != 0 {
		t.Errorf("server summary %+v (%v): want %d connections served, no errors", sum, err, len(rep.Connections))
	}
	if bad := a.Bad(); len(bad) > 0 {
		t.Errorf("%d stdout lines are not JSON events, first: %q", len(bad), bad[0])
	}
	if st := a.Stopped(); st == nil {
		t.Errorf("flowtap logged no 'stopped' line")
	} else if st["lost_records"] != 0 {
		t.Errorf("flowtap lost %d records: the comparison below is incomplete", st["lost_records"])
	}
	// A clean run logs no error (on Linux 5.10, reads of the lost-record
	// counter after the privilege drop did, every second, until flowtap
	// kept CAP_BPF there), and says when it keeps CAP_BPF.
	for _, line := range strings.Split(a.Log(), "\n") {
		if strings.Contains(line, "[ERROR]") {
			t.Errorf("flowtap logged an error: %s", line)
		}
	}
	if need, err := bpf.MapReadsNeedCapability(); err != nil {
		t.Error(err)
	} else if kept := strings.Contains(a.Log(), "keeping CAP_BPF"); kept != need {
		t.Errorf("flowtap said it keeps CAP_BPF: %v; this kernel refuses map reads without it: %v", kept, need)
	}

	d, checked := compare(want, a.Events(), ours, rep)
	if d.empty() {
		t.Logf("ground truth: %d expected flow events (%d connections, %d failed attempts) all match; %d events checked",
			count(want), len(rep.Connections), len(rep.Failed), checked)
		return a
	}
	t.Errorf("ground truth: %d problems in %d categories (%d expected flow events, %d seen for the workload)\n%s",
		d.total(), len(d.cats), count(want), checked, d)
	t.Logf("flowtap log (last lines):\n%s", tail(a.Log(), 20))
	return a
}

// runWorkload runs 'flowtap-workload run' with plan and returns its report.
func runWorkload(t *testing.T, exe string, plan workload.Plan) *workload.Report {
	t.Helper()
	in, err := json.Marshal(plan)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(plan.MaxDuration)+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "run", "--plan", "-")
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("flowtap-workload run: %v\n%s", err, stderr.Bytes())
	}
	var rep workload.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("workload report: %v", err)
	}
	return &rep
}

// Flow event names.
const (
	evBegin  = "net_flow_tcp_begin"
	evEnd    = "net_flow_tcp_end"
	evFailed = "net_flow_tcp_failed"
)

// flowKey identifies a flow event: name, direction, initiator, responder.
type flowKey struct {
	event, dir string
	src, dst   netip.AddrPort
}

func (k flowKey) String() string {
	return fmt.Sprintf("%s>%s", k.src, k.dst)
}

// expected is what one flow event must say, and how many times: n > 1
// when the workload used the same 4-tuple for several connections or
// attempts (parallel connects to one closed port can get the same
// ephemeral port once the first attempt's socket is gone).
type expected struct {
	n          int
	kind       string // the workload's connection kind, to group the diff
	pid        int    // 0: not checked
	comm       string
	exe        string // "": not checked
	notPID     int    // the pid it must not carry (incoming refused)
	sent, recv uint64
	reason     string // failed: refused/timeout
	start, end int64  // bounds of the connection's life, ns
	// optional: the kernel may not show it (a feature it lacks); when
	// it does, it is checked like any other.
	optional bool
}

// expectations lists every flow event the report implies.
func expectations(rep *workload.Report) map[flowKey]expected {
	want := expectSet{}
	for _, c := range rep.Connections {
		out := expected{kind: c.Kind, pid: c.ClientPID, comm: c.ClientComm,
			sent: c.BytesClientToServer, recv: c.BytesServerToClient, start: c.Start, end: rep.Finished}
		in := expected{kind: c.Kind, pid: c.ServerPID, comm: c.ServerComm,
			sent: c.BytesServerToClient, recv: c.BytesClientToServer, start: c.Start, end: rep.Finished}
		for _, ev := range []string{evBegin, evEnd} {
			want.add(flowKey{ev, "outgoing", c.Client, c.Server}, out)
			want.add(flowKey{ev, "incoming", c.Client, c.Server}, in)
		}
	}
	for _, f := range rep.Failed {
		want.add(flowKey{evFailed, "outgoing", f.Client, f.Server}, expected{kind: f.Kind + " " + f.Reason,
			pid: f.ClientPID, comm: f.ClientComm, reason: f.Reason, start: f.Start, end: rep.Finished})
		if f.ResponderLocal && f.Reason == workload.ReasonRefused {
			want.add(flowKey{evFailed, "incoming", f.Client, f.Server}, expected{kind: f.Kind + " " + f.Reason,
				notPID: f.ClientPID, reason: f.Reason, start: f.Start, end: rep.Finished})
		}
	}
	return want
}

// expectSet collects expectations; a key added again counts once more
// (its first expectation, with the earliest start, stands for all).
type expectSet map[flowKey]expected

func (w expectSet) add(k flowKey, e expected) {
	if old, ok := w[k]; ok {
		old.n++
		old.start = min(old.start, e.start)
		w[k] = old
		return
	}
	e.n = 1
	w[k] = e
}

// count is how many flow events the expectations add up to.
func count(want map[flowKey]expected) int {
	n := 0
	for _, w := range want {
		n += w.n
	}
	return n
}

// relevance returns whether a flow event concerns the workload: one of its
// endpoints is a client or server endpoint of the workload, or an address
// in the test's namespaces.
func relevance(rep *workload.Report, info workload.ServeInfo, topo *workload.Topology) func(harness.Event) bool {
	// The workload's connections and attempts are ours by their whole
	// 4-tuple: other tests running meanwhile reuse the same ephemeral
	// client ports towards other servers. Anything aimed at the workload's
	// servers is ours too.
	type pair struct{ src, dst netip.AddrPort }
	um := func(a netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()) }
	pairs := map[pair]bool{}
	servers := map[netip.AddrPort]bool{}
	for _, c := range rep.Connections {
		pairs[pair{um(c.Client), um(c.Server)}] = true
		servers[um(c.Server)] = true
	}
	for _, f := range rep.Failed {
		pairs[pair{um(f.Client), um(f.Server)}] = true
		servers[um(f.Server)] = true
	}
	// A wildcard listener stands for both loopback addresses; any other
	// stands only for itself: another test may listen on the same port
	// number at the other loopback address.
	for _, e := range append(slices.Clone(info.Listeners), info.Closed...) {
		if !e.Addr.Addr().IsUnspecified() {
			servers[um(e.Addr)] = true
			continue
		}
		for _, a := range []string{"127.0.0.1", "::1"} {
			servers[netip.AddrPortFrom(netip.MustParseAddr(a), e.Addr.Port())] = true
		}
	}
	return func(ev harness.Event) bool {
		switch ev.Event {
		case evBegin, evEnd, evFailed:
		default:
			return false
		}
		src, dst := eventEndpoints(ev)
		return pairs[pair{src, dst}] || servers[dst] || topo.Prefix.Contains(src.Addr()) || topo.Prefix.Contains(dst.Addr())
	}
}

func eventEndpoints(ev harness.Event) (src, dst netip.AddrPort) {
	s, _ := netip.ParseAddr(ev.Fields.Src)
	d, _ := netip.ParseAddr(ev.Fields.Dst)
	return netip.AddrPortFrom(s, ev.Fields.SrcPort), netip.AddrPortFrom(d, ev.Fields.DstPort)
}

func keyOf(ev harness.Event) flowKey {
	src, dst := eventEndpoints(ev)
	return flowKey{ev.Event, ev.Fields.ConnDirection, src, dst}
}

// waitForEvents waits until every expected event has been seen, at most
// limit, and gives up earlier when no event for the workload arrived for
// stall (what is missing by then is not coming).
func waitForEvents(a *harness.Agent, want map[flowKey]expected, ours func(harness.Event) bool, limit, stall time.Duration) {
	deadline := time.Now().Add(limit)
	last, lastChange := -1, time.Now()
	for time.Now().Before(deadline) {
		seen := map[flowKey]int{}
		n := 0
		for _, ev := range a.Events() {
			if ours(ev) {
				n++
				seen[keyOf(ev)]++
			}
		}
		missing := 0
		for k, w := range want {
			if seen[k] < w.n {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if n != last {
			last, lastChange = n, time.Now()
		} else if time.Since(lastChange) > stall {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// compare checks the events against the expectations and returns the
// differences and how many of the workload's events it looked at.
func compare(want map[flowKey]expected, got []harness.Event, ours func(harness.Event) bool, rep *workload.Report) (*diff, int) {
	d := &diff{cats: map[string]*category{}}
	byKey := map[flowKey][]harness.Event{}
	checked := 0
	for _, ev := range got {
		if ev.Event == "flowtap_records_lost" {
			d.add("flowtap_records_lost", fmt.Sprintf("lost=%d lost_total=%d", ev.Fields.Lost, ev.Fields.LostTotal))
			continue
		}
		if !ours(ev) {
			continue
		}
		checked++
		byKey[keyOf(ev)] = append(byKey[keyOf(ev)], ev)
	}
	// Unexpected events first, so a reversed src/dst reads as one problem.
	reversed := map[flowKey]bool{}
	for k, evs := range byKey {
		if _, ok := want[k]; ok {
			continue
		}
		rk := flowKey{k.event, k.dir, k.dst, k.src}
		if _, ok := want[rk]; ok {
			reversed[rk] = true
			d.add(fmt.Sprintf("%s %s %s: src/dst reversed (responder → initiator)", k.event, k.dir, want[rk].kind), rk.String())
			continue
		}
		d.add(fmt.Sprintf("%s %s: unexpected", k.event, k.dir), fmt.Sprintf("%s x%d reason=%q close=%q", k, len(evs), evs[0].Fields.Reason, evs[0].Fields.CloseReason))
	}
	for k, w := range want {
		evs := byKey[k]
		cat := fmt.Sprintf("%s %s %s", k.event, k.dir, w.kind)
		switch {
		case len(evs) == 0:
			if !reversed[k] && !w.optional {
				d.add(cat+": missing", k.String())
			}
			continue
		case len(evs) > w.n:
			d.add(cat+": duplicated", fmt.Sprintf("%s x%d (the workload used it %d times)", k, len(evs), w.n))
		case len(evs) < w.n:
			d.add(cat+": missing", fmt.Sprintf("%s x%d (the workload used it %d times)", k, len(evs), w.n))
		}
		checkEvent(d, cat, k, w, evs[0], rep)
	}
	checkJoins(d, byKey, want)
	return d, checked
}

// checkJoins checks the flow identity of the workload's events: each
// endpoint's begin and end carry one flow_id, which no other endpoint's
// events carry (incoming ones included), and every event of a connection
// carries its Community ID. Tuples the workload used more than once are
// left out: which begin an end joins is then not known from the tuple.
func checkJoins(d *diff, byKey map[flowKey][]harness.Event, want map[flowKey]expected) {
	owner := map[string]flowKey{} // flow_id -> the endpoint it names
	keys := slices.Collect(maps.Keys(byKey))
	slices.SortFunc(keys, func(a, b flowKey) int {
		return strings.Compare(a.event+" "+a.dir+" "+a.String(), b.event+" "+b.dir+" "+b.String())
	})
	for _, k := range keys {
		evs := byKey[k]
		w, ok := want[k]
		if !ok || w.n != 1 || len(evs) != 1 {
			continue
		}
		ev := evs[0]
		cat := fmt.Sprintf("%s %s %s", k.event, k.dir, w.kind)
		if wantCID := (communityid.Hasher{}).TCP(k.src.Addr(), k.dst.Addr(), k.src.Port(), k.dst.Port()); ev.Fields.CommunityID != wantCID {
			d.add(cat+": community_id", fmt.Sprintf("%s got %q want %q", k, ev.Fields.CommunityID, wantCID))
		}
		id := ev.Fields.FlowID
		if id == "" {
			d.add(cat+": flow_id missing", k.String())
			continue
		}
		endpoint := flowKey{dir: k.dir, src: k.src, dst: k.dst}
		if prev, seen := owner[id]; seen && prev != endpoint {
			d.add(cat+": flow_id shared by two endpoints", fmt.Sprintf("%s %s and %s %s: %s", prev.dir, prev, k.dir, k, id))
		}
		owner[id] = endpoint
		if k.event != evBegin {
			continue
		}
		end := byKey[flowKey{evEnd, k.dir, k.src, k.dst}]
		if len(end) == 1 && end[0].Fields.FlowID != id {
			d.add(cat+": begin and end carry different flow_ids", fmt.Sprintf("%s begin %s end %s", k, id, end[0].Fields.FlowID))
		}
	}
}

// checkEvent compares one event's fields with what it must say.
func checkEvent(d *diff, cat string, k flowKey, w expected, ev harness.Event, rep *workload.Report) {
	f, c := ev.Fields, ev.Context
	field := func(name string, got, want any) {
		if got != want {
			d.add(cat+": "+name, fmt.Sprintf("%s got %v want %v", k, got, want))
		}
	}
	if w.pid != 0 {
		field("context.pid", c.PID, w.pid)
		field("context.comm", c.Comm, w.comm)
	}
	if w.exe != "" {
		field("context.exe", c.Exe, w.exe)
	}
	if w.notPID != 0 && c.PID == w.notPID {
		d.add(cat+": context.pid is the client's", fmt.Sprintf("%s pid %d", k, c.PID))
	}
	if k.event != evFailed || k.dir == "outgoing" {
		if c.SocketCookie == 0 || c.CgroupID == 0 {
			d.add(cat+": context lacks socket_cookie or cgroup_id", fmt.Sprintf("%s %+v", k, c))
		}
	}
	if f.SrcDNS == nil || f.DstDNS == nil || len(f.SrcDNS)+len(f.DstDNS) != 0 {
		d.add(cat+": src_dns/dst_dns must be empty lists", fmt.Sprintf("%s %v %v", k, f.SrcDNS, f.DstDNS))
	}
	if ev.Timestamp < rep.Started-int64(time.Second) || ev.Timestamp > time.Now().UnixNano() {
		d.add(cat+": timestamp outside the run", fmt.Sprintf("%s %d, run %d..%d", k, ev.Timestamp, rep.Started, rep.Finished))
	}
	switch k.event {
	case evBegin:
		if f.HandshakeNs == 0 {
			d.add(cat+": handshake_ns", fmt.Sprintf("%s got 0 want > 0", k))
		}
	case evEnd:
		field("bytes_sent", f.BytesSent, w.sent)
		field("bytes_received", f.BytesReceived, w.recv)
		field("close_reason", f.CloseReason, "fin")
		if f.PacketsSent == 0 || f.PacketsReceived == 0 {
			d.add(cat+": packets_sent/packets_received", fmt.Sprintf("%s got %d/%d want > 0", k, f.PacketsSent, f.PacketsReceived))
		}
		// The flow cannot outlast the connection (plus slack for the
		// server's close after the client's last read).
		if life := uint64(w.end-w.start) + uint64(5*time.Second); f.DurationNs == 0 || f.DurationNs > life {
			d.add(cat+": duration_ns", fmt.Sprintf("%s got %d want 0 < d <= %d", k, f.DurationNs, life))
		}
	case evFailed:
		field("reason", f.Reason, w.reason)
	}
}

// diff groups mismatches by category, keeping a count and a few examples.
type diff struct {
	cats map[string]*category
}

type category struct {
	n  int
	ex []string
}

const examplesPerCategory = 2

func (d *diff) add(cat, example string) {
	c := d.cats[cat]
	if c == nil {
		c = &category{}
		d.cats[cat] = c
	}
	c.n++
	if len(c.ex) < examplesPerCategory {
		c.ex = append(c.ex, example)
	}
}

func (d *diff) empty() bool { return len(d.cats) == 0 }

func (d *diff) total() int {
	n := 0
	for _, c := range d.cats {
		n += c.n
	}
	return n
}

// String renders one line per category, sorted, at most 60 lines.
func (d *diff) String() string {
	names := make([]string, 0, len(d.cats))
	for n := range d.cats {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	for i, n := range names {
		if i == 60 {
			fmt.Fprintf(&b, "  ... %d more categories\n", len(names)-i)
			break
		}
		c := d.cats[n]
		fmt.Fprintf(&b, "  %5d  %s   e.g. %s\n", c.n, n, strings.Join(c.ex, "; "))
	}
	return b.String()
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestCompareNamesEachProblem feeds compare a made-up report and events
// with one fault of each kind, so a ground-truth failure can be trusted to
// name what is wrong.
func TestCompareNamesEachProblem(t *testing.T) {
	ap := netip.MustParseAddrPort
	rep := &workload.Report{
		Started: time.Now().Add(-time.Second).UnixNano(), Finished: time.Now().UnixNano(),
		Connections: []workload.Connection{{
			Kind: workload.KindIPv4, Client: ap("127.0.0.1:40000"), Server: ap("127.0.0.1:8080"),
			BytesClientToServer: 116, BytesServerToClient: 4096,
			ClientPID: 10, ClientComm: "ftw-client", ServerPID: 20, ServerComm: "ftw-serve",
		}},
		Failed: []workload.Attempt{
			{Kind: workload.KindIPv6, Client: ap("[::1]:40001"), Server: ap("[::1]:9"), Reason: workload.ReasonRefused, ResponderLocal: true, ClientPID: 10, ClientComm: "ftw-client"},
			{Kind: workload.KindNetns, Client: ap("10.0.0.1:40002"), Server: ap("10.0.0.3:80"), Reason: workload.ReasonTimeout, ClientPID: 10, ClientComm: "ftw-client"},
		},
	}
	now := time.Now().UnixNano()
	ev := func(name, dir, src, dst string, pid int, comm string, f harness.Fields) harness.Event {
		s, d := ap(src), ap(dst)
		f.ConnDirection, f.Src, f.Dst, f.SrcPort, f.DstPort = dir, s.Addr().String(), d.Addr().String(), s.Port(), d.Port()
		f.SrcDNS, f.DstDNS = []string{}, []string{}
		// One flow_id per endpoint, the community_id of the tuple.
		f.FlowID = dir + " " + src + " " + dst
		f.CommunityID = (communityid.Hasher{}).TCP(s.Addr(), d.Addr(), s.Port(), d.Port())
		return harness.Event{Timestamp: now, Event: name, Fields: f,
			Context: harness.Context{SocketCookie: 1, CgroupID: 1, PID: pid, Comm: comm}}
	}
	c, s := "127.0.0.1:40000", "127.0.0.1:8080"
	good := []harness.Event{
		ev(evBegin, "outgoing", c, s, 10, "ftw-client", harness.Fields{HandshakeNs: 1}),
		ev(evBegin, "incoming", c, s, 20, "ftw-serve", harness.Fields{HandshakeNs: 1}),
		ev(evEnd, "outgoing", c, s, 10, "ftw-client", harness.Fields{DurationNs: 1, BytesSent: 116, BytesReceived: 4096, PacketsSent: 1, PacketsReceived: 1, CloseReason: "fin"}),
		ev(evEnd, "incoming", c, s, 20, "ftw-serve", harness.Fields{DurationNs: 1, BytesSent: 4096, BytesReceived: 116, PacketsSent: 1, PacketsReceived: 1, CloseReason: "fin"}),
		ev(evFailed, "outgoing", "[::1]:40001", "[::1]:9", 10, "ftw-client", harness.Fields{Reason: "refused"}),
		ev(evFailed, "incoming", "[::1]:40001", "[::1]:9", 0, "", harness.Fields{Reason: "refused"}),
		ev(evFailed, "outgoing", "10.0.0.1:40002", "10.0.0.3:80", 10, "ftw-client", harness.Fields{Reason: "timeout"}),
	}
	want := expectations(rep)
	all := func(harness.Event) bool { return true }
	if d, _ := compare(want, good, all, rep); !d.empty() {
		t.Fatalf("the true events differ from the truth:\n%s", d)
	}

	bad := slices.Clone(good)
	bad[0].Context.PID = 11                                       // wrong process
	bad[1] = ev(evBegin, "incoming", s, c, 20, "", bad[1].Fields) // reversed
	bad[3].Fields.BytesSent = 5000                                // wrong count
	bad[3].Fields.CloseReason = "shutdown"                        // wrong reason
	bad = append(bad, bad[2])                                     // duplicate end
	bad[5] = ev(evFailed, "incoming", "[::1]:40001", "[::1]:9", 10, "", harness.Fields{Reason: "timeout"})
	bad = slices.Delete(bad, 6, 7)                                                          // timeout missing
	bad = append(bad, ev(evBegin, "outgoing", "127.0.0.1:1", s, 10, "x", harness.Fields{})) // unexpected
	bad[4].Fields.CommunityID = "1:AAAAAAAAAAAAAAAAAAAAAAAAAAA="                            // wrong hash
	bad[5].Fields.FlowID = bad[4].Fields.FlowID                                             // another endpoint's flow_id
	d, _ := compare(want, bad, all, rep)
	for _, cat := range []string{
		"net_flow_tcp_begin outgoing ipv4: context.pid",
		"net_flow_tcp_begin incoming ipv4: src/dst reversed (responder → initiator)",
		"net_flow_tcp_end incoming ipv4: bytes_sent",
		"net_flow_tcp_end incoming ipv4: close_reason",
		"net_flow_tcp_end outgoing ipv4: duplicated",
		"net_flow_tcp_failed incoming ipv6 refused: reason",
		"net_flow_tcp_failed incoming ipv6 refused: context.pid is the client's",
		"net_flow_tcp_failed outgoing netns timeout: missing",
		"net_flow_tcp_begin outgoing: unexpected",
		"net_flow_tcp_failed outgoing ipv6 refused: community_id",
		"net_flow_tcp_failed outgoing ipv6 refused: flow_id shared by two endpoints",
	} {
		if d.cats[cat] == nil {
			t.Errorf("no %q in the diff:\n%s", cat, d)
		}
	}
	if len(d.cats) != 11 {
		t.Errorf("%d categories, want 11:\n%s", len(d.cats), d)
	}
	// An end whose flow_id is not its begin's.
	split := slices.Clone(good)
	split[2].Fields.FlowID = "another"
	if d, _ := compare(want, split, all, rep); d.cats["net_flow_tcp_begin outgoing ipv4: begin and end carry different flow_ids"] == nil {
		t.Errorf("a begin and end with two flow_ids passed:\n%s", d)
	}
}

// TestCompareReusedTuple: a 4-tuple the workload used for two attempts
// must be reported twice, and once is a miss, three times a duplicate.
func TestCompareReusedTuple(t *testing.T) {
	ap := netip.MustParseAddrPort
	attempt := workload.Attempt{Kind: workload.KindIPv4, Client: ap("127.0.0.1:40001"), Server: ap("127.0.0.1:9"),
		Reason: workload.ReasonRefused, ResponderLocal: true, ClientPID: 10, ClientComm: "ftw-client"}
	rep := &workload.Report{Started: time.Now().Add(-time.Second).UnixNano(), Finished: time.Now().UnixNano(),
		Failed: []workload.Attempt{attempt, attempt}}
	want := expectations(rep)
	if n := count(want); n != 4 {
		t.Fatalf("%d expected events, want 4 (two attempts, two sides each)", n)
	}
	now := time.Now().UnixNano()
	failed := func(dir string, pid int, comm string) harness.Event {
		return harness.Event{Timestamp: now, Event: evFailed,
			Fields:  harness.Fields{ConnDirection: dir, Src: "127.0.0.1", Dst: "127.0.0.1", SrcPort: 40001, DstPort: 9, Reason: "refused", SrcDNS: []string{}, DstDNS: []string{}},
			Context: harness.Context{SocketCookie: 1, CgroupID: 1, PID: pid, Comm: comm}}
	}
	out, in := failed("outgoing", 10, "ftw-client"), failed("incoming", 0, "")
	all := func(harness.Event) bool { return true }
	for _, tc := range []struct {
		name string
		got  []harness.Event
		want []string
	}{
		{"twice each", []harness.Event{out, in, out, in}, nil},
		{"once each", []harness.Event{out, in}, []string{"net_flow_tcp_failed outgoing ipv4 refused: missing", "net_flow_tcp_failed incoming ipv4 refused: missing"}},
		{"three times out", []harness.Event{out, in, out, in, out}, []string{"net_flow_tcp_failed outgoing ipv4 refused: duplicated"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := compare(want, tc.got, all, rep)
			if len(tc.want) == 0 && !d.empty() {
				t.Fatalf("unexpected problems:\n%s", d)
			}
			for _, cat := range tc.want {
				if d.cats[cat] == nil {
					t.Errorf("no %q in the diff:\n%s", cat, d)
				}
			}
			if d.total() != len(tc.want) {
				t.Errorf("%d problems, want %d:\n%s", d.total(), len(tc.want), d)
			}
		})
	}
}

// unavailableFeatures runs 'flowtap doctor --json' and returns the
// features this kernel lacks, with the reason.
func unavailableFeatures(t *testing.T, bin string) map[string]string {
	t.Helper()
	out, err := exec.Command(filepath.Join(bin, "flowtap"), "doctor", "--json").Output()
	if err != nil {
		t.Fatalf("flowtap doctor --json: %v\n%s", err, out)
	}
	var r struct {
		Features []struct {
			Name      string `json:"name"`
			Available bool   `json:"available"`
			Skipped   bool   `json:"skipped"`
			Reason    string `json:"reason"`
		} `json:"features"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, out)
	}
	missing := map[string]string{}
	for _, f := range r.Features {
		if !f.Available && !f.Skipped {
			missing[f.Name] = f.Reason
		}
	}
	return missing
}
