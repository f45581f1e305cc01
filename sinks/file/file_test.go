// SPDX-License-Identifier: Apache-2.0

package file

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowtap/flowtap/plugins/sdk"
	"github.com/flowtap/flowtap/plugins/sdk/sdktest"
)

func batch(first, n int) []sdk.Event {
	out := make([]sdk.Event, n)
	for i := range out {
		out[i] = sdktest.Event("net_flow_tcp_end", sdktest.F("src", "10.0.0.1"), sdktest.F("bytes_sent", uint(i)),
			sdktest.F("close_reason", "fin"), sdktest.F("dst_dns", []string{"example.com"}))
		out[i].Timestamp = int64(first + i)
	}
	return out
}

// readLines returns the timestamps of the JSON lines in path, checking
// that every line is a JSON event.
func readLines(t *testing.T, path string) []int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ts []int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev struct {
			Timestamp int64          `json:"timestamp"`
			Event     string         `json:"event"`
			Fields    map[string]any `json:"fields"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev.Event != "net_flow_tcp_end" || ev.Fields["close_reason"] != "fin" {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		ts = append(ts, ev.Timestamp)
	}
	return ts
}

func TestFileWritesJSONLines(t *testing.T) {
	for _, fsync := range []string{FsyncBatch, FsyncNever} {
		t.Run(fsync, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sub", "events.jsonl")
			h := sdktest.New(t, New())
			if err := h.Configure(map[string]any{"path": path, "fsync": fsync}); err != nil {
				t.Fatal(err)
			}
			for k := range 3 {
				if err := h.Write(batch(k*100, 100)...); err != nil {
					t.Fatal(err)
				}
			}
			if err := h.Close(); err != nil {
				t.Fatal(err)
			}
			ts := readLines(t, path)
			if len(ts) != 300 || ts[0] != 0 || ts[299] != 299 {
				t.Errorf("%d lines, first %v", len(ts), ts[:min(3, len(ts))])
			}
		})
	}
}

func TestFileRotatesBySize(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	h := sdktest.New(t, New())
	if err := h.Configure(map[string]any{"path": path, "max_size_mb": 1, "max_backups": 2, "fsync": "never"}); err != nil {
		t.Fatal(err)
	}
	// About 250 bytes a line: 5000 lines a batch, 1.2 MB; four batches
	// need four files, of which the newest three are kept.
	total := 0
	for k := range 4 {
		if err := h.Write(batch(k*5000, 5000)...); err != nil {
			t.Fatal(err)
		}
		total += 5000
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	// lumberjack removes old backups in a goroutine of its own, after
	// the rotation.
	var files []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		files, _ = filepath.Glob(filepath.Join(dir, "events*.jsonl"))
		if len(files) <= 3 || time.Now().After(deadline) {
			break
		}
	}
	if len(files) != 3 {
		t.Fatalf("files %v, want the current one and 2 backups", files)
	}
	n := 0
	for _, f := range files {
		fi, _ := os.Stat(f)
		if fi.Size() > 1<<20 {
			t.Errorf("%s is %d bytes, above max_size_mb", f, fi.Size())
		}
		n += len(readLines(t, f))
	}
	if n == 0 || n >= total {
		t.Errorf("%d lines kept of %d: rotation should have dropped the oldest file", n, total)
	}
}

func TestFileRotatesByAge(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	s := New()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	h := sdktest.New(t, s)
	if err := h.Configure(map[string]any{"path": path, "max_age": "1h"}); err != nil {
		t.Fatal(err)
	}
	if err := h.Write(batch(0, 10)...); err != nil {
		t.Fatal(err)
	}
	now = now.Add(30 * time.Minute)
	if err := h.Write(batch(10, 10)...); err != nil {
		t.Fatal(err)
	}
	now = now.Add(31 * time.Minute) // the file is now 61 minutes old
	if err := h.Write(batch(20, 10)...); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "events*.jsonl"))
	if len(files) != 2 {
		t.Fatalf("files %v, want the current one and one rotated by age", files)
	}
	if ts := readLines(t, path); len(ts) != 10 || ts[0] != 20 {
		t.Errorf("current file holds %v, want the last batch only", ts)
	}
}

func TestFileConfigErrors(t *testing.T) {
	for _, tc := range []struct{ config, want string }{
		{`{}`, "path: missing"},
		{`{"path": ""}`, "path: must be a non-empty string"},
		{`{"path": "/tmp/x", "fsync": "always", "max_size_mb": 0, "max_age": "soon", "max_backups": -1, "compress": "yes", "colour": 1}`,
			`colour: unknown key (valid keys: compress, fsync, max_age, max_backups, max_size_mb, path); compress: must be true or false, not "yes"; fsync: must be "batch" (sync after every batch) or "never", not "always"; max_age: must be a duration such as "24h" or "30m", not "soon"; max_backups: must be a whole number, 0 (keep all) or more, not -1; max_size_mb: must be a whole number of megabytes, 1 or more, not 0`},
		{`[1]`, "config is not a JSON object"},
		{`{"path": "/proc/nonexistent/x"}`, "path: create directory"},
	} {
		err := New().Configure(t.Context(), []byte(tc.config))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Configure(%s) =\n %v\nwant %q", tc.config, err, tc.want)
		}
	}
}

// TestFileRepairsTornLastLine: a sink process killed in the middle of a
// write leaves a partial last line; the next process removes it (its batch
// was never acknowledged and comes again) and appends whole lines after
// the last complete one.
func TestFileRepairsTornLastLine(t *testing.T) {
	for _, tc := range []struct {
		name       string
		whole      int // complete lines before the torn one
		tornPrefix int // bytes of the torn line
	}{
		{"torn after lines", 3, 40},
		{"only a torn line", 0, 25},
		{"torn line longer than a read chunk", 2, tailChunk + 100},
		{"no torn line", 3, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.jsonl")
			h := sdktest.New(t, New())
			if err := h.Configure(map[string]any{"path": path}); err != nil {
				t.Fatal(err)
			}
			if tc.whole > 0 {
				if err := h.Write(batch(0, tc.whole)...); err != nil {
					t.Fatal(err)
				}
			}
			if err := h.Close(); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			torn := `{"timestamp":99,"event":"net_flow_tcp_end","fields":{"src":"` + strings.Repeat("x", tc.tornPrefix)
			if _, err := f.WriteString(torn[:tc.tornPrefix]); err != nil {
				t.Fatal(err)
			}
			f.Close()

			h2 := sdktest.New(t, New())
			if err := h2.Configure(map[string]any{"path": path}); err != nil {
				t.Fatal(err)
			}
			if err := h2.Write(batch(1000, 2)...); err != nil {
				t.Fatal(err)
			}
			if err := h2.Close(); err != nil {
				t.Fatal(err)
			}
			ts := readLines(t, path) // fails on any line that is not a whole event
			if len(ts) != tc.whole+2 || ts[len(ts)-2] != 1000 || ts[len(ts)-1] != 1001 {
				t.Errorf("lines %v, want %d from before and 1000, 1001", ts, tc.whole)
			}
		})
	}
}

// TestFileValidateOnly: when the host only checks a configuration, the
// sink says whether the file could be written and creates nothing.
func TestFileValidateOnly(t *testing.T) {
	sdktest.SetValidateOnly(t)
	dir := t.TempDir()
	regular := filepath.Join(dir, "regular")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, wantErr string
	}{
		{"new directories", filepath.Join(dir, "a", "b", "events.jsonl"), ""},
		{"existing file", regular, ""},
		{"under a regular file", filepath.Join(regular, "sub", "events.jsonl"), "is not a directory"},
		{"a directory", dir, "is not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := New().Configure(t.Context(), []byte(`{"path":"`+tc.path+`"}`))
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Configure(path %s) = %v, want error containing %q", tc.path, err, tc.wantErr)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); !os.IsNotExist(err) {
		t.Errorf("a validation created %s (stat: %v)", filepath.Join(dir, "a"), err)
	}
}
