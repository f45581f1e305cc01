// SPDX-License-Identifier: Apache-2.0

package nats

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/testutil"
	"github.com/flowtap/flowtap/plugins/host"
	"github.com/flowtap/flowtap/plugins/supervise"
)

// fleetDir is the fleet example: configs and a consumer, a Go module of
// its own.
const fleetDir = "../../examples/fleet"

// pluginName is the name the sink's connections carry.
const pluginName = "flowtap-sink-nats"

// buildPlugin builds the real plugin binary, cmd/flowtap-sink-nats.
func buildPlugin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), pluginName)
	testutil.BuildBinary(t, "github.com/flowtap/flowtap/cmd/flowtap-sink-nats", bin)
	return bin
}

// buildFleetCount builds the example consumer, in its own module.
func buildFleetCount(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "flowtap-fleet-count")
	goInFleet(t, "build", "-o", bin, ".")
	return bin
}

// goInFleet runs the go command in the fleet example's module.
func goInFleet(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = fleetDir
	// Its own module, not a workspace; -mod=mod lets it follow its
	// requirements if they moved since its go.mod was tidied.
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s in %s: %v\n%s", strings.Join(args, " "), fleetDir, err, out)
	}
}

// stepLogger returns a t.Logf that prefixes the seconds since the test
// began.
func stepLogger(t *testing.T) func(format string, args ...any) {
	start := time.Now()
	return func(format string, args ...any) {
		t.Helper()
		t.Logf("%5.1fs: "+format, append([]any{time.Since(start).Seconds()}, args...)...)
	}
}

// agentLog returns a logger for the agents (their supervisors and
// plugins) and what it wrote, which a failed test prints.
func agentLog(t *testing.T) (*testutil.SyncBuffer, hclog.Logger) {
	logs := &testutil.SyncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the agents' log:\n%s", logs.String())
		}
	})
	return logs, hclog.New(&hclog.LoggerOptions{Name: "fleet", Output: logs, Level: hclog.Info})
}

// agent is one flowtap host of a fleet, as far as delivery goes: its
// supervisor and its real sink plugin process, fed with events of its
// host name.
type agent struct {
	host    string
	sup     *supervise.Delivery
	offered int
	done    chan struct{} // closed when every event was offered
}

// agentConfig is what differs between the agents of the tests.
type agentConfig struct {
	sink        map[string]any
	queueSize   int
	batchSize   int
	maxAttempts int
	maxBackoff  time.Duration
}

// startAgent starts the supervisor of host's sink plugin.
func startAgent(t *testing.T, bin, hostName string, cfg agentConfig, log hclog.Logger) *agent {
	t.Helper()
	cat, err := events.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	log = log.Named(hostName)
	sup, err := supervise.Start(t.Context(), supervise.Config{
		Name:           "nats",
		Host:           host.Config{Plugin: bin, Logger: log, Names: cat.Name},
		SinkConfig:     cfg.sink,
		QueueSize:      cfg.queueSize,
		BatchSize:      cfg.batchSize,
		MaxAttempts:    cfg.maxAttempts,
		InitialBackoff: 50 * time.Millisecond,
		MaxBackoff:     cfg.maxBackoff,
		Logger:         log,
	})
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{host: hostName, sup: sup}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = sup.Close(ctx) // kills the plugin if it has not closed
	})
	return a
}

// produce offers the agent's events first to first+n-1 at rate events/s
// (in steps of 10ms), catching up after a wait on a blocked queue; done
// is closed at the end. ctx ending stops it early.
func (a *agent) produce(ctx context.Context, first, n, rate int) {
	a.done = make(chan struct{})
	a.offered += n
	go func() {
		defer close(a.done)
		const step = 10 * time.Millisecond
		start := time.Now()
		batch := make([]events.Event, 0, 256)
		for i := first; i < first+n; {
			due := first + int(time.Since(start)*time.Duration(rate)/time.Second)
			for ; i < first+n && i <= due && len(batch) < cap(batch); i++ {
				batch = append(batch, fleetEvent(a.host, i))
			}
			if len(batch) > 0 {
				a.sup.EnqueueBatch(batch)
				batch = batch[:0]
				continue
			}
			select {
			case <-time.After(step):
			case <-ctx.Done():
				return
			}
		}
	}()
}

// fleetEvent is event i of host: a begin (i odd) or an end (i even) of
// a connection, with timestamp i.
func fleetEvent(hostName string, i int) events.Event {
	flow := events.Flow{Direction: events.Outgoing, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("192.0.2.7"),
		SrcPort: uint16(30000 + i%30000), DstPort: 443}
	ev := events.Event{ID: events.IDNetFlowTCPBegin, Timestamp: int64(i),
		Context: events.Context{PID: 4242, Comm: "curl", HostName: hostName, SocketCookie: uint64(i)},
		Payload: &events.FlowBegin{Flow: flow, HandshakeNs: 1000}}
	if i%2 == 0 {
		ev.ID, ev.Payload = events.IDNetFlowTCPEnd, &events.FlowEnd{Flow: flow, DurationNs: 5000, Reason: events.CloseFIN}
	}
	return ev
}

// waitAcked waits until the agents have acknowledged at least n events
// in all, at most for limit.
func waitAcked(t *testing.T, agents []*agent, n uint64, limit time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		var acked uint64
		for _, a := range agents {
			acked += a.sup.Counters().Acked
		}
		if acked >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d of %d events acknowledged after %s", what, acked, n, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// storedEvent is what the tests read back of a message.
type storedEvent struct {
	Timestamp int64 `json:"timestamp"`
	Context   struct {
		HostName string `json:"host_name"`
	} `json:"context"`
}

// readStream reads every message of the stream once, with an ordered
// consumer, and counts each event (host, timestamp) it holds, one or, in
// a packed message, several, checking the subject against the host.
func readStream(t *testing.T, js jetstream.JetStream, stream string) map[string]map[int64]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	str, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	total := str.CachedInfo().State.Msgs
	// Creating a consumer right after a node was killed sometimes gets no
	// answer (seen on a loaded 2-core machine, on the stream whose nodes
	// were killed and restarted): ask again, each attempt bounded.
	var cons jetstream.Consumer
	for {
		actx, acancel := context.WithTimeout(ctx, 10*time.Second)
		cons, err = str.OrderedConsumer(actx, jetstream.OrderedConsumerConfig{})
		acancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("ordered consumer on %s: %v", stream, err)
		}
		t.Logf("ordered consumer on %s: %v; asking again", stream, err)
	}
	seen := map[string]map[int64]int{}
	for n := uint64(0); n < total; {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatalf("fetch after %d of %d messages: %v", n, total, err)
		}
		got := 0
		for m := range batch.Messages() {
			lines, err := unpack(m.Headers(), m.Data())
			if err != nil {
				t.Fatalf("message on %s: %v", m.Subject(), err)
			}
			for _, l := range lines {
				var ev storedEvent
				if err := json.Unmarshal(l, &ev); err != nil {
					t.Fatalf("message on %s: %v", m.Subject(), err)
				}
				if want := "flowtap." + HostSubjectToken(ev.Context.HostName) + "."; !strings.HasPrefix(m.Subject(), want) {
					t.Errorf("event of %q on %s", ev.Context.HostName, m.Subject())
				}
				if seen[ev.Context.HostName] == nil {
					seen[ev.Context.HostName] = map[int64]int{}
				}
				seen[ev.Context.HostName][ev.Timestamp]++
			}
			got++
		}
		if got == 0 && ctx.Err() != nil {
			t.Fatalf("read %d of %d messages: %v", n, total, batch.Error())
		}
		n += uint64(got)
	}
	return seen
}

// checkOnce checks that seen holds each of host's events 1..n exactly
// once, and reports how many are missing or doubled.
func checkOnce(t *testing.T, seen map[string]map[int64]int, hostName string, n int) {
	t.Helper()
	missing, doubled := 0, 0
	for i := 1; i <= n; i++ {
		switch c := seen[hostName][int64(i)]; {
		case c == 0:
			missing++
		case c > 1:
			doubled++
		}
	}
	if extra := len(seen[hostName]) - (n - missing); missing > 0 || doubled > 0 || extra > 0 {
		t.Errorf("%s: of events 1..%d, %d missing, %d stored more than once, %d others", hostName, n, missing, doubled, extra)
	}
}

// TestJetStreamClusterNodeFailure runs a fleet of three agents (their
// supervisors and real sink plugins) publishing at a steady rate into the
// R3 stream they create on a three-node cluster of real nats-server
// processes, and
// kills nodes under them: the stream's leader (SIGKILL), later started
// again, then another node, one the agents were connected to. Every
// event is acknowledged, the stream holds each exactly once (the resent
// copies were dropped by their Nats-Msg-Id), and the fleet example's
// consumer, reading with a durable pull consumer, counts them all per
// host.
func TestJetStreamClusterNodeFailure(t *testing.T) { testClusterNodeFailure(t, 1) }

// TestJetStreamClusterNodeFailurePacked is TestJetStreamClusterNodeFailure
// with packed messages of up to 32 events: a batch the supervisor resends
// packs into the same messages, and the stream drops the copies.
func TestJetStreamClusterNodeFailurePacked(t *testing.T) { testClusterNodeFailure(t, 32) }

// testClusterNodeFailure is TestJetStreamClusterNodeFailure with per
// events a message.
func testClusterNodeFailure(t *testing.T, per int) {
	logf := stepLogger(t)
	bin, countBin := buildPlugin(t), buildFleetCount(t)
	c := startCluster(t, 3)
	logs, log := agentLog(t)

	// The agents create the R3 stream, as in examples/fleet: the first
	// wins, the others find it.
	const perAgent, rate = 24_000, 1_500 // events, events/s per agent
	cfg := agentConfig{
		sink: map[string]any{"servers": c.urls(), "subject": "flowtap.{host}.{event}", "stream": "FLOWTAP",
			"create_stream": true, "replicas": 3, "timeout": "3s", "max_in_flight": 256, "events_per_message": per},
		queueSize: 4096, batchSize: 256, maxAttempts: 100, maxBackoff: time.Second,
	}
	var agents []*agent
	for _, h := range []string{"web-1", "web-2", "db-1.example.com"} {
		agents = append(agents, startAgent(t, bin, h, cfg, log))
	}
	js := c.jetStream()
	str, err := js.Stream(t.Context(), "FLOWTAP")
	if err != nil {
		t.Fatalf("the agents' stream: %v", err)
	}
	if r := str.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("the agents created a stream of %d replicas, want 3", r)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	for _, a := range agents {
		a.produce(ctx, 1, perAgent, rate)
	}
	total := uint64(len(agents) * perAgent)

	// 1. Kill the stream's leader mid-stream.
	waitAcked(t, agents, total/6, time.Minute, "before the first kill")
	first := c.leader(str)
	logf("killing the stream leader %s (pid %d)", first.name, first.cmd.Process.Pid)
	c.kill(first)
	// The other two elect a leader and take the events again.
	waitAcked(t, agents, total/3, time.Minute, "after the leader was killed")
	logf("new leader %s", c.leader(str).name)

	// 2. Start it again; it catches up.
	c.start(first)
	retry(t, time.Minute, "the restarted node catching up", func(ctx context.Context) error {
		info, err := str.Info(ctx)
		if err != nil {
			return err
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current || r.Offline {
				return fmt.Errorf("replica %s: current %v, offline %v, lag %d", r.Name, r.Current, r.Offline, r.Lag)
			}
		}
		if n := len(info.Cluster.Replicas); n != 2 {
			return fmt.Errorf("%d replicas beside the leader", n)
		}
		return nil
	})

	// 3. Kill another node: of the two that stayed up, the one most
	// agents are connected to, so that they fail over to another server.
	waitAcked(t, agents, total/2, time.Minute, "before the second kill")
	var second *natsNode
	most := -1
	for _, nd := range c.nodes {
		if n := c.clientsNamed(nd, pluginName); nd != first && n > most {
			second, most = nd, n
		}
	}
	logf("killing %s (pid %d), with %d agents connected; the leader is %s", second.name, second.cmd.Process.Pid, most, c.leader(str).name)
	c.kill(second)

	// 4. The agents offer all their events, and deliver them on close.
	for _, a := range agents {
		select {
		case <-a.done:
		case <-ctx.Done():
			t.Fatalf("%s: offering its events did not end: %+v", a.host, a.sup.Counters())
		}
	}
	closeCtx, closeCancel := context.WithTimeout(t.Context(), time.Minute)
	defer closeCancel()
	var retried uint64
	for _, a := range agents {
		if err := a.sup.Close(closeCtx); err != nil {
			t.Errorf("%s: %v", a.host, err)
		}
		cn := a.sup.Counters()
		logf("%s: %+v", a.host, cn)
		if cn.Acked != uint64(a.offered) || cn.Dropped != 0 || cn.Queued != uint64(a.offered) {
			t.Errorf("%s: counters %+v, want all %d events queued and acknowledged, none dropped", a.host, cn, a.offered)
		}
		retried += cn.Retried
	}
	if retried == 0 {
		t.Error("no batch was sent again: the node failures did not reach the agents")
	}
	for l := range strings.Lines(logs.String()) {
		if strings.Contains(l, "NATS sink totals") {
			logf("%s", strings.TrimSpace(l)) // duplicates: resent copies the stream dropped
		}
	}
	if most > 0 && !strings.Contains(logs.String(), "reconnected to NATS") {
		t.Error(`no agent logged "reconnected to NATS" after its server was killed`)
	}

	// Each event is stored exactly once.
	if info := streamInfoWithin(t, str, time.Minute); per == 1 && info.State.Msgs != total {
		t.Errorf("the stream holds %d messages, want %d", info.State.Msgs, total)
	} else {
		logf("%d events in %d messages", total, info.State.Msgs)
	}
	seen := readStream(t, js, "FLOWTAP")
	for _, a := range agents {
		checkOnce(t, seen, a.host, a.offered)
	}

	// The fleet example's consumer counts them per host.
	out, err := exec.CommandContext(ctx, countBin, "-servers", strings.Join(c.urls(), ","), "-stream", "FLOWTAP",
		"-durable", "fleet-test", "-idle", "3s", "-json").Output()
	if err != nil {
		t.Fatalf("flowtap-fleet-count: %v\n%s", err, exitStderr(err))
	}
	var counts map[string]struct {
		Connections, Ended, Failed, Other int
	}
	if err := json.Unmarshal(out, &counts); err != nil {
		t.Fatalf("flowtap-fleet-count printed %q: %v", out, err)
	}
	logf("flowtap-fleet-count: %s", out)
	for _, a := range agents {
		got := counts[HostSubjectToken(a.host)]
		if got.Connections != a.offered/2 || got.Ended != a.offered/2 || got.Failed != 0 || got.Other != 0 {
			t.Errorf("flowtap-fleet-count for %s: %+v, want %d connections and as many ends", a.host, got, a.offered/2)
		}
	}
	if len(counts) != len(agents) {
		t.Errorf("flowtap-fleet-count counted %d hosts, want %d", len(counts), len(agents))
	}
}

// exitStderr is the standard error of a command that failed, if any.
func exitStderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// TestJetStreamClusterNoQuorum kills two of the three nodes of an R3
// stream: without a quorum the stream stores nothing and acknowledges
// nothing. The agent's queue (policy block) fills and holds the producer
// back; its batches fail until max_attempts, then the sink gives up and
// everything it had not acknowledged, and everything offered later, is
// counted as dropped. Every event it acknowledged is in the stream.
func TestJetStreamClusterNoQuorum(t *testing.T) {
	logf := stepLogger(t)
	bin := buildPlugin(t)
	c := startCluster(t, 3)
	str := c.addStream("FLOWTAP", 3, nil, "flowtap.>")
	logs, log := agentLog(t)
	const queueSize, batchSize, maxAttempts = 1024, 256, 3
	a := startAgent(t, bin, "web-1", agentConfig{
		sink:      map[string]any{"servers": c.urls(), "subject": "flowtap.{host}.{event}", "stream": "FLOWTAP", "timeout": "1s"},
		queueSize: queueSize, batchSize: batchSize, maxAttempts: maxAttempts, maxBackoff: 200 * time.Millisecond,
	}, log)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	const before, after = 5_000, 20_000
	a.produce(ctx, 1, before, 1_000_000)
	<-a.done
	waitAcked(t, []*agent{a}, before, time.Minute, "with the cluster whole")

	leader := c.leader(str)
	var follower *natsNode
	for _, nd := range c.nodes {
		if nd != leader {
			follower = nd
			break
		}
	}
	logf("killing the leader %s and %s", leader.name, follower.name)
	c.kill(leader)
	c.kill(follower)

	a.produce(ctx, before+1, after, 1_000_000)
	logf("offering %d more events", after)
	// Back-pressure: the producer waits on the full queue; the events
	// held are bounded by the queue, the batch being filled and the
	// batches in flight or to be resent.
	const held = queueSize + (1+8)*batchSize // 8: the host's batches in flight
	for {
		cn := a.sup.Counters()
		if waiting := cn.Queued - cn.Acked; cn.Dropped == 0 && waiting > held {
			t.Fatalf("%d events held without a quorum, more than the queue and batches (%d): %+v", waiting, held, cn)
		}
		select {
		case <-a.done:
			logf("offering ended at %+v", cn)
		case <-a.sup.Failed():
		case <-ctx.Done():
			t.Fatalf("the sink neither failed nor took the events: %+v", cn)
		case <-time.After(20 * time.Millisecond):
			continue
		}
		break
	}
	select {
	case <-a.sup.Failed():
	case <-ctx.Done():
		t.Fatalf("the sink did not give up after %d attempts: %+v", maxAttempts, a.sup.Counters())
	}
	err := a.sup.Err()
	logf("the sink failed: %v", err)
	if err == nil || !strings.Contains(err.Error(), "giving up") || !strings.Contains(err.Error(), "not stored") {
		t.Errorf("Err() = %v, want giving up, with what was not stored", err)
	}
	<-a.done // the queue drops from now on
	closeCtx, closeCancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer closeCancel()
	_ = a.sup.Close(closeCtx)
	cn := a.sup.Counters()
	logf("counters: %+v", cn)
	if cn.Acked != before || cn.Acked+cn.Dropped != before+after || cn.Dropped == 0 {
		t.Errorf("counters %+v: want the %d events before the failure acknowledged, the %d after dropped", cn, before, after)
	}
	for _, want := range []string{"NATS does not take the events", "sink plugin failed; retrying", "giving up"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log has no %q", want)
		}
	}

	// With the nodes back, the stream holds every acknowledged event.
	c.start(leader)
	c.start(follower)
	logf("nodes started again; the leader is %s", c.leader(str).name)
	seen := readStream(t, c.jetStream(), "FLOWTAP")
	checkOnce(t, seen, a.host, int(cn.Acked))
	logf("the stream holds every acknowledged event once")
}
