// SPDX-License-Identifier: Apache-2.0

package host

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/testutil"
)

// exampleDir is the third-party example sink: a Go module of its own.
const exampleDir = "../../examples/countsink"

// goInExample runs the go command in the example's module, which
// requires this repository through a replace directive.
func goInExample(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = exampleDir
	// Its own module, not a workspace; -mod=mod lets it follow this
	// module's requirements if they moved since its go.mod was tidied.
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s in %s: %v\n%s", strings.Join(args, " "), exampleDir, err, out)
	}
}

// TestExampleSink builds the example third-party sink in its own module,
// runs its own tests (which use the SDK's harness), then runs it through
// this host as a real plugin process: Configure, Write, Close, its log
// lines in the host's log and its totals on the output the host hands it.
func TestExampleSink(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "flowtap-sink-count")
	goInExample(t, "build", "-o", bin, ".")
	goInExample(t, "test", "-count=1", "./...")

	out, err := os.Create(filepath.Join(t.TempDir(), "output"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	logs := &testutil.SyncBuffer{}
	logger := hclog.New(&hclog.LoggerOptions{Name: "host", Output: logs, Level: hclog.Info})
	ctx := t.Context()
	s, err := Start(ctx, Config{Name: "example", Plugin: bin, Logger: logger, Output: out, Names: names})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if info := s.Info(); info.Name != "count" || info.Version != "1.0.0" {
		t.Errorf("Info = %+v", info)
	}
	if err := s.Configure(ctx, map[string]any{"every": -1}); err == nil || !strings.Contains(err.Error(), "every: must be a whole number, 0 or more") {
		t.Errorf("Configure(every: -1) = %v", err)
	}
	// Configure happens once per process: start a fresh one, printing to
	// an output of its own.
	s.Close(ctx)
	out, err = os.Create(filepath.Join(t.TempDir(), "output"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	s, err = Start(ctx, Config{Name: "example", Plugin: bin, Logger: logger, Output: out, Names: names})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if err := s.Configure(ctx, map[string]any{"every": 2}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := s.Write(ctx, []events.Event{flowBegin(), flowEnd(), flowBegin()}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	var totals struct {
		Events    int            `json:"events"`
		ByName    map[string]int `json:"by_name"`
		ByDstPort map[string]int `json:"by_dst_port"`
	}
	if err := json.Unmarshal(data, &totals); err != nil {
		t.Fatalf("the sink's output %q: %v", data, err)
	}
	if totals.Events != 6 || totals.ByName["net_flow_tcp_begin"] != 4 || totals.ByDstPort["22"] != 2 {
		t.Errorf("totals %+v", totals)
	}
	// The plugin's log lines reach the host's logger (go-plugin forwards
	// them; give the last one a moment).
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "final event counts"); {
		if time.Now().After(deadline) {
			t.Fatalf("the sink's final log line did not reach the host:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
