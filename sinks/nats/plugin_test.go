// SPDX-License-Identifier: Apache-2.0

package nats

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/testutil"
	"github.com/flowtap/flowtap/plugins/host"
	"github.com/flowtap/flowtap/plugins/supervise"
)

// TestNATSPlugin runs the real plugin binary (cmd/flowtap-sink-nats)
// under flowtap's supervisor and host, into an embedded server: every
// event is acknowledged and stored once, also when the plugin is killed
// in the middle and its unacknowledged batches are sent again; one event
// a message, and packed (the supervisor resends a batch as it was, so it
// packs into the same messages, which the stream drops).
func TestNATSPlugin(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "flowtap-sink-nats")
	testutil.BuildBinary(t, "github.com/flowtap/flowtap/cmd/flowtap-sink-nats", bin)
	for _, per := range []int{1, 64} {
		t.Run(fmt.Sprintf("events_per_message=%d", per), func(t *testing.T) { testNATSPlugin(t, bin, per) })
	}
}

// testNATSPlugin is TestNATSPlugin with per events a message.
func testNATSPlugin(t *testing.T, bin string, per int) {
	ts := startServer(t, nil)
	str := ts.addStream("FLOWTAP", "flowtap.>")
	cat, err := events.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := supervise.Start(ctx, supervise.Config{
		Name:           "nats",
		Host:           host.Config{Plugin: bin, Logger: hclog.NewNullLogger(), Names: cat.Name},
		SinkConfig:     map[string]any{"servers": []string{ts.url()}, "subject": "flowtap.{event}", "stream": "FLOWTAP", "events_per_message": per},
		BatchSize:      500,
		InitialBackoff: 20 * time.Millisecond,
		Logger:         hclog.NewNullLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = s.Close(context.Background())
		}
	}()

	const offered = 20_000
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for i := 1; i <= offered; i++ {
			s.EnqueueBatch([]events.Event{flowBegin(i)})
		}
	}()
	// Kill the plugin once a third of the events are acknowledged.
	deadline := time.Now().Add(60 * time.Second)
	for s.Counters().Acked < offered/3 || s.PID() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("stuck at %+v", s.Counters())
		}
		time.Sleep(time.Millisecond)
	}
	pid := s.PID()
	if testutil.ParentPID(pid) != os.Getpid() {
		t.Fatalf("pid %d is not a plugin this test started", pid)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-produced
	cctx, ccancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer ccancel()
	closed = true
	if err := s.Close(cctx); err != nil {
		t.Fatal(err)
	}
	c := s.Counters()
	t.Logf("counters: %+v", c)
	if c.Acked != offered || c.Dropped != 0 || c.Restarts < 1 {
		t.Errorf("counters %+v: want all %d acknowledged, none dropped, a restart", c, offered)
	}
	if per == 1 {
		if n := storedCount(t, str); n != offered {
			t.Errorf("stream holds %d messages, want %d (each event once; %d were resent)", n, offered, c.Retried)
		}
	} else {
		seen := streamEventCounts(t, str)
		missing, doubled := 0, 0
		for i := 1; i <= offered; i++ {
			switch seen[int64(i)] {
			case 0:
				missing++
			case 1:
			default:
				doubled++
			}
		}
		if missing > 0 || doubled > 0 || len(seen) != offered {
			t.Errorf("of %d events, %d missing, %d stored more than once, %d in all (%d were resent)", offered, missing, doubled, len(seen), c.Retried)
		}
		t.Logf("%d events in %d messages", offered, storedCount(t, str))
	}
	last, err := str.GetLastMsgForSubject(t.Context(), "flowtap.net_flow_tcp_begin")
	if err != nil {
		t.Fatal(err)
	}
	if last.Subject != "flowtap.net_flow_tcp_begin" || !strings.Contains(string(last.Data), `"event":"net_flow_tcp_begin"`) ||
		(per > 1) != (last.Header.Get(EventsHeader) != "") {
		t.Errorf("last message: %s %s", last.Subject, last.Data)
	}
}

// flowBegin is a flow begin event whose timestamp is i.
func flowBegin(i int) events.Event {
	return events.Event{ID: events.IDNetFlowTCPBegin, Timestamp: int64(i), Context: events.Context{PID: 4242, Comm: "curl"},
		Payload: &events.FlowBegin{Flow: events.Flow{
			Direction: events.Outgoing, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("192.0.2.7"),
			SrcPort: uint16(i), DstPort: 443,
		}}}
}
