package webhook

import (
	"context"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/testutil"
	"github.com/flowtap/flowtap/plugins/host"
)

// TestWebhookPlugin runs the real plugin binary (cmd/flowtap-sink-webhook)
// through the flowtap host, against a loopback HTTP server.
func TestWebhookPlugin(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "flowtap-sink-webhook")
	testutil.BuildBinary(t, "github.com/flowtap/flowtap/cmd/flowtap-sink-webhook", bin)
	rec := &recorder{script: []int{503}}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cat, err := events.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	s, err := host.Start(ctx, host.Config{Name: "webhook", Plugin: bin, Logger: hclog.NewNullLogger(), Names: cat.Name})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if err := s.Configure(ctx, map[string]any{"url": srv.URL, "batch_size": 3, "retry": map[string]any{"initial_backoff": "1ms"}}); err != nil {
		t.Fatal(err)
	}
	batch := make([]events.Event, 7)
	for i := range batch {
		batch[i] = events.Event{ID: events.IDNetFlowTCPBegin, Timestamp: int64(i + 1), Payload: &events.FlowBegin{Flow: events.Flow{
			Direction: events.Outgoing, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("192.0.2.7"), SrcPort: uint16(40000 + i), DstPort: 443,
		}}}
	}
	if err := s.Write(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// 7 events in POSTs of 3: 3 + 3 + 1, the first retried after a 503.
	if len(rec.bodies) != 4 {
		t.Fatalf("%d POSTs, want 4", len(rec.bodies))
	}
	var n int
	for _, body := range rec.bodies[1:] {
		for _, ev := range body {
			n++
			f := ev["fields"].(map[string]any)
			if ev["event"] != "net_flow_tcp_begin" || f["dst"] != "192.0.2.7" || f["dst_port"] != float64(443) {
				t.Errorf("posted %v", ev)
			}
		}
	}
	if n != 7 {
		t.Errorf("%d events posted after the retry, want 7", n)
	}
}
