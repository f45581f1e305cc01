// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/buildinfo"
	"github.com/flowtap/flowtap/metrics"
	"github.com/flowtap/flowtap/pipeline"
	"github.com/flowtap/flowtap/plugins/sdk"
)

// The CLI's messages, pinned: help texts, errors blamed where they
// belong, suggestions, completion and the status summary.

// goIdentifier is a qualified Go name (pkg.Name), which help texts must
// not show in place of a value.
var goIdentifier = regexp.MustCompile(`\b[a-z][a-z0-9]*\.[A-Z][A-Za-z0-9]*\b`)

// TestHelpGolden pins every command's --help (testdata/help.golden) and
// checks that none shows a Go identifier where a number belongs.
func TestHelpGolden(t *testing.T) {
	var all strings.Builder
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		if c.Hidden || c.Name() == "help" {
			return
		}
		out, err := run(t, append(append([]string{}, path...), "--help")...)
		if err != nil {
			t.Fatalf("flowtap %s --help: %v", strings.Join(path, " "), err)
		}
		fmt.Fprintf(&all, "$ %s --help\n%s\n", strings.Join(append([]string{"flowtap"}, path...), " "), out)
		if m := goIdentifier.FindString(out); m != "" {
			t.Errorf("flowtap %s --help shows the Go identifier %s", strings.Join(path, " "), m)
		}
		for _, sub := range c.Commands() {
			walk(sub, append(path, sub.Name()))
		}
	}
	walk(newRoot(nil), nil)
	// The versions change with their own releases: the golden file holds
	// where they are printed, as numbers, not which.
	got := strings.ReplaceAll(all.String(), fmt.Sprintf("version (%d: ", sdk.ProtocolVersion), "version (PROTOCOL: ")
	got = strings.ReplaceAll(got, fmt.Sprintf("schema version (%s)", events.SchemaVersion), "schema version (SCHEMA)")
	golden(t, "help.golden", got)
}

// TestVersionFlag: --version prints what 'flowtap version' does, the
// version alone on the first line.
func TestVersionFlag(t *testing.T) {
	flag, err := run(t, "--version")
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := run(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(flag, "\n")
	if flag != cmd || first != "flowtap "+buildinfo.Get().Version {
		t.Errorf("--version:\n%s\nversion:\n%s", flag, cmd)
	}
}

// TestFlagProblemsBlamedOnCommandLine: a bad --events, --filter or other
// flag is the command line's problem, named by the flag, once; not the
// file's or the embedded default's.
func TestFlagProblemsBlamedOnCommandLine(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "two.yaml")
	body := "pipelines:\n  - {name: a, events: [flows], sinks: [{plugin: stdout}]}\n" +
		"  - {name: b, events: [flows], filter: dst_port=443, sinks: [{plugin: stdout}]}\n"
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"explain", "--events", "flowz"}, `invalid config: 1 problem:
  command line: --events: unknown event or set "flowz": did you mean "flows"? (see 'flowtap list')`},
		{[]string{"explain", "--config", cfg, "--events", "flows,-net_flow_tcp_edn"}, `invalid config: 1 problem:
  command line: --events: unknown event or set "net_flow_tcp_edn": did you mean "net_flow_tcp_end"? (see 'flowtap list')`},
		// Pipeline a has no filter of its own: the problem is --filter's;
		// b's filter is its own and the command line's together.
		{[]string{"explain", "--config", cfg, "--filter", "dst_prt=1"}, `invalid config: 2 problems:
  command line: --filter: filter "dst_prt=1": at 1: field "dst_prt": no such field in the selected events (net_flow_tcp_begin, net_flow_tcp_end, net_flow_tcp_failed): did you mean "dst_port"?`},
		// run reads and checks the config before it starts anything.
		{[]string{"run", "--stats-interval", "-1s"}, `invalid config: 1 problem:
  command line: --stats-interval: -1s is negative: give a duration such as 1m, or 0 to log no counters`},
		{[]string{"run", "--metrics-addr", "9464"}, `invalid config: 1 problem:
  command line: --metrics-addr: "9464" is not HOST:PORT: write e.g. 127.0.0.1:9464, or :9464 for every address`},
	} {
		_, err := run(t, tc.args...)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("flowtap %s:\n%v\nwant (a prefix):\n%s", strings.Join(tc.args, " "), err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "embedded default") {
			t.Errorf("flowtap %s blames the embedded default: %v", strings.Join(tc.args, " "), err)
		}
	}
}

// TestManSuggestsEvents: 'flowtap man' takes an event, so it suggests
// events: a set's name gets the set's events, never a set.
func TestManSuggestsEvents(t *testing.T) {
	for arg, want := range map[string]string{
		"flows":             `"flows" is a set of events, not an event: its events are net_flow_tcp_begin, net_flow_tcp_end, net_flow_tcp_failed (see 'flowtap man EVENT' for each)`,
		"flowz":             `no event "flowz": the set "flows" is close; its events are net_flow_tcp_begin, net_flow_tcp_end, net_flow_tcp_failed (see 'flowtap list')`,
		"net_flow_tcp_bgin": `no event "net_flow_tcp_bgin": did you mean "net_flow_tcp_begin"? (see 'flowtap list')`,
		"xyz":               `no event "xyz" (see 'flowtap list' for the events)`,
	} {
		if _, err := run(t, "man", arg); err == nil || err.Error() != want {
			t.Errorf("flowtap man %s: %v\nwant: %s", arg, err, want)
		}
	}
}

// TestCompletion: the shell completion of event and set names (with '-'
// and commas), sink names and flag values, through cobra's __complete.
func TestCompletion(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"man", "net_flow_tcp_e"}, "net_flow_tcp_end\tA TCP connection that began ended\n:4\n"},
		{[]string{"run", "--events", "flows,-net_flow_tcp_f"}, "flows,-net_flow_tcp_failed\tA TCP connection attempt that never established, as one local endpoint saw it\n:6\n"},
		{[]string{"run", "--events", "net"}, "network_events\tset of events\nnet_packet_flow_base\t"},
		{[]string{"list", "--sinks", "n"}, "nats\tone JSON message per event to NATS JetStream or core NATS\n:4\n"},
		{[]string{"list", "--sinks", "stdout", "f"}, "file\tJSON lines appended to a file, rotated by size and age\n:4\n"},
		{[]string{"list", ""}, ":4\n"},
		{[]string{"run", "--output", ""}, "json\ntable\n:4\n"},
		{[]string{"config", "validate", ""}, "yaml\nyml\ntoml\njson\n:8\n"},
	} {
		out, err := run(t, append([]string{cobra.ShellCompRequestCmd}, tc.args...)...)
		if err != nil {
			t.Fatal(err)
		}
		out = completions(out)
		if !strings.HasPrefix(out, tc.want) {
			t.Errorf("completion of %q:\n%q\nwant (a prefix):\n%q", tc.args, out, tc.want)
		}
	}
}

// completions cuts __complete's output after its directive line (":N"),
// dropping the note cobra writes to stderr, which run captures too.
func completions(out string) string {
	start := 0
	if !strings.HasPrefix(out, ":") {
		start = strings.Index(out, "\n:") + 1
	}
	end := strings.IndexByte(out[start:], '\n')
	if start == 0 && !strings.HasPrefix(out, ":") || end < 0 {
		return out
	}
	return out[:start+end+1]
}

// TestListSinksByName: 'flowtap list --sinks NAME' shows that sink only;
// an unknown name is an error with the closest one.
func TestListSinksByName(t *testing.T) {
	out, err := run(t, "list", "--sinks", "webhook")
	if err != nil || !strings.HasPrefix(out, "webhook: ") || strings.Contains(out, "stdout:") {
		t.Errorf("list --sinks webhook: %v\n%s", err, out)
	}
	_, err = run(t, "list", "--sinks", "stdot")
	if want := `no built-in sink "stdot": did you mean "stdout"? (built-in: stdout, file, webhook, nats)`; err == nil || err.Error() != want {
		t.Errorf("list --sinks stdot: %v, want %s", err, want)
	}
	if _, err := run(t, "list", "stdout"); err == nil {
		t.Error("list without --sinks takes an argument")
	}
}

// TestStatusOfRealEndpoint: 'flowtap status' against a real metrics
// endpoint (served as 'flowtap run' serves it) of a run that has not
// started: it prints the summary, says why it is not ready, and exits 2.
// The end-to-end tests ask a running agent.
func TestStatusOfRealEndpoint(t *testing.T) {
	h, err := metrics.Handler(pipeline.NewMonitor(), buildinfo.Info{Version: "v1.2.3", Commit: "c0ffee"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := metrics.Listen("127.0.0.1:0", h)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	out, err := run(t, "status", "--addr", srv.Addr().String(), "--interval", "0")
	var exit exitError
	if !errors.As(err, &exit) || exit.code != 2 {
		t.Errorf("status of a starting agent: error %v, want exit status 2", err)
	}
	// Uptime is the test process's: keep it out of the comparison.
	out = regexp.MustCompile(`(?m)^uptime:.*$`).ReplaceAllString(out, "uptime: X")
	want := fmt.Sprintf(`flowtap v1.2.3 at http://%s: not ready (starting)
  not ready: capture: starting: the capture is not attached yet
uptime: X
events total:  0
records lost:  0
sinks:         none
`, srv.Addr())
	if out != want {
		t.Errorf("status:\n%s\nwant:\n%s", out, want)
	}
	if _, err := run(t, "status", "--addr", "127.0.0.1:1", "--interval", "0"); err == nil || !strings.Contains(err.Error(), "is it running with --metrics-addr?") {
		t.Errorf("status of nothing: %v", err)
	}
}

// TestWriteStatus pins the summary of a running agent.
func TestWriteStatus(t *testing.T) {
	st := metrics.Status{URL: "http://127.0.0.1:9464", Version: "v0.1.0", Uptime: 3723 * time.Second,
		Readiness: metrics.Readiness{Status: "not ready", Phase: "running", NotReady: []pipeline.NotReady{
			{Component: "sink", Pipeline: "alerts", Sink: "webhook", State: "retrying", Reason: "its plugin failed: restarting it or resending its batches"}}},
		Window: time.Second, EventsPerSecond: 1234.5,
		Events: []metrics.EventRate{{Name: "net_packet_flow_base", Total: 900000, PerSecond: 800}, {Name: "net_flow_tcp_begin", Total: 120000, PerSecond: 217.25},
			{Name: "net_flow_tcp_end", Total: 119000, PerSecond: 217.25}, {Name: "flowtap_records_lost", Total: 3}},
		RecordsLost: 12345, LostPerSecond: 0.5, FlowEntries: 1234, FlowCapacity: 65536,
		Sinks: []metrics.SinkState{
			{Pipeline: "default", Sink: "stdout", State: "up", QueueDepth: 12, QueueCapacity: 8192, Acked: 239000},
			{Pipeline: "alerts", Sink: "webhook", State: "retrying", QueueDepth: 8192, QueueCapacity: 8192, Acked: 10, Dropped: 4200, Restarts: 3}},
	}
	var b strings.Builder
	if err := writeStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	golden(t, "status.golden", b.String())
}
