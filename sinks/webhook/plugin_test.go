// SPDX-License-Identifier: Apache-2.0

package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/testutil"
	"github.com/flowtap/flowtap/plugins/host"
	"github.com/flowtap/flowtap/plugins/supervise"
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

// flakyServer is a real HTTP server (on loopback) that fails about one
// request in twenty: half of those it answers 503 without keeping the
// events, the other half it keeps and then drops the connection without
// an answer, so the sink cannot tell whether they arrived. It counts
// every event line it kept, and each event once.
type flakyServer struct {
	mu     sync.Mutex
	rng    *rand.Rand
	lines  int
	unique map[int64]bool
	failed int
}

func (f *flakyServer) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	var evs []struct {
		Timestamp int64 `json:"timestamp"`
	}
	if err := json.Unmarshal(body, &evs); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	roll := f.rng.IntN(40)
	if roll == 0 {
		f.failed++
		f.mu.Unlock()
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
		return
	}
	f.lines += len(evs)
	for _, ev := range evs {
		f.unique[ev.Timestamp] = true
	}
	if roll == 1 {
		f.failed++
	}
	f.mu.Unlock()
	if roll == 1 {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	w.WriteHeader(http.StatusOK)
}

// TestDuplicatesCountedAgainstFlakyServer runs 20,000 events through the
// real webhook plugin under the supervisor against a server that fails
// 5 % of requests, and checks the counters' truth: every event arrives,
// and the lines the server received beyond one per event are at most
// what duplicates_resent says. Once with the sink's default retries (it
// retries requests itself, some after a failure of unknown outcome) and
// once with a single attempt per request (a failure fails the batch,
// whose earlier requests had arrived, and the supervisor resends it).
func TestDuplicatesCountedAgainstFlakyServer(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "flowtap-sink-webhook")
	testutil.BuildBinary(t, "github.com/flowtap/flowtap/cmd/flowtap-sink-webhook", bin)
	cat, err := events.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	for _, attempts := range []int{0, 1} {
		t.Run(fmt.Sprintf("max_attempts=%d", attempts), func(t *testing.T) {
			fs := &flakyServer{rng: rand.New(rand.NewPCG(13, uint64(attempts))), unique: map[int64]bool{}}
			srv := httptest.NewServer(fs)
			defer srv.Close()
			retry := map[string]any{"initial_backoff": "1ms", "max_backoff": "5ms"}
			if attempts > 0 {
				retry["max_attempts"] = attempts
			}
			d, err := supervise.Start(t.Context(), supervise.Config{
				Name:           "webhook",
				Host:           host.Config{Plugin: bin, Logger: hclog.NewNullLogger(), Names: cat.Name},
				SinkConfig:     map[string]any{"url": srv.URL, "batch_size": 100, "timeout": "5s", "retry": retry},
				MaxAttempts:    100,
				InitialBackoff: time.Millisecond,
				MaxBackoff:     10 * time.Millisecond,
				Logger:         hclog.NewNullLogger(),
			})
			if err != nil {
				t.Fatal(err)
			}
			batch := make([]events.Event, 0, 500)
			for i := range n {
				batch = append(batch, events.Event{ID: events.IDNetFlowTCPBegin, Timestamp: int64(i + 1), Payload: &events.FlowBegin{Flow: events.Flow{
					Direction: events.Outgoing, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("192.0.2.7"), SrcPort: uint16(i), DstPort: 443,
				}}})
				if len(batch) == cap(batch) {
					d.EnqueueBatch(batch)
					batch = batch[:0]
				}
			}
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
			defer cancel()
			if err := d.Close(ctx); err != nil {
				t.Fatal(err)
			}
			c := d.Counters()
			fs.mu.Lock()
			defer fs.mu.Unlock()
			extra := fs.lines - len(fs.unique)
			t.Logf("failed requests %d, lines %d, unique %d, extra %d; counters %+v", fs.failed, fs.lines, len(fs.unique), extra, c)
			if len(fs.unique) != n || c.Acked != n {
				t.Fatalf("%d unique events arrived, %d acknowledged, want %d", len(fs.unique), c.Acked, n)
			}
			if fs.failed == 0 || extra == 0 {
				t.Fatalf("the server failed %d requests and %d lines arrived twice: the test proves nothing", fs.failed, extra)
			}
			if uint64(extra) > c.DuplicatesResent {
				t.Errorf("the server holds %d lines beyond one per event, but duplicates_resent is %d", extra, c.DuplicatesResent)
			}
		})
	}
}

// TestInsecureSkipVerifyWarns: tls.insecure_skip_verify is accepted, and
// the plugin says so at a WARN in flowtap's log at every start; a config
// whose retries could outlast flowtap's acknowledgement timeout is refused
// with the keys to change; the URL's password appears in no log line.
func TestInsecureSkipVerifyWarns(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "flowtap-sink-webhook")
	testutil.BuildBinary(t, "github.com/flowtap/flowtap/cmd/flowtap-sink-webhook", bin)
	for range 2 { // every start
		var log testutil.SyncBuffer
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		s, err := host.Start(ctx, host.Config{Name: "webhook", Plugin: bin,
			Logger: hclog.New(&hclog.LoggerOptions{Output: &log, Level: hclog.Info})})
		if err != nil {
			t.Fatal(err)
		}
		err = s.Configure(ctx, map[string]any{"url": "https://user:hunter2@127.0.0.1:1/x", "tls": map[string]any{"insecure_skip_verify": true}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		out := log.String()
		if !strings.Contains(out, "[WARN]") || !strings.Contains(out, "tls.insecure_skip_verify is set") {
			t.Errorf("no WARN about insecure_skip_verify in the log:\n%s", out)
		}
		if strings.Contains(out, "hunter2") {
			t.Errorf("the log shows the URL's password:\n%s", out)
		}
	}
	err := CheckConfig([]byte(`{"url": "http://127.0.0.1/", "timeout": "10s"}`))
	if err == nil || !strings.Contains(err.Error(), "not below flowtap's acknowledgement timeout of 30s") {
		t.Errorf("10 s × 3 attempts accepted: %v", err)
	}
	if err := CheckConfig([]byte(`{"url": "http://127.0.0.1/"}`)); err != nil {
		t.Errorf("the defaults do not fit the acknowledgement timeout: %v", err)
	}
}
