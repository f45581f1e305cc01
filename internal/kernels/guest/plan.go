// SPDX-License-Identifier: Apache-2.0

// Package guest is what the kernel matrix's host side and its guest init
// share: the plan the init follows, the result markers it writes, and the
// parsing of both. It imports only the standard library, so the init
// binary stays small and free of anything that touches the kernel before
// /proc is mounted.
package guest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"
)

// PlanPath is where the init finds its plan inside the initramfs.
const PlanPath = "/matrix/plan.json"

// ResultsPort is the serial port the init writes its markers to in a
// guest. The kernel's console (ttyS0) carries everything else: kernel
// messages, firmware escape codes, test output. A port of their own keeps
// the markers apart from all of that.
const ResultsPort = "/dev/ttyS1"

// BinariesEnv names the directory of prebuilt flowtap binaries the tests
// use instead of building them (internal/testutil.BuildBinary,
// internal/e2e/harness.Binaries): a guest has no Go toolchain.
const BinariesEnv = "FLOWTAP_TEST_BINARIES"

// Plan is what the init does, in order: load the modules, run flowtap
// doctor, run each suite.
type Plan struct {
	// Hostname is set in a guest.
	Hostname string `json:"hostname"`
	// Modules are kernel modules loaded in this order in a guest, before
	// anything else runs (finit_module; ".ko.xz" ones decompressed by the
	// kernel). A module already built in is listed in Builtin instead.
	Modules []Module `json:"modules,omitempty"`
	// Doctor is the command line of 'flowtap doctor --json'.
	Doctor []string `json:"doctor"`
	// Env is added to every suite's environment (and the doctor's).
	Env []string `json:"env"`
	// Suites are the test binaries to run, in order.
	Suites []Suite `json:"suites"`
}

// Module is one kernel module file to load.
type Module struct {
	Name string `json:"name"`
	Path string `json:"path"`
}

// Suite is one test binary (go test -c) and the tests to run from it.
type Suite struct {
	// Name names the suite in results: "bpf", "e2e".
	Name string `json:"name"`
	// Binary is the test binary's path.
	Binary string `json:"binary"`
	// Dir is the working directory (the package's directory, as go test
	// would use); created if missing.
	Dir string `json:"dir"`
	// Run is the -test.run pattern ("" runs every test).
	Run string `json:"run,omitempty"`
	// Skip is the -test.skip pattern ("" skips none).
	Skip string `json:"skip,omitempty"`
	// Timeout is the binary's -test.timeout. The init kills the binary
	// a little later if it has not exited by then.
	Timeout Duration `json:"timeout"`
}

// Args returns the test binary's arguments: verbose, so that every test's
// verdict is on the console, once, with the timeout and the pattern.
func (s Suite) Args() []string {
	args := []string{"-test.v", "-test.count=1", "-test.timeout=" + time.Duration(s.Timeout).String()}
	if s.Run != "" {
		args = append(args, "-test.run="+s.Run)
	}
	if s.Skip != "" {
		args = append(args, "-test.skip="+s.Skip)
	}
	return args
}

// Duration is a time.Duration written as a string in JSON ("90s").
type Duration time.Duration

// MarshalJSON writes d as Go duration text.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads Go duration text.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = Duration(v)
	return nil
}

// Validate says what is missing from a plan.
func (p Plan) Validate() error {
	var errs []error
	if len(p.Doctor) == 0 {
		errs = append(errs, errors.New("no doctor command"))
	}
	if len(p.Suites) == 0 {
		errs = append(errs, errors.New("no suites"))
	}
	for i, s := range p.Suites {
		if s.Name == "" || s.Binary == "" {
			errs = append(errs, fmt.Errorf("suite %d: name and binary are required", i))
		}
		if s.Timeout <= 0 {
			errs = append(errs, fmt.Errorf("suite %q: timeout must be positive", s.Name))
		}
	}
	for i, m := range p.Modules {
		if m.Name == "" || m.Path == "" {
			errs = append(errs, fmt.Errorf("module %d: name and path are required", i))
		}
	}
	return errors.Join(errs...)
}

// ReadPlan reads and validates the plan in file path.
func ReadPlan(path string) (Plan, error) {
	var p Plan
	data, err := os.ReadFile(path)
	if err != nil {
		return p, fmt.Errorf("read plan: %w", err)
	}
	if err := json.Unmarshal(data, &p); err != nil {
		return p, fmt.Errorf("read plan %s: %w", path, err)
	}
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("plan %s: %w", path, err)
	}
	return p, nil
}
