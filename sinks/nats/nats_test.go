// SPDX-License-Identifier: Apache-2.0

package nats

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowtap/flowtap/plugins/sdk/sdktest"
	"github.com/flowtap/flowtap/sinks/internal/jsonl"
)

func TestPublishesEventsOnTheirSubjects(t *testing.T) {
	ts := startServer(t, nil)
	str := ts.addStream("FLOWTAP", "flowtap.>")
	h := configured(t, map[string]any{"servers": []string{ts.url()}, "subject": "flowtap.{event}", "stream": "FLOWTAP",
		"headers": map[string]string{"X-Env": "test"}})
	evs := flowEvents(1, 5)
	if err := h.Write(evs...); err != nil {
		t.Fatal(err)
	}
	msgs := streamMsgs(t, str)
	if len(msgs) != len(evs) {
		t.Fatalf("stream holds %d messages, want %d", len(msgs), len(evs))
	}
	for i, m := range msgs {
		ev := &evs[i]
		if want := "flowtap." + ev.Name; m.Subject != want {
			t.Errorf("message %d on %q, want %q", i, m.Subject, want)
		}
		// The body is the stdout sink's JSON object, without its newline.
		line := jsonl.Append(nil, ev)
		if want := string(line[:len(line)-1]); string(m.Data) != want {
			t.Errorf("message %d:\n got %s\nwant %s", i, m.Data, want)
		}
		var obj struct {
			Timestamp int64          `json:"timestamp"`
			Event     string         `json:"event"`
			Fields    map[string]any `json:"fields"`
		}
		if err := json.Unmarshal(m.Data, &obj); err != nil || obj.Timestamp != ev.Timestamp || obj.Event != ev.Name || obj.Fields["dst_port"] != 443.0 {
			t.Errorf("message %d: %+v, %v", i, obj, err)
		}
		if got := m.Header.Get(jetstream.MsgIDHeader); got != MsgID(m.Data) || len(got) != 22 {
			t.Errorf("message %d: %s %q, want %q", i, jetstream.MsgIDHeader, got, MsgID(m.Data))
		}
		if m.Header.Get("X-Env") != "test" {
			t.Errorf("message %d headers: %v", i, m.Header)
		}
	}
}

// TestHostSubject puts each event on flowtap.<host>.<event>, its host
// name made a token.
func TestHostSubject(t *testing.T) {
	ts := startServer(t, nil)
	str := ts.addStream("FLOWTAP", "flowtap.>")
	h := configured(t, map[string]any{"servers": []string{ts.url()}, "subject": "flowtap.{host}.{event}", "stream": "FLOWTAP"})
	evs := flowEvents(1, 4)
	for i, host := range []string{"web-1", "db-1.example.com", "", "web-1"} {
		evs[i].Context.HostName = host
	}
	if err := h.Write(evs...); err != nil {
		t.Fatal(err)
	}
	want := []string{"flowtap.web-1.net_flow_tcp_begin", "flowtap.db-1_example_com.net_flow_tcp_end",
		"flowtap._.net_flow_tcp_begin", "flowtap.web-1.net_flow_tcp_end"}
	for i, m := range streamMsgs(t, str) {
		if m.Subject != want[i] {
			t.Errorf("message %d on %q, want %q", i, m.Subject, want[i])
		}
	}
}

func TestFixedSubject(t *testing.T) {
	ts := startServer(t, nil)
	str := ts.addStream("ALL", "events")
	h := configured(t, map[string]any{"servers": []string{ts.url()}, "subject": "events"})
	if err := h.Write(flowEvents(1, 4)...); err != nil {
		t.Fatal(err)
	}
	for _, m := range streamMsgs(t, str) {
		if m.Subject != "events" {
			t.Errorf("message on %q, want events", m.Subject)
		}
	}
}

// TestResentBatchStoredOnce writes the same batch three times, the last
// through a new sink (as after a restart of the plugin): the stream keeps
// one copy of each event, and new events are still stored.
func TestResentBatchStoredOnce(t *testing.T) {
	ts := startServer(t, nil)
	str := ts.addStream("FLOWTAP", "flowtap.>")
	cfg := map[string]any{"servers": []string{ts.url()}, "subject": "flowtap.{event}", "stream": "FLOWTAP"}
	h := configured(t, cfg)
	batch := flowEvents(1, 100)
	for range 2 {
		if err := h.Write(batch...); err != nil {
			t.Fatal(err)
		}
	}
	if err := configured(t, cfg).Write(batch...); err != nil {
		t.Fatal(err)
	}
	if n := storedCount(t, str); n != 100 {
		t.Fatalf("stream holds %d messages after the batch was written 3 times, want 100", n)
	}
	// Another batch overlapping the first by half: only its new half is added.
	if err := h.Write(flowEvents(51, 100)...); err != nil {
		t.Fatal(err)
	}
	if n := storedCount(t, str); n != 150 {
		t.Fatalf("stream holds %d messages, want 150", n)
	}
}

// TestWriteFailsWhileServerIsDown stops the server: Write fails within its
// timeout, and succeeds again once the server is back, each event stored
// once.
func TestWriteFailsWhileServerIsDown(t *testing.T) {
	ts := startServer(t, nil)
	str := ts.addStream("FLOWTAP", "flowtap.>")
	h := configured(t, map[string]any{"servers": []string{ts.url()}, "subject": "flowtap.{event}", "stream": "FLOWTAP", "timeout": "500ms"})
	if err := h.Write(flowEvents(1, 10)...); err != nil {
		t.Fatal(err)
	}
	ts.stop()
	start := time.Now()
	err := h.Write(flowEvents(11, 10)...)
	if !errors.Is(err, sdktest.ErrRejected) || !strings.Contains(err.Error(), "publish 10 events to NATS") {
		t.Fatalf("Write with the server down = %v, want a rejection", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Write took %s with a timeout of 500ms", d)
	}
	t.Logf("with the server down: %v", err)
	ts.start()
	var werr error
	for attempt := 0; attempt < 20; attempt++ { // the client reconnects every second
		if werr = h.Write(flowEvents(11, 10)...); werr == nil {
			break
		}
	}
	if werr != nil {
		t.Fatalf("Write after the server came back: %v", werr)
	}
	if n := storedCount(t, str); n != 20 {
		t.Errorf("stream holds %d messages, want 20", n)
	}
}

// TestStoreFailureReported checks that a message the stream refuses fails
// the batch, saying how many and why.
func TestStoreFailureReported(t *testing.T) {
	ts := startServer(t, nil)
	ts.addStream("FLOWTAP", "flowtap.>")
	h := configured(t, map[string]any{"servers": []string{ts.url()}, "subject": "flowtap.{event}", "stream": "FLOWTAP", "timeout": "2s"})
	// The stream takes messages of at most 64 bytes from now on.
	ctx := t.Context()
	js := ts.jetStream()
	if _, err := js.UpdateStream(ctx, jetstream.StreamConfig{Name: "FLOWTAP", Subjects: []string{"flowtap.>"}, Storage: jetstream.FileStorage, MaxMsgSize: 64}); err != nil {
		t.Fatal(err)
	}
	err := h.Write(flowEvents(1, 3)...)
	if err == nil || !strings.Contains(err.Error(), "3 of 3 not stored") || !strings.Contains(err.Error(), "3: nats: API error") {
		t.Fatalf("Write = %v, want 3 of 3 refused with the server's error", err)
	}
}

// coreSubscriber subscribes to flowtap.> on the server at url, on core
// NATS, until the test ends, and returns the messages' channel.
func coreSubscriber(t *testing.T, url string) <-chan *natsgo.Msg {
	t.Helper()
	nc, err := natsgo.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	got := make(chan *natsgo.Msg, 100)
	if _, err := nc.ChanSubscribe("flowtap.>", got); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestCoreNATS(t *testing.T) {
	ts := startServer(t, func(o *server.Options) { o.JetStream = false })
	got := coreSubscriber(t, ts.url())
	h := configured(t, map[string]any{"servers": []string{ts.url()}, "subject": "flowtap.{event}", "jetstream": false, "timeout": "500ms"})
	if err := h.Write(flowEvents(1, 6)...); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(5 * time.Second)
	for i := range 6 {
		select {
		case m := <-got:
			if !strings.HasPrefix(m.Subject, "flowtap.net_flow_tcp_") || m.Header.Get(jetstream.MsgIDHeader) != MsgID(m.Data) {
				t.Errorf("message %d: %s %v", i, m.Subject, m.Header)
			}
		case <-timeout:
			t.Fatalf("received %d of 6 messages", i)
		}
	}
	ts.stop()
	if err := h.Write(flowEvents(7, 1)...); err == nil {
		t.Error("Write with the server down succeeded on core NATS")
	}
}

// TestClose checks that Close drains a live connection, and returns
// promptly, without an error, when the server is gone.
func TestClose(t *testing.T) {
	ts := startServer(t, nil)
	ts.addStream("FLOWTAP", "flowtap.>")
	cfg := map[string]any{"servers": []string{ts.url()}, "subject": "flowtap.{event}"}
	live, gone := configured(t, cfg), configured(t, cfg)
	if err := live.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	ts.stop()
	start := time.Now()
	if err := gone.Close(); err != nil {
		t.Errorf("Close with the server gone: %v", err)
	}
	if d := time.Since(start); d > closeTimeout+time.Second {
		t.Errorf("Close with the server gone took %s", d)
	}
}

// TestNoResponders deletes the stream under the sink: nobody receives
// its messages. A batch publishes them again until its timeout, so it
// succeeds once the stream is back within it (as after a leader
// election); a batch that fails says why, and the sink goes on failing
// until the stream is back.
func TestNoResponders(t *testing.T) {
	ts := startServer(t, nil)
	ts.addStream("FLOWTAP", "flowtap.>")
	h := configured(t, map[string]any{"servers": []string{ts.url()}, "subject": "flowtap.{event}", "stream": "FLOWTAP", "timeout": "10s"})
	js := ts.jetStream()
	if err := js.DeleteStream(t.Context(), "FLOWTAP"); err != nil {
		t.Fatal(err)
	}
	written := make(chan error, 1)
	go func() { written <- h.Write(flowEvents(1, 50)...) }()
	time.Sleep(300 * time.Millisecond) // the batch is being published again by now
	str := ts.addStream("FLOWTAP", "flowtap.>")
	if err := <-written; err != nil {
		t.Fatalf("Write while the stream came back: %v", err)
	}
	if n := storedCount(t, str); n != 50 {
		t.Fatalf("stream holds %d messages, want 50", n)
	}

	h2 := configured(t, map[string]any{"servers": []string{ts.url()}, "subject": "flowtap.{event}", "stream": "FLOWTAP", "timeout": "500ms"})
	if err := js.DeleteStream(t.Context(), "FLOWTAP"); err != nil {
		t.Fatal(err)
	}
	for range 2 { // patient, then failing at once
		err := h2.Write(flowEvents(51, 10)...)
		if err == nil || !strings.Contains(err.Error(), "10 of 10 not stored: 10: nats: no responders available for request: no server takes the subject") {
			t.Fatalf("Write without the stream = %v", err)
		}
	}
	ts.addStream("FLOWTAP", "flowtap.>")
	if err := h2.Write(flowEvents(51, 10)...); err != nil {
		t.Fatalf("Write with the stream back: %v", err)
	}
}
