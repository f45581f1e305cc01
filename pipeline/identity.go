// SPDX-License-Identifier: Apache-2.0

package pipeline

import (
	"context"

	"github.com/hashicorp/go-hclog"

	"github.com/flowtap/flowtap/bpf"
	"github.com/flowtap/flowtap/configs"
	"github.com/flowtap/flowtap/identity"
)

// runningIdentity is the workload identity enricher (identity/) and its
// resolver's stop.
type runningIdentity struct {
	*identity.Enricher
	cancel context.CancelFunc
}

// stop stops the resolver and closes the runtimes' connections; nil does
// nothing.
func (ri *runningIdentity) stop() {
	if ri == nil {
		return
	}
	ri.cancel()
	ri.Close()
}

// startIdentity starts workload identity as capture.workload says: nil
// when it is turned off. The cgroup ids the kernel reports are the
// cgroup2 mount's, whichever subtree the capture watches.
func startIdentity(cfg configs.Workload, log hclog.Logger) (*runningIdentity, error) {
	if cfg.Enabled != nil && !*cfg.Enabled {
		return nil, nil
	}
	root, err := bpf.FindCgroup2Mount()
	if err != nil {
		return nil, err
	}
	rts, err := identity.Runtimes(identity.Sockets{Containerd: cfg.ContainerdSocket, Docker: cfg.DockerSocket, Podman: cfg.PodmanSocket})
	if err != nil {
		return nil, err
	}
	e := identity.New(identity.Options{CgroupRoot: root, Runtimes: rts, PodLabels: cfg.PodLabels, CacheSize: cfg.CacheSize, Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	e.Start(ctx)
	return &runningIdentity{Enricher: e, cancel: cancel}, nil
}
