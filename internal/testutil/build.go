package testutil

import (
	"os/exec"
	"testing"
)

// BuildBinary builds the Go command in pkg (an import path, or a path
// relative to the test's package directory) as the executable out, passing
// flags to go build before the package (e.g. "-ldflags", "-X main.x=y").
// A failed build fails tb with the compiler's output.
func BuildBinary(tb testing.TB, pkg, out string, flags ...string) {
	tb.Helper()
	args := append([]string{"build", "-o", out}, flags...)
	if msg, err := exec.Command("go", append(args, pkg)...).CombinedOutput(); err != nil {
		tb.Fatalf("go build %s: %v\n%s", pkg, err, msg)
	}
}
