// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"net"
	"os"
	"os/exec"
	"testing"
)

// NeedTool returns the path of a program 'make deps' installs. Where it
// is missing, the test fails in CI (CI=true: the environment is broken)
// and is skipped anywhere else, naming the program.
func NeedTool(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%s is not installed (make deps installs it): %v", name, err)
	}
	tb.Skipf("%s is not installed (make deps installs it): %v", name, err)
	return ""
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on now,
// for a server the test starts with an address it must know beforehand.
func FreePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
