// SPDX-License-Identifier: Apache-2.0

// Command benchtable turns 'go test -bench' output into the one table
// 'make bench' prints: the figures the performance issues name, each with
// its target and whether this run met it.
//
//	go test -run '^$' -bench . ./internal/perf/ | go run ./internal/perf/benchtable
//
// It exits 1 when a benchmark failed or a figure is missing (a skipped
// benchmark is shown as skipped, with its reason).
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

func main() {
	ok, err := format(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(1)
	}
}

// result is what the output says about one benchmark.
type result struct {
	metrics map[string]float64
	skipped string // the skip reason
	failed  []string
}

var (
	// BenchmarkName-2   1   123 ns/op   0.98 ratio   ...
	benchLine = regexp.MustCompile(`^(Benchmark[^\s-]+)(?:-\d+)?\s+\d+\s+(.*)$`)
	// --- SKIP: BenchmarkName-2 (or FAIL, BENCH)
	statusLine = regexp.MustCompile(`^\s*--- (SKIP|FAIL|BENCH): (Benchmark[^\s-]+)`)
	// perf_test.go:12: message
	logLine = regexp.MustCompile(`^\s+\S+\.go:\d+: (.*)$`)
)

// parse collects the results of every benchmark in the output.
func parse(r io.Reader) (map[string]*result, []string, error) {
	res := map[string]*result{}
	get := func(name string) *result {
		if res[name] == nil {
			res[name] = &result{metrics: map[string]float64{}}
		}
		return res[name]
	}
	var other []string // FAIL lines outside a benchmark (build errors, panics)
	var cur *result
	var curStatus string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := benchLine.FindStringSubmatch(line); m != nil {
			b := get(m[1])
			f := strings.Fields(m[2])
			for i := 0; i+1 < len(f); i += 2 {
				if v, err := strconv.ParseFloat(f[i], 64); err == nil {
					b.metrics[f[i+1]] = v
				}
			}
			cur = nil
			continue
		}
		if m := statusLine.FindStringSubmatch(line); m != nil {
			cur, curStatus = get(m[2]), m[1]
			continue
		}
		if m := logLine.FindStringSubmatch(line); m != nil && cur != nil {
			switch curStatus {
			case "SKIP":
				if cur.skipped == "" {
					cur.skipped = m[1]
				}
			case "FAIL":
				cur.failed = append(cur.failed, m[1])
			}
			continue
		}
		cur = nil
		if strings.HasPrefix(line, "FAIL") || strings.HasPrefix(line, "panic:") || strings.Contains(line, "[build failed]") {
			other = append(other, line)
		}
	}
	return res, other, sc.Err()
}

// ratioFigure is a with/without figure and whether it meets target. A
// measured ratio is only as good as the machine is steady: when the
// samples without flowtap spread wider than the ratio's distance to the
// target, and the benchmark also estimated the ratio from CPU time
// (est-ratio, not blurred by that noise), the estimate decides.
func ratioFigure(m map[string]float64, target float64) (string, bool) {
	r := m["ratio"]
	est, hasEst := m["est-ratio"]
	if !hasEst {
		return fmt.Sprintf("%.3f", r), r >= target
	}
	if m["spread"] > abs(r-target) {
		return fmt.Sprintf("%.3f estimated from CPU time (measured %.3f, within the machine's noise)", est, r), est >= target
	}
	return fmt.Sprintf("%.3f (estimated from CPU time %.3f)", r, est), r >= target
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// shares describes flowtap's share of the workload's CPU, when measured.
func shares(m map[string]float64) string {
	k, hasK := m["bpf-share"]
	u, hasU := m["user-share"]
	if !hasK || !hasU {
		return ""
	}
	return fmt.Sprintf("; of the workload's CPU: BPF programs %.1f%%, flowtap and sink %.1f%%", 100*k, 100*u)
}

// perConn describes where flowtap's cost per connection went, when the
// benchmark measured it: its BPF programs (kernel) and its processes.
func perConn(m map[string]float64) string {
	k, hasK := m["kernel-us/conn"]
	u, hasU := m["user-us/conn"]
	if !hasK || !hasU {
		return ""
	}
	return fmt.Sprintf("; per connection: BPF programs %.1f µs, flowtap and sink %.1f µs", k, u)
}

// programCosts lists the bpf-<program>-us/conn metrics, costliest first.
func programCosts(m map[string]float64) string {
	type prog struct {
		name string
		us   float64
	}
	var ps []prog
	for k, v := range m {
		if name, ok := strings.CutPrefix(k, "bpf-"); ok {
			if name, ok = strings.CutSuffix(name, "-us/conn"); ok {
				ps = append(ps, prog{name, v})
			}
		}
	}
	if len(ps) == 0 {
		return "per program not reported"
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].us > ps[j].us || ps[i].us == ps[j].us && ps[i].name < ps[j].name })
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = fmt.Sprintf("%s %.2f", p.name, p.us)
	}
	return strings.Join(parts, ", ") + " µs/conn"
}

// row is one line of the table.
type row struct {
	figure, result, target, verdict string
}

// format writes the table and reports whether every figure is there.
func format(r io.Reader, w io.Writer) (bool, error) {
	res, other, err := parse(r)
	if err != nil {
		return false, err
	}
	ok := true
	var rows []row
	// status handles a figure whose benchmark did not report: skipped,
	// failed or absent. It returns false when the caller has the metrics.
	status := func(figure, bench, target string, need ...string) (*result, bool) {
		b := res[bench]
		switch {
		case b == nil:
			ok = false
			rows = append(rows, row{figure, bench + " did not run", target, "MISSING"})
		case len(b.failed) > 0:
			ok = false
			rows = append(rows, row{figure, "failed: " + strings.Join(b.failed, "; "), target, "FAILED"})
		case b.skipped != "":
			rows = append(rows, row{figure, "skipped: " + b.skipped, target, "skipped"})
		default:
			for _, m := range need {
				if _, has := b.metrics[m]; !has {
					ok = false
					rows = append(rows, row{figure, fmt.Sprintf("%s reported no %q", bench, m), target, "MISSING"})
					return nil, true
				}
			}
			return b, false
		}
		return nil, true
	}
	verdict := func(met bool) string {
		if met {
			return "met"
		}
		return "MISSED"
	}

	fig := "1. loopback iperf3 throughput, with/without flowtap"
	if b, done := status(fig, "BenchmarkLoopbackThroughput", "≥ 0.97", "ratio"); !done {
		m := b.metrics
		headline, met := ratioFigure(m, 0.97)
		rows = append(rows, row{fig,
			fmt.Sprintf("%s  (%.1f vs %.1f Gbit/s; machine's own spread %.0f%%; flowtap %.2f cores%s)",
				headline, m["Gbit/s-with"], m["Gbit/s-without"], 100*m["spread"], m["flowtap-cores"], shares(m)),
			"≥ 0.97", verdict(met)})
	}
	fig = "2. short connections/s, with/without flowtap"
	if b, done := status(fig, "BenchmarkShortConnections", "≥ 0.95", "ratio"); !done {
		m := b.metrics
		headline, met := ratioFigure(m, 0.95)
		rows = append(rows, row{fig,
			fmt.Sprintf("%s  (%.0f vs %.0f conn/s; machine's own spread %.0f%%; flowtap %.2f cores%s%s)",
				headline, m["conns/s-with"], m["conns/s-without"], 100*m["spread"], m["flowtap-cores"], perConn(m), shares(m)),
			"≥ 0.95", verdict(met)})
	}
	fig = "2c. short connections/s, flowtap's default selection (DNS on)"
	if b, done := status(fig, "BenchmarkShortConnections", "≥ 0.92", "ratio-dns"); !done {
		m := b.metrics
		rows = append(rows, row{fig,
			fmt.Sprintf("%.3f  (%.0f vs %.0f conn/s; flowtap %.2f cores)", m["ratio-dns"], m["conns/s-dns"], m["conns/s-without"], m["cores-dns"]),
			"≥ 0.92", verdict(m["ratio-dns"] >= 0.92)})
	}
	fig = "2d. the peer: bpftrace tcplife on sock:inet_sock_set_state"
	if b, done := status(fig, "BenchmarkShortConnections", "2 ≥ peer - 0.03", "ratio-peer", "ratio"); !done {
		m := b.metrics
		rows = append(rows, row{fig,
			fmt.Sprintf("%.3f  (%.0f vs %.0f conn/s; bpftrace %.2f cores); flowtap's %.3f is %+.3f from it", m["ratio-peer"], m["conns/s-peer"], m["conns/s-without"], m["cores-peer"], m["ratio"], m["ratio"]-m["ratio-peer"]),
			"2 ≥ peer - 0.03", verdict(m["ratio"] >= m["ratio-peer"]-0.03)})
	}
	fig = "2e. where flows cost: user space per flow event, BPF per connection"
	if b, done := status(fig, "BenchmarkShortConnections", "user ≤ 1.5 µs/event", "user-us/event"); !done {
		m := b.metrics
		rows = append(rows, row{fig,
			fmt.Sprintf("flowtap and sink %.2f µs/event%s; BPF %s", m["user-us/event"], firstPhase(m), programCosts(m)),
			"user ≤ 1.5 µs/event", verdict(m["user-us/event"] <= 1.5)})
	}
	fig = "2f. short connections/s, packet events too (net_packet_flow_base)"
	if b, done := status(fig, "BenchmarkShortConnections", "none", "ratio-packets"); !done {
		m := b.metrics
		rows = append(rows, row{fig,
			fmt.Sprintf("%.3f  (%.0f vs %.0f conn/s; flowtap %.2f cores)", m["ratio-packets"], m["conns/s-packets"], m["conns/s-without"], m["cores-packets"]),
			"none", "reported"})
	}
	fig = "2b. floor under 2: no-op programs at flowtap's hooks"
	if b, done := status(fig, "BenchmarkShortConnectionsHookFloor", "none", "ratio", "hook-us/conn"); !done {
		m := b.metrics
		rows = append(rows, row{fig,
			fmt.Sprintf("%.3f  (%.0f vs %.0f conn/s; machine's own spread %.0f%%); the hooks cost the workload %.1f µs/conn of its %.0f",
				m["ratio"], m["conns/s-with"], m["conns/s-without"], 100*m["spread"], m["hook-us/conn"], m["work-us/conn"]),
			"none", "reported"})
	}
	fig = "3. lost records, 20,000 new conn/s for 10 s"
	if b, done := status(fig, "BenchmarkLostRecords", "0", "lost", "conns/s"); !done {
		m := b.metrics
		v := verdict(m["lost"] == 0 && m["lost-events"] == 0)
		if m["conns/s"] < 20000*0.95 {
			v += " (rate not reached)"
		}
		rows = append(rows, row{fig,
			fmt.Sprintf("%.0f lost (exit log), %.0f (flowtap_records_lost events); achieved %.0f conn/s, %.0f failed; %.2f flow events/conn; flowtap %.2f cores",
				m["lost"], m["lost-events"], m["conns/s"], m["failed"], m["events/conn"], m["flowtap-cores"]),
			"0", v})
	}
	fig = "4. user-space derivation, one core"
	if b, done := status(fig, "BenchmarkTrackerLoopback", "≥ 2 M/s", "events/s"); !done {
		m := b.metrics
		allocs, ok := m["allocs/event"]
		if !ok {
			allocs = m["allocs/op"] // one op is one base event
		}
		rows = append(rows, row{fig,
			fmt.Sprintf("%.2f M base events/s, %.2f allocs/event, %.0f ns/event", m["events/s"]/1e6, allocs, m["ns/op"]),
			"≥ 2 M/s", verdict(m["events/s"] >= 2e6)})
	}

	fig = "6. flowtap replay, 200,000 connections (2 M packets), JSON to /dev/null"
	if b, done := status(fig, "BenchmarkReplayEndToEnd", "≥ 2.5 M packets/s", "packets/s"); !done {
		m := b.metrics
		peer := "Suricata not installed"
		if v, ok := m["suricata-packets/s"]; ok {
			peer = fmt.Sprintf("Suricata %.2f M/s on one core", v/1e6)
		}
		rows = append(rows, row{fig,
			fmt.Sprintf("%.2f M packets/s (flowtap %.1f s CPU, %.0f MiB peak RSS; %s)", m["packets/s"]/1e6, m["flowtap-cpu-s"], m["flowtap-max-rss-MiB"], peer),
			"≥ 2.5 M packets/s", verdict(m["packets/s"] >= 2.5e6)})
	}
	fig = "5. idle: no TCP traffic to watch"
	if b, done := status(fig, "BenchmarkIdle", "none", "cpu-ms/s", "wakeups/s"); !done {
		m := b.metrics
		rows = append(rows, row{fig,
			fmt.Sprintf("flowtap and sink: %.1f ms CPU/s, %.0f thread wake-ups/s", m["cpu-ms/s"], m["wakeups/s"]),
			"none", "reported"})
	}

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tresult\ttarget\tverdict")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.figure, r.result, r.target, r.verdict)
	}
	if err := tw.Flush(); err != nil {
		return false, err
	}
	if len(other) > 0 {
		ok = false
		fmt.Fprintln(w, "\nthe benchmark run failed:")
		for _, l := range other {
			fmt.Fprintln(w, "  "+l)
		}
	}
	return ok, nil
}

// firstPhase describes the user-space cost of the warm-up phase before
// the measured one (user-us/event-first), when the run reported it.
func firstPhase(m map[string]float64) string {
	v, ok := m["user-us/event-first"]
	if !ok {
		return ""
	}
	return fmt.Sprintf(" (warm; %.2f in the first phase after start)", v)
}
