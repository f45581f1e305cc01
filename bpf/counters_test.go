// SPDX-License-Identifier: Apache-2.0

package bpf_test

import (
	"errors"
	"io"
	"net/netip"
	"strconv"
	"syscall"
	"testing"

	"github.com/flowtap/flowtap/bpf"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/privtest"
)

// chunks splits n bytes into writes of at most 256 KiB (one large write
// leaves as GSO packets of many segments).
func chunks(n int) []int {
	var out []int
	for n > 0 {
		c := min(n, 256<<10)
		out = append(out, c)
		n -= c
	}
	return out
}

// closePattern ends an established connection.
type closePattern struct {
	name string
	end  func(t *testing.T, p tcpPair)
}

var closePatterns = []closePattern{
	{"client closes first", func(t *testing.T, p tcpPair) { closeOrderly(t, p.client, p.server) }},
	{"server closes first", func(t *testing.T, p tcpPair) { closeOrderly(t, p.server, p.client) }},
	{"half-close then close", func(t *testing.T, p tcpPair) {
		// The client shuts down its sending side; the server reads the
		// EOF, says something more, and closes; the client reads to EOF
		// and closes.
		if err := p.client.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(p.server); err != nil {
			t.Fatalf("server read to EOF: %v", err)
		}
		if _, err := p.server.Write([]byte("bye")); err != nil {
			t.Fatal(err)
		}
		p.server.Close()
		if b, err := io.ReadAll(p.client); err != nil || string(b) != "bye" {
			t.Fatalf("client read %q, %v; want \"bye\"", b, err)
		}
		p.client.Close()
	}},
	{"client resets (SO_LINGER 0)", func(t *testing.T, p tcpPair) {
		if err := p.client.SetLinger(0); err != nil {
			t.Fatal(err)
		}
		p.client.Close()
		if _, err := io.ReadAll(p.server); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("server read after RST: %v, want ECONNRESET", err)
		}
		p.server.Close()
	}},
}

// TestSocketCounters checks that closed records carry exactly the payload
// each way — the kernel's sequence-based counters minus the FINs — for
// several sizes, every close pattern, IPv4 and IPv6; and that the FIN
// packet records and the packet counts agree with TCP_INFO.
func TestSocketCounters(t *testing.T) { forModes(t, socketCounters) }

func socketCounters(t *testing.T, mode func(bpf.Options) bpf.Options) {
	privtest.Require(t)
	r := startCapture(t, mode(bpf.Options{}))
	sizes := [][2]int{{0, 0}, {1, 0}, {0, 1}, {1, 1}, {65537, 1 << 20}, {1 << 20, 65537}, {1 << 20, 1 << 20}}
	for _, network := range []struct{ name, network, addr string }{
		{"ipv4", "tcp4", "127.0.0.1:0"},
		{"ipv6", "tcp6", "[::1]:0"},
	} {
		ln, err := listenTCP(network.network, network.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		for _, pat := range closePatterns {
			for _, sz := range sizes {
				half := pat.name == "half-close then close"
				t.Run(network.name+"/"+pat.name+"/"+itoa(sz[0])+"-"+itoa(sz[1]), func(t *testing.T) {
					p := dialPair(t, ln)
					a, b := exchange(t, p, chunks(sz[0]), chunks(sz[1]))
					ci, si := settle(t, p)
					// What the kernel's counters hold before the close
					// (no FIN yet): the connecting side's bytes_acked has
					// its SYN, nothing else has a SYN.
					if ci.Bytes_acked != uint64(a)+1 || ci.Bytes_received != uint64(b) || si.Bytes_acked != uint64(b) || si.Bytes_received != uint64(a) {
						t.Errorf("TCP_INFO before close: client acked/received %d/%d, server %d/%d; payload %d/%d",
							ci.Bytes_acked, ci.Bytes_received, si.Bytes_acked, si.Bytes_received, a, b)
					}
					pat.end(t, p)
					wantA, wantB := uint64(a), uint64(b)
					if half {
						wantB += 3 // "bye"
					}
					evs := waitSockets(t, r.col, events.SocketClosed, [2]uint16{p.clientPort, p.serverPort}, [2]uint16{p.serverPort, p.clientPort})
					cl := socketRecs(evs, events.SocketClosed, p.clientPort, p.serverPort)[0]
					sv := socketRecs(evs, events.SocketClosed, p.serverPort, p.clientPort)[0]
					for _, x := range []struct {
						who        string
						ev         events.Event
						sent, recv uint64
						cookie     uint64
					}{
						{"client", cl, wantA, wantB, p.clientCookie},
						{"server", sv, wantB, wantA, p.serverCookie},
					} {
						s := x.ev.Payload.(*events.TCPSocketBase)
						c := s.Counters
						if c.BytesSent != x.sent || c.BytesReceived != x.recv {
							t.Errorf("%s closed record (left %s): bytes sent/received %d/%d, want %d/%d", x.who, tcpStateName(s.State), c.BytesSent, c.BytesReceived, x.sent, x.recv)
						}
						// The client sent its SYN, the accepted socket's
						// segs_in has the SYN and the handshake's ACK.
						if (x.who == "client" && c.PacketsSent == 0) || c.PacketsReceived == 0 {
							t.Errorf("%s closed record: packets sent/received %d/%d, want > 0", x.who, c.PacketsSent, c.PacketsReceived)
						}
						if x.ev.Context.SocketCookie != x.cookie {
							t.Errorf("%s closed record: cookie %d, want SO_COOKIE %d", x.who, x.ev.Context.SocketCookie, x.cookie)
						}
						if x.ev.Context.CgroupID != ownCgroupID(t) {
							t.Errorf("%s closed record: cgroup %d, want %d", x.who, x.ev.Context.CgroupID, ownCgroupID(t))
						}
					}
					// Packets are the kernel's segments: at least those
					// counted before the close.
					if c := cl.Payload.(*events.TCPSocketBase).Counters; c.PacketsSent < uint64(ci.Segs_out) || c.PacketsReceived < uint64(ci.Segs_in) {
						t.Errorf("client packets %d/%d, TCP_INFO before close %d/%d", c.PacketsSent, c.PacketsReceived, ci.Segs_out, ci.Segs_in)
					}
					if t.Failed() {
						t.Logf("records:%s", dump(portEvents(evs, [2]uint16{p.clientPort, p.serverPort})))
					}
					if pat.name != "client closes first" {
						return
					}
					// sock_ops follows the client: its FIN makes no
					// record, the closed record above has the counters.
					if fin, ok := find(forConn(evs, conn{client: netip.AddrPortFrom(netip.Addr{}, p.clientPort), server: netip.AddrPortFrom(netip.Addr{}, p.serverPort)}),
						pkt{events.Egress, p.clientPort, p.serverPort, events.FlagFIN | events.FlagACK}); ok {
						t.Errorf("FIN record from a client sock_ops follows: %v", fin.Payload)
					}
				})
			}
		}
	}
}

func itoa(n int) string {
	if n == 1<<20 {
		return "1MiB"
	}
	return strconv.Itoa(n)
}
