// SPDX-License-Identifier: Apache-2.0

package bpf_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowtap/flowtap/bpf"
)

// testCgroupPath is a cgroup v2 directory of its own that TestMain moved
// this test process into, or "" if it could not (no privileges, no
// cgroup2). Captures scoped to it (scoped()) see only the traffic of this
// process and its helpers, not that of everything else on a busy host.
var testCgroupPath string

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	if os.Getenv(helperEnv) != "" {
		return m.Run()
	}
	restore, err := enterOwnCgroup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bpf tests: running in the current cgroup (%v); captures are host-wide\n", err)
		return m.Run()
	}
	code := m.Run()
	if err := restore(); err != nil {
		fmt.Fprintf(os.Stderr, "bpf tests: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// enterOwnCgroup creates a cgroup under the cgroup2 mount, moves this
// process into it and returns how to move back and remove it.
func enterOwnCgroup() (restore func() error, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("not root")
	}
	mount, err := bpf.FindCgroup2Mount()
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	orig := ""
	for _, line := range strings.Split(string(data), "\n") {
		if rel, ok := strings.CutPrefix(line, "0::"); ok {
			orig = filepath.Join(mount, rel)
		}
	}
	if orig == "" {
		return nil, errors.New("no cgroup v2 entry in /proc/self/cgroup")
	}
	dir := filepath.Join(mount, fmt.Sprintf("flowtap-bpf-test-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	pid := []byte(strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), pid, 0); err != nil {
		os.Remove(dir)
		return nil, fmt.Errorf("move into %s: %w", dir, err)
	}
	testCgroupPath = dir
	return func() error {
		if err := os.WriteFile(filepath.Join(orig, "cgroup.procs"), pid, 0); err != nil {
			return fmt.Errorf("move back to %s: %w", orig, err)
		}
		// Exited helpers may keep the cgroup busy for a moment.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			err := os.Remove(dir)
			if err == nil {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("remove test cgroup %s: %w", dir, err)
			}
		}
	}, nil
}

// scoped returns opts attached to the test process's own cgroup (when
// TestMain made one).
// forModes runs test once for each way the capture gets flows: from the
// sock_ops program's moments (the default), and from the packet programs
// (packet flows). mode scopes the options and sets the way.
func forModes(t *testing.T, test func(t *testing.T, mode func(bpf.Options) bpf.Options)) {
	t.Run("sockets", func(t *testing.T) { test(t, scoped) })
	t.Run("packets", func(t *testing.T) { test(t, packets) })
}

// packets is scoped with the packet programs recording every flow
// packet (net_packet_flow_base selected by name), for the tests of what
// the packets carry.
func packets(opts bpf.Options) bpf.Options {
	opts.PacketFlows = true
	return scoped(opts)
}

func scoped(opts bpf.Options) bpf.Options {
	if opts.CgroupPath == "" {
		opts.CgroupPath = testCgroupPath
	}
	return opts
}
