// SPDX-License-Identifier: Apache-2.0

package identity

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// cgroupIndex finds the path of a cgroup v2 id. On cgroup v2 the id the
// kernel reports for a socket is the inode number of the cgroup's
// directory (a kernfs node id), so a path is confirmed by one stat. The
// index tries the owner process's own cgroup first (/proc/PID/cgroup: one
// small read and one stat), and walks the cgroup2 mount otherwise. It
// belongs to the resolver goroutine.
type cgroupIndex struct {
	root     string // the cgroup2 mount
	procRoot string // "/proc"
	// byID holds what the last walk found: every directory by its id.
	byID map[uint64]string
	// maxDirs bounds a walk.
	maxDirs int
}

func newCgroupIndex(root, procRoot string, maxDirs int) *cgroupIndex {
	return &cgroupIndex{root: root, procRoot: procRoot, maxDirs: maxDirs}
}

// fromProcess returns the cgroup v2 path of process pid if its directory
// has the given id.
func (x *cgroupIndex) fromProcess(pid uint32, id uint64) (string, bool) {
	return processCgroup(x.procRoot, x.root, pid, id)
}

// processCgroup returns the cgroup v2 path of process pid (under the
// cgroup2 mount root) if its directory has the given id: one small read
// of /proc/PID/cgroup and one stat.
func processCgroup(procRoot, root string, pid uint32, id uint64) (string, bool) {
	p, ino, ok := ownCgroup(procRoot, root, pid)
	if !ok || ino != id {
		return "", false
	}
	return p, true
}

// ownCgroup returns the cgroup v2 path of process pid (under the cgroup2
// mount root) and its id, the inode number of its directory.
func ownCgroup(procRoot, root string, pid uint32) (string, uint64, bool) {
	if pid == 0 {
		return "", 0, false
	}
	raw, err := os.ReadFile(filepath.Join(procRoot, strconv.FormatUint(uint64(pid), 10), "cgroup"))
	if err != nil {
		return "", 0, false
	}
	// The cgroup v2 line is "0::/path" (the only line on a pure v2 host,
	// one of several in a hybrid layout).
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			ino, err := inode(filepath.Join(root, p))
			if err != nil {
				return "", 0, false
			}
			return p, ino, true
		}
	}
	return "", 0, false
}

// walk reads the whole cgroup2 tree into byID.
func (x *cgroupIndex) walk() error {
	byID := make(map[uint64]string, len(x.byID))
	n := 0
	err := filepath.WalkDir(x.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == x.root {
				return err
			}
			return nil // a cgroup removed while walking
		}
		if !d.IsDir() {
			return nil
		}
		if n++; n > x.maxDirs {
			return fs.SkipAll
		}
		ino, err := inode(p)
		if err != nil {
			return nil
		}
		rel := strings.TrimPrefix(p, x.root)
		if rel == "" {
			rel = "/"
		}
		byID[ino] = rel
		return nil
	})
	if err != nil {
		return fmt.Errorf("walk cgroup2 mount %s: %w", x.root, err)
	}
	x.byID = byID
	return nil
}

// inode returns the inode number of path.
func inode(path string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}
