// SPDX-License-Identifier: Apache-2.0

package derive

import (
	"bufio"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowtap/flowtap/derive/communityid"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite the expected.txt of every golden case from the tracker's output")

const ms = int64(time.Millisecond)

var stateNames = map[string]uint8{
	"ESTABLISHED": tcpEstablished, "SYN_SENT": tcpSynSent, "SYN_RECV": tcpSynRecv,
	"FIN_WAIT1": tcpFinWait1, "FIN_WAIT2": tcpFinWait2, "TIME_WAIT": tcpTimeWait,
	"CLOSE": tcpClose, "CLOSE_WAIT": tcpCloseWait, "LAST_ACK": tcpLastAck,
	"LISTEN": tcpListen, "CLOSING": tcpClosing,
}

// parseCounters reads "B/P" (bytes/packets).
func parseCounters(v string) (bytes, pkts uint64, err error) {
	b, p, ok := strings.Cut(v, "/")
	if !ok {
		return 0, 0, fmt.Errorf("counter %q: want BYTES/PACKETS", v)
	}
	if bytes, err = strconv.ParseUint(b, 10, 64); err == nil {
		pkts, err = strconv.ParseUint(p, 10, 64)
	}
	return bytes, pkts, err
}

// parseOptions reads the key=value tail of an input line into the context,
// counters and timestamp.
func parseOptions(opts []string, ctx *events.Context, c *events.Counters, ts *int64) error {
	for _, o := range opts {
		if o == "nosocket" {
			continue // handled by parseLine
		}
		k, v, ok := strings.Cut(o, "=")
		if !ok {
			return fmt.Errorf("option %q: want key=value", o)
		}
		var err error
		var n uint64
		switch k {
		case "cookie":
			ctx.SocketCookie, err = strconv.ParseUint(v, 10, 64)
		case "cgroup":
			ctx.CgroupID, err = strconv.ParseUint(v, 10, 64)
		case "pid":
			n, err = strconv.ParseUint(v, 10, 32)
			ctx.PID, ctx.Comm = uint32(n), "proc"+v
		case "sent":
			c.BytesSent, c.PacketsSent, err = parseCounters(v)
		case "recv":
			c.BytesReceived, c.PacketsReceived, err = parseCounters(v)
		case "t":
			var t float64
			t, err = strconv.ParseFloat(v, 64)
			*ts = int64(t * float64(ms))
		default:
			return fmt.Errorf("unknown option %q", k)
		}
		if err != nil {
			return fmt.Errorf("option %q: %w", o, err)
		}
	}
	return nil
}

// parseLine reads one line of a golden input. Packets:
//
//	egress 127.0.0.1:40000 > 127.0.0.1:8080 SYN|ACK cookie=7 pid=10 sent=5/2 recv=0/1 t=3
//
// socket reports (local ~ remote):
//
//	close 127.0.0.1:40000 ~ 127.0.0.1:8080 FIN_WAIT2 cookie=1 sent=5/3 recv=7/3 t=9
//	snapshot 127.0.0.1:40000 ~ 127.0.0.1:8080 ESTABLISHED sent=5/3 recv=7/3
//
// A packet no socket took, which the kernel reset, ends with "nosocket".
// A line without t= happens at its line number in milliseconds.
func parseLine(line string, n int) (events.Event, error) {
	f := strings.Fields(line)
	if len(f) < 5 && (len(f) == 0 || f[0] != "lost") {
		return events.Event{}, fmt.Errorf("too few words in %q", line)
	}
	ev := events.Event{Timestamp: int64(n) * ms}
	var a, b netip.AddrPort
	if f[0] != "lost" {
		var err error
		if a, err = netip.ParseAddrPort(f[1]); err != nil {
			return ev, err
		}
		if b, err = netip.ParseAddrPort(f[3]); err != nil {
			return ev, err
		}
	}
	switch f[0] {
	case "lost":
		// lost N [t=MS]: a lost-record marker.
		n, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return ev, err
		}
		p := &events.RecordsLost{Lost: n, Total: n}
		ev.ID, ev.Payload = events.IDRecordsLost, p
		err = parseOptions(f[2:], &ev.Context, &events.Counters{}, &ev.Timestamp)
		p.From, p.To = ev.Timestamp, ev.Timestamp
		return ev, err
	case "egress", "ingress":
		if f[2] != ">" {
			return ev, fmt.Errorf("packet %q: want SRC > DST", line)
		}
		p := &events.PacketFlowBase{Direction: events.Egress, Src: a.Addr(), SrcPort: a.Port(), Dst: b.Addr(), DstPort: b.Port()}
		if f[0] == "ingress" {
			p.Direction = events.Ingress
		}
		for _, name := range strings.Split(f[4], "|") {
			bit, ok := map[string]events.TCPFlags{"SYN": events.FlagSYN, "ACK": events.FlagACK, "FIN": events.FlagFIN, "RST": events.FlagRST, "PSH": events.FlagPSH}[name]
			if !ok {
				return ev, fmt.Errorf("flag %q", name)
			}
			p.Flags |= bit
		}
		for _, o := range f[5:] {
			p.NoSocket = p.NoSocket || o == "nosocket"
		}
		ev.ID, ev.Payload = events.IDNetPacketFlowBase, p
		return ev, parseOptions(f[5:], &ev.Context, &p.Counters, &ev.Timestamp)
	case "close", "snapshot":
		if f[2] != "~" {
			return ev, fmt.Errorf("socket report %q: want LOCAL ~ REMOTE", line)
		}
		state, ok := stateNames[f[4]]
		if !ok {
			return ev, fmt.Errorf("state %q", f[4])
		}
		s := &events.TCPSocketBase{Report: events.SocketClosed, Local: a.Addr(), LocalPort: a.Port(), Remote: b.Addr(), RemotePort: b.Port(), State: state}
		if f[0] == "snapshot" {
			s.Report = events.SocketSnapshot
		}
		ev.ID, ev.Payload = events.IDNetTCPSocketBase, s
		return ev, parseOptions(f[5:], &ev.Context, &s.Counters, &ev.Timestamp)
	}
	return ev, fmt.Errorf("unknown line kind %q", f[0])
}

// formatEvent renders a derived event the way expected.txt spells it.
func formatEvent(t *testing.T, ev events.Event) string {
	if ev.ID != ev.Payload.EventID() {
		t.Fatalf("event id %d does not match payload %T", ev.ID, ev.Payload)
	}
	if f := flowOf(ev.Payload); f != nil {
		for _, c := range [][2]string{{f.SrcText, events.AddrText(f.Src)}, {f.DstText, events.AddrText(f.Dst)}} {
			if c[0] != "" && c[0] != c[1] {
				t.Fatalf("cached address text %q differs from the address %q", c[0], c[1])
			}
		}
	}
	line, ok := testutil.FlowLine(ev, strconv.FormatFloat(float64(ev.Timestamp)/float64(ms), 'f', -1, 64), true)
	if !ok {
		t.Fatalf("unexpected payload %T", ev.Payload)
	}
	return line
}

// flowOf returns a flow event's common fields, nil for other payloads.
func flowOf(p events.Payload) *events.Flow {
	switch p := p.(type) {
	case *events.FlowBegin:
		return &p.Flow
	case *events.FlowEnd:
		return &p.Flow
	case *events.FlowFailed:
		return &p.Flow
	}
	return nil
}

// parseConfig reads a "config maxflows=N syn=DUR idle=DUR grace=DUR" line.
func parseConfig(line string) (Config, error) {
	var cfg Config
	for _, o := range strings.Fields(line)[1:] {
		k, v, _ := strings.Cut(o, "=")
		var err error
		switch k {
		case "maxflows":
			cfg.MaxFlows, err = strconv.Atoi(v)
		case "syn":
			cfg.SYNTimeout, err = time.ParseDuration(v)
		case "idle":
			cfg.IdleTimeout, err = time.ParseDuration(v)
		case "grace":
			cfg.CloseGrace, err = time.ParseDuration(v)
		default:
			err = fmt.Errorf("unknown key")
		}
		if err != nil {
			return cfg, fmt.Errorf("config %q: %w", o, err)
		}
	}
	return cfg, nil
}

// runGolden feeds one input file to a tracker and returns the derived
// events, formatted, and the tracker.
func runGolden(t *testing.T, input string) ([]string, *Tracker) {
	file, err := os.Open(input)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var got []string
	var tr *Tracker
	ids := newIDCheck()
	shutdown := false
	defer func() {
		if shutdown {
			ids.done(t)
		}
	}()
	emit := func(ev events.Event) {
		got = append(got, formatEvent(t, ev))
		ids.check(t, ev)
	}
	sc := bufio.NewScanner(file)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "config") {
			cfg, err := parseConfig(line)
			if err != nil {
				t.Fatalf("%s:%d: %v", input, n, err)
			}
			tr = NewTracker(cfg, emit)
			continue
		}
		if tr == nil {
			tr = NewTracker(Config{}, emit)
		}
		if word, arg, _ := strings.Cut(line, " "); word == "tick" || word == "shutdown" {
			at := int64(n) * ms
			if arg != "" {
				v, err := strconv.ParseFloat(arg, 64)
				if err != nil {
					t.Fatalf("%s:%d: %v", input, n, err)
				}
				at = int64(v * float64(ms))
			}
			if word == "tick" {
				tr.Tick(at)
			} else {
				tr.Close(at)
				shutdown = true
			}
			continue
		}
		ev, err := parseLine(line, n)
		if err != nil {
			t.Fatalf("%s:%d: %v", input, n, err)
		}
		tr.Handle(ev)
	}
	return got, tr
}

// TestGolden runs every testdata/<case>/input.txt through a tracker and
// compares the derived events with expected.txt.
func TestGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/*/input.txt")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	for _, input := range cases {
		dir := filepath.Dir(input)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			got, _ := runGolden(t, input)
			expectedPath := filepath.Join(dir, "expected.txt")
			if *update {
				out := strings.Join(got, "\n")
				if out != "" {
					out += "\n"
				}
				if err := os.WriteFile(expectedPath, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			raw, err := os.ReadFile(expectedPath)
			if err != nil {
				t.Fatal(err)
			}
			want := nonEmptyLines(string(raw))
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("derived events differ\n got:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}
		})
	}
}

func nonEmptyLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

func feed(t testing.TB, tr *Tracker, lines ...string) {
	t.Helper()
	for i, line := range lines {
		ev, err := parseLine(line, i+1)
		if err != nil {
			t.Fatal(err)
		}
		tr.Handle(ev)
	}
}

func TestTrackerForgetsFinishedConnections(t *testing.T) {
	tr := NewTracker(Config{}, func(events.Event) {})
	feed(t, tr,
		"egress 127.0.0.1:1 > 127.0.0.1:2 SYN cookie=1",
		"ingress 127.0.0.1:2 > 127.0.0.1:1 RST|ACK cookie=1",
		"egress 127.0.0.1:3 > 127.0.0.1:4 SYN cookie=1",
		"ingress 127.0.0.1:4 > 127.0.0.1:3 SYN|ACK cookie=1",
		"egress 127.0.0.1:3 > 127.0.0.1:4 FIN|ACK cookie=1",
		"ingress 127.0.0.1:4 > 127.0.0.1:3 FIN|ACK cookie=1",
		"close 127.0.0.1:3 ~ 127.0.0.1:4 FIN_WAIT2 cookie=1",
	)
	if tr.Len() != 0 {
		t.Fatalf("tracker still holds %d connections", tr.Len())
	}
	tr.Tick(time.Hour.Nanoseconds())
	if s := tr.Stats(); s.Begun != 1 || s.Ended != 1 || s.Failed != 1 || s.CloseMissing != 0 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestTrackerIgnoresOtherEvents(t *testing.T) {
	n := 0
	tr := NewTracker(Config{}, func(events.Event) { n++ })
	tr.Handle(events.Event{ID: events.IDNetFlowTCPBegin, Payload: &events.FlowBegin{}})
	tr.Handle(events.Event{})
	if n != 0 || tr.Len() != 0 {
		t.Fatalf("non-base events changed the tracker: %d emitted, %d tracked", n, tr.Len())
	}
}

// TestTableBound fills a tiny table and checks that it never grows past
// its bound and that every begun flow still gets exactly one end.
func TestTableBound(t *testing.T) {
	begins, ends := map[string]int{}, map[string]int{}
	tr := NewTracker(Config{MaxFlows: 8}, func(ev events.Event) {
		switch p := ev.Payload.(type) {
		case *events.FlowBegin:
			begins[fmt.Sprint(p.SrcPort, p.Direction)]++
		case *events.FlowEnd:
			ends[fmt.Sprint(p.SrcPort, p.Direction)]++
			if p.Reason != events.CloseEvicted && p.Reason != events.CloseShutdown {
				t.Errorf("unexpected reason %s", p.Reason)
			}
		}
	})
	for i := 0; i < 100; i++ {
		feed(t, tr,
			fmt.Sprintf("egress 127.0.0.1:%d > 127.0.0.1:80 SYN", 1000+i),
			fmt.Sprintf("ingress 127.0.0.1:%d > 127.0.0.1:80 SYN", 1000+i),
			fmt.Sprintf("egress 127.0.0.1:80 > 127.0.0.1:%d SYN|ACK", 1000+i),
			fmt.Sprintf("ingress 127.0.0.1:80 > 127.0.0.1:%d SYN|ACK", 1000+i),
		)
		if tr.Len() > 8 {
			t.Fatalf("table holds %d connections, bound is 8", tr.Len())
		}
	}
	tr.Close(time.Hour.Nanoseconds())
	if len(begins) != 200 || len(ends) != 200 {
		t.Fatalf("%d begins, %d ends, want 200 each", len(begins), len(ends))
	}
	for k, n := range begins {
		if n != 1 || ends[k] != 1 {
			t.Fatalf("%s: %d begins, %d ends", k, n, ends[k])
		}
	}
	if s := tr.Stats(); s.EvictedFull != 92 {
		t.Fatalf("EvictedFull = %d, want 92", s.EvictedFull)
	}
}

// BenchmarkTrackerLoopback feeds whole loopback connections (8 packet
// records and 2 close reports each) through the tracker and reports base
// events per second and allocations per base event.
func BenchmarkTrackerLoopback(b *testing.B) {
	tmpl := []string{
		"egress  127.0.0.1:%d > 127.0.0.1:8080 SYN     cookie=1 pid=5",
		"ingress 127.0.0.1:%d > 127.0.0.1:8080 SYN     cookie=7 pid=6",
		"egress  127.0.0.1:8080 > 127.0.0.1:%d SYN|ACK cookie=7 pid=6",
		"ingress 127.0.0.1:8080 > 127.0.0.1:%d SYN|ACK cookie=1 pid=5",
		"egress  127.0.0.1:%d > 127.0.0.1:8080 FIN|ACK cookie=1 pid=5 sent=10/3 recv=20/3",
		"ingress 127.0.0.1:%d > 127.0.0.1:8080 FIN|ACK cookie=9 pid=6 sent=20/3 recv=10/3",
		"egress  127.0.0.1:8080 > 127.0.0.1:%d FIN|ACK cookie=9 pid=6 sent=20/4 recv=10/3",
		"ingress 127.0.0.1:8080 > 127.0.0.1:%d FIN|ACK cookie=1 pid=5 sent=10/3 recv=20/4",
		"close 127.0.0.1:%d ~ 127.0.0.1:8080 FIN_WAIT2 cookie=1 pid=5 sent=10/4 recv=20/4",
		"close 127.0.0.1:8080 ~ 127.0.0.1:%d LAST_ACK cookie=9 pid=6 sent=20/4 recv=10/4",
	}
	const conns = 1024
	evs := make([]events.Event, 0, conns*len(tmpl))
	for c := 0; c < conns; c++ {
		for _, l := range tmpl {
			ev, err := parseLine(fmt.Sprintf(l, 20000+c), 1)
			if err != nil {
				b.Fatal(err)
			}
			evs = append(evs, ev)
		}
	}
	emitted := 0
	tr := NewTracker(Config{}, func(events.Event) { emitted++ })
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tr.Handle(evs[i%len(evs)])
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	// allocs/op rounds to an integer; this keeps the fraction.
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N), "allocs/event")
	if b.N >= len(evs) && emitted < 4*conns {
		b.Fatalf("%d flow events derived from %d whole connections", emitted, conns)
	}
}

// TestConnKey: a connection's key is the same from either end, and tells
// apart endpoints that differ in any address byte, port or family.
func TestConnKey(t *testing.T) {
	ep := netip.MustParseAddrPort
	a, b := ep("127.0.0.1:40000"), ep("127.0.0.1:8080")
	if makeKey(a, b) != makeKey(b, a) {
		t.Error("the key depends on the order of the endpoints")
	}
	distinct := [][2]netip.AddrPort{
		{a, b},
		{ep("127.0.0.1:40001"), b},
		{ep("127.0.0.2:40000"), b},
		{ep("127.0.0.2:8080"), ep("127.0.0.1:40000")}, // the ports of the one before, swapped
		{ep("[::7f00:1]:40000"), b},                   // IPv6 with IPv4's last bytes
		{ep("[2001:db8::1]:40000"), ep("[2001:db8::2]:8080")},
		{ep("[2001:db8::2]:40000"), ep("[2001:db8::1]:8080")},
	}
	seen := map[connKey]int{}
	for i, d := range distinct {
		k := makeKey(d[0], d[1])
		if j, ok := seen[k]; ok {
			t.Errorf("endpoints %v and %v share a key", distinct[j], d)
		}
		seen[k] = i
	}
}

// TestNextDeadline checks that NextDeadline names the earliest time a
// Tick acts at, so that ticking exactly there gives what a periodic
// ticker gives.
func TestNextDeadline(t *testing.T) {
	var got []string
	tr := NewTracker(Config{SYNTimeout: 10 * time.Second, IdleTimeout: time.Minute, CloseGrace: 2 * time.Second},
		func(ev events.Event) { got = append(got, formatEvent(t, ev)) })
	if _, ok := tr.NextDeadline(); ok {
		t.Fatal("empty tracker has a deadline")
	}
	feed(t, tr,
		"egress 10.0.0.1:40000 > 10.0.0.2:80 SYN cookie=1 t=1000",
		"egress 10.0.0.1:40001 > 10.0.0.2:80 SYN cookie=2 t=3000",
		"ingress 10.0.0.2:80 > 10.0.0.1:40001 SYN|ACK cookie=2 t=3001",
		"egress 10.0.0.1:40001 > 10.0.0.2:80 FIN|ACK cookie=2 t=4000",
		"ingress 10.0.0.2:80 > 10.0.0.1:40001 FIN|ACK cookie=2 t=4001",
	)
	// The order of what is due: the close grace of 40001 (4001+2000 ms),
	// the SYN timeout of 40000 (1000+10000 ms), the stale SYN timeout of
	// 40001 (3000+10000 ms), the idle eviction of 40000 (1000+60000 ms),
	// then the stale entry of its failed attempt's memory (11000+130000
	// ms). A Tick at a stale entry only drops it.
	for i, want := range []int64{6001 * ms, 11000 * ms, 13000 * ms, 61000 * ms, 141000 * ms} {
		next, ok := tr.NextDeadline()
		if !ok || next != want {
			t.Fatalf("deadline %d: got %d, %v; want %d", i, next, ok, want)
		}
		tr.Tick(next - 1)
		n := len(got)
		tr.Tick(next)
		if len(got) == n && i < 2 {
			t.Errorf("deadline %d: Tick at %d emitted nothing", i, next)
		}
	}
	if _, ok := tr.NextDeadline(); ok || tr.Len() != 0 {
		t.Fatalf("tracker not empty after the last deadline: %d flows", tr.Len())
	}
	want := []string{
		"begin outgoing 10.0.0.1:40001 -> 10.0.0.2:80 cookie=2 pid=0 handshake=1ms t=3001",
		"end outgoing 10.0.0.1:40001 -> 10.0.0.2:80 cookie=2 pid=0 reason=fin sent=0/0 recv=0/0 duration=3000ms t=6001",
		"failed outgoing 10.0.0.1:40000 -> 10.0.0.2:80 cookie=1 pid=0 reason=timeout t=11000",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestLossCounters: the golden loss cases also count what they did: every
// eviction in a counter (a reused 4-tuple included), unresolved attempts,
// incomplete ends, loss markers; and no failure invented.
func TestLossCounters(t *testing.T) {
	for _, tc := range []struct {
		name string
		want Stats
	}{
		{"loss_syn_ack_lost", Stats{Begun: 3, Ended: 3, LossMarkers: 1, Unresolved: 1, Incomplete: 2}},
		{"loss_attempt_failed", Stats{Failed: 1, LossMarkers: 1, Unresolved: 1}},
		{"loss_reused_tuple", Stats{Begun: 2, Ended: 2, EvictedReused: 1, Incomplete: 1}},
	} {
		_, tr := runGolden(t, filepath.Join("testdata", tc.name, "input.txt"))
		got := tr.Stats()
		got.Flows = 0
		if got != tc.want {
			t.Errorf("%s: stats %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// idCheck holds the flow identity of derived events against its contract:
// every flow event has a flow_id and the community_id of its 5-tuple; a
// begin's flow_id is on no other begin and on exactly the end of the same
// endpoint (direction and 5-tuple); a failed attempt's is on nothing else.
type idCheck struct {
	seen map[string]idUse
}

type idUse struct {
	key        string // direction and 5-tuple
	begin, end bool
	failed     bool
}

func newIDCheck() *idCheck { return &idCheck{seen: map[string]idUse{}} }

func (c *idCheck) check(t *testing.T, ev events.Event) {
	t.Helper()
	f := flowOf(ev.Payload)
	if f == nil {
		return
	}
	if len(f.FlowID) != 16 || strings.Trim(f.FlowID, "0123456789abcdef") != "" {
		t.Fatalf("flow_id %q is not 16 hex digits", f.FlowID)
	}
	if want := (communityid.Hasher{}).TCP(f.Src, f.Dst, f.SrcPort, f.DstPort); f.CommunityID != want {
		t.Fatalf("community_id %q, want %q", f.CommunityID, want)
	}
	key := fmt.Sprintf("%s %s:%d %s:%d", f.Direction, f.SrcField(), f.SrcPort, f.DstField(), f.DstPort)
	u, dup := c.seen[f.FlowID]
	switch ev.Payload.(type) {
	case *events.FlowBegin:
		if dup {
			t.Fatalf("begin %s: flow_id %s already used by %+v", key, f.FlowID, u)
		}
		u = idUse{key: key, begin: true}
	case *events.FlowEnd:
		if !dup || !u.begin || u.end || u.key != key {
			t.Fatalf("end %s: flow_id %s does not name one begin of this endpoint (%+v, seen %v)", key, f.FlowID, u, dup)
		}
		u.end = true
	case *events.FlowFailed:
		if dup {
			t.Fatalf("failed %s: flow_id %s already used by %+v", key, f.FlowID, u)
		}
		u = idUse{key: key, failed: true}
	}
	c.seen[f.FlowID] = u
}

// done checks that every begin had its end, once the tracker was closed.
func (c *idCheck) done(t *testing.T) {
	for id, u := range c.seen {
		if u.begin && !u.end {
			t.Errorf("flow_id %s: begin %s without an end", id, u.key)
		}
	}
}

func TestFlowIDSeed(t *testing.T) {
	a, b, r := newFlowIDs(7), newFlowIDs(7), newFlowIDs(0)
	seen := map[string]bool{}
	for i := 0; i < 10000; i++ {
		x, y := a.id(), b.id()
		if x != y {
			t.Fatalf("one seed, two sequences: %s and %s", x, y)
		}
		if seen[x] {
			t.Fatalf("flow_id %s handed out twice", x)
		}
		seen[x] = true
		if z := r.id(); z == x {
			t.Fatalf("a random key gave the seeded sequence's %s", z)
		}
	}
}

// TestMix64IsABijection checks that mix64 is undone by its inverse on a
// sample, which proves that it never maps two inputs to one output.
func TestMix64IsABijection(t *testing.T) {
	inv := func(x uint64) uint64 {
		x ^= x>>31 ^ x>>62
		x *= 0x319642b2d24d8ec3 // inverse of 0x94d049bb133111eb mod 2^64
		x ^= x>>27 ^ x>>54
		x *= 0x96de1b173f119089 // inverse of 0xbf58476d1ce4e5b9
		x ^= x>>30 ^ x>>60
		return x
	}
	for _, x := range []uint64{0, 1, 2, 1 << 63, ^uint64(0), 0x0123456789abcdef} {
		if got := inv(mix64(x)); got != x {
			t.Fatalf("inverse(mix64(%#x)) = %#x", x, got)
		}
	}
}

// TestTrackerRemovedConnectionNotFoundAgain: the tracker remembers the
// connection of its last lookup, to skip the map for a run of one
// connection's records. Once that connection is finished and removed, a
// later record of its 4-tuple must not find it there: a stray ACK changes
// nothing, and a new SYN on the 4-tuple begins a new connection without
// ending the old one a second time.
func TestTrackerRemovedConnectionNotFoundAgain(t *testing.T) {
	var got []events.ID
	tr := NewTracker(Config{}, func(ev events.Event) { got = append(got, ev.ID) })
	feed(t, tr,
		"egress 127.0.0.1:3 > 127.0.0.1:4 SYN cookie=1",
		"ingress 127.0.0.1:4 > 127.0.0.1:3 SYN|ACK cookie=1",
		"egress 127.0.0.1:3 > 127.0.0.1:4 FIN|ACK cookie=1",
		"ingress 127.0.0.1:4 > 127.0.0.1:3 FIN|ACK cookie=1",
		"close 127.0.0.1:3 ~ 127.0.0.1:4 FIN_WAIT2 cookie=1",
	)
	if tr.Len() != 0 || len(got) != 2 {
		t.Fatalf("after the first connection: %d tracked, events %v", tr.Len(), got)
	}
	feed(t, tr,
		"egress 127.0.0.1:3 > 127.0.0.1:4 ACK cookie=1",
		"egress 127.0.0.1:3 > 127.0.0.1:4 SYN cookie=2",
		"ingress 127.0.0.1:4 > 127.0.0.1:3 SYN|ACK cookie=2",
	)
	if want := []events.ID{events.IDNetFlowTCPBegin, events.IDNetFlowTCPEnd, events.IDNetFlowTCPBegin}; !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
	if s := tr.Stats(); s.EvictedReused != 0 || tr.Len() != 1 {
		t.Errorf("stats %+v, %d tracked: want the new connection alone, nothing evicted", s, tr.Len())
	}
}
