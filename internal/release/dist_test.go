// SPDX-License-Identifier: Apache-2.0

package release

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/plugins/sdk"
)

// TestVersionScript walks a repository through the cases of version.sh
// (no tag, on a tag, after a tag, after a pre-release tag, a malformed
// tag) and holds the script against the Go toolchain, which stamps the
// same kind of version into a binary built with -buildvcs: flowtap built
// without -ldflags must report what the script prints.
func TestVersionScript(t *testing.T) {
	dir := snapshot(t)
	version := func() (string, error) {
		cmd := exec.Command("sh", "internal/release/version.sh")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	must := func(want string) {
		t.Helper()
		got, err := version()
		if err != nil || got != want {
			t.Fatalf("version.sh = %q (%v), want %q", got, err, want)
		}
	}
	short := func() string { return git(t, dir, "rev-parse", "--short=12", "HEAD") }

	must("v0.0.0-20261205200000-" + short())
	git(t, dir, "tag", "v0.1.0")
	must("v0.1.0")
	commitAfter(t, dir)
	afterTag := "v0.1.1-0.20261205200001-" + short()
	must(afterTag)

	// The Go toolchain's own stamp of this commit (no -ldflags: the
	// version comes from debug.ReadBuildInfo).
	bin := filepath.Join(t.TempDir(), "flowtap")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, "./cmd/flowtap")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	info := versionJSON(t, bin)
	if info.Version != afterTag || info.Commit != git(t, dir, "rev-parse", "HEAD") || info.Dirty || info.Date != "2026-12-05T20:00:01Z" {
		t.Errorf("flowtap built by go build reports %+v; version.sh says %s", info, afterTag)
	}

	git(t, dir, "tag", "v0.2.0-rc.1")
	must("v0.2.0-rc.1")
	commitAfter(t, dir)
	must("v0.2.0-rc.1.0.20261205200001-" + short())

	git(t, dir, "tag", "v1.2.3.4")
	if got, err := version(); err == nil || !strings.Contains(got, "not a semantic version") {
		t.Errorf("with tag v1.2.3.4: version.sh = %q, %v; want a refusal", got, err)
	}
}

// versionOutput is what 'flowtap version --json' prints.
type versionOutput struct {
	Version        string `json:"version"`
	Commit         string `json:"commit"`
	Date           string `json:"date"`
	Dirty          bool   `json:"dirty"`
	Platform       string `json:"platform"`
	PluginProtocol int    `json:"plugin_protocol"`
	EventSchema    string `json:"event_schema"`
}

func versionJSON(t *testing.T, bin string) versionOutput {
	t.Helper()
	out, err := exec.Command(bin, "version", "--json").Output()
	if err != nil {
		t.Fatalf("%s version --json: %v", bin, err)
	}
	var v versionOutput
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("%s version --json: %v\n%s", bin, err, out)
	}
	return v
}

// TestDistReproducible runs 'make dist' on a snapshot of the tree tagged
// v0.1.0 and on a clone of it in another directory: the artefacts must be
// byte-identical,
// SHA256SUMS must list exactly the archives and the SBOM with their real
// checksums, and each archive must hold the programs for its platform
// and the documents, owned by root, dated at the commit.
func TestDistReproducible(t *testing.T) {
	a := snapshot(t, "v0.1.0")
	b := cloneOf(t, a)
	start := time.Now()
	makeIn(t, a, "dist")
	t.Logf("first make dist: %v", time.Since(start).Round(time.Second))
	start = time.Now()
	makeIn(t, b, "dist")
	t.Logf("second make dist, another directory: %v", time.Since(start).Round(time.Second))

	sumsA, err := os.ReadFile(filepath.Join(a, "dist", "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	sumsB, err := os.ReadFile(filepath.Join(b, "dist", "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("SHA256SUMS:\n%s", sumsA)
	if !bytes.Equal(sumsA, sumsB) {
		t.Fatalf("two runs of make dist differ:\n--- %s\n%s--- %s\n%s", a, sumsA, b, sumsB)
	}

	want := []string{"flowtap_0.1.0_linux_amd64.tar.gz", "flowtap_0.1.0_linux_arm64.tar.gz", "flowtap_0.1.0_sbom.cdx.json"}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(sumsA)), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q is not '<sha256>  <name>'", line)
		}
		names = append(names, name)
		for _, dir := range []string{a, b} {
			data, err := os.ReadFile(filepath.Join(dir, "dist", name))
			if err != nil {
				t.Fatal(err)
			}
			if got := sha256.Sum256(data); hex.EncodeToString(got[:]) != sum {
				t.Errorf("%s in %s: sha256 %x, SHA256SUMS says %s", name, dir, got, sum)
			}
		}
	}
	if !slices.Equal(names, want) {
		t.Errorf("SHA256SUMS lists %v, want %v", names, want)
	}

	for _, arch := range []string{"amd64", "arm64"} {
		checkArchive(t, a, arch)
	}
	checkSBOM(t, filepath.Join(a, "dist", "flowtap_0.1.0_sbom.cdx.json"))
}

// wantArchive lists the files an archive must hold (below its top
// directory), from the source tree: every sink plugin command, every
// example config, every license text.
func wantArchive(t *testing.T, root string) map[string]int64 {
	t.Helper()
	want := map[string]int64{
		"flowtap": 0o755, "LICENSE": 0o644, "README.md": 0o644, "CHANGELOG.md": 0o644,
		"deploy/systemd/flowtap.service": 0o644,
	}
	glob := func(pattern string) []string {
		m, err := filepath.Glob(filepath.Join(root, pattern))
		if err != nil || len(m) == 0 {
			t.Fatalf("%s: %v (%d matches)", pattern, err, len(m))
		}
		return m
	}
	for _, d := range glob("cmd/flowtap-sink-*") {
		want[filepath.Base(d)] = 0o755
	}
	for _, pattern := range []string{"configs/examples/*", "LICENSES/*"} {
		for _, f := range glob(pattern) {
			rel, _ := filepath.Rel(root, f)
			want[filepath.ToSlash(rel)] = 0o644
		}
	}
	return want
}

var elfMachine = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

func checkArchive(t *testing.T, root, arch string) {
	t.Helper()
	top := "flowtap_0.1.0_linux_" + arch
	f, err := os.Open(filepath.Join(root, "dist", top+".tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	got := map[string]int64{}
	var order []string
	extract := t.TempDir()
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		order = append(order, h.Name)
		if h.Uid != 0 || h.Gid != 0 || h.ModTime.Unix() != commitEpoch {
			t.Errorf("%s: owner %d:%d, mtime %v; want 0:0 at the commit time", h.Name, h.Uid, h.Gid, h.ModTime.UTC())
		}
		rel, ok := strings.CutPrefix(h.Name, top+"/")
		if !ok && h.Name != top+"/" {
			t.Errorf("%s: outside the archive's top directory %s/", h.Name, top)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		got[rel] = h.Mode
		if h.Mode == 0o755 {
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			checkProgram(t, top+"/"+rel, data, arch, root)
			if err := os.WriteFile(filepath.Join(extract, rel), data, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !slices.IsSorted(order) {
		t.Errorf("%s: entries not sorted: %v", top, order)
	}
	want := wantArchive(t, root)
	for name, mode := range want {
		if got[name] != mode {
			t.Errorf("%s: %s has mode %o, want %o (missing when 0)", top, name, got[name], mode)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: unexpected file %s", top, name)
		}
	}
	if arch != runtime.GOARCH {
		return
	}
	// The archive's own flowtap tells the tag's version and this commit.
	out, err := exec.Command(filepath.Join(extract, "flowtap"), "--version").Output()
	if err != nil {
		t.Fatalf("flowtap --version from %s: %v", top, err)
	}
	head := git(t, root, "rev-parse", "HEAD")
	for _, want := range []string{"flowtap v0.1.0\n", "commit:          " + head + "\n", "commit date:     2026-12-05T20:00:00Z\n",
		"modified tree:   false\n", "linux/" + arch, fmt.Sprintf("plugin protocol: %d\n", sdk.ProtocolVersion), "event schema:    " + events.SchemaVersion + "\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("flowtap --version lacks %q:\n%s", want, out)
		}
	}
	if !strings.HasPrefix(string(out), "flowtap v0.1.0\n") {
		t.Errorf("flowtap --version does not start with the version:\n%s", out)
	}
}

// checkProgram: an ELF for arch, statically linked (no interpreter), with
// no trace of the directory it was built in (-trimpath).
func checkProgram(t *testing.T, name string, data []byte, arch, buildDir string) {
	t.Helper()
	ef, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Errorf("%s: not an ELF file: %v", name, err)
		return
	}
	defer ef.Close()
	if ef.Machine != elfMachine[arch] {
		t.Errorf("%s: machine %v, want %v", name, ef.Machine, elfMachine[arch])
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s: dynamically linked (has an interpreter); want CGO_ENABLED=0", name)
		}
	}
	if bytes.Contains(data, []byte(buildDir)) {
		t.Errorf("%s: holds the build directory %s (-trimpath missing?)", name, buildDir)
	}
}

// checkSBOM: a CycloneDX document describing flowtap at the tag's
// version, with its dependencies.
func checkSBOM(t *testing.T, path string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		BOMFormat    string `json:"bomFormat"`
		SerialNumber string `json:"serialNumber"`
		Metadata     struct {
			Component struct {
				Name    string `json:"name"`
				Version string `json:"version"`
			} `json:"component"`
		} `json:"metadata"`
		Components []struct {
			Name string `json:"name"`
		} `json:"components"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("SBOM: %v", err)
	}
	if doc.BOMFormat != "CycloneDX" || doc.Metadata.Component.Name != "github.com/flowtap/flowtap" || doc.Metadata.Component.Version != "v0.1.0" {
		t.Errorf("SBOM describes %+v (format %s)", doc.Metadata.Component, doc.BOMFormat)
	}
	if !strings.HasPrefix(doc.SerialNumber, "urn:uuid:") {
		t.Errorf("SBOM serial %q", doc.SerialNumber)
	}
	found := false
	for _, c := range doc.Components {
		found = found || c.Name == "github.com/cilium/ebpf"
	}
	if !found {
		t.Errorf("SBOM lists no github.com/cilium/ebpf among %d components", len(doc.Components))
	}
}
