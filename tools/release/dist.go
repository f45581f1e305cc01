// SPDX-License-Identifier: Apache-2.0

package release

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Platform is one target of a release, e.g. linux/amd64.
type Platform struct {
	OS, Arch string
}

// String returns "linux_amd64", the spelling used in file names.
func (p Platform) String() string { return p.OS + "_" + p.Arch }

// ParsePlatforms parses "linux/amd64,linux/arm64".
func ParsePlatforms(s string) ([]Platform, error) {
	var out []Platform
	for _, f := range strings.Split(s, ",") {
		os, arch, ok := strings.Cut(strings.TrimSpace(f), "/")
		if !ok || os == "" || arch == "" {
			return nil, fmt.Errorf("platform %q: want OS/ARCH, e.g. linux/amd64", f)
		}
		out = append(out, Platform{OS: os, Arch: arch})
	}
	return out, nil
}

// semverRE is a semantic version with its leading "v" (semver.org's
// grammar, loosened only in allowing leading zeros in pre-release parts).
var semverRE = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`)

// CheckVersion returns an error unless v is a semantic version with a "v",
// as internal/release/version.sh prints.
func CheckVersion(v string) error {
	if !semverRE.MatchString(v) {
		return fmt.Errorf("version %q is not a semantic version vMAJOR.MINOR.PATCH[-PRERELEASE][+BUILD] (hint: make computes it with internal/release/version.sh; set VERSION=v1.2.3 to override)", v)
	}
	return nil
}

// Config describes one 'make dist' run.
type Config struct {
	// Root is the source tree: LICENSE, README.md, CHANGELOG.md,
	// configs/examples/ and deploy/systemd/ are taken from it.
	Root string
	// Version is the semantic version, with its "v".
	Version string
	// Commit is the full commit hash the binaries were built from.
	Commit string
	// Epoch is the commit time (SOURCE_DATE_EPOCH): every timestamp in
	// the artefacts.
	Epoch time.Time
	// BinDir holds one directory per platform, named like
	// Platform.String(), with flowtap and every flowtap-sink-*.
	BinDir string
	// OutDir receives the artefacts.
	OutDir string
	// Platforms to package.
	Platforms []Platform
}

// ArchiveName is "flowtap_0.1.0_linux_amd64.tar.gz" for v0.1.0: the
// version without its "v", as release archives conventionally spell it.
func ArchiveName(version string, p Platform) string {
	return fmt.Sprintf("flowtap_%s_%s.tar.gz", strings.TrimPrefix(version, "v"), p)
}

// archiveDir is the one top-level directory an archive unpacks into.
func archiveDir(version string, p Platform) string {
	return strings.TrimSuffix(ArchiveName(version, p), ".tar.gz")
}

// docGlobs name the files copied from Root into every archive, under the
// same path; each must match at least one file.
var docGlobs = []string{
	"LICENSE", "LICENSES/*", "README.md", "CHANGELOG.md",
	"configs/examples/*", "deploy/systemd/flowtap.service",
}

// ArchiveEntries lists what the archive for p holds, under its top-level
// directory: the programs (flowtap and every flowtap-sink-* found in
// BinDir/p), the licenses, the documents, the example configs and the
// systemd unit.
func (c *Config) ArchiveEntries(p Platform) ([]Entry, error) {
	top := archiveDir(c.Version, p)
	bin := filepath.Join(c.BinDir, p.String())
	sinks, err := filepath.Glob(filepath.Join(bin, "flowtap-sink-*"))
	if err != nil {
		return nil, err
	}
	if len(sinks) == 0 {
		return nil, fmt.Errorf("archive %s: no flowtap-sink-* programs in %s: %w (hint: make dist builds them first)", p, bin, errNoFiles)
	}
	var entries []Entry
	for _, prog := range append([]string{filepath.Join(bin, "flowtap")}, sinks...) {
		if err := checkFile(prog); err != nil {
			return nil, fmt.Errorf("archive %s: %w", p, err)
		}
		entries = append(entries, Entry{Name: top + "/" + filepath.Base(prog), Mode: 0o755, Src: prog})
	}
	for _, g := range docGlobs {
		matches, err := filepath.Glob(filepath.Join(c.Root, filepath.FromSlash(g)))
		if err != nil {
			return nil, err
		}
		if len(matches) == 0 {
			return nil, fmt.Errorf("archive %s: %s in %s: %w", p, g, c.Root, errNoFiles)
		}
		for _, src := range matches {
			if err := checkFile(src); err != nil {
				return nil, fmt.Errorf("archive %s: %w", p, err)
			}
			rel, err := filepath.Rel(c.Root, src)
			if err != nil {
				return nil, err
			}
			entries = append(entries, Entry{Name: top + "/" + filepath.ToSlash(rel), Mode: 0o644, Src: src})
		}
	}
	return entries, nil
}

// checkFile fails unless path is a regular file.
func checkFile(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", path)
	}
	return nil
}

// Archives writes one archive per platform into OutDir and returns their
// paths.
func (c *Config) Archives() ([]string, error) {
	if err := CheckVersion(c.Version); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", c.OutDir, err)
	}
	var out []string
	for _, p := range c.Platforms {
		entries, err := c.ArchiveEntries(p)
		if err != nil {
			return nil, err
		}
		dst := filepath.Join(c.OutDir, ArchiveName(c.Version, p))
		if err := writeFileAtomic(dst, func(w io.Writer) error { return WriteTarGz(w, entries, c.Epoch) }); err != nil {
			return nil, err
		}
		out = append(out, dst)
	}
	return out, nil
}

// SumsName is the checksum file's name in OutDir.
const SumsName = "SHA256SUMS"

// WriteSums writes dir/SHA256SUMS in the format sha256sum -c reads: one
// "<hex>  <name>" line per regular file in dir (itself and hidden files
// excepted), sorted by name. Both 'make dist' and 'make image' rewrite it,
// so it always covers every artefact in dir.
func WriteSums(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("checksums: %w", err)
	}
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() && e.Name() != SumsName && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		sum, err := fileSHA256(filepath.Join(dir, n))
		if err != nil {
			return fmt.Errorf("checksums: %w", err)
		}
		fmt.Fprintf(&b, "%s  %s\n", sum, n)
	}
	return writeFileAtomic(filepath.Join(dir, SumsName), func(w io.Writer) error {
		_, err := io.WriteString(w, b.String())
		return err
	})
}

// fileSHA256 returns the hex SHA-256 of the file at path (artefacts are
// tens of megabytes: reading them whole is fine).
func fileSHA256(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}
