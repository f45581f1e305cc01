// SPDX-License-Identifier: Apache-2.0

package main

import (
	"regexp"
	"strings"
	"testing"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/flowtap/flowtap/internal/perf
cpu: AMD EPYC
BenchmarkLoopbackThroughput-2   	       1	63528134915 ns/op	        0.1000 flowtap-cores	        19.01 Gbit/s-with	        19.50 Gbit/s-without	         0.9749 ratio	         0.3500 spread	   0.0200 bpf-share	  0.9800 est-ratio	   0.0050 user-share
BenchmarkShortConnections-2     	       1	20739491435 ns/op	      0.6000 flowtap-cores	      3466 conns/s-with	      4101 conns/s-without	         0.8452 ratio	         0.1000 spread	        12.50 kernel-us/conn	        20.00 user-us/conn	 0.8000 ratio-dns	 3281 conns/s-dns	 0.7 cores-dns	 0.7000 ratio-packets	 2870 conns/s-packets	 0.9 cores-packets	 0.9960 ratio-peer	 4085 conns/s-peer	 0.05 cores-peer	 5.000 user-us/event	 6.500 user-us/event-first	 0.40 bpf-flowtap_sockops-us/conn	 0.90 bpf-flowtap_connect4-us/conn
BenchmarkLostRecords-2          	       1	17157017247 ns/op	      5868 conns/s	         4.000 events/conn	         0 failed	  0.5 flowtap-cores	         0 lost	         0 lost-events
BenchmarkShortConnectionsHookFloor-2 	       1	30017484718 ns/op	     11619 conns/s-with	     11452 conns/s-without	         1.250 hook-us/conn	         1.015 ratio	         0.2883 spread	       165.0 work-us/conn
BenchmarkIdle-2                 	       1	12500000000 ns/op	         1.500 cpu-ms/s	        62.00 wakeups/s
BenchmarkReplayEndToEnd-2   	       1	3057087999 ns/op	         2.702 flowtap-cpu-s	       112.2 flowtap-max-rss-MiB	    654255 packets/s
--- BENCH: BenchmarkLostRecords-2
    perf_test.go:228: 12 connections failed (first: dial tcp4: i/o timeout)
PASS
ok  	github.com/flowtap/flowtap/internal/perf	103.373s
goos: linux
pkg: github.com/flowtap/flowtap/derive
BenchmarkTrackerLoopback 	 5000000	       250.0 ns/op	   4000000 events/s	         0.5000 allocs/event	      48 B/op	       0 allocs/op
PASS
`

func TestFormat(t *testing.T) {
	var out strings.Builder
	ok, err := format(strings.NewReader(sample), &out)
	if err != nil || !ok {
		t.Fatalf("format = %v, %v\n%s", ok, err, out.String())
	}
	for _, want := range []string{
		"0.980 estimated from CPU time (measured 0.975, within the machine's noise)  (19.0 vs 19.5 Gbit/s; machine's own spread 35%; flowtap 0.10 cores; of the workload's CPU: BPF programs 2.0%, flowtap and sink 0.5%)",
		"0.845  (3466 vs 4101 conn/s",
		"per connection: BPF programs 12.5 µs, flowtap and sink 20.0 µs)",
		"MISSED",
		"0 lost (exit log), 0 (flowtap_records_lost events); achieved 5868 conn/s",
		"met (rate not reached)",
		"4.00 M base events/s, 0.50 allocs/event, 250 ns/event",
		"flowtap and sink: 1.5 ms CPU/s, 62 thread wake-ups/s",
		"1.015  (11619 vs 11452 conn/s; machine's own spread 29%); the hooks cost the workload 1.2 µs/conn of its 165",
		"0.800  (3281 vs 4101 conn/s; flowtap 0.70 cores)",
		"0.996  (4085 vs 4101 conn/s; bpftrace 0.05 cores); flowtap's 0.845 is -0.151 from it",
		"flowtap and sink 5.00 µs/event (warm; 6.50 in the first phase after start); BPF flowtap_connect4 0.90, flowtap_sockops 0.40 µs/conn",
		"0.65 M packets/s (flowtap 2.7 s CPU, 112 MiB peak RSS; Suricata not installed)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	// Each figure's verdict against its target.
	for _, want := range []string{`1\. .*≥ 0\.97\s+met`, `2\. .*≥ 0\.95\s+MISSED`, `3\. .*\s0\s+met \(rate not reached\)`, `4\. .*≥ 2 M/s\s+met`, `2b\. .*none\s+reported`, `5\. .*none\s+reported`} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("table does not match %q:\n%s", want, out.String())
		}
	}
	for _, want := range []string{`2c\. .*≥ 0\.92\s+MISSED`, `2d\. .*peer - 0\.03\s+MISSED`, `2e\. .*≤ 1\.5 µs/event\s+MISSED`, `2f\. .* 0\.700 .*none\s+reported`} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("table does not match %q:\n%s", want, out.String())
		}
	}
	if n := strings.Count(out.String(), "\n"); n != 12 {
		t.Errorf("%d lines, want a header and 11 figures:\n%s", n, out.String())
	}
}

func TestFormatSkipsAndFailures(t *testing.T) {
	in := `--- SKIP: BenchmarkLoopbackThroughput
    perf_test.go:50: skipping privileged test: not root
--- SKIP: BenchmarkShortConnections
    perf_test.go:50: skipping privileged test: not root
--- FAIL: BenchmarkLostRecords
    perf_test.go:99: flowtap exited with exit status 1
FAIL
`
	var out strings.Builder
	ok, err := format(strings.NewReader(in), &out)
	if err != nil || ok {
		t.Fatalf("format = %v, %v, want not ok", ok, err)
	}
	for _, want := range []string{
		"skipped: skipping privileged test: not root",
		"failed: flowtap exited with exit status 1",
		"BenchmarkTrackerLoopback did not run",
		"BenchmarkIdle did not run",
		"BenchmarkShortConnectionsHookFloor did not run",
		"the benchmark run failed:",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

// TestRatioFigure: the CPU-time estimate decides only when the measured
// ratio is within the machine's noise of the target.
func TestRatioFigure(t *testing.T) {
	for _, tc := range []struct {
		m    map[string]float64
		want string
		met  bool
	}{
		{map[string]float64{"ratio": 0.80, "spread": 0.05}, "0.800", false},
		{map[string]float64{"ratio": 0.80, "spread": 0.05, "est-ratio": 0.99}, "0.800 (estimated from CPU time 0.990)", false},
		{map[string]float64{"ratio": 1.20, "spread": 0.60, "est-ratio": 0.93}, "0.930 estimated from CPU time (measured 1.200, within the machine's noise)", false},
		{map[string]float64{"ratio": 0.90, "spread": 0.60, "est-ratio": 0.98}, "0.980 estimated from CPU time (measured 0.900, within the machine's noise)", true},
	} {
		got, met := ratioFigure(tc.m, 0.97)
		if got != tc.want || met != tc.met {
			t.Errorf("ratioFigure(%v) = %q, %v; want %q, %v", tc.m, got, met, tc.want, tc.met)
		}
	}
}
