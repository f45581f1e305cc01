// SPDX-License-Identifier: Apache-2.0

// Package privdrop lowers flowtap's own privileges once its kernel
// programs are loaded and attached: every capability it no longer needs
// leaves its effective, permitted, inheritable, ambient and bounding sets,
// on every thread of the process, and NoNewPrivs is set.
//
// Capabilities belong to threads in Linux, so the change is made on every
// thread at once (syscall.AllThreadsSyscall): a Go program cannot tell
// which thread later code runs on. That needs a binary built without cgo
// (CGO_ENABLED=0, as flowtap's releases and `make build` are); with cgo,
// Drop fails with ErrCgo and changes nothing.
package privdrop

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrCgo: the binary was built with cgo, where Go cannot change every
// thread's capabilities.
var ErrCgo = errors.New("cannot change the capabilities of every thread in a binary built with cgo (build with CGO_ENABLED=0)")

// Names of the capabilities flowtap may keep, for messages.
var Names = map[int]string{
	unix.CAP_SETGID:     "CAP_SETGID",
	unix.CAP_SETUID:     "CAP_SETUID",
	unix.CAP_KILL:       "CAP_KILL",
	unix.CAP_SETPCAP:    "CAP_SETPCAP",
	unix.CAP_BPF:        "CAP_BPF",
	unix.CAP_PERFMON:    "CAP_PERFMON",
	unix.CAP_SYS_ADMIN:  "CAP_SYS_ADMIN",
	unix.CAP_NET_ADMIN:  "CAP_NET_ADMIN",
	unix.CAP_SYS_PTRACE: "CAP_SYS_PTRACE",
}

// Name returns the name of capability c ("CAP_KILL", or "cap N").
func Name(c int) string {
	if n, ok := Names[c]; ok {
		return n
	}
	return "cap " + strconv.Itoa(c)
}

// Drop keeps only the capabilities in keep (those of them the process
// holds) and drops every other one from all sets of every thread, then
// sets NoNewPrivs. It returns the capabilities kept. Dropping the bounding
// set needs CAP_SETPCAP; without it the bounding set stays as it is (the
// other sets are emptied all the same, and NoNewPrivs keeps an exec from
// regaining anything).
func Drop(keep []int) ([]int, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return nil, fmt.Errorf("read capabilities: %w", err)
	}
	has := func(c int) bool { return data[c/32].Permitted&(1<<(uint(c)%32)) != 0 }
	var kept []int
	var mask [2]uint32
	for _, c := range keep {
		if has(c) && !slices.Contains(kept, c) {
			kept = append(kept, c)
			mask[c/32] |= 1 << (uint(c) % 32)
		}
	}
	slices.Sort(kept)
	all := func(trap, a1, a2, a3 uintptr) error {
		if _, _, errno := syscall.AllThreadsSyscall(trap, a1, a2, a3); errno != 0 {
			if errno == syscall.ENOTSUP {
				return ErrCgo
			}
			return errno
		}
		return nil
	}
	if data[unix.CAP_SETPCAP/32].Effective&(1<<(unix.CAP_SETPCAP%32)) != 0 {
		for c := 0; c <= LastCap(); c++ {
			if mask[c/32]&(1<<(uint(c)%32)) != 0 {
				continue
			}
			if err := all(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); err != nil && !errors.Is(err, unix.EINVAL) {
				return nil, fmt.Errorf("drop %s from the bounding set: %w", Name(c), err)
			}
		}
	}
	if err := all(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return nil, fmt.Errorf("clear the ambient capabilities: %w", err)
	}
	for i := range data {
		data[i] = unix.CapUserData{Effective: mask[i], Permitted: mask[i]}
	}
	if err := all(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); err != nil {
		return nil, fmt.Errorf("drop capabilities: %w", err)
	}
	if err := all(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); err != nil {
		return nil, fmt.Errorf("set no_new_privs: %w", err)
	}
	return kept, nil
}

// Holds reports whether the calling thread has capability c in its
// permitted set (false if the set cannot be read).
func Holds(c int) bool {
	data, ok := threadCaps()
	return ok && data[c/32].Permitted&(1<<(uint(c)%32)) != 0
}

// Effective reports whether the calling thread has capability c in its
// effective set (false if the set cannot be read).
func Effective(c int) bool {
	data, ok := threadCaps()
	return ok && data[c/32].Effective&(1<<(uint(c)%32)) != 0
}

// threadCaps reads the calling thread's capability sets.
func threadCaps() ([2]unix.CapUserData, bool) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	err := unix.Capget(&hdr, &data[0])
	return data, err == nil
}

// LastCap is the highest capability number the kernel knows
// (/proc/sys/kernel/cap_last_cap; 63 if it cannot be read).
func LastCap() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			return n
		}
	}
	return 63
}

// Status is what /proc/<pid>/status says of a process's privileges.
type Status struct {
	// UID and GID are the real, effective, saved and file-system uid and
	// gid; Groups the supplementary groups.
	UID, GID, Groups []string
	// Inh, Prm, Eff, Bnd and Amb are the capability sets, as masks.
	Inh, Prm, Eff, Bnd, Amb uint64
	// NoNewPrivs is the NoNewPrivs flag.
	NoNewPrivs bool
	// Seccomp is the seccomp mode (0 none, 1 strict, 2 filter) and
	// SeccompFilters how many filters are stacked.
	Seccomp, SeccompFilters int
}

// ReadStatus reads the privileges of process pid from /proc/<pid>/status
// ("self" for this process).
func ReadStatus(pid string) (Status, error) {
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return Status{}, err
	}
	defer f.Close()
	var st Status
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		mask := func(dst *uint64) { *dst, _ = strconv.ParseUint(v, 16, 64) }
		switch k {
		case "Uid":
			st.UID = strings.Fields(v)
		case "Gid":
			st.GID = strings.Fields(v)
		case "Groups":
			st.Groups = strings.Fields(v)
		case "CapInh":
			mask(&st.Inh)
		case "CapPrm":
			mask(&st.Prm)
		case "CapEff":
			mask(&st.Eff)
		case "CapBnd":
			mask(&st.Bnd)
		case "CapAmb":
			mask(&st.Amb)
		case "NoNewPrivs":
			st.NoNewPrivs = v == "1"
		case "Seccomp":
			st.Seccomp, _ = strconv.Atoi(v)
		case "Seccomp_filters":
			st.SeccompFilters, _ = strconv.Atoi(v)
		}
	}
	return st, sc.Err()
}

// Caps lists the capabilities of mask by name.
func Caps(mask uint64) []string {
	var out []string
	for c := 0; c < 64; c++ {
		if mask&(1<<uint(c)) != 0 {
			out = append(out, Name(c))
		}
	}
	return out
}
