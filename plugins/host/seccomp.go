// SPDX-License-Identifier: Apache-2.0

//go:build amd64 || arm64

package host

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A plugin also runs under a seccomp filter. The launcher thread installs
// it on itself once, after NoNewPrivs (which lets a thread without
// CAP_SYS_ADMIN install one), and every plugin it forks inherits it, for
// good: a filter cannot be removed, only added to. It answers EPERM to the
// system calls a sink never needs and that would widen what it reaches:
//
//   - other processes: ptrace, process_vm_readv, process_vm_writev, kcmp,
//     pidfd_getfd. Plugins of one user (by default they share one) could
//     otherwise read each other's memory and descriptors: a webhook
//     token, NATS credentials;
//   - namespaces: unshare, setns, and clone with a namespace flag. A user
//     namespace would give the plugin every capability inside it and
//     much kernel code to reach. clone3 answers ENOSYS, because a filter
//     cannot read its flags (they are in memory); C libraries and Go
//     fall back to clone then;
//   - the kernel's other interfaces: bpf, perf_event_open, userfaultfd,
//     io_uring, the key rings (add_key, request_key, keyctl), modules,
//     kexec, reboot, swap, syslog, acct, and on amd64 iopl and ioperm;
//   - mounts: mount and the new mount calls, umount2, pivot_root, chroot.
//
// Most of the kernel and mount calls need a capability the plugin does not
// have anyway; the filter keeps them shut inside a user namespace too, and
// whatever a kernel's sysctls allow unprivileged users. Everything else is
// allowed: a plugin reads its files, writes its output, opens sockets,
// starts threads and processes. A system call through another
// architecture's table (a 32-bit program) kills the process, since the
// filter cannot tell which call it is; on amd64 the x32 table answers
// EPERM.
//
// The launcher thread runs under the filter too; it only forks and
// executes plugins.

// deniedSyscalls are the system calls the plugin filter answers EPERM.
var deniedSyscalls = append([]uintptr{
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
}, archDeniedSyscalls...)

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

// pluginFilter returns the classic BPF program of the plugin filter.
func pluginFilter() []unix.SockFilter {
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
	checks := len(deniedSyscalls) + 2 // then clone, clone3
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
	for _, nr := range deniedSyscalls {
		prog = append(prog, jump(jeq, uint32(nr), to(len(prog), 3), 0))
	}
	prog = append(prog, jump(jeq, unix.SYS_CLONE, to(len(prog), 0), 0))
	prog = append(prog, jump(jeq, unix.SYS_CLONE3, to(len(prog), 4), 0))
	prog = append(prog, stmt(ret, allow))
	return append(prog, tail...)
}

// installPluginFilter installs the plugin filter on the calling thread,
// which must have set NoNewPrivs. A kernel built without seccomp filters
// (EINVAL), or a filter around flowtap that refuses seccomp(2) (EPERM,
// EACCES), is an errNoFilter.
func installPluginFilter() error {
	filter := pluginFilter()
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	// Not SECCOMP_FILTER_FLAG_TSYNC: this thread only, and what it forks.
	_, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&prog)))
	switch {
	case errno == 0:
		return nil
	case errno == unix.EINVAL:
		return fmt.Errorf("%w: the kernel has no seccomp filters (CONFIG_SECCOMP_FILTER)", errNoFilter)
	case errno == unix.EPERM || errno == unix.EACCES:
		return fmt.Errorf("%w: the seccomp policy flowtap runs under refuses seccomp(2) (%w); under systemd, add seccomp to SystemCallFilter=", errNoFilter, errno)
	default:
		return fmt.Errorf("install the plugins' seccomp filter: %w", errno)
	}
}
