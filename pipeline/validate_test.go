// SPDX-License-Identifier: Apache-2.0

package pipeline

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowtap/flowtap/configs"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/testutil"
	"github.com/flowtap/flowtap/plugins/host"
)

// buildSinkPlugins builds every cmd/flowtap-sink-* of this tree into a
// temporary directory and puts it first in $PATH, where host.Resolve finds
// built-in sinks. It returns the names of the sinks built.
func buildSinkPlugins(t *testing.T) map[string]bool {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join("..", "cmd", host.BinaryPrefix+"*"))
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	built := map[string]bool{}
	for _, d := range dirs {
		name := strings.TrimPrefix(filepath.Base(d), host.BinaryPrefix)
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, filepath.Base(d)), "./"+filepath.Base(d))
		cmd.Dir = filepath.Join("..", "cmd")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", d, err, out)
		}
		built[name] = true
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	return built
}

// TestExamplesPluginsAccept starts the plugin of every sink in
// configs/examples and hands it its config, as 'flowtap config validate'
// does. A built-in sink whose plugin this tree does not have (its
// cmd/flowtap-sink-<name> is missing) is skipped, saying so. File paths
// in sink configs are moved into a temporary directory, so the check
// writes nothing outside it.
func TestExamplesPluginsAccept(t *testing.T) {
	built := buildSinkPlugins(t)
	cat, err := events.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join("..", "configs", "examples", "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	// The plugins run as an unprivileged user when the test runs as
	// root: the file sinks' directory must be theirs to write.
	tmp := testutil.TempDirMode(t, "flowtap-examples-", 0o777)
	for _, path := range files {
		cfg, err := configs.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range cfg.Pipelines {
			for j, s := range p.Sinks {
				t.Run(filepath.Base(path)+"/"+p.Name+"/"+s.Plugin, func(t *testing.T) {
					if !strings.Contains(s.Plugin, "/") && !built[s.Plugin] {
						t.Skipf("sink plugin %q is not part of this tree (no cmd/%s%s): its Configure check is skipped", s.Plugin, host.BinaryPrefix, s.Plugin)
					}
					if _, ok := s.Config["path"]; ok {
						s.Config["path"] = filepath.Join(tmp, p.Name+".out")
					}
					one := &configs.Config{Source: path, Pipelines: []configs.Pipeline{{Name: p.Name, Events: p.Events, Filter: p.Filter, Sinks: []configs.SinkConfig{s}}}}
					if ps := CheckSinks(context.Background(), one, CheckOptions{StartPlugins: true}); len(ps) > 0 {
						t.Errorf("pipelines[%d].sinks[%d]: %v", i, j, ps)
					}
				})
			}
		}
		if err := cfg.Check(cat); err != nil {
			t.Error(err)
		}
	}
}

// TestCheckSinksReportsEveryKey checks that a config the plugin rejects
// yields one problem per key, naming the key under the sink's config, and
// that a plugin that cannot be found is a problem of its plugin key.
func TestCheckSinksReportsEveryKey(t *testing.T) {
	buildSinkPlugins(t)
	cfg := &configs.Config{Source: "test.yaml", Pipelines: []configs.Pipeline{{Name: "p", Events: []string{"flows"}, Sinks: []configs.SinkConfig{
		{Plugin: "stdout", Config: map[string]any{"format": "xml", "colour": true}},
		{Plugin: "no-such-sink"},
		{Plugin: "stdout", Config: map[string]any{"format": "json"}},
	}}}}
	ps := CheckSinks(context.Background(), cfg, CheckOptions{StartPlugins: true})
	var got []string
	for _, p := range ps {
		got = append(got, p.Key)
	}
	want := "pipelines[0].sinks[0].config.colour pipelines[0].sinks[0].config.format pipelines[0].sinks[1].plugin"
	if strings.Join(got, " ") != want {
		t.Fatalf("problem keys = %v, want %s\n%v", got, want, ps)
	}
	if !strings.Contains(ps[1].Message, `unknown format "xml" (valid: json, table, template)`) || ps[1].File != "test.yaml" || ps[1].Pipeline != "p" {
		t.Errorf("problem = %+v", ps[1])
	}
}

// TestCheckSinksStartsNoPlugin: without StartPlugins no plugin starts (a
// plugin that would leave a mark leaves none), while a built-in sink's
// config is still checked, in this process, and the stdout sink's
// template is executed on every event its pipeline selects: a field the
// events lack is a problem now, not when the first event arrives.
func TestCheckSinksStartsNoPlugin(t *testing.T) {
	dir := t.TempDir()
	mark := filepath.Join(dir, "ran")
	plugin := filepath.Join(dir, "flowtap-sink-marker")
	if err := os.WriteFile(plugin, []byte("#!/bin/sh\ntouch "+mark+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := &configs.Config{Source: "test.yaml", Pipelines: []configs.Pipeline{{Name: "p", Events: []string{"flows"}, Sinks: []configs.SinkConfig{
		{Plugin: plugin},
		{Plugin: "stdout", Config: map[string]any{"format": "template", "template": "{{.Name}} {{.Fields.dst_port}} {{.Fields.close_reason}}"}},
		{Plugin: "stdout", Config: map[string]any{"format": "template", "template": "{{.Name}} {{.Field \"close_reason\"}} {{.Bogus}}"}},
		{Plugin: "stdout", Config: map[string]any{"format": "template", "template": "{{.Name}} {{.Field \"close_reason\"}} {{.Fields.dst_port}}"}},
		{Plugin: "webhook", Config: map[string]any{"url": "ftp://x"}},
	}}}}
	ps := CheckSinks(context.Background(), cfg, CheckOptions{})
	if _, err := os.Stat(mark); err == nil {
		t.Fatal("a plugin ran")
	}
	var got []string
	for _, p := range ps {
		got = append(got, p.Key)
	}
	want := "pipelines[0].sinks[1].config.template pipelines[0].sinks[2].config.template pipelines[0].sinks[4].config.url"
	if strings.Join(got, " ") != want {
		t.Fatalf("problem keys = %v, want %s\n%v", got, want, ps)
	}
	for i, w := range []string{`map has no entry for key "close_reason"`, "can't evaluate field Bogus", "not an http or https URL"} {
		if !strings.Contains(ps[i].Message, w) {
			t.Errorf("problem %d = %q, want it to say %q", i, ps[i].Message, w)
		}
	}
}

// TestCheckSinksBeforeRunStartsNoCompleteBuiltin: before a run, a
// built-in sink whose in-process check is complete (stdout) is not started
// to judge its config, while what would keep the run from starting it is
// still a problem now: a binary whose SHA-256 is not the pinned one, a
// run_as that names no user. Without BeforeRun ('flowtap config
// validate') the same plugin is started, which shows that the fake
// plugin here leaves its mark when it runs.
func TestCheckSinksBeforeRunStartsNoCompleteBuiltin(t *testing.T) {
	// As root the plugin runs as another user and its binary must be in
	// directories only root may write: both directories are made here
	// rather than under t.TempDir (0700).
	binDir := testutil.TempDirMode(t, "flowtap-fake-sink-", 0o755)
	markDir := testutil.TempDirMode(t, "flowtap-fake-sink-mark-", 0o1777)
	mark := filepath.Join(markDir, "ran")
	fake := filepath.Join(binDir, host.BinaryPrefix+"stdout")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\ntouch "+mark+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	config := func(sink configs.SinkConfig) *configs.Config {
		return &configs.Config{Source: "test.yaml", Pipelines: []configs.Pipeline{{Name: "p", Events: []string{"flows"}, Sinks: []configs.SinkConfig{sink}}}}
	}
	json := configs.SinkConfig{Plugin: "stdout", Config: map[string]any{"format": "json"}}
	before := CheckOptions{StartPlugins: true, BeforeRun: true}

	if ps := CheckSinks(context.Background(), config(json), before); len(ps) != 0 {
		t.Fatalf("problems before a run: %v", ps)
	}
	if _, err := os.Stat(mark); err == nil {
		t.Fatal("the stdout plugin was started to check a config its in-process check judges whole")
	}

	pinned := json
	pinned.SHA256 = strings.Repeat("0", 64)
	ps := CheckSinks(context.Background(), config(pinned), before)
	if len(ps) != 1 || ps[0].Key != "pipelines[0].sinks[0].plugin" || !strings.Contains(ps[0].Message, "but the config pins") {
		t.Errorf("a wrong sha256 pin before a run: problems %v, want one of the plugin key saying the pin does not match", ps)
	}
	nobody := json
	nobody.RunAs = "flowtap-no-such-user"
	if ps := CheckSinks(context.Background(), config(nobody), before); len(ps) != 1 || !strings.Contains(ps[0].Message, "run_as") {
		t.Errorf("a run_as of no user before a run: problems %v, want one about run_as", ps)
	}
	if _, err := os.Stat(mark); err == nil {
		t.Fatal("a plugin was started by a check before a run")
	}

	CheckSinks(context.Background(), config(json), CheckOptions{StartPlugins: true})
	if _, err := os.Stat(mark); err != nil {
		t.Fatalf("without BeforeRun the stdout plugin was not started: %v", err)
	}
}
