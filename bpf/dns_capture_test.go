// SPDX-License-Identifier: Apache-2.0

package bpf_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	"github.com/flowtap/flowtap/bpf"
	"github.com/flowtap/flowtap/bpf/limits"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/privtest"
)

// dnsTestAddr is the loopback address the DNS capture tests serve port 53
// on: a 127/8 address nothing else on the host uses.
const dnsTestAddr = "127.53.0.4"

func dnsRecords(evs []events.Event) []*events.PacketDNSBase {
	var out []*events.PacketDNSBase
	for _, ev := range evs {
		if p, ok := ev.Payload.(*events.PacketDNSBase); ok {
			out = append(out, p)
		}
	}
	return out
}

// dnsEndpoint is where a test serves UDP port 53, and a socket option
// setup for both ends (nil: none).
type dnsEndpoint struct {
	network, addr string
	setup         func(fd uintptr) error
}

// dnsV4 is port 53 on dnsTestAddr, plain.
var dnsV4 = dnsEndpoint{network: "udp4", addr: dnsTestAddr}

func (e dnsEndpoint) control(_, _ string, c syscall.RawConn) error {
	if e.setup == nil {
		return nil
	}
	var serr error
	if err := c.Control(func(fd uintptr) { serr = e.setup(fd) }); err != nil {
		return err
	}
	return serr
}

func (e dnsEndpoint) hostPort() string { return net.JoinHostPort(e.addr, "53") }

// udpEcho serves UDP port 53 at e, answering each datagram with itself,
// until the test ends.
func udpEcho(t *testing.T, e dnsEndpoint) net.PacketConn {
	t.Helper()
	lc := net.ListenConfig{Control: e.control}
	srv, err := lc.ListenPacket(context.Background(), e.network, e.hostPort())
	if err != nil {
		t.Fatalf("listen %s %s: %v", e.network, e.hostPort(), err)
	}
	t.Cleanup(func() { srv.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := srv.ReadFrom(buf)
			if err != nil {
				return
			}
			srv.WriteTo(buf[:n], from)
		}
	}()
	return srv
}

// dnsExchange sends payload to the echo server at e and waits for the
// echo.
func dnsExchange(t *testing.T, e dnsEndpoint, payload []byte) {
	t.Helper()
	d := net.Dialer{Control: e.control}
	c, err := d.Dial(e.network, e.hostPort())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitTimeout))
	if _, err := c.Write(payload); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536)
	if n, err := c.Read(buf); err != nil || n != len(payload) {
		t.Fatalf("echo: %d bytes, %v", n, err)
	}
}

// TestDNSCapture: with Options.DNS the cgroup programs report UDP and TCP
// port 53 payloads in both directions, truncate long ones and count them.
func TestDNSCapture(t *testing.T) {
	privtest.Require(t)
	r := startCapture(t, scoped(bpf.Options{DNS: true}))
	udpEcho(t, dnsV4)

	small := bytes.Repeat([]byte{0xab}, 40)
	dnsExchange(t, dnsV4, small)
	// Query: client egress + server ingress; answer: server egress +
	// client ingress.
	evs, ok := r.col.waitFor(waitTimeout, func(evs []events.Event) bool { return len(dnsRecords(evs)) >= 4 })
	if !ok {
		t.Fatalf("want 4 DNS records, got:\n%s", dump(evs))
	}
	dirs := map[events.PacketDirection]int{}
	for _, p := range dnsRecords(evs) {
		if p.Proto != events.DNSOverUDP || !bytes.Equal(p.Payload, small) || p.Truncated || p.Length != 40 {
			t.Errorf("record %+v: want the whole 40-byte UDP payload", p)
		}
		if p.DstPort != 53 && p.SrcPort != 53 {
			t.Errorf("record %+v: not port 53", p)
		}
		if p.NetNSCookie == 0 && features.HaveProgramHelper(ebpf.CGroupSKB, asm.FnGetNetnsCookie) == nil {
			t.Errorf("record %+v: no network namespace cookie", p)
		}
		dirs[p.Direction]++
	}
	if dirs[events.Ingress] != 2 || dirs[events.Egress] != 2 {
		t.Errorf("directions %v, want 2 ingress and 2 egress", dirs)
	}
	for _, ev := range evs {
		if ev.ID == events.IDNetPacketDNSBase && (ev.Context.CgroupID != ownCgroupID(t) || ev.Context.SocketCookie == 0) {
			t.Errorf("DNS record context %+v: want own cgroup %d and a cookie", ev.Context, ownCgroupID(t))
		}
	}

	// Longer than the kernel captures: truncated, counted.
	before := r.c.Stats().DNSTruncated
	big := bytes.Repeat([]byte{0xcd}, 3000)
	dnsExchange(t, dnsV4, big)
	evs, ok = r.col.waitFor(waitTimeout, func(evs []events.Event) bool { return len(dnsRecords(evs)) >= 8 })
	if !ok {
		t.Fatalf("want 4 more DNS records, got:\n%s", dump(evs))
	}
	for _, p := range dnsRecords(evs)[4:] {
		if !p.Truncated || len(p.Payload) != limits.DNSMaxPayload || p.Length != 3000 || !bytes.Equal(p.Payload, big[:limits.DNSMaxPayload]) {
			t.Errorf("long record: truncated=%v len=%d length=%d, want the first %d of 3000 bytes", p.Truncated, len(p.Payload), p.Length, limits.DNSMaxPayload)
		}
	}
	if got := r.c.Stats().DNSTruncated - before; got != 4 {
		t.Errorf("DNSTruncated grew by %d, want 4", got)
	}

	// DNS over TCP: the segments with payload, prefix included.
	ln, err := net.Listen("tcp4", dnsTestAddr+":53")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(waitTimeout))
		buf := make([]byte, 64)
		if n, err := c.Read(buf); err == nil {
			c.Write(buf[:n])
		}
	}()
	msg := binary.BigEndian.AppendUint16(nil, 5)
	msg = append(msg, "hello"...)
	c, err := net.Dial("tcp4", dnsTestAddr+":53")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitTimeout))
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 64)); err != nil {
		t.Fatal(err)
	}
	evs, ok = r.col.waitFor(waitTimeout, func(evs []events.Event) bool {
		n := 0
		for _, p := range dnsRecords(evs) {
			if p.Proto == events.DNSOverTCP && bytes.Equal(p.Payload, msg) {
				n++
			}
		}
		return n == 4
	})
	if !ok {
		t.Fatalf("want 4 TCP DNS records carrying the 7-byte segment, got:\n%s", dump(evs))
	}
}

// TestDNSCaptureIPv6ExtensionHeaders: DNS over IPv6 is captured when the
// datagrams carry extension headers (hop-by-hop and destination options,
// set on both ends): the DNS path walks them as the flow path does.
func TestDNSCaptureIPv6ExtensionHeaders(t *testing.T) {
	privtest.Require(t)
	r := startCapture(t, scoped(bpf.Options{DNS: true}))
	padN := string([]byte{0, 0, 1, 4, 0, 0, 0, 0})
	e := dnsEndpoint{network: "udp6", addr: "::1", setup: func(fd uintptr) error {
		if err := unix.SetsockoptString(int(fd), unix.IPPROTO_IPV6, unix.IPV6_HOPOPTS, padN); err != nil {
			return fmt.Errorf("IPV6_HOPOPTS: %w", err)
		}
		if err := unix.SetsockoptString(int(fd), unix.IPPROTO_IPV6, unix.IPV6_DSTOPTS, padN); err != nil {
			return fmt.Errorf("IPV6_DSTOPTS: %w", err)
		}
		return nil
	}}
	udpEcho(t, e)
	payload := bytes.Repeat([]byte{0x6d}, 40)
	dnsExchange(t, e, payload)
	// Query and answer, each leaving one socket and reaching the other.
	evs, ok := r.col.waitFor(waitTimeout, func(evs []events.Event) bool { return len(dnsRecords(evs)) >= 4 })
	if !ok {
		t.Fatalf("want 4 DNS records over IPv6 with extension headers, got:\n%s", dump(evs))
	}
	for _, p := range dnsRecords(evs) {
		if !p.Src.Is6() || p.Proto != events.DNSOverUDP || !bytes.Equal(p.Payload, payload) || p.Length != 40 {
			t.Errorf("record %+v: want the whole 40-byte UDP payload over IPv6", p)
		}
	}
}

// TestDNSOff: without Options.DNS, port 53 traffic gives no record and the
// packet programs are smaller (the verifier removed the DNS path).
func TestDNSOff(t *testing.T) {
	privtest.Require(t)
	attached := func(opts bpf.Options) (int, *running) {
		r := startCapture(t, scoped(opts))
		ids, err := r.c.IDs()
		if err != nil {
			t.Fatal(err)
		}
		return len(ids.Programs), r
	}
	on, ron := attached(bpf.Options{DNS: true})
	ron.stop(t)
	off, r := attached(bpf.Options{})
	t.Logf("cgroup programs: %d with DNS, %d without", on, off)
	if on != off+2 || r.c.PacketPrograms() != nil {
		t.Errorf("cgroup programs: %d with DNS, %d without, packet programs %v; want the two DNS programs only with DNS, no packet program without", on, off, r.c.PacketPrograms())
	}
	udpEcho(t, dnsV4)
	dnsExchange(t, dnsV4, []byte("no dns here"))
	// The echo's records would come before these: wait for a flow record
	// of a TCP connection made after it.
	loopbackConn(t, "tcp4", "127.0.0.1:0", nil)
	evs, _ := r.col.waitFor(waitTimeout, func(evs []events.Event) bool {
		for _, ev := range evs {
			if ev.ID == events.IDNetPacketFlowBase {
				return true
			}
		}
		return false
	})
	if n := len(dnsRecords(evs)); n != 0 {
		t.Errorf("DNS off: %d DNS records", n)
	}
}
