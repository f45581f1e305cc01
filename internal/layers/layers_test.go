// SPDX-License-Identifier: Apache-2.0

// Package layers holds tests of the repository's shape: which package may
// depend on which, and that the sink SDK is a module a third party can
// use alone. They run the go command on the source tree.
package layers

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// root is the repository's root.
var root = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}()

// goCmd runs the go command in dir (relative to the root) outside any
// workspace, and returns its standard output.
func goCmd(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = filepath.Join(root, dir)
	cmd.Env = append(append(os.Environ(), "GOWORK=off"), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s in %s: %v\n%s", strings.Join(args, " "), dir, err, stderr.String())
	}
	return string(out)
}

// deps lists the packages the non-test files of pkgs import, directly or
// not, in module dir.
func deps(t *testing.T, dir string, pkgs ...string) []string {
	t.Helper()
	return strings.Fields(goCmd(t, dir, nil, append([]string{"list", "-deps"}, pkgs...)...))
}

// TestLayers pins the dependencies the structure promises.
func TestLayers(t *testing.T) {
	for _, tc := range []struct {
		dir, pkg string
		banned   []string
		why      string
	}{
		{".", "./configs", []string{"github.com/flowtap/flowtap/bpf", "github.com/cilium/ebpf"}, "the config loader needs no BPF loader (bpf/limits has its bounds)"},
		{".", "./replay", []string{"github.com/flowtap/flowtap/bpf", "github.com/cilium/ebpf"}, "replay needs no BPF at all"},
		{".", "./plugins/host", []string{"github.com/flowtap/flowtap/plugins/sdk"}, "the host shares only plugins/internal/wire with the SDK"},
		{"plugins/sdk", "./...", []string{"github.com/flowtap/flowtap/events"}, "the SDK has its own types"},
	} {
		for _, d := range deps(t, tc.dir, tc.pkg) {
			if slices.Contains(tc.banned, d) {
				t.Errorf("%s (in %s) depends on %s: %s", tc.pkg, tc.dir, d, tc.why)
			}
		}
	}
	// Everything of flowtap the SDK's module builds is the SDK's own or
	// the wire package's; its tests included.
	for _, d := range strings.Fields(goCmd(t, "plugins/sdk", nil, "list", "-deps", "-test", "./...")) {
		d = strings.Fields(strings.Trim(d, "[]"))[0]
		if strings.HasPrefix(d, "github.com/flowtap/flowtap/") &&
			!strings.HasPrefix(d, "github.com/flowtap/flowtap/plugins/sdk") &&
			!strings.HasPrefix(d, "github.com/flowtap/flowtap/plugins/internal/wire") {
			t.Errorf("the SDK module depends on %s", d)
		}
	}
	// The example third-party sink's build needs the SDK module (and the
	// wire module under it), not flowtap's.
	mods := strings.Fields(goCmd(t, "examples/countsink", nil, "list", "-m", "-f", "{{.Path}}", "all"))
	if slices.Contains(mods, "github.com/flowtap/flowtap") || !slices.Contains(mods, "github.com/flowtap/flowtap/plugins/sdk") {
		t.Errorf("examples/countsink's modules: %v; want the SDK's and not flowtap's", mods)
	}
}

// TestThirdPartyGetsTheSDKAlone releases the wire and SDK modules, as
// tags would, into a module proxy in a directory, and has a new module
// outside this repository `go get` the SDK from it and build a sink: a
// third party needs the SDK module (and the wire module it requires),
// nothing else of flowtap and no replace directive.
func TestThirdPartyGetsTheSDKAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module from a proxy (-short)")
	}
	// The module cache keeps a version's content for good: each state of
	// the source is released under a version of its own.
	version := "v0.1.0-layers." + sourceHash(t, "plugins/internal/wire", "plugins/sdk")
	proxy := t.TempDir()
	release(t, proxy, "github.com/flowtap/flowtap/plugins/internal/wire", "plugins/internal/wire", version, nil)
	release(t, proxy, "github.com/flowtap/flowtap/plugins/sdk", "plugins/sdk", version, func(gomod []byte) []byte {
		// What the release does to the SDK's go.mod: require the
		// released wire module instead of the one beside it.
		s := strings.ReplaceAll(string(gomod), "v0.0.0-00010101000000-000000000000", version)
		if i := strings.Index(s, "\n// The wire package is developed"); i >= 0 {
			s = s[:i+1]
		}
		return []byte(s)
	})

	mod := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(mod, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/thirdparty\n\ngo 1.26.0\n")
	write("main.go", `package main

import (
	"context"

	"github.com/flowtap/flowtap/plugins/sdk"
)

type sink struct{}

func (sink) Info() sdk.Info                           { return sdk.Info{Name: "third"} }
func (sink) Configure(context.Context, []byte) error  { return nil }
func (sink) Write(context.Context, []sdk.Event) error { return nil }
func (sink) Close(context.Context) error              { return nil }

func main() { sdk.Serve(sink{}) }
`)
	upstream := strings.TrimSpace(goCmd(t, ".", nil, "env", "GOPROXY"))
	env := []string{
		"GOPROXY=file://" + filepath.ToSlash(proxy) + "," + upstream,
		"GOFLAGS=-mod=mod", "GOSUMDB=off", "GONOSUMDB=*",
	}
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("go", args...)
		cmd.Dir = mod
		cmd.Env = append(append(os.Environ(), "GOWORK=off"), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("get", "github.com/flowtap/flowtap/plugins/sdk@"+version)
	run("build", "-o", filepath.Join(t.TempDir(), "flowtap-sink-third"), ".")
	mods := strings.Fields(run("list", "-m", "-f", "{{.Path}}", "all"))
	for _, m := range mods {
		if strings.HasPrefix(m, "github.com/flowtap/") && m != "github.com/flowtap/flowtap/plugins/sdk" && m != "github.com/flowtap/flowtap/plugins/internal/wire" {
			t.Errorf("the third party's build needs %s", m)
		}
	}
}

// sourceHash is a short hash of the files below dirs (relative to the
// root), their names included.
func sourceHash(t *testing.T, dirs ...string) string {
	t.Helper()
	h := sha256.New()
	for _, dir := range dirs {
		err := filepath.WalkDir(filepath.Join(root, dir), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			fmt.Fprintf(h, "%s %d\n", rel, len(data))
			h.Write(data)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// release writes the module in dir (relative to the root) at version into
// a file-system module proxy, as go mod download would find it, with its
// go.mod passed through edit.
func release(t *testing.T, proxy, path, dir, version string, edit func([]byte) []byte) {
	t.Helper()
	base := filepath.Join(proxy, path, "@v")
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(root, dir)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	var gomod []byte
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			if rel != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if rel == "go.mod" {
			if edit != nil {
				data = edit(data)
			}
			gomod = data
		}
		if rel == "go.sum" {
			return nil
		}
		w, err := zw.Create(path + "@" + version + "/" + filepath.ToSlash(rel))
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	})
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"list":            []byte(version + "\n"),
		version + ".info": []byte(`{"Version":"` + version + `","Time":"2026-12-01T00:00:00Z"}`),
		version + ".mod":  gomod,
		version + ".zip":  buf.Bytes(),
	} {
		if err := os.WriteFile(filepath.Join(base, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
