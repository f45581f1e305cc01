// SPDX-License-Identifier: Apache-2.0

package nats

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestStreamFullDiscardNew fills a stream the sink created with max_bytes
// and discard: new. The stream then refuses new messages, and the
// failure is visible, not silent: the sink's Write fails with the
// stream's error and a hint, the plugin logs it, flowtap's supervisor
// retries, counts and then gives up (its failed state, which the pipeline
// acts on), and counts what it could not deliver as dropped. Nothing was
// acknowledged that the stream does not hold.
func TestStreamFullDiscardNew(t *testing.T) {
	bin := buildPlugin(t)
	c := startCluster(t, 1)
	logs, log := agentLog(t)
	const maxBytes, maxAttempts = 256 << 10, 2
	a := startAgent(t, bin, "web-1", agentConfig{
		sink: map[string]any{"servers": c.urls(), "subject": "flowtap.{host}.{event}", "stream": "FLOWTAP", "create_stream": true,
			"max_bytes": maxBytes, "discard": "new", "timeout": "2s"},
		queueSize: 1024, batchSize: 100, maxAttempts: maxAttempts, maxBackoff: 100 * time.Millisecond,
	}, log)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	const offered = 3_000 // about 1 MiB of messages
	a.produce(ctx, 1, offered, 1_000_000)

	select {
	case <-a.sup.Failed():
	case <-ctx.Done():
		t.Fatalf("the sink did not fail with its stream full: %+v", a.sup.Counters())
	}
	err := a.sup.Err()
	t.Logf("the sink failed: %v", err)
	for _, want := range []string{"giving up", "not stored", "err_code=10077", "maximum bytes exceeded",
		"the stream is full and, with discard new, refuses new messages", "nats stream edit FLOWTAP --discard old"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Err() = %v, want %q in it", err, want)
		}
	}
	<-a.done
	_ = a.sup.Close(ctx)
	cn := a.sup.Counters()
	t.Logf("counters: %+v", cn)
	if cn.Acked == 0 || cn.Dropped == 0 || cn.Acked+cn.Dropped != offered || cn.Retried == 0 {
		t.Errorf("counters %+v: want some acknowledged, the rest retried and then dropped, %d in all", cn, offered)
	}
	for _, want := range []string{"NATS does not take the events", "maximum bytes exceeded", "sink plugin failed; retrying", "giving up"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log has no %q:\n%s", want, logs.String())
		}
	}

	js := c.jetStream()
	str, err := js.Stream(context.Background(), "FLOWTAP")
	if err != nil {
		t.Fatal(err)
	}
	info := streamInfo(t, str)
	if info.Config.Discard != jetstream.DiscardNew || info.State.Bytes > maxBytes {
		t.Errorf("stream: discard %s, %d bytes of at most %d", info.Config.Discard, info.State.Bytes, maxBytes)
	}
	// Every acknowledged event is stored; the stream may hold a few more
	// (the part of a failed batch it took before it was full).
	seen := readStream(t, js, "FLOWTAP")
	for i := 1; i <= int(cn.Acked); i++ {
		if seen["web-1"][int64(i)] != 1 {
			t.Fatalf("acknowledged event %d is stored %d times", i, seen["web-1"][int64(i)])
		}
	}
	t.Logf("the stream holds %d messages, %d bytes; %d were acknowledged", info.State.Msgs, info.State.Bytes, cn.Acked)
}
