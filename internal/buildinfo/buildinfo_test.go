// SPDX-License-Identifier: Apache-2.0

package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func settings(kv ...string) []debug.BuildSetting {
	var s []debug.BuildSetting
	for i := 0; i+1 < len(kv); i += 2 {
		s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
	}
	return s
}

func TestResolve(t *testing.T) {
	const rev = "1a2b3c4d5e6f7a8b9c0d1a2b3c4d5e6f7a8b9c0d"
	tagged := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.1.0"},
		Settings: settings("vcs.revision", rev, "vcs.time", "2026-12-05T20:00:00Z", "vcs.modified", "false")}
	for _, tc := range []struct {
		name string
		l    linked
		bi   *debug.BuildInfo
		want Info
	}{
		{
			name: "linker values win",
			l:    linked{version: "v0.2.0", commit: "abc", date: "2026-01-01T00:00:00Z", dirty: "true"},
			bi:   tagged,
			want: Info{Version: "v0.2.0", Commit: "abc", Date: "2026-01-01T00:00:00Z", Dirty: true, GoVersion: "go1.26.8"},
		},
		{
			name: "plain go build of a tagged commit",
			bi:   tagged,
			want: Info{Version: "v0.1.0", Commit: rev, Date: "2026-12-05T20:00:00Z", GoVersion: "go1.26.8"},
		},
		{
			name: "go build of a modified tree",
			bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.1.1-0.20261205200000-1a2b3c4d5e6f+dirty"},
				Settings: settings("vcs.revision", rev, "vcs.modified", "true")},
			want: Info{Version: "v0.1.1-0.20261205200000-1a2b3c4d5e6f", Commit: rev, Date: Unknown, Dirty: true, GoVersion: "go1.26.8"},
		},
		{
			name: "linker says clean although the toolchain saw a change",
			l:    linked{version: "v0.1.0", dirty: "false"},
			bi:   &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: settings("vcs.modified", "true")},
			want: Info{Version: "v0.1.0", Commit: Unknown, Date: Unknown},
		},
		{
			name: "no VCS information at all",
			bi:   &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}},
			want: Info{Version: "dev", Commit: Unknown, Date: Unknown},
		},
		{
			name: "no build information",
			want: Info{Version: "dev", Commit: Unknown, Date: Unknown},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := resolve(tc.l, tc.bi)
			// The toolchain and platform of this test binary stand in
			// where the build information has none.
			if tc.want.GoVersion == "" {
				tc.want.GoVersion = got.GoVersion
			}
			tc.want.Platform = got.Platform
			if got != tc.want {
				t.Errorf("resolve =\n %+v\nwant\n %+v", got, tc.want)
			}
		})
	}
}

func TestString(t *testing.T) {
	i := Info{Version: "v0.1.0", Commit: "1a2b3c4d5e6f7a8b9c0d", Date: "2026-12-05T20:00:00Z", Dirty: true, GoVersion: "go1.26.8", Platform: "linux/arm64"}
	want := "flowtap v0.1.0 (commit 1a2b3c4d5e6f dirty, 2026-12-05T20:00:00Z, go1.26.8 linux/arm64)"
	if got := i.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := (Info{Commit: Unknown}).ShortCommit(); got != Unknown {
		t.Errorf("ShortCommit of an unknown commit = %q", got)
	}
}

// TestGetInTestBinary checks Get on this very binary: go test embeds build
// information without VCS settings, so the version is "dev" or the module
// version, never empty.
func TestGetInTestBinary(t *testing.T) {
	i := Get()
	if i.Version == "" || i.Commit == "" || i.Date == "" || !strings.HasPrefix(i.GoVersion, "go") || !strings.Contains(i.Platform, "/") {
		t.Errorf("Get() = %+v: a field is empty", i)
	}
}
