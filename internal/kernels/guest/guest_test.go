// SPDX-License-Identifier: Apache-2.0

package guest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sampleRun writes the markers of a whole run, the way the init does.
func sampleRun(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, err := range []error{
		w.Hello(Hello{Release: "6.1.0-50-cloud-amd64"}),
		w.Problem(Problem{Step: "mount debugfs on /sys/kernel/debug", Err: "no such device"}),
		w.Module(ModuleResult{Name: "veth"}),
		w.Doctor(DoctorRun{Exit: 0, Stdout: `{"kernel":"6.1.0-50-cloud-amd64","features":[]}` + "\n"}),
		w.Suite(SuiteResult{Name: "bpf", Exit: 1, Elapsed: Duration(90 * time.Second),
			Tests: Verdicts{Passed: 40, Failed: []string{"TestOwnership", "TestOwnership/before Open"}},
			Tail:  []string{"--- FAIL: TestOwnership (1.00s)", "FAIL"}}),
		w.Suite(SuiteResult{Name: "e2e", Exit: 0, Elapsed: Duration(20 * time.Second), Tests: Verdicts{Passed: 1}}),
		w.Done(Done{Elapsed: Duration(2 * time.Minute)}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestMarkersRoundTrip(t *testing.T) {
	rep, err := Parse(bytes.NewReader(sampleRun(t)))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Garbled != 0 {
		t.Errorf("%d garbled lines in clean output", rep.Garbled)
	}
	if rep.Hello == nil || rep.Hello.Release != "6.1.0-50-cloud-amd64" || rep.Hello.Native {
		t.Errorf("hello %+v", rep.Hello)
	}
	if len(rep.Problems) != 1 || rep.Problems[0].Fatal || rep.Problems[0].Err != "no such device" {
		t.Errorf("problems %+v", rep.Problems)
	}
	if len(rep.Modules) != 1 || rep.Modules[0].Name != "veth" || rep.Modules[0].Err != "" {
		t.Errorf("modules %+v", rep.Modules)
	}
	if rep.Doctor == nil || !strings.HasPrefix(rep.Doctor.Stdout, `{"kernel"`) {
		t.Errorf("doctor %+v", rep.Doctor)
	}
	if len(rep.Suites) != 2 {
		t.Fatalf("suites %+v", rep.Suites)
	}
	bpf, e2e := rep.Suites[0], rep.Suites[1]
	if bpf.Passed() || bpf.Exit != 1 || time.Duration(bpf.Elapsed) != 90*time.Second ||
		!reflect.DeepEqual(bpf.Tests.Failed, []string{"TestOwnership", "TestOwnership/before Open"}) || len(bpf.Tail) != 2 {
		t.Errorf("bpf suite %+v", bpf)
	}
	if !e2e.Passed() || e2e.Tests.Passed != 1 {
		t.Errorf("e2e suite %+v", e2e)
	}
	if rep.Done == nil || time.Duration(rep.Done.Elapsed) != 2*time.Minute {
		t.Errorf("done %+v", rep.Done)
	}
}

// TestParseConsoleNoise: markers survive what a serial line adds around
// them — firmware escape codes, carriage returns, kernel messages and
// test output on lines of their own — and lines that merely mention the
// token, or were cut or mixed, count as garbled without hiding the rest.
func TestParseConsoleNoise(t *testing.T) {
	clean := strings.Split(strings.TrimSuffix(string(sampleRun(t)), "\n"), "\n")
	var noisy bytes.Buffer
	noisy.WriteString("\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2)\r\n")
	noisy.WriteString("[    0.008000] ..MP-BIOS bug: 8254 timer not connected to IO-APIC\r\n")
	for i, line := range clean {
		if i == 0 {
			// Escape codes glued in front of the first marker.
			noisy.WriteString("\x1b[2J")
		}
		noisy.WriteString(line + "\r\n")
		noisy.WriteString("=== RUN   TestSomething\r\n")
	}
	// A marker cut short, one with a byte changed, one of an unknown
	// kind, a second hello: all garbled.
	cut := clean[4][:len(clean[4])/2]
	flipped := []byte(clean[4])
	flipped[len(flipped)/2] ^= 1
	noisy.WriteString(cut + "\r\n")
	noisy.WriteString(string(flipped) + "\r\n")
	noisy.WriteString("FTKM1 bogus e30 00000000\r\n")
	noisy.WriteString(clean[0] + "\r\n")
	// Interleaved kernel output inside a marker breaks its checksum.
	noisy.WriteString(clean[4][:20] + "[   12.3] veth: loaded" + clean[4][20:] + "\r\n")

	rep, err := Parse(&noisy)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Garbled != 5 {
		t.Errorf("garbled = %d, want 5", rep.Garbled)
	}
	if rep.Hello == nil || len(rep.Suites) != 2 || rep.Done == nil || rep.Doctor == nil {
		t.Errorf("lost markers in the noise: %+v", rep)
	}
}

func TestParseEmpty(t *testing.T) {
	rep, err := Parse(strings.NewReader("SeaBIOS\r\nKernel panic - not syncing: Attempted to kill init!\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Hello != nil || rep.Done != nil || len(rep.Suites) != 0 || rep.Garbled != 0 {
		t.Errorf("report from a console without markers: %+v", rep)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(sampleRun(f))
	f.Add([]byte("FTKM1 hello e30 00000000\n"))
	f.Add([]byte("FTKM1 \n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := Parse(bytes.NewReader(data))
		if err != nil {
			return // only an over-long line
		}
		// Whatever was accepted re-encodes to markers that parse the same.
		var buf bytes.Buffer
		w := NewWriter(&buf)
		if rep.Hello != nil {
			w.Hello(*rep.Hello)
		}
		for _, p := range rep.Problems {
			w.Problem(p)
		}
		for _, m := range rep.Modules {
			w.Module(m)
		}
		if rep.Doctor != nil {
			w.Doctor(*rep.Doctor)
		}
		for _, s := range rep.Suites {
			w.Suite(s)
		}
		if rep.Done != nil {
			w.Done(*rep.Done)
		}
		again, err := Parse(&buf)
		if err != nil {
			t.Fatal(err)
		}
		again.Garbled = rep.Garbled
		if !reflect.DeepEqual(normalize(rep), normalize(again)) {
			t.Fatalf("re-encoded report differs:\n%+v\n%+v", rep, again)
		}
	})
}

// normalize makes nil and empty slices compare equal.
func normalize(r *Report) string {
	return fmt.Sprintf("%+v %+v %+v %+v %+v %+v %d", r.Hello, r.Problems, r.Modules, r.Doctor, r.Suites, r.Done, r.Garbled)
}

func TestParseVerdict(t *testing.T) {
	for _, tc := range []struct {
		line, outcome, name string
		ok                  bool
	}{
		{"--- PASS: TestRecordLayout (0.35s)", "PASS", "TestRecordLayout", true},
		{"    --- FAIL: TestOwnership/outgoing_from_a_child (1.89s)", "FAIL", "TestOwnership/outgoing_from_a_child", true},
		{"--- SKIP: TestHelperProcess (0.00s)", "SKIP", "TestHelperProcess", true},
		{"\t--- PASS: TestX/y (12.00s)", "PASS", "TestX/y", true},
		{"=== RUN   TestX", "", "", false},
		{"--- BENCH: BenchmarkX", "", "", false},
		{"--- FAIL: ", "", "", false},
		{"--- FAIL: TestX", "", "", false},
		{"    capture_test.go:952: --- FAIL: not a verdict", "", "", false},
		{"FAIL", "", "", false},
		{"ok  \tgithub.com/flowtap/flowtap/bpf\t12.3s", "", "", false},
	} {
		outcome, name, ok := ParseVerdict(tc.line)
		if outcome != tc.outcome || name != tc.name || ok != tc.ok {
			t.Errorf("ParseVerdict(%q) = %q, %q, %v; want %q, %q, %v", tc.line, outcome, name, ok, tc.outcome, tc.name, tc.ok)
		}
	}
}

func TestWatcher(t *testing.T) {
	w := NewWatcher(3)
	// Output arrives in arbitrary pieces, with CRs, from two streams.
	out := "=== RUN   TestA\r\n--- PASS: TestA (0.01s)\n=== RUN   TestB\n    b_test.go:9: boom\n--- FA" +
		"IL: TestB (0.20s)\n    --- FAIL: TestB/sub (0.10s)\n--- SKIP: TestC (0.00s)\nFAIL"
	for i := 0; i < len(out); i += 7 {
		w.Write([]byte(out[i:min(i+7, len(out))]))
	}
	w.Close()
	v := w.Verdicts()
	if v.Passed != 1 || !reflect.DeepEqual(v.Failed, []string{"TestB", "TestB/sub"}) || !reflect.DeepEqual(v.Skipped, []string{"TestC"}) {
		t.Errorf("verdicts %+v", v)
	}
	if tail := w.Tail(); !reflect.DeepEqual(tail, []string{"    --- FAIL: TestB/sub (0.10s)", "--- SKIP: TestC (0.00s)", "FAIL"}) {
		t.Errorf("tail %q", tail)
	}
}

func TestReadPlan(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	os.WriteFile(good, []byte(`{"doctor":["/opt/flowtap/bin/flowtap","doctor","--json"],"env":["CI=true"],
		"modules":[{"name":"veth","path":"/opt/flowtap/modules/veth.ko.xz"}],
		"suites":[{"name":"bpf","binary":"/opt/flowtap/tests/bpf.test","dir":"/src/bpf","timeout":"12m0s"}]}`), 0o644)
	p, err := ReadPlan(good)
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(p.Suites[0].Timeout) != 12*time.Minute || p.Modules[0].Name != "veth" {
		t.Errorf("plan %+v", p)
	}
	if args := strings.Join(p.Suites[0].Args(), " "); args != "-test.v -test.count=1 -test.timeout=12m0s" {
		t.Errorf("args %q", args)
	}
	for name, content := range map[string]string{
		"no suites":   `{"doctor":["x"]}`,
		"bad timeout": `{"doctor":["x"],"suites":[{"name":"a","binary":"b","timeout":"soon"}]}`,
		"no timeout":  `{"doctor":["x"],"suites":[{"name":"a","binary":"b"}]}`,
		"not json":    `doctor: x`,
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		os.WriteFile(path, []byte(content), 0o644)
		if _, err := ReadPlan(path); err == nil {
			t.Errorf("%s: ReadPlan accepted %s", name, content)
		}
	}
}
