// SPDX-License-Identifier: Apache-2.0

package perf

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// progCost is what one BPF program cost over a measured phase.
type progCost struct {
	name    string
	runs    uint64
	runtime time.Duration
}

// programIDs returns the IDs of every BPF program loaded now.
func programIDs() (map[ebpf.ProgramID]bool, error) {
	ids := map[ebpf.ProgramID]bool{}
	for id := ebpf.ProgramID(0); ; {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, unix.ENOENT) {
			return ids, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list BPF programs: %w", err)
		}
		ids[next] = true
		id = next
	}
}

// programStats reads the run count and run time of every program whose ID
// is not in before and whose name starts with "flowtap_": the programs of
// the flowtap started after before was taken.
func programStats(before map[ebpf.ProgramID]bool) (map[string]progCost, error) {
	now, err := programIDs()
	if err != nil {
		return nil, err
	}
	out := map[string]progCost{}
	for id := range now {
		if before[id] {
			continue
		}
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue // unloaded since
		}
		info, ierr := p.Info()
		st, serr := p.Stats()
		p.Close()
		if ierr != nil || serr != nil || !strings.HasPrefix(info.Name, "flowtap_") {
			continue
		}
		c := out[info.Name]
		c.name = info.Name
		c.runs += st.RunCount
		c.runtime += st.Runtime
		out[info.Name] = c
	}
	return out, nil
}

// phaseCost is where the CPU time of one measured phase with flowtap went.
type phaseCost struct {
	programs []progCost    // flowtap's BPF programs, costliest first
	kernel   time.Duration // their run time, summed
	user     time.Duration // CPU of flowtap and its sink plugins
	// warmUser is the CPU of flowtap and its sinks during the warm-up
	// phase, when there was one: the first work after start, which also
	// grows the heap and fills the caches.
	warmUser time.Duration
}

// measureCost starts flowtap with the kernel's BPF run-time statistics
// on, runs warmup (when not nil) and then phase, and returns what
// flowtap's programs and processes used during phase (and its processes
// during warmup). A warm-up measures flowtap as it runs for days: the
// first work after start also grows its heap (page faults) and fills its
// caches. The statistics cost every BPF program on the host some
// time of their own, so this runs apart from the phases the ratio comes
// from.
func measureCost(b *testing.B, bin string, args []string, warmup, phase func()) phaseCost {
	b.Helper()
	before, err := programIDs()
	if err != nil {
		b.Fatal(err)
	}
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatalf("enable BPF run-time statistics: %v", err)
	}
	defer closeQuietly(stats)
	a := startFlowtapWith(b, bin, args)
	defer a.Stop(b)
	var warmUser time.Duration
	if warmup != nil {
		w0 := treeCPU(a.PID())
		warmup()
		warmUser = treeCPU(a.PID()) - w0
	}
	p0, err := programStats(before)
	if err != nil {
		b.Fatal(err)
	}
	cpu0 := treeCPU(a.PID())
	phase()
	cpu1 := treeCPU(a.PID())
	p1, err := programStats(before)
	if err != nil {
		b.Fatal(err)
	}
	var c phaseCost
	for name, end := range p1 {
		start := p0[name]
		d := progCost{name: name, runs: end.runs - start.runs, runtime: end.runtime - start.runtime}
		if d.runs == 0 {
			continue
		}
		c.programs = append(c.programs, d)
		c.kernel += d.runtime
	}
	slices.SortFunc(c.programs, func(x, y progCost) int { return int(y.runtime - x.runtime) })
	c.user = cpu1 - cpu0
	c.warmUser = warmUser
	return c
}

// reportPerUnit reports the cost per unit of work (n units in the phase):
// kernel-us/<unit> (flowtap's BPF programs) and user-us/<unit> (flowtap
// and its sinks), and logs each program's share.
func (c phaseCost) reportPerUnit(b *testing.B, n int, unit string) {
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(n) }
	b.ReportMetric(per(c.kernel), "kernel-us/"+unit)
	b.ReportMetric(per(c.user), "user-us/"+unit)
	var lines []string
	for _, p := range c.programs {
		lines = append(lines, fmt.Sprintf("%s %.1f runs/%s × %.0f ns = %.2f µs/%s",
			p.name, float64(p.runs)/float64(n), unit, float64(p.runtime.Nanoseconds())/float64(p.runs), per(p.runtime), unit))
	}
	b.Logf("BPF programs, with run-time statistics on (they add a little to each run):\n\t%s", strings.Join(lines, "\n\t"))
}

// reportPrograms reports each program's run time per unit of work as
// bpf-<program>-us/<unit>.
func (c phaseCost) reportPrograms(b *testing.B, n int, unit string) {
	for _, p := range c.programs {
		b.ReportMetric(float64(p.runtime.Nanoseconds())/1e3/float64(n), "bpf-"+p.name+"-us/"+unit)
	}
}

// reportShares reports, for a workload that used work CPU time with
// flowtap running (its BPF programs included), the shares of it that
// flowtap's BPF programs (bpf-share) and processes (user-share) took, and
// est-ratio: the workload's CPU without flowtap over the CPU of the
// workload and flowtap with it, the throughput ratio to expect when the
// workload is CPU-bound.
func (c phaseCost) reportShares(b *testing.B, work time.Duration) {
	if work <= 0 {
		b.Fatalf("workload CPU time %v: cannot compute shares", work)
	}
	b.ReportMetric(c.kernel.Seconds()/work.Seconds(), "bpf-share")
	b.ReportMetric(c.user.Seconds()/work.Seconds(), "user-share")
	b.ReportMetric((work-c.kernel).Seconds()/(work+c.user).Seconds(), "est-ratio")
	var lines []string
	for _, p := range c.programs {
		lines = append(lines, fmt.Sprintf("%s %d runs × %.0f ns", p.name, p.runs, float64(p.runtime.Nanoseconds())/float64(p.runs)))
	}
	b.Logf("workload CPU %v; BPF programs %v; flowtap and sink %v:\n\t%s", work, c.kernel, c.user, strings.Join(lines, "\n\t"))
}

func closeQuietly(c io.Closer) { _ = c.Close() }
