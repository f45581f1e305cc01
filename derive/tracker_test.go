package derive

import (
	"bufio"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/flowtap/flowtap/events"
)

var update = flag.Bool("update", false, "rewrite the expected.txt of every golden case from the tracker's output")

// parsePacket reads one line of a golden input:
//
//	egress 127.0.0.1:40000 > 127.0.0.1:8080 SYN|ACK cookie=7
func parsePacket(line string, ts int64) (events.Event, error) {
	f := strings.Fields(line)
	if len(f) != 6 || f[2] != ">" || !strings.HasPrefix(f[5], "cookie=") {
		return events.Event{}, fmt.Errorf("want 'DIR SRC > DST FLAGS cookie=N', got %q", line)
	}
	var p events.PacketFlowBase
	switch f[0] {
	case "egress":
		p.Direction = events.Egress
	case "ingress":
		p.Direction = events.Ingress
	default:
		return events.Event{}, fmt.Errorf("direction %q", f[0])
	}
	src, err := netip.ParseAddrPort(f[1])
	if err != nil {
		return events.Event{}, err
	}
	dst, err := netip.ParseAddrPort(f[3])
	if err != nil {
		return events.Event{}, err
	}
	p.Src, p.SrcPort, p.Dst, p.DstPort = src.Addr(), src.Port(), dst.Addr(), dst.Port()
	for _, name := range strings.Split(f[4], "|") {
		bit, ok := map[string]events.TCPFlags{"SYN": events.FlagSYN, "ACK": events.FlagACK, "FIN": events.FlagFIN, "RST": events.FlagRST, "PSH": events.FlagPSH}[name]
		if !ok {
			return events.Event{}, fmt.Errorf("flag %q", name)
		}
		p.Flags |= bit
	}
	cookie, err := strconv.ParseUint(strings.TrimPrefix(f[5], "cookie="), 10, 64)
	if err != nil {
		return events.Event{}, err
	}
	return events.Event{ID: events.IDNetPacketFlowBase, Timestamp: ts, Context: events.Context{SocketCookie: cookie}, Payload: &p}, nil
}

// formatFlow renders a derived event the way expected.txt spells it.
func formatFlow(t *testing.T, ev events.Event) string {
	var f *events.Flow
	name := ""
	switch p := ev.Payload.(type) {
	case *events.FlowBegin:
		f, name = &p.Flow, events.NameNetFlowTCPBegin
	case *events.FlowEnd:
		f, name = &p.Flow, events.NameNetFlowTCPEnd
	default:
		t.Fatalf("unexpected payload %T", ev.Payload)
	}
	if ev.ID != ev.Payload.EventID() {
		t.Fatalf("event id %d does not match payload %T", ev.ID, ev.Payload)
	}
	src := netip.AddrPortFrom(f.Src, f.SrcPort)
	dst := netip.AddrPortFrom(f.Dst, f.DstPort)
	return fmt.Sprintf("%s %s %s -> %s cookie=%d", name, f.Direction, src, dst, ev.Context.SocketCookie)
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
			var got []string
			tr := NewTracker(func(ev events.Event) { got = append(got, formatFlow(t, ev)) })
			file, err := os.Open(input)
			if err != nil {
				t.Fatal(err)
			}
			defer file.Close()
			sc := bufio.NewScanner(file)
			for n := 1; sc.Scan(); n++ {
				line := strings.TrimSpace(sc.Text())
				switch {
				case line == "" || strings.HasPrefix(line, "#"):
				case line == "shutdown":
					tr.Close(int64(n))
				default:
					ev, err := parsePacket(line, int64(n))
					if err != nil {
						t.Fatalf("%s:%d: %v", input, n, err)
					}
					tr.Handle(ev)
				}
			}
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
			wantLines := nonEmptyLines(string(raw))
			if strings.Join(got, "\n") != strings.Join(wantLines, "\n") {
				t.Fatalf("derived events differ\n got:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(wantLines, "\n  "))
			}
		})
	}
}

func nonEmptyLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func TestTrackerForgetsFinishedConnections(t *testing.T) {
	tr := NewTracker(func(events.Event) {})
	for i, line := range []string{
		"egress 127.0.0.1:1 > 127.0.0.1:2 SYN cookie=1",
		"ingress 127.0.0.1:2 > 127.0.0.1:1 RST|ACK cookie=1",
		"egress 127.0.0.1:3 > 127.0.0.1:4 SYN cookie=1",
		"ingress 127.0.0.1:4 > 127.0.0.1:3 SYN|ACK cookie=1",
		"egress 127.0.0.1:3 > 127.0.0.1:4 FIN|ACK cookie=1",
		"ingress 127.0.0.1:4 > 127.0.0.1:3 FIN|ACK cookie=1",
	} {
		ev, err := parsePacket(line, int64(i))
		if err != nil {
			t.Fatal(err)
		}
		tr.Handle(ev)
	}
	if tr.Len() != 0 {
		t.Fatalf("tracker still holds %d connections", tr.Len())
	}
}

func TestTrackerIgnoresOtherEvents(t *testing.T) {
	n := 0
	tr := NewTracker(func(events.Event) { n++ })
	tr.Handle(events.Event{ID: events.IDNetFlowTCPBegin, Payload: &events.FlowBegin{}})
	tr.Handle(events.Event{})
	if n != 0 || tr.Len() != 0 {
		t.Fatalf("non-base events changed the tracker: %d emitted, %d tracked", n, tr.Len())
	}
}

// BenchmarkTrackerLoopback feeds whole loopback connections (8 base events
// each) through the tracker and reports base events per second.
func BenchmarkTrackerLoopback(b *testing.B) {
	const perConn = 8
	tmpl := []string{
		"egress  127.0.0.1:%d > 127.0.0.1:8080 SYN     cookie=1",
		"ingress 127.0.0.1:%d > 127.0.0.1:8080 SYN     cookie=7",
		"egress  127.0.0.1:8080 > 127.0.0.1:%d SYN|ACK cookie=7",
		"ingress 127.0.0.1:8080 > 127.0.0.1:%d SYN|ACK cookie=1",
		"egress  127.0.0.1:%d > 127.0.0.1:8080 FIN|ACK cookie=1",
		"ingress 127.0.0.1:%d > 127.0.0.1:8080 FIN|ACK cookie=9",
		"egress  127.0.0.1:8080 > 127.0.0.1:%d FIN|ACK cookie=9",
		"ingress 127.0.0.1:8080 > 127.0.0.1:%d FIN|ACK cookie=1",
	}
	const conns = 1024
	evs := make([]events.Event, 0, conns*perConn)
	for c := 0; c < conns; c++ {
		for _, l := range tmpl {
			ev, err := parsePacket(fmt.Sprintf(l, 20000+c), 1)
			if err != nil {
				b.Fatal(err)
			}
			evs = append(evs, ev)
		}
	}
	emitted := 0
	tr := NewTracker(func(events.Event) { emitted++ })
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tr.Handle(evs[i%len(evs)])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
