// SPDX-License-Identifier: Apache-2.0

// Package release holds the tests of flowtap's release engineering as a
// user meets it: the version computed from git tags (version.sh, which the
// Makefile runs), 'make dist' run twice giving byte-identical archives,
// 'make image' run under podman, the systemd unit checked by
// systemd-analyze, and flowtap run with the unit's user, capabilities and
// no_new_privs under strace, its system calls held against the unit's
// filter. The code that packs archives and images lives in the
// tools module (tools/release), away from flowtap's own dependencies.
package release
