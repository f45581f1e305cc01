// SPDX-License-Identifier: Apache-2.0

package privtest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// fakeTB records what require asks of a testing.TB.
type fakeTB struct {
	testing.TB
	fatal, skip string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.skip = fmt.Sprintf(format, args...)
}

func TestRequireRule(t *testing.T) {
	missing := func() error { return errors.New("missing CAP_BPF") }
	ok := func() error { return nil }
	for _, tc := range []struct {
		name      string
		check     func() error
		inCI      bool
		wantFatal bool
		wantSkip  bool
	}{
		{"privileged outside CI runs", ok, false, false, false},
		{"privileged in CI runs", ok, true, false, false},
		{"unprivileged outside CI skips", missing, false, false, true},
		{"unprivileged in CI fails", missing, true, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeTB{}
			require(f, tc.check, tc.inCI)
			if got := f.fatal != ""; got != tc.wantFatal {
				t.Errorf("Fatalf called = %v (%q), want %v", got, f.fatal, tc.wantFatal)
			}
			if got := f.skip != ""; got != tc.wantSkip {
				t.Errorf("Skipf called = %v (%q), want %v", got, f.skip, tc.wantSkip)
			}
			for _, msg := range []string{f.fatal, f.skip} {
				if msg != "" && !strings.Contains(msg, "missing CAP_BPF") {
					t.Errorf("message %q does not carry the check's reason", msg)
				}
			}
		})
	}
}

func TestRequireAsRoot(t *testing.T) {
	// Exercises the real check: as root it returns, otherwise skips (or
	// fails in CI), exactly like every privileged test.
	Require(t)
}
