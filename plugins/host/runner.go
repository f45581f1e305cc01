// SPDX-License-Identifier: Apache-2.0

package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"

	"github.com/hashicorp/go-plugin/runner"
	"golang.org/x/sys/unix"
)

// procRunner is the go-plugin runner of a plugin process: go-plugin's
// own, except that the process is started on the launcher thread (see
// launch.go) and executed from the descriptor of the binary that was
// checked (trust.go), never from its path again.
type procRunner struct {
	cmd            *exec.Cmd
	name           string // the binary's path, for logs
	bin            *os.File
	launch         *launcher
	stdout, stderr io.ReadCloser
	pid            int
}

// Interface guard: procRunner is a go-plugin runner.
var _ runner.Runner = (*procRunner)(nil)

// newProcRunner prepares cmd (as go-plugin made it: environment set) to
// execute bin, the opened binary at path.
func newProcRunner(cmd *exec.Cmd, path string, bin *os.File, l *launcher) (*procRunner, error) {
	// The child executes /proc/self/fd/N: the very file that was checked
	// and hashed, whatever happened to the path since. The descriptor is
	// moved above those the child's set-up may overwrite: its standard
	// streams and ExtraFiles, and the descriptors it moves them through,
	// which Go's fork picks from one above the highest it is given (the
	// pipes of the standard streams, opened after this, at the lowest
	// free numbers) upwards. So N is well above every descriptor open now
	// (descriptorGap). It is close-on-exec, so the plugin does not inherit
	// it, unless the binary is a script: its interpreter opens
	// /proc/self/fd/N after the exec.
	highest, err := highestFD()
	if err != nil {
		return nil, err
	}
	minFD := max(highest, 2+len(cmd.ExtraFiles)) + descriptorGap
	dup := unix.F_DUPFD_CLOEXEC
	var magic [2]byte
	if _, err := bin.ReadAt(magic[:], 0); err == nil && string(magic[:]) == "#!" {
		dup = unix.F_DUPFD
	}
	fd, err := unix.FcntlInt(bin.Fd(), dup, minFD)
	if err != nil {
		return nil, fmt.Errorf("duplicate the plugin binary's descriptor to %d or above: %w (is the limit of open files, ulimit -n, that low?)", minFD, err)
	}
	high := os.NewFile(uintptr(fd), path)
	cmd.Path = "/proc/self/fd/" + strconv.Itoa(fd)
	cmd.Args = []string{path}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		high.Close()
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		high.Close()
		return nil, err
	}
	return &procRunner{cmd: cmd, name: path, bin: high, launch: l, stdout: stdout, stderr: stderr}, nil
}

// Start starts the process on the launcher thread.
func (r *procRunner) Start(context.Context) error {
	err := r.launch.start(r.cmd)
	r.bin.Close() // the child has executed it, or failed to
	if err != nil {
		return fmt.Errorf("execute %s: %w", r.name, err)
	}
	r.pid = r.cmd.Process.Pid
	return nil
}

// Wait waits for the process to exit.
func (r *procRunner) Wait(context.Context) error { return r.cmd.Wait() }

// Kill kills the process (SIGKILL). Repeating it is fine.
func (r *procRunner) Kill(context.Context) error {
	if r.cmd.Process == nil {
		return nil
	}
	if err := r.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

// Stdout is where go-plugin reads the handshake.
func (r *procRunner) Stdout() io.ReadCloser { return r.stdout }

// Stderr carries the plugin's log lines.
func (r *procRunner) Stderr() io.ReadCloser { return r.stderr }

// Name is the binary's path: go-plugin names the plugin's logger after its
// base name.
func (r *procRunner) Name() string { return r.name }

// ID is the process ID ("" before Start).
func (r *procRunner) ID() string {
	if r.pid == 0 {
		return ""
	}
	return strconv.Itoa(r.pid)
}

// Diagnose explains a failed handshake.
func (r *procRunner) Diagnose(context.Context) string {
	return "the plugin did not complete go-plugin's handshake: is " + r.name + " a flowtap sink plugin for this platform, built with plugins/sdk?"
}

// PluginToHost: the plugin shares flowtap's file system and network.
func (r *procRunner) PluginToHost(network, addr string) (string, string, error) {
	return network, addr, nil
}

// HostToPlugin: the plugin shares flowtap's file system and network.
func (r *procRunner) HostToPlugin(network, addr string) (string, string, error) {
	return network, addr, nil
}

// descriptorGap is how far above the highest open descriptor a plugin
// binary's descriptor goes: room for the descriptors opened between then
// and the fork (the standard streams' pipes, /dev/null, and whatever other
// goroutines open meanwhile) and for the child's moves of its standard
// streams and ExtraFiles (one each at most).
const descriptorGap = 64

// highestFD returns the highest descriptor open in this process.
func highestFD() (int, error) {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, fmt.Errorf("list this process's open descriptors: %w", err)
	}
	highest := 2
	for _, e := range entries {
		if n, err := strconv.Atoi(e.Name()); err == nil && n > highest {
			highest = n
		}
	}
	return highest, nil
}
