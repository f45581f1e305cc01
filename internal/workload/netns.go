// SPDX-License-Identifier: Apache-2.0

package workload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// netnsPath turns a namespace name as 'ip netns' knows it into the path of
// its bind mount; a value containing a slash is already a path.
func netnsPath(ns string) string {
	if strings.Contains(ns, "/") {
		return ns
	}
	return "/run/netns/" + ns
}

// InNetns runs fn on a dedicated OS thread that has entered the network
// namespace ns ("" runs fn on the calling goroutine, unchanged). Sockets
// fn creates belong to ns for their whole life, whichever thread later
// uses them.
//
// The thread never leaves the namespace: fn's goroutine stays locked to it
// and returns without unlocking, so the Go runtime ends the thread instead
// of handing a thread in a foreign namespace to other goroutines. (The
// runtime starts new threads from a clean template thread when the
// current one is locked, so none inherits the namespace either.)
func InNetns(ns string, fn func() error) error {
	if ns == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: see above.
		f, err := os.Open(netnsPath(ns))
		if err != nil {
			errc <- fmt.Errorf("network namespace %s: %w", ns, err)
			return
		}
		err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
		f.Close()
		if err != nil {
			errc <- fmt.Errorf("enter network namespace %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Topology is two network namespaces joined by a veth pair, with an address
// in their subnet that nobody owns: SYNs to it leave the client namespace
// and are dropped, silently, in the server namespace. No traffic can leave
// the two namespaces. Create one with NewTopology, delete it with Close.
type Topology struct {
	// ClientNS and ServerNS are the namespace names ('ip netns').
	ClientNS, ServerNS string
	// ClientIf and ServerIf are the veth ends inside them.
	ClientIf, ServerIf string
	// ClientAddr and ServerAddr are the veth ends' addresses.
	ClientAddr, ServerAddr netip.Addr
	// DropAddr belongs to nobody: the client namespace has a permanent
	// neighbour entry sending it to the server namespace's veth, where a
	// blackhole route drops it without an ICMP answer.
	DropAddr netip.Addr
	// Prefix is the subnet of the three addresses.
	Prefix  netip.Prefix
	created []string
}

// NewTopology creates namespaces "<prefix>-a-<suffix>" (client) and
// "<prefix>-b-<suffix>" (server) joined by veth interfaces, and numbers
// them from subnet, a /29 or shorter that exists nowhere else: .1 client,
// .2 server, .3 the dropped address. Interface names are at most 15 bytes,
// so keep prefix and suffix short. On error, whatever was created is
// deleted again.
func NewTopology(ctx context.Context, prefix, suffix string, subnet netip.Prefix) (t *Topology, err error) {
	subnet = subnet.Masked()
	if !subnet.Addr().Is4() || subnet.Bits() > 29 {
		return nil, fmt.Errorf("topology subnet %s: want an IPv4 /29 or shorter", subnet)
	}
	base := subnet.Addr()
	t = &Topology{
		ClientNS:   prefix + "-a-" + suffix,
		ServerNS:   prefix + "-b-" + suffix,
		ClientIf:   prefix + "a" + suffix,
		ServerIf:   prefix + "b" + suffix,
		ClientAddr: base.Next(),
		Prefix:     subnet,
	}
	t.ServerAddr = t.ClientAddr.Next()
	t.DropAddr = t.ServerAddr.Next()
	if len(t.ClientIf) > 15 {
		return nil, fmt.Errorf("interface name %q is longer than 15 bytes: shorten prefix or suffix", t.ClientIf)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, t.Close())
		}
	}()
	bits := fmt.Sprint(subnet.Bits())
	for _, ns := range []string{t.ClientNS, t.ServerNS} {
		if err := ip(ctx, "netns", "add", ns); err != nil {
			return t, err
		}
		t.created = append(t.created, ns)
	}
	steps := [][]string{
		{"link", "add", t.ClientIf, "netns", t.ClientNS, "type", "veth", "peer", "name", t.ServerIf, "netns", t.ServerNS},
		{"-n", t.ClientNS, "link", "set", "lo", "up"},
		{"-n", t.ServerNS, "link", "set", "lo", "up"},
		{"-n", t.ClientNS, "addr", "add", t.ClientAddr.String() + "/" + bits, "dev", t.ClientIf},
		{"-n", t.ServerNS, "addr", "add", t.ServerAddr.String() + "/" + bits, "dev", t.ServerIf},
		{"-n", t.ClientNS, "link", "set", t.ClientIf, "up"},
		{"-n", t.ServerNS, "link", "set", t.ServerIf, "up"},
		// Whatever the inherited forwarding setting, DropAddr dies here.
		{"-n", t.ServerNS, "route", "add", "blackhole", t.DropAddr.String() + "/32"},
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return t, err
		}
	}
	mac, err := linkMAC(ctx, t.ServerNS, t.ServerIf)
	if err != nil {
		return t, err
	}
	if err := ip(ctx, "-n", t.ClientNS, "neigh", "replace", t.DropAddr.String(), "lladdr", mac, "dev", t.ClientIf, "nud", "permanent"); err != nil {
		return t, err
	}
	// A SYN sent before the carrier is up would be dropped and retried a
	// second later, distorting handshake times: wait for it.
	for _, side := range [][2]string{{t.ClientNS, t.ClientIf}, {t.ServerNS, t.ServerIf}} {
		if err := waitLowerUp(ctx, side[0], side[1], 5*time.Second); err != nil {
			return t, err
		}
	}
	return t, nil
}

// Close deletes the namespaces (and with them the veth pair). It may be
// called more than once.
func (t *Topology) Close() error {
	var errs []error
	for _, ns := range t.created {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := ip(ctx, "netns", "delete", ns); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	t.created = nil
	return errors.Join(errs...)
}

// ip runs the ip command from iproute2.
func ip(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

type ipLink struct {
	Address string   `json:"address"`
	Flags   []string `json:"flags"`
}

func showLink(ctx context.Context, ns, dev string) (ipLink, error) {
	out, err := exec.CommandContext(ctx, "ip", "-n", ns, "-j", "link", "show", "dev", dev).Output()
	if err != nil {
		return ipLink{}, fmt.Errorf("ip -n %s link show %s: %w", ns, dev, err)
	}
	var links []ipLink
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		return ipLink{}, fmt.Errorf("ip -n %s -j link show %s: unexpected output %q", ns, dev, out)
	}
	return links[0], nil
}

func linkMAC(ctx context.Context, ns, dev string) (string, error) {
	l, err := showLink(ctx, ns, dev)
	if err != nil {
		return "", err
	}
	if l.Address == "" {
		return "", fmt.Errorf("%s in %s has no link-layer address", dev, ns)
	}
	return l.Address, nil
}

func waitLowerUp(ctx context.Context, ns, dev string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		l, err := showLink(ctx, ns, dev)
		if err != nil {
			return err
		}
		for _, f := range l.Flags {
			if f == "LOWER_UP" {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s in %s: no carrier after %v (flags %v)", dev, ns, limit, l.Flags)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
