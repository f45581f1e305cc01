// SPDX-License-Identifier: Apache-2.0

package host

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// SocketDir is the private directory a flowtap process keeps its plugins'
// sockets in (Config.SocketDir): go-plugin makes a directory of its own
// in it for each plugin process and removes that when the plugin is
// killed, but a plugin killed by someone else, or a flowtap killed with
// SIGKILL, leaves its socket behind. So each flowtap process gets a
// directory of its own under a base directory, removes it when it exits,
// and removes at start those of flowtap processes that no longer run.
type SocketDir struct {
	// Path is the directory.
	Path string
}

// socketBase is where the per-process socket directories live: systemd's
// $RUNTIME_DIRECTORY when set (RuntimeDirectory=flowtap), /run/flowtap
// as root, else flowtap-<uid> in the system's temporary directory.
func socketBase() string {
	if d := os.Getenv("RUNTIME_DIRECTORY"); d != "" {
		first, _, _ := strings.Cut(d, ":")
		return first
	}
	if os.Geteuid() == 0 {
		if fi, err := os.Stat("/run"); err == nil && fi.IsDir() {
			return "/run/flowtap"
		}
	}
	return filepath.Join(os.TempDir(), "flowtap-"+strconv.Itoa(os.Geteuid()))
}

// NewSocketDir creates this process's socket directory, after removing
// those of flowtap processes that have ended. The base and the directory
// are mode 0711: a plugin running as another user reaches its own
// directory inside (which go-plugin makes for its group only) but can
// list nothing. Call Remove when flowtap ends.
func NewSocketDir() (*SocketDir, error) {
	return newSocketDir(socketBase())
}

func newSocketDir(base string) (*SocketDir, error) {
	if err := os.MkdirAll(base, 0o711); err != nil {
		return nil, fmt.Errorf("create the plugin socket directory %s: %w", base, err)
	}
	fi, err := os.Lstat(base)
	if err != nil {
		return nil, fmt.Errorf("check the plugin socket directory %s: %w", base, err)
	}
	if !fi.IsDir() || fi.Sys().(*syscall.Stat_t).Uid != uint32(os.Geteuid()) {
		return nil, fmt.Errorf("the plugin socket directory %s is not a directory owned by flowtap's user (uid %d): remove it, or set RUNTIME_DIRECTORY to a directory of flowtap's own", base, os.Geteuid())
	}
	if err := os.Chmod(base, 0o711); err != nil {
		return nil, fmt.Errorf("set the mode of the plugin socket directory %s: %w", base, err)
	}
	removeStale(base)
	dir := filepath.Join(base, strconv.Itoa(os.Getpid()))
	if err := os.RemoveAll(dir); err != nil { // a PID reused after a crash
		return nil, fmt.Errorf("clean the plugin socket directory %s: %w", dir, err)
	}
	if err := os.Mkdir(dir, 0o711); err != nil {
		return nil, fmt.Errorf("create the plugin socket directory %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o711); err != nil { // whatever the umask
		return nil, fmt.Errorf("set the mode of the plugin socket directory %s: %w", dir, err)
	}
	return &SocketDir{Path: dir}, nil
}

// removeStale removes the directories of base named after processes that
// no longer run.
func removeStale(base string) {
	entries, err := os.ReadDir(base)
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
			_ = os.RemoveAll(filepath.Join(base, e.Name()))
		}
	}
}

// Remove removes the directory and whatever is left in it.
func (d *SocketDir) Remove() error {
	if d == nil {
		return nil
	}
	if err := os.RemoveAll(d.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the plugin socket directory %s: %w", d.Path, err)
	}
	return nil
}
