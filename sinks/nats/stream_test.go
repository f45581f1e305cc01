// SPDX-License-Identifier: Apache-2.0

package nats

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowtap/flowtap/plugins/sdk/sdktest"
)

// TestStreamCheck checks, at Configure, that a stream captures the
// subject, with a hint where none does.
func TestStreamCheck(t *testing.T) {
	ts := startServer(t, nil)
	ts.addStream("OTHER", "other.>")
	ts.addStream("ENDS", "flowtap.net_flow_tcp_end")
	for _, tc := range []struct {
		name    string
		subject string
		stream  string
		want    string // "" when Configure succeeds
	}{
		{"named stream missing", "flowtap.{event}", "NOPE",
			`stream: stream "NOPE" does not exist: create it (nats stream add NOPE --subjects 'flowtap.*'), or set create_stream: true`},
		{"named stream captures other subjects", "flowtap.{event}", "OTHER",
			`stream: stream "OTHER" captures other.>, not every subject of flowtap.*: add it to the stream's subjects`},
		{"named stream captures one event only", "flowtap.{event}", "ENDS", `stream: stream "ENDS" captures flowtap.net_flow_tcp_end, not every subject`},
		{"named stream captures the fixed subject", "flowtap.net_flow_tcp_end", "ENDS", ""},
		{"named stream captures every event", "other.{event}.v1", "OTHER", ""},
		{"no stream captures the subject", "nowhere.{event}", "",
			"subject: no JetStream stream captures nowhere.*: create one (nats stream add FLOWTAP --subjects 'nowhere.*'), or name one in stream with create_stream: true, or set jetstream: false"},
		{"some stream captures the subject", "other.{event}", "", ""},
		{"named stream captures every host's events", "other.{host}.{event}", "OTHER", ""},
		{"named stream captures one token only", "flowtap.{host}.{event}", "ENDS", `stream: stream "ENDS" captures flowtap.net_flow_tcp_end, not every subject of flowtap.*.*`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := sdktest.New(t, New())
			cfg := map[string]any{"servers": []string{ts.url()}, "subject": tc.subject}
			if tc.stream != "" {
				cfg["stream"] = tc.stream
			}
			err := h.Configure(cfg)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Configure:\n got %v\nwant %q", err, tc.want)
			}
			_ = h.Close()
		})
	}
}

// TestCreateStream lets the sink create its stream, with the configured
// limits, and checks that an existing stream is left as it is.
func TestCreateStream(t *testing.T) {
	ts := startServer(t, nil)
	cfg := map[string]any{"servers": []string{ts.url()}, "subject": "flowtap.{event}.v1", "stream": "FLOWTAP", "create_stream": true,
		"max_age": "1h", "max_bytes": 1 << 20, "duplicate_window": "30s", "discard": "new", "replicas": 1}
	h := configured(t, cfg)
	if err := h.Write(flowEvents(1, 3)...); err != nil {
		t.Fatal(err)
	}
	str, err := ts.jetStream().Stream(t.Context(), "FLOWTAP")
	if err != nil {
		t.Fatalf("the stream was not created: %v", err)
	}
	c := str.CachedInfo().Config
	if strings.Join(c.Subjects, ",") != "flowtap.*.v1" || c.MaxAge != time.Hour || c.MaxBytes != 1<<20 || c.Duplicates != 30*time.Second ||
		c.Storage != jetstream.FileStorage || c.Discard != jetstream.DiscardNew || c.Replicas != 1 {
		t.Errorf("created stream: %+v", c)
	}
	if n := storedCount(t, str); n != 3 {
		t.Errorf("stream holds %d messages, want 3", n)
	}
	// A second sink with other limits finds the stream and changes nothing.
	cfg["max_age"], cfg["max_bytes"], cfg["discard"] = "2h", 0, "old"
	configured(t, cfg)
	c2 := streamInfo(t, str).Config
	if c2.MaxAge != time.Hour || c2.MaxBytes != 1<<20 {
		t.Errorf("an existing stream was changed: %+v", c2)
	}
}

// TestJetStreamDisabled configures the sink against a server without
// JetStream: Configure fails saying so, and core NATS works.
func TestJetStreamDisabled(t *testing.T) {
	ts := startServer(t, func(o *server.Options) { o.JetStream = false })
	for _, stream := range []string{"", "FLOWTAP"} {
		cfg := map[string]any{"servers": []string{ts.url()}, "subject": "flowtap.{event}", "timeout": "2s"}
		if stream != "" {
			cfg["stream"] = stream
		}
		err := sdktest.New(t, New()).Configure(cfg)
		if err == nil || !strings.Contains(err.Error(), "jetstream: ") || !strings.Contains(err.Error(), "enable JetStream on the server (nats-server -js) and for this account, or set jetstream: false") {
			t.Errorf("Configure(stream %q) without JetStream = %v", stream, err)
		}
	}
	configured(t, map[string]any{"servers": []string{ts.url()}, "subject": "flowtap.{event}", "jetstream": false})
}
