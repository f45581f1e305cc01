// SPDX-License-Identifier: Apache-2.0

package identity

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	containers "github.com/containerd/containerd/api/services/containers/v1"
	namespaces "github.com/containerd/containerd/api/services/namespaces/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// DefaultContainerdSocket is containerd's default API socket.
const DefaultContainerdSocket = "/run/containerd/containerd.sock"

// namespaceHeader is the gRPC metadata key that selects a containerd
// namespace.
const namespaceHeader = "containerd-namespace"

// sandboxAnnotation is the OCI spec annotation containerd's CRI plugin
// puts on a Kubernetes container: its pod sandbox's id.
const sandboxAnnotation = "io.kubernetes.cri.sandbox-id"

// containerdAPI talks to containerd's gRPC API through its published Go
// API bindings (github.com/containerd/containerd/api): the containers and
// namespaces services. Containers live in namespaces (k8s.io for the
// kubelet's, moby for Docker's, default for ctr's), so a container is
// looked up in each namespace in turn, the last one that had a container
// first.
type containerdAPI struct {
	socket string
	conn   *grpc.ClientConn
	cs     containers.ContainersClient
	ns     namespaces.NamespacesClient

	mu      sync.Mutex
	spaces  []string // last listed
	listed  time.Time
	lastHit string
}

// namespaceTTL is how long a list of namespaces is used before it is
// listed again.
const namespaceTTL = 10 * time.Second

// NewContainerd returns a client of containerd's API at socket. It
// connects lazily: an absent containerd fails Ping, not NewContainerd.
func NewContainerd(socket string) (Runtime, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("containerd API at %s: %w", socket, err)
	}
	return &containerdAPI{socket: socket, conn: conn,
		cs: containers.NewContainersClient(conn), ns: namespaces.NewNamespacesClient(conn)}, nil
}

func (c *containerdAPI) Name() string   { return RuntimeContainerd }
func (c *containerdAPI) Socket() string { return c.socket }
func (c *containerdAPI) Close() error   { return c.conn.Close() }

// Ping implements Runtime: it lists the namespaces.
func (c *containerdAPI) Ping(ctx context.Context) error {
	_, err := c.namespaces(ctx, true)
	return err
}

// namespaces returns containerd's namespaces, listing them again when the
// last list is old or fresh is set.
func (c *containerdAPI) namespaces(ctx context.Context, fresh bool) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !fresh && c.spaces != nil && time.Since(c.listed) < namespaceTTL {
		return c.spaces, nil
	}
	resp, err := c.ns.List(ctx, &namespaces.ListNamespacesRequest{})
	if err != nil {
		return nil, fmt.Errorf("containerd API at %s: list namespaces: %w", c.socket, err)
	}
	c.spaces = c.spaces[:0]
	for _, n := range resp.GetNamespaces() {
		c.spaces = append(c.spaces, n.GetName())
	}
	c.listed = time.Now()
	return c.spaces, nil
}

// Container implements Runtime.
func (c *containerdAPI) Container(ctx context.Context, id string) (ContainerInfo, error) {
	spaces, err := c.namespaces(ctx, false)
	if err != nil {
		return ContainerInfo{}, err
	}
	c.mu.Lock()
	order := append([]string{c.lastHit}, spaces...)
	c.mu.Unlock()
	tried := map[string]bool{"": true}
	for _, ns := range order {
		if tried[ns] {
			continue
		}
		tried[ns] = true
		resp, err := c.cs.Get(metadata.AppendToOutgoingContext(ctx, namespaceHeader, ns), &containers.GetContainerRequest{ID: id})
		if status.Code(err) == codes.NotFound {
			continue
		}
		if err != nil {
			return ContainerInfo{}, fmt.Errorf("containerd API at %s: get container %s in namespace %s: %w", c.socket, id, ns, err)
		}
		c.mu.Lock()
		c.lastHit = ns
		c.mu.Unlock()
		ct := resp.GetContainer()
		info := ContainerInfo{Name: ct.GetID(), Image: ct.GetImage(), Labels: ct.GetLabels()}
		if spec := ct.GetSpec(); spec != nil {
			// The OCI runtime spec, JSON: only its annotations are read.
			var s struct {
				Annotations map[string]string `json:"annotations"`
			}
			if json.Unmarshal(spec.GetValue(), &s) == nil {
				info.SandboxID = s.Annotations[sandboxAnnotation]
			}
		}
		return info, nil
	}
	return ContainerInfo{}, fmt.Errorf("containerd: container %s in namespaces %v: %w", id, spaces, ErrNoContainer)
}

// Interface guards.
var (
	_ Runtime = (*containerdAPI)(nil)
	_ Runtime = (*dockerAPI)(nil)
)
