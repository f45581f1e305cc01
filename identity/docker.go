// SPDX-License-Identifier: Apache-2.0

package identity

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// Default API sockets of Docker Engine and of Podman's Docker-compatible
// service (podman system service, or podman.socket).
const (
	DefaultDockerSocket = "/var/run/docker.sock"
	DefaultPodmanSocket = "/run/podman/podman.sock"
)

// dockerAPI talks to Docker Engine's HTTP API (or Podman's compatible
// one) over its unix socket: a GET of /containers/{id}/json per
// container. The API is plain JSON over HTTP, so it needs no client
// module: net/http and the few response fields read here.
type dockerAPI struct {
	name   string
	socket string
	client *http.Client
}

// NewDocker returns a client of the Docker Engine API at socket (a
// unix socket path). name is the runtime it reports: RuntimeDocker, or
// RuntimePodman for Podman's compatible API.
func NewDocker(name, socket string) Runtime {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConns:    2,
		IdleConnTimeout: 30 * time.Second,
	}
	return &dockerAPI{name: name, socket: socket, client: &http.Client{Transport: tr, Timeout: 5 * time.Second}}
}

func (d *dockerAPI) Name() string   { return d.name }
func (d *dockerAPI) Socket() string { return d.socket }

func (d *dockerAPI) Close() error {
	d.client.CloseIdleConnections()
	return nil
}

// Ping implements Runtime (GET /_ping).
func (d *dockerAPI) Ping(ctx context.Context) error {
	resp, err := d.get(ctx, "/_ping")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s API at %s: ping: %s", d.name, d.socket, resp.Status)
	}
	return nil
}

// dockerContainer is the part of GET /containers/{id}/json read here.
type dockerContainer struct {
	Name   string `json:"Name"`
	Config struct {
		Image  string            `json:"Image"`
		Labels map[string]string `json:"Labels"`
	} `json:"Config"`
}

// Container implements Runtime.
func (d *dockerAPI) Container(ctx context.Context, id string) (ContainerInfo, error) {
	resp, err := d.get(ctx, "/containers/"+url.PathEscape(id)+"/json")
	if err != nil {
		return ContainerInfo{}, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return ContainerInfo{}, fmt.Errorf("%s: container %s: %w", d.name, id, ErrNoContainer)
	default:
		return ContainerInfo{}, fmt.Errorf("%s API at %s: inspect container %s: %s", d.name, d.socket, id, resp.Status)
	}
	var c dockerContainer
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&c); err != nil {
		return ContainerInfo{}, fmt.Errorf("%s API at %s: inspect container %s: %w", d.name, d.socket, id, err)
	}
	return ContainerInfo{
		Name:      trimName(c.Name),
		Image:     c.Config.Image,
		Labels:    c.Config.Labels,
		SandboxID: c.Config.Labels["io.kubernetes.sandbox.id"],
	}, nil
}

func (d *dockerAPI) get(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s API at %s: %w", d.name, d.socket, err)
	}
	return resp, nil
}
