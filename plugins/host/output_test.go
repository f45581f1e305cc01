// SPDX-License-Identifier: Apache-2.0

package host

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/testutil"
)

// TestOutputClosed: the stdout plugin prints to a pipe whose reader is
// gone, as with 'flowtap run | head -1'. Its write fails with EPIPE, and
// the batch fails with ErrOutputClosed, not ErrRejected: no retry can
// help. OutputClosed and WaitOutputClosed say so for the pipe itself,
// and never for a regular file.
func TestOutputClosed(t *testing.T) {
	bin := buildPlugin(t, stdoutPkg)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if OutputClosed(w) {
		t.Fatal("OutputClosed on a pipe with a reader")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := Start(ctx, Config{Name: "test / stdout", Plugin: bin, Logger: hclog.NewNullLogger(), Output: w, Names: names})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if err := s.Configure(ctx, map[string]any{"format": "json"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, []events.Event{flowBegin()}); err != nil {
		t.Fatalf("first batch, with a reader: %v", err)
	}
	r.Close() // the reader goes, like head after its line
	if !OutputClosed(w) {
		t.Fatal("OutputClosed is false on a pipe without a reader")
	}
	waitCtx, stop := context.WithTimeout(ctx, 5*time.Second)
	defer stop()
	if !WaitOutputClosed(waitCtx, w) {
		t.Fatal("WaitOutputClosed did not see the reader go")
	}
	err = s.Write(ctx, []events.Event{flowBegin()})
	if !errors.Is(err, ErrOutputClosed) || errors.Is(err, ErrRejected) {
		t.Fatalf("Write after the reader went = %v, want ErrOutputClosed and not ErrRejected", err)
	}
	if !strings.Contains(err.Error(), "broken pipe") {
		t.Errorf("error %q does not quote the sink's own message", err)
	}

	file, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	short, stopShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer stopShort()
	if OutputClosed(file) || WaitOutputClosed(short, file) {
		t.Error("a regular file counts as a closed output")
	}
}

// TestPluginLogNumbers: a plugin's log line reaches the host's log with
// its durations as durations and its whole numbers as integers (not
// 5e+09), its keys sorted, go-plugin's timestamp last.
func TestPluginLogNumbers(t *testing.T) {
	bin := buildPlugin(t, discardPkg)
	logs := &testutil.SyncBuffer{}
	logger := hclog.New(&hclog.LoggerOptions{Name: "host", Output: logs, Level: hclog.Info})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := Start(ctx, Config{Name: "test / discard", Plugin: bin, Logger: logger, Names: names})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Configure(ctx, map[string]any{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	var line string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "configured discard sink") {
			line = l
		}
	}
	if want := `configured discard sink: sink="test / discard" flush_every=5s limit=5000000000 reject="" timestamp=`; !strings.Contains(line, want) {
		t.Errorf("plugin's log line\n%s\nlacks\n%s", line, want)
	}
	if bytes.Contains([]byte(line), []byte("e+09")) {
		t.Errorf("a number in exponent form: %s", line)
	}
}
