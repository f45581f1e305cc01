// SPDX-License-Identifier: Apache-2.0

package host

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/flowtap/flowtap/internal/testutil"
)

// buildBroken builds testdata/broken in the given mode.
func buildBroken(t *testing.T, mode string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "flowtap-sink-broken-"+mode)
	testutil.BuildBinary(t, "./testdata/broken", out, "-ldflags", "-X main.mode="+mode)
	return out
}

// TestBrokenPlugins: plugins that get the start-up wrong fail Start with
// an error naming the sink and its binary and saying what went wrong,
// well before the start timeout (never a hang). A plugin speaking an old
// protocol version: TestStartOldProtocol; a missing binary:
// TestStartMissingBinary; one that never answers: TestStartTimeout.
func TestBrokenPlugins(t *testing.T) {
	for _, tc := range []struct {
		mode string
		want []string
	}{
		{"stdout", []string{"printed to its standard output before the handshake", "loading configuration from /etc/broken.conf"}},
		{"exit", []string{"handshake", "exited before the handshake", "broken: cannot start: no licence"}},
		{"cookie", []string{"handshake", "exited before the handshake", "This binary is a plugin"}},
		{"garbled", []string{"2|x|carrier-pigeon"}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			bin := buildBroken(t, tc.mode)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			start := time.Now()
			s, err := Start(ctx, Config{Name: "p / broken", Plugin: bin, Logger: hclog.NewNullLogger()})
			if err == nil {
				s.Close(ctx)
				t.Fatal("Start succeeded")
			}
			t.Log(err)
			for _, want := range append([]string{`start sink "p / broken"`, bin}, tc.want...) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q", want)
				}
			}
			if d := time.Since(start); d > DefaultStartTimeout/2 {
				t.Errorf("Start took %v to fail", d)
			}
		})
	}
}

// TestWritableBinaryRefused: as root, a plugin binary that group or others
// may write is refused, with the fix in the error; its owner's write bit
// is fine. Not as root, it is run (the user could replace it anyway).
func TestWritableBinaryRefused(t *testing.T) {
	bin := buildPlugin(t, discardPkg)
	check := func(euid int) error {
		f, err := os.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		return checkBinary(f, bin, bin, euid)
	}
	for _, mode := range []os.FileMode{0o775, 0o757, 0o777} {
		if err := os.Chmod(bin, mode); err != nil {
			t.Fatal(err)
		}
		err := check(0)
		if err == nil {
			t.Errorf("mode %v: not refused", mode)
			continue
		}
		for _, want := range []string{bin, "writable by group or others", "chmod go-w " + bin} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("mode %v: error %q lacks %q", mode, err, want)
			}
		}
		if !errors.Is(err, ErrUntrusted) {
			t.Errorf("mode %v: error is not ErrUntrusted", mode)
		}
		if err := check(1000); err != nil {
			t.Errorf("mode %v, not root: %v", mode, err)
		}
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := check(0); err != nil {
			t.Errorf("mode 0755 refused: %v", err)
		}
	}
	if os.Geteuid() != 0 {
		return
	}
	// Through Start, as root.
	if err := os.Chmod(bin, 0o777); err != nil {
		t.Fatal(err)
	}
	_, err := Start(t.Context(), Config{Name: "p / writable", Plugin: bin, Logger: hclog.NewNullLogger()})
	if err == nil || !strings.Contains(err.Error(), `start sink "p / writable"`) || !strings.Contains(err.Error(), "chmod go-w") {
		t.Errorf("Start of a world-writable binary as root = %v", err)
	}
}

// TestSHA256Pin: a pinned binary starts only if its hash matches; a
// mismatch names the file and both hashes.
func TestSHA256Pin(t *testing.T) {
	bin := buildPlugin(t, discardPkg)
	sum, err := fileSHA256(bin)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := Start(ctx, Config{Name: "pinned", Plugin: bin, Logger: hclog.NewNullLogger(), SHA256: strings.ToUpper(sum)})
	if err != nil {
		t.Fatalf("Start with the right pin: %v", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	wrong := strings.Repeat("ab", 32)
	_, err = Start(ctx, Config{Name: "pinned", Plugin: bin, Logger: hclog.NewNullLogger(), SHA256: wrong})
	if err == nil {
		t.Fatal("Start with a wrong pin succeeded")
	}
	for _, want := range []string{`start sink "pinned"`, bin, sum, wrong, "refusing to run it"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, err := Start(ctx, Config{Plugin: bin, SHA256: "abc"}); err == nil || !strings.Contains(err.Error(), "not 64 hex digits") {
		t.Errorf("Start with a malformed pin = %v", err)
	}
}
