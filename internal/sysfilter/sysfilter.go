// SPDX-License-Identifier: Apache-2.0

//go:build amd64 || arm64

// Package sysfilter builds and installs the seccomp filters flowtap puts
// on its sink plugins (plugins/host) and on itself (flowtap run): classic
// BPF programs that answer EPERM to a list of system calls, EPERM to clone
// with a namespace flag, ENOSYS to clone3 (a filter cannot read its flags,
// which are in memory; C libraries and Go fall back to clone), and kill
// the process for a call through another architecture's table (on amd64
// the x32 table answers EPERM). Everything else is allowed. See
// README.md.
package sysfilter

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrUnavailable marks why a filter could not be installed for reasons
// outside flowtap: the kernel has no seccomp filters
// (CONFIG_SECCOMP_FILTER), flowtap does not know the architecture's system
// calls, or a filter flowtap itself runs under refuses seccomp(2). The
// caller logs a WARN and goes on.
var ErrUnavailable = errors.New("seccomp unavailable")

// Plugin are the system calls the sink plugins' filter denies (see
// plugins/host): other processes' memory and descriptors, namespaces, the
// kernel's other interfaces (bpf, perf events, userfaultfd, io_uring, key
// rings, modules, kexec, reboot, swap, syslog, acct), mounts.
var Plugin = []uintptr{
	unix.SYS_PTRACE, unix.SYS_PROCESS_VM_READV, unix.SYS_PROCESS_VM_WRITEV, unix.SYS_KCMP, unix.SYS_PIDFD_GETFD,
	unix.SYS_UNSHARE, unix.SYS_SETNS,
	unix.SYS_BPF, unix.SYS_PERF_EVENT_OPEN, unix.SYS_USERFAULTFD,
	unix.SYS_IO_URING_SETUP, unix.SYS_IO_URING_ENTER, unix.SYS_IO_URING_REGISTER,
	unix.SYS_ADD_KEY, unix.SYS_REQUEST_KEY, unix.SYS_KEYCTL,
	unix.SYS_INIT_MODULE, unix.SYS_FINIT_MODULE, unix.SYS_DELETE_MODULE,
	unix.SYS_KEXEC_LOAD, unix.SYS_KEXEC_FILE_LOAD, unix.SYS_REBOOT,
	unix.SYS_SWAPON, unix.SYS_SWAPOFF, unix.SYS_SYSLOG, unix.SYS_ACCT,
	unix.SYS_MOUNT, unix.SYS_UMOUNT2, unix.SYS_PIVOT_ROOT, unix.SYS_CHROOT,
	unix.SYS_OPEN_TREE, unix.SYS_MOVE_MOUNT, unix.SYS_FSOPEN, unix.SYS_FSCONFIG,
	unix.SYS_FSMOUNT, unix.SYS_FSPICK, unix.SYS_MOUNT_SETATTR,
}

// Agent are the system calls flowtap's own filter denies: the plugins'
// list but bpf and perf_event_open, which loading and reading its kernel
// programs needs. flowtap keeps CAP_SYS_PTRACE (to read /proc/PID/exe of
// processes with capabilities), so without the filter it could attach to
// or read the memory of any process; it never needs to.
var Agent = without(Plugin, unix.SYS_BPF, unix.SYS_PERF_EVENT_OPEN)

func without(list []uintptr, drop ...uintptr) []uintptr {
	var out []uintptr
	for _, nr := range list {
		keep := true
		for _, d := range drop {
			keep = keep && nr != d
		}
		if keep {
			out = append(out, nr)
		}
	}
	return out
}

// namespaceFlags are clone's flags that make a new namespace
// (CLONE_NEWTIME is unshare's and clone3's only: for clone its bit is part
// of the exit signal).
const namespaceFlags = unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWNET |
	unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWCGROUP

// Offsets in struct seccomp_data.
const (
	seccompNr   = 0
	seccompArch = 4
	seccompArg0 = 16 // the low 32 bits of args[0] (little endian), clone's flags
)

// Program returns the classic BPF program of a filter that answers EPERM
// to the system calls denied and to ArchDenied, and treats clone and
// clone3 as the package comment says.
func Program(denied []uintptr) []unix.SockFilter {
	denied = append(append([]uintptr(nil), denied...), ArchDenied...)
	stmt := func(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }
	jump := func(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
		return unix.SockFilter{Code: code, K: k, Jt: jt, Jf: jf}
	}
	const (
		load  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jge   = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
		jset  = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
		ret   = unix.BPF_RET | unix.BPF_K
		allow = unix.SECCOMP_RET_ALLOW
		eperm = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	)
	// The program's tail, whose places the jumps count to from the end:
	//   n-5  clone: load the flags
	//   n-4  a namespace flag: EPERM
	//   n-3  allow
	//   n-2  EPERM
	//   n-1  ENOSYS
	tail := []unix.SockFilter{
		stmt(load, seccompArg0),
		jump(jset, namespaceFlags, 1, 0),
		stmt(ret, allow),
		stmt(ret, eperm),
		stmt(ret, unix.SECCOMP_RET_ERRNO|uint32(unix.ENOSYS)),
	}
	prog := []unix.SockFilter{
		stmt(load, seccompArch),
		jump(jeq, auditArch, 1, 0),
		stmt(ret, unix.SECCOMP_RET_KILL_PROCESS),
		stmt(load, seccompNr),
	}
	if x32Bit != 0 {
		prog = append(prog, jump(jge, x32Bit, 0, 0)) // target set below
	}
	head := len(prog)
	checks := len(denied) + 2 // then clone, clone3
	// to returns the offset of a jump at index i to tail entry t (0-4).
	to := func(i, t int) uint8 {
		off := head + checks + 1 + t - (i + 1) // +1: the allow after the checks
		if off < 0 || off > 255 {
			panic(fmt.Sprintf("seccomp filter: jump of %d", off))
		}
		return uint8(off)
	}
	if x32Bit != 0 {
		prog[head-1].Jt = to(head-1, 3)
	}
	for _, nr := range denied {
		prog = append(prog, jump(jeq, uint32(nr), to(len(prog), 3), 0))
	}
	prog = append(prog, jump(jeq, unix.SYS_CLONE, to(len(prog), 0), 0))
	prog = append(prog, jump(jeq, unix.SYS_CLONE3, to(len(prog), 4), 0))
	prog = append(prog, stmt(ret, allow))
	return append(prog, tail...)
}

// InstallThread installs the filter of the system calls denied on the
// calling thread alone (and what it forks), which must have set
// NoNewPrivs. Errors outside flowtap wrap ErrUnavailable.
func InstallThread(denied []uintptr) error {
	return install(denied, 0)
}

// InstallProcess installs the filter of the system calls denied on every
// thread of the process (SECCOMP_FILTER_FLAG_TSYNC), after setting
// NoNewPrivs, which the kernel then sets on every thread too. A thread
// that runs under a filter of its own already (the plugin launcher) makes
// it fail: install it before. Errors outside flowtap wrap ErrUnavailable.
func InstallProcess(denied []uintptr) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	return install(denied, unix.SECCOMP_FILTER_FLAG_TSYNC)
}

func install(denied []uintptr, flags uintptr) error {
	filter := Program(denied)
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	r, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&prog)))
	switch {
	case errno == 0 && r != 0:
		// TSYNC: thread r could not take the filter.
		return fmt.Errorf("install a seccomp filter on every thread: thread %d runs under a filter of its own", r)
	case errno == 0:
		return nil
	case errno == unix.EINVAL:
		return fmt.Errorf("%w: the kernel has no seccomp filters (CONFIG_SECCOMP_FILTER)", ErrUnavailable)
	case errno == unix.EPERM || errno == unix.EACCES:
		return fmt.Errorf("%w: the seccomp policy flowtap runs under refuses seccomp(2) (%w); under systemd, add seccomp to SystemCallFilter=", ErrUnavailable, errno)
	default:
		return fmt.Errorf("install a seccomp filter: %w", errno)
	}
}
