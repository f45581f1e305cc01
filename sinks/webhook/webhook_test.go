// SPDX-License-Identifier: Apache-2.0

package webhook

import (
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/flowtap/flowtap/plugins/sdk"
	"github.com/flowtap/flowtap/plugins/sdk/sdktest"
)

// recorder is an HTTP handler that records requests and answers with the
// next status of its script (200 once the script is used up).
type recorder struct {
	mu      sync.Mutex
	script  []int
	bodies  [][]map[string]any
	headers []http.Header
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	var evs []map[string]any
	if err := json.Unmarshal(body, &evs); err != nil {
		http.Error(w, "bad json: "+err.Error(), http.StatusTeapot)
		return
	}
	r.bodies = append(r.bodies, evs)
	r.headers = append(r.headers, req.Header.Clone())
	status := http.StatusOK
	if len(r.script) > 0 {
		status, r.script = r.script[0], r.script[1:]
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, "answer body")
}

func (r *recorder) requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.bodies)
}

func sdkEvents(n int) []sdk.Event {
	out := make([]sdk.Event, n)
	for i := range out {
		out[i] = sdktest.Event("net_flow_tcp_begin", sdktest.F("dst", "192.0.2.1"), sdktest.F("dst_port", uint(i)))
		out[i].Timestamp = int64(i + 1)
	}
	return out
}

func TestWebhookPostsBatches(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	h := sdktest.New(t, New())
	if err := h.Configure(map[string]any{"url": srv.URL + "/hook", "batch_size": 2,
		"headers": map[string]string{"Authorization": "Bearer s3cret", "X-Env": "test"}}); err != nil {
		t.Fatal(err)
	}
	if err := h.Write(sdkEvents(5)...); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if len(rec.bodies) != 3 {
		t.Fatalf("%d POSTs, want 3 (5 events in batches of 2)", len(rec.bodies))
	}
	var ts []float64
	for i, body := range rec.bodies {
		for _, ev := range body {
			ts = append(ts, ev["timestamp"].(float64))
			if ev["event"] != "net_flow_tcp_begin" || ev["fields"].(map[string]any)["dst"] != "192.0.2.1" {
				t.Errorf("POST %d: event %v", i, ev)
			}
		}
		hd := rec.headers[i]
		if hd.Get("Authorization") != "Bearer s3cret" || hd.Get("X-Env") != "test" || hd.Get("Content-Type") != "application/json" {
			t.Errorf("POST %d headers: %v", i, hd)
		}
	}
	if len(ts) != 5 || ts[0] != 1 || ts[4] != 5 {
		t.Errorf("timestamps posted: %v", ts)
	}
}

func TestWebhookRetries(t *testing.T) {
	rec := &recorder{script: []int{503, 429}}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	h := sdktest.New(t, New())
	if err := h.Configure(map[string]any{"url": srv.URL, "retry": map[string]any{"max_attempts": 3, "initial_backoff": "1ms"}}); err != nil {
		t.Fatal(err)
	}
	if err := h.Write(sdkEvents(3)...); err != nil {
		t.Fatalf("Write after 503, 429, 200: %v", err)
	}
	if rec.requests() != 3 {
		t.Errorf("%d requests, want 3", rec.requests())
	}
}

func TestWebhookGivesUp(t *testing.T) {
	for _, tc := range []struct {
		name     string
		script   []int
		requests int
		want     string
	}{
		{"5xx until attempts run out", []int{500, 502, 503, 504}, 3, "503 Service Unavailable"},
		{"4xx not retried", []int{400}, 1, "status 400 is not retried"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{script: tc.script}
			srv := httptest.NewServer(rec)
			defer srv.Close()
			h := sdktest.New(t, New())
			if err := h.Configure(map[string]any{"url": srv.URL, "retry": map[string]any{"initial_backoff": "1ms"}}); err != nil {
				t.Fatal(err)
			}
			err := h.Write(sdkEvents(1)...)
			if !errors.Is(err, sdktest.ErrRejected) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "answer body") {
				t.Errorf("Write = %v, want a rejection saying %q", err, tc.want)
			}
			if rec.requests() != tc.requests {
				t.Errorf("%d requests, want %d", rec.requests(), tc.requests)
			}
		})
	}
}

func TestWebhookTLS(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewTLSServer(rec)
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		tls  map[string]any
		ok   bool
	}{
		{"system CAs do not know the test CA", nil, false},
		{"ca_file", map[string]any{"ca_file": ca}, true},
		{"server_name must match", map[string]any{"ca_file": ca, "server_name": "other.test"}, false},
		{"server_name example.com is in the test cert", map[string]any{"ca_file": ca, "server_name": "example.com"}, true},
		{"insecure_skip_verify", map[string]any{"insecure_skip_verify": true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := sdktest.New(t, New())
			cfg := map[string]any{"url": srv.URL, "retry": map[string]any{"max_attempts": 1}}
			if tc.tls != nil {
				cfg["tls"] = tc.tls
			}
			if err := h.Configure(cfg); err != nil {
				t.Fatal(err)
			}
			err := h.Write(sdkEvents(1)...)
			if (err == nil) != tc.ok {
				t.Errorf("Write = %v, want success %v", err, tc.ok)
			}
		})
	}
}

func TestWebhookConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		config string
		want   string
	}{
		{`{}`, "url: missing"},
		{`{"url": "ftp://x"}`, `url: "ftp://x" is not an http or https URL`},
		{`{"url": "http://127.0.0.1:1", "timeout": "soon", "batch_size": -1}`, `batch_size: must be 1 or more, not -1; timeout: must be a positive duration such as "5s", not "soon"`},
		{`{"url": "http://127.0.0.1:1", "retry": {"max_backoff": "x"}}`, `retry.max_backoff: must be a positive duration`},
		{`{"url": "http://127.0.0.1:1", "tls": {"cert_file": "/c"}}`, "tls.cert_file: set both tls.cert_file and tls.key_file, or neither"},
		{`{"url": "http://127.0.0.1:1", "tls": {"ca_file": "/nonexistent"}}`, "tls.ca_file: open /nonexistent"},
		{`{"url": "http://127.0.0.1:1", "color": "red"}`, `unknown field "color"`},
	} {
		err := New().Configure(t.Context(), []byte(tc.config))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Configure(%s) = %v, want %q", tc.config, err, tc.want)
		}
	}
}
