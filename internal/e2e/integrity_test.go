// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flowtap/flowtap/internal/e2e/harness"
	"github.com/flowtap/flowtap/internal/privtest"
	"github.com/flowtap/flowtap/internal/testutil"
)

// sharedDir returns a new directory that the sink plugins, which run as
// an unprivileged user when the tests run as root, may write: unlike
// t.TempDir, whose parent only root may enter. It is removed at the end.
func sharedDir(t *testing.T) string {
	t.Helper()
	return testutil.TempDirMode(t, "flowtap-e2e-sink-", 0o777)
}

// mountTmpfs mounts a tmpfs of size (e.g. "600k"), writable by everyone
// (the file sink's plugin runs as an unprivileged user), and unmounts it
// when the test ends.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0777"); err != nil {
		t.Fatalf("mount a tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	// t.TempDir's parents are root's alone; the plugin must reach it.
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o777|os.ModeSticky); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// sinkCounters parses the "sink counters" log line of the sink named
// like the pattern.
func sinkCounters(t *testing.T, log string) map[string]uint64 {
	t.Helper()
	for line := range strings.SplitSeq(log, "\n") {
		if !strings.Contains(line, "sink counters:") {
			continue
		}
		out := map[string]uint64{}
		for _, m := range regexp.MustCompile(`(\w+)=(\d+)`).FindAllStringSubmatch(line, -1) {
			n, _ := strconv.ParseUint(m[2], 10, 64)
			out[m[1]] = n
		}
		return out
	}
	t.Fatalf("no sink counters in the log:\n%s", log)
	return nil
}

// TestFileSinkDiskFull replays 20,000 connections (80,000 events) into
// the file sink on a tmpfs of 600 KiB. The disk fills; once, when the
// sink first fails, the test frees 300 KiB, so that retries refill it.
// Afterwards every line of the file is one whole JSON event (no partial
// batch, no line merged with the next), and the lines beyond one per
// event are at most the duplicates_resent counter. The sink gives up in
// the end, so flowtap exits with an error.
func TestFileSinkDiskFull(t *testing.T) {
	privtest.Require(t)
	bin := harness.Binaries(t)
	dir := mountTmpfs(t, "600k")
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 300<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	pcap := filepath.Join(t.TempDir(), "c.pcap")
	if err := os.WriteFile(pcap, testutil.ConnectionsPcap(20000), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "events.jsonl")
	cfg := writeConfig(t, fmt.Sprintf(`pipelines:
  - name: disk
    events: [flows]
    sinks:
      - plugin: file
        config: {path: %s}
        queue: {batch_size: 200}
        restart: {max_attempts: 4, initial_backoff: 20ms, max_backoff: 100ms}
`, out))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "flowtap"), "replay", "--config", cfg, pcap)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	var freed sync.Once
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "sink plugin failed; retrying") {
			freed.Do(func() {
				if err := os.Remove(filler); err != nil {
					t.Error(err)
				}
			})
		}
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("flowtap exited with %v, want status 1 (the sink gave up on the full disk)\n%s", err, log.String())
	}
	if _, err := os.Stat(filler); err == nil {
		t.Fatalf("the sink never failed: the disk did not fill\n%s", log.String())
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Errorf("the file ends inside a line: %q", data[max(0, len(data)-80):])
	}
	seen := map[string]int{}
	lines := 0
	for line := range bytes.SplitSeq(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		lines++
		var ev struct {
			Timestamp int64          `json:"timestamp"`
			Event     string         `json:"event"`
			Fields    map[string]any `json:"fields"`
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		if err := dec.Decode(&ev); err != nil || dec.More() || ev.Event == "" {
			t.Fatalf("line %d is not one JSON event (%v): %q", lines, err, line)
		}
		seen[fmt.Sprint(ev.Timestamp, ev.Event, ev.Fields["conn_direction"], ev.Fields["src_port"])]++
	}
	c := sinkCounters(t, log.String())
	extra := lines - len(seen)
	t.Logf("%d lines, %d events, %d beyond one per event; counters %v", lines, len(seen), extra, c)
	if lines == 0 {
		t.Fatal("nothing was written")
	}
	if uint64(extra) > c["duplicates_resent"] {
		t.Errorf("%d lines beyond one per event, but duplicates_resent is %d", extra, c["duplicates_resent"])
	}
	if uint64(len(seen)) < c["acked"] || c["lost"] == 0 {
		t.Errorf("%d events in the file, fewer than the %d acknowledged, or no loss reported: %v", len(seen), c["acked"], c)
	}
}
