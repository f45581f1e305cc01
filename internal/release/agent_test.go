// SPDX-License-Identifier: Apache-2.0

package release

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// agent is a running 'flowtap run --output json', however it was started
// (in a container, under strace): its stdout parsed into events, its log
// kept for failure messages.
type agent struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	lines  []string
	logs   bytes.Buffer
	events chan map[string]any
	exited chan error
}

// startAgent starts cmd and returns once flowtap logs "capture started".
// The process is killed when the test ends, if still running.
func startAgent(t *testing.T, cmd *exec.Cmd) *agent {
	t.Helper()
	a := &agent{cmd: cmd, events: make(chan map[string]any, 4096), exited: make(chan error, 1)}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderrR, stderrW := io.Pipe()
	cmd.Stderr = stderrW
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.exited <- cmd.Wait(); stderrW.Close() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderrR)
		var once sync.Once
		for sc.Scan() {
			a.mu.Lock()
			a.logs.WriteString(sc.Text() + "\n")
			a.mu.Unlock()
			if strings.Contains(sc.Text(), "capture started") {
				once.Do(func() { close(ready) })
			}
		}
	}()
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			a.mu.Lock()
			a.lines = append(a.lines, sc.Text())
			a.mu.Unlock()
			var ev map[string]any
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				select {
				case a.events <- ev:
				default: // a test waits for a few events; the rest may go
				}
			}
		}
		close(a.events)
	}()
	select {
	case <-ready:
	case err := <-a.exited:
		t.Fatalf("flowtap exited before the capture started: %v\n%s", err, a.dump())
	case <-time.After(90 * time.Second):
		t.Fatalf("no 'capture started' within 90 s\n%s", a.dump())
	}
	return a
}

// waitLog waits up to limit for a log line containing s.
func (a *agent) waitLog(t *testing.T, s string, limit time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(limit); ; time.Sleep(20 * time.Millisecond) {
		a.mu.Lock()
		found := strings.Contains(a.logs.String(), s)
		a.mu.Unlock()
		if found {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log within %v\n%s", s, limit, a.dump())
		}
	}
}

func (a *agent) dump() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return fmt.Sprintf("flowtap's log:\n%s\nits output:\n%s", a.logs.String(), strings.Join(a.lines, "\n"))
}

// waitFlow waits for the outgoing begin and an end of the connection to
// port, and returns the begin. The begin's pid must be this test's (the
// client side is this process).
func (a *agent) waitFlow(t *testing.T, port int) map[string]any {
	t.Helper()
	var begin map[string]any
	end := false
	deadline := time.After(30 * time.Second)
	for begin == nil || !end {
		select {
		case ev, ok := <-a.events:
			if !ok {
				t.Fatalf("flowtap's output ended before the connection's events\n%s", a.dump())
			}
			fields, _ := ev["fields"].(map[string]any)
			if fields == nil || fields["dst_port"] != float64(port) {
				continue
			}
			switch ev["event"] {
			case "net_flow_tcp_begin":
				if fields["conn_direction"] == "outgoing" {
					begin = ev
				}
			case "net_flow_tcp_end":
				end = true
			}
		case <-deadline:
			t.Fatalf("no begin and end for the loopback connection to port %d within 30 s (begin %v, end %v)\n%s", port, begin != nil, end, a.dump())
		}
	}
	if ctx, _ := begin["context"].(map[string]any); ctx["pid"] != float64(os.Getpid()) {
		t.Errorf("outgoing begin attributed to pid %v, want this test's %d", ctx["pid"], os.Getpid())
	}
	return begin
}

// stop sends SIGINT to pid (flowtap, or a process that passes it on) and
// expects the command to exit 0 within a minute: flowtap drains its
// sinks and ends.
func (a *agent) stop(t *testing.T, pid int) {
	t.Helper()
	syscall.Kill(pid, syscall.SIGINT)
	select {
	case err := <-a.exited:
		if err != nil {
			t.Errorf("flowtap did not exit 0 after SIGINT: %v\n%s", err, a.dump())
		}
	case <-time.After(60 * time.Second):
		t.Errorf("flowtap did not exit within 60 s of SIGINT\n%s", a.dump())
	}
}
