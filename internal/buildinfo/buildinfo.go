// Package buildinfo reports the version flowtap was built as.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is set at link time by `make build`
// (-ldflags "-X github.com/flowtap/flowtap/internal/buildinfo.Version=...");
// otherwise it is read from the module build information.
var Version = ""

// String returns e.g. "flowtap v0.1.0 (commit 1a2b3c4, go1.26.8 linux/amd64)".
func String() string {
	v, commit := Version, "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
				if len(commit) > 12 {
					commit = commit[:12]
				}
			case "vcs.modified":
				if s.Value == "true" {
					commit += "-dirty"
				}
			}
		}
	}
	if v == "" || v == "(devel)" {
		v = "dev"
	}
	return fmt.Sprintf("flowtap %s (commit %s, %s %s/%s)", v, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
