// SPDX-License-Identifier: Apache-2.0

package sysfilter

import "golang.org/x/sys/unix"

// arm64: its system call table, which has no second table in the same
// architecture.
const (
	auditArch = unix.AUDIT_ARCH_AARCH64
	x32Bit    = 0
)

// ArchDenied are the system calls of this architecture alone that every
// filter denies.
var ArchDenied []uintptr
