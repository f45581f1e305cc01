// SPDX-License-Identifier: Apache-2.0

package nats

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowtap/flowtap/plugins/sdk"
	"github.com/flowtap/flowtap/plugins/sdk/sdktest"
)

// testServer is an embedded NATS server with JetStream, on loopback, its
// store in the test's temporary directory. It can be stopped and started
// again on the same port with the same store.
type testServer struct {
	tb     testing.TB
	opts   *server.Options
	srv    *server.Server
	scheme string
	// client are the options of the test's own clients (jetStream).
	client []natsgo.Option
}

// startServer starts a server; tweak, if not nil, changes its options
// first. The test's cleanup shuts it down.
func startServer(tb testing.TB, tweak func(*server.Options)) *testServer {
	tb.Helper()
	opts := &server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: tb.TempDir(), JetStreamMaxMemory: 64 << 20, JetStreamMaxStore: 1 << 30,
	}
	if tweak != nil {
		tweak(opts)
	}
	ts := &testServer{tb: tb, opts: opts, scheme: "nats"}
	if opts.TLSConfig != nil {
		ts.scheme = "tls"
	}
	ts.start()
	tb.Cleanup(ts.stop)
	return ts
}

// start starts the server (again), on the port it had.
func (ts *testServer) start() {
	ts.tb.Helper()
	srv, err := server.NewServer(ts.opts)
	if err != nil {
		ts.tb.Fatalf("nats-server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		ts.tb.Fatal("nats-server not ready within 10s")
	}
	ts.srv = srv
	ts.opts.Port = srv.Addr().(*net.TCPAddr).Port
}

// stop shuts the server down and waits until it has.
func (ts *testServer) stop() {
	if ts.srv != nil {
		ts.srv.Shutdown()
		ts.srv.WaitForShutdown()
		ts.srv = nil
	}
}

// url is the server's client URL.
func (ts *testServer) url() string {
	return fmt.Sprintf("%s://127.0.0.1:%d", ts.scheme, ts.opts.Port)
}

// jetStream connects a test client, closed by the test's cleanup.
func (ts *testServer) jetStream() jetstream.JetStream {
	ts.tb.Helper()
	nc, err := natsgo.Connect(ts.url(), ts.client...)
	if err != nil {
		ts.tb.Fatalf("test client: %v", err)
	}
	ts.tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		ts.tb.Fatal(err)
	}
	return js
}

// addStream creates a stream capturing subjects.
func (ts *testServer) addStream(name string, subjects ...string) jetstream.Stream {
	ts.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	str, err := ts.jetStream().CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: subjects, Storage: jetstream.FileStorage})
	if err != nil {
		ts.tb.Fatalf("create stream %s: %v", name, err)
	}
	return str
}

// streamInfo returns the stream's current state.
func streamInfo(tb testing.TB, str jetstream.Stream) *jetstream.StreamInfo {
	tb.Helper()
	return streamInfoWithin(tb, str, 10*time.Second)
}

// streamInfoWithin is streamInfo, asking again until limit: in a cluster
// that just lost a node, the client reconnects to another seed and the
// stream may elect a leader first, which on a loaded machine takes longer
// than one request's timeout.
func streamInfoWithin(tb testing.TB, str jetstream.Stream, limit time.Duration) *jetstream.StreamInfo {
	tb.Helper()
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		info, err := str.Info(ctx)
		cancel()
		if err == nil {
			return info
		}
		if time.Now().After(deadline) {
			tb.Fatalf("stream info within %v: %v", limit, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// streamMsgs returns every message of the stream, in order.
func streamMsgs(tb testing.TB, str jetstream.Stream) []*jetstream.RawStreamMsg {
	tb.Helper()
	state := streamInfo(tb, str).State
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []*jetstream.RawStreamMsg
	for seq := state.FirstSeq; seq <= state.LastSeq && state.Msgs > 0; seq++ {
		m, err := str.GetMsg(ctx, seq)
		if err != nil {
			tb.Fatalf("message %d: %v", seq, err)
		}
		out = append(out, m)
	}
	return out
}

// storedCount is how many messages the stream holds.
func storedCount(tb testing.TB, str jetstream.Stream) uint64 {
	tb.Helper()
	return streamInfo(tb, str).State.Msgs
}

// configured returns a harness around a new sink configured with cfg.
func configured(t *testing.T, cfg map[string]any) *sdktest.Harness {
	t.Helper()
	h := sdktest.New(t, New())
	if err := h.Configure(cfg); err != nil {
		t.Fatalf("Configure(%v): %v", cfg, err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// flowEvents returns the flow events first to first+n-1: event k is a
// begin (k odd) or an end (k even), with timestamp and socket cookie k.
// The same k always gives the same event.
func flowEvents(first, n int) []sdk.Event {
	out := make([]sdk.Event, n)
	for i := range out {
		k := first + i
		name := "net_flow_tcp_begin"
		if k%2 == 0 {
			name = "net_flow_tcp_end"
		}
		out[i] = sdktest.Event(name, sdktest.F("conn_direction", "outgoing"), sdktest.F("src", "10.0.0.1"),
			sdktest.F("dst", "192.0.2.7"), sdktest.F("src_port", uint(40000+k%20000)), sdktest.F("dst_port", uint(443)),
			sdktest.F("dst_dns", []string{"example.com"}))
		out[i].Timestamp = int64(k)
		out[i].Context.SocketCookie = uint64(k)
	}
	return out
}
