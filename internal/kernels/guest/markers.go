// SPDX-License-Identifier: Apache-2.0

package guest

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"sync"
)

// A marker is one line: the token, the kind, the payload as base64 JSON,
// and the CRC-32 (IEEE) of "kind payload" in hex:
//
//	FTKM1 suite eyJuYW1lIjoiYnBmIi...fQ 5f1c2a0b
//
// The token may be preceded by anything on its line (a serial line can
// carry stray bytes); base64 survives any terminal translation, and the
// checksum rejects a line that was cut or mixed with other output.
const token = "FTKM1"

// Marker kinds, in the order a run writes them.
const (
	kindHello   = "hello"
	kindProblem = "problem"
	kindModule  = "module"
	kindDoctor  = "doctor"
	kindSuite   = "suite"
	kindDone    = "done"
)

// Hello is the first marker: the init runs.
type Hello struct {
	// Release is uname -r.
	Release string `json:"release"`
	// Native is true when the init ran on the host, not as a guest's PID 1.
	Native bool `json:"native,omitempty"`
	// Uptime is the time since the kernel booted (CLOCK_BOOTTIME): in a
	// guest, how long the boot took.
	Uptime Duration `json:"uptime"`
}

// Problem is a step of the init's own set-up that failed (a mount, the
// memlock limit, the loopback interface). A fatal one ends the run.
type Problem struct {
	Step  string `json:"step"`
	Err   string `json:"err"`
	Fatal bool   `json:"fatal,omitempty"`
}

// ModuleResult says whether a kernel module loaded ("" Err).
type ModuleResult struct {
	Name string `json:"name"`
	Err  string `json:"err,omitempty"`
}

// DoctorRun is what 'flowtap doctor --json' did.
type DoctorRun struct {
	// Exit is its exit status; -1 if it could not run (Err says why).
	Exit   int    `json:"exit"`
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr,omitempty"`
	Err    string `json:"err,omitempty"`
	// Elapsed is its wall time (it loads every program once).
	Elapsed Duration `json:"elapsed"`
}

// SuiteResult is the outcome of one suite.
type SuiteResult struct {
	Name string `json:"name"`
	// Exit is the test binary's exit status; -1 if it did not exit on its
	// own (Err says why: could not start, killed after its timeout).
	Exit    int      `json:"exit"`
	Err     string   `json:"err,omitempty"`
	Elapsed Duration `json:"elapsed"`
	Tests   Verdicts `json:"tests"`
	// Tail is the end of the output when the suite failed.
	Tail []string `json:"tail,omitempty"`
}

// Passed reports whether the suite passed: exit status 0 and no test
// failed.
func (s SuiteResult) Passed() bool {
	return s.Exit == 0 && s.Err == "" && len(s.Tests.Failed) == 0
}

// Done is the last marker: the init finished the plan.
type Done struct {
	Elapsed Duration `json:"elapsed"`
}

// Writer writes markers, one Write per marker.
type Writer struct {
	mu sync.Mutex
	w  io.Writer
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Hello writes the hello marker.
func (w *Writer) Hello(v Hello) error { return w.emit(kindHello, v) }

// Problem writes a problem marker.
func (w *Writer) Problem(v Problem) error { return w.emit(kindProblem, v) }

// Module writes a module marker.
func (w *Writer) Module(v ModuleResult) error { return w.emit(kindModule, v) }

// Doctor writes the doctor marker.
func (w *Writer) Doctor(v DoctorRun) error { return w.emit(kindDoctor, v) }

// Suite writes a suite marker.
func (w *Writer) Suite(v SuiteResult) error { return w.emit(kindSuite, v) }

// Done writes the done marker.
func (w *Writer) Done(v Done) error { return w.emit(kindDone, v) }

func (w *Writer) emit(kind string, v any) error {
	line, err := encodeMarker(kind, v)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.w.Write(line); err != nil {
		return fmt.Errorf("write %s marker: %w", kind, err)
	}
	return nil
}

func encodeMarker(kind string, v any) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s marker: %w", kind, err)
	}
	body := kind + " " + base64.RawStdEncoding.EncodeToString(data)
	return fmt.Appendf(nil, "%s %s %08x\n", token, body, crc32.ChecksumIEEE([]byte(body))), nil
}

// Report is everything a run's markers said.
type Report struct {
	Hello    *Hello
	Problems []Problem
	Modules  []ModuleResult
	Doctor   *DoctorRun
	Suites   []SuiteResult
	Done     *Done
	// Garbled counts lines that carried the token but did not decode.
	Garbled int
}

// maxLine bounds one marker line (a failed suite's tail, the doctor's
// JSON).
const maxLine = 4 << 20

// Parse reads the markers in r. Lines without the token are ignored.
// A marker line that does not decode (cut, mixed, unknown kind) counts as
// garbled; a second hello or done also counts as garbled and is ignored.
func Parse(r io.Reader) (*Report, error) {
	rep := &Report{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	for sc.Scan() {
		line := sc.Bytes()
		i := bytes.Index(line, []byte(token+" "))
		if i < 0 {
			continue
		}
		if !rep.add(string(line[i+len(token)+1:])) {
			rep.Garbled++
		}
	}
	if err := sc.Err(); err != nil {
		return rep, fmt.Errorf("read markers: %w", err)
	}
	return rep, nil
}

// add decodes one marker's "kind payload crc" and records it.
func (rep *Report) add(s string) bool {
	f := strings.Fields(s)
	if len(f) != 3 {
		return false
	}
	kind, payload, sum := f[0], f[1], f[2]
	if fmt.Sprintf("%08x", crc32.ChecksumIEEE([]byte(kind+" "+payload))) != sum {
		return false
	}
	data, err := base64.RawStdEncoding.DecodeString(payload)
	if err != nil {
		return false
	}
	dec := func(v any) bool {
		d := json.NewDecoder(bytes.NewReader(data))
		d.DisallowUnknownFields()
		return d.Decode(v) == nil
	}
	switch kind {
	case kindHello:
		var v Hello
		if rep.Hello != nil || !dec(&v) {
			return false
		}
		rep.Hello = &v
	case kindProblem:
		var v Problem
		if !dec(&v) {
			return false
		}
		rep.Problems = append(rep.Problems, v)
	case kindModule:
		var v ModuleResult
		if !dec(&v) {
			return false
		}
		rep.Modules = append(rep.Modules, v)
	case kindDoctor:
		var v DoctorRun
		if rep.Doctor != nil || !dec(&v) {
			return false
		}
		rep.Doctor = &v
	case kindSuite:
		var v SuiteResult
		if !dec(&v) {
			return false
		}
		rep.Suites = append(rep.Suites, v)
	case kindDone:
		var v Done
		if rep.Done != nil || !dec(&v) {
			return false
		}
		rep.Done = &v
	default:
		return false
	}
	return true
}
