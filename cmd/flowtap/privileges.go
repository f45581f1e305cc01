// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/flowtap/flowtap/bpf"
	"github.com/flowtap/flowtap/internal/privdrop"
	"github.com/flowtap/flowtap/internal/sysfilter"
)

// keptCapabilities are the capabilities flowtap keeps once its programs
// are attached, and why:
//
//   - CAP_SETUID and CAP_SETGID: a plugin that dies or hangs is started
//     again, and a reload (SIGHUP) starts new ones, each as its sink's
//     run_as user (by default "flowtap" or "nobody"); flowtap also joins
//     the plugin's group to reach its socket.
//   - CAP_KILL: a plugin running as another user is killed (SIGKILL) when
//     it hangs, is replaced, or outlives its Close.
//   - CAP_SYS_PTRACE: the workload identity (package identity) reads
//     /proc/<pid>/exe, the exe of every event's context, and the kernel
//     lets only a process holding every capability of the one it looks at,
//     or CAP_SYS_PTRACE, read it: without it, processes with capabilities
//     (a container's root, most daemons) would lose their exe. flowtap
//     never ptraces; an exe taken from the kernel programs, as comm is,
//     would let it go.
//
// Nothing else: reading the ring buffer, the lost-record counter, asking
// the kernel for socket snapshots (the iterator's link is created at
// start) and detaching at the end need no capability
// (TestDroppedPrivileges in internal/e2e runs a capture through all of
// them), except before Linux 5.19, where kernel.unprivileged_bpf_disabled
// refuses even reads of a map flowtap holds without CAP_BPF: there
// flowtap keeps CAP_BPF (bpf.MapReadsNeedCapability decides, by trying).
// A flowtap that is not root keeps none of these: its plugins run as its
// own user.
var keptCapabilities = []int{unix.CAP_SETUID, unix.CAP_SETGID, unix.CAP_KILL, unix.CAP_SYS_PTRACE}

// dropPrivileges drops every capability flowtap no longer needs (see
// keptCapabilities) and logs what it keeps.
func dropPrivileges(log hclog.Logger) error {
	keep := keptCapabilities
	if os.Geteuid() != 0 {
		keep = nil
	}
	need, err := bpf.MapReadsNeedCapability()
	if err != nil {
		return fmt.Errorf("drop privileges after start: %w", err)
	}
	if need {
		// CAP_SYS_ADMIN stands in for CAP_BPF where the process has
		// only it; Drop keeps only what the process holds.
		keep = append(slices.Clone(keep), unix.CAP_BPF)
		if !privdrop.Holds(unix.CAP_BPF) {
			keep = append(keep, unix.CAP_SYS_ADMIN)
		}
		log.Info("keeping CAP_BPF: this kernel refuses reads of flowtap's BPF maps without it (kernel.unprivileged_bpf_disabled, before Linux 5.19)")
	}
	kept, err := privdrop.Drop(keep)
	if errors.Is(err, privdrop.ErrCgo) {
		log.Warn("capabilities not dropped after start: this flowtap was built with cgo (build it with CGO_ENABLED=0, as make build does)")
		return nil
	}
	if err != nil {
		return fmt.Errorf("drop privileges after start: %w", err)
	}
	names := make([]string, len(kept))
	for i, c := range kept {
		names[i] = privdrop.Name(c)
	}
	log.Info("privileges dropped: programs attached", "kept", strings.Join(names, ","), "no_new_privs", true)
	return nil
}

// filterSystemCalls puts every thread of flowtap under its seccomp filter
// (sysfilter.Agent), for good: EPERM for ptrace and the other ways into
// other processes (flowtap keeps CAP_SYS_PTRACE, for /proc/PID/exe, and
// never needs them), namespaces, mounts, modules, kexec and the kernel
// interfaces it does not use. It also sets NoNewPrivs. Where seccomp is
// unavailable (no CONFIG_SECCOMP_FILTER, an unknown architecture, a
// policy around flowtap that refuses seccomp(2)) the error wraps
// sysfilter.ErrUnavailable: flowtap run logs a WARN and runs without it.
func filterSystemCalls() error {
	if err := sysfilter.InstallProcess(sysfilter.Agent); err != nil {
		return fmt.Errorf("install flowtap's seccomp filter: %w", err)
	}
	return nil
}
