// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Probe is this test binary started again to run one test of its own, a
// helper that probes the process it runs in and prints one JSON line:
// start it (Cmd.Start, or from a thread of the caller's choice), then Wait.
type Probe struct {
	// Cmd runs the helper test; its output goes to Wait.
	Cmd         *exec.Cmd
	out, stderr strings.Builder
}

// NewProbe returns the command that runs test (its exact name) of this
// test binary with env added to the environment.
func NewProbe(test string, env ...string) *Probe {
	p := &Probe{Cmd: exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")}
	p.Cmd.Env = append(os.Environ(), env...)
	p.Cmd.Stdout, p.Cmd.Stderr = &p.out, &p.stderr
	return p
}

// Wait waits for the started helper and decodes its first output line
// into v; it fails t when the helper fails or prints no such line.
func (p *Probe) Wait(t testing.TB, v any) {
	t.Helper()
	if err := p.Cmd.Wait(); err != nil {
		t.Fatalf("probe: %v\n%s%s", err, p.out.String(), p.stderr.String())
	}
	line, _, _ := strings.Cut(p.out.String(), "\n")
	if err := json.Unmarshal([]byte(line), v); err != nil {
		t.Fatalf("probe output %q: %v", p.out.String(), err)
	}
}

// RawErrno makes system call nr with up to six arguments and returns its
// errno (0 for success): for probes of what a seccomp filter allows.
func RawErrno(nr uintptr, a ...uintptr) int {
	var args [6]uintptr
	copy(args[:], a)
	_, _, e := unix.Syscall6(nr, args[0], args[1], args[2], args[3], args[4], args[5])
	return int(e)
}
