// SPDX-License-Identifier: Apache-2.0

package host

import "golang.org/x/sys/unix"

// The plugin filter on amd64: its system call table, the x32 table's
// marker bit, and the port I/O calls.
const (
	auditArch = unix.AUDIT_ARCH_X86_64
	x32Bit    = 0x40000000 // __X32_SYSCALL_BIT
)

var archDeniedSyscalls = []uintptr{unix.SYS_IOPL, unix.SYS_IOPERM}
