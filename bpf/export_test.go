// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"context"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/flowtap/flowtap/events"
)

// Test-only access to internals for the privileged tests, which live in
// package bpf_test because internal/privtest imports this package.

// TestObjects are the loaded but unattached packet programs and the maps
// they use.
type TestObjects struct {
	Ingress, Egress *ebpf.Program
	Records, Lost   *ebpf.Map
	objs            testObjects
}

// testObjects are the objects of LoadTestObjects: the packet programs
// alone, which load wherever the core does (the others may not: the
// tracing and iterator programs need more of the kernel).
type testObjects struct {
	Ingress *ebpf.Program `ebpf:"flowtap_ingress"`
	Egress  *ebpf.Program `ebpf:"flowtap_egress"`
	Records *ebpf.Map     `ebpf:"flow_records"`
	Lost    *ebpf.Map     `ebpf:"lost_records"`
}

// Close releases the objects.
func (o *TestObjects) Close() error {
	for _, c := range []interface{ Close() error }{o.objs.Ingress, o.objs.Egress, o.objs.Records, o.objs.Lost} {
		c.Close()
	}
	return nil
}

// LoadTestObjects loads the embedded object with the given ring size
// without attaching anything.
func LoadTestObjects(ringSize int) (*TestObjects, error) {
	spec, err := loadFlowtap()
	if err != nil {
		return nil, err
	}
	spec.Maps[flowtapMapFlowRecords].Value = nil
	spec.Maps[flowtapMapFlowRecords].MaxEntries = uint32(ringSize)
	o := &TestObjects{}
	if err := spec.LoadAndAssign(&o.objs, nil); err != nil {
		return nil, err
	}
	o.Ingress, o.Egress = o.objs.Ingress, o.objs.Egress
	o.Records, o.Lost = o.objs.Records, o.objs.Lost
	return o, nil
}

// AttachedIDs are the kernel IDs of a Capture's programs and links.
type AttachedIDs struct {
	// Programs and Links are those attached to the cgroup.
	Programs []ebpf.ProgramID
	Links    []link.ID
	// Others are the tracing and iterator programs and the tp_btf link.
	OtherPrograms []ebpf.ProgramID
	OtherLinks    []link.ID
}

func progID(p *ebpf.Program) (ebpf.ProgramID, error) {
	info, err := p.Info()
	if err != nil {
		return 0, err
	}
	id, ok := info.ID()
	if !ok {
		return 0, fmt.Errorf("kernel did not report a program ID")
	}
	return id, nil
}

// IDs returns the IDs of the capture's programs and links.
func (c *Capture) IDs() (AttachedIDs, error) {
	var ids AttachedIDs
	for _, a := range c.cgroupPrograms() {
		if a.prog == nil {
			continue // its feature is not loaded
		}
		id, err := progID(a.prog)
		if err != nil {
			return ids, err
		}
		ids.Programs = append(ids.Programs, id)
	}
	for _, p := range append([]*ebpf.Program{c.objs.FlowtapState}, c.objs.FlowtapReset, c.objs.FlowtapFiles, c.objs.FlowtapOwners, c.objs.FlowtapSubflows, c.objs.FlowtapSnapshot) {
		if p == nil {
			continue // its feature is unavailable
		}
		id, err := progID(p)
		if err != nil {
			return ids, err
		}
		ids.OtherPrograms = append(ids.OtherPrograms, id)
	}
	for _, l := range c.links {
		info, err := l.link.Info()
		if err != nil {
			return ids, err
		}
		ids.Links = append(ids.Links, info.ID)
	}
	for _, l := range c.stateLinks {
		info, err := l.link.Info()
		if err != nil {
			return ids, err
		}
		ids.OtherLinks = append(ids.OtherLinks, info.ID)
	}
	return ids, nil
}

// CgroupPath returns the cgroup the capture is attached to.
func (c *Capture) CgroupPath() string { return c.cgroupPath }

// KernelLost sums the per-CPU lost counter without touching Stats.
func (c *Capture) KernelLost() (uint64, error) {
	var vals []uint64
	if err := c.objs.LostRecords.Lookup(uint32(0), &vals); err != nil {
		return 0, err
	}
	var sum uint64
	for _, v := range vals {
		sum += v
	}
	return sum, nil
}

// PacketPrograms returns the cgroup_skb programs the capture loaded (nil
// without packet flows and DNS).
func (c *Capture) PacketPrograms() []*ebpf.Program {
	var out []*ebpf.Program
	for _, p := range []*ebpf.Program{c.objs.FlowtapIngress, c.objs.FlowtapEgress, c.objs.FlowtapDnsIngress, c.objs.FlowtapDnsEgress} {
		if p != nil {
			out = append(out, p)
		}
	}
	return out
}

// StateSkips returns how often the kernel skipped each copy of the state
// program (it was already running on the CPU).
func (c *Capture) StateSkips() ([]uint64, error) {
	var out []uint64
	for _, p := range []*ebpf.Program{c.objs.FlowtapState} {
		if p == nil {
			continue // not loaded: flows from sock_ops
		}
		st, err := p.Stats()
		if err != nil {
			return nil, err
		}
		out = append(out, st.RecursionMisses)
	}
	return out, nil
}

// RingAvailable returns the bytes waiting in the ring buffer.
func (c *Capture) RingAvailable() int { return c.reader.AvailableBytes() }

// Running reports whether a Run is active.
func (c *Capture) Running() bool { return c.running.Load() }

// DisablePrivilegeCheck makes Open skip CheckPrivileges, so a test can see
// what the kernel itself refuses.
func DisablePrivilegeCheck() { checkPrivileges = func() error { return nil } }

// ResetSkips returns how often the kernel skipped the tcp_send_reset
// program (it was already running on the CPU).
func (c *Capture) ResetSkips() (uint64, error) {
	st, err := c.objs.FlowtapReset.Stats()
	if err != nil {
		return 0, err
	}
	return st.RecursionMisses, nil
}

// NoSocketResets sums the per-CPU count of no-socket reset records the
// kernel generated (written or lost).
func (c *Capture) NoSocketResets() (uint64, error) {
	var vals []uint64
	if err := c.objs.NosockResets.Lookup(uint32(0), &vals); err != nil {
		return 0, err
	}
	var sum uint64
	for _, v := range vals {
		sum += v
	}
	return sum, nil
}

// WaitRingWakeup waits as Run does between drains, on a ring nobody
// reads: until it holds records after a wake-up of its waiters, or
// deadline (os.ErrDeadlineExceeded). On a ring that holds records already
// it returns at once.
func WaitRingWakeup(c *Capture, deadline time.Time) error {
	return c.wait.wait(deadline, func() bool { return false }, 1)
}

// WaitRingFill waits as Run does after a drain that read records, on a
// ring nobody reads: until it holds the fill threshold after a wake-up of
// its waiters, or deadline (os.ErrDeadlineExceeded).
func WaitRingFill(c *Capture, deadline time.Time) error {
	return c.wait.wait(deadline, func() bool { return false }, c.fillThreshold())
}

// FillThreshold is how much the ring holds when the programs wake the
// reader at once.
func FillThreshold(c *Capture) uint64 { return c.fillThreshold() }

// NoQuietWakeups makes the Captures a test opens wake their reader only
// when the ring fills (not after a quiet spell), until the test ends.
func NoQuietWakeups(t interface{ Cleanup(func()) }) {
	old := quietWakeup
	quietWakeup = 1 << 62 // about 146 years: never
	t.Cleanup(func() { quietWakeup = old })
}

// Run is RunBatches one event at a time: the tests read records as they
// come.
func (c *Capture) Run(ctx context.Context, emit func(events.Event)) error {
	return c.run(ctx, emit, func() {})
}

// Decode decodes one record as Capture's reader does (see decoder.decode),
// allocating what the reader carves from slabs or interns.
func Decode(raw []byte, bootToWall int64) (events.Event, error) {
	d := decoder{bootToWall: bootToWall}
	return d.decode(raw)
}

// Spec is the embedded object's collection spec, for bpftest.AttachNoOps.
func Spec() (*ebpf.CollectionSpec, error) { return loadFlowtap() }

// Attachments counts what a capture should hold attached: its loaded
// cgroup programs (each with a link), its tracing and iterator programs,
// and the tracing programs' links.
type Attachments struct{ Cgroup, Other, OtherLinks int }

// Attachments counts c's loaded programs by kind.
func (c *Capture) Attachments() Attachments {
	var a Attachments
	for _, g := range c.cgroupPrograms() {
		if g.prog != nil {
			a.Cgroup++
		}
	}
	for _, p := range []*ebpf.Program{c.objs.FlowtapState, c.objs.FlowtapReset} {
		if p != nil {
			a.Other++
			a.OtherLinks++
		}
	}
	for _, p := range []*ebpf.Program{c.objs.FlowtapFiles, c.objs.FlowtapOwners, c.objs.FlowtapSubflows, c.objs.FlowtapSnapshot} {
		if p != nil {
			a.Other++
		}
	}
	return a
}
