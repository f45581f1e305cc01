// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"time"

	"github.com/cilium/ebpf"
)

// ProgramStats are the kernel's counters of one loaded program.
type ProgramStats struct {
	// Name is the program's name, e.g. flowtap_sockops; Feature the
	// feature it belongs to.
	Name, Feature string
	// Runs and RunTime are how often the program ran and how long it ran
	// in all. The kernel counts them only while kernel.bpf_stats_enabled
	// is 1 (see StatsEnabled): they stand still, at what was counted
	// before, while it is 0.
	Runs    uint64
	RunTime time.Duration
	// RecursionMisses counts the runs the kernel skipped because the
	// program was already running on that CPU (tracing programs; always
	// counted).
	RecursionMisses uint64
}

// statsEnabledPath is the sysctl kernel.bpf_stats_enabled.
const statsEnabledPath = "/proc/sys/kernel/bpf_stats_enabled"

// StatsEnabled reports whether the kernel counts BPF programs' runs and
// run time (the sysctl kernel.bpf_stats_enabled is 1). flowtap never
// turns it on: it costs every BPF program on the host two clock reads
// per run. An operator who wants ProgramStats' Runs and RunTime sets it
// (sysctl -w kernel.bpf_stats_enabled=1), or holds it on with
// BPF_ENABLE_STATS while measuring.
func StatsEnabled() (bool, error) {
	b, err := os.ReadFile(statsEnabledPath)
	if err != nil {
		return false, fmt.Errorf("read kernel.bpf_stats_enabled: %w", err)
	}
	return string(bytes.TrimSpace(b)) == "1", nil
}

// ProgramStats returns the counters of every program the capture loaded,
// in the order of the generated bindings (by name). After Close it
// returns nothing.
func (c *Capture) ProgramStats() ([]ProgramStats, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, nil
	}
	feature := map[string]string{}
	for _, f := range featureTable {
		for _, p := range f.Programs {
			feature[p] = f.Name
		}
	}
	var out []ProgramStats
	v := reflect.ValueOf(&c.objs.flowtapPrograms).Elem()
	for i := 0; i < v.NumField(); i++ {
		p, _ := v.Field(i).Interface().(*ebpf.Program)
		if p == nil {
			continue
		}
		name := v.Type().Field(i).Tag.Get("ebpf")
		st, err := p.Stats()
		if err != nil {
			return nil, fmt.Errorf("read statistics of BPF program %s: %w", name, err)
		}
		out = append(out, ProgramStats{Name: name, Feature: feature[name], Runs: st.RunCount, RunTime: st.Runtime, RecursionMisses: st.RecursionMisses})
	}
	return out, nil
}

// RingBufferSize returns the ring buffer's size in bytes.
func (c *Capture) RingBufferSize() int { return c.ringSize }

// Attached reports whether the programs are attached: from Open until
// Close.
func (c *Capture) Attached() bool { return !c.isClosed() }
