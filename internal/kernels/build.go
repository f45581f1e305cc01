// SPDX-License-Identifier: Apache-2.0

package kernels

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// SuiteSpec is a test package the matrix runs on every kernel, and which
// of its tests.
type SuiteSpec struct {
	// Name names the suite in results.
	Name string
	// Package is the package's directory relative to the module root.
	Package string
	// Run names the top-level tests to run (none: every test).
	Run []string
	// Skip names the top-level tests to leave out.
	Skip []string
	// Timeout bounds the suite (-test.timeout). Set it to about 2.5 times
	// what the suite takes in a guest under TCG on a loaded 2-core
	// machine; natively it takes a tenth of that.
	Timeout time.Duration
}

// Suites are what runs on each kernel: every test of bpf/ (the privileged
// ones load, attach and exercise each program: core capture, owners of
// sockets that existed before, MPTCP subflows, DNS capture, no-socket
// resets, snapshots), and the end-to-end ground truth, which runs the real
// flowtap binary with its stdout sink against a workload in two processes
// and two network namespaces.
var Suites = []SuiteSpec{
	{Name: "bpf", Package: "bpf", Skip: bpfSkip, Timeout: 8 * time.Minute},
	{Name: "e2e", Package: "internal/e2e", Run: []string{"TestGroundTruth"}, Timeout: 3 * time.Minute},
}

// bpfSkip are the bpf tests the matrix leaves out. Each costs a guest
// seconds of emulated verification per program load and tests flowtap's
// own logic rather than the kernel's: the degradation tests make the
// verifier refuse programs on purpose (FLOWTAP_TEST_BREAK_PROGRAMS), and
// the capability test runs eight helper processes that each load
// everything. 'make test' runs them on the host.
var bpfSkip = []string{
	"TestMinimalCapabilities",
	"TestCoreProgramRefused", "TestOptionalFeatureLost", "TestDNSFeatureLost", "TestSnapshotFeatureLost",
}

// namesPattern is a -test.run or -test.skip pattern matching exactly the
// top-level tests named ("" for none).
func namesPattern(names []string) string {
	if len(names) == 0 {
		return ""
	}
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = regexp.QuoteMeta(n)
	}
	return "^(" + strings.Join(quoted, "|") + ")$"
}

// Built are the static binaries a guest runs.
type Built struct {
	// Init is the kernel-init binary.
	Init string
	// Bin is a directory laid out like 'make build' lays out bin/:
	// flowtap, its sink plugins, flowtap-workload.
	Bin string
	// Tests maps a suite's name to its test binary.
	Tests map[string]string
}

// Build builds everything static (CGO_ENABLED=0) into dir: the guest has
// no C library and no Go toolchain.
func Build(ctx context.Context, root, dir string, suites []SuiteSpec, log io.Writer) (*Built, error) {
	b := &Built{
		Init:  filepath.Join(dir, "kernel-init"),
		Bin:   filepath.Join(dir, "bin"),
		Tests: map[string]string{},
	}
	steps := [][]string{
		{"build", "-trimpath", "-o", b.Init, "./internal/kernels/cmd/kernel-init"},
		{"build", "-trimpath", "-o", b.Bin + "/", "./cmd/..."},
	}
	for _, s := range suites {
		out := filepath.Join(dir, "tests", s.Name+".test")
		b.Tests[s.Name] = out
		steps = append(steps, []string{"test", "-c", "-trimpath", "-o", out, "./" + s.Package})
	}
	for _, args := range steps {
		start := time.Now()
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		fmt.Fprintf(log, "kernels: go %s (%v)\n", strings.Join(args, " "), time.Since(start).Round(100*time.Millisecond))
	}
	return b, nil
}
