// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"context"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/flowtap/flowtap/internal/e2e/harness"
	"github.com/flowtap/flowtap/internal/privtest"
	"github.com/flowtap/flowtap/internal/workload"
)

// TestLostSYNACKOneFlow loses a server's SYN-ACK after it left the server
// (past flowtap's egress hook), so that the client retransmits its SYN a
// second later and the handshake completes on a later try. The
// retransmitted SYN is the same attempt, not a new connection on the
// 4-tuple: each endpoint must begin and end exactly once, and the client's
// handshake time must run from its first SYN.
//
// The loss: the server namespace's neighbour entry for the client points
// to a MAC address nobody has, so the client's veth drops the frames as
// meant for another host, until the test deletes the entry at lossFor.
func TestLostSYNACKOneFlow(t *testing.T) {
	privtest.Require(t)
	bin := harness.Binaries(t)
	const lossFor = 1500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	topo := newTopology(t, ctx, "fts", 214)
	var ln net.Listener
	if err := workload.InNetns(topo.ServerNS, func() (err error) {
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(topo.ServerAddr, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serve(ln)
	server := ln.Addr().(*net.TCPAddr).AddrPort()

	a := harness.Start(t, bin, "--events", "flows", "--output", "json")

	neigh := func(args ...string) {
		t.Helper()
		full := append([]string{"-n", topo.ServerNS, "neigh"}, args...)
		if out, err := exec.CommandContext(ctx, "ip", full...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(full, " "), err, out)
		}
	}
	neigh("replace", topo.ClientAddr.String(), "lladdr", "02:00:00:00:5e:01", "dev", topo.ServerIf, "nud", "permanent")
	restored := make(chan struct{})
	go func() {
		defer close(restored)
		time.Sleep(lossFor)
		// Deleted, the entry is resolved again on the next SYN-ACK.
		exec.CommandContext(ctx, "ip", "-n", topo.ServerNS, "neigh", "del", topo.ClientAddr.String(), "dev", topo.ServerIf).Run()
	}()

	start := time.Now()
	var client netip.AddrPort
	if err := workload.InNetns(topo.ClientNS, func() error {
		c, err := net.DialTimeout("tcp4", server.String(), 15*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		client = c.LocalAddr().(*net.TCPAddr).AddrPort()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return err
		}
		_, err = io.ReadFull(c, make([]byte, 5))
		return err
	}); err != nil {
		t.Fatalf("connect through the lost SYN-ACK: %v", err)
	}
	took := time.Since(start)
	<-restored
	if took < lossFor {
		t.Fatalf("the handshake took %v, less than the %v the SYN-ACKs were lost for: nothing was lost, the test tells nothing", took, lossFor)
	}

	ours := func(ev harness.Event) bool {
		return ev.Fields.DstPort == server.Port() && ev.Fields.Dst == server.Addr().String()
	}
	a.WaitEvents(2, func(ev harness.Event) bool { return ours(ev) && ev.Event == "net_flow_tcp_end" }, 30*time.Second)
	a.Stop(t)

	counts := map[string]int{}
	for _, ev := range a.Events() {
		if !ours(ev) {
			continue
		}
		f := ev.Fields
		k := key(ev.Event, f.ConnDirection, f.Src, f.SrcPort, f.Dst, f.DstPort)
		counts[k]++
		switch {
		case ev.Event == "net_flow_tcp_begin" && f.ConnDirection == "outgoing":
			// The SYN went out at start; the answer that got through came
			// after the loss ended.
			if hs := time.Duration(f.HandshakeNs); hs < lossFor || hs > took {
				t.Errorf("outgoing begin: handshake_ns %v, want from the first SYN: between %v and %v", hs, lossFor, took)
			}
		case ev.Event == "net_flow_tcp_end":
			if f.CloseReason != "fin" || f.BytesSent != 5 || f.BytesReceived != 5 {
				t.Errorf("%s end: close_reason %q, bytes %d sent %d received; want fin, 5 and 5", f.ConnDirection, f.CloseReason, f.BytesSent, f.BytesReceived)
			}
		}
	}
	checkOneBeginEndEach(t, counts, [][2]netip.AddrPort{{client, server}})
	if t.Failed() {
		t.Logf("handshake took %v; flowtap log:\n%s", took, a.Log())
	}
}
