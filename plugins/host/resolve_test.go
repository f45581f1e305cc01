// SPDX-License-Identifier: Apache-2.0

package host

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "flowtap-sink-fake")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	noexec := filepath.Join(dir, "noexec")
	if err := os.WriteFile(noexec, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)

	for _, tc := range []struct {
		plugin string
		want   string // the path, or a part of the error
		ok     bool
	}{
		{plugin: "fake", want: exe, ok: true},
		{plugin: exe, want: exe, ok: true},
		{plugin: "missing", want: `no executable "flowtap-sink-missing" in ` + filepath.Dir(mustExecutable(t)) + "/flowtap-sink-missing or $PATH: run \"make build\""},
		{plugin: noexec, want: "is not executable"},
		{plugin: dir + "/", want: "is not a regular file"},
		{plugin: "bad name", want: "not a sink name"},
		{plugin: "", want: "no plugin given"},
	} {
		got, err := Resolve(tc.plugin)
		switch {
		case tc.ok && (err != nil || got != tc.want):
			t.Errorf("Resolve(%q) = %q, %v; want %q", tc.plugin, got, err, tc.want)
		case !tc.ok && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("Resolve(%q) = %q, %v; want an error containing %q", tc.plugin, got, err, tc.want)
		}
	}
}

// TestResolveRelativePath: a relative path is refused, even when the
// working directory holds the binary: flowtap never runs a plugin from its
// working directory (the config loader resolves relative paths against
// the config file's directory, configs.TestRelativePluginPath).
func TestResolveRelativePath(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	if got, err := Resolve("./p"); err == nil || !strings.Contains(err.Error(), "relative path") {
		t.Errorf("Resolve(./p) = %q, %v; want a refusal", got, err)
	}
}

func mustExecutable(t *testing.T) string {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return self
}
