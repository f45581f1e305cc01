package configs

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
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
			want := []Pipeline{{Name: "p", Events: []string{"net_flow_tcp_begin"}, Sinks: []Sink{{Plugin: "stdout", Config: map[string]any{"format": "json"}}}}}
			if !reflect.DeepEqual(c.Pipelines, want) {
				t.Fatalf("got %+v, want %+v", c.Pipelines, want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name, file, body string
		want             []string
	}{
		{"unknown top-level key", "x.yaml", "pipeline: []\n", []string{`invalid keys: pipeline`, "valid top-level keys: capture, log, pipelines"}},
		{"unknown pipeline key", "x.yaml", "pipelines:\n  - name: p\n    event: [flows]\n    sinks: [{plugin: stdout}]\n", []string{"'pipelines[0]' has invalid keys: event"}},
		{"no pipelines", "x.yaml", "pipelines: []\n", []string{"no pipelines"}},
		{"duplicate names", "x.yaml", "pipelines:\n  - {name: p, events: [flows], sinks: [{plugin: stdout}]}\n  - {name: p, events: [flows], sinks: [{plugin: stdout}]}\n", []string{`pipeline "p": name used twice`}},
		{"missing sinks and name", "x.yaml", "pipelines:\n  - events: [flows]\n", []string{"pipelines[0]: 'name' is empty", "pipelines[0]: 'sinks' is empty"}},
		{"empty plugin", "x.yaml", "pipelines:\n  - {name: p, events: [flows], sinks: [{config: {}}]}\n", []string{`pipeline "p": sinks[0]: 'plugin' is empty`}},
		{"wrong type", "x.yaml", "pipelines:\n  - {name: p, events: 3, sinks: [{plugin: stdout}]}\n", []string{"events"}},
		{"bad extension", "x.ini", "", []string{`unsupported extension ".ini"`}},
		{"bad yaml", "x.yaml", "pipelines: [\n", []string{"read config"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := write(t, tt.file, tt.body)
			_, err := Load(path)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			for _, w := range append(tt.want, path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
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
        sha256: abc
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
	wantSink := Sink{Plugin: "stdout", SHA256: "abc", Queue: Queue{Size: 100, Policy: "drop_oldest"},
		Restart: Restart{MaxAttempts: 3, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second}, OnFailure: "disable"}
	if !reflect.DeepEqual(s, wantSink) || c.Pipelines[0].Filter != "dst_port=443" {
		t.Errorf("pipeline = %+v", c.Pipelines[0])
	}
}
