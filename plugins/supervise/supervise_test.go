// SPDX-License-Identifier: Apache-2.0

package supervise

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/testutil"
	"github.com/flowtap/flowtap/plugins/host"
)

// binDir holds the plugin binaries the tests build, once per run.
var (
	binMu  sync.Mutex
	binDir string
	built  = map[string]string{}
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "flowtap-supervise-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// plugin builds the plugin in pkg (once) and returns its path.
func plugin(t testing.TB, pkg string) string {
	t.Helper()
	binMu.Lock()
	defer binMu.Unlock()
	if p, ok := built[pkg]; ok {
		return p
	}
	out := filepath.Join(binDir, "flowtap-sink-"+filepath.Base(pkg))
	testutil.BuildBinary(t, pkg, out)
	built[pkg] = out
	return out
}

const (
	flakyPkg = "./testdata/flaky"
	filePkg  = "github.com/flowtap/flowtap/cmd/flowtap-sink-file"
)

func names(id events.ID) string {
	if id == events.IDNetFlowTCPBegin {
		return events.NameNetFlowTCPBegin
	}
	return ""
}

// event returns a flow begin event whose timestamp is i: tests find
// events by it.
func event(i int) events.Event {
	return events.Event{
		ID:        events.IDNetFlowTCPBegin,
		Timestamp: int64(i),
		Context:   events.Context{PID: uint32(i % 1000), Comm: "curl"},
		Payload: &events.FlowBegin{Flow: events.Flow{
			Direction: events.Outgoing,
			Src:       netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}),
			Dst:       netip.MustParseAddr("192.0.2.1"),
			SrcPort:   uint16(i),
			DstPort:   443,
		}},
	}
}

// start starts a supervised sink of bin with sink config sc.
func start(t *testing.T, cfg Config, bin string, sc map[string]any) *Delivery {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = t.Name()
	}
	cfg.Host = host.Config{Plugin: bin, Logger: hclog.NewNullLogger(), Names: names}
	cfg.SinkConfig = sc
	if cfg.Logger == nil {
		cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "supervise", Output: testWriter{t}, Level: hclog.Info})
	}
	if cfg.InitialBackoff == 0 {
		cfg.InitialBackoff = 20 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// deliver offers events 1 to n to s, then closes it.
func deliver(t *testing.T, s *Delivery, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		s.Enqueue(event(i))
	}
	if err := closeSink(t, s); err != nil {
		t.Fatal(err)
	}
}

func closeSink(t *testing.T, s *Delivery) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	return s.Close(ctx)
}

// counted reads a flaky plugin's count file: the timestamps of the first
// and last events of each batch it accepted, and their total.
func counted(t *testing.T, path string) (total int, ranges [][2]int64) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line == "" {
			continue
		}
		var n int
		var first, last int64
		if _, err := fmt.Sscan(line, &n, &first, &last); err != nil {
			t.Fatalf("count file line %q: %v", line, err)
		}
		total += n
		ranges = append(ranges, [2]int64{first, last})
	}
	return total, ranges
}

// TestDropPolicies: a sink that sleeps in every Write, behind a small
// queue. The drop policies never make Enqueue wait, count exactly the
// events the sink did not get, and keep the oldest (drop_newest) or the
// newest (drop_oldest) events.
func TestDropPolicies(t *testing.T) {
	bin := plugin(t, flakyPkg)
	const offered = 3000
	for _, policy := range []Policy{DropNewest, DropOldest} {
		t.Run(string(policy), func(t *testing.T) {
			countFile := filepath.Join(t.TempDir(), "count")
			var log testutil.SyncBuffer
			s := start(t, Config{QueueSize: 50, BatchSize: 10, Policy: policy, Logger: hclog.New(&hclog.LoggerOptions{Output: &log})}, bin,
				map[string]any{"sleep_ms": 20, "count_file": countFile})
			deliver(t, s, offered)
			c := s.Counters()
			// The drops are logged as they happen (the first at once),
			// and counted as the policy's, not as lost.
			if !strings.Contains(log.String(), "sink queue full: dropping events (queue.policy)") || !strings.Contains(log.String(), "policy="+string(policy)) {
				t.Errorf("the drops were not logged:\n%s", log.String())
			}
			if c.Lost != 0 {
				t.Errorf("lost %d: the policy's drops are not losses", c.Lost)
			}
			got, ranges := counted(t, countFile)
			t.Logf("counters %+v; the sink got %d events", c, got)
			if c.Dropped == 0 {
				t.Fatalf("nothing dropped: the sink was not slow enough to test anything")
			}
			if int(c.Acked) != got || c.Acked+c.Dropped != offered {
				t.Errorf("acked %d + dropped %d, want the %d the sink got + %d", c.Acked, c.Dropped, got, offered-got)
			}
			if c.Retried != 0 || c.Restarts != 0 {
				t.Errorf("retries %d, restarts %d in a healthy run", c.Retried, c.Restarts)
			}
			switch policy {
			case DropNewest:
				if ranges[0][0] != 1 {
					t.Errorf("drop_newest: first event delivered is %d, want 1", ranges[0][0])
				}
			case DropOldest:
				if last := ranges[len(ranges)-1][1]; last != offered {
					t.Errorf("drop_oldest: last event delivered is %d, want %d", last, offered)
				}
			}
		})
	}
}

// TestDropPolicyIsolates: a slow sink in a drop mode and a fast sink fed
// by the same producer: the fast one gets everything.
func TestDropPolicyIsolates(t *testing.T) {
	bin := plugin(t, flakyPkg)
	slow := start(t, Config{Name: "slow", QueueSize: 20, BatchSize: 10, Policy: DropNewest}, bin, map[string]any{"sleep_ms": 50})
	fast := start(t, Config{Name: "fast", QueueSize: 20000, BatchSize: 100}, bin, map[string]any{})
	const offered = 10000
	for i := 1; i <= offered; i++ {
		ev := event(i)
		slow.Enqueue(ev)
		fast.Enqueue(ev)
	}
	if err := closeSink(t, fast); err != nil {
		t.Fatal(err)
	}
	if err := closeSink(t, slow); err != nil {
		t.Fatal(err)
	}
	if c := fast.Counters(); c.Acked != offered || c.Dropped != 0 {
		t.Errorf("fast sink: %+v, want all %d acked", c, offered)
	}
	if c := slow.Counters(); c.Dropped == 0 || c.Acked+c.Dropped != offered {
		t.Errorf("slow sink: %+v", c)
	}
}

// TestBlockPolicy: the default policy loses nothing to a slow sink.
func TestBlockPolicy(t *testing.T) {
	bin := plugin(t, flakyPkg)
	countFile := filepath.Join(t.TempDir(), "count")
	s := start(t, Config{QueueSize: 10, BatchSize: 10}, bin, map[string]any{"sleep_ms": 2, "count_file": countFile})
	const offered = 500
	deliver(t, s, offered)
	got, _ := counted(t, countFile)
	if c := s.Counters(); c.Acked != offered || c.Dropped != 0 || c.Queued != offered || got != offered {
		t.Errorf("counters %+v, sink got %d; want all %d", c, got, offered)
	}
}

// TestRestartAfterCrash: the plugin exits in the middle of a batch; the
// supervisor restarts it and resends what was not acknowledged.
func TestRestartAfterCrash(t *testing.T) {
	testRecovers(t, "exit_after", Config{})
}

// TestRestartAfterHang: the plugin stops answering; the supervisor
// notices the missing acknowledgement, kills it and starts another.
func TestRestartAfterHang(t *testing.T) {
	testRecovers(t, "hang_after", Config{AckTimeout: 500 * time.Millisecond})
}

func testRecovers(t *testing.T, how string, cfg Config) {
	bin := plugin(t, flakyPkg)
	var log testutil.SyncBuffer
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Output: &log})
	dir := t.TempDir()
	countFile := filepath.Join(dir, "count")
	cfg.BatchSize, cfg.QueueSize = 10, 1000
	s := start(t, cfg, bin, map[string]any{how: 3, "once_file": filepath.Join(dir, "once"), "count_file": countFile})
	first := s.PID()
	const offered = 200
	deliver(t, s, offered)
	c := s.Counters()
	got, ranges := counted(t, countFile)
	t.Logf("counters %+v; the sink got %d events", c, got)
	if c.Restarts != 1 {
		t.Errorf("restarts = %d, want 1", c.Restarts)
	}
	if c.Acked != offered || c.Dropped != 0 {
		t.Errorf("acked %d, dropped %d; want all %d acked", c.Acked, c.Dropped, offered)
	}
	// At least once: every event arrived (batches hold consecutive
	// events), and the copies beyond one are no more than reported.
	seen := make([]bool, offered+1)
	for _, r := range ranges {
		for ts := r[0]; ts <= r[1]; ts++ {
			seen[ts] = true
		}
	}
	for ts := 1; ts <= offered; ts++ {
		if !seen[ts] {
			t.Fatalf("event %d never reached the sink", ts)
		}
	}
	// In order: each batch that reaches the sink for the first time
	// comes after the ones that did before (copies of earlier batches may
	// come again after the failure).
	arrived := map[[2]int64]bool{}
	var last int64
	for _, r := range ranges {
		if arrived[r] {
			continue
		}
		arrived[r] = true
		if r[0] < last {
			t.Fatalf("events %d to %d reached the sink after events from %d: batches in flight at the failure were resent out of order (ranges %v)", r[0], r[1], last, ranges)
		}
		last = r[0]
	}
	if extra := uint64(got - offered); extra > c.DuplicatesResent {
		t.Errorf("the sink got %d copies beyond one, but only %d duplicates were reported", extra, c.DuplicatesResent)
	}
	if c.DuplicatesResent == 0 || c.Retried < c.DuplicatesResent {
		t.Errorf("retried %d, duplicates resent %d: the batch in flight at the failure was not counted", c.Retried, c.DuplicatesResent)
	}
	if alive(first) {
		t.Errorf("the first plugin process %d still runs", first)
	}
	if how == "hang_after" && !strings.Contains(log.String(), "not acknowledged within 0.5 s: plugin considered hung") {
		t.Errorf("the hang is not said in those words:\n%q", log.String())
	}
}

// TestRejectedBatchRetried: a sink that refuses batches is not restarted;
// its batches are retried on it, and they are not duplicates.
func TestRejectedBatchRetried(t *testing.T) {
	bin := plugin(t, flakyPkg)
	countFile := filepath.Join(t.TempDir(), "count")
	s := start(t, Config{BatchSize: 10}, bin, map[string]any{"reject": 2, "count_file": countFile})
	const offered = 100
	deliver(t, s, offered)
	c := s.Counters()
	got, _ := counted(t, countFile)
	if c.Acked != offered || got != offered || c.Restarts != 0 || c.Retried == 0 || c.DuplicatesResent != 0 {
		t.Errorf("counters %+v, sink got %d", c, got)
	}
}

// enqueueUntilFailed offers events 1 to n to s and waits until the sink
// has failed.
func enqueueUntilFailed(t *testing.T, s *Delivery, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		s.Enqueue(event(i))
	}
	select {
	case <-s.Failed():
	case <-time.After(30 * time.Second):
		t.Fatal("the sink did not fail")
	}
}

// TestGivesUp: a plugin that crashes every time fails the sink after
// MaxAttempts, with an error that says so; nothing hangs, and every event
// is accounted for.
func TestGivesUp(t *testing.T) {
	bin := plugin(t, flakyPkg)
	s := start(t, Config{BatchSize: 5, MaxAttempts: 2}, bin, map[string]any{"exit_after": 1})
	const offered = 50
	enqueueUntilFailed(t, s, offered)
	err := closeSink(t, s)
	if err == nil || !strings.Contains(err.Error(), "giving up") || !strings.Contains(err.Error(), "max_attempts 2") {
		t.Errorf("Close = %v, want the give-up error", err)
	}
	if !errors.Is(s.Err(), err) && s.Err() != err {
		t.Errorf("Err = %v, Close = %v", s.Err(), err)
	}
	if c := s.Counters(); c.Acked+c.Dropped != offered || c.Restarts != 2 {
		t.Errorf("counters %+v: want acked+dropped = %d and 2 restarts", c, offered)
	}
	if pid := s.PID(); pid != 0 {
		t.Errorf("a plugin (%d) still runs after giving up", pid)
	}
}

// TestGivesUpClosesARejectingPlugin: a plugin that answers but rejects
// every batch (a full disk) is closed when the sink gives up, not killed,
// so that it ends the write it is in (the file sink then removes the
// failed batch's partial lines, which no later start would repair); its
// batches in flight are settled before it closes.
func TestGivesUpClosesARejectingPlugin(t *testing.T) {
	bin := plugin(t, flakyPkg)
	closed := filepath.Join(t.TempDir(), "closed")
	s := start(t, Config{BatchSize: 5, MaxAttempts: 2}, bin, map[string]any{"reject": 1 << 30, "sleep_ms": 20, "closed_file": closed})
	const offered = 50
	enqueueUntilFailed(t, s, offered)
	if _, err := os.Stat(closed); err != nil {
		t.Errorf("the rejecting plugin was not closed when the sink gave up (killed instead?): %v", err)
	}
	if pid := s.PID(); pid != 0 {
		t.Errorf("a plugin (%d) still runs after giving up", pid)
	}
	err := closeSink(t, s)
	if err == nil || !strings.Contains(err.Error(), "giving up") {
		t.Errorf("Close = %v, want the give-up error", err)
	}
	if c := s.Counters(); c.Acked != 0 || c.Dropped != offered || c.Restarts != 0 {
		t.Errorf("counters %+v: want nothing acknowledged, all %d dropped, no restart", c, offered)
	}
}

// TestFileSinkSurvivesKills streams 100,000 events to the real file sink
// while killing its plugin with SIGKILL five times: afterwards the file
// holds every event at least once, and the copies beyond one are no more
// than the duplicates the supervisor reports having resent.
func TestFileSinkSurvivesKills(t *testing.T) {
	bin := plugin(t, filePkg)
	path := filepath.Join(t.TempDir(), "events.jsonl")
	s := start(t, Config{QueueSize: 4096, BatchSize: 512, MaxAttempts: 3}, bin,
		map[string]any{"path": path, "fsync": "never", "max_size_mb": 1000})
	const offered, kills = 100_000, 5
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for i := 1; i <= offered; i++ {
			s.Enqueue(event(i))
		}
	}()
	killed := 0
	for k := 1; k <= kills; k++ {
		// Kill after every sixth of the stream has been acknowledged.
		target := uint64(k * offered / (kills + 1))
		deadline := time.Now().Add(60 * time.Second)
		for s.Counters().Acked < target || s.PID() == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("kill %d: stuck at %+v", k, s.Counters())
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
		killed++
		// Wait for the replacement before the next kill.
		for deadline := time.Now().Add(60 * time.Second); s.PID() == pid || s.PID() == 0; {
			if time.Now().After(deadline) {
				t.Fatalf("kill %d: no restart: %+v", k, s.Counters())
			}
			time.Sleep(time.Millisecond)
		}
	}
	<-produced
	if err := closeSink(t, s); err != nil {
		t.Fatal(err)
	}
	c := s.Counters()
	t.Logf("after %d kills: %+v", killed, c)
	seen := make([]int, offered+1)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	lines := 0
	for sc.Scan() {
		var line struct {
			Timestamp int `json:"timestamp"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("line %d: %v: %q", lines+1, err, sc.Text())
		}
		if line.Timestamp < 1 || line.Timestamp > offered {
			t.Fatalf("line %d: timestamp %d", lines+1, line.Timestamp)
		}
		seen[line.Timestamp]++
		lines++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	missing, extra := 0, 0
	for i := 1; i <= offered; i++ {
		if seen[i] == 0 {
			missing++
		}
		extra += max(seen[i]-1, 0)
	}
	t.Logf("file: %d lines, %d events missing, %d extra copies", lines, missing, extra)
	if missing > 0 {
		t.Errorf("%d events missing from the file", missing)
	}
	if uint64(extra) > c.DuplicatesResent {
		t.Errorf("%d extra copies in the file, but only %d duplicates reported resent", extra, c.DuplicatesResent)
	}
	if c.Restarts != kills || c.Acked != offered || c.Dropped != 0 {
		t.Errorf("counters %+v: want %d restarts, all %d acked, none dropped", c, kills, offered)
	}
}

// alive reports whether pid is a running (not zombie) process.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(stat), ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] != 'Z' && stat[i+2] != 'X'
}

// TestOutcomeWithinWrite: a Plugin may settle a batch inside the
// WriteAsync call that sends it (the host does when a later part of a
// split batch fails); the supervisor must not then count it in flight.
func TestOutcomeWithinWrite(t *testing.T) {
	s, err := Start(t.Context(), Config{
		Name: "in-process", BatchSize: 100, QueueSize: 1000, Logger: hclog.NewNullLogger(),
		Launch: func(context.Context) (Plugin, error) { return &inProcess{}, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	const offered = 10_000
	deliver(t, s, offered)
	if c := s.Counters(); c.Acked != offered || c.Sent != offered {
		t.Errorf("counters %+v, want all %d sent and acked once", c, offered)
	}
}

// TestRestartAfterFreeze: an idle plugin that stops answering (SIGSTOP)
// fails its health check and is replaced; the events offered afterwards
// are delivered.
func TestRestartAfterFreeze(t *testing.T) {
	bin := plugin(t, flakyPkg)
	countFile := filepath.Join(t.TempDir(), "count")
	s := start(t, Config{BatchSize: 10, HealthInterval: 50 * time.Millisecond, AckTimeout: 300 * time.Millisecond},
		bin, map[string]any{"count_file": countFile})
	frozen := s.PID()
	if testutil.ParentPID(frozen) != os.Getpid() {
		t.Fatalf("pid %d is not a plugin this test started", frozen)
	}
	if err := syscall.Kill(frozen, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(frozen, syscall.SIGKILL) // if the supervisor did not
	for deadline := time.Now().Add(30 * time.Second); s.Counters().Restarts == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the frozen plugin was not replaced")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for deadline := time.Now().Add(5 * time.Second); alive(frozen); {
		if time.Now().After(deadline) {
			t.Fatalf("the frozen plugin %d was not killed", frozen)
		}
		time.Sleep(5 * time.Millisecond)
	}
	const offered = 100
	deliver(t, s, offered)
	got, _ := counted(t, countFile)
	if c := s.Counters(); c.Acked != offered || got != offered || c.Restarts != 1 {
		t.Errorf("counters %+v, sink got %d; want %d, after 1 restart", c, got, offered)
	}
}

// TestEnqueueBatchAsOneByOne: a batch offered at once fills a full queue
// as the same events offered one by one would, whatever the policy; under
// Block it waits for room as often as needed, and loses nothing.
func TestEnqueueBatchAsOneByOne(t *testing.T) {
	evs := make([]events.Event, 20)
	for i := range evs {
		evs[i] = event(i)
	}
	ids := func(q *queue) []int64 {
		out, _ := q.pop(nil, len(q.buf))
		var ts []int64
		for _, ev := range out {
			ts = append(ts, ev.Timestamp)
		}
		return ts
	}
	for _, policy := range []Policy{DropNewest, DropOldest} {
		var q1, d1, l1, q2, d2, l2 atomic.Uint64
		one, all := newQueue(8, 4, policy, &q1, &d1, &l1), newQueue(8, 4, policy, &q2, &d2, &l2)
		for _, ev := range evs {
			one.push(ev)
		}
		all.pushAll(evs)
		if a, b := ids(one), ids(all); !slices.Equal(a, b) || q1.Load() != q2.Load() || d1.Load() != d2.Load() {
			t.Errorf("%s: one by one %v (queued %d, dropped %d), at once %v (queued %d, dropped %d)",
				policy, a, q1.Load(), d1.Load(), b, q2.Load(), d2.Load())
		}
	}
	var queued, dropped, lost atomic.Uint64
	q := newQueue(4, 4, Block, &queued, &dropped, &lost)
	got := make(chan []int64)
	go func() {
		var ts []int64
		for len(ts) < 3*len(evs) {
			<-q.wake
			for {
				out, _ := q.pop(nil, 4)
				if len(out) == 0 {
					break
				}
				for _, ev := range out {
					ts = append(ts, ev.Timestamp)
				}
			}
		}
		got <- ts
	}()
	for range 3 {
		q.pushAll(evs)
	}
	q.close()
	ts := <-got
	for i, v := range ts {
		if v != int64(i%len(evs)) {
			t.Fatalf("block: events arrived as %v", ts)
		}
	}
	if dropped.Load() != 0 || queued.Load() != uint64(3*len(evs)) {
		t.Errorf("block: queued %d, dropped %d", queued.Load(), dropped.Load())
	}
}

// TestStateRetryingThenUp: a sink whose plugin rejects batches is
// Retrying (not Failed: within max_attempts), and Up again once a batch
// is acknowledged; Closed after Close.
func TestStateRetryingThenUp(t *testing.T) {
	bin := plugin(t, flakyPkg)
	flag := filepath.Join(t.TempDir(), "reject")
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s := start(t, Config{BatchSize: 1, MaxAttempts: 1000, MaxBackoff: 50 * time.Millisecond}, bin, map[string]any{"reject_while": flag})
	if st := s.State(); st != Up {
		t.Fatalf("state after Start = %v, want up", st)
	}
	s.Enqueue(event(1))
	waitState(t, s, Retrying)
	if err := os.Remove(flag); err != nil {
		t.Fatal(err)
	}
	waitState(t, s, Up)
	if err := closeSink(t, s); err != nil {
		t.Fatal(err)
	}
	if st, c := s.State(), s.Counters(); st != Closed || c.Acked != 1 || c.Retried == 0 || c.Restarts != 0 {
		t.Errorf("after Close: state %v, counters %+v; want closed, the event acked after retries, no restart", st, c)
	}
}

// TestOutputClosedEndsQuietly: a sink printing to a pipe whose reader is
// gone fails at once with host.ErrOutputClosed: no retry, no restart, and
// no ERROR line; what it holds counts as dropped.
func TestOutputClosedEndsQuietly(t *testing.T) {
	bin := plugin(t, "github.com/flowtap/flowtap/cmd/flowtap-sink-stdout")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r.Close()
	logs := &testutil.SyncBuffer{}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := Start(ctx, Config{Name: t.Name(), BatchSize: 1,
		Host:       host.Config{Plugin: bin, Logger: hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Info}), Names: names, Output: w},
		SinkConfig: map[string]any{"format": "json"},
		Logger:     hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Info}),
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		s.Enqueue(event(i))
	}
	select {
	case <-s.Failed():
	case <-time.After(20 * time.Second):
		t.Fatal("the sink did not end")
	}
	err = closeSink(t, s)
	if !errors.Is(err, host.ErrOutputClosed) || !errors.Is(s.Err(), host.ErrOutputClosed) {
		t.Fatalf("Close = %v, Err = %v; want host.ErrOutputClosed", err, s.Err())
	}
	c := s.Counters()
	if c.Retried != 0 || c.Restarts != 0 || c.Acked+c.Dropped != 3 || s.State() != Failed {
		t.Errorf("counters %+v, state %v; want no retry or restart, every event acked or dropped, failed", c, s.State())
	}
	if out := logs.String(); strings.Contains(out, "[ERROR]") || strings.Contains(out, "[WARN]") || !strings.Contains(out, "sink output closed") {
		t.Errorf("log:\n%s\nwant one INFO line and no warning or error", out)
	}
}

// waitState waits up to 20 s for s to reach want.
func waitState(t *testing.T, s *Delivery, want State) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); s.State() != want; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("state %v after 20 s, want %v", s.State(), want)
		}
	}
}

// TestRetryInflightInOrder: batches still in flight when a plugin is
// killed join those already failed in the retry list in the order they
// were made, whatever the order of the map that holds them.
func TestRetryInflightInOrder(t *testing.T) {
	for round := range 20 {
		s := &Delivery{inflight: map[*batchBuf]struct{}{}}
		// Batches 0, 3 and 6 failed (settled) already, the rest are in
		// flight.
		for i := range 16 {
			b := &batchBuf{order: uint64(i)}
			if i%3 == 0 && i < 7 {
				s.retry = append(s.retry, b)
			} else {
				s.inflight[b] = struct{}{}
			}
		}
		marked := 0
		s.retryInflight(func(b *batchBuf) { marked++; b.resend = true })
		if len(s.inflight) != 0 || len(s.retry) != 16 || marked != 13 {
			t.Fatalf("round %d: %d left in flight, %d to retry, %d marked; want 0, 16, 13", round, len(s.inflight), len(s.retry), marked)
		}
		for i, b := range s.retry {
			if b.order != uint64(i) {
				t.Fatalf("round %d: retry list out of order at %d: batch %d", round, i, b.order)
			}
		}
	}
}

// TestTrickleFlushedEveryInterval: events that arrive one at a time, far
// fewer than a batch, reach the plugin about every FlushInterval: the
// worker's timer is due FlushInterval after a partial batch's first event
// (and only at the next health check while nothing waits, which spares
// an idle flowtap ten wake-ups a second: figure 5 of internal/perf).
func TestTrickleFlushedEveryInterval(t *testing.T) {
	bin := plugin(t, flakyPkg)
	countFile := filepath.Join(t.TempDir(), "count")
	const interval = 50 * time.Millisecond
	s := start(t, Config{BatchSize: 1000, FlushInterval: interval}, bin, map[string]any{"count_file": countFile})
	// Let the worker find the queue empty and go idle (its timer due at
	// the health check, 5 s away): the first event must wake it.
	time.Sleep(4 * interval)
	const n = 60
	for i := 1; i <= n; i++ {
		s.Enqueue(event(i))
		time.Sleep(interval / 5)
	}
	// About 12 intervals passed: the plugin has had batches all along,
	// not one at the end.
	got, batches := counted(t, countFile)
	if len(batches) < 4 {
		t.Errorf("the plugin got %d events in %d batches while %d trickled in over %v, want a batch about every %v",
			got, len(batches), n, time.Duration(n)*interval/5, interval)
	}
	if err := closeSink(t, s); err != nil {
		t.Fatal(err)
	}
	if got, _ := counted(t, countFile); got != n {
		t.Errorf("the plugin got %d events, want %d", got, n)
	}
}

// TestQueueWakesIdleWorker: a push of fewer events than wakeAt does not
// wake a worker that has a flush timer running, but does wake one that
// went to sleep idle (and only once: the worker is then awake); sleep
// refuses while events wait, so none can slip in unnoticed.
func TestQueueWakesIdleWorker(t *testing.T) {
	var queued, dropped, lost atomic.Uint64
	q := newQueue(64, 8, DropNewest, &queued, &dropped, &lost)
	woken := func() bool {
		select {
		case <-q.wake:
			return true
		default:
			return false
		}
	}
	q.push(event(1))
	if woken() {
		t.Fatal("a busy worker was woken for 1 event of a batch of 8")
	}
	if q.sleep() {
		t.Fatal("sleep succeeded with an event waiting")
	}
	if got, _ := q.pop(nil, 8); len(got) != 1 {
		t.Fatalf("popped %d events, want 1", len(got))
	}
	if !q.sleep() {
		t.Fatal("sleep refused on an empty queue")
	}
	q.push(event(2))
	if !woken() {
		t.Fatal("the idle worker was not woken by the first event")
	}
	q.push(event(3))
	if woken() {
		t.Fatal("the worker was woken again before it slept again")
	}
	if got, _ := q.pop(nil, 8); len(got) != 2 {
		t.Fatalf("popped %d events, want 2", len(got))
	}
	if !q.sleep() {
		t.Fatal("sleep refused on an empty queue")
	}
	q.pop(nil, 8) // the worker woke (its health check), found nothing
	q.push(event(4))
	if woken() {
		t.Fatal("a worker awake again was woken for 1 event of a batch of 8")
	}
}
