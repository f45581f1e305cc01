// SPDX-License-Identifier: Apache-2.0

package bpf_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flowtap/flowtap/bpf"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/privtest"
)

// noSocketRecs returns the no-socket records of packets from src to dst.
func noSocketRecs(evs []events.Event, src, dst netip.AddrPort) []*events.PacketFlowBase {
	var out []*events.PacketFlowBase
	for _, ev := range evs {
		p, ok := ev.Payload.(*events.PacketFlowBase)
		if ok && p.NoSocket && p.Src == src.Addr() && p.Dst == dst.Addr() && p.SrcPort == src.Port() && p.DstPort == dst.Port() {
			out = append(out, p)
		}
	}
	return out
}

// closedPort returns a port on addr that nothing listens on.
func closedPort(t *testing.T, network, addr string) uint16 {
	t.Helper()
	ln, err := listenTCP(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	p := netip.MustParseAddrPort(ln.Addr().String()).Port()
	ln.Close()
	return p
}

// dialRefused connects from a socket bound to local (port 0) to dst,
// which must refuse, and returns the client's address.
func dialRefused(t *testing.T, local netip.Addr, dst netip.AddrPort) netip.AddrPort {
	t.Helper()
	var port uint16
	d := net.Dialer{Timeout: waitTimeout, Control: func(_, _ string, rc syscall.RawConn) error {
		var cerr error
		rc.Control(func(fd uintptr) {
			var sa unix.Sockaddr = &unix.SockaddrInet6{Addr: local.As16()}
			if local.Is4() {
				sa = &unix.SockaddrInet4{Addr: local.As4()}
			}
			if cerr = unix.Bind(int(fd), sa); cerr != nil {
				return
			}
			got, err := unix.Getsockname(int(fd))
			if err != nil {
				cerr = err
				return
			}
			switch sa := got.(type) {
			case *unix.SockaddrInet4:
				port = uint16(sa.Port)
			case *unix.SockaddrInet6:
				port = uint16(sa.Port)
			}
		})
		return cerr
	}}
	c, err := d.Dial("tcp", dst.String())
	if err == nil {
		c.Close()
		t.Fatalf("dial %v succeeded, want ECONNREFUSED", dst)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %v: %v, want ECONNREFUSED", dst, err)
	}
	return netip.AddrPortFrom(local, port)
}

// TestNoSocketReset checks the record of a packet no socket took: one per
// SYN to a closed port, IPv4 and IPv6, on loopback and between two network
// namespaces, and for a stray ACK.
func TestNoSocketReset(t *testing.T) {
	privtest.Require(t)
	r := startCapture(t, scoped(bpf.Options{}))
	if !r.c.Has(bpf.FeatureNoSocketResets) {
		for _, f := range r.c.Features() {
			if f.Name == bpf.FeatureNoSocketResets {
				t.Skipf("kernel feature missing: %s", f.Reason)
			}
		}
	}
	check := func(t *testing.T, src, dst netip.AddrPort, flags events.TCPFlags) {
		t.Helper()
		r.col.waitFor(waitTimeout, func(evs []events.Event) bool { return len(noSocketRecs(evs, src, dst)) > 0 })
		// Give a duplicate a bounded chance to show up.
		time.Sleep(200 * time.Millisecond)
		evs := r.col.snapshot()
		recs := noSocketRecs(evs, src, dst)
		if len(recs) != 1 {
			t.Fatalf("%d no-socket records for %v -> %v, want exactly 1:%s", len(recs), src, dst, dump(evs[max(0, len(evs)-20):]))
		}
		p := recs[0]
		if p.Direction != events.Ingress || p.Flags != flags || p.Counters != (events.Counters{}) || p.Length == 0 {
			t.Errorf("no-socket record %+v, want ingress, flags %v, no counters", p, flags)
		}
		for _, ev := range evs {
			if ev.Payload == events.Payload(p) && (ev.ID != events.IDNetPacketFlowBase || ev.Context.SocketCookie != 0 || ev.Context.CgroupID != 0 || ev.Context.PID != 0) {
				t.Errorf("no-socket event id %d context %+v, want IDNetPacketFlowBase and an empty context", ev.ID, ev.Context)
			}
		}
	}
	for _, tc := range []struct{ name, network, addr string }{
		{"loopback ipv4", "tcp4", "127.0.0.1"},
		{"loopback ipv6", "tcp6", "::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := netip.MustParseAddr(tc.addr)
			dst := netip.AddrPortFrom(a, closedPort(t, tc.network, netip.AddrPortFrom(a, 0).String()))
			src := dialRefused(t, a, dst)
			check(t, src, dst, events.FlagSYN)
		})
	}
	t.Run("stray ACK ipv4", func(t *testing.T) {
		lo := netip.MustParseAddr("127.0.0.1")
		dst := netip.AddrPortFrom(lo, closedPort(t, "tcp4", "127.0.0.1:0"))
		src := netip.AddrPortFrom(lo, closedPort(t, "tcp4", "127.0.0.1:0"))
		sendStrayACK(t, src, dst)
		check(t, src, dst, events.FlagACK)
	})
	t.Run("network namespaces", func(t *testing.T) {
		nsA, nsB := vethPair(t)
		for _, fam := range []struct{ name, a, b string }{{"ipv4", "10.213.7.1", "10.213.7.2"}, {"ipv6", "fd00:f10a::1", "fd00:f10a::2"}} {
			t.Run(fam.name, func(t *testing.T) {
				a, b := netip.MustParseAddr(fam.a), netip.MustParseAddr(fam.b)
				dst := netip.AddrPortFrom(b, 9) // nothing listens in the new namespace
				var src netip.AddrPort
				inNetns(t, nsA, func() { src = dialRefused(t, a, dst) })
				check(t, src, dst, events.FlagSYN)
			})
		}
		_ = nsB
	})
	skips, err := r.c.ResetSkips()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("tcp_send_reset program skipped %d times (recursion)", skips)
}

// sendStrayACK sends a bare ACK from src to dst through a raw socket.
func sendStrayACK(t *testing.T, src, dst netip.AddrPort) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_TCP)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h[0:], src.Port())
	binary.BigEndian.PutUint16(h[2:], dst.Port())
	binary.BigEndian.PutUint32(h[4:], 12345)
	binary.BigEndian.PutUint32(h[8:], 67890)
	h[12] = 5 << 4
	h[13] = byte(events.FlagACK)
	binary.BigEndian.PutUint16(h[14:], 65535)
	s, d := src.Addr().As4(), dst.Addr().As4()
	var sum uint32
	for _, b := range [][]byte{s[:], d[:], {0, unix.IPPROTO_TCP, 0, byte(len(h))}, h} {
		for i := 0; i < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(h[16:], ^uint16(sum))
	if err := unix.Sendto(fd, h, 0, &unix.SockaddrInet4{Addr: d}); err != nil {
		t.Fatal(err)
	}
}

// vethPair creates two network namespaces joined by a veth pair
// (10.213.7.1/30 and fd00:f10a::1/64 in the first, .2 and ::2 in the
// second) and deletes them when the test ends.
func vethPair(t *testing.T) (a, b string) {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip (iproute2) not installed")
	}
	a, b = fmt.Sprintf("ftA%d", os.Getpid()), fmt.Sprintf("ftB%d", os.Getpid())
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", a)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", a).Run() })
	run("netns", "add", b)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", b).Run() })
	run("link", "add", "ftva", "netns", a, "type", "veth", "peer", "name", "ftvb", "netns", b)
	for _, x := range []struct{ ns, dev, v4, v6 string }{{a, "ftva", "10.213.7.1/30", "fd00:f10a::1/64"}, {b, "ftvb", "10.213.7.2/30", "fd00:f10a::2/64"}} {
		run("-n", x.ns, "addr", "add", x.v4, "dev", x.dev)
		run("-n", x.ns, "addr", "add", x.v6, "dev", x.dev, "nodad")
		run("-n", x.ns, "link", "set", "lo", "up")
		run("-n", x.ns, "link", "set", x.dev, "up")
	}
	return a, b
}

// inNetns runs fn on a thread moved into network namespace ns (sockets it
// creates belong to ns).
func inNetns(t *testing.T, ns string, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			panic(fmt.Sprintf("return to the original network namespace: %v", err))
		}
	}()
	fn()
}
