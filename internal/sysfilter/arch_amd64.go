// SPDX-License-Identifier: Apache-2.0

package sysfilter

import "golang.org/x/sys/unix"

// amd64: its system call table, the x32 table's marker bit, and the port
// I/O calls, which every filter denies.
const (
	auditArch = unix.AUDIT_ARCH_X86_64
	x32Bit    = 0x40000000 // __X32_SYSCALL_BIT
)

// ArchDenied are the system calls of this architecture alone that every
// filter denies.
var ArchDenied = []uintptr{unix.SYS_IOPL, unix.SYS_IOPERM}
