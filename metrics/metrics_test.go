// SPDX-License-Identifier: Apache-2.0

package metrics

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	dto "github.com/prometheus/client_model/go"

	"github.com/flowtap/flowtap/configs"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/buildinfo"
	"github.com/flowtap/flowtap/internal/testutil"
	"github.com/flowtap/flowtap/pipeline"
)

// These tests serve the endpoints of a real pipeline.Run: a capture file
// replayed through a pipe the test holds open (so the run keeps running;
// no privilege needed) into real sink plugin processes.

var (
	pluginsOnce sync.Once
	pluginsDir  string
)

// sinkPlugin builds the built-in sink's plugin once per test binary.
func sinkPlugin(t *testing.T, name string) string {
	t.Helper()
	pluginsOnce.Do(func() {
		var err error
		if pluginsDir, err = os.MkdirTemp("", "flowtap-metrics-test-"); err != nil {
			t.Fatal(err)
		}
	})
	bin := filepath.Join(pluginsDir, "flowtap-sink-"+name)
	if _, err := os.Stat(bin); err != nil {
		testutil.BuildBinary(t, "github.com/flowtap/flowtap/cmd/flowtap-sink-"+name, bin)
	}
	return bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pluginsDir != "" {
		os.RemoveAll(pluginsDir)
	}
	os.Exit(code)
}

// served is a running replay with its endpoints.
type served struct {
	url   string
	mon   *pipeline.Monitor
	input *io.PipeWriter
	done  chan error
}

// serve starts Run on cfg, replaying the capture file pcap, repeated
// copies times, through a pipe that stays open until the test ends, and
// serves the endpoints on 127.0.0.1.
func serve(t *testing.T, cfg *configs.Config, pcap string, copies int) *served {
	t.Helper()
	cat, err := events.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Check(cat); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(pcap)
	if err != nil {
		t.Fatal(err)
	}
	data = repeated(t, data, copies)
	s := &served{mon: pipeline.NewMonitor(), done: make(chan error, 1)}
	h, err := Handler(s.mon, buildinfo.Info{Version: "v9.9.9", Commit: "abc", GoVersion: "go1.26"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Listen("127.0.0.1:0", h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(context.Background()) })
	s.url = "http://" + srv.Addr().String()

	r, w := io.Pipe()
	s.input = w
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		w.Close()
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			t.Error("Run did not return")
		}
	})
	logs := &testutil.SyncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("flowtap's log:\n%s", logs.String())
		}
	})
	go func() {
		_, err := pipeline.Run(ctx, pipeline.Options{Config: cfg, Catalogue: cat, Stdout: io.Discard, Stderr: io.Discard,
			Logger:  hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug}),
			Monitor: s.mon, Replay: &pipeline.Replay{Name: filepath.Base(pcap), Input: r}})
		s.done <- err
	}()
	go w.Write(data) // blocks until the replay has read it all; the pipe stays open
	return s
}

// repeated returns the classic pcap capture (little-endian, microsecond
// timestamps) with its packets repeated n times, each repetition a
// minute after the one before: n connections in turn. The replay hands
// its events over in batches of 256, so a pipe held open after a single
// short capture would keep them.
func repeated(t *testing.T, capture []byte, n int) []byte {
	t.Helper()
	le := binary.LittleEndian
	if len(capture) < 24 || le.Uint32(capture) != 0xa1b2c3d4 {
		t.Fatal("not a little-endian classic pcap")
	}
	out := append([]byte(nil), capture[:24]...)
	for i := range n {
		for rec := capture[24:]; len(rec) >= 16; {
			size := 16 + int(le.Uint32(rec[8:]))
			r := append([]byte(nil), rec[:size]...)
			le.PutUint32(r, le.Uint32(r)+uint32(60*i))
			out = append(out, r...)
			rec = rec[size:]
		}
	}
	return out
}

// fetch returns the status and body of GET url.
func fetch(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// metricsOf scrapes url's /metrics.
func metricsOf(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := scrape(t.Context(), http.DefaultClient, url+PathMetrics)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// eventually polls cond for up to 20 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func stdoutConfig(t *testing.T) *configs.Config {
	return &configs.Config{Source: "test", Pipelines: []configs.Pipeline{{Name: "default", Events: []string{"flows"},
		Sinks: []configs.SinkConfig{{Plugin: sinkPlugin(t, "stdout"), Config: map[string]any{"format": "json"}}}}}}
}

// TestEndpoints: /healthz, /readyz and /metrics of a running replay. The
// flow events counted are the file's (two begins: a loopback connection
// seen from both ends); the sink's counters, the flow table, the DNS cache
// and the build information are there, and the Go and process collectors.
func TestEndpoints(t *testing.T) {
	// 40 connections of 8 base events each: the first 256 (32
	// connections, 64 begins) come in one batch, the rest waits in the
	// replay's next one while the pipe stays open.
	s := serve(t, stdoutConfig(t), "../replay/testdata/loopback_ipv4.pcap", 40)
	eventually(t, "64 begins", func() bool {
		return value(metricsOf(t, s.url), "flowtap_events_total", map[string]string{"event": "net_flow_tcp_begin"}) == 64
	})
	if code, body := fetch(t, s.url+PathHealth); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	code, body := fetch(t, s.url+PathReady)
	var r Readiness
	if err := json.Unmarshal([]byte(body), &r); err != nil || code != http.StatusOK || r.Status != "ready" || r.Phase != "running" {
		t.Errorf("/readyz: %d %s (%v)", code, body, err)
	}
	fams := metricsOf(t, s.url)
	for name, want := range map[string]float64{
		"flowtap_events_total{event=net_packet_flow_base}":               256,
		"flowtap_sink_up{pipeline=default,sink=stdout}":                  1,
		"flowtap_sink_queue_capacity{pipeline=default,sink=stdout}":      8192,
		"flowtap_flow_table_capacity":                                    65536,
		"flowtap_ready":                                                  1,
		"flowtap_build_info{version=v9.9.9,commit=abc,goversion=go1.26}": 1,
		"flowtap_config_reloads_total{result=ok}":                        0,
	} {
		metric, labels := parseName(name)
		if got := value(fams, metric, labels); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	for _, name := range []string{"flowtap_sink_events_total", "flowtap_cache_hits_total", "flowtap_flow_table_evictions_total",
		"go_goroutines", "process_start_time_seconds"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("no %s", name)
		}
	}
	// A replay has no kernel capture: none of its metrics.
	if _, ok := fams["flowtap_capture_attached"]; ok {
		t.Error("flowtap_capture_attached in a replay")
	}
	st, err := Query(t.Context(), http.DefaultClient, strings.TrimPrefix(s.url, "http://"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != "v9.9.9" || st.Readiness.Status != "ready" || len(st.Sinks) != 1 || st.Sinks[0].State != "up" || st.Sinks[0].QueueCapacity != 8192 {
		t.Errorf("Query: %+v", st)
	}
}

// parseName splits "name{k=v,...}" into the name and its labels.
func parseName(s string) (string, map[string]string) {
	name, rest, ok := strings.Cut(s, "{")
	if !ok {
		return s, nil
	}
	labels := map[string]string{}
	for _, kv := range strings.Split(strings.TrimSuffix(rest, "}"), ",") {
		k, v, _ := strings.Cut(kv, "=")
		labels[k] = v
	}
	return name, labels
}

// TestReadyzFollowsSink: a webhook sink whose endpoint answers 503 makes
// /readyz answer 503, naming the sink and its state (retrying); once the
// endpoint answers 200 the batch is delivered and /readyz is 200 again.
func TestReadyzFollowsSink(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	var posts atomic.Int64
	endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		posts.Add(1)
		if failing.Load() {
			http.Error(w, "down for the test", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(endpoint.Close) // after the run's cleanup: its sink drains there
	cfg := &configs.Config{Source: "test", Pipelines: []configs.Pipeline{{Name: "alerts", Events: []string{"flows"},
		Sinks: []configs.SinkConfig{{
			Plugin: sinkPlugin(t, "webhook"),
			Config: map[string]any{"url": endpoint.URL, "timeout": "2s", "retry": map[string]any{"max_attempts": 1}},
			// Retry for as long as the test needs, quickly.
			Restart: configs.Restart{MaxAttempts: 1000, InitialBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond},
		}}}}}
	s := serve(t, cfg, "../replay/testdata/loopback_ipv4.pcap", 40)
	var r Readiness
	eventually(t, "/readyz to answer 503 for the sink", func() bool {
		code, body := fetch(t, s.url+PathReady)
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatal(err)
		}
		return code == http.StatusServiceUnavailable && r.Phase == "running"
	})
	if r.Status != "not ready" || len(r.NotReady) != 1 || r.NotReady[0].Component != "sink" || r.NotReady[0].Pipeline != "alerts" ||
		r.NotReady[0].Sink != "webhook" || r.NotReady[0].State != "retrying" {
		t.Errorf("/readyz while the endpoint fails: %+v", r)
	}
	if up := value(metricsOf(t, s.url), "flowtap_sink_up", nil); up != 0 {
		t.Errorf("flowtap_sink_up = %v while retrying", up)
	}
	failing.Store(false)
	eventually(t, "/readyz to answer 200 again", func() bool {
		code, _ := fetch(t, s.url+PathReady)
		return code == http.StatusOK
	})
	fams := metricsOf(t, s.url)
	id := map[string]string{"pipeline": "alerts", "sink": "webhook"}
	if up, acked, resent := value(fams, "flowtap_sink_up", id), value(fams, "flowtap_sink_events_total", with(id, "state", "acked")),
		value(fams, "flowtap_sink_events_total", with(id, "state", "resent")); up != 1 || acked == 0 || resent == 0 {
		t.Errorf("after recovery: up %v, acked %v, resent %v; want up, some acked after resends", up, acked, resent)
	}
	t.Logf("%d POSTs", posts.Load())
}
