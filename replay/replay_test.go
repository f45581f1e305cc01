// SPDX-License-Identifier: Apache-2.0

package replay

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/flowtap/flowtap/derive"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden/ from the replay's output")

// replayed is what replaying a capture through the real flow tracker gave.
type replayed struct {
	base    []events.Event // the producer's events
	derived []events.Event // the tracker's
	stats   Stats
	err     error
	log     string
}

// replayFile replays data through a Producer and a derive.Tracker driven by
// a Clock, as pipeline.Run does for 'flowtap replay'.
func replayFile(t testing.TB, data []byte, opts Options, cfg derive.Config) replayed {
	t.Helper()
	var out replayed
	var logBuf bytes.Buffer
	opts.Logger = hclog.New(&hclog.LoggerOptions{Output: &logBuf, Level: hclog.Info, DisableTime: true})
	cfg.CloseGrace = CloseGrace
	tr := derive.NewTracker(cfg, func(ev events.Event) { out.derived = append(out.derived, ev) })
	clock := NewClock(tr)
	p := New(bytes.NewReader(data), opts)
	out.err = p.RunBatches(context.Background(), 7, func(evs []events.Event) {
		for _, ev := range evs {
			clock.Advance(ev.Timestamp)
			tr.Handle(ev)
		}
		out.base = append(out.base, evs...) // copies: Recycle clears evs
		p.Recycle(evs)
	})
	end := p.End()
	clock.Advance(end)
	tr.Close(end)
	out.stats = p.Stats()
	out.log = logBuf.String()
	return out
}

// formatEvent renders a derived event, or a DNS base event, for a golden
// file; times in ms since t0.
func formatEvent(ev events.Event) string {
	ms := strconv.FormatFloat(float64(ev.Timestamp-t0)/float64(msec), 'f', -1, 64)
	if line, ok := testutil.FlowLine(ev, ms, false); ok {
		return line
	}
	if p, ok := ev.Payload.(*events.PacketDNSBase); ok {
		return fmt.Sprintf("dns %s %s %s > %s length=%d captured=%d truncated=%v t=%s", p.Direction, p.Proto,
			netip.AddrPortFrom(p.Src, p.SrcPort), netip.AddrPortFrom(p.Dst, p.DstPort), p.Length, len(p.Payload), p.Truncated, ms)
	}
	return fmt.Sprintf("unexpected %T", ev.Payload)
}

// TestGolden replays every fixture through the real flow tracker and
// compares the derived events (and DNS base events, counters and error)
// with testdata/golden/<fixture>.txt.
func TestGolden(t *testing.T) {
	for _, f := range fixtures {
		t.Run(f.name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", f.name))
			if err != nil {
				t.Fatal(err)
			}
			local, err := ParseLocal(f.local)
			if err != nil {
				t.Fatal(err)
			}
			out := replayFile(t, data, Options{Name: f.name, Local: local, DNS: f.dns}, derive.Config{})
			var b strings.Builder
			fmt.Fprintf(&b, "# %s\n# local: %v\n", f.about, f.local)
			for _, ev := range out.base {
				if ev.ID == events.IDNetPacketDNSBase {
					fmt.Fprintln(&b, formatEvent(ev))
				}
			}
			for _, ev := range out.derived {
				fmt.Fprintln(&b, formatEvent(ev))
			}
			fmt.Fprintf(&b, "stats: %+v\n", out.stats)
			if out.err != nil {
				fmt.Fprintf(&b, "error: %v\n", out.err)
			}
			testutil.Golden(t, filepath.Join("testdata", "golden", strings.TrimSuffix(f.name, filepath.Ext(f.name))+".txt"), b.String(), *update)
			checkStatsAddUp(t, out.stats)
		})
	}
}

// checkStatsAddUp checks that every packet read is counted exactly once.
func checkStatsAddUp(t *testing.T, s Stats) {
	t.Helper()
	if sum := s.Used + s.NotIP + s.OtherProtocol + s.Fragments + s.NotLocal + s.Snaplen + s.Malformed + s.UnknownLinkType; sum != s.Packets {
		t.Errorf("stats: %d packets read, %d accounted for: %+v", s.Packets, sum, s)
	}
}
