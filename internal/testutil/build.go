// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"testing"
)

// BinariesEnv names a directory of prebuilt binaries, one per command,
// named as 'go build' names them (flowtap, flowtap-sink-stdout,
// flowtap-workload, ...). When it is set, BuildBinary copies from there
// instead of building, and internal/e2e/harness uses it as its bin
// directory. The kernel matrix sets it: its guests have no Go toolchain
// (internal/kernels).
const BinariesEnv = "FLOWTAP_TEST_BINARIES"

// PrebuiltBinaries returns the directory BinariesEnv names, or "" when
// the tests build their binaries themselves.
func PrebuiltBinaries() string { return os.Getenv(BinariesEnv) }

// BuildBinary builds the Go command in pkg (an import path, or a path
// relative to the test's package directory) as the executable out, passing
// flags to go build before the package (e.g. "-ldflags", "-X main.x=y").
// A failed build fails tb with the compiler's output.
//
// With BinariesEnv set it copies the prebuilt binary named like pkg's last
// element instead; one that is missing, or a build that needs flags,
// fails tb.
func BuildBinary(tb testing.TB, pkg, out string, flags ...string) {
	tb.Helper()
	if dir := PrebuiltBinaries(); dir != "" {
		if len(flags) > 0 {
			tb.Fatalf("build %s with %q: %s=%s holds prebuilt binaries, which cannot take build flags", pkg, flags, BinariesEnv, dir)
		}
		if err := copyExecutable(filepath.Join(dir, path.Base(pkg)), out); err != nil {
			tb.Fatalf("prebuilt %s (%s=%s): %v", pkg, BinariesEnv, dir, err)
		}
		return
	}
	args := append([]string{"build", "-o", out}, flags...)
	if msg, err := exec.Command("go", append(args, pkg)...).CombinedOutput(); err != nil {
		tb.Fatalf("go build %s: %v\n%s", pkg, err, msg)
	}
}

func copyExecutable(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	return out.Close()
}
