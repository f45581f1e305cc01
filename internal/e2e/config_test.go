// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowtap/flowtap/internal/e2e/harness"
	"github.com/flowtap/flowtap/internal/privtest"
	"github.com/flowtap/flowtap/internal/testutil"
)

// jsonLinesSink builds the test sink plugin that appends each event as a
// JSON line to the file its config names, and returns its path.
func jsonLinesSink(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "jsonlines")
	testutil.BuildBinary(t, "./testdata/jsonlines", bin)
	return bin
}

// readLines parses the events a jsonlines sink wrote to path. A last
// line without its newline is one the sink is still writing (its buffered
// writer flushes at its buffer's size, mid-line): it is left for a later
// read. After the sink is closed there is none, and a line cut short
// would show as an event missing.
func readLines(t *testing.T, path string) []harness.Event {
	t.Helper()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[:i]
	} else {
		return nil
	}
	var out []harness.Event
	for line := range bytes.SplitSeq(data, []byte{'\n'}) {
		var ev harness.Event
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Fatalf("%s: bad line %q: %v", path, line, err)
		}
		out = append(out, ev)
	}
	return out
}

// listen starts a loopback server that answers every connection (see
// serve) and returns it with its port.
func listen(t *testing.T) (net.Listener, uint16) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go serve(ln)
	return ln, uint16(ln.Addr().(*net.TCPAddr).Port)
}

// dialOnce makes one connection to ln that sends data both ways and
// closes.
func dialOnce(ln net.Listener) (conn, error) {
	c, err := net.DialTimeout("tcp4", ln.Addr().String(), 5*time.Second)
	if err != nil {
		return conn{}, fmt.Errorf("dial %s: %w", ln.Addr(), err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return conn{}, err
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil {
		return conn{}, fmt.Errorf("read answer: %w", err)
	}
	return conn{client: c.LocalAddr().(*net.TCPAddr), server: c.RemoteAddr().(*net.TCPAddr)}, nil
}

// waitFor polls cond every 50ms until it holds or limit passes.
func waitFor(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// TestTwoPipelinesTwoSinks runs two pipelines with different selections
// and filters into two sinks and checks that each sink gets exactly its
// events: all of them, and nothing else.
func TestTwoPipelinesTwoSinks(t *testing.T) {
	privtest.Require(t)
	bin := harness.Binaries(t)
	plugin := jsonLinesSink(t)
	lnA, portA := listen(t)
	lnB, portB := listen(t)
	dir := sharedDir(t)
	outA, outB := filepath.Join(dir, "a.jsonl"), filepath.Join(dir, "b.jsonl")
	cfg := filepath.Join(dir, "two.yaml")
	body := fmt.Sprintf(`pipelines:
  - name: begins-a
    events: [net_flow_tcp_begin]
    filter: conn_direction=incoming and dst_port=%d
    sinks: [{plugin: %s, config: {path: %s}}]
  - name: ends-b
    events: [net_flow_tcp_end, net_flow_tcp_failed]
    filter: dst_port=%d and src=127.0.0.0/8
    sinks: [{plugin: %s, config: {path: %s}}]
`, portA, plugin, outA, portB, plugin, outB)
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	a := harness.StartWith(t, bin, harness.Options{Args: []string{"--config", cfg}, DiscardStdout: true})

	const n = 20
	connsA := dialMany(t, "tcp4", lnA, n)
	connsB := dialMany(t, "tcp4", lnB, n)
	// Each loopback connection has two local endpoints: one incoming
	// begin (of two) passes pipeline A's filter; both ends pass B's.
	waitFor(30*time.Second, func() bool { return len(readLines(t, outA)) >= n && len(readLines(t, outB)) >= 2*n })
	a.Stop(t)

	gotA, gotB := readLines(t, outA), readLines(t, outB)
	if len(gotA) != n {
		t.Errorf("sink A got %d events, want exactly %d", len(gotA), n)
	}
	wantA := map[uint16]bool{}
	for _, c := range connsA {
		wantA[uint16(c.client.Port)] = true
	}
	for _, ev := range gotA {
		f := ev.Fields
		if ev.Event != "net_flow_tcp_begin" || f.ConnDirection != "incoming" || f.DstPort != portA || !wantA[f.SrcPort] {
			t.Errorf("sink A got an event its pipeline does not select: %+v", ev)
		}
		delete(wantA, f.SrcPort)
	}
	if len(wantA) > 0 {
		t.Errorf("sink A lacks the begins of %d connections", len(wantA))
	}
	if len(gotB) != 2*n {
		t.Errorf("sink B got %d events, want exactly %d", len(gotB), 2*n)
	}
	ends := map[string]int{}
	for _, c := range connsB {
		ends[fmt.Sprintf("%d", c.client.Port)] = 0
	}
	for _, ev := range gotB {
		f := ev.Fields
		key := fmt.Sprintf("%d", f.SrcPort)
		if _, ours := ends[key]; ev.Event != "net_flow_tcp_end" || f.DstPort != portB || !ours {
			t.Errorf("sink B got an event its pipeline does not select: %+v", ev)
			continue
		}
		ends[key]++
	}
	for k, v := range ends {
		if v != 2 {
			t.Errorf("sink B has %d ends of the connection from port %s, want 2 (one per endpoint)", v, k)
		}
	}
}

// TestReloadUnderTrafficLosesNothing reloads the config with SIGHUP while
// connections are being made: first an invalid config (rejected, the old
// one keeps running), then a valid one that keeps one pipeline (same name
// and sink, its filter rewritten to an equivalent one), removes another
// and adds a third. The kept pipeline must have every event of the whole
// run, exactly once.
func TestReloadUnderTrafficLosesNothing(t *testing.T) {
	privtest.Require(t)
	bin := harness.Binaries(t)
	plugin := jsonLinesSink(t)
	ln, port := listen(t)
	dir := sharedDir(t)
	out := func(name string) string { return filepath.Join(dir, name+".jsonl") }
	cfg := filepath.Join(dir, "flowtap.yaml")
	write := func(body string) {
		t.Helper()
		// Replace the file atomically, as editors and config managers do.
		tmp := cfg + ".new"
		if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, cfg); err != nil {
			t.Fatal(err)
		}
	}
	pipelineYAML := func(name, events, filter string) string {
		return fmt.Sprintf("  - name: %s\n    events: [%s]\n    filter: %s\n    sinks: [{plugin: %s, config: {path: %s}}]\n", name, events, filter, plugin, out(name))
	}
	write("pipelines:\n" +
		pipelineYAML("keep", "net_flow_tcp_begin", fmt.Sprintf("dst_port=%d", port)) +
		pipelineYAML("gone", "net_flow_tcp_end", fmt.Sprintf("dst_port=%d", port)))
	a := harness.StartWith(t, bin, harness.Options{Args: []string{"--config", cfg}, DiscardStdout: true})
	hup := func() {
		t.Helper()
		if err := syscall.Kill(a.PID(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}

	// Traffic on loopback, to our own server only, until the test has
	// seen the reload through; bounded by maxConns in any case.
	const maxConns = 5000
	stop := make(chan struct{})
	type result struct {
		conns []conn
		err   error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		for len(r.conns) < maxConns {
			select {
			case <-stop:
				done <- r
				return
			default:
			}
			c, err := dialOnce(ln)
			if err != nil {
				r.err = err
				break
			}
			r.conns = append(r.conns, c)
			time.Sleep(2 * time.Millisecond)
		}
		done <- r
	}()

	waitFor(20*time.Second, func() bool { return len(readLines(t, out("keep"))) >= 40 })
	write("pipelines:\n" + pipelineYAML("keep", "net_flow_tcp_begin", "dst_port=nope"))
	hup()
	if !waitFor(20*time.Second, func() bool { return strings.Contains(a.Log(), "config reload rejected") }) {
		t.Fatalf("an invalid config was not rejected:\n%s", a.Log())
	}
	write("capture: {syn_timeout: 7s}\npipelines:\n" +
		pipelineYAML("keep", "net_flow_tcp_begin", fmt.Sprintf("dst_port=%d-%d", port, port)) +
		pipelineYAML("added", "net_flow_tcp_end", fmt.Sprintf("dst_port=%d", port)))
	hup()
	if !waitFor(20*time.Second, func() bool { return strings.Contains(a.Log(), "config reloaded") }) {
		t.Fatalf("the valid config was not applied:\n%s", a.Log())
	}
	// Let the added pipeline see traffic too, then stop the traffic.
	waitFor(20*time.Second, func() bool { return len(readLines(t, out("added"))) >= 20 })
	close(stop)
	var r result
	select {
	case r = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("traffic did not stop")
	}
	if r.err != nil {
		t.Fatalf("after %d connections: %v", len(r.conns), r.err)
	}
	conns := r.conns
	total := len(conns)
	waitFor(30*time.Second, func() bool { return len(readLines(t, out("keep"))) >= 2*total })
	a.Stop(t)

	// Every connection has two begins with dst_port = port (the client's
	// outgoing one and the server's incoming one), all in "keep". A
	// client port can serve several of the connections (loopback reuses
	// ports in TIME_WAIT after a second): each port has as many begins of
	// each direction as connections used it.
	want := map[string]int{}
	for _, c := range conns {
		want[fmt.Sprintf("outgoing %d", c.client.Port)]++
		want[fmt.Sprintf("incoming %d", c.client.Port)]++
	}
	got := readLines(t, out("keep"))
	seen := map[string]int{}
	for _, ev := range got {
		k := fmt.Sprintf("%s %d", ev.Fields.ConnDirection, ev.Fields.SrcPort)
		if want[k] == 0 || ev.Fields.DstPort != port {
			t.Errorf("kept pipeline got an event it does not select: %+v", ev)
		}
		seen[k]++
	}
	lost := 0
	for k, n := range want {
		switch {
		case seen[k] > n:
			t.Errorf("kept pipeline got the begin %s %d times, for %d connections", k, seen[k], n)
		case seen[k] < n:
			lost += n - seen[k]
		}
	}
	if lost > 0 {
		t.Errorf("kept pipeline has %d of the %d begins: the reload lost %d", len(got), 2*total, lost)
	}
	gone, added := readLines(t, out("gone")), readLines(t, out("added"))
	if len(gone) == 0 || len(added) == 0 {
		t.Errorf("removed pipeline got %d events before the reload and the added one %d after: want some in each", len(gone), len(added))
	}
	if len(gone)+len(added) > 2*total {
		t.Errorf("removed and added pipelines got %d ends together, more than the %d there are", len(gone)+len(added), 2*total)
	}
	if !strings.Contains(a.Log(), "restart flowtap to apply them: changed=capture.syn_timeout") {
		t.Errorf("the changed capture setting was not reported as needing a restart:\n%s", a.Log())
	}
	if !strings.Contains(a.Log(), "dst_port=nope") {
		t.Errorf("the rejected config's problem is not in the log:\n%s", a.Log())
	}
}
