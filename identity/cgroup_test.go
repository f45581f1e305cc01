// SPDX-License-Identifier: Apache-2.0

package identity

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestCgroupPathGolden parses every path of testdata/cgroup_paths.txt and
// compares the result with the text after its "=>".
func TestCgroupPathGolden(t *testing.T) {
	path := filepath.Join("testdata", "cgroup_paths.txt")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for n, line := range strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n") {
		p, want, ok := strings.Cut(line, " =>")
		if strings.HasPrefix(line, "#") || !ok {
			out = append(out, line)
			continue
		}
		got := formatInfo(ParseCgroupPath(p))
		out = append(out, p+" =>"+got)
		if !*update && got != want {
			t.Errorf("%s:%d: %s\n got:%s\nwant:%s", path, n+1, p, got, want)
		}
	}
	if *update {
		if err := os.WriteFile(path, []byte(strings.Join(out, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func formatInfo(i CgroupInfo) string {
	if i == (CgroupInfo{}) {
		return " host"
	}
	s := fmt.Sprintf(" container=%s runtime=%s", i.ContainerID, i.Runtime)
	if i.Runtime == "" {
		s = fmt.Sprintf(" container=%s runtime=?", i.ContainerID)
	}
	if i.PodUID != "" {
		s += " pod=" + i.PodUID
	}
	return s
}

// FuzzParseCgroupPath checks that any path parses without panicking into
// either the host or a well-formed container: a 64-hex id that occurs in
// the path, a known runtime or none, and a pod uid only with a container.
func FuzzParseCgroupPath(f *testing.F) {
	raw, err := os.ReadFile(filepath.Join("testdata", "cgroup_paths.txt"))
	if err != nil {
		f.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if p, _, ok := strings.Cut(line, " =>"); ok && !strings.HasPrefix(line, "#") {
			f.Add(p)
		}
	}
	f.Fuzz(func(t *testing.T, path string) {
		i := ParseCgroupPath(path)
		if i.ContainerID == "" {
			if i != (CgroupInfo{}) {
				t.Fatalf("%q: no container but %+v", path, i)
			}
			return
		}
		if !isID(i.ContainerID) || !strings.Contains(path, i.ContainerID) {
			t.Fatalf("%q: container id %q", path, i.ContainerID)
		}
		switch i.Runtime {
		case "", RuntimeDocker, RuntimeContainerd, RuntimeCRIO, RuntimePodman:
		default:
			t.Fatalf("%q: runtime %q", path, i.Runtime)
		}
		if i.PodUID != "" && !isUUID(i.PodUID) {
			t.Fatalf("%q: pod uid %q", path, i.PodUID)
		}
		if again := ParseCgroupPath(path); again != i {
			t.Fatalf("%q: parsed twice, %+v then %+v", path, i, again)
		}
	})
}

func BenchmarkParseCgroupPath(b *testing.B) {
	p := "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6f1d2c3b_4a59_4e8f_9b7a_0c1d2e3f4a5b.slice/cri-containerd-3f4c0b5e8a9d7c6b1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d.scope"
	for b.Loop() {
		ParseCgroupPath(p)
	}
}
