// SPDX-License-Identifier: Apache-2.0

package kernels

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultMirror is the Debian archive the kernels come from.
const DefaultMirror = "http://deb.debian.org/debian"

// archiveKeyring verifies the archive's Release files (bullseye,
// bookworm and trixie keys; Debian's debian-archive-keyring package).
const archiveKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// listsMaxAge is how old the private package lists may be before a run
// updates them.
const listsMaxAge = 12 * time.Hour

// Kernel is a Debian kernel image package unpacked in the cache.
type Kernel struct {
	// Package and Version name the .deb it came from.
	Package, Version string
	// Release is the kernel release (uname -r), the name of its modules
	// directory.
	Release string
	// Vmlinuz is the kernel image qemu boots.
	Vmlinuz string
	// Modules is the package's modules directory
	// (.../lib/modules/<release>).
	Modules string
}

// Debian fetches kernel packages with apt through a private state
// (sources list, package lists, archives) under Cache: the system's apt
// configuration and sources are never touched.
type Debian struct {
	// Cache holds the private apt state and the unpacked kernels.
	Cache string
	// Mirror is the archive's URL (DefaultMirror if empty).
	Mirror string
	// Log receives progress lines.
	Log io.Writer
}

// Fetch returns the newest cloud kernel of series ("6.1") in the Debian
// suite ("bookworm"), downloading and unpacking it unless the cache has
// that package version already. Older versions of that package name and
// series are removed from the cache.
func (d *Debian) Fetch(ctx context.Context, suite, series string) (*Kernel, error) {
	unlock, err := lockDir(d.Cache)
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := d.state(suite)
	if err != nil {
		return nil, err
	}
	updated, err := d.update(ctx, st, false)
	if err != nil {
		return nil, err
	}
	for {
		name, version, err := d.newest(ctx, st, suite, series)
		if err != nil {
			return nil, err
		}
		dir := filepath.Join(d.Cache, "unpacked", name+"_"+version)
		if _, err := os.Stat(filepath.Join(dir, ".complete")); err != nil {
			fmt.Fprintf(d.log(), "kernels: downloading %s %s (debian %s)\n", name, version, suite)
			if err := d.download(ctx, st, name, version, dir); err != nil {
				if updated {
					return nil, err
				}
				// The lists may name a package the mirror has dropped
				// since: update them and choose again.
				if updated, err = d.update(ctx, st, true); err != nil {
					return nil, err
				}
				continue
			}
		}
		d.prune(name, dir)
		return openKernel(dir, name, version)
	}
}

// newest names the package to use and its version.
func (d *Debian) newest(ctx context.Context, st *aptState, suite, series string) (name, version string, err error) {
	out, err := st.run(ctx, "apt-cache", "search", "--names-only", cloudSearch)
	if err != nil {
		return "", "", err
	}
	if name, err = SelectCloudKernel(out, series); err != nil {
		return "", "", fmt.Errorf("debian %s: %w", suite, err)
	}
	show, err := st.run(ctx, "apt-cache", "show", "--no-all-versions", name)
	if err != nil {
		return "", "", err
	}
	if version = field(show, "Version"); version == "" {
		return "", "", fmt.Errorf("debian %s: apt-cache show %s: no Version field", suite, name)
	}
	return name, version, nil
}

func (d *Debian) log() io.Writer {
	if d.Log == nil {
		return io.Discard
	}
	return d.Log
}

// aptState is one suite's private apt state.
type aptState struct {
	dir  string
	opts []string
}

func (d *Debian) state(suite string) (*aptState, error) {
	if _, err := os.Stat(archiveKeyring); err != nil {
		return nil, fmt.Errorf("debian archive keyring: %w (install debian-archive-keyring)", err)
	}
	mirror := d.Mirror
	if mirror == "" {
		mirror = DefaultMirror
	}
	dir := filepath.Join(d.Cache, "apt", suite)
	for _, sub := range []string{"lists/partial", "archives/partial", "cache"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("apt state: %w", err)
		}
	}
	sources := fmt.Sprintf("deb [signed-by=%s] %s %s main\n", archiveKeyring, mirror, suite)
	files := map[string]string{"sources.list": sources, "status": ""}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return nil, fmt.Errorf("apt state: %w", err)
		}
	}
	st := &aptState{dir: dir}
	for _, o := range []string{
		"Dir::Etc::sourcelist=" + filepath.Join(dir, "sources.list"),
		"Dir::Etc::sourceparts=/dev/null",
		"Dir::Etc::preferences=/dev/null",
		"Dir::Etc::preferencesparts=/dev/null",
		"Dir::State::Lists=" + filepath.Join(dir, "lists"),
		"Dir::State::status=" + filepath.Join(dir, "status"),
		"Dir::Cache=" + filepath.Join(dir, "cache"),
		"Dir::Cache::archives=" + filepath.Join(dir, "archives"),
		"APT::Architecture=amd64",
		"APT::Architectures=amd64",
		"Acquire::Languages=none",
		"Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false",
		"Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false",
		"Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false",
		"Acquire::IndexTargets::deb::CNF::DefaultEnabled=false",
		// The private directories belong to root; apt's download
		// sandbox user could not write them.
		"APT::Sandbox::User=root",
	} {
		st.opts = append(st.opts, "-o", o)
	}
	return st, nil
}

// run runs an apt command with the private state and returns its stdout.
func (st *aptState) run(ctx context.Context, name string, args ...string) (string, error) {
	return st.runIn(ctx, "", name, args...)
}

func (st *aptState) runIn(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, append(append([]string{}, st.opts...), args...)...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w\n%s%s", name, strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.String(), nil
}

// update refreshes the package lists when force is set, or when they are
// missing or older than listsMaxAge, and reports whether it did.
func (d *Debian) update(ctx context.Context, st *aptState, force bool) (bool, error) {
	stamp := filepath.Join(st.dir, "updated")
	if fi, err := os.Stat(stamp); !force && err == nil && time.Since(fi.ModTime()) < listsMaxAge {
		return false, nil
	}
	fmt.Fprintf(d.log(), "kernels: apt-get update (debian %s)\n", filepath.Base(st.dir))
	if _, err := st.run(ctx, "apt-get", "-q", "update"); err != nil {
		return false, err
	}
	return true, os.WriteFile(stamp, nil, 0o644)
}

// download fetches the package and unpacks it into dir.
func (d *Debian) download(ctx context.Context, st *aptState, name, version, dir string) error {
	tmp, err := os.MkdirTemp(filepath.Join(d.Cache), "download-")
	if err != nil {
		return fmt.Errorf("download %s: %w", name, err)
	}
	defer os.RemoveAll(tmp)
	if _, err := st.runIn(ctx, tmp, "apt-get", "-q", "download", name+"="+version); err != nil {
		return err
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("download %s: want one .deb, found %d", name, len(debs))
	}
	root := filepath.Join(tmp, "root")
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], root).CombinedOutput(); err != nil {
		return fmt.Errorf("dpkg-deb -x %s: %w\n%s", filepath.Base(debs[0]), err, out)
	}
	if err := os.WriteFile(filepath.Join(root, ".complete"), nil, 0o644); err != nil {
		return err
	}
	os.RemoveAll(dir)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := os.Rename(root, dir); err != nil {
		return fmt.Errorf("download %s: %w", name, err)
	}
	return nil
}

// prune removes other versions of package name from the cache.
func (d *Debian) prune(name, keep string) {
	old, _ := filepath.Glob(filepath.Join(d.Cache, "unpacked", name+"_*"))
	for _, o := range old {
		if o != keep {
			os.RemoveAll(o)
		}
	}
}

// openKernel finds the image and modules of an unpacked kernel package.
func openKernel(dir, name, version string) (*Kernel, error) {
	var modules []string
	for _, base := range []string{"lib/modules", "usr/lib/modules"} {
		m, _ := filepath.Glob(filepath.Join(dir, base, "*"))
		modules = append(modules, m...)
	}
	if len(modules) != 1 {
		return nil, fmt.Errorf("%s: want one modules directory, found %d", name, len(modules))
	}
	release := filepath.Base(modules[0])
	k := &Kernel{Package: name, Version: version, Release: release, Modules: modules[0],
		Vmlinuz: filepath.Join(dir, "boot", "vmlinuz-"+release)}
	if _, err := os.Stat(k.Vmlinuz); err != nil {
		return nil, fmt.Errorf("%s: kernel image: %w", name, err)
	}
	return k, nil
}

// FindModule returns the file of module name (veth) in the kernel's
// modules tree ("" and nil if the kernel has it built in).
func (k *Kernel) FindModule(name string) (string, error) {
	builtin, err := os.ReadFile(filepath.Join(k.Modules, "modules.builtin"))
	if err != nil {
		return "", fmt.Errorf("kernel %s: %w", k.Release, err)
	}
	want := map[string]bool{}
	for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
		want[name+ext] = true
	}
	sc := bufio.NewScanner(bytes.NewReader(builtin))
	for sc.Scan() {
		if want[filepath.Base(sc.Text())] {
			return "", nil
		}
	}
	var found string
	errFound := errors.New("found")
	err = filepath.WalkDir(filepath.Join(k.Modules, "kernel"), func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() && want[e.Name()] {
			found = p
			return errFound
		}
		return nil
	})
	if found != "" {
		return found, nil
	}
	if err != nil {
		return "", fmt.Errorf("kernel %s: module %s: %w", k.Release, name, err)
	}
	return "", fmt.Errorf("kernel %s: no module %s in %s", k.Release, name, k.Modules)
}

// field returns the value of a "Name: value" line of apt-cache show.
func field(control, name string) string {
	for _, line := range strings.Split(control, "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// lockDir takes an exclusive lock on dir (created if missing), so that
// two runs do not update one apt state at once.
func lockDir(dir string) (func(), error) {
	return lockFile(filepath.Join(dir, "lock"), nil)
}

// lockFile takes an exclusive lock on the file path (created, with its
// directory, if missing); onWait, if set, is called when another process
// holds it, before waiting for it.
func lockFile(path string, onWait func()) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		if onWait != nil {
			onWait()
		}
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}
