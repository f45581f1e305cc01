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
	tmp := t.TempDir()
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
					if ps := CheckSinks(context.Background(), one, nil); len(ps) > 0 {
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
	ps := CheckSinks(context.Background(), cfg, nil)
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
