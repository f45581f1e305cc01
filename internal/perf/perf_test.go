// SPDX-License-Identifier: Apache-2.0

// Package perf holds the benchmarks that measure what flowtap costs the
// machine it watches: each runs a workload with and without a real
// 'flowtap run' and reports the ratio, so the figure compares like with
// like inside one run. 'make bench' runs them and prints one table
// (see README.md and ./benchtable).
//
// They load real BPF programs, so they need root; without it they skip
// with the reason (in CI, where CI=true, they fail instead). They assert
// nothing about timings: they report.
package perf

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/flowtap/flowtap/bpf"
	"github.com/flowtap/flowtap/internal/bpftest"
	"github.com/flowtap/flowtap/internal/e2e/harness"
	"github.com/flowtap/flowtap/internal/privtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	harness.RemoveBinaries()
	os.Exit(code)
}

// flowtapArgs is the agent under test: the flows set, as JSON, to the
// stdout sink, with DNS capture (the default).
var flowtapArgs = []string{"--events", "flows", "--output", "json"}

// flowsOnlyArgs is flowtapArgs without DNS capture: flow events alone,
// which load no per-packet program.
var flowsOnlyArgs = append(slices.Clone(flowtapArgs), "--dns=false")

// packetArgs adds packet events to flowtapArgs: net_packet_flow_base by
// name, which attaches the per-packet programs for every flow packet and
// delivers each SYN, FIN and RST packet as an event of its own.
var packetArgs = []string{"--events", "flows,net_packet_flow_base", "--output", "json"}

// startFlowtap starts flowtap with flowtapArgs and its output to /dev/null.
func startFlowtap(b *testing.B, bin string) *harness.Agent {
	b.Helper()
	return startFlowtapWith(b, bin, flowtapArgs)
}

// startFlowtapWith starts flowtap with args and its output to /dev/null.
func startFlowtapWith(b *testing.B, bin string, args []string) *harness.Agent {
	b.Helper()
	return harness.StartWith(b, bin, harness.Options{Args: args, DiscardStdout: true})
}

// flowtapSide is flowtap with args as a side of interleaveSides.
func flowtapSide(b *testing.B, name, bin string, args []string) side {
	return side{name, func() sideRunner {
		a := startFlowtapWith(b, bin, args)
		return sideRunner{func() time.Duration { return treeCPU(a.PID()) }, func() { a.Stop(b) }}
	}}
}

// requireTool skips (fails in CI) when a program the benchmark drives is
// not installed.
func requireTool(b *testing.B, name string) string {
	b.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		b.Fatalf("%s is not installed (make deps installs it): %v", name, err)
	}
	b.Skipf("skipping: %s is not installed (make deps installs it)", name)
	return ""
}

// median returns the median of xs (which it sorts).
func median(xs []float64) float64 {
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// interleave takes samples without flowtap and with it in rounds: each
// round is k samples without and k with (one flowtap session), the order
// alternating from round to round (without-with, with-without, ...), so
// that a drift of the machine (neighbours, TIME_WAIT build-up) weighs on
// both sides alike. It returns the samples of each side, and the CPU
// flowtap and its sink plugin used while sampled, in cores.
func interleave(b *testing.B, bin string, rounds, k int, sample func() float64) (with, without []float64, cores float64) {
	b.Helper()
	return interleaveWith(b, rounds, k, sample, func() (func() time.Duration, func()) {
		a := startFlowtap(b, bin)
		return func() time.Duration { return treeCPU(a.PID()) }, func() { a.Stop(b) }
	})
}

// interleaveWith is interleave with something else than flowtap on the
// "with" side: start starts it and returns a reading of the CPU it has
// used so far and a function that stops it.
func interleaveWith(b *testing.B, rounds, k int, sample func() float64, start func() (cpu func() time.Duration, stop func())) (with, without []float64, cores float64) {
	b.Helper()
	var used time.Duration
	var wall time.Duration
	for r := range rounds {
		withBlock := func() {
			cpu, stop := start()
			cpu0, t0 := cpu(), time.Now()
			for range k {
				with = append(with, sample())
			}
			used += cpu() - cpu0
			wall += time.Since(t0)
			stop()
		}
		if r%2 == 1 {
			withBlock()
		}
		for range k {
			without = append(without, sample())
		}
		if r%2 == 0 {
			withBlock()
		}
	}
	b.Logf("samples without, in order: %.4g", without)
	b.Logf("samples with, in order:    %.4g", with)
	return with, without, used.Seconds() / wall.Seconds()
}

// report reports the ratio of the two sides' typical values, the
// typical values, the spread of the samples without flowtap (how far
// apart the machine's own runs are: a ratio closer to 1 than that is
// noise) and flowtap's CPU use.
func report(b *testing.B, with, without []float64, cores float64, typical func([]float64) float64, unit string, scale float64) {
	w, wo := typical(with), typical(without)
	b.ReportMetric(w/wo, "ratio")
	b.ReportMetric(w/scale, unit+"-with")
	b.ReportMetric(wo/scale, unit+"-without")
	b.ReportMetric((slices.Max(without)-slices.Min(without))/wo, "spread")
	b.ReportMetric(cores, "flowtap-cores")
}

// treeCPU returns the CPU time (user + system) that process pid and its
// children have used so far: flowtap and its sink plugins.
func treeCPU(pid int) time.Duration { return treeSum(pid, procCPU) }

// treeSum adds up of(p) over process pid and its children.
func treeSum[T time.Duration | uint64](pid int, of func(int) T) T {
	total := of(pid)
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		child, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if ppid, _ := procStat(child); ppid == pid {
			total += of(child)
		}
	}
	return total
}

// procCPU returns utime + stime of pid.
func procCPU(pid int) time.Duration {
	_, ticks := procStat(pid)
	return time.Duration(ticks) * time.Second / 100 // USER_HZ is 100 on Linux
}

// procStat returns the parent pid and utime+stime (clock ticks) from
// /proc/<pid>/stat.
func procStat(pid int) (ppid int, ticks uint64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	// Fields after the parenthesised comm, which may contain spaces.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, 0
	}
	ppid, _ = strconv.Atoi(f[1])
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return ppid, ut + st
}

// BenchmarkLoopbackThroughput measures iperf3 over loopback with flowtap
// running and without (see interleave). Loopback throughput on a small
// virtual machine varies by a factor of two from one run to the next, so
// it takes many short runs and reports the ratio of the medians (target
// ≥ 0.97) and the medians themselves.
func BenchmarkLoopbackThroughput(b *testing.B) {
	privtest.Require(b)
	iperf := requireTool(b, "iperf3")
	bin := harness.Binaries(b)
	const (
		rounds  = 4
		k       = 2 // runs per side and round
		seconds = 2 // per iperf3 run, after a 1 s warm-up it omits
	)
	port := fmt.Sprint(freePort(b))
	srv := exec.Command(iperf, "-s", "-B", "127.0.0.1", "-p", port)
	srv.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := srv.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		b.Fatalf("iperf3 -s: %v", err)
	}
	b.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	go io.Copy(io.Discard, out)
	waitListening(b, "127.0.0.1:"+port, 10*time.Second)

	// iperf3 -s reopens its listening socket after each test: a client
	// that comes too soon is reset. Wait for the listener, and retry.
	var clientCPU time.Duration // of the last iperf3 client
	once := func() (float64, error) {
		waitListening(b, "127.0.0.1:"+port, 10*time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), (seconds+20)*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, iperf, "-c", "127.0.0.1", "-p", port,
			"-t", fmt.Sprint(seconds), "-O", "1", "-J")
		out, err := cmd.Output()
		if cmd.ProcessState != nil {
			clientCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		}
		var res struct {
			End struct {
				SumReceived struct {
					BitsPerSecond float64 `json:"bits_per_second"`
				} `json:"sum_received"`
			} `json:"end"`
			Error string `json:"error"`
		}
		if jerr := json.Unmarshal(out, &res); jerr != nil || res.Error != "" || res.End.SumReceived.BitsPerSecond == 0 {
			return 0, fmt.Errorf("iperf3 -c: %v, %v, %q", err, jerr, res.Error)
		}
		return res.End.SumReceived.BitsPerSecond, nil
	}
	run := func() float64 {
		b.Helper()
		var err error
		for range 3 {
			var bps float64
			if bps, err = once(); err == nil {
				return bps
			}
			time.Sleep(500 * time.Millisecond)
		}
		b.Fatalf("three iperf3 runs failed, the last: %v", err)
		return 0
	}
	with, without, cores := interleave(b, bin, rounds, k, run)
	report(b, with, without, cores, median, "Gbit/s", 1e9)

	// The same cost measured directly, which the machine's noise does not
	// blur: flowtap's BPF programs run inside iperf3's CPU time, flowtap
	// and its sink beside it. With iperf3 CPU-bound, throughput goes as
	// 1 / CPU per byte: the estimate is the CPU iperf3 would use without
	// flowtap over what it and flowtap use with it.
	var iperfCPU time.Duration
	cost := measureCost(b, bin, flowtapArgs, nil, func() {
		s0 := procCPU(srv.Process.Pid)
		run()
		iperfCPU = clientCPU + procCPU(srv.Process.Pid) - s0
	})
	cost.reportShares(b, iperfCPU)
}

// BenchmarkShortConnections measures short connections per second over
// loopback (connect, send one byte, close) without any agent and with each
// of three beside the workload, interleaved (interleaveSides), each sample
// shortConnsPerPhase connections as fast as they go:
//
//   - flows: flowtap with flow events alone (--dns=false), which loads no
//     per-packet program; its ratio is figure 2 (target ≥ 0.95);
//   - dns: flowtap's default selection, DNS capture on (target ≥ 0.92);
//   - packets: flowtap with packet events too (packetArgs), the cost of
//     the per-packet hook, reported;
//   - peer: a bpftrace tcplife-style script on sock:inet_sock_set_state
//     (startPeer); flowtap's ratio must be at least the peer's minus 0.03.
//
// It reports each side's ratio of mean rates (ratio, ratio-dns,
// ratio-packets, ratio-peer), the rates, and the CPU each used. Then, in
// more phases with a fresh flowtap (flows) and the kernel's BPF run-time
// statistics on, where flowtap's cost goes in the last costPhases: its
// BPF programs per connection (in all and each program) and its processes
// (flowtap and sink) per connection and per flow event (a loopback
// connection makes four: a begin and an end for each end); the first
// phase warms flowtap up, and its processes' cost per event is reported
// as user-us/event-first.
func BenchmarkShortConnections(b *testing.B) {
	privtest.Require(b)
	bin := harness.Binaries(b)
	phase := shortConnPhase(b, newShortConns(b))
	phase() // warm-up: listener, source addresses, TIME_WAIT build-up
	without, with := interleaveSides(b, 8, phase, []side{
		flowtapSide(b, "flows", bin, flowsOnlyArgs),
		flowtapSide(b, "dns", bin, flowtapArgs),
		flowtapSide(b, "packets", bin, packetArgs),
		peerSide(b),
	})
	wo := mean(without)
	b.ReportMetric(wo, "conns/s-without")
	b.ReportMetric((slices.Max(without)-slices.Min(without))/wo, "spread")
	for name, w := range with {
		suffix := "-" + name
		if name == "flows" {
			suffix = "" // figure 2: the plain names
			b.ReportMetric(mean(w.samples), "conns/s-with")
			b.ReportMetric(w.cores, "flowtap-cores")
		} else {
			b.ReportMetric(mean(w.samples), "conns/s"+suffix)
			b.ReportMetric(w.cores, "cores"+suffix)
		}
		b.ReportMetric(mean(w.samples)/wo, "ratio"+suffix)
	}
	// Where flowtap's share goes, per connection: more phases with a
	// fresh flowtap, apart. The first warms it up (its cost is reported as
	// user-us/event-first); the next costPhases are measured together, so
	// that the clock ticks CPU time is counted in (10 ms) and the
	// machine's bursts weigh less. Both ends of the connections are this
	// process.
	var work time.Duration
	cost := measureCost(b, bin, flowsOnlyArgs, func() { phase() }, func() {
		c0 := procCPU(os.Getpid())
		for range costPhases {
			phase()
		}
		work = procCPU(os.Getpid()) - c0
	})
	conns := costPhases * shortConnsPerPhase
	cost.reportPerUnit(b, conns, "conn")
	cost.reportPrograms(b, conns, "conn")
	perEvent := func(d time.Duration, conns int) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(4*conns) }
	b.ReportMetric(perEvent(cost.user, conns), "user-us/event")
	b.ReportMetric(perEvent(cost.warmUser, shortConnsPerPhase), "user-us/event-first")
	cost.reportShares(b, work)
}

// shortConnPhase returns a phase of shortConnsPerPhase short connections
// as fast as they go, which returns their rate per second.
func shortConnPhase(b *testing.B, s *shortConns) func() float64 {
	return func() float64 {
		n, errs, d := s.run(shortConnsPerPhase, 0, 30*time.Second)
		if errs > 0 || n < shortConnsPerPhase {
			b.Fatalf("%d of %d short connections in %v, %d failed (first: %v)", n, shortConnsPerPhase, d, errs, s.firstErr())
		}
		return float64(n) / d.Seconds()
	}
}

// BenchmarkShortConnectionsHookFloor measures what the kernel's hooks
// cost before any flowtap code runs: the floor under figure 2. It makes
// short connections as BenchmarkShortConnections does, with, on the "with"
// side, programs that do nothing attached where flowtap attaches its own
// (bpftest.AttachNoOps: cgroup_skb ingress and egress, sock_ops and
// connect4/6 on flowtap's default cgroup, the tracepoints host-wide)
// instead of flowtap.
//
// The effect is a few per cent, and the machine drifts by more than that
// from one 20,000-connection phase to the next, so this benchmark takes
// many short phases instead (floorRounds rounds of floorConnsPerPhase
// connections a side, attaching and detaching the programs between them,
// the order alternating) and compares the two phases of each round, which
// ran back to back. It reports hook-us/conn, the median over rounds of how
// much more CPU per connection the workload (this process, both ends of
// every connection; getrusage, which sums the scheduler's exact run time)
// used with the programs attached; work-us/conn, the median without; and
// ratio, the median of the rounds' rate ratios.
//
// FLOWTAP_FLOOR_HOOKS (a comma-separated list of section name prefixes,
// e.g. "cgroup_skb" or "sockops,tp_btf") narrows the programs to those
// hooks, to tell each hook's share.
func BenchmarkShortConnectionsHookFloor(b *testing.B) {
	privtest.Require(b)
	cgroup, err := bpf.FindCgroup2Mount()
	if err != nil {
		b.Fatal(err)
	}
	// The object the agent embeds, as built in this tree.
	spec, err := ebpf.LoadCollectionSpec("../../bpf/flowtap_bpfel.o")
	if err != nil {
		b.Fatal(err)
	}
	var hooks []string
	if v := os.Getenv("FLOWTAP_FLOOR_HOOKS"); v != "" {
		hooks = strings.Split(v, ",")
		b.Logf("no-op programs only at the hooks starting with %q", hooks)
	}
	s := newShortConns(b)
	shortConnPhase(b, s)() // warm-up
	var attached bool
	var cpuWith, cpuWithout []float64
	sample := func() float64 {
		c0 := selfCPU(b)
		n, errs, d := s.run(floorConnsPerPhase, 0, 10*time.Second)
		if errs > 0 || n < floorConnsPerPhase {
			b.Fatalf("%d of %d short connections in %v, %d failed (first: %v)", n, floorConnsPerPhase, d, errs, s.firstErr())
		}
		perConn := float64((selfCPU(b) - c0).Nanoseconds()) / 1e3 / floorConnsPerPhase
		if attached {
			cpuWith = append(cpuWith, perConn)
		} else {
			cpuWithout = append(cpuWithout, perConn)
		}
		return float64(n) / d.Seconds()
	}
	with, without, _ := interleaveWith(b, floorRounds, 1, sample, func() (func() time.Duration, func()) {
		n, err := bpftest.AttachNoOps(spec, cgroup, hooks...)
		if err != nil {
			b.Fatal(err)
		}
		attached = true
		return func() time.Duration { return 0 }, func() {
			attached = false
			if err := n.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
	// One sample a side per round: index i of each slice is round i.
	ratios := make([]float64, len(with))
	extra := make([]float64, len(with))
	for i := range with {
		ratios[i] = with[i] / without[i]
		extra[i] = cpuWith[i] - cpuWithout[i]
	}
	wo := mean(without)
	b.Logf("extra CPU per connection with the programs, µs, by round: %.3g", extra)
	b.ReportMetric(median(ratios), "ratio")
	b.ReportMetric(mean(with), "conns/s-with")
	b.ReportMetric(wo, "conns/s-without")
	b.ReportMetric((slices.Max(without)-slices.Min(without))/wo, "spread")
	b.ReportMetric(median(extra), "hook-us/conn")
	b.ReportMetric(median(cpuWithout), "work-us/conn")
}

// floorRounds and floorConnsPerPhase shape BenchmarkShortConnectionsHookFloor:
// many short phases, so that the machine's drift falls between rounds.
const (
	floorRounds        = 60
	floorConnsPerPhase = 2000
)

// selfCPU is the CPU time this process used so far, user and system, from
// getrusage: the scheduler's exact run time, not clock ticks.
func selfCPU(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkLostRecords opens lostRate new connections per second for
// lostSeconds with flowtap running on its default ring buffer, and reports
// the records flowtap lost (target 0) as its exit log line counts them
// ("lost"), as flowtap_records_lost events reaching the sink say
// ("lost-events"), the connection rate achieved, the connections that
// failed, the flow events delivered per connection and flowtap's CPU use.
func BenchmarkLostRecords(b *testing.B) {
	privtest.Require(b)
	bin := harness.Binaries(b)
	const (
		lostRate    = 20000
		lostSeconds = 10
	)
	s := newShortConns(b)
	var lostEvents, flowEvents atomic.Uint64
	a := harness.StartWith(b, bin, harness.Options{Args: flowtapArgs, Stdout: func(line []byte) {
		var ev struct {
			Event  string `json:"event"`
			Fields struct {
				Lost uint64 `json:"lost"`
			} `json:"fields"`
		}
		// Most lines are flow events: look closer only at the marker.
		if !containsRecordsLost(line) {
			flowEvents.Add(1)
			return
		}
		if json.Unmarshal(line, &ev) == nil && ev.Event == "flowtap_records_lost" {
			lostEvents.Add(ev.Fields.Lost)
		}
	}})
	cpu0, t0 := treeCPU(a.PID()), time.Now()
	n, errs, d := s.run(lostRate*lostSeconds, lostRate, lostSeconds*time.Second)
	cores := (treeCPU(a.PID()) - cpu0).Seconds() / time.Since(t0).Seconds()
	// Let flowtap drain what the kernel queued before asking it to stop.
	time.Sleep(2 * time.Second)
	if err := a.Interrupt(2 * time.Minute); err != nil {
		b.Fatalf("%v\n%s", err, a.Log())
	}
	st := a.Stopped()
	if st == nil {
		b.Fatalf("flowtap logged no 'stopped' line:\n%s", a.Log())
	}
	if errs > 0 {
		b.Logf("%d connections failed (first: %v)", errs, s.firstErr())
	}
	b.ReportMetric(float64(errs), "failed")
	b.ReportMetric(cores, "flowtap-cores")
	b.ReportMetric(float64(st["lost_records"]), "lost")
	b.ReportMetric(float64(lostEvents.Load()), "lost-events")
	b.ReportMetric(float64(n)/d.Seconds(), "conns/s")
	b.ReportMetric(float64(flowEvents.Load())/float64(max(n, 1)), "events/conn")
}

// BenchmarkIdle measures what flowtap costs a machine with no TCP traffic
// to watch: the CPU flowtap and its sink use, in milliseconds per second,
// and how often their threads are switched in (voluntary and involuntary
// context switches per second, from /proc/<pid>/task/*/status), over
// idleSeconds after a warm-up. Timers that poll (the ring reader, the
// tracker's tick, the sinks' flush) show up here. There is no target.
func BenchmarkIdle(b *testing.B) {
	privtest.Require(b)
	bin := harness.Binaries(b)
	const idleSeconds = 10
	a := startFlowtap(b, bin)
	defer a.Stop(b)
	time.Sleep(2 * time.Second) // start-up: program loads, plugin handshake
	cpu0, sw0, t0 := treeCPU(a.PID()), treeSwitches(a.PID()), time.Now()
	time.Sleep(idleSeconds * time.Second)
	cpu1, sw1, d := treeCPU(a.PID()), treeSwitches(a.PID()), time.Since(t0)
	b.ReportMetric(float64((cpu1-cpu0).Milliseconds())/d.Seconds(), "cpu-ms/s")
	b.ReportMetric(float64(sw1-sw0)/d.Seconds(), "wakeups/s")
}

// treeSwitches returns the context switches (voluntary and involuntary)
// of every thread of process pid and of its children so far.
func treeSwitches(pid int) uint64 { return treeSum(pid, procSwitches) }

// procSwitches sums the context switches of every thread of pid.
func procSwitches(pid int) uint64 {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var total uint64
	for _, t := range tasks {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			name, v, ok := strings.Cut(line, ":")
			if ok && (name == "voluntary_ctxt_switches" || name == "nonvoluntary_ctxt_switches") {
				n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				total += n
			}
		}
	}
	return total
}

func containsRecordsLost(line []byte) bool {
	return bytes.Contains(line, []byte(`"flowtap_records_lost"`))
}

// shortConnsPerPhase is the connections of one short-connection phase.
const shortConnsPerPhase = 20000

// costPhases is how many phases of shortConnsPerPhase connections
// BenchmarkShortConnections measures where flowtap's cost goes in (after
// one that warms flowtap up).
const costPhases = 3

// sourceAddrs is how many loopback source addresses the short connections
// spread over. Every connection leaves its client port in TIME_WAIT for a
// minute; 28,000 ephemeral ports per source address would run out within
// the benchmarks, so they use 127.1.0.1 … 127.1.0.<sourceAddrs> (all of
// 127.0.0.0/8 is local), with IP_BIND_ADDRESS_NO_PORT so that the port is
// picked at connect time. The connections still close with FIN, as real
// ones do (SO_LINGER 0 would make them end with RST).
const sourceAddrs = 32

// shortConns is a loopback listener that reads one byte and the client's
// FIN, then closes, and a client side that makes such connections.
type shortConns struct {
	ln    net.Listener
	addr  netip.AddrPort
	srcs  []netip.Addr
	mu    sync.Mutex
	first error
}

func newShortConns(b *testing.B) *shortConns {
	b.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	s := &shortConns{ln: ln, addr: ln.Addr().(*net.TCPAddr).AddrPort()}
	for i := 1; i <= sourceAddrs; i++ {
		s.srcs = append(s.srcs, netip.AddrFrom4([4]byte{127, 1, 0, byte(i)}))
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				io.Copy(io.Discard, c)
			}()
		}
	}()
	return s
}

func (s *shortConns) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.first == nil {
		s.first = err
	}
}

func (s *shortConns) firstErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.first
}

// run makes n connections, as fast as it can (rate 0) or paced at rate
// per second, and stops at limit in any case (connections in flight then
// are neither done nor failed). It returns the connections completed,
// those that failed, and the time they took.
func (s *shortConns) run(n, rate int, limit time.Duration) (done, failed int, took time.Duration) {
	const workers = 8
	start := time.Now()
	deadline := start.Add(limit)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	tokens := make(chan struct{}, 1024)
	var ok, bad atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			d := net.Dialer{Timeout: 5 * time.Second, Control: bindNoPort}
			buf := []byte{1}
			for i := w; ; i += workers {
				select {
				case _, more := <-tokens:
					if !more {
						return
					}
				case <-ctx.Done():
					return
				}
				if !time.Now().Before(deadline) {
					return
				}
				d.LocalAddr = &net.TCPAddr{IP: s.srcs[i%len(s.srcs)].AsSlice()}
				c, err := d.DialContext(ctx, "tcp4", s.addr.String())
				if err == nil {
					_, err = c.Write(buf)
					c.Close()
				}
				if err != nil {
					// A dial cut short by the deadline is not a failure (the
					// context may not say so yet: its timer runs apart).
					if time.Now().Before(deadline) {
						bad.Add(1)
						s.fail(err)
					}
					continue
				}
				ok.Add(1)
			}
		})
	}
	// The generator: n tokens, at once or in 1 ms slices of the rate.
	go func() {
		defer close(tokens)
		if rate <= 0 {
			for i := 0; i < n; i++ {
				select {
				case tokens <- struct{}{}:
				case <-ctx.Done():
					return
				}
			}
			return
		}
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		issued := 0
		for issued < n {
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
			due := min(n, int(time.Since(start).Seconds()*float64(rate)))
			for ; issued < due; issued++ {
				select {
				case tokens <- struct{}{}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	wg.Wait()
	return int(ok.Load()), int(bad.Load()), time.Since(start)
}

// bindNoPort sets IP_BIND_ADDRESS_NO_PORT: the bind to the source address
// leaves the port to connect, which can then share ports across
// destinations.
func bindNoPort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	})
	return errors.Join(err, serr)
}

// freePort returns a loopback TCP port nobody listens on right now.
func freePort(b *testing.B) int {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitListening waits until something listens at addr, by looking at
// /proc/net/tcp (a probing connect would be a client to iperf3).
func waitListening(b *testing.B, addr string, limit time.Duration) {
	b.Helper()
	ap := netip.MustParseAddrPort(addr)
	want := fmt.Sprintf(":%04X 00000000:0000 0A", ap.Port())
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		data, _ := os.ReadFile("/proc/net/tcp")
		if strings.Contains(string(data), want) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatalf("nothing listens on %s after %v", addr, limit)
}
