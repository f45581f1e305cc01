// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"os"
	"testing"
)

// TempDirMode makes a directory under os.TempDir with the given mode and
// removes it, with everything in it, when the test ends. Tests use it where
// t.TempDir does not serve: its directories are 0700 under a 0700 parent,
// and a plugin running as another user (or a binary flowtap must trust,
// in directories only root may write) needs a directory of its own mode.
func TempDirMode(tb testing.TB, pattern string, mode os.FileMode) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, mode); err != nil {
		tb.Fatal(err)
	}
	return dir
}
