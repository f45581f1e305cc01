// SPDX-License-Identifier: Apache-2.0

//go:build !amd64 && !arm64

package host

// installPluginFilter: flowtap knows the system call tables of amd64 and
// arm64 only; elsewhere plugins run without a seccomp filter.
func installPluginFilter() error { return errSeccompUnsupported }
