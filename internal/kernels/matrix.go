// SPDX-License-Identifier: Apache-2.0

// Package kernels is the host side of the kernel matrix (make
// test-kernels): it fetches Debian's cloud kernels through a private apt
// state, builds flowtap's BPF-facing tests and binaries statically, packs
// them with a small Go init into an initramfs, boots each kernel under
// qemu, runs the same tests natively on the running kernel, and says per
// kernel whether it passed and which features flowtap found there.
// The guest side is cmd/kernel-init; package guest holds what both share.
package kernels

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flowtap/flowtap/internal/kernels/guest"
)

// Expect is what a kernel of the matrix must do.
type Expect struct {
	// FailWith is empty when the kernel must pass. Otherwise the kernel
	// is expected to fail, and its output (console, doctor, tests) must
	// contain this message of flowtap's own.
	FailWith string
}

// MustPass is the expectation of a supported kernel.
var MustPass = Expect{}

// FailWith expects a kernel to fail with flowtap's message msg.
func FailWith(msg string) Expect { return Expect{FailWith: msg} }

func (e Expect) String() string {
	if e.FailWith == "" {
		return "must pass"
	}
	return fmt.Sprintf("expected to fail with %q", e.FailWith)
}

// Entry is one kernel of the matrix.
type Entry struct {
	// Name selects the entry (make test-kernels KERNELS=bookworm,host).
	Name string
	// Suite is the Debian suite whose cloud kernel boots under qemu; ""
	// runs the tests natively on the running kernel.
	Suite string
	// Series is the kernel series the suite ships ("6.1").
	Series string
	// Expect is what the kernel must do; CI fails when it does not.
	Expect Expect
}

// Matrix is the kernel matrix and what each kernel must do. Edit the
// expectations here, nowhere else.
var Matrix = []Entry{
	// 5.10 is flowtap's minimum (bpf.MinimumKernel): everything but the
	// packet flows (and what only they use), whose tests skip there.
	{Name: "bullseye", Suite: "bullseye", Series: "5.10", Expect: MustPass},
	{Name: "bookworm", Suite: "bookworm", Series: "6.1", Expect: MustPass},
	{Name: "trixie", Suite: "trixie", Series: "6.12", Expect: MustPass},
	{Name: "host", Expect: MustPass},
}

// Result is what one kernel did.
type Result struct {
	Entry Entry
	// Release is the kernel's release (uname -r).
	Release string
	// Source says where the kernel came from.
	Source string
	Pass   bool
	// Reason says why it failed.
	Reason string
	// Features is the doctor's summary, or why it is unknown.
	Features string
	// Elapsed is the kernel's wall time (boot, doctor, suites).
	Elapsed time.Duration
	// Suites are the wall times of the boot, the doctor and each suite,
	// "bpf 1m40s".
	Suites []string
	// Notes are what went wrong without failing the kernel by itself: a
	// mount, a module, tests skipped.
	Notes []string
	// Console is the path of the console log.
	Console string
	// AsExpected reports whether the outcome agrees with Entry.Expect;
	// Mismatch says how it does not.
	AsExpected bool
	Mismatch   string
}

// Line is the kernel's last line of output: "kernel <release>: pass" or
// "kernel <release>: fail (<reason>)".
func (r Result) Line() string {
	if r.Pass {
		return fmt.Sprintf("kernel %s: pass", r.Release)
	}
	return fmt.Sprintf("kernel %s: fail (%s)", r.Release, r.Reason)
}

// Config configures Run.
type Config struct {
	// Root is the module's root directory.
	Root string
	// Cache holds the apt state and unpacked kernels.
	Cache string
	// Logs receives each kernel's console log and results.
	Logs string
	// Entries are the kernels to run (Matrix by default).
	Entries []Entry
	// Suites are the tests to run (Suites by default).
	Suites []SuiteSpec
	// QEMU boots the guests; its Timeout is set from the suites when 0.
	QEMU QEMU
	// Mirror is the Debian archive (DefaultMirror if empty).
	Mirror string
	// Log receives progress.
	Log io.Writer
}

// Run runs the matrix, one kernel at a time, and returns each kernel's
// result. An error means the matrix itself could not run (the build
// failed); a kernel that cannot be fetched or booted is a failed result.
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	if cfg.Entries == nil {
		cfg.Entries = Matrix
	}
	if cfg.Suites == nil {
		cfg.Suites = Suites
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	// A guest's time: boot, modules and doctor, then each suite with the
	// init's grace after its -test.timeout.
	budget := 2 * time.Minute
	for _, s := range cfg.Suites {
		budget += s.Timeout + time.Minute
	}
	if cfg.QEMU.Timeout == 0 {
		cfg.QEMU.Timeout = budget
	}
	if err := os.MkdirAll(cfg.Logs, 0o755); err != nil {
		return nil, fmt.Errorf("logs: %w", err)
	}
	work, err := os.MkdirTemp("", "flowtap-kernels-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	built, err := Build(ctx, cfg.Root, work, cfg.Suites, cfg.Log)
	if err != nil {
		return nil, err
	}
	deb := &Debian{Cache: cfg.Cache, Mirror: cfg.Mirror, Log: cfg.Log}
	var results []Result
	for _, e := range cfg.Entries {
		var r Result
		if e.Suite == "" {
			r = runNative(ctx, cfg, built, work, e, budget)
		} else {
			r = runGuest(ctx, cfg, deb, built, work, e)
		}
		r.AsExpected, r.Mismatch = check(e.Expect, r)
		results = append(results, r)
		status := "pass"
		if !r.Pass {
			status = "fail"
		}
		fmt.Fprintf(cfg.Log, "kernels: %s %s: %s in %v\n", e.Name, r.Release, status, r.Elapsed.Round(time.Second))
	}
	return results, nil
}

// runGuest fetches, packs and boots one Debian kernel.
func runGuest(ctx context.Context, cfg Config, deb *Debian, built *Built, work string, e Entry) Result {
	r := Result{Entry: e, Release: e.Series + " (debian " + e.Suite + ")", Source: "debian " + e.Suite, Features: "unknown: the kernel did not run"}
	k, err := deb.Fetch(ctx, e.Suite, e.Series)
	if err != nil {
		r.Reason = "fetch kernel: " + oneLine(err.Error(), 300)
		return r
	}
	r.Release = k.Release
	r.Source = fmt.Sprintf("debian %s, %s %s", e.Suite, k.Package, k.Version)
	initrd := filepath.Join(work, "initramfs-"+k.Release+".cpio")
	if err := WriteInitramfs(initrd, k, built, cfg.Suites); err != nil {
		r.Reason = oneLine(err.Error(), 300)
		return r
	}
	defer os.Remove(initrd)
	r.Console = filepath.Join(cfg.Logs, k.Release+".console.log")
	results := filepath.Join(cfg.Logs, k.Release+".results")
	unlock, err := oneAtATime(cfg)
	if err != nil {
		r.Reason = err.Error()
		return r
	}
	defer unlock()
	fmt.Fprintf(cfg.Log, "kernels: booting %s under qemu (%s); console in %s\n", k.Release, accelName(cfg.QEMU.Accel), r.Console)
	for attempt := 1; ; attempt++ {
		start := time.Now()
		bootErr := cfg.QEMU.Boot(ctx, k.Vmlinuz, initrd, r.Console, results)
		r.Elapsed += time.Since(start)
		if why := diedBeforeInit(r.Console, results); why != "" && attempt < bootAttempts && ctx.Err() == nil {
			// Nothing of flowtap ran: a boot-time crash of the kernel
			// under emulation. Keep its console, and boot again.
			kept := fmt.Sprintf("%s.attempt%d", r.Console, attempt)
			os.Rename(r.Console, kept)
			r.Notes = append(r.Notes, fmt.Sprintf("boot %d died before the init started (%s; console in %s): booted again", attempt, why, kept))
			fmt.Fprintf(cfg.Log, "kernels: %s died before its init started (%s): booting again\n", k.Release, why)
			continue
		}
		conclude(&r, cfg.Suites, results, bootErr)
		return r
	}
}

// bootAttempts is how often a guest is booted whose kernel dies before
// the init starts. Under TCG a kernel now and then oopses while it
// patches its own code at boot (an int3 in sched_clock_cpu on Debian's
// 6.12 was seen), seconds before anything of flowtap runs.
const bootAttempts = 3

// diedBeforeInit says why a guest's kernel died before its init reported
// (the init's hello is its first marker, written before any test or
// program runs): the console's panic line, or "" when the init reported
// or the console has no kernel panic.
func diedBeforeInit(consolePath, resultsPath string) string {
	if f, err := os.Open(resultsPath); err == nil {
		rep, _ := guest.Parse(f)
		f.Close()
		if rep != nil && rep.Hello != nil {
			return ""
		}
	}
	console, _ := os.ReadFile(consolePath)
	return panicLine(console)
}

// oneAtATime holds the machine-wide lock of the matrix's kernels while a
// guest boots or the native run runs: two at once on a 2-core machine
// would slow each other past their timeouts. Matrix runs from other
// checkouts share it through the cache directory.
func oneAtATime(cfg Config) (func(), error) {
	return lockFile(filepath.Join(cfg.Cache, "run.lock"), func() {
		fmt.Fprintf(cfg.Log, "kernels: waiting for another matrix run's kernel to finish (%s)\n", filepath.Join(cfg.Cache, "run.lock"))
	})
}

func accelName(a string) string {
	if a == "" {
		return "tcg"
	}
	return a
}

// runNative runs the same plan on the running kernel.
func runNative(ctx context.Context, cfg Config, built *Built, work string, e Entry, budget time.Duration) Result {
	r := Result{Entry: e, Release: hostRelease(), Source: "the running kernel, natively", Features: "unknown: the tests did not run"}
	if os.Geteuid() != 0 {
		r.Reason = "not root: the privileged tests need root on the host"
		return r
	}
	plan := NativePlan(cfg.Root, built, cfg.Suites)
	planPath := filepath.Join(work, "native-plan.json")
	data, err := json.MarshalIndent(plan, "", "  ")
	if err == nil {
		err = os.WriteFile(planPath, data, 0o644)
	}
	if err != nil {
		r.Reason = "write plan: " + err.Error()
		return r
	}
	r.Console = filepath.Join(cfg.Logs, "host-"+r.Release+".console.log")
	results := filepath.Join(cfg.Logs, "host-"+r.Release+".results")
	console, err := os.Create(r.Console)
	if err != nil {
		r.Reason = "console log: " + err.Error()
		return r
	}
	defer console.Close()
	unlock, err := oneAtATime(cfg)
	if err != nil {
		r.Reason = err.Error()
		return r
	}
	defer unlock()
	fmt.Fprintf(cfg.Log, "kernels: running natively on %s; output in %s\n", r.Release, r.Console)
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	cmd := exec.CommandContext(ctx, built.Init, "-native", "-plan", planPath, "-results", results)
	var out io.Writer = console
	if cfg.QEMU.Echo != nil {
		out = io.MultiWriter(console, cfg.QEMU.Echo)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	runErr := cmd.Run()
	r.Elapsed = time.Since(start)
	if ctx.Err() != nil {
		runErr = fmt.Errorf("%w (%v)", ErrTimeout, budget)
	}
	conclude(&r, cfg.Suites, results, runErr)
	return r
}

func hostRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// conclude reads a run's markers and console and fills in the result.
func conclude(r *Result, suites []SuiteSpec, resultsPath string, runErr error) {
	var rep *guest.Report
	f, err := os.Open(resultsPath)
	if err == nil {
		rep, err = guest.Parse(f)
		f.Close()
	}
	if rep == nil {
		rep = &guest.Report{}
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		runErr = errors.Join(runErr, err)
	}
	console, _ := os.ReadFile(r.Console)
	if rep.Hello != nil {
		r.Release = rep.Hello.Release
	}
	for _, p := range rep.Problems {
		if !p.Fatal {
			r.Notes = append(r.Notes, fmt.Sprintf("%s: %s", p.Step, oneLine(p.Err, 200)))
		}
	}
	for _, m := range rep.Modules {
		if m.Err != "" {
			r.Notes = append(r.Notes, fmt.Sprintf("module %s: %s", m.Name, oneLine(m.Err, 200)))
		}
	}
	if rep.Hello != nil && !rep.Hello.Native {
		r.Suites = append(r.Suites, fmt.Sprintf("boot %v", time.Duration(rep.Hello.Uptime).Round(100*time.Millisecond)))
	}
	if rep.Doctor != nil {
		r.Suites = append(r.Suites, fmt.Sprintf("doctor %v", time.Duration(rep.Doctor.Elapsed).Round(100*time.Millisecond)))
	}
	for _, s := range rep.Suites {
		r.Suites = append(r.Suites, fmt.Sprintf("%s %v", s.Name, time.Duration(s.Elapsed).Round(time.Second)))
		if n := len(s.Tests.Skipped); n > 0 {
			r.Notes = append(r.Notes, fmt.Sprintf("%s: %d skipped: %s", s.Name, n, capList(s.Tests.Skipped, 8)))
		}
	}
	doc, err := ParseDoctor(rep.Doctor)
	if err != nil {
		r.Features = "unknown: " + oneLine(err.Error(), 300)
	} else {
		r.Features = FeatureSummary(doc)
	}
	r.Pass, r.Reason = Judge(rep, suites, runErr, console)
	if !r.Pass && doc != nil && !doc.CoreOK {
		// The tests' failures follow from this: say it first.
		r.Reason = "flowtap doctor: the core cannot run: " + oneLine(doc.CoreError, 240) + "; " + r.Reason
	}
}

// Judge decides a kernel's outcome from its markers, how the run ended and
// its console: pass only if the init started, ran every suite, every
// suite passed, and it finished.
func Judge(rep *guest.Report, suites []SuiteSpec, runErr error, console []byte) (bool, string) {
	var why []string
	end := func() string {
		s := ""
		if runErr != nil {
			s = oneLine(runErr.Error(), 200)
		}
		if p := panicLine(console); p != "" {
			if s != "" {
				s += ": "
			}
			s += p
		}
		if t := lastStarted(console); t != "" && errors.Is(runErr, ErrTimeout) {
			s += ", last test started: " + t
		}
		if s == "" {
			s = "no reason on the console"
		}
		return s
	}
	if rep.Hello == nil {
		return false, "the init never reported: " + end()
	}
	for _, p := range rep.Problems {
		if p.Fatal {
			why = append(why, fmt.Sprintf("init: %s: %s", p.Step, oneLine(p.Err, 200)))
		}
	}
	got := map[string]guest.SuiteResult{}
	for _, s := range rep.Suites {
		got[s.Name] = s
	}
	for _, spec := range suites {
		s, ok := got[spec.Name]
		switch {
		case !ok:
			if len(why) == 0 && rep.Done == nil {
				why = append(why, fmt.Sprintf("%s: no result (%s)", spec.Name, end()))
			} else {
				why = append(why, spec.Name+": no result")
			}
		case !s.Passed():
			why = append(why, suiteFailure(s))
		}
	}
	if rep.Done == nil && len(why) == 0 {
		why = append(why, "the init did not finish: "+end())
	}
	if len(why) == 0 && runErr != nil {
		why = append(why, end())
	}
	if len(why) > 0 && rep.Garbled > 0 {
		why = append(why, fmt.Sprintf("%d garbled result lines", rep.Garbled))
	}
	if len(why) == 0 {
		return true, ""
	}
	for _, m := range rep.Modules {
		if m.Err != "" {
			why = append(why, fmt.Sprintf("module %s: %s", m.Name, oneLine(m.Err, 120)))
		}
	}
	return false, strings.Join(why, "; ")
}

// suiteFailure says how a suite failed, naming at most five tests.
func suiteFailure(s guest.SuiteResult) string {
	var b strings.Builder
	b.WriteString(s.Name + ": ")
	switch {
	case s.Err != "":
		b.WriteString(oneLine(s.Err, 200))
	default:
		fmt.Fprintf(&b, "exit status %d", s.Exit)
	}
	if n := len(s.Tests.Failed); n > 0 {
		fmt.Fprintf(&b, ", %d failed: %s", n, capList(s.Tests.Failed, 5))
	} else if last := lastPanic(s.Tail); last != "" {
		b.WriteString(", " + last)
	}
	return b.String()
}

// capList joins at most n names and says how many more there are.
func capList(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:n], ", "), len(names)-n)
}

// lastPanic returns the "panic: ..." line of a tail, if any.
func lastPanic(tail []string) string {
	for i := len(tail) - 1; i >= 0; i-- {
		if strings.HasPrefix(tail[i], "panic: ") {
			return oneLine(tail[i], 200)
		}
	}
	return ""
}

// lastStarted returns the name of the last test a verbose test binary
// started on the console ("=== RUN   TestX/sub").
func lastStarted(console []byte) string {
	i := bytes.LastIndex(console, []byte("=== RUN "))
	if i < 0 {
		return ""
	}
	line, _, _ := bytes.Cut(console[i+len("=== RUN "):], []byte("\n"))
	return oneLine(string(line), 120)
}

// panicLine returns the kernel's panic message from a console, if any.
func panicLine(console []byte) string {
	i := bytes.Index(console, []byte("Kernel panic"))
	if i < 0 {
		return ""
	}
	line, _, _ := bytes.Cut(console[i:], []byte("\n"))
	return oneLine(string(line), 200)
}

// check compares an outcome with its expectation.
func check(e Expect, r Result) (bool, string) {
	if e.FailWith == "" {
		if r.Pass {
			return true, ""
		}
		return false, "must pass, failed"
	}
	if r.Pass {
		return false, fmt.Sprintf("expected to fail with %q, but passed: update the expectation in internal/kernels/matrix.go", e.FailWith)
	}
	if r.Console != "" && logContains(r, e.FailWith) {
		return true, ""
	}
	return false, fmt.Sprintf("failed, but without flowtap's message %q", e.FailWith)
}

// logContains looks for msg in a kernel's console and in what its
// doctor and failed suites said (the results file holds it encoded).
func logContains(r Result, msg string) bool {
	if data, err := os.ReadFile(r.Console); err == nil && bytes.Contains(data, []byte(msg)) {
		return true
	}
	f, err := os.Open(strings.TrimSuffix(r.Console, ".console.log") + ".results")
	if err != nil {
		return false
	}
	defer f.Close()
	rep, _ := guest.Parse(f)
	if rep == nil {
		return false
	}
	if d := rep.Doctor; d != nil && (strings.Contains(d.Stdout, msg) || strings.Contains(d.Stderr, msg)) {
		return true
	}
	for _, s := range rep.Suites {
		if strings.Contains(strings.Join(s.Tail, "\n"), msg) {
			return true
		}
	}
	return false
}

// Summary writes the matrix's report: per kernel where it came from, its
// time, its features and whether it met its expectation; then, last, one
// line per kernel (Result.Line).
func Summary(w io.Writer, results []Result) {
	fmt.Fprintln(w, "== kernel matrix")
	for _, r := range results {
		fmt.Fprintf(w, "%s: %s\n", r.Release, r.Source)
		t := r.Elapsed.Round(time.Second).String()
		if len(r.Suites) > 0 {
			t += " (" + strings.Join(r.Suites, ", ") + ")"
		}
		fmt.Fprintf(w, "  time: %s\n", t)
		fmt.Fprintf(w, "  features: %s\n", r.Features)
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  note: %s\n", n)
		}
		if r.Console != "" {
			fmt.Fprintf(w, "  log: %s\n", r.Console)
		}
		verdict := "as expected"
		if !r.AsExpected {
			verdict = "NOT AS EXPECTED: " + r.Mismatch
		}
		fmt.Fprintf(w, "  expectation: %s: %s\n", r.Entry.Expect, verdict)
	}
	for _, r := range results {
		fmt.Fprintln(w, r.Line())
	}
}
