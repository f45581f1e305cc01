// SPDX-License-Identifier: Apache-2.0

// Package buildinfo reports what flowtap was built from: its version, the
// commit, the commit's date and whether the tree had uncommitted changes.
//
// 'make build' and 'make dist' set all four at link time with -ldflags
// (see the Makefile's LDFLAGS); a plain 'go build' or 'go install' leaves
// them empty, and they are then read from the build information the Go
// toolchain embeds in every binary (runtime/debug.ReadBuildInfo: the module
// version Go derives from the git tag, vcs.revision, vcs.time and
// vcs.modified). What neither source knows reads "unknown".
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Set with -ldflags "-X github.com/flowtap/flowtap/internal/buildinfo.version=v0.1.0 ...".
// Unexported: nothing but the linker writes them.
var (
	// version is the semantic version, "v" included (v0.1.0, or
	// v0.1.1-dev.3+g1a2b3c4d5e6f between tags).
	version string
	// commit is the full commit hash.
	commit string
	// date is the commit's time in RFC 3339, UTC.
	date string
	// dirty is "true" when the build had uncommitted changes to tracked files.
	dirty string
)

// Unknown is what a field reads when neither the linker nor the embedded
// build information knows it.
const Unknown = "unknown"

// Info is what flowtap was built from.
type Info struct {
	// Version is a semantic version with its "v", or "dev" for a build
	// outside any versioned source (no tag, no VCS information).
	Version string `json:"version"`
	// Commit is the full git commit hash, or Unknown.
	Commit string `json:"commit"`
	// Date is the commit time (RFC 3339, UTC), or Unknown. It is the
	// commit's time, not the build's, so that rebuilding a commit gives
	// the same binary.
	Date string `json:"date"`
	// Dirty is true when tracked files differed from the commit.
	Dirty bool `json:"dirty"`
	// GoVersion is the toolchain that built the binary, e.g. go1.26.8.
	GoVersion string `json:"go"`
	// Platform is GOOS/GOARCH, e.g. linux/amd64.
	Platform string `json:"platform"`
}

// Get returns the running binary's build information.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return resolve(linked{version: version, commit: commit, date: date, dirty: dirty}, bi)
}

// linked holds the values set at link time.
type linked struct {
	version, commit, date, dirty string
}

// resolve merges the link-time values (which win) with the embedded build
// information bi (nil when the binary has none).
func resolve(l linked, bi *debug.BuildInfo) Info {
	info := Info{
		Version:   l.version,
		Commit:    l.commit,
		Date:      l.date,
		Dirty:     l.dirty == "true",
		GoVersion: runtime.Version(),
		Platform:  runtime.GOOS + "/" + runtime.GOARCH,
	}
	if bi != nil {
		if bi.GoVersion != "" {
			info.GoVersion = bi.GoVersion
		}
		if info.Version == "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if info.Commit == "" {
					info.Commit = s.Value
				}
			case "vcs.time":
				if info.Date == "" {
					info.Date = s.Value
				}
			case "vcs.modified":
				if l.dirty == "" {
					info.Dirty = s.Value == "true"
				}
			}
		}
	}
	// Go marks a module version built from a modified tree with
	// "+dirty"; the Dirty field says it once, so the version need not.
	info.Version = strings.TrimSuffix(info.Version, "+dirty")
	if info.Version == "" {
		info.Version = "dev"
	}
	if info.Commit == "" {
		info.Commit = Unknown
	}
	if info.Date == "" {
		info.Date = Unknown
	}
	return info
}

// ShortCommit is the commit's first 12 hex digits (the whole value when
// shorter, e.g. Unknown).
func (i Info) ShortCommit() string {
	if len(i.Commit) > 12 && i.Commit != Unknown {
		return i.Commit[:12]
	}
	return i.Commit
}

// String returns one line, e.g.
// "flowtap v0.1.0 (commit 1a2b3c4d5e6f, 2026-12-05T20:00:00Z, go1.26.8 linux/amd64)".
// A dirty build says "dirty" after the commit.
func (i Info) String() string {
	c := i.ShortCommit()
	if i.Dirty {
		c += " dirty"
	}
	return fmt.Sprintf("flowtap %s (commit %s, %s, %s %s)", i.Version, c, i.Date, i.GoVersion, i.Platform)
}

// String is Get().String(), for log lines.
func String() string { return Get().String() }
