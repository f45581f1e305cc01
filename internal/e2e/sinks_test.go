// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowtap/flowtap/internal/e2e/harness"
	"github.com/flowtap/flowtap/internal/privtest"
	"github.com/flowtap/flowtap/internal/testutil"
)

// flakyPlugin builds the supervisor's test plugin (plugins/supervise/
// testdata/flaky) next to the other binaries' directory's name, in a
// directory of the test's.
func flakyPlugin(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "flowtap-sink-flaky")
	testutil.BuildBinary(t, "github.com/flowtap/flowtap/plugins/supervise/testdata/flaky", out)
	return out
}

// writeConfig writes a pipeline config and returns its path.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "flowtap.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// loopback starts a loopback server for the test and returns its
// listener.
func loopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go serve(ln)
	return ln
}

// fileEnds returns the client ports of the net_flow_tcp_end events to
// port in a file sink's output.
func fileEnds(t *testing.T, path string, port int) map[int]int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ends := map[int]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev harness.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("file sink line %q: %v", sc.Text(), err)
		}
		if ev.Event == "net_flow_tcp_end" && int(ev.Fields.DstPort) == port && ev.Fields.ConnDirection == "outgoing" {
			ends[int(ev.Fields.SrcPort)]++
		}
	}
	return ends
}

// TestSinksGracefulShutdown: on SIGTERM flowtap drains: the connections'
// ends (emitted as the capture stops) reach the file sink, every sink
// reports its counters, and flowtap exits 0.
func TestSinksGracefulShutdown(t *testing.T) {
	privtest.Require(t)
	bin := harness.Binaries(t)
	out := filepath.Join(sharedDir(t), "flows.jsonl")
	cfg := writeConfig(t, fmt.Sprintf(`
pipelines:
  - name: archive
    events: [flows]
    sinks:
      - plugin: file
        config: {path: %q, fsync: batch}
      - plugin: stdout
        config: {format: json}
        queue: {policy: drop_oldest}
`, out))
	a := harness.StartWith(t, bin, harness.Options{Args: []string{"--config", cfg}, DiscardStdout: true})
	ln := loopback(t)
	conns := dialMany(t, "tcp4", ln, 20)
	if err := a.Signal(syscall.SIGTERM, 60*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, a.Log())
	}
	ends := fileEnds(t, out, ln.Addr().(*net.TCPAddr).Port)
	for _, c := range conns {
		if ends[c.client.Port] == 0 {
			t.Errorf("no end for the connection from port %d in the file", c.client.Port)
		}
	}
	log := a.Log()
	for _, sink := range []string{`sink 0 (file)`, `sink 1 (stdout)`} {
		if !strings.Contains(log, "sink counters: sink=\"pipeline \\\"archive\\\" "+sink) {
			t.Errorf("no counters logged for %s:\n%s", sink, log)
		}
	}
	if strings.Contains(log, "failed=true") {
		t.Errorf("a sink failed:\n%s", log)
	}
}

// children returns the processes whose parent is pid.
func children(pid int) []int {
	dirs, _ := os.ReadDir("/proc")
	var out []int
	for _, d := range dirs {
		child, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		if err != nil {
			continue
		}
		s := string(stat)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}

// running reports whether pid is a live (not zombie) process.
func running(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

// TestSinkPluginsDieWithFlowtap kills flowtap with SIGKILL: within 5 s
// none of its sink plugins is left.
func TestSinkPluginsDieWithFlowtap(t *testing.T) {
	privtest.Require(t)
	bin := harness.Binaries(t)
	cfg := writeConfig(t, fmt.Sprintf(`
pipelines:
  - name: p
    events: [flows]
    sinks:
      - plugin: file
        config: {path: %q}
      - plugin: stdout
`, filepath.Join(sharedDir(t), "flows.jsonl")))
	a := harness.StartWith(t, bin, harness.Options{Args: []string{"--config", cfg}, DiscardStdout: true})
	plugins := children(a.PID())
	if len(plugins) != 2 {
		t.Fatalf("flowtap has %d child processes %v, want its 2 sink plugins", len(plugins), plugins)
	}
	if err := syscall.Kill(a.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range plugins {
		for running(pid) {
			if time.Now().After(deadline) {
				syscall.Kill(pid, syscall.SIGKILL)
				t.Fatalf("sink plugin %d outlived flowtap by 5 s", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestSinkOnFailure: a sink plugin that crashes on every batch fails
// after its restarts; with on_failure stop flowtap exits 1 with an error
// naming the sink, with disable the other sink goes on and flowtap exits
// 0 when stopped.
func TestSinkOnFailure(t *testing.T) {
	privtest.Require(t)
	bin := harness.Binaries(t)
	flaky := flakyPlugin(t)
	for _, policy := range []string{"stop", "disable"} {
		t.Run(policy, func(t *testing.T) {
			out := filepath.Join(sharedDir(t), "flows.jsonl")
			cfg := writeConfig(t, fmt.Sprintf(`
pipelines:
  - name: p
    events: [flows]
    sinks:
      - plugin: %s
        config: {exit_after: 1}
        restart: {max_attempts: 2, initial_backoff: 10ms}
        on_failure: %s
      - plugin: file
        config: {path: %q}
`, flaky, policy, out))
			a := harness.StartWith(t, bin, harness.Options{Args: []string{"--config", cfg}, DiscardStdout: true})
			ln := loopback(t)
			dialMany(t, "tcp4", ln, 5)
			if policy == "stop" {
				err := a.Wait(60 * time.Second)
				var exit *exec.ExitError
				if !errors.As(err, &exit) || exit.ExitCode() != 1 {
					t.Fatalf("flowtap: %v, want exit status 1\n%s", err, a.Log())
				}
				log := a.Log()
				for _, want := range []string{`flowtap: sink pipeline "p" sink 0`, "plugin failed 3 times in a row (max_attempts 2), giving up"} {
					if !strings.Contains(log, want) {
						t.Errorf("log lacks %q:\n%s", want, log)
					}
				}
				return
			}
			deadline := time.Now().Add(60 * time.Second)
			for !strings.Contains(a.Log(), "sink disabled after repeated failures") {
				if time.Now().After(deadline) {
					t.Fatalf("the sink was not disabled:\n%s", a.Log())
				}
				time.Sleep(20 * time.Millisecond)
			}
			conns := dialMany(t, "tcp4", ln, 5)
			if err := a.Signal(syscall.SIGTERM, 60*time.Second); err != nil {
				t.Fatalf("%v\n%s", err, a.Log())
			}
			ends := fileEnds(t, out, ln.Addr().(*net.TCPAddr).Port)
			for _, c := range conns {
				if ends[c.client.Port] == 0 {
					t.Errorf("the file sink lacks the end of the connection from port %d", c.client.Port)
				}
			}
		})
	}
}
