// SPDX-License-Identifier: Apache-2.0

package sinks_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/flowtap/flowtap/configs"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/sinks"
	"github.com/flowtap/flowtap/sinks/internal/sinkconf"
)

// TestSamples loads every built-in sink's embedded sample.yaml as flowtap
// would (configs.Load, then Check against the catalogue) and decodes the
// config of each of its sinks strictly into the sink's config struct:
// every key in a sample is one the sink knows.
func TestSamples(t *testing.T) {
	cat, err := events.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range sinks.Builtins() {
		t.Run(b.Name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sample.yaml")
			if err := os.WriteFile(path, b.Sample(), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := configs.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Check(cat); err != nil {
				t.Fatal(err)
			}
			found := 0
			for _, p := range cfg.Pipelines {
				for _, sk := range p.Sinks {
					if sk.Plugin != b.Name {
						continue
					}
					found++
					raw, err := json.Marshal(sk.Config)
					if err != nil {
						t.Fatal(err)
					}
					if err := sinkconf.Decode(raw, b.Config()); err != nil {
						t.Errorf("pipeline %q: %v", p.Name, err)
					}
				}
			}
			if found == 0 {
				t.Errorf("the sample has no sink with plugin %q", b.Name)
			}
		})
	}
}

// TestBuiltins: every entry's constructor makes the sink it names, its
// config has keys, and the secret keys are those declared.
func TestBuiltins(t *testing.T) {
	secrets := map[string][]string{"webhook": {"headers"}, "nats": {"password", "token", "creds_file", "nkey_seed_file", "headers"}}
	for _, b := range sinks.Builtins() {
		if got := b.New().Info().Name; got != b.Name {
			t.Errorf("%s: New makes a sink called %q", b.Name, got)
		}
		if len(b.Keys()) == 0 {
			t.Errorf("%s: no keys", b.Name)
		}
		if got := sinkconf.Secrets(b.Config()); !slices.Equal(got, secrets[b.Name]) {
			t.Errorf("%s: secret keys %v, want %v", b.Name, got, secrets[b.Name])
		}
		if _, ok := sinks.Lookup(b.Name); !ok {
			t.Errorf("Lookup(%q) failed", b.Name)
		}
	}
	if got := sinks.Names(); !slices.Equal(got, []string{"stdout", "file", "webhook", "nats"}) {
		t.Errorf("Names() = %v", got)
	}
}

// TestMainsServeTheTable: each cmd/flowtap-sink-<name> is the table's
// entry <name> served, and every entry has one.
func TestMainsServeTheTable(t *testing.T) {
	dirs, err := filepath.Glob("../cmd/flowtap-sink-*")
	if err != nil {
		t.Fatal(err)
	}
	var mains []string
	for _, d := range dirs {
		name := strings.TrimPrefix(filepath.Base(d), "flowtap-sink-")
		mains = append(mains, name)
		src, err := os.ReadFile(filepath.Join(d, "main.go"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(src), `sinks.Serve("`+name+`")`) {
			t.Errorf("%s/main.go does not serve the table's %q", d, name)
		}
	}
	slices.Sort(mains)
	names := sinks.Names()
	slices.Sort(names)
	if !slices.Equal(mains, names) {
		t.Errorf("plugin mains %v, table %v", mains, names)
	}
}

// TestREADMEConfigTables: the "Configuration" table of each sink's
// README lists exactly the keys of its config struct, in its order, so
// the documentation of a key cannot drift from the struct it describes
// (the struct is the source; `flowtap list --sinks` prints it).
func TestREADMEConfigTables(t *testing.T) {
	for _, b := range sinks.Builtins() {
		readme, err := os.ReadFile(filepath.Join(b.Name, "README.md"))
		if err != nil {
			t.Fatal(err)
		}
		_, section, ok := strings.Cut(string(readme), "\n## Configuration\n")
		if !ok {
			t.Errorf("%s/README.md has no Configuration section", b.Name)
			continue
		}
		var documented []string
		for _, line := range strings.Split(section, "\n") {
			if strings.HasPrefix(line, "## ") {
				break
			}
			cell, _, ok := strings.Cut(strings.TrimPrefix(line, "| "), " |")
			if !strings.HasPrefix(line, "| `") || !ok {
				continue
			}
			for _, part := range strings.Split(cell, ",") {
				documented = append(documented, strings.Trim(strings.TrimSpace(part), "`"))
			}
		}
		var keys []string
		for _, k := range b.Keys() {
			keys = append(keys, k.Name)
		}
		if !slices.Equal(documented, keys) {
			t.Errorf("%s/README.md documents the keys\n %v\nthe config struct has\n %v", b.Name, documented, keys)
		}
	}
}
