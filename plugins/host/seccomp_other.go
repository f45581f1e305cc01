// SPDX-License-Identifier: Apache-2.0

//go:build !amd64 && !arm64

package host

import "fmt"

// installPluginFilter: flowtap knows the system call tables of amd64 and
// arm64 only; elsewhere plugins run without a seccomp filter.
func installPluginFilter() error {
	return fmt.Errorf("%w: flowtap knows the system calls of amd64 and arm64 only", errNoFilter)
}
