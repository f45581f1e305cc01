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
	// Run names the tests to run (none: every test): top-level tests
	// ("TestX") or subtests ("TestX/case").
	Run []string
	// Skip names top-level tests to leave out.
	Skip []string
	// Pattern, if set, is a -test.run pattern used instead of Run and
	// Skip (test-kernels -run, for a developer narrowing a run down).
	Pattern string
	// Timeout bounds the suite (-test.timeout). Set it to about 2.5 times
	// what the suite takes in a guest under TCG on a loaded 2-core
	// machine; natively it takes a tenth of that.
	Timeout time.Duration
}

// Suites are what runs on each kernel: the bpf tests that load, attach
// and exercise every program of every feature, and the end-to-end ground
// truth. Each program load costs a guest seconds of emulated
// verification, so the guests run a subset chosen to cover each program
// and feature once, in both capture modes where the test has them
// (sockets: flows from sock_ops; packets: packet-flows) where the mode
// changes the programs under test, rather than
// every test: the matrix must stay well inside CI's time. 'make test' runs
// all of them on the host.
var Suites = []SuiteSpec{
	{Name: "bpf", Package: "bpf", Run: bpfTests, Timeout: 8 * time.Minute},
	{Name: "e2e", Package: "internal/e2e", Run: e2eTests, Timeout: 4 * time.Minute},
}

// bpfTests are the bpf tests of the matrix, and what each covers.
var bpfTests = []string{
	"TestEveryProgramLoads",        // every program of every feature loads (doctor's probe)
	"TestProgramParsing",           // packet parsing through BPF_PROG_TEST_RUN
	"TestCaptureLoopback",          // core and packet-flows: handshake records, IPv4, IPv6, extension headers
	"TestCloseRecords",             // core: one closed record per socket (sock_ops, tp_btf)
	"TestOwnership",                // existing-owners, and existing-closes and mptcp, which load with packet flows only; the fallbacks of kernels without bpf_get_current_task_btf
	"TestSnapshot",                 // snapshots
	"TestNoSocketReset",            // nosock-resets, also between network namespaces over veth
	"TestDNSCapture",               // dns
	"TestLostRecordMarkers",        // the ring buffer's loss accounting
	"TestMapReadsNeedCapability",   // whether flowtap must keep CAP_BPF after start (before Linux 5.19)
	"TestNothingAttachedAfterKill", // links die with the process
}

// e2eTests are the ground truth without DNS and with packet events: the
// real flowtap and its stdout sink against 500 connections and 60 failed
// attempts, a server started before flowtap, two network namespaces.
// (Its third case, with DNS, repeats the first with the DNS programs,
// which TestDNSCapture covers.)
var e2eTests = []string{"TestGroundTruth/flows", "TestGroundTruth/packet_events"}

// namesPattern is a -test.run or -test.skip pattern matching exactly the
// tests named ("" for none): top-level tests ("TestX") and subtests
// ("TestX/case", as go test names them: spaces become underscores), one
// alternative each (go test splits a pattern at top-level "|" before it
// splits each alternative into levels at "/").
func namesPattern(names []string) string {
	alts := make([]string, len(names))
	for i, n := range names {
		levels := strings.Split(n, "/")
		for j, l := range levels {
			levels[j] = "^" + regexp.QuoteMeta(l) + "$"
		}
		alts[i] = strings.Join(levels, "/")
	}
	return strings.Join(alts, "|")
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
