// SPDX-License-Identifier: Apache-2.0

package host

import (
	"errors"
	"fmt"

	"github.com/flowtap/flowtap/internal/sysfilter"
)

// A plugin also runs under a seccomp filter. The launcher thread installs
// it on itself once, after NoNewPrivs (which lets a thread without
// CAP_SYS_ADMIN install one), and every plugin it forks inherits it, for
// good: a filter cannot be removed, only added to. It answers EPERM to the
// system calls a sink never needs and that would widen what it reaches
// (sysfilter.Plugin):
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
// executes plugins. Under flowtap run it also inherits flowtap's own
// filter (sysfilter.Agent), which this one narrows.

// installPluginFilter installs the plugin filter on the calling thread,
// which must have set NoNewPrivs. A kernel built without seccomp filters,
// an architecture flowtap does not know, or a filter around flowtap that
// refuses seccomp(2), is an errNoFilter.
func installPluginFilter() error {
	err := sysfilter.InstallThread(sysfilter.Plugin)
	if errors.Is(err, sysfilter.ErrUnavailable) {
		return fmt.Errorf("%w: %w", errNoFilter, err)
	}
	return err
}
