// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"net"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/flowtap/flowtap/internal/e2e/harness"
	"github.com/flowtap/flowtap/internal/privtest"
)

// TestRingOverflowInventsNoFailure forces the kernel's ring buffer to
// overflow (one page, --ring-buffer-size 4096) under a burst of loopback
// connections that all succeed, with a SYN timeout of 1 s: records are
// lost (the test checks it), and still no net_flow_tcp_failed is
// reported for any of them (a lost SYN-ACK is not a timeout), and every
// end that says evicted is counted by the tracker's eviction counters.
func TestRingOverflowInventsNoFailure(t *testing.T) {
	privtest.Require(t)
	bin := harness.Binaries(t)
	a := harness.Start(t, bin, "--output", "json", "--events", "flows", "--ring-buffer-size", "4096", "--syn-timeout", "1s")
	ln := loopback(t)
	port := uint16(ln.Addr().(*net.TCPAddr).Port)

	// Bursts of connections from a few goroutines, until records were
	// lost (bounded: 20 bursts of 8 × 100).
	var failedDial int
	for burst := 0; burst < 20 && !a.WaitLog("records lost", 0); burst++ {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for range 8 {
			wg.Go(func() {
				for range 100 {
					c, err := net.Dial("tcp4", ln.Addr().String())
					if err != nil {
						mu.Lock()
						failedDial++
						mu.Unlock()
						continue
					}
					_, _ = c.Write([]byte("x"))
					c.Close()
				}
			})
		}
		wg.Wait()
		time.Sleep(1500 * time.Millisecond) // the lost counter is read about once a second
	}
	if failedDial > 0 {
		t.Fatalf("%d connections failed for real: the workload must only make connections that succeed", failedDial)
	}
	time.Sleep(3 * time.Second) // past the SYN timeout of every attempt
	a.Stop(t)
	stopped := a.Stopped()
	if stopped["lost_records"] == 0 {
		t.Fatalf("no records were lost: the test proves nothing\n%s", a.Log())
	}
	evicted := 0
	for _, ev := range a.Events() {
		f := ev.Fields
		ours := f.DstPort == port || f.SrcPort == port
		if ev.Event == "net_flow_tcp_failed" && ours {
			t.Errorf("a connection that succeeded was reported failed: %+v", ev)
		}
		if ev.Event == "net_flow_tcp_end" && f.CloseReason == "evicted" {
			evicted++
		}
	}
	counters := map[string]int{}
	for _, m := range regexp.MustCompile(`(evicted_\w+|unresolved_attempts|incomplete|loss_markers)=(\d+)`).FindAllStringSubmatch(a.Log(), -1) {
		counters[m[1]], _ = strconv.Atoi(m[2])
	}
	evictions := counters["evicted_idle"] + counters["evicted_full"] + counters["evicted_reused"]
	t.Logf("lost records %d; evicted ends %d; tracker %v", stopped["lost_records"], evicted, counters)
	for _, l := range regexp.MustCompile(`(?m)^.*(records lost).*$`).FindAllString(a.Log(), -1) {
		t.Log(l)
	}
	if evicted > 2*evictions {
		t.Errorf("%d ends say evicted, but the tracker counted %d evictions (at most two ends each)", evicted, evictions)
	}
	if counters["loss_markers"] == 0 {
		t.Errorf("the tracker saw no lost-record marker")
	}
}
