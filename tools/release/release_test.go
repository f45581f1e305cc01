// SPDX-License-Identifier: Apache-2.0

package release

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

var epoch = time.Date(2026, 12, 5, 20, 0, 0, 0, time.UTC)

// readTar returns the headers of a tar stream, in order, and the file
// contents by name.
func readTar(t *testing.T, r io.Reader) ([]*tar.Header, map[string][]byte) {
	t.Helper()
	tr := tar.NewReader(r)
	var hdrs []*tar.Header
	data := map[string][]byte{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return hdrs, data
		}
		if err != nil {
			t.Fatal(err)
		}
		hdrs = append(hdrs, h)
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		data[h.Name] = b
	}
}

func TestWriteTarReproducible(t *testing.T) {
	entries := []Entry{
		{Name: "top/b/prog", Mode: 0o755, Data: []byte("program")},
		{Name: "top/a.txt", Mode: 0o644, Data: []byte("text")},
		{Name: "top/tmp", Dir: true, Mode: 0o1777},
	}
	var one, two bytes.Buffer
	if err := WriteTarGz(&one, entries, epoch); err != nil {
		t.Fatal(err)
	}
	reversed := slices.Clone(entries)
	slices.Reverse(reversed)
	if err := WriteTarGz(&two, reversed, epoch.Add(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(one.Bytes(), two.Bytes()) {
		t.Fatal("the same entries in another order gave different archives")
	}
	zr, err := gzip.NewReader(&one)
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() {
		t.Errorf("gzip header records name %q, time %v", zr.Name, zr.ModTime)
	}
	hdrs, data := readTar(t, zr)
	var names []string
	for _, h := range hdrs {
		names = append(names, h.Name)
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "root" || h.Gname != "root" {
			t.Errorf("%s: owner %d:%d %s:%s, want root", h.Name, h.Uid, h.Gid, h.Uname, h.Gname)
		}
		if !h.ModTime.Equal(epoch) {
			t.Errorf("%s: mtime %v, want %v", h.Name, h.ModTime, epoch)
		}
	}
	want := []string{"top/", "top/a.txt", "top/b/", "top/b/prog", "top/tmp/"}
	if !slices.Equal(names, want) {
		t.Errorf("entries %v, want %v (sorted, parents added)", names, want)
	}
	if string(data["top/b/prog"]) != "program" || hdrs[3].Mode != 0o755 || hdrs[4].Mode != 0o1777 {
		t.Errorf("content or modes lost: %q %o %o", data["top/b/prog"], hdrs[3].Mode, hdrs[4].Mode)
	}
}

func TestWriteTarRefuses(t *testing.T) {
	for name, entries := range map[string][]Entry{
		"named twice":      {{Name: "a", Data: nil}, {Name: "./a", Data: nil}},
		"parent is a file": {{Name: "a"}, {Name: "a/b"}},
		"outside":          {{Name: "../etc/passwd"}},
		"empty":            {{Name: "/"}},
	} {
		if err := WriteTar(io.Discard, entries, epoch); err == nil {
			t.Errorf("%s: WriteTar accepted %+v", name, entries)
		}
	}
}

// fakeTree lays out a source root and a bin directory with stand-ins
// for the programs.
func fakeTree(t *testing.T) *Config {
	t.Helper()
	root, bin := t.TempDir(), t.TempDir()
	for _, f := range []string{"LICENSE", "LICENSES/BSD-2-Clause.txt", "README.md", "CHANGELOG.md", "configs/examples/a.yaml", "configs/examples/b.toml", "deploy/systemd/flowtap.service"} {
		write(t, filepath.Join(root, f), f)
	}
	for _, p := range []string{"flowtap", "flowtap-sink-stdout", "flowtap-sink-file"} {
		write(t, filepath.Join(bin, "linux_amd64", p), "binary "+p)
	}
	return &Config{Root: root, Version: "v0.1.0", Commit: strings.Repeat("ab", 20), Epoch: epoch, BinDir: bin,
		OutDir: t.TempDir(), Platforms: []Platform{{OS: "linux", Arch: "amd64"}}}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestArchives(t *testing.T) {
	c := fakeTree(t)
	paths, err := c.Archives()
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 1 || filepath.Base(paths[0]) != "flowtap_0.1.0_linux_amd64.tar.gz" {
		t.Fatalf("archives %v", paths)
	}
	f, err := os.Open(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	hdrs, _ := readTar(t, zr)
	modes := map[string]int64{}
	for _, h := range hdrs {
		if h.Typeflag == tar.TypeReg {
			modes[strings.TrimPrefix(h.Name, "flowtap_0.1.0_linux_amd64/")] = h.Mode
		}
	}
	want := map[string]int64{
		"flowtap": 0o755, "flowtap-sink-file": 0o755, "flowtap-sink-stdout": 0o755,
		"LICENSE": 0o644, "LICENSES/BSD-2-Clause.txt": 0o644, "README.md": 0o644, "CHANGELOG.md": 0o644,
		"configs/examples/a.yaml": 0o644, "configs/examples/b.toml": 0o644, "deploy/systemd/flowtap.service": 0o644,
	}
	if len(modes) != len(want) {
		t.Errorf("files %v, want %v", modes, want)
	}
	for name, mode := range want {
		if modes[name] != mode {
			t.Errorf("%s: mode %o, want %o", name, modes[name], mode)
		}
	}
	if err := WriteSums(c.OutDir); err != nil {
		t.Fatal(err)
	}
	sums, err := os.ReadFile(filepath.Join(c.OutDir, SumsName))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(paths[0])
	sum := sha256.Sum256(raw)
	if want := hex.EncodeToString(sum[:]) + "  flowtap_0.1.0_linux_amd64.tar.gz\n"; string(sums) != want {
		t.Errorf("SHA256SUMS = %q, want %q", sums, want)
	}
}

func TestArchivesNameWhatIsMissing(t *testing.T) {
	c := fakeTree(t)
	os.Remove(filepath.Join(c.Root, "CHANGELOG.md"))
	if _, err := c.Archives(); err == nil || !strings.Contains(err.Error(), "CHANGELOG.md") {
		t.Errorf("without CHANGELOG.md: %v", err)
	}
	c = fakeTree(t)
	os.Remove(filepath.Join(c.BinDir, "linux_amd64", "flowtap-sink-file"))
	os.Remove(filepath.Join(c.BinDir, "linux_amd64", "flowtap-sink-stdout"))
	if _, err := c.Archives(); !errors.Is(err, errNoFiles) {
		t.Errorf("without sinks: %v, want errNoFiles", err)
	}
	c = fakeTree(t)
	c.Version = "0.1"
	if _, err := c.Archives(); err == nil || !strings.Contains(err.Error(), "semantic version") {
		t.Errorf("version 0.1: %v", err)
	}
}

func TestCheckVersion(t *testing.T) {
	for v, ok := range map[string]bool{
		"v0.1.0": true, "v1.22.333": true, "v0.1.1-0.20261205200000-1a2b3c4d5e6f": true,
		"v0.0.0-20261205200000-1a2b3c4d5e6f": true, "v1.0.0-rc.1+build.5": true,
		"0.1.0": false, "v0.1": false, "v01.1.0": false, "v0.1.0-": false, "dev": false,
	} {
		if err := CheckVersion(v); (err == nil) != ok {
			t.Errorf("CheckVersion(%q) = %v, want ok=%v", v, err, ok)
		}
	}
	if got := ImageTag("v0.1.0+build.5"); got != "v0.1.0-build.5" {
		t.Errorf("ImageTag = %q", got)
	}
}

func TestUUID5(t *testing.T) {
	// RFC 4122's DNS name space and a name whose UUIDv5 Python's uuid
	// module documents.
	dns := [16]byte{0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}
	if got := uuid5(dns, "python.org"); got != "886313e1-3b8a-5372-9b90-0c9aee199e5d" {
		t.Errorf("uuid5 = %s", got)
	}
}

// TestFileCapsMatchSetcap compares FileCaps with what libcap's setcap
// writes for the same capabilities (needs root and setcap; skipped
// otherwise, since it checks an encoding, not a privilege).
func TestFileCapsMatchSetcap(t *testing.T) {
	setcap, err := exec.LookPath("setcap")
	if err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and setcap (libcap2-bin)")
	}
	f := filepath.Join(t.TempDir(), "prog")
	write(t, f, "x")
	if out, err := exec.Command(setcap, "cap_bpf,cap_net_admin,cap_perfmon=ep", f).CombinedOutput(); err != nil {
		t.Skipf("setcap on the test's file system: %v: %s", err, out)
	}
	buf := make([]byte, 64)
	n, err := syscall.Getxattr(f, "security.capability", buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := buf[:n]; string(got) != FileCaps() {
		t.Errorf("setcap wrote %x, FileCaps is %x", got, FileCaps())
	}
}

func TestImage(t *testing.T) {
	c := fakeTree(t)
	path, err := c.WriteImage(c.Platforms[0])
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != "flowtap_0.1.0_linux_amd64.oci.tar" {
		t.Errorf("image archive %s", path)
	}
	first, _ := os.ReadFile(path)
	if _, err := c.WriteImage(c.Platforms[0]); err != nil {
		t.Fatal(err)
	}
	if second, _ := os.ReadFile(path); !bytes.Equal(first, second) {
		t.Error("two builds of the image differ")
	}

	// Unpack the OCI archive and read it back as an image.
	dir := t.TempDir()
	hdrs, data := readTar(t, bytes.NewReader(first))
	for _, h := range hdrs {
		if h.Typeflag == tar.TypeReg {
			write(t, filepath.Join(dir, h.Name), string(data[h.Name]))
		}
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		t.Fatalf("index: %v %+v", err, im)
	}
	if ref := im.Manifests[0].Annotations["org.opencontainers.image.ref.name"]; ref != "flowtap:v0.1.0" {
		t.Errorf("ref.name %q", ref)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" || !slices.Equal(cf.Config.Entrypoint, []string{"/usr/local/bin/flowtap"}) ||
		!slices.Equal(cf.Config.Cmd, []string{"run"}) || cf.OS != "linux" || cf.Architecture != "amd64" || !cf.Created.Time.Equal(epoch) {
		t.Errorf("config %+v", cf)
	}
	if cf.Config.Labels["org.opencontainers.image.version"] != "v0.1.0" || cf.Config.Labels["org.opencontainers.image.revision"] != c.Commit {
		t.Errorf("labels %v", cf.Config.Labels)
	}
	mt, err := img.MediaType()
	if err != nil || !strings.Contains(string(mt), "oci") {
		t.Errorf("manifest media type %q (%v), want an OCI one", mt, err)
	}
	hdrs, data = readTar(t, mutate.Extract(img))
	byName := map[string]*tar.Header{}
	for _, h := range hdrs {
		byName[strings.TrimSuffix(h.Name, "/")] = h
	}
	prog := byName["usr/local/bin/flowtap"]
	if prog == nil || prog.PAXRecords["SCHILY.xattr.security.capability"] != FileCaps() || prog.Mode != 0o755 {
		t.Errorf("flowtap in the image: %+v", prog)
	}
	if sink := byName["usr/local/bin/flowtap-sink-stdout"]; sink == nil || len(sink.PAXRecords) != 0 {
		t.Errorf("a sink plugin in the image carries attributes (capabilities?): %+v", sink)
	}
	if tmp := byName["tmp"]; tmp == nil || tmp.Mode != 0o1777 {
		t.Errorf("/tmp: %+v", tmp)
	}
	if !strings.Contains(string(data["etc/passwd"]), "flowtap:x:65532:65532:") {
		t.Errorf("/etc/passwd: %q", data["etc/passwd"])
	}
	if _, ok := byName["usr/share/doc/flowtap/LICENSES/BSD-2-Clause.txt"]; !ok {
		t.Error("the BPF programs' license texts are not in the image")
	}
}
