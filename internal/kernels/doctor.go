// SPDX-License-Identifier: Apache-2.0

package kernels

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/flowtap/flowtap/internal/kernels/guest"
)

// DoctorReport is the JSON 'flowtap doctor --json' prints: what the
// running kernel can do, feature by feature, probed by loading the
// programs.
type DoctorReport struct {
	Kernel   string          `json:"kernel"`
	BTF      bool            `json:"btf"`
	Cgroup2  string          `json:"cgroup2"`
	Features []DoctorFeature `json:"features"`
	CoreOK   bool            `json:"core_ok"`
	// CoreError says why the core cannot run.
	CoreError string `json:"core_error"`
	// MinimumKernel is the oldest release flowtap's core claims.
	MinimumKernel string `json:"minimum_kernel"`
}

// DoctorFeature is one feature of a DoctorReport.
type DoctorFeature struct {
	Name      string   `json:"name"`
	Available bool     `json:"available"`
	Programs  []string `json:"programs"`
	Reason    string   `json:"reason"`
}

// ParseDoctor reads the doctor's report from its run, or says why there
// is none (a flowtap without the doctor command gives none: the matrix
// then reports the features as unknown and goes on).
func ParseDoctor(run *guest.DoctorRun) (*DoctorReport, error) {
	if run == nil {
		return nil, fmt.Errorf("the doctor did not run")
	}
	if run.Err != "" {
		return nil, fmt.Errorf("flowtap doctor: %s", run.Err)
	}
	var rep DoctorReport
	if err := json.Unmarshal([]byte(run.Stdout), &rep); err != nil || rep.Kernel == "" {
		msg := firstLine(run.Stderr)
		if msg == "" {
			msg = firstLine(run.Stdout)
		}
		return nil, fmt.Errorf("flowtap doctor --json gave no report (exit status %d: %s)", run.Exit, msg)
	}
	return &rep, nil
}

// FeatureSummary is one line: the features available, then those not
// with their reasons.
func FeatureSummary(rep *DoctorReport) string {
	var yes, no []string
	for _, f := range rep.Features {
		if f.Available {
			yes = append(yes, f.Name)
			continue
		}
		reason := f.Reason
		if reason == "" {
			reason = "no reason given"
		}
		no = append(no, fmt.Sprintf("%s (%s)", f.Name, oneLine(reason, 160)))
	}
	s := "available: " + orNone(yes)
	if len(no) > 0 {
		s += "; unavailable: " + strings.Join(no, ", ")
	}
	if !rep.CoreOK {
		s += "; core cannot run"
		if rep.CoreError != "" {
			s += ": " + oneLine(rep.CoreError, 200)
		}
	}
	return s
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	line, _, _ := strings.Cut(s, "\n")
	return oneLine(line, 200)
}

// oneLine flattens s to one line of at most n bytes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}
