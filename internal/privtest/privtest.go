// SPDX-License-Identifier: Apache-2.0

// Package privtest decides whether a test that needs kernel privileges
// (loading and attaching BPF programs) runs, skips or fails.
package privtest

import (
	"os"
	"testing"

	"github.com/flowtap/flowtap/bpf"
)

// Require is the one place that decides privileged tests. Call it first in
// any test that needs to load or attach BPF programs.
//
// The rule: CI runs as root, so there a missing privilege is a broken
// environment and the test FAILS (t.Fatalf) when the CI environment
// variable is "true". Anywhere else (a developer's unprivileged shell) the
// test is skipped with the reason. The check itself is bpf.CheckPrivileges,
// so tests and the agent agree on what "privileged enough" means.
func Require(t testing.TB) {
	t.Helper()
	require(t, bpf.CheckPrivileges, os.Getenv("CI") == "true")
}

// require applies the rule with an injectable check and CI flag.
func require(t testing.TB, check func() error, inCI bool) {
	t.Helper()
	err := check()
	if err == nil {
		return
	}
	if inCI {
		t.Fatalf("privileged test cannot run in CI (CI=true): %v", err)
		return
	}
	t.Skipf("skipping privileged test: %v", err)
}
