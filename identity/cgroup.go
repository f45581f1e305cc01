// SPDX-License-Identifier: Apache-2.0

package identity

import (
	"strings"
)

// Container runtimes as container_runtime reports them.
const (
	RuntimeDocker     = "docker"
	RuntimeContainerd = "containerd"
	RuntimeCRIO       = "cri-o"
	RuntimePodman     = "podman"
)

// CgroupInfo is what a cgroup path says about the workload in it.
type CgroupInfo struct {
	// ContainerID is the full 64-hex-digit container id; "" when the
	// cgroup is not a container's (the host).
	ContainerID string
	// Runtime is the runtime the path's shape names (RuntimeDocker, ...);
	// "" when the shape does not say (a Kubernetes pod under the cgroupfs
	// driver names no runtime: the runtimes' APIs are asked).
	Runtime string
	// PodUID is the Kubernetes pod's uid when the path is under a pod's
	// cgroup (kubepods), with dashes.
	PodUID string
}

// idLen is the length of a container id in hex digits.
const idLen = 64

// ParseCgroupPath reads a cgroup v2 path (relative to the cgroup2 mount,
// as /proc/PID/cgroup gives it, e.g.
// /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope)
// and returns the container and pod it belongs to. It knows the shapes of
// docker, containerd (ctr, nerdctl, the CRI plugin), cri-o and podman under
// the cgroupfs and systemd drivers; the same paths appear in the unified
// hierarchy of a hybrid layout. The deepest container in the path wins
// (a container nested in another, or a cgroup a container made below its
// own, belongs to the innermost). Monitor processes (conmon) are the
// host's.
func ParseCgroupPath(path string) CgroupInfo {
	var info CgroupInfo
	parent := ""
	for part := range strings.SplitSeq(path, "/") {
		if part == "" {
			continue
		}
		if uid, ok := podUID(part); ok {
			info.PodUID = uid
		}
		if id, rt, ok := containerPart(part, parent); ok {
			info.ContainerID, info.Runtime = id, rt
		}
		parent = part
	}
	if info.ContainerID == "" {
		info.PodUID = "" // a pod's own cgroup holds no process but its containers'
	}
	return info
}

// containerPart recognises one path component that names a container.
func containerPart(part, parent string) (id, runtime string, ok bool) {
	name := strings.TrimSuffix(part, ".scope")
	scope := len(name) < len(part)
	// <prefix>-<id>[.scope]: systemd driver units, and podman's and
	// cri-o's cgroupfs names.
	for _, p := range [...]struct{ prefix, runtime string }{
		{"docker-", RuntimeDocker},
		{"cri-containerd-", RuntimeContainerd},
		{"containerd-", RuntimeContainerd},
		{"nerdctl-", RuntimeContainerd},
		{"crio-", RuntimeCRIO},
		{"libpod-", RuntimePodman},
	} {
		if rest, found := strings.CutPrefix(name, p.prefix); found && isID(rest) {
			return rest, p.runtime, true
		}
	}
	if scope || !isID(name) {
		return "", "", false
	}
	// A bare id: the cgroupfs driver's /docker/<id>, containerd's
	// /<namespace>/<id> (ctr, and the CRI plugin under kubepods).
	switch {
	case parent == "docker":
		return name, RuntimeDocker, true
	case parent == "libpod_parent":
		return name, RuntimePodman, true
	case parent == "k8s.io" || parent == "default" || parent == "moby":
		return name, RuntimeContainerd, true
	}
	return name, "", true
}

// podUID recognises a Kubernetes pod's cgroup: pod<uid> (cgroupfs driver)
// or [kubelet-]kubepods[-<qos>]-pod<uid with _ for ->.slice (systemd driver;
// kubelet- where the kubelet runs in a container, as with kind).
func podUID(part string) (string, bool) {
	var uid string
	switch {
	case strings.Contains(part, "kubepods") && strings.HasSuffix(part, ".slice"):
		i := strings.LastIndex(part, "-pod")
		if i < 0 {
			return "", false
		}
		uid = strings.ReplaceAll(part[i+len("-pod"):len(part)-len(".slice")], "_", "-")
	case strings.HasPrefix(part, "pod"):
		uid = part[len("pod"):]
	default:
		return "", false
	}
	if !isUUID(uid) {
		return "", false
	}
	return uid, true
}

// isID reports whether s is a full container id: 64 lower-case hex digits.
func isID(s string) bool {
	if len(s) != idLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
	}
	return true
}

// isUUID reports whether s has a UUID's shape: 8-4-4-4-12 hex digits.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHex(s[i]) {
				return false
			}
		}
	}
	return true
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }
