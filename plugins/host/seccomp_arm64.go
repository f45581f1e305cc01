// SPDX-License-Identifier: Apache-2.0

package host

import "golang.org/x/sys/unix"

// The plugin filter on arm64: its system call table, which has no second
// table in the same architecture.
const (
	auditArch = unix.AUDIT_ARCH_AARCH64
	x32Bit    = 0
)

var archDeniedSyscalls []uintptr
