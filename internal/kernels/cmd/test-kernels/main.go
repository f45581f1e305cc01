// SPDX-License-Identifier: Apache-2.0

// Command test-kernels runs the kernel matrix (make test-kernels): each
// Debian cloud kernel of internal/kernels.Matrix booted under qemu, and the
// running kernel natively, each running flowtap's BPF-facing tests. It
// exits 1 when a kernel does not do what the matrix expects of it.
//
//	go run ./internal/kernels/cmd/test-kernels [-kernels bookworm,host] [-v]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/flowtap/flowtap/internal/kernels"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "test-kernels: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	var names []string
	for _, e := range kernels.Matrix {
		names = append(names, e.Name)
	}
	only := flag.String("kernels", "", "comma-separated kernels to run, of "+strings.Join(names, ", ")+" (default all)")
	cache := flag.String("cache", "", "kernel package cache (default $XDG_CACHE_HOME/flowtap/kernels or ~/.cache/flowtap/kernels)")
	logs := flag.String("logs", "", "directory for each kernel's console log and results (default bin/kernels in the module)")
	accel := flag.String("accel", "tcg", "qemu accelerator: tcg, or kvm where KVM really runs these kernels")
	memory := flag.Int("memory", 2048, "guest memory in MiB")
	cpus := flag.Int("cpus", 2, "guest CPUs")
	timeout := flag.Duration("timeout", 0, "bound on one kernel (default: the suites' timeouts plus boot)")
	mirror := flag.String("mirror", envOr("FLOWTAP_DEBIAN_MIRROR", kernels.DefaultMirror), "Debian archive the kernels come from")
	verbose := flag.Bool("v", false, "echo each kernel's console and test output")
	suite := flag.String("suite", "", "run only this suite (bpf or e2e)")
	runPattern := flag.String("run", "", "with -suite: a -test.run pattern instead of the suite's own tests and skip list")
	extraArgs := flag.String("append", "", "extra kernel command line for the guests")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		return errors.New("the kernel matrix needs a linux/amd64 host (the guests are amd64 and run the host's binaries)")
	}
	if *accel != "tcg" && *accel != "kvm" {
		return fmt.Errorf("-accel %q: want tcg or kvm", *accel)
	}
	entries, err := selectEntries(*only)
	if err != nil {
		return err
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	if *cache == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return fmt.Errorf("kernel cache: %w (set -cache)", err)
		}
		*cache = filepath.Join(dir, "flowtap", "kernels")
	}
	if *logs == "" {
		*logs = filepath.Join(root, "bin", "kernels")
	}
	suites, err := selectSuites(*suite, *runPattern)
	if err != nil {
		return err
	}
	cfg := kernels.Config{
		Suites: suites,
		Root:   root, Cache: *cache, Logs: *logs, Entries: entries, Mirror: *mirror, Log: os.Stdout,
		QEMU: kernels.QEMU{Accel: *accel, MemoryMiB: *memory, CPUs: *cpus, Timeout: *timeout, Append: *extraArgs},
	}
	if *verbose {
		cfg.QEMU.Echo = os.Stdout
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	results, err := kernels.Run(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Printf("kernels: matrix took %v\n", time.Since(start).Round(time.Second))
	kernels.Summary(os.Stdout, results)
	for _, r := range results {
		if !r.AsExpected {
			os.Exit(1)
		}
	}
	return nil
}

func selectEntries(only string) ([]kernels.Entry, error) {
	if only == "" {
		return kernels.Matrix, nil
	}
	var out []kernels.Entry
	for _, name := range strings.Split(only, ",") {
		i := slices.IndexFunc(kernels.Matrix, func(e kernels.Entry) bool { return e.Name == strings.TrimSpace(name) })
		if i < 0 {
			return nil, fmt.Errorf("-kernels: no kernel %q in the matrix", name)
		}
		out = append(out, kernels.Matrix[i])
	}
	return out, nil
}

func selectSuites(name, pattern string) ([]kernels.SuiteSpec, error) {
	if name == "" {
		if pattern != "" {
			return nil, errors.New("-run needs -suite")
		}
		return kernels.Suites, nil
	}
	i := slices.IndexFunc(kernels.Suites, func(s kernels.SuiteSpec) bool { return s.Name == name })
	if i < 0 {
		return nil, fmt.Errorf("-suite: no suite %q", name)
	}
	s := kernels.Suites[i]
	s.Pattern = pattern
	return []kernels.SuiteSpec{s}, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// moduleRoot is the directory of the flowtap module's go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run test-kernels inside the flowtap module")
	}
	return filepath.Dir(mod), nil
}
