// SPDX-License-Identifier: Apache-2.0

package bpf_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/flowtap/flowtap/bpf"
	"github.com/flowtap/flowtap/internal/privtest"
)

// TestMapReadsNeedCapability: the probe answers what the kernel's release
// and kernel.unprivileged_bpf_disabled say: true before Linux 5.19 with
// the sysctl set (the 5.10 guest of the kernel matrix), false after or
// with it 0; and the probing thread gets its capabilities back (a map
// created after the probe, on any thread, works).
func TestMapReadsNeedCapability(t *testing.T) {
	privtest.Require(t)
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	release := unix.ByteSliceToString(uts.Release[:])
	var major, minor int
	if _, err := fmt.Sscanf(release, "%d.%d", &major, &minor); err != nil {
		t.Fatalf("kernel release %q: %v", release, err)
	}
	sysctl, err := os.ReadFile("/proc/sys/kernel/unprivileged_bpf_disabled")
	if err != nil {
		t.Fatal(err)
	}
	want := (major < 5 || major == 5 && minor < 19) && strings.TrimSpace(string(sysctl)) != "0"
	for i := range 3 {
		got, err := bpf.MapReadsNeedCapability()
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("probe %d on %s with unprivileged_bpf_disabled=%s: %v, want %v", i, release, strings.TrimSpace(string(sysctl)), got, want)
		}
	}
	t.Logf("kernel %s, unprivileged_bpf_disabled=%s: map reads need CAP_BPF: %v", release, strings.TrimSpace(string(sysctl)), want)
	if err := bpf.CheckPrivileges(); err != nil {
		t.Errorf("after the probes: %v", err)
	}
}
