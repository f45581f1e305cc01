// SPDX-License-Identifier: Apache-2.0

package release

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// repoRoot is the flowtap source tree this test runs in.
const repoRoot = "../.."

// Fixed identity and time of every commit the tests make, so that two
// snapshots of the same files are the same commit, byte for byte.
var gitEnv = []string{
	"GIT_AUTHOR_NAME=flowtap test", "GIT_AUTHOR_EMAIL=test@flowtap.invalid",
	"GIT_COMMITTER_NAME=flowtap test", "GIT_COMMITTER_EMAIL=test@flowtap.invalid",
	"GIT_AUTHOR_DATE=2026-12-05T20:00:00Z", "GIT_COMMITTER_DATE=2026-12-05T20:00:00Z",
	"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
}

// commitEpoch is gitEnv's commit time in seconds.
const commitEpoch = 1796500800

// git runs git in dir with gitEnv and returns its trimmed output.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), gitEnv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %s in %s: %v\n%s", strings.Join(args, " "), dir, err, stderr.Bytes())
	}
	return strings.TrimSpace(string(out))
}

// snapshot copies the working tree's files (tracked, and untracked but
// not ignored: what a commit of the tree would hold) into a new git
// repository under a temporary directory, commits them with gitEnv, and
// tags the commit with each of tags. It returns the repository's path.
func snapshot(t *testing.T, tags ...string) string {
	t.Helper()
	dst := t.TempDir()
	list := git(t, repoRoot, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	for _, name := range strings.Split(list, "\x00") {
		if name == "" {
			continue
		}
		src := filepath.Join(repoRoot, name)
		st, err := os.Lstat(src)
		if os.IsNotExist(err) {
			continue // deleted in the work tree
		}
		if err != nil {
			t.Fatal(err)
		}
		if !st.Mode().IsRegular() {
			continue
		}
		data, err := os.ReadFile(src)
		if os.IsNotExist(err) {
			continue // removed since it was listed
		}
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dst, name)
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(out, data, st.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	git(t, dst, "init", "-q", "-b", "main")
	git(t, dst, "add", "-A")
	git(t, dst, "commit", "-q", "-m", "snapshot")
	for _, tag := range tags {
		git(t, dst, "tag", tag)
	}
	return dst
}

// cloneOf clones the repository at dir, tags included, into a new
// temporary directory: the same commit in another place.
func cloneOf(t *testing.T, dir string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "clone")
	git(t, dir, "clone", "-q", dir, dst)
	return dst
}

// commitAfter adds an empty commit on top of dir's HEAD, one second later
// than gitEnv's time, and returns its hash.
func commitAfter(t *testing.T, dir string) string {
	t.Helper()
	cmd := exec.Command("git", "commit", "-q", "--allow-empty", "-m", "later")
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), gitEnv...), "GIT_AUTHOR_DATE=2026-12-05T20:00:01Z", "GIT_COMMITTER_DATE=2026-12-05T20:00:01Z")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git commit: %v\n%s", err, out)
	}
	return git(t, dir, "rev-parse", "HEAD")
}

// makeIn runs make with args in dir, with the release variables the
// environment might set removed so that the tree decides them.
func makeIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("make", append([]string{"--no-print-directory"}, args...)...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		switch strings.SplitN(kv, "=", 2)[0] {
		case "VERSION", "COMMIT", "SOURCE_DATE_EPOCH", "DIRTY", "DIST", "RELEASE_BIN", "RELEASE_PLATFORMS", "MAKEFLAGS", "MFLAGS":
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	return string(out)
}
