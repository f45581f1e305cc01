// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"testing"

	"github.com/flowtap/flowtap/internal/workload"
)

// newTopology creates two network namespaces joined by a veth pair
// (workload.NewTopology), named from prefix and the test process's pid,
// and deletes them when the test ends. Their /29 lies in 10.<second>.0.0/16
// and is picked from the pid as well, so that two test processes do not
// see each other's events; give each test its own second octet. The
// addresses exist only inside the namespaces.
func newTopology(t *testing.T, ctx context.Context, prefix string, second byte) *workload.Topology {
	t.Helper()
	pid := os.Getpid()
	block := pid % 8192
	subnet := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, second, byte(block >> 5), byte(block&31) * 8}), 29)
	topo, err := workload.NewTopology(ctx, prefix, fmt.Sprint(pid%100000), subnet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Errorf("delete namespaces: %v", err)
		}
	})
	return topo
}

// checkOneBeginEndEach checks counts, flow events keyed by key(), against
// conns, each a client and a server address: every connection has exactly
// one begin and one end in each direction (both ends are local), and
// nothing else is counted.
func checkOneBeginEndEach(t *testing.T, counts map[string]int, conns [][2]netip.AddrPort) {
	t.Helper()
	expected := map[string]bool{}
	for _, c := range conns {
		client, server := c[0], c[1]
		for _, ev := range []string{"net_flow_tcp_begin", "net_flow_tcp_end"} {
			for _, dir := range []string{"outgoing", "incoming"} {
				k := key(ev, dir, client.Addr().Unmap().String(), client.Port(), server.Addr().Unmap().String(), server.Port())
				expected[k] = true
				if counts[k] != 1 {
					t.Errorf("%s: seen %d times, want exactly 1", k, counts[k])
				}
			}
		}
	}
	for k, n := range counts {
		if !expected[k] {
			t.Errorf("unexpected flow event for the test's ports: %s (x%d)", k, n)
		}
	}
}
