// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// MapReadsNeedCapability reports whether this kernel refuses this process's
// reads of a BPF map it already holds, and the creation of iterator
// links, once it no longer has CAP_BPF (or CAP_SYS_ADMIN). Before Linux
// 5.19, kernel.unprivileged_bpf_disabled (1 or 2, the default of most
// distributions) refused every bpf() command to a process without them,
// also on descriptors it holds; since, only the creation of maps and
// programs. flowtap reads its lost-record counter and asks for socket
// snapshots after it drops its privileges: where this is true, it must
// keep CAP_BPF.
//
// The probe creates a one-entry array, clears CAP_BPF and CAP_SYS_ADMIN
// from the effective set of one locked thread (the permitted set keeps
// them), reads the array there, and raises them again. It needs the
// capabilities to create the map; without CAP_BPF or CAP_SYS_ADMIN to
// begin with there is nothing to keep, and it returns false.
func MapReadsNeedCapability() (bool, error) {
	raw, err := os.ReadFile("/proc/sys/kernel/unprivileged_bpf_disabled")
	if err == nil && strings.TrimSpace(string(raw)) == "0" {
		return false, nil // nothing is refused for lack of CAP_BPF
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return false, nil
		}
		return false, fmt.Errorf("probe BPF map reads without CAP_BPF: create a map: %w", err)
	}
	defer m.Close()
	type result struct {
		refused bool
		err     error
	}
	done := make(chan result, 1)
	go func() {
		// The thread's capabilities change: it stays locked (and
		// ends with this goroutine) unless they are restored.
		runtime.LockOSThread()
		refused, restored, err := readWithoutCapability(m)
		if restored {
			runtime.UnlockOSThread()
		}
		done <- result{refused, err}
	}()
	r := <-done
	return r.refused, r.err
}

// readWithoutCapability reads m on the calling thread with CAP_BPF and
// CAP_SYS_ADMIN out of its effective set, then restores the set.
func readWithoutCapability(m *ebpf.Map) (refused, restored bool, err error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var saved [2]unix.CapUserData
	if err := unix.Capget(&hdr, &saved[0]); err != nil {
		return false, true, fmt.Errorf("probe BPF map reads without CAP_BPF: read capabilities: %w", err)
	}
	lowered := saved
	for _, c := range []int{capBPF, capSysAdmin} {
		lowered[c/32].Effective &^= 1 << (uint(c) % 32)
	}
	capset := func(d *[2]unix.CapUserData) error {
		// Raw: the capabilities of this thread alone.
		if _, _, errno := unix.RawSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&d[0])), 0); errno != 0 {
			return errno
		}
		return nil
	}
	if err := capset(&lowered); err != nil {
		return false, true, fmt.Errorf("probe BPF map reads without CAP_BPF: lower capabilities: %w", err)
	}
	var v uint32
	lookupErr := m.Lookup(uint32(0), &v)
	if err := capset(&saved); err != nil {
		return false, false, fmt.Errorf("probe BPF map reads without CAP_BPF: restore capabilities: %w", err)
	}
	switch {
	case lookupErr == nil:
		return false, true, nil
	case errors.Is(lookupErr, unix.EPERM):
		return true, true, nil
	default:
		return false, true, fmt.Errorf("probe BPF map reads without CAP_BPF: read the map: %w", lookupErr)
	}
}
