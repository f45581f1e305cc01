// SPDX-License-Identifier: Apache-2.0

package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/flowtap/flowtap/internal/privdrop"
	"github.com/flowtap/flowtap/internal/privtest"
)

// TestPluginHoldsNoPrivilege starts a real plugin as root and reads its
// /proc/<pid>/status: no capability in any set (bounding and ambient
// included), NoNewPrivs, the seccomp filter, and, run as the default user, a uid and gid
// other than 0 and no supplementary group. Run as root (RunAs nil), it
// still holds no capability. Either way it serves batches (flowtap
// reaches its socket).
func TestPluginHoldsNoPrivilege(t *testing.T) {
	privtest.Require(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root: switching users")
	}
	bin := buildPlugin(t, discardPkg)
	for _, tc := range []struct {
		name  string
		runAs *Identity
	}{
		{"default user", DefaultIdentity()},
		{"root without capabilities", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			s, err := Start(ctx, Config{Name: "priv", Plugin: bin, RunAs: tc.runAs, Logger: hclog.NewNullLogger(),
				Stdout: io.Discard, Stderr: io.Discard})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close(ctx)
			st, err := privdrop.ReadStatus(fmt.Sprint(s.PID()))
			if err != nil {
				t.Fatal(err)
			}
			if st.Inh|st.Prm|st.Eff|st.Bnd|st.Amb != 0 {
				t.Errorf("capabilities inh %#x prm %#x eff %#x bnd %#x amb %#x, want none in any set", st.Inh, st.Prm, st.Eff, st.Bnd, st.Amb)
			}
			if !st.NoNewPrivs {
				t.Error("NoNewPrivs is not set")
			}
			if st.Seccomp != 2 {
				t.Errorf("Seccomp mode %d, want 2: the plugin filter (seccomp.go)", st.Seccomp)
			}
			if tc.runAs != nil {
				want := fmt.Sprint(tc.runAs.UID)
				if len(st.UID) != 4 || st.UID[0] == "0" || st.UID[0] != want || st.UID[1] != want || st.UID[2] != want {
					t.Errorf("Uid = %v, want %s in every place", st.UID, want)
				}
				if len(st.GID) != 4 || st.GID[0] != fmt.Sprint(tc.runAs.GID) {
					t.Errorf("Gid = %v, want %d", st.GID, tc.runAs.GID)
				}
				if len(st.Groups) != 0 {
					t.Errorf("Groups = %v, want none", st.Groups)
				}
			}
			t.Logf("plugin %d: Uid %v, CapEff %#x, CapBnd %#x, NoNewPrivs %v", s.PID(), st.UID, st.Eff, st.Bnd, st.NoNewPrivs)
			if err := s.Configure(ctx, map[string]any{}); err != nil {
				t.Fatal(err)
			}
			if err := s.Write(ctx, flowEnds(3)); err != nil {
				t.Fatalf("Write to the unprivileged plugin: %v", err)
			}
			if err := s.Close(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestUntrustedPluginRefused: as root, a plugin is refused when it, or a
// directory above it, could be changed by someone else: a directory of
// mode 0777 (without the sticky bit), a group-writable directory higher
// up, a binary owned by another user, a directory owned by another user.
// A sticky world-writable directory above root-owned ones (like /tmp)
// is fine.
func TestUntrustedPluginRefused(t *testing.T) {
	privtest.Require(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root: chown")
	}
	src := buildPlugin(t, discardPkg)
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	place := func(t *testing.T, sub string, dirMode os.FileMode) (dir, bin string) {
		dir = filepath.Join(root, sub)
		if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, dirMode); err != nil {
			t.Fatal(err)
		}
		bin = filepath.Join(dir, "bin", "flowtap-sink-x")
		if err := os.WriteFile(bin, data, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir, bin
	}
	start := func(bin string) error {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		s, err := Start(ctx, Config{Name: "trust", Plugin: bin, Logger: hclog.NewNullLogger(), Stdout: io.Discard, Stderr: io.Discard})
		if err == nil {
			s.Close(ctx)
		}
		return err
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) string
		want  string // "" = accepted
	}{
		{"trusted", func(t *testing.T) string { _, bin := place(t, "ok", 0o755); return bin }, ""},
		{"sticky world-writable dir above", func(t *testing.T) string {
			dir, _ := place(t, "sticky", os.ModeSticky|0o777)
			inner := filepath.Join(dir, "inner")
			if err := os.Mkdir(inner, 0o755); err != nil {
				t.Fatal(err)
			}
			bin := filepath.Join(inner, "flowtap-sink-x")
			if err := os.WriteFile(bin, data, 0o755); err != nil {
				t.Fatal(err)
			}
			return bin
		}, ""},
		{"0777 directory", func(t *testing.T) string { _, bin := place(t, "open", 0o777); return bin }, "which group or others may write (mode 0777)"},
		{"group-writable directory above", func(t *testing.T) string { _, bin := place(t, "group", 0o775); return bin }, "which group or others may write"},
		{"binary owned by nobody", func(t *testing.T) string {
			_, bin := place(t, "owned", 0o755)
			if err := os.Chown(bin, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			return bin
		}, "is owned by uid 65534, not root"},
		{"directory owned by nobody", func(t *testing.T) string {
			dir, bin := place(t, "dirowned", 0o755)
			if err := os.Chown(filepath.Join(dir, "bin"), 65534, 65534); err != nil {
				t.Fatal(err)
			}
			return bin
		}, "which is owned by uid 65534, not root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := tc.setup(t)
			err := start(bin)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Start = %v, want ErrUntrusted saying %q", err, tc.want)
			}
			t.Log(err)
		})
	}
}

// TestCheckedFileIsExecuted: the binary executed is the file that was
// checked and hashed, even when the path is replaced between the check
// and the exec.
func TestCheckedFileIsExecuted(t *testing.T) {
	bin := buildPlugin(t, discardPkg)
	sum, err := fileSHA256(bin)
	if err != nil {
		t.Fatal(err)
	}
	f, err := openTrusted(bin, sum, os.Geteuid())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Replace the path: a script that says so.
	other := filepath.Join(filepath.Dir(bin), "other")
	if err := os.WriteFile(other, []byte("#!/bin/sh\necho replaced\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other, bin); err != nil {
		t.Fatal(err)
	}
	l, err := getLauncher()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	r, err := newProcRunner(cmd, bin, f, l)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(&out, io.MultiReader(r.Stdout(), r.Stderr()))
	}()
	if err := r.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	<-done
	_ = r.Wait(t.Context())
	if strings.Contains(out.String(), "replaced") || !strings.Contains(out.String(), "plugin") {
		t.Errorf("the replaced file ran, not the checked one: %q", out.String())
	}
}
