// SPDX-License-Identifier: Apache-2.0

// Command kernel-init is the kernel matrix's init: as PID 1 of a guest
// booted from an initramfs it mounts what the tests need, loads the
// kernel modules of its plan, runs 'flowtap doctor --json' and the test
// suites, writes result markers on the results port, and powers the guest
// off. With -native it runs the same plan on the running kernel and writes
// the markers to a file.
//
// It must stay free of anything that touches BPF in an init() (such as
// github.com/cilium/ebpf/rlimit, which creates a map before /proc is
// mounted and makes cilium/ebpf cache a failed lookup for the life of the
// process): it raises RLIMIT_MEMLOCK itself, after mounting.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flowtap/flowtap/internal/kernels/guest"
)

func main() {
	native := flag.Bool("native", false, "run the plan on the running kernel (not as a guest's PID 1)")
	planPath := flag.String("plan", guest.PlanPath, "the plan (JSON)")
	results := flag.String("results", "", "with -native: file to write the result markers to")
	flag.Parse()

	if !*native {
		if os.Getpid() != 1 {
			fmt.Fprintln(os.Stderr, "kernel-init: not PID 1: run it with -native outside a guest")
			os.Exit(2)
		}
		guestMain(*planPath)
		return // not reached: guestMain powers off
	}
	if *results == "" {
		fmt.Fprintln(os.Stderr, "kernel-init: -native needs -results FILE")
		os.Exit(2)
	}
	if err := nativeMain(*planPath, *results); err != nil {
		fmt.Fprintf(os.Stderr, "kernel-init: %v\n", err)
		os.Exit(1)
	}
}

// nativeMain runs the plan on the running kernel.
func nativeMain(planPath, resultsPath string) error {
	f, err := os.Create(resultsPath)
	if err != nil {
		return fmt.Errorf("results file: %w", err)
	}
	defer f.Close()
	w := guest.NewWriter(f)
	plan, err := guest.ReadPlan(planPath)
	if err != nil {
		w.Problem(guest.Problem{Step: "plan", Err: err.Error(), Fatal: true})
		return err
	}
	// Natively, the tests run as 'make test' runs them: the init sets
	// nothing up.
	w.Hello(guest.Hello{Release: release(), Native: true, Uptime: uptime()})
	start := time.Now()
	run(w, plan, os.Environ())
	w.Done(guest.Done{Elapsed: guest.Duration(time.Since(start))})
	return f.Sync()
}

// guestMain is PID 1: it never returns.
func guestMain(planPath string) {
	start := time.Now()
	console := os.Stdout
	defer powerOff(console)
	defer func() {
		// A panic in PID 1 would panic the kernel and hide the reason.
		if r := recover(); r != nil {
			fmt.Fprintf(console, "kernel-init: panic: %v\n", r)
		}
	}()
	mountErrs := mountAll()
	port, err := openResultsPort()
	if err != nil {
		fmt.Fprintf(console, "kernel-init: %v\n", err)
		return
	}
	defer port.Close()
	w := guest.NewWriter(port)
	w.Hello(guest.Hello{Release: release(), Uptime: uptime()})
	for _, p := range mountErrs {
		w.Problem(p)
		if p.Fatal {
			return
		}
	}
	plan, err := guest.ReadPlan(planPath)
	if err != nil {
		w.Problem(guest.Problem{Step: "plan", Err: err.Error(), Fatal: true})
		return
	}
	if err := raiseMemlock(); err != nil {
		w.Problem(guest.Problem{Step: "memlock", Err: err.Error()})
	}
	if plan.Hostname != "" {
		if err := unix.Sethostname([]byte(plan.Hostname)); err != nil {
			w.Problem(guest.Problem{Step: "hostname", Err: err.Error()})
		}
	}
	if err := loopbackUp(); err != nil {
		w.Problem(guest.Problem{Step: "loopback", Err: err.Error()})
	}
	for _, m := range plan.Modules {
		r := guest.ModuleResult{Name: m.Name}
		if err := loadModule(m.Path); err != nil {
			r.Err = err.Error()
		}
		w.Module(r)
	}
	env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TMPDIR=/tmp", "LANG=C"}
	run(w, plan, env)
	w.Done(guest.Done{Elapsed: guest.Duration(time.Since(start))})
	port.Sync()
}

// run runs the doctor and the suites with env plus the plan's Env.
func run(w *guest.Writer, plan guest.Plan, env []string) {
	env = append(append([]string{}, env...), plan.Env...)
	w.Doctor(doctor(plan.Doctor, env))
	for _, s := range plan.Suites {
		w.Suite(runSuite(s, env))
	}
}

// doctor runs 'flowtap doctor --json' (bounded to a minute).
func doctor(argv []string, env []string) guest.DoctorRun {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	// ExitCode is -1 if it did not start.
	d := guest.DoctorRun{Exit: cmd.ProcessState.ExitCode(), Stdout: stdout.String(), Stderr: limit(stderr.String(), 16<<10),
		Elapsed: guest.Duration(time.Since(start))}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		d.Err = err.Error()
	}
	if ctx.Err() != nil {
		d.Err = "killed after a minute"
	}
	return d
}

// grace is how long after its own -test.timeout a test binary may take
// to print its goroutine dump and exit before it is killed.
const grace = 30 * time.Second

// runSuite runs one test binary with its output on this process's stdout
// (the console) and watched for verdicts.
func runSuite(s guest.Suite, env []string) guest.SuiteResult {
	start := time.Now()
	res := guest.SuiteResult{Name: s.Name, Exit: -1}
	fmt.Printf("=== kernel-init: suite %s: %s %s\n", s.Name, s.Binary, strings.Join(s.Args(), " "))
	if s.Dir != "" {
		if err := os.MkdirAll(s.Dir, 0o755); err != nil {
			res.Err = fmt.Sprintf("working directory: %v", err)
			return res
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(s.Timeout)+grace)
	defer cancel()
	watch := guest.NewWatcher(60)
	cmd := exec.CommandContext(ctx, s.Binary, s.Args()...)
	cmd.Dir = s.Dir
	cmd.Env = env
	out := io.MultiWriter(os.Stdout, watch)
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so that a kill reaches its helpers too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	watch.Close()
	res.Elapsed = guest.Duration(time.Since(start))
	res.Tests = watch.Verdicts()
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		res.Err = fmt.Sprintf("killed: still running %v after its -test.timeout of %v", grace, time.Duration(s.Timeout))
	case errors.As(err, &exitErr):
		res.Exit = exitErr.ExitCode()
	case err != nil:
		res.Err = err.Error()
	default:
		res.Exit = 0
	}
	if !res.Passed() {
		res.Tail = watch.Tail()
	}
	return res
}

func limit(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "\n[cut]"
}

// release is uname -r.
func release() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// uptime is the time since boot.
func uptime() guest.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return guest.Duration(time.Duration(ts.Nano()))
}

// raiseMemlock lifts RLIMIT_MEMLOCK: kernels before 5.11 charge BPF maps
// and programs to it.
func raiseMemlock() error {
	inf := &unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, inf); err != nil {
		return fmt.Errorf("raise RLIMIT_MEMLOCK: %w", err)
	}
	return nil
}

// mountAll mounts the file systems the tests need. Only proc, sysfs,
// devtmpfs and cgroup2 are fatal when they fail.
func mountAll() []guest.Problem {
	var problems []guest.Problem
	for _, m := range []struct {
		fstype, target string
		mode           os.FileMode
		fatal          bool
	}{
		{"proc", "/proc", 0o555, true},
		{"sysfs", "/sys", 0o555, true},
		{"devtmpfs", "/dev", 0o755, true},
		{"tmpfs", "/tmp", 0o1777, true},
		{"tmpfs", "/run", 0o755, true},
		{"cgroup2", "/sys/fs/cgroup", 0o755, true},
		{"bpf", "/sys/fs/bpf", 0o700, false},
		{"tracefs", "/sys/kernel/tracing", 0o700, false},
		{"debugfs", "/sys/kernel/debug", 0o700, false},
	} {
		if err := os.MkdirAll(m.target, m.mode); err != nil {
			problems = append(problems, guest.Problem{Step: "mount " + m.target, Err: err.Error(), Fatal: m.fatal})
			continue
		}
		if err := unix.Mount(m.fstype, m.target, m.fstype, 0, ""); err != nil {
			problems = append(problems, guest.Problem{Step: "mount " + m.fstype + " on " + m.target, Err: err.Error(), Fatal: m.fatal})
			continue
		}
		if m.fstype == "tmpfs" {
			os.Chmod(m.target, m.mode)
		}
	}
	return problems
}

// openResultsPort opens the results port, waiting a little for devtmpfs
// to show it.
func openResultsPort() (*os.File, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		f, err := os.OpenFile(guest.ResultsPort, os.O_WRONLY|unix.O_NOCTTY, 0)
		if err == nil {
			return f, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("results port %s: %w", guest.ResultsPort, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// loopbackUp sets lo up.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get lo flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}

// loadModule loads one module file; the kernel decompresses ".ko.xz" and
// ".ko.zst" itself (MODULE_INIT_COMPRESSED_FILE, kernels 5.17+). A module
// already loaded is fine.
func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	flags := 0
	if ext := filepath.Ext(path); ext == ".xz" || ext == ".zst" || ext == ".gz" {
		flags = unix.MODULE_INIT_COMPRESSED_FILE
	}
	err = unix.FinitModule(int(f.Fd()), "", flags)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("finit_module %s: %w", filepath.Base(path), err)
	}
	return nil
}

// powerOff ends the guest. With qemu's -no-reboot a reboot ends it too,
// the fallback if power-off is refused.
func powerOff(console io.Writer) {
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Fprintf(console, "kernel-init: power off: %v\n", err)
	}
	unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	select {}
}
