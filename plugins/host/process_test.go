// SPDX-License-Identifier: Apache-2.0

package host

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/testutil"
)

const (
	stdoutPkg  = "github.com/flowtap/flowtap/cmd/flowtap-sink-stdout"
	discardPkg = "./testdata/discard"
)

// helperEnv makes the test binary act as a flowtap host (see TestMain).
const helperEnv = "FLOWTAP_HOST_TEST_HELPER_PLUGIN"

func TestMain(m *testing.M) {
	if bin := os.Getenv(helperEnv); bin != "" {
		hostHelper(bin)
		return
	}
	os.Exit(m.Run())
}

// hostHelper starts the plugin bin, prints the plugin's pid and waits to
// be killed. TestPluginDiesWithHost uses it.
func hostHelper(bin string) {
	s, err := Start(context.Background(), Config{Plugin: bin, Logger: hclog.NewNullLogger(), Stdout: io.Discard, Stderr: io.Discard})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println(s.client.ID())
	select {}
}

// buildPlugin builds a plugin binary into a temporary directory.
func buildPlugin(tb testing.TB, pkg string) string {
	tb.Helper()
	out := filepath.Join(tb.TempDir(), "flowtap-sink-"+filepath.Base(pkg))
	testutil.BuildBinary(tb, pkg, out)
	return out
}

// jsonLine is one line of the stdout sink's JSON output.
type jsonLine struct {
	Timestamp int64  `json:"timestamp"`
	Event     string `json:"event"`
	Context   struct {
		SocketCookie uint64 `json:"socket_cookie"`
		CgroupID     uint64 `json:"cgroup_id"`
		PID          uint32 `json:"pid"`
		UID          uint32 `json:"uid"`
		Comm         string `json:"comm"`
		HostName     string `json:"host_name"`
	} `json:"context"`
	Fields map[string]any `json:"fields"`
}

// TestStdoutPlugin runs the real stdout plugin: Start, Configure json,
// Write, Close, then checks every line it printed and that its log line
// reached the host's logger.
func TestStdoutPlugin(t *testing.T) {
	bin := buildPlugin(t, stdoutPkg)
	var stdout, stderr bytes.Buffer
	logs := &testutil.SyncBuffer{}
	logger := hclog.New(&hclog.LoggerOptions{Name: "host", Output: logs, Level: hclog.Info})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	s, err := Start(ctx, Config{Name: "test / stdout", Plugin: bin, Logger: logger, Stdout: &stdout, Stderr: &stderr, Names: names})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if got := s.Info(); got.Name != "stdout" || got.Version == "" {
		t.Errorf("Info() = %+v", got)
	}
	if err := s.Configure(ctx, map[string]any{"format": "json"}); err != nil {
		t.Fatal(err)
	}
	odd := flowBegin()
	odd.Context.Comm = "we\"ird\\\n\t名前\x01"
	odd.Context.HostName = "host ünïcode"
	batches := [][]events.Event{{flowBegin(), flowEnd()}, {odd}}
	for _, b := range batches {
		if err := s.Write(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}

	var want []events.Event
	for _, b := range batches {
		want = append(want, b...)
	}
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("stdout has %d lines, want %d:\n%s", len(lines), len(want), stdout.String())
	}
	for i, line := range lines {
		var got jsonLine
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", i, err, line)
		}
		ev := want[i]
		if got.Timestamp != ev.Timestamp || got.Event != names(ev.ID) {
			t.Errorf("line %d: timestamp %d event %q", i, got.Timestamp, got.Event)
		}
		c := ev.Context
		if got.Context.SocketCookie != c.SocketCookie || got.Context.CgroupID != c.CgroupID || got.Context.PID != c.PID ||
			got.Context.UID != c.UID || got.Context.Comm != c.Comm || got.Context.HostName != c.HostName {
			t.Errorf("line %d: context %+v, want %+v", i, got.Context, c)
		}
		// Compare the fields through JSON, and their order in the line.
		var wantFields []string
		for _, f := range ev.Payload.AppendFields(nil) {
			wantFields = append(wantFields, f.Name)
			var v any
			switch f.Value.Kind {
			case events.KindString:
				v = f.Value.Str
			case events.KindUint:
				v = float64(f.Value.Uint)
			case events.KindBool:
				v = f.Value.Bool
			case events.KindStrings:
				l := []any{}
				for _, s := range f.Value.Strings {
					l = append(l, s)
				}
				v = l
			}
			if gv := got.Fields[f.Name]; fmt.Sprint(gv) != fmt.Sprint(v) {
				t.Errorf("line %d: field %s = %#v, want %#v", i, f.Name, gv, v)
			}
		}
		if order := fieldOrder(t, line); fmt.Sprint(order) != fmt.Sprint(wantFields) {
			t.Errorf("line %d: field order %v, want %v", i, order, wantFields)
		}
	}
	if got := stderr.String(); got != "" {
		t.Errorf("plugin stderr = %q, want nothing (the drain token must be cut out)", got)
	}
	if l := logs.String(); !strings.Contains(l, "configured stdout sink") || !strings.Contains(l, "format=json") {
		t.Errorf("the plugin's log line did not reach the host logger:\n%s", l)
	}
}

// fieldOrder returns the keys of the "fields" object of a JSON line, in
// order.
func fieldOrder(t *testing.T, line string) []string {
	var raw struct {
		Fields json.RawMessage `json:"fields"`
	}
	if err := json.Unmarshal([]byte(line), &raw); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw.Fields))
	if _, err := dec.Token(); err != nil { // {
		t.Fatal(err)
	}
	var keys []string
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, key.(string))
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

// slowWriter is a consumer of plugin output that cannot keep up, so that
// output is still on its way (in the plugin's pipe and go-plugin's stdio
// stream) when Close is called.
type slowWriter struct{ bytes.Buffer }

func (w *slowWriter) Write(p []byte) (int, error) {
	time.Sleep(100 * time.Microsecond)
	return w.Buffer.Write(p)
}

// TestStdoutPluginOutputFile hands the plugin a file of its own: the
// stdout sink prints there directly, and nothing comes back over the
// forwarded stdout.
func TestStdoutPluginOutputFile(t *testing.T) {
	bin := buildPlugin(t, stdoutPkg)
	out, err := os.CreateTemp(t.TempDir(), "output")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	var stdout bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := Start(ctx, Config{Name: "test / stdout", Plugin: bin, Logger: hclog.NewNullLogger(), Stdout: &stdout, Output: out, Names: names})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if err := s.Configure(ctx, map[string]any{"format": "json"}); err != nil {
		t.Fatal(err)
	}
	const n = 1000
	batch := make([]events.Event, 0, n)
	for i := 0; i < n; i++ {
		batch = append(batch, flowBegin())
	}
	if err := s.Write(ctx, batch); err != nil {
		t.Fatal(err)
	}
	// Acknowledged output is complete: no need to wait for Close.
	data, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	if got := bytes.Count(data, []byte("\n")); got != n {
		t.Fatalf("output file has %d lines after an acknowledged batch of %d", got, n)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if stdout.Len() != 0 {
		t.Fatalf("forwarded stdout got %d bytes; the output file should have taken them: %q", stdout.Len(), stdout.String())
	}
}

// TestStdoutPluginFlushedAtClose writes output faster than the host
// consumes it and checks that all of it has arrived when Close returns.
// go-plugin alone drops what is still in flight when the plugin shuts down.
func TestStdoutPluginFlushedAtClose(t *testing.T) {
	bin := buildPlugin(t, stdoutPkg)
	for _, format := range []string{"table", "json"} {
		t.Run(format, func(t *testing.T) {
			var stdout slowWriter
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			s, err := Start(ctx, Config{Plugin: bin, Logger: hclog.NewNullLogger(), Stdout: &stdout, Names: names})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Configure(ctx, map[string]any{"format": format}); err != nil {
				t.Fatal(err)
			}
			const batches, perBatch = 40, 250
			batch := make([]events.Event, perBatch)
			for i := range batch {
				batch[i] = flowBegin()
			}
			for range batches {
				if err := s.Write(ctx, batch); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(ctx); err != nil {
				t.Fatal(err)
			}
			want := batches * perBatch
			if format == "table" {
				want++ // the header
			}
			if n := bytes.Count(stdout.Bytes(), []byte("\n")); n != want {
				t.Errorf("%d lines arrived before Close returned, want %d", n, want)
			}
			if !bytes.HasSuffix(stdout.Bytes(), []byte("\n")) {
				t.Errorf("output ends mid-line: %q", stdout.Bytes()[max(0, stdout.Len()-80):])
			}
		})
	}
}

func TestStdoutPluginConfigErrors(t *testing.T) {
	bin := buildPlugin(t, stdoutPkg)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := Start(ctx, Config{Name: "p / stdout", Plugin: bin, Logger: hclog.NewNullLogger(), Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	err = s.Configure(ctx, map[string]any{"format": "xml", "colour": true})
	var errs ConfigErrors
	if !errors.As(err, &errs) || len(errs) != 2 {
		t.Fatalf("Configure = %v, want two ConfigErrors", err)
	}
	want := `configure sink "p / stdout": colour: unknown key (valid keys: format, template); format: unknown format "xml" (valid: json, table, template)`
	if err.Error() != want {
		t.Errorf("error = %q\nwant      %q", err, want)
	}
}

// TestPluginWriteRejected: a rejection crosses a real process boundary
// as ErrRejected with the sink's message.
func TestPluginWriteRejected(t *testing.T) {
	bin := buildPlugin(t, discardPkg)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := Start(ctx, Config{Name: "discard", Plugin: bin, Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if err := s.Configure(ctx, map[string]any{"reject": "queue full"}); err != nil {
		t.Fatal(err)
	}
	err = s.Write(ctx, []events.Event{flowBegin()})
	if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), `sink "discard"`) || !strings.Contains(err.Error(), "queue full") {
		t.Errorf("Write = %v, want a rejection naming the sink and its reason", err)
	}
}

// TestPluginCrash: when the plugin process dies, Write says so instead of
// hanging.
func TestPluginCrash(t *testing.T) {
	bin := buildPlugin(t, discardPkg)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := Start(ctx, Config{Name: "discard", Plugin: bin, Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if err := s.Configure(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, []events.Event{flowBegin()}); err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(s.client.ID())
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !s.client.Exited() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	err = s.Write(ctx, []events.Event{flowBegin()})
	if err == nil || errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "plugin process exited") {
		t.Errorf("Write to a dead plugin = %v, want an error saying the process exited", err)
	}
	if err := s.Close(ctx); err == nil {
		t.Error("Close of a dead plugin reported no error")
	}
}

func TestStartMissingBinary(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Start(t.Context(), Config{Name: "p / nosuch", Plugin: "nosuch"})
	if err == nil {
		t.Fatal("Start of a missing built-in sink succeeded")
	}
	for _, want := range []string{`start sink "p / nosuch"`, `"flowtap-sink-nosuch"`, "$PATH", "make build"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	_, err = Start(t.Context(), Config{Plugin: "/nonexistent/flowtap-sink-x"})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/flowtap-sink-x") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Start of a missing path = %v", err)
	}
}

// TestStartNotAPlugin: a binary that is not a plugin fails the handshake
// quickly, with an error naming it.
func TestStartNotAPlugin(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err := Start(ctx, Config{Name: "p / bogus", Plugin: "/bin/true", Logger: hclog.NewNullLogger()})
	if err == nil {
		t.Fatal("Start of /bin/true succeeded")
	}
	for _, want := range []string{`start sink "p / bogus"`, "/bin/true", "handshake"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Start took %v to fail", d)
	}
}

// TestStartTimeout: a binary that never completes the handshake is killed
// when the context ends.
func TestStartTimeout(t *testing.T) {
	script := filepath.Join(t.TempDir(), "hang")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Start(ctx, Config{Name: "hang", Plugin: script, Logger: hclog.NewNullLogger()})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `"hang"`) {
		t.Errorf("Start = %v, want DeadlineExceeded naming the sink", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Start took %v to give up", d)
	}
}

// TestPluginDiesWithHost kills a host process with SIGKILL and checks
// that its plugin dies too (Pdeathsig).
func TestPluginDiesWithHost(t *testing.T) {
	bin := buildPlugin(t, discardPkg)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+bin)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("helper: %v (%q)", err, line)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("helper said %q", line)
	}
	if !alive(pid) {
		t.Fatalf("plugin %d is not running", pid)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	for deadline := time.Now().Add(5 * time.Second); alive(pid); {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("plugin %d outlived its host", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid is a running (not zombie) process.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] != 'Z' && stat[i+2] != 'X'
}

// TestStartWhateverTheDescriptors starts the stdout plugin with flowtap's
// own standard output as its output (fd 1: the child's set-up moves it to
// fd 3) while 0 to 40 more descriptors are open, so that the pipes of the
// plugin's standard streams and the binary's descriptor land at every
// position relative to each other. The child's set-up moves descriptors to
// above the highest it is given; it once moved the output onto the
// binary's descriptor, and the exec failed with "permission denied".
func TestStartWhateverTheDescriptors(t *testing.T) {
	bin := buildPlugin(t, stdoutPkg)
	var held []*os.File
	defer func() {
		for _, f := range held {
			f.Close()
		}
	}()
	for extra := 0; extra <= 40; extra++ {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		s, err := Start(ctx, Config{Name: "test / stdout", Plugin: bin, Logger: hclog.NewNullLogger(), Output: os.Stdout, Names: names})
		if err != nil {
			cancel()
			t.Fatalf("with %d more descriptors open: %v", extra, err)
		}
		if err := s.Close(ctx); err != nil {
			t.Errorf("with %d more descriptors open: close: %v", extra, err)
		}
		cancel()
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, f)
	}
}
