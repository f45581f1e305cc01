// SPDX-License-Identifier: Apache-2.0

package kernels

import (
	"bytes"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowtap/flowtap/internal/kernels/guest"
	"github.com/flowtap/flowtap/internal/testutil"
)

// Lines as 'apt-cache search --names-only' printed them on the three
// suites (with neighbours the pattern must not take).
const searchBullseye = `linux-image-5.10.0-30-cloud-amd64-unsigned - Linux 5.10 for x86-64 cloud
linux-image-5.10.0-32-cloud-amd64-unsigned - Linux 5.10 for x86-64 cloud
linux-image-cloud-amd64 - Linux for x86-64 cloud (meta-package)
linux-image-5.10.0-32-cloud-amd64 - Linux 5.10 for x86-64 cloud, signed
linux-image-5.10.0-32-cloud-amd64-dbg - Debug symbols for linux-image-5.10.0-32-cloud-amd64
`

const searchTrixie = `linux-image-6.12.117+deb13-cloud-amd64-unsigned - Linux 6.12 for x86-64 cloud
linux-image-6.12.99+deb13-cloud-amd64-unsigned - Linux 6.12 for x86-64 cloud
linux-image-6.12.117+deb13-cloud-amd64-dbg - Debug symbols
`

func TestSelectCloudKernel(t *testing.T) {
	for _, tc := range []struct {
		name, search, series, want, err string
	}{
		{"newest ABI of two", searchBullseye, "5.10", "linux-image-5.10.0-32-cloud-amd64-unsigned", ""},
		// 117 > 99 as numbers, not as text.
		{"numeric order", searchTrixie, "6.12", "linux-image-6.12.117+deb13-cloud-amd64-unsigned", ""},
		{"order of lines does not matter", "linux-image-6.1.0-50-cloud-amd64-unsigned - x\nlinux-image-6.1.0-9-cloud-amd64-unsigned - x\n", "6.1", "linux-image-6.1.0-50-cloud-amd64-unsigned", ""},
		// 6.1 is not a prefix match of 6.12.
		{"series is exact", searchTrixie, "6.1", "", "no cloud kernel image package of series 6.1; the lists have: linux-image-6.12.117+deb13"},
		{"nothing at all", "linux-image-amd64 - meta\n", "6.1", "", "no cloud kernel image package (linux-image-*-cloud-amd64-unsigned)"},
		{"empty", "", "6.1", "", "no cloud kernel image package"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SelectCloudKernel(tc.search, tc.series)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %q, %v; want error containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// cpioEntry is one entry as readCPIO found it.
type cpioEntry struct {
	name               string
	mode, nlink        uint32
	rmajor, rminor     uint32
	data               string
	uid, gid, mtime    uint32
	devmajor, devminor uint32
}

// readCPIO is an independent newc reader, strict about what the kernel
// relies on: magic, hex fields, NUL-terminated names, 4-byte alignment of
// names and data, and the trailer at the end.
func readCPIO(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	off := 0
	align := func() {
		for off%4 != 0 {
			if b[off] != 0 {
				t.Fatalf("non-zero padding at %d", off)
			}
			off++
		}
	}
	for {
		if len(b)-off < 110 {
			t.Fatalf("truncated header at %d", off)
		}
		hdr := string(b[off : off+110])
		if hdr[:6] != "070701" {
			t.Fatalf("bad magic %q at %d", hdr[:6], off)
		}
		var f [13]uint32
		for i := range f {
			v, err := strconv.ParseUint(hdr[6+8*i:14+8*i], 16, 32)
			if err != nil {
				t.Fatalf("field %d at %d: %v", i, off, err)
			}
			f[i] = uint32(v)
		}
		off += 110
		name := b[off : off+int(f[11])]
		if name[len(name)-1] != 0 {
			t.Fatalf("name %q not NUL-terminated", name)
		}
		off += int(f[11])
		align()
		data := b[off : off+int(f[6])]
		off += int(f[6])
		align()
		e := cpioEntry{name: string(name[:len(name)-1]), mode: f[1], uid: f[2], gid: f[3], nlink: f[4], mtime: f[5],
			devmajor: f[7], devminor: f[8], rmajor: f[9], rminor: f[10], data: string(data)}
		if e.name == "TRAILER!!!" {
			if off != len(b) {
				t.Fatalf("%d bytes after the trailer", len(b)-off)
			}
			return out
		}
		out = append(out, e)
	}
}

func TestCPIO(t *testing.T) {
	var buf bytes.Buffer
	c := NewCPIO(&buf)
	steps := []error{
		c.Dir("tmp", 0o777|os.ModeSticky),
		c.CharDev("/dev/console", 0o600, 5, 1),
		c.Bytes("opt/flowtap/bin/flowtap", 0o755, []byte("#!binary")),
		c.Symlink("var/run", "../run"),
		c.Bytes("e", 0o644, nil),
		c.Bytes("abc", 0o644, []byte("12345")),
		c.Dir("opt/flowtap", 0o700), // already there: no second entry
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	got := readCPIO(t, buf.Bytes())
	var names []string
	for _, e := range got {
		names = append(names, e.name)
		if e.uid != 0 || e.gid != 0 || e.mtime != 0 {
			t.Errorf("%s: uid %d gid %d mtime %d, want all 0", e.name, e.uid, e.gid, e.mtime)
		}
	}
	want := []string{"tmp", "dev", "dev/console", "opt", "opt/flowtap", "opt/flowtap/bin", "opt/flowtap/bin/flowtap", "var", "var/run", "e", "abc"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("entries %q, want %q (parents first)", names, want)
	}
	byName := map[string]cpioEntry{}
	for _, e := range got {
		byName[e.name] = e
	}
	for _, tc := range []struct {
		name string
		mode uint32
		data string
	}{
		{"tmp", 0o041777, ""},
		{"dev", 0o040755, ""},
		{"dev/console", 0o020600, ""},
		{"opt/flowtap/bin/flowtap", 0o100755, "#!binary"},
		{"var/run", 0o120777, "../run"},
		{"e", 0o100644, ""},
		{"abc", 0o100644, "12345"},
	} {
		e := byName[tc.name]
		if e.mode != tc.mode || e.data != tc.data {
			t.Errorf("%s: mode %o data %q, want %o %q", tc.name, e.mode, e.data, tc.mode, tc.data)
		}
	}
	if c := byName["dev/console"]; c.rmajor != 5 || c.rminor != 1 {
		t.Errorf("console device %d:%d, want 5:1", c.rmajor, c.rminor)
	}
	// The same input gives the same bytes.
	var again bytes.Buffer
	c2 := NewCPIO(&again)
	c2.Dir("tmp", 0o777|os.ModeSticky)
	c2.CharDev("/dev/console", 0o600, 5, 1)
	c2.Bytes("opt/flowtap/bin/flowtap", 0o755, []byte("#!binary"))
	c2.Symlink("var/run", "../run")
	c2.Bytes("e", 0o644, nil)
	c2.Bytes("abc", 0o644, []byte("12345"))
	c2.Close()
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("two archives of the same entries differ")
	}
}

func TestCPIORejects(t *testing.T) {
	for name, fn := range map[string]func(c *CPIO) error{
		"empty name":          func(c *CPIO) error { return c.Bytes("/", 0o644, nil) },
		"escaping name":       func(c *CPIO) error { return c.Bytes("../etc/passwd", 0o644, nil) },
		"duplicate file":      func(c *CPIO) error { c.Bytes("a", 0o644, nil); return c.Bytes("a", 0o644, nil) },
		"file over directory": func(c *CPIO) error { c.Dir("a", 0o755); return c.Bytes("a", 0o644, nil) },
		"directory over link": func(c *CPIO) error { c.Symlink("lib", "usr/lib"); return c.Bytes("lib/x.so", 0o644, nil) },
		"short data": func(c *CPIO) error {
			return c.File("a", 0o644, 10, strings.NewReader("abc"))
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := NewCPIO(io.Discard)
			err := fn(c)
			if err == nil {
				err = c.Close()
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if name == "short data" && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("error %v, want io.ErrUnexpectedEOF", err)
			}
		})
	}
}

// TestELFClosure: a dynamically linked host program (the shell every
// Debian system has) needs its loader and the C library, and the copier
// recreates the links on their way (a merged-/usr system reaches
// /lib64/ld-linux-x86-64.so.2 through /lib64 -> usr/lib64).
func TestELFClosure(t *testing.T) {
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Skipf("no /bin/sh: %v", err)
	}
	files, err := ELFClosure(sh)
	if err != nil {
		t.Fatal(err)
	}
	if files[0] != sh {
		t.Errorf("first file %s, want the program %s", files[0], sh)
	}
	var loader, libc bool
	for _, f := range files {
		loader = loader || strings.Contains(f, "ld-linux")
		libc = libc || filepath.Base(f) == "libc.so.6"
	}
	if !loader || !libc {
		t.Fatalf("closure of %s misses the loader or libc: %q", sh, files)
	}
	var buf bytes.Buffer
	c := NewCPIO(&buf)
	h := newHostCopier(c)
	for _, f := range files {
		if err := h.add(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	entries := readCPIO(t, buf.Bytes())
	byName := map[string]cpioEntry{}
	for _, e := range entries {
		byName[e.name] = e
	}
	// Every requested path resolves inside the archive, following its
	// links the way the kernel's path walk would.
	for _, f := range files {
		p := strings.TrimPrefix(f, "/")
		for hops := 0; ; hops++ {
			if hops > 16 {
				t.Fatalf("%s: link loop in the archive", f)
			}
			e, resolved := resolveIn(byName, p)
			if e == nil {
				t.Fatalf("%s: %s is not in the archive", f, resolved)
			}
			if e.mode&0o170000 == cpioRegular {
				break
			}
			p = resolved
		}
	}
}

// resolveIn follows archive links along p's components once; it returns
// the entry p names, or nil and the missing path.
func resolveIn(entries map[string]cpioEntry, p string) (*cpioEntry, string) {
	parts := strings.Split(p, "/")
	cur := ""
	for i, part := range parts {
		cur = filepath.Join(cur, part)
		e, ok := entries[cur]
		if !ok {
			return nil, cur
		}
		if e.mode&0o170000 == cpioSymlink {
			target := e.data
			if !filepath.IsAbs(target) {
				target = filepath.Join(filepath.Dir(cur), target)
			}
			return &e, strings.TrimPrefix(filepath.Join(append([]string{target}, parts[i+1:]...)...), "/")
		}
		if i == len(parts)-1 {
			return &e, cur
		}
	}
	return nil, p
}

func TestDoctorFeatures(t *testing.T) {
	out := `{"kernel":"5.10.0-32-cloud-amd64","btf":true,"cgroup2":"/sys/fs/cgroup","features":[
		{"name":"core","available":true,"programs":["flowtap_sockops","flowtap_ingress"],"reason":""},
		{"name":"preexisting_owners","available":false,"programs":["flowtap_files"],"reason":"program flowtap_files: load program: invalid argument:\n unknown func bpf_sock_from_file#162"},
		{"name":"dns","available":true,"programs":["flowtap_ingress"],"reason":""}],"core_ok":true}`
	rep, err := ParseDoctor(&guest.DoctorRun{Stdout: out})
	if err != nil {
		t.Fatal(err)
	}
	want := "available: core, dns; unavailable: preexisting_owners (program flowtap_files: load program: invalid argument: unknown func bpf_sock_from_file#162)"
	if got := FeatureSummary(rep); got != want {
		t.Errorf("summary\n %s\nwant\n %s", got, want)
	}
	// The core could not even be probed: no features, the reason.
	rep, err = ParseDoctor(&guest.DoctorRun{Exit: 1, Stdout: `{"kernel":"5.4.0","minimum_kernel":"5.11","features":null,"core_ok":false,
		"core_error":"remove memlock limit: operation not permitted"}`})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := FeatureSummary(rep), "available: none; core cannot run: remove memlock limit: operation not permitted"; got != want {
		t.Errorf("summary without core: %s, want %s", got, want)
	}
	// A flowtap without the doctor command: features unknown, with why.
	_, err = ParseDoctor(&guest.DoctorRun{Exit: 1, Stderr: "flowtap: unknown command \"doctor\" for \"flowtap\"\nRun 'flowtap --help' for usage.\n"})
	if err == nil || !strings.Contains(err.Error(), `exit status 1: flowtap: unknown command "doctor"`) {
		t.Errorf("missing doctor: %v", err)
	}
	if _, err := ParseDoctor(nil); err == nil {
		t.Error("no doctor run: no error")
	}
	if _, err := ParseDoctor(&guest.DoctorRun{Exit: -1, Err: "exec: no such file"}); err == nil {
		t.Error("doctor that did not start: no error")
	}
}

var twoSuites = []SuiteSpec{{Name: "bpf", Timeout: time.Minute}, {Name: "e2e", Timeout: time.Minute}}

func TestJudge(t *testing.T) {
	passed := func(name string) guest.SuiteResult {
		return guest.SuiteResult{Name: name, Exit: 0, Tests: guest.Verdicts{Passed: 3}}
	}
	hello := &guest.Hello{Release: "6.1.0-50-cloud-amd64"}
	done := &guest.Done{}
	var failed []string
	for i := 0; i < 7; i++ {
		failed = append(failed, fmt.Sprintf("Test%d", i))
	}
	for _, tc := range []struct {
		name    string
		rep     guest.Report
		runErr  error
		console string
		want    string // "" for pass
	}{
		{"all passed", guest.Report{Hello: hello, Suites: []guest.SuiteResult{passed("bpf"), passed("e2e")}, Done: done}, nil, "", ""},
		{"init never ran, kernel panicked", guest.Report{}, nil, "[ 1.2] Kernel panic - not syncing: VFS: Unable to mount root fs\r\n[ 1.3] ---[ end",
			"the init never reported: Kernel panic - not syncing: VFS: Unable to mount root fs"},
		{"timeout in the second suite", guest.Report{Hello: hello, Suites: []guest.SuiteResult{passed("bpf")}}, fmt.Errorf("%w (21m0s)", ErrTimeout),
			"=== RUN   TestA\r\n--- PASS: TestA (1.00s)\r\n=== RUN   TestGroundTruth\r\n  groundtruth_test.go:99: waiting\r\n",
			"e2e: no result (guest killed after its timeout (21m0s), last test started: TestGroundTruth)"},
		{"tests failed, names capped at five", guest.Report{Hello: hello, Done: done, Suites: []guest.SuiteResult{
			{Name: "bpf", Exit: 1, Tests: guest.Verdicts{Passed: 2, Failed: failed}}, passed("e2e")}}, nil, "",
			"bpf: exit status 1, 7 failed: Test0, Test1, Test2, Test3, Test4 and 2 more"},
		{"panic in a test binary", guest.Report{Hello: hello, Done: done, Suites: []guest.SuiteResult{
			passed("bpf"), {Name: "e2e", Exit: 2, Tail: []string{"panic: runtime error: index out of range [3]", "goroutine 1 [running]:"}}}}, nil, "",
			"e2e: exit status 2, panic: runtime error: index out of range [3]"},
		{"suite killed", guest.Report{Hello: hello, Done: done, Suites: []guest.SuiteResult{
			passed("bpf"), {Name: "e2e", Exit: -1, Err: "killed: still running 30s after its -test.timeout of 1m0s"}}}, nil, "",
			"e2e: killed: still running 30s after its -test.timeout of 1m0s"},
		{"exit 0 but a failed verdict", guest.Report{Hello: hello, Done: done, Suites: []guest.SuiteResult{
			passed("bpf"), {Name: "e2e", Exit: 0, Tests: guest.Verdicts{Failed: []string{"TestX"}}}}}, nil, "",
			"e2e: exit status 0, 1 failed: TestX"},
		{"fatal set-up problem, module too", guest.Report{Hello: hello, Problems: []guest.Problem{{Step: "mount cgroup2 on /sys/fs/cgroup", Err: "no such device", Fatal: true}},
			Modules: []guest.ModuleResult{{Name: "veth", Err: "finit_module veth.ko: exec format error"}}}, nil, "",
			"init: mount cgroup2 on /sys/fs/cgroup: no such device; bpf: no result; e2e: no result; module veth: finit_module veth.ko: exec format error"},
		{"non-fatal problem does not fail", guest.Report{Hello: hello, Problems: []guest.Problem{{Step: "mount debugfs", Err: "no such device"}},
			Suites: []guest.SuiteResult{passed("bpf"), passed("e2e")}, Done: done}, nil, "", ""},
		{"all passed but no done", guest.Report{Hello: hello, Suites: []guest.SuiteResult{passed("bpf"), passed("e2e")}}, errors.New("qemu: exit status 1"), "",
			"the init did not finish: qemu: exit status 1"},
		{"garbled results are mentioned", guest.Report{Hello: hello, Suites: []guest.SuiteResult{passed("bpf")}, Done: done, Garbled: 1}, nil, "",
			"e2e: no result; 1 garbled result lines"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pass, why := Judge(&tc.rep, twoSuites, tc.runErr, []byte(tc.console))
			if pass != (tc.want == "") || why != tc.want {
				t.Errorf("Judge = %v, %q; want %v, %q", pass, why, tc.want == "", tc.want)
			}
		})
	}
}

func TestCheckExpectation(t *testing.T) {
	dir := t.TempDir()
	console := filepath.Join(dir, "5.10.0-32-cloud-amd64.console.log")
	os.WriteFile(console, []byte("flowtap: kernel 5.10.0-32-cloud-amd64 is older than flowtap's minimum 5.11: no bpf_sock_from_file\n"), 0o644)
	msg := "older than flowtap's minimum 5.11"
	for _, tc := range []struct {
		name   string
		expect Expect
		r      Result
		ok     bool
	}{
		{"must pass, passed", MustPass, Result{Pass: true}, true},
		{"must pass, failed", MustPass, Result{Reason: "x"}, false},
		{"expected failure with the message", FailWith(msg), Result{Console: console}, true},
		{"expected failure without the message", FailWith("needs kernel 6.0"), Result{Console: console}, false},
		{"expected failure, passed", FailWith(msg), Result{Pass: true, Console: console}, false},
	} {
		ok, why := check(tc.expect, tc.r)
		if ok != tc.ok || (ok != (why == "")) {
			t.Errorf("%s: check = %v, %q; want %v", tc.name, ok, why, tc.ok)
		}
	}
	// The message may be only in what the doctor printed (the results
	// file holds it encoded).
	res, _ := os.Create(filepath.Join(dir, "k.results"))
	guest.NewWriter(res).Doctor(guest.DoctorRun{Exit: 1, Stderr: "flowtap doctor: " + msg})
	res.Close()
	os.WriteFile(filepath.Join(dir, "k.console.log"), []byte("nothing here\n"), 0o644)
	if ok, why := check(FailWith(msg), Result{Console: filepath.Join(dir, "k.console.log")}); !ok {
		t.Errorf("message in the doctor's output not found: %s", why)
	}
}

// TestMatrixTable: the matrix has the kernels the project claims, each
// once, and the line format is exactly what CI's log readers expect.
func TestMatrixTable(t *testing.T) {
	seen := map[string]bool{}
	var series []string
	for _, e := range Matrix {
		if seen[e.Name] {
			t.Errorf("kernel %q twice in the matrix", e.Name)
		}
		seen[e.Name] = true
		series = append(series, e.Series)
	}
	if got := strings.Join(series, " "); got != "5.10 6.1 6.12 " {
		t.Errorf("series %q, want Debian 11, 12 and 13's cloud kernels and the host", got)
	}
	if l := (Result{Release: "6.1.0-50-cloud-amd64", Pass: true}).Line(); l != "kernel 6.1.0-50-cloud-amd64: pass" {
		t.Errorf("line %q", l)
	}
	if l := (Result{Release: "5.10.0-32-cloud-amd64", Reason: "bpf: exit status 1"}).Line(); l != "kernel 5.10.0-32-cloud-amd64: fail (bpf: exit status 1)" {
		t.Errorf("line %q", l)
	}
	if guest.BinariesEnv != testutil.BinariesEnv {
		t.Errorf("guest.BinariesEnv %q and testutil.BinariesEnv %q differ", guest.BinariesEnv, testutil.BinariesEnv)
	}
}

// TestConclude reads a guest's files as Run does: the release from the
// init's hello, times, notes, features, and a core the doctor found
// unable to run named first in the reason.
func TestConclude(t *testing.T) {
	dir := t.TempDir()
	console := filepath.Join(dir, "6.1.0-50-cloud-amd64.console.log")
	results := filepath.Join(dir, "6.1.0-50-cloud-amd64.results")
	os.WriteFile(console, []byte("SeaBIOS\r\n--- FAIL: TestCaptureLoopback (4.00s)\r\n"), 0o644)
	f, _ := os.Create(results)
	w := guest.NewWriter(f)
	w.Hello(guest.Hello{Release: "6.1.0-50-cloud-amd64", Uptime: guest.Duration(2900 * time.Millisecond)})
	w.Problem(guest.Problem{Step: "mount debugfs on /sys/kernel/debug", Err: "no such device"})
	w.Module(guest.ModuleResult{Name: "veth"})
	w.Doctor(guest.DoctorRun{Exit: 1, Elapsed: guest.Duration(3200 * time.Millisecond),
		Stdout: `{"kernel":"6.1.0-50-cloud-amd64","features":[{"name":"core","available":false,"reason":"refused"},{"name":"snapshots","available":true}],"core_ok":false,"core_error":"program flowtap_sockops: unknown func bpf_get_current_pid_tgid#14"}`})
	w.Suite(guest.SuiteResult{Name: "bpf", Exit: 1, Elapsed: guest.Duration(161 * time.Second),
		Tests: guest.Verdicts{Failed: []string{"TestCaptureLoopback"}, Skipped: []string{"TestHelperProcess"}}})
	w.Suite(guest.SuiteResult{Name: "e2e", Exit: 0, Elapsed: guest.Duration(8 * time.Second), Tests: guest.Verdicts{Passed: 1}})
	w.Done(guest.Done{})
	f.Close()

	r := Result{Release: "6.1 (debian bookworm)", Console: console}
	conclude(&r, twoSuites, results, nil)
	if r.Release != "6.1.0-50-cloud-amd64" {
		t.Errorf("release %q", r.Release)
	}
	if got, want := strings.Join(r.Suites, ", "), "boot 2.9s, doctor 3.2s, bpf 2m41s, e2e 8s"; got != want {
		t.Errorf("times %q, want %q", got, want)
	}
	if got, want := strings.Join(r.Notes, "; "), "mount debugfs on /sys/kernel/debug: no such device; bpf: 1 skipped: TestHelperProcess"; got != want {
		t.Errorf("notes %q, want %q", got, want)
	}
	if got, want := r.Features, "available: snapshots; unavailable: core (refused); core cannot run: program flowtap_sockops: unknown func bpf_get_current_pid_tgid#14"; got != want {
		t.Errorf("features %q, want %q", got, want)
	}
	want := "flowtap doctor: the core cannot run: program flowtap_sockops: unknown func bpf_get_current_pid_tgid#14; bpf: exit status 1, 1 failed: TestCaptureLoopback"
	if r.Pass || r.Reason != want {
		t.Errorf("pass %v, reason %q; want %q", r.Pass, r.Reason, want)
	}
	if got := r.Line(); got != "kernel 6.1.0-50-cloud-amd64: fail ("+want+")" {
		t.Errorf("line %q", got)
	}

	// No results file at all: the qemu error and the console's panic.
	os.WriteFile(console, []byte("[    1.0] Kernel panic - not syncing: Out of memory and no killable processes...\r\n"), 0o644)
	r = Result{Release: "6.12 (debian trixie)", Console: console}
	conclude(&r, twoSuites, filepath.Join(dir, "missing.results"), errors.New("qemu: exit status 1"))
	if want := "the init never reported: qemu: exit status 1: Kernel panic - not syncing: Out of memory and no killable processes..."; r.Pass || r.Reason != want || r.Release != "6.12 (debian trixie)" {
		t.Errorf("no results: %+v, want reason %q", r, want)
	}
	if !strings.HasPrefix(r.Features, "unknown: the doctor did not run") {
		t.Errorf("features %q", r.Features)
	}
}

// TestSuitesNameExistingTests: every test a suite runs or skips by name
// exists in its package, so a renamed test cannot silently drop out of
// the matrix (or back into it).
func TestSuitesNameExistingTests(t *testing.T) {
	for _, s := range Suites {
		tests, literals := testNames(t, filepath.Join("..", "..", s.Package))
		for _, name := range append(append([]string{}, s.Run...), s.Skip...) {
			levels := strings.Split(name, "/")
			if !tests[levels[0]] {
				t.Errorf("suite %s names %s, which %s does not have", s.Name, levels[0], s.Package)
			}
			for _, sub := range levels[1:] {
				if !literals[sub] && !literals[strings.ReplaceAll(sub, "_", " ")] {
					t.Errorf("suite %s names subtest %s, which no t.Run of %s names", s.Name, name, s.Package)
				}
			}
		}
	}
}

// TestNamesPattern: the pattern selects exactly the named tests, as go
// test matches names level by level (the matcher itself is go test's, in
// a test binary built here).
func TestNamesPattern(t *testing.T) {
	if namesPattern(nil) != "" {
		t.Error("no names must give an empty pattern")
	}
	names := []string{"TestA", "TestB/x_y", "TestB/z", "TestC/w/w/v"}
	if got, want := namesPattern(names), "^TestA$|^TestB$/^x_y$|^TestB$/^z$|^TestC$/^w$/^w$/^v$"; got != want {
		t.Fatalf("pattern %s, want %s", got, want)
	}
	if testing.Short() {
		t.Skip("builds and runs a test binary")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module m\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "m_test.go"), []byte(`package m

import "testing"

func run(t *testing.T, names ...string) {
	for _, n := range names {
		t.Run(n, func(t *testing.T) {
			t.Run("w", func(t *testing.T) { t.Run("v", func(*testing.T) {}); t.Run("u", func(*testing.T) {}) })
		})
	}
}

func TestA(t *testing.T)  { run(t, "x y", "z") }
func TestAB(t *testing.T) { run(t, "x y") }
func TestB(t *testing.T)  { run(t, "x y", "z", "q") }
func TestC(t *testing.T)  { run(t, "w") }
`), 0o644)
	cmd := exec.Command("go", "test", "-count=1", "-v", "-run", namesPattern(names), ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go test: %v\n%s", err, out)
	}
	var ran []string
	for _, line := range strings.Split(string(out), "\n") {
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "=== RUN   "); ok {
			ran = append(ran, name)
		}
	}
	// Leaves and the parents on their way; TestA's subtests all run
	// (only its top level is named), TestAB does not match TestA.
	want := []string{
		"TestA", "TestA/x_y", "TestA/x_y/w", "TestA/x_y/w/v", "TestA/x_y/w/u", "TestA/z", "TestA/z/w", "TestA/z/w/v", "TestA/z/w/u",
		"TestB", "TestB/x_y", "TestB/x_y/w", "TestB/x_y/w/v", "TestB/x_y/w/u", "TestB/z", "TestB/z/w", "TestB/z/w/v", "TestB/z/w/u",
		"TestC", "TestC/w", "TestC/w/w", "TestC/w/w/v",
	}
	if !reflect.DeepEqual(ran, want) {
		t.Errorf("ran\n %q\nwant\n %q", ran, want)
	}
}

// testNames lists the Test functions of the package in dir, and the
// string literals of its test files (where subtests get their names).
func testNames(t *testing.T, dir string) (tests, literals map[string]bool) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files in %s (%v)", dir, err)
	}
	tests, literals = map[string]bool{}, map[string]bool{}
	fset := token.NewFileSet()
	for _, f := range files {
		file, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil && strings.HasPrefix(fn.Name.Name, "Test") {
				tests[fn.Name.Name] = true
			}
		}
		ast.Inspect(file, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if v, err := strconv.Unquote(lit.Value); err == nil {
					literals[v] = true
				}
			}
			return true
		})
	}
	return tests, literals
}

// TestLockFile: a second holder waits, and is told so, until the first
// lets go.
func TestLockFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "run.lock")
	unlock, err := lockFile(path, func() { t.Error("waited for a free lock") })
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	got := make(chan error, 1)
	go func() {
		// flock locks belong to the open file: a second open in this
		// process contends like another process would.
		u, err := lockFile(path, func() { close(waited) })
		if err == nil {
			u()
		}
		got <- err
	}()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("the second holder was not told to wait")
	}
	select {
	case err := <-got:
		t.Fatalf("the second holder got the lock while the first held it (%v)", err)
	case <-time.After(100 * time.Millisecond):
	}
	unlock()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second holder never got the lock")
	}
}

// TestDiedBeforeInit: a guest is booted again only when its kernel
// panicked before the init's hello, the first thing the init reports and
// before anything of flowtap runs.
func TestDiedBeforeInit(t *testing.T) {
	dir := t.TempDir()
	console, results := filepath.Join(dir, "console.log"), filepath.Join(dir, "results")
	oops := "[    2.09] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI\r\n[    2.09] Kernel panic - not syncing: Fatal exception in interrupt\r\n"
	os.WriteFile(console, []byte(oops), 0o644)
	if got, want := diedBeforeInit(console, results), "Kernel panic - not syncing: Fatal exception in interrupt"; got != want {
		t.Errorf("no results file, a panic: %q, want %q", got, want)
	}
	f, err := os.Create(results)
	if err != nil {
		t.Fatal(err)
	}
	guest.NewWriter(f).Hello(guest.Hello{Release: "6.12.117+deb13-cloud-amd64"})
	f.Close()
	if got := diedBeforeInit(console, results); got != "" {
		t.Errorf("the init said hello, then the kernel panicked (a test may have caused it): %q, want no second boot", got)
	}
	os.Remove(results)
	os.WriteFile(console, []byte("kernel-init: open results port: no such device\r\n"), 0o644)
	if got := diedBeforeInit(console, results); got != "" {
		t.Errorf("no hello and no panic: %q, want no second boot", got)
	}
}
