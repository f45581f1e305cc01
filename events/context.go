// SPDX-License-Identifier: Apache-2.0

package events

// ContextFields documents the context every event carries, as sinks
// render it (the stdout sink's JSON keys, snake_case) and as filters name
// it: the socket, its owner, the host and the workload. 'flowtap list'
// and the manual pages print it.
func ContextFields() []FieldSpec {
	return []FieldSpec{
		{"socket_cookie", "uint64", "the socket's cookie (SO_COOKIE), unique per boot"},
		{"cgroup_id", "uint64", "cgroup v2 id of the socket (before Linux 5.15, whose kernel programs cannot read it, its owner process's cgroup, read from /proc unless capture.workload.enabled is false)"},
		{"pid", "uint32", "process id of the socket's owner: the process that connected or listened (0 when not known)"},
		{"uid", "uint32", "user id of the owner"},
		{"comm", "string", "task name of the owner"},
		{"host_name", "string", "name of the host flowtap runs on"},
		{"ppid", "uint32", "parent process id of the owner, when it got the socket"},
		{"process_start", "int64", "when the owner process started, ns since the Unix epoch: pid and process_start name one process even after its pid is reused"},
		{"exe", "string", "path of the owner's executable, read from /proc when flowtap first sees the process, and only while the process with that pid has that start time (empty when the process had exited by then, or without CAP_SYS_PTRACE for another user's process)"},
		{"container_id", "string", "full 64-hex-digit id of the socket's container, from its cgroup path; empty for the host (and for the first events of a new cgroup whose owner had already left it, while it is looked up)"},
		{"container_runtime", "string", "docker, containerd, cri-o or podman"},
		{"container_name", "string", "the container's name, as its runtime names it (for a Kubernetes container: its name in the pod spec); like container_image and the pod's name, namespace and labels, empty on a new container's first events, while its runtime is asked"},
		{"container_image", "string", "the image the container runs, as its runtime names it"},
		{"pod_name", "string", "Kubernetes pod name (the kubelet's io.kubernetes.pod.name label)"},
		{"pod_namespace", "string", "Kubernetes pod namespace"},
		{"pod_uid", "string", "Kubernetes pod uid (also from the cgroup path when no runtime answers)"},
		{"pod_labels", "map[string]string", "the pod's labels that capture.workload.pod_labels selects"},
	}
}
