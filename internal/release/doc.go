// SPDX-License-Identifier: Apache-2.0

// Package release holds the tests of flowtap's release engineering as a
// user meets it: the version computed from git tags (version.sh, which the
// Makefile runs), 'make dist' run twice giving byte-identical archives,
// 'make image' run under podman, and the systemd unit checked by
// systemd-analyze. The code that packs archives and images lives in the
// tools module (tools/release), away from flowtap's own dependencies.
package release
