// SPDX-License-Identifier: Apache-2.0

// Package identity says which workload an event belongs to: the container
// (id, runtime, name, image), the Kubernetes pod (name, namespace, uid,
// selected labels) and the process (parent, executable, start time). See
// README.md.
package identity
