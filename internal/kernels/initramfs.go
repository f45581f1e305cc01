// SPDX-License-Identifier: Apache-2.0

package kernels

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/flowtap/flowtap/internal/kernels/guest"
)

// Paths inside a guest.
const (
	guestBin     = "/opt/flowtap/bin"
	guestTests   = "/opt/flowtap/tests"
	guestModules = "/opt/flowtap/modules"
	guestSrc     = "/src"
)

// Modules are the kernel modules a guest loads (from the kernel's own
// package), in order: veth for the tests between network namespaces.
var Modules = []string{"veth"}

// HostPrograms are host programs the tests run, copied into the guest
// with their shared libraries: ip (iproute2) creates the network
// namespaces and veth pairs.
var HostPrograms = []string{"ip"}

// Env is the environment every suite gets, in a guest and on the host:
// CI=true makes a missing privilege fail instead of skip
// (internal/privtest).
func Env(bin string) []string {
	return []string{"CI=true", guest.BinariesEnv + "=" + bin}
}

func (s SuiteSpec) runPattern() string {
	if s.Pattern != "" {
		return s.Pattern
	}
	return namesPattern(s.Run)
}

func (s SuiteSpec) skipPattern() string {
	if s.Pattern != "" {
		return ""
	}
	return namesPattern(s.Skip)
}

// GuestPlan is the plan of a guest.
func GuestPlan(suites []SuiteSpec, modules []guest.Module) guest.Plan {
	p := guest.Plan{
		Hostname: "flowtap-guest",
		Modules:  modules,
		Doctor:   []string{guestBin + "/flowtap", "doctor", "--json"},
		Env:      Env(guestBin),
	}
	for _, s := range suites {
		p.Suites = append(p.Suites, guest.Suite{
			Name: s.Name, Binary: path.Join(guestTests, s.Name+".test"),
			Dir: path.Join(guestSrc, s.Package), Run: s.runPattern(), Skip: s.skipPattern(), Timeout: guest.Duration(s.Timeout),
		})
	}
	return p
}

// NativePlan is the plan of the run on the host: the same suites with
// the same binaries, in the module's own package directories.
func NativePlan(root string, b *Built, suites []SuiteSpec) guest.Plan {
	p := guest.Plan{
		Doctor: []string{filepath.Join(b.Bin, "flowtap"), "doctor", "--json"},
		Env:    Env(b.Bin),
	}
	for _, s := range suites {
		p.Suites = append(p.Suites, guest.Suite{
			Name: s.Name, Binary: b.Tests[s.Name],
			Dir: filepath.Join(root, s.Package), Run: s.runPattern(), Skip: s.skipPattern(), Timeout: guest.Duration(s.Timeout),
		})
	}
	return p
}

// WriteInitramfs writes the guest's root file system for kernel k to
// file out: the init, its plan, the binaries, the kernel's modules, the
// host programs with their libraries, and the few files and directories
// a Linux userland expects.
func WriteInitramfs(out string, k *Kernel, b *Built, suites []SuiteSpec) error {
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	defer f.Close()
	c := NewCPIO(f)
	if err := fillInitramfs(c, k, b, suites); err != nil {
		return fmt.Errorf("initramfs for %s: %w", k.Release, err)
	}
	if err := c.Close(); err != nil {
		return fmt.Errorf("initramfs for %s: %w", k.Release, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return nil
}

func fillInitramfs(c *CPIO, k *Kernel, b *Built, suites []SuiteSpec) error {
	// The kernel opens /dev/console for the init's standard streams
	// before anything is mounted.
	for _, d := range []struct {
		name string
		mode os.FileMode
	}{
		{"dev", 0o755}, {"proc", 0o555}, {"sys", 0o555}, {"run", 0o755},
		{"tmp", 0o777 | os.ModeSticky}, {"root", 0o700}, {"etc", 0o755}, {"var", 0o755},
	} {
		if err := c.Dir(d.name, d.mode); err != nil {
			return err
		}
	}
	if err := c.CharDev("dev/console", 0o600, 5, 1); err != nil {
		return err
	}
	if err := c.Symlink("var/run", "../run"); err != nil {
		return err
	}
	for name, content := range map[string]string{
		"etc/hosts":         "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
		"etc/passwd":        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
		"etc/group":         "root:x:0:\nnogroup:x:65534:\n",
		"etc/nsswitch.conf": "hosts: files dns\n",
	} {
		if err := c.Bytes(name, 0o644, []byte(content)); err != nil {
			return err
		}
	}
	if err := addFile(c, "init", b.Init); err != nil {
		return err
	}
	bins, err := os.ReadDir(b.Bin)
	if err != nil {
		return err
	}
	for _, e := range bins {
		if err := addFile(c, path.Join(guestBin, e.Name()), filepath.Join(b.Bin, e.Name())); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(b.Tests))
	for name := range b.Tests {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := addFile(c, path.Join(guestTests, name+".test"), b.Tests[name]); err != nil {
			return err
		}
	}
	var modules []guest.Module
	for _, m := range Modules {
		file, err := k.FindModule(m)
		if err != nil {
			return err
		}
		if file == "" {
			continue // built in
		}
		base := filepath.Base(file)
		dst := path.Join(guestModules, base)
		if err := addFile(c, dst, file); err != nil {
			return err
		}
		modules = append(modules, guest.Module{Name: m, Path: dst})
	}
	host := newHostCopier(c)
	for _, prog := range HostPrograms {
		p, err := lookPath(prog)
		if err != nil {
			return fmt.Errorf("the tests need %w (iproute2: make deps installs it)", err)
		}
		files, err := ELFClosure(p)
		if err != nil {
			return err
		}
		for _, file := range files {
			if err := host.add(file); err != nil {
				return err
			}
		}
		// The tests find it in PATH as /usr/sbin/ip or /sbin/ip.
		if !strings.HasPrefix(p, "/usr/sbin/") && !strings.HasPrefix(p, "/sbin/") {
			if err := host.c.Symlink(path.Join("/usr/sbin", prog), p); err != nil {
				return err
			}
		}
	}
	plan := GuestPlan(suites, modules)
	data, err := json.MarshalIndent(plan, "", "  ")
	if err != nil {
		return err
	}
	return c.Bytes(guest.PlanPath, 0o644, data)
}
