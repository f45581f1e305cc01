// SPDX-License-Identifier: Apache-2.0

// Package file is the file sink: it appends events to a file as JSON
// lines (one object per event, the stdout sink's json format), rotates the
// file by size and by age through lumberjack, and syncs it to disk after
// every batch unless told not to. The plugin binary is
// cmd/flowtap-sink-file.
package file

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/flowtap/flowtap/plugins/sdk"
	"github.com/flowtap/flowtap/sinks/internal/jsonl"
	"github.com/flowtap/flowtap/sinks/internal/sinkconf"
)

// Version is the file sink's version, reported in its Info.
const Version = "0.1.0"

// Fsync policies, the values of the "fsync" key.
const (
	// FsyncBatch syncs the file to disk after every batch, before the
	// batch is acknowledged: an acknowledged event survives a crash of
	// the machine. The default.
	FsyncBatch = "batch"
	// FsyncNever leaves writing back to the kernel: faster, but the last
	// seconds of acknowledged events may be lost if the machine crashes
	// (not if only flowtap or the plugin does).
	FsyncNever = "never"
)

// DefaultMaxSizeMB is the default "max_size_mb".
const DefaultMaxSizeMB = 100

// chunk is how many bytes of lines are gathered before a write.
const chunk = 256 << 10

// Config is the file sink's configuration.
type Config struct {
	// Path is the file events are appended to (required). Rotated files
	// are kept next to it, named after it with a timestamp.
	Path string `json:"path"`
	// MaxSizeMB rotates the file when it would grow past this many
	// megabytes. Default 100.
	MaxSizeMB int `json:"max_size_mb"`
	// MaxAge rotates the file once it has been written to for this long
	// (a Go duration, e.g. "24h"); "" or "0s" never rotates by age.
	MaxAge string `json:"max_age"`
	// MaxBackups is how many rotated files are kept; 0 keeps them all.
	MaxBackups int `json:"max_backups"`
	// Compress gzips rotated files.
	Compress bool `json:"compress"`
	// Fsync is "batch" (default) or "never".
	Fsync string `json:"fsync"`
}

// Sink is the file sink. Create it with New.
type Sink struct {
	cfg      Config
	maxAge   time.Duration
	out      *lumberjack.Logger
	openedAt time.Time // when the current file was started (or first written)
	buf      []byte
	json     jsonl.Encoder // formats the lines, with its caches
	now      func() time.Time
	// pending is the size to truncate the file back to when a failed
	// batch could not be removed at once; nil when none is pending.
	pending *int64
}

// Interface guard: Sink is a flowtap sink.
var _ sdk.Sink = (*Sink)(nil)

// New returns an unconfigured file sink.
func New() *Sink { return &Sink{now: time.Now} }

// Info implements sdk.Sink.
func (s *Sink) Info() sdk.Info { return sdk.Info{Name: "file", Version: Version} }

// Configure implements sdk.Sink: it validates every key, reporting all
// problems at once, and opens the file (creating its directory if needed).
func (s *Sink) Configure(_ context.Context, config []byte) error {
	cfg, maxAge, err := parseConfig(config)
	if err != nil {
		return err
	}
	if sdk.ValidateOnly() {
		// Only a check: say whether the file could be written, create
		// nothing.
		if err := checkWritable(cfg.Path); err != nil {
			return sdk.ConfigError{Key: "path", Message: err.Error()}
		}
		s.cfg, s.maxAge = cfg, maxAge
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o755); err != nil {
		return sdk.ConfigError{Key: "path", Message: fmt.Sprintf("create directory: %v", err)}
	}
	s.cfg, s.maxAge = cfg, maxAge
	dropped, err := repairTail(cfg.Path)
	if err != nil {
		return sdk.ConfigError{Key: "path", Message: err.Error()}
	}
	if dropped > 0 {
		sdk.Logger().Warn("the file ended inside a line (an earlier sink process was killed while writing); removed the partial line, whose batch was not acknowledged and is sent again",
			"path", cfg.Path, "bytes_removed", dropped)
	}
	s.out = &lumberjack.Logger{
		Filename:   cfg.Path,
		MaxSize:    cfg.MaxSizeMB,
		MaxBackups: cfg.MaxBackups,
		Compress:   cfg.Compress,
		LocalTime:  false,
	}
	// Open (or create) the file now, so that a path that cannot be
	// written is a configuration error, not a failure of every batch.
	if _, err := s.out.Write(nil); err != nil {
		return sdk.ConfigError{Key: "path", Message: fmt.Sprintf("open %s: %v", cfg.Path, err)}
	}
	s.openedAt = s.now()
	sdk.Logger().Info("configured file sink", "path", cfg.Path, "max_size_mb", cfg.MaxSizeMB,
		"max_age", maxAge, "max_backups", cfg.MaxBackups, "compress", cfg.Compress, "fsync", cfg.Fsync)
	return nil
}

// checkWritable reports whether the sink could append to path, creating
// nothing: the file, if it exists, must be a writable regular file;
// otherwise its nearest existing ancestor must be a writable directory
// (the sink creates the rest).
func checkWritable(path string) error {
	if st, err := os.Stat(path); err == nil {
		if !st.Mode().IsRegular() {
			return fmt.Errorf("%s exists and is not a regular file", path)
		}
		if err := unix.Access(path, unix.W_OK); err != nil {
			return fmt.Errorf("%s is not writable: %w", path, err)
		}
		return nil
	} else if !missing(err) {
		return fmt.Errorf("check %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	for {
		st, err := os.Stat(dir)
		if err == nil {
			if !st.IsDir() {
				return fmt.Errorf("cannot create %s: %s is not a directory", path, dir)
			}
			if err := unix.Access(dir, unix.W_OK); err != nil {
				return fmt.Errorf("cannot create %s: directory %s is not writable: %w", path, dir, err)
			}
			return nil
		}
		if !missing(err) {
			return fmt.Errorf("check %s: %w", dir, err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return fmt.Errorf("cannot create %s: no directory of its path exists", path)
		}
		dir = parent
	}
}

// missing reports whether a stat error means the path does not exist
// (ENOTDIR: a part of it is a file; the walk up finds which).
func missing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR)
}

// tailChunk is how much of the file's end repairTail reads at a time.
const tailChunk = 64 << 10

// repairTail makes the file at path end with a complete line: a sink
// process killed in the middle of a write leaves a partial last line,
// which the next process would otherwise continue with its own first
// line. The partial line belongs to a batch that was never acknowledged
// (a batch is acknowledged only after it is written whole), so removing it
// loses nothing: the batch is sent again. It returns the bytes removed; a
// missing file is fine.
func repairTail(path string) (int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("open %s to check its last line: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat %s: %w", path, err)
	}
	size := st.Size()
	buf := make([]byte, tailChunk)
	keep := int64(0) // the length up to and including the last newline
	for end := size; end > 0; {
		start := max(end-tailChunk, 0)
		n, err := f.ReadAt(buf[:end-start], start)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("read the end of %s: %w", path, err)
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			keep = start + int64(i) + 1
			break
		}
		end = start
	}
	if keep == size {
		return 0, nil
	}
	if err := f.Truncate(keep); err != nil {
		return 0, fmt.Errorf("remove the partial last line of %s: %w (remove it by hand, or move the file away)", path, err)
	}
	return size - keep, nil
}

// CheckConfig reports every problem of a file sink config without
// touching the file system: what flowtap checks in its own process
// before any plugin starts (flowtap config validate).
func CheckConfig(config []byte) error {
	_, _, err := parseConfig(config)
	return err
}

// parseConfig validates a file sink config.
func parseConfig(config []byte) (Config, time.Duration, error) {
	cfg := Config{MaxSizeMB: DefaultMaxSizeMB, Fsync: FsyncBatch}
	var maxAge time.Duration
	var p sinkconf.Problems
	hasPath := false
	err := p.DecodeEach(config, &cfg, func(key string, v json.RawMessage, err error) {
		switch key {
		case "path":
			hasPath = true
			if err != nil || cfg.Path == "" {
				p.Add(key, "must be a non-empty string: the file to write")
			}
		case "max_size_mb":
			if err != nil || cfg.MaxSizeMB <= 0 {
				p.Add(key, "must be a whole number of megabytes, 1 or more, not %s", v)
			}
		case "max_age":
			if err != nil {
				p.Add(key, "must be a duration string such as \"24h\", not %s", v)
				return
			}
			var perr error
			if maxAge, perr = time.ParseDuration(cfg.MaxAge); perr != nil || maxAge < 0 {
				p.Add(key, "must be a duration such as \"24h\" or \"30m\", not %q", cfg.MaxAge)
			}
		case "max_backups":
			if err != nil || cfg.MaxBackups < 0 {
				p.Add(key, "must be a whole number, 0 (keep all) or more, not %s", v)
			}
		case "compress":
			if err != nil {
				p.Add(key, "must be true or false, not %s", v)
			}
		case "fsync":
			if err != nil || (cfg.Fsync != FsyncBatch && cfg.Fsync != FsyncNever) {
				p.Add(key, "must be %q (sync after every batch) or %q, not %s", FsyncBatch, FsyncNever, v)
			}
		}
	})
	if err != nil {
		return Config{}, 0, err
	}
	if !hasPath {
		p.Add("path", "missing: set the file to write, e.g. /var/log/flowtap/events.jsonl")
	}
	if err := p.Err(); err != nil {
		return Config{}, 0, err
	}
	return cfg, maxAge, nil
}

// Write implements sdk.Sink: it appends the batch as JSON lines, rotating
// first if the file is older than max_age or the batch would take it past
// max_size_mb, and (fsync "batch") syncs the file before returning. A
// batch is written whole or not at all: on any failure (a full disk, a
// read-only file system) the file is truncated back to where the batch
// began before Write returns the error, so no partial line and no part of
// the batch stays for the retry to follow. If even that truncation fails,
// the sink refuses to write until it succeeds, and reports the batch as
// possibly delivered (its whole lines may stay).
func (s *Sink) Write(_ context.Context, batch []sdk.Event) error {
	if s.out == nil {
		return fmt.Errorf("file sink: Write before Configure")
	}
	if err := s.finishRollback(); err != nil {
		return err
	}
	s.buf = s.buf[:0]
	for i := range batch {
		s.buf = s.json.Append(s.buf, &batch[i])
	}
	size, err := s.size()
	if err != nil {
		return err
	}
	maxBytes := int64(s.cfg.MaxSizeMB) << 20
	if s.maxAge > 0 && s.now().Sub(s.openedAt) >= s.maxAge || size > 0 && size+int64(len(s.buf)) > maxBytes {
		// Rotate between batches, never inside one: a batch stays in one
		// file, where it can be rolled back.
		if err := s.out.Rotate(); err != nil {
			return fmt.Errorf("rotate %s: %w", s.cfg.Path, err)
		}
		s.openedAt = s.now()
		size = 0
	}
	err = s.write()
	if err == nil && s.cfg.Fsync == FsyncBatch {
		err = s.sync()
	}
	if err == nil {
		return nil
	}
	if rerr := s.rollback(size); rerr != nil {
		sdk.Logger().Error("could not remove a failed batch from the file: writing stops until it can be removed", "path", s.cfg.Path, "error", rerr)
		return &sdk.PartialWriteError{MaybeDelivered: len(batch), Err: fmt.Errorf("%w; removing the partial batch failed too: %w", err, rerr)}
	}
	return fmt.Errorf("%w (the partial batch was removed from the file)", err)
}

// size returns the current file's size (0 if it does not exist yet).
func (s *Sink) size() (int64, error) {
	st, err := os.Stat(s.cfg.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("stat %s: %w", s.cfg.Path, err)
	}
	return st.Size(), nil
}

// write writes the buffered lines, in chunks of whole lines (lumberjack
// may rotate between two writes: a batch larger than max_size_mb spans
// files, each of whole lines).
func (s *Sink) write() error {
	for b := s.buf; len(b) > 0; {
		n := len(b)
		if n > chunk {
			if i := bytes.IndexByte(b[chunk:], '\n'); i >= 0 {
				n = chunk + i + 1
			}
		}
		if _, err := s.out.Write(b[:n]); err != nil {
			return fmt.Errorf("write %s: %w", s.cfg.Path, err)
		}
		b = b[n:]
	}
	return nil
}

// rollback truncates the file back to size, where the failed batch began,
// and closes lumberjack's descriptor, which reopens the file at its new
// end. A rollback that fails is pending: finishRollback retries it
// before the next write.
func (s *Sink) rollback(size int64) error {
	_ = s.out.Close()
	if err := os.Truncate(s.cfg.Path, size); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.pending = &size
		return fmt.Errorf("truncate %s to %d bytes: %w", s.cfg.Path, size, err)
	}
	s.pending = nil
	return nil
}

// finishRollback completes a pending rollback, or says why it cannot.
func (s *Sink) finishRollback() error {
	if s.pending == nil {
		return nil
	}
	if err := s.rollback(*s.pending); err != nil {
		return fmt.Errorf("the file still holds part of a failed batch: %w", err)
	}
	return nil
}

// sync flushes the current file to disk. lumberjack does not expose its
// file, so it syncs through a descriptor of its own: fsync acts on the
// file, whichever descriptor names it.
func (s *Sink) sync() error {
	f, err := os.Open(s.cfg.Path)
	if err != nil {
		return fmt.Errorf("fsync %s: %w", s.cfg.Path, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", s.cfg.Path, err)
	}
	return nil
}

// Close implements sdk.Sink: it syncs and closes the file.
func (s *Sink) Close(context.Context) error {
	if s.out == nil {
		return nil
	}
	var err error
	if s.cfg.Fsync != FsyncNever {
		err = s.sync()
	}
	if cerr := s.out.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close %s: %w", s.cfg.Path, cerr)
	}
	return err
}
