// SPDX-License-Identifier: Apache-2.0

// Package release builds flowtap's release artefacts from binaries that
// 'make dist' has cross-compiled: reproducible tar.gz archives, the
// SHA256SUMS file, the CycloneDX SBOM (through cyclonedx-gomod) and OCI
// image archives (through go-containerregistry), without a container
// daemon or a registry.
//
// Reproducible means: the same commit, built with the same Go toolchain,
// gives byte-identical files on any machine and in any directory. Every
// timestamp is the commit's time (SOURCE_DATE_EPOCH), entries are sorted,
// owners are root (0:0), modes are fixed (0755 for programs and
// directories, 0644 for the rest), and nothing records the build host,
// user or path.
package release

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Entry is one file or directory to put in a tar stream.
type Entry struct {
	// Name is the slash-separated path inside the archive, without a
	// leading slash.
	Name string
	// Dir marks a directory; Src and Data are then unused.
	Dir bool
	// Mode holds the permission bits (0755, 0644, 01777, ...).
	Mode int64
	// Src is a file to copy the content from; when empty, Data is the
	// content.
	Src  string
	Data []byte
	// Xattrs are extended attributes to record (PAX SCHILY.xattr), e.g.
	// security.capability for file capabilities.
	Xattrs map[string]string
}

// WriteTar writes entries to w as a tar stream, reproducibly: sorted by
// name, every parent directory present (mode 0755), modification times
// set to mtime, owner and group root. An entry named twice is an error.
func WriteTar(w io.Writer, entries []Entry, mtime time.Time) error {
	all := map[string]Entry{}
	for _, e := range entries {
		name := strings.Trim(path.Clean(e.Name), "/")
		if name == "." || name == "" || strings.HasPrefix(name, "../") {
			return fmt.Errorf("tar entry %q: not a relative path inside the archive", e.Name)
		}
		if _, dup := all[name]; dup {
			return fmt.Errorf("tar entry %q: named twice", name)
		}
		e.Name = name
		all[name] = e
	}
	for name := range all {
		for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
			parent, ok := all[dir]
			if !ok {
				all[dir] = Entry{Name: dir, Dir: true, Mode: 0o755}
			} else if !parent.Dir {
				return fmt.Errorf("tar entry %q: its parent %q is a file", name, dir)
			}
		}
	}
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	tw := tar.NewWriter(w)
	mtime = mtime.UTC().Truncate(time.Second)
	for _, n := range names {
		if err := writeEntry(tw, all[n], mtime); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("finish tar: %w", err)
	}
	return nil
}

func writeEntry(tw *tar.Writer, e Entry, mtime time.Time) error {
	hdr := &tar.Header{
		Name:    e.Name,
		Mode:    e.Mode,
		ModTime: mtime,
		Uname:   "root",
		Gname:   "root",
		Format:  tar.FormatPAX,
	}
	if e.Dir {
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("tar %s: %w", e.Name, err)
		}
		return nil
	}
	data := e.Data
	if e.Src != "" {
		var err error
		if data, err = os.ReadFile(e.Src); err != nil {
			return fmt.Errorf("tar %s: %w", e.Name, err)
		}
	}
	hdr.Typeflag = tar.TypeReg
	hdr.Size = int64(len(data))
	if len(e.Xattrs) > 0 {
		hdr.PAXRecords = map[string]string{}
		for k, v := range e.Xattrs {
			hdr.PAXRecords["SCHILY.xattr."+k] = v
		}
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("tar %s: %w", e.Name, err)
	}
	if _, err := tw.Write(data); err != nil {
		return fmt.Errorf("tar %s: %w", e.Name, err)
	}
	return nil
}

// WriteTarGz is WriteTar through gzip, with an empty gzip header (no name,
// no time), so the compressed bytes depend on the entries alone. The
// default level: the best one takes twice as long for 1% less.
func WriteTarGz(w io.Writer, entries []Entry, mtime time.Time) error {
	zw, err := gzip.NewWriterLevel(w, gzip.DefaultCompression)
	if err != nil {
		return fmt.Errorf("gzip: %w", err)
	}
	if err := WriteTar(zw, entries, mtime); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("finish gzip: %w", err)
	}
	return nil
}

// writeFileAtomic writes path through a temporary file in the same
// directory, renamed into place once complete, so that an interrupted run
// never leaves a truncated artefact under the final name.
func writeFileAtomic(path string, write func(io.Writer) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			os.Remove(f.Name())
		}
	}()
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// errNoFiles reports a glob that matched nothing where something is
// required.
var errNoFiles = errors.New("no files match")
