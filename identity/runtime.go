// SPDX-License-Identifier: Apache-2.0

package identity

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/flowtap/flowtap/events"
)

// Runtime is a container runtime's API: what it says about a container.
// Implementations are safe for concurrent use.
type Runtime interface {
	// Name is the runtime's name (RuntimeDocker, RuntimeContainerd, ...).
	Name() string
	// Socket is the path of the API socket it talks to.
	Socket() string
	// Ping checks that the runtime answers.
	Ping(ctx context.Context) error
	// Container returns what the runtime knows of container id, or an
	// error wrapping ErrNoContainer when it has no such container.
	Container(ctx context.Context, id string) (ContainerInfo, error)
	// Close releases the connection.
	Close() error
}

// ErrNoContainer says a runtime has no container of that id.
var ErrNoContainer = errors.New("no such container")

// ContainerInfo is a runtime's answer about one container.
type ContainerInfo struct {
	// Name is the runtime's name for the container.
	Name string
	// Image is the image reference it was created from.
	Image string
	// Labels are the container's labels (for a Kubernetes container,
	// those the kubelet sets: io.kubernetes.pod.name, ...).
	Labels map[string]string
	// SandboxID is the id of the pod sandbox a Kubernetes container runs
	// in, when the runtime says; its labels are the pod's labels.
	SandboxID string
}

// The labels the kubelet puts on every container it creates (through
// the CRI, in containerd, cri-o and cri-dockerd alike).
const (
	LabelPodName       = "io.kubernetes.pod.name"
	LabelPodNamespace  = "io.kubernetes.pod.namespace"
	LabelPodUID        = "io.kubernetes.pod.uid"
	LabelContainerName = "io.kubernetes.container.name"
)

// describe fills w's runtime fields from what a runtime said: names from
// the kubelet's labels where they are present, and the selected pod
// labels from the container's labels, then the sandbox's.
func describe(w *events.Workload, runtime string, c ContainerInfo, sandbox map[string]string, selected []string) {
	w.ContainerRuntime = runtime
	w.ContainerName = c.Name
	if n := c.Labels[LabelContainerName]; n != "" {
		w.ContainerName = n
	}
	w.ContainerImage = c.Image
	w.PodName = c.Labels[LabelPodName]
	w.PodNamespace = c.Labels[LabelPodNamespace]
	if uid := c.Labels[LabelPodUID]; uid != "" {
		w.PodUID = uid
	}
	w.PodLabels = nil
	for _, key := range selected {
		v, ok := c.Labels[key]
		if !ok {
			v, ok = sandbox[key]
		}
		if ok {
			w.PodLabels = append(w.PodLabels, key+"="+v)
		}
	}
	slices.Sort(w.PodLabels)
}

// trimName drops the leading "/" Docker puts on container names.
func trimName(n string) string { return strings.TrimPrefix(n, "/") }

// Sockets name the runtimes' API sockets: "" is the runtime's default
// socket, "none" leaves the runtime out.
type Sockets struct {
	Containerd, Docker, Podman string
}

// Runtimes returns clients of the runtimes in s: containerd, Docker,
// Podman. None connects yet; Enricher.Start checks which answer.
func Runtimes(s Sockets) ([]Runtime, error) {
	pick := func(p, def string) string {
		if p == "" {
			return def
		}
		return p
	}
	var out []Runtime
	if p := pick(s.Containerd, DefaultContainerdSocket); p != "none" {
		c, err := NewContainerd(p)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if p := pick(s.Docker, DefaultDockerSocket); p != "none" {
		out = append(out, NewDocker(RuntimeDocker, p))
	}
	if p := pick(s.Podman, DefaultPodmanSocket); p != "none" {
		out = append(out, NewDocker(RuntimePodman, p))
	}
	return out, nil
}
