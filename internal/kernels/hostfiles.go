// SPDX-License-Identifier: Apache-2.0

package kernels

import (
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// libDirs are where the dynamic loader of an amd64 Debian system looks
// for libraries when a program names no RUNPATH.
var libDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
	"/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// ELFClosure returns the files the host program prog needs to run
// elsewhere: prog, its program interpreter (the dynamic loader) and every
// shared library it needs, directly or through another library, as the
// absolute paths the loader would open. A static program needs only
// itself.
func ELFClosure(prog string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	var visit func(file string, root bool) error
	visit = func(file string, root bool) error {
		if seen[file] {
			return nil
		}
		seen[file] = true
		out = append(out, file)
		f, err := elf.Open(file)
		if err != nil {
			return fmt.Errorf("read ELF %s: %w", file, err)
		}
		defer f.Close()
		if root {
			for _, p := range f.Progs {
				if p.Type != elf.PT_INTERP {
					continue
				}
				b := make([]byte, p.Filesz)
				if _, err := p.ReadAt(b, 0); err != nil {
					return fmt.Errorf("read interpreter of %s: %w", file, err)
				}
				if err := visit(strings.TrimRight(string(b), "\x00"), false); err != nil {
					return err
				}
			}
		}
		needed, err := f.DynString(elf.DT_NEEDED)
		if err != nil {
			return fmt.Errorf("read DT_NEEDED of %s: %w", file, err)
		}
		var dirs []string
		for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
			paths, _ := f.DynString(tag)
			for _, p := range paths {
				for _, d := range filepath.SplitList(p) {
					dirs = append(dirs, strings.ReplaceAll(d, "$ORIGIN", filepath.Dir(file)))
				}
			}
		}
		for _, lib := range needed {
			path, err := findLib(lib, append(dirs, libDirs...))
			if err != nil {
				return fmt.Errorf("%s needs %s: %w", file, lib, err)
			}
			if err := visit(path, false); err != nil {
				return err
			}
		}
		return nil
	}
	if err := visit(prog, true); err != nil {
		return nil, err
	}
	return out, nil
}

func findLib(name string, dirs []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("not found in %s", strings.Join(dirs, ", "))
}

// hostCopier adds host files to an archive at their own paths, recreating
// the symbolic links on the way (on a merged-/usr system /lib64 is a link
// to usr/lib64, and the loader's path goes through it).
type hostCopier struct {
	c    *CPIO
	done map[string]bool
}

func newHostCopier(c *CPIO) *hostCopier { return &hostCopier{c: c, done: map[string]bool{}} }

// add copies the host file at the absolute path p.
func (h *hostCopier) add(p string) error {
	return h.addDepth(filepath.Clean(p), 0)
}

func (h *hostCopier) addDepth(p string, depth int) error {
	if depth > 16 {
		return fmt.Errorf("copy %s: too many levels of symbolic links", p)
	}
	if h.done[p] {
		return nil
	}
	// Walk the directories above p: a link among them is recreated and
	// the rest of the path followed from its target.
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	cur := "/"
	for i, part := range parts {
		next := filepath.Join(cur, part)
		st, err := os.Lstat(next)
		if err != nil {
			return fmt.Errorf("copy %s: %w", p, err)
		}
		if st.Mode()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(next)
			if err != nil {
				return fmt.Errorf("copy %s: %w", p, err)
			}
			if !h.done[next] {
				if err := h.c.Symlink(next, target); err != nil {
					return err
				}
				h.done[next] = true
			}
			if !filepath.IsAbs(target) {
				target = filepath.Join(cur, target)
			}
			rest := filepath.Join(append([]string{target}, parts[i+1:]...)...)
			if err := h.addDepth(rest, depth+1); err != nil {
				return err
			}
			h.done[p] = true
			return nil
		}
		if i < len(parts)-1 {
			if !st.IsDir() {
				return fmt.Errorf("copy %s: %s is not a directory", p, next)
			}
			if err := h.c.Dir(next, st.Mode()); err != nil {
				return err
			}
		} else {
			if !st.Mode().IsRegular() {
				return fmt.Errorf("copy %s: not a regular file", p)
			}
			if err := addFile(h.c, next, next); err != nil {
				return err
			}
		}
		cur = next
	}
	h.done[p] = true
	return nil
}

// addFile adds the host file src as name, with src's permissions.
func addFile(c *CPIO, name, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", src)
	}
	return c.File(name, st.Mode(), st.Size(), f)
}

// errNotFound is returned by lookPath when no host program has the name.
var errNotFound = errors.New("not found")

// lookPath finds a host program in PATH and the sbin directories (root's
// PATH has them; a user's often does not).
func lookPath(name string) (string, error) {
	dirs := append(filepath.SplitList(os.Getenv("PATH")), "/usr/sbin", "/sbin", "/usr/bin", "/bin")
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w in PATH, /usr/sbin or /sbin", name, errNotFound)
}
