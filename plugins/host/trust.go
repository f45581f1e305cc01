// SPDX-License-Identifier: Apache-2.0

package host

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrUntrusted marks a plugin binary flowtap refuses to run: it, or a
// directory above it, could be changed by someone other than root (or
// flowtap's own user), or its SHA-256 is not the pinned one.
var ErrUntrusted = errors.New("untrusted plugin binary")

// openTrusted opens the plugin binary at path (absolute) and returns it
// once it has passed the checks; the caller executes that descriptor, so
// what was checked is what runs. As root (euid 0), the binary and every
// directory above it must be owned by root or by euid and not writable by
// group or others: whoever could change any of them could run code as
// flowtap's user. A directory that others may write is accepted only with
// the sticky bit (like /tmp), where nobody else can rename or remove the
// root-owned entry below it. Symbolic links are followed, and the
// directories of where they lead are checked. When pin is set, the
// binary's SHA-256, read from the opened descriptor, must be pin.
func openTrusted(path, pin string, euid int) (*os.File, error) {
	want := ""
	if pin != "" {
		want = strings.ToLower(strings.TrimSpace(pin))
		if len(want) != sha256.Size*2 {
			return nil, fmt.Errorf("sha256 pin %q of plugin binary %s: not 64 hex digits", pin, path)
		}
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, fmt.Errorf("check plugin binary: %w", err)
	}
	if euid == 0 {
		if err := checkDirs(path, filepath.Dir(real), euid); err != nil {
			return nil, err
		}
	}
	f, err := os.OpenFile(real, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("check plugin binary: %w", err)
	}
	if err := checkBinary(f, path, real, euid); err != nil {
		f.Close()
		return nil, err
	}
	if want == "" {
		return f, nil
	}
	got, err := hashFile(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("hash plugin binary %s: %w", path, err)
	}
	if got != want {
		f.Close()
		return nil, fmt.Errorf("%w: %s has SHA-256 %s, but the config pins %s: refusing to run it (if the binary was updated on purpose, set sha256 to the new hash)",
			ErrUntrusted, path, got, want)
	}
	return f, nil
}

// checkBinary checks the opened binary f: a regular, executable file and,
// as root, owned by root or euid and not writable by group or others.
func checkBinary(f *os.File, path, real string, euid int) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("check plugin binary: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not executable (chmod +x it)", path)
	}
	if euid != 0 {
		return nil
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 0 && int(st.Uid) != euid {
		return fmt.Errorf("%w: %s is owned by uid %d, not root, and flowtap runs as root: whoever owns it could run code through flowtap (fix: chown root:root %s)",
			ErrUntrusted, path, st.Uid, real)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%w: %s is writable by group or others (mode %s) and flowtap runs as root: refusing to run it (fix: chmod go-w %s)",
			ErrUntrusted, path, fi.Mode().Perm(), real)
	}
	return nil
}

// checkDirs checks dir and every directory above it, up to /.
func checkDirs(path, dir string, euid int) error {
	for {
		fi, err := os.Lstat(dir)
		if err != nil {
			return fmt.Errorf("check plugin binary %s: %w", path, err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != 0 && int(st.Uid) != euid {
			return fmt.Errorf("%w: %s is in %s, which is owned by uid %d, not root, and flowtap runs as root: its owner could replace the plugin (fix: install the plugin in a root-owned directory such as /usr/local/lib/flowtap)",
				ErrUntrusted, path, dir, st.Uid)
		}
		if fi.Mode().Perm()&0o022 != 0 && fi.Mode()&fs.ModeSticky == 0 {
			return fmt.Errorf("%w: %s is in %s, which group or others may write (mode %04o), and flowtap runs as root: anyone who may write it could replace the plugin (fix: chmod go-w %s)",
				ErrUntrusted, path, dir, fi.Mode().Perm(), dir)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil
		}
		dir = parent
	}
}

// hashFile returns the hex SHA-256 of f's content, read from its start
// (f's offset is left at its end).
func hashFile(f *os.File) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, 1<<62)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// fileSHA256 returns the hex SHA-256 of the file at path.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return hashFile(f)
}
