// SPDX-License-Identifier: Apache-2.0

package configs

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/testutil"
)

func TestDefault(t *testing.T) {
	c, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Pipelines) != 1 {
		t.Fatalf("default has %d pipelines", len(c.Pipelines))
	}
	p := c.Pipelines[0]
	if !reflect.DeepEqual(p.Events, []string{"flows"}) || len(p.Sinks) != 1 || p.Sinks[0].Plugin != "stdout" {
		t.Fatalf("default pipeline = %+v", p)
	}
}

func write(t *testing.T, name, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadFormats(t *testing.T) {
	files := map[string]string{
		"a.yaml": "pipelines:\n  - name: p\n    events: [net_flow_tcp_begin]\n    sinks:\n      - plugin: stdout\n        config: {format: json}\n",
		"a.toml": "[[pipelines]]\nname = \"p\"\nevents = [\"net_flow_tcp_begin\"]\n[[pipelines.sinks]]\nplugin = \"stdout\"\n[pipelines.sinks.config]\nformat = \"json\"\n",
		"a.json": `{"pipelines":[{"name":"p","events":["net_flow_tcp_begin"],"sinks":[{"plugin":"stdout","config":{"format":"json"}}]}]}`,
	}
	for name, body := range files {
		t.Run(name, func(t *testing.T) {
			c, err := Load(write(t, name, body))
			if err != nil {
				t.Fatal(err)
			}
			want := []Pipeline{{Name: "p", Events: []string{"net_flow_tcp_begin"}, Sinks: []SinkConfig{{Plugin: "stdout", Config: map[string]any{"format": "json"}}}}}
			if !reflect.DeepEqual(c.Pipelines, want) {
				t.Fatalf("got %+v, want %+v", c.Pipelines, want)
			}
		})
	}
}

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestValidateGolden loads every config in testdata/validate, checks it
// against the built-in catalogue, and compares all the problems reported
// with <name>.golden: every message names the file, the pipeline, the key
// and what would be valid.
func TestValidateGolden(t *testing.T) {
	cat, err := events.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join("testdata", "validate", "*.*"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, path := range files {
		if strings.HasSuffix(path, ".golden") {
			continue
		}
		n++
		t.Run(filepath.Base(path), func(t *testing.T) {
			var got string
			// Load's problems come back from Check, with the later
			// rounds': one run reports everything.
			c, err := Load(path)
			if c != nil {
				err = c.Check(cat)
			}
			if err == nil {
				got = "valid\n"
			} else {
				got = err.Error() + "\n"
			}
			testutil.Golden(t, path+".golden", got, *update)
		})
	}
	if n < 5 {
		t.Fatalf("only %d configs in testdata/validate", n)
	}
}

func TestLoadErrorsNameTheFile(t *testing.T) {
	for _, tt := range []struct{ file, body, want string }{
		{"x.ini", "", `unsupported extension ".ini"`},
		{"x.yaml", "pipelines: [\n", "x.yaml:1:12: YAML syntax error: sequence end token ']' not found"},
		{"x.toml", "pipelines = [\n", "read config"},
	} {
		path := write(t, tt.file, tt.body)
		_, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("Load(%s) error = %v, want %q and the path", tt.file, err, tt.want)
		}

	}
	// The path once: the *fs.PathError's own text is not repeated.
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	if _, err := Load(missing); err == nil || err.Error() != "read config "+missing+": no such file or directory" {
		t.Errorf("missing file error = %v", err)
	}
}

func TestOverrides(t *testing.T) {
	c, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	c.OverrideEvents([]string{"net_flow_tcp_end"})
	if !reflect.DeepEqual(c.Pipelines[0].Events, []string{"net_flow_tcp_end"}) {
		t.Fatalf("events = %v", c.Pipelines[0].Events)
	}
	if !c.SetStdoutFormat("json") || c.Pipelines[0].Sinks[0].Config["format"] != "json" {
		t.Fatalf("format not set: %+v", c.Pipelines[0].Sinks[0])
	}
	c.Pipelines[0].Sinks[0].Plugin = "/opt/other"
	if c.SetStdoutFormat("table") {
		t.Fatal("SetStdoutFormat found a stdout sink that is not there")
	}
}

func FuzzLoadYAML(f *testing.F) {
	f.Add(string(defaultYAML))
	f.Add("pipelines:\n  - {name: p, events: [flows], sinks: [{plugin: stdout}]}\n")
	f.Add("pipelines: 3")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, body string) {
		path := filepath.Join(dir, "fuzz.yaml")
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(path)
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("loaded config fails validation: %v", err)
		}
	})
}

func TestLoadFullShape(t *testing.T) {
	body := `capture:
  cgroup: /sys/fs/cgroup/unified
  ring_buffer_size: 8388608
  flow_table_size: 1000
  flow_idle_timeout: 2m
  syn_timeout: 5s
  dns: {enabled: false, cache_size: 5000}
log: {level: debug, format: json}
pipelines:
  - name: p
    events: [flows]
    filter: "dst_port=443"
    sinks:
      - plugin: stdout
        sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
        queue: {size: 100, policy: drop_oldest}
        restart: {max_attempts: 3, initial_backoff: 100ms, max_backoff: 2s}
        on_failure: disable
`
	c, err := Load(write(t, "full.yaml", body))
	if err != nil {
		t.Fatal(err)
	}
	off := false
	wantCapture := Capture{Cgroup: "/sys/fs/cgroup/unified", RingBufferSize: 8 << 20, FlowTableSize: 1000,
		FlowIdleTimeout: 2 * time.Minute, SYNTimeout: 5 * time.Second, DNS: DNS{Enabled: &off, CacheSize: 5000}}
	if !reflect.DeepEqual(c.Capture, wantCapture) {
		t.Errorf("capture = %+v, want %+v", c.Capture, wantCapture)
	}
	if c.Log != (Log{Level: "debug", Format: "json"}) {
		t.Errorf("log = %+v", c.Log)
	}
	s := c.Pipelines[0].Sinks[0]
	wantSink := SinkConfig{Plugin: "stdout", SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", Queue: Queue{Size: 100, Policy: "drop_oldest"},
		Restart: Restart{MaxAttempts: 3, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second}, OnFailure: "disable"}
	if !reflect.DeepEqual(s, wantSink) || c.Pipelines[0].Filter != "dst_port=443" {
		t.Errorf("pipeline = %+v", c.Pipelines[0])
	}
}

// TestRelativePluginPath: a plugin path with a "/" that is not absolute is
// relative to the config file's directory, never to the working
// directory; sink names and absolute paths stay as they are.
func TestRelativePluginPath(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(t.TempDir())
	path := filepath.Join(dir, "c.yaml")
	body := "pipelines: [{name: p, events: [flows], sinks: [{plugin: ./evil}, {plugin: sinks/x}, {plugin: stdout}, {plugin: /opt/y}]}]\n"
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range c.Pipelines[0].Sinks {
		got = append(got, s.Plugin)
	}
	want := []string{filepath.Join(dir, "evil"), filepath.Join(dir, "sinks/x"), "stdout", "/opt/y"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("plugins %v, want %v", got, want)
	}
}

// TestWorldWritableConfigRefused: as root, a config file others may write
// is refused, with the fix; group-writable is the owner's business.
func TestWorldWritableConfigRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the rule holds for root only")
	}
	path := write(t, "c.yaml", "pipelines: [{name: p, events: [flows], sinks: [{plugin: stdout}]}]\n")
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if c != nil || err == nil || !strings.Contains(err.Error(), "writable by others (mode 0666)") || !strings.Contains(err.Error(), "chmod o-w "+path) {
		t.Errorf("Load of a world-writable config = %v, %v", c, err)
	}
	if err := os.Chmod(path, 0o664); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err != nil {
		t.Errorf("a group-writable config refused: %v", err)
	}
}
