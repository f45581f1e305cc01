// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/flowtap/flowtap/bpf/limits"
	"github.com/flowtap/flowtap/events"
)

// checkPrivileges is CheckPrivileges; tests replace it to confirm that the
// kernel refuses what CheckPrivileges refuses.
var checkPrivileges = CheckPrivileges

// lostPollInterval is how often Run reads the kernel's lost-record counter.
const lostPollInterval = time.Second

// ringPollInterval is how often Run looks into the ring buffer while
// records keep coming. The programs wake the reader when the ring holds
// wakeupBytes (or 1/8 of a smaller ring), and otherwise at most once per
// this interval (wakeup_quiet_ns in flowtap.bpf.c): records written after
// a wake-up, within the interval, wait for this poll. A poll that finds
// nothing lets Run sleep idlePollInterval, until the next wake-up.
const ringPollInterval = 25 * time.Millisecond

// quietWakeup is the quiet spell after which a record wakes the reader
// (the programs' wakeup_quiet_ns): ringPollInterval, which bounds how long
// the records it does not wake for wait. Tests lengthen it to watch the
// fill threshold alone.
var quietWakeup = ringPollInterval

// wakeupBytes is how much the ring holds when the programs wake the
// reader at once (the programs' wakeup_bytes, which Open sets to it; 1/8
// of a smaller ring), and what Run waits for after a drain that read
// records, for ringPollInterval at most. A busy ring is so read in chunks
// of up to 25 ms or 1 MiB (about 7,000 records), not every time a record
// is there: when the wait returned as soon as the ring held anything, a
// busy reader drained it every few dozen records, and paid a drain's fixed
// costs (the lost-record counter's system call, the clock, handing a
// batch on through the pipeline and waking its goroutines) each time.
// With a 32 MiB ring, 1 MiB leaves 31 MiB for the reader to wake and
// catch up.
var wakeupBytes uint64 = 1 << 20

// idlePollInterval is how long Run waits for the ring buffer once it is
// idle: the first record that comes wakes it anyway; the lost-record check
// needs it to look at least this often.
const idlePollInterval = lostPollInterval

// Options configures Open. The zero value is ready to use.
type Options struct {
	// CgroupPath is the cgroup v2 directory the programs attach to; they
	// see the traffic of every socket created in that cgroup and its
	// descendants. "" means the root of the cgroup v2 mount found in
	// /proc/mounts, i.e. the whole host.
	CgroupPath string
	// RingBufferSize is the kernel ring buffer size in bytes: a power of two
	// and a multiple of the page size, at most limits.MaxRingBufferSize. 0
	// means limits.DefaultRingBufferSize.
	RingBufferSize int
	// Logger receives warnings (lost records) and debug messages. nil means
	// hclog.NewNullLogger().
	Logger hclog.Logger
	// DNS turns on DNS capture: cgroup_skb programs report UDP and TCP
	// port 53 payloads (net_packet_dns_base). When false they are not
	// loaded: no per-packet program runs for DNS.
	DNS bool
	// PacketFlows records every flow-relevant packet (SYN, SYN-ACK, FIN,
	// RST) with cgroup_skb programs as net_packet_flow_base, for a
	// selection that names that event. When false (the default, and the
	// cheaper) the sock_ops program writes the flows' moments instead and
	// no per-packet program runs for flows.
	PacketFlows bool
}

// Stats are a Capture's counters.
type Stats struct {
	// Records is the number of ring buffer records read.
	Records uint64
	// Lost is the total number of records the kernel programs could not
	// write because the ring buffer was full.
	Lost uint64
	// DNSTruncated is the number of DNS payloads longer than the kernel
	// captures (limits.DNSMaxPayload), reported truncated.
	DNSTruncated uint64
}

// Capture is a loaded and attached set of flowtap programs and the reader
// of their ring buffer. Create one with Open, consume it with Run, and
// release it with Close.
type Capture struct {
	log        hclog.Logger
	cgroupPath string
	ringSize   int
	// loaded are the maps, the programs and each feature's status.
	*loaded
	// links are the cgroup attachments; stateLinks the tp_btf ones
	// (inet_sock_set_state and tcp_send_reset).
	links      []featureLink
	stateLinks []featureLink
	reader     *ringbuf.Reader
	wait       *ringWaiter // where Run waits for the ring
	dec        decoder
	spare      chan []events.Event // batches handed back by Recycle

	running atomic.Bool
	records atomic.Uint64
	// caughtUp is when (Now's clock) Run last found the ring empty and
	// had handed on everything read before: every record written before
	// it has been delivered (CaughtUp).
	caughtUp atomic.Int64

	// mu guards the lost-record accounting and the closed flag, so the
	// maps and programs are never used after Close released them.
	mu      sync.Mutex
	lost    uint64 // kernel lost counter, as last read
	lostBuf []uint64
	lossLog lossLog // says when loss begins and ends
	// dnsTrunc is the kernel's DNS truncation counter, as last read.
	dnsTrunc uint64
	// reported is the lost total Run has reported in markers, as of
	// reportedAt (wall ns of Run's last check, or of Open).
	reported   uint64
	reportedAt int64
	closed     bool
	closeErr   error
}

// Open checks privileges, loads the flowtap programs and maps, attaches
// the tp_btf programs, walks the sockets that already exist to record
// their owners, attaches the cgroup programs (connect4/6, sock_ops, then
// cgroup_skb ingress and egress) to the cgroup, all with BPF links (which
// the kernel releases when this process exits, however it exits), and
// opens the ring buffer reader. Records are buffered in the kernel from
// this moment; call Run to consume them and Close to detach.
func Open(opts Options) (_ *Capture, err error) {
	if err := checkPrivileges(); err != nil {
		return nil, fmt.Errorf("open flow capture: %w", err)
	}
	size := opts.RingBufferSize
	if size == 0 {
		size = limits.DefaultRingBufferSize
	}
	if err := limits.ValidateRingBufferSize(size); err != nil {
		return nil, fmt.Errorf("open flow capture: %w", err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	cgroupPath := opts.CgroupPath
	if cgroupPath == "" {
		if cgroupPath, err = FindCgroup2Mount(); err != nil {
			return nil, fmt.Errorf("open flow capture: %w", err)
		}
	}
	if err := checkCgroup2Dir(cgroupPath); err != nil {
		return nil, fmt.Errorf("open flow capture: %w", err)
	}

	if err := rlimit.RemoveMemlock(); err != nil {
		// RemoveMemlock probes for memory-cgroup accounting (5.11+) by
		// creating a map; without CAP_BPF the probe fails and it falls back
		// to raising RLIMIT_MEMLOCK, which fails too.
		return nil, fmt.Errorf("open flow capture: remove memlock limit: %w (hint: on Linux 5.11+ this means the process may not create BPF maps: grant CAP_BPF (or CAP_SYS_ADMIN); older kernels also need CAP_SYS_RESOURCE or a higher RLIMIT_MEMLOCK)", err)
	}

	spec, err := loadFlowtap()
	if err != nil {
		return nil, fmt.Errorf("open flow capture: parse embedded BPF object: %w", err)
	}
	rb := spec.Maps[flowtapMapFlowRecords]
	if rb == nil {
		return nil, fmt.Errorf("open flow capture: embedded BPF object has no %s map (regenerate with go generate ./bpf/)", flowtapMapFlowRecords)
	}
	rb.MaxEntries = uint32(size)
	// The value type only tells bpf2go which Go struct to generate; ring
	// buffers take no BTF value type, so don't offer one to the kernel.
	rb.Value = nil

	if err := setConst(spec, flowtapVarWakeupQuietNs, uint64(quietWakeup.Nanoseconds())); err != nil {
		return nil, fmt.Errorf("open flow capture: %w", err)
	}
	if err := setConst(spec, flowtapVarWakeupBytes, wakeupBytes); err != nil {
		return nil, fmt.Errorf("open flow capture: %w", err)
	}
	l, err := loadFeatures(spec, loadOptions{dns: opts.DNS, packetFlows: opts.PacketFlows, broken: brokenPrograms()})
	if err != nil {
		return nil, fmt.Errorf("open flow capture: %w", err)
	}
	c := &Capture{log: logger, cgroupPath: cgroupPath, ringSize: size, spare: make(chan []events.Event, spareBatches), loaded: l,
		lossLog: lossLog{log: logger}}
	defer func() {
		if err != nil {
			c.release()
		}
	}()
	if core := l.feature(FeatureCore); !core.Available {
		logVerifier(logger, *core)
		return nil, fmt.Errorf("open flow capture: %w", coreError(*core))
	}

	// Ownership first: from now on connect() and listen() record their
	// caller (host-wide); then the walk gives every socket that already
	// exists the task holding it. The cgroup programs come after that,
	// packets last.
	for _, t := range []struct {
		feature string
		prog    *ebpf.Program
	}{
		{FeatureExistingCloses, c.objs.FlowtapState},
		// Resets of packets no socket took (refused attempts), host-wide.
		{FeatureNoSocketResets, c.objs.FlowtapReset},
	} {
		if !l.has(t.feature) {
			continue
		}
		tl, err := link.AttachTracing(link.TracingOptions{Program: t.prog, AttachType: ebpf.AttachTraceRawTp})
		if err != nil {
			c.lose(t.feature, fmt.Errorf("attach: %w", err))
			continue
		}
		c.stateLinks = append(c.stateLinks, featureLink{t.feature, tl})
	}
	// flowtap_owners applies what flowtap_files recorded.
	for _, w := range []struct {
		feature string
		prog    *ebpf.Program
	}{
		{FeatureExistingOwners, c.objs.FlowtapFiles},
		{FeatureExistingOwners, c.objs.FlowtapOwners},
		{FeatureMPTCP, c.objs.FlowtapSubflows},
	} {
		if !l.has(w.feature) || w.prog == nil {
			continue
		}
		if err := runIter(w.prog); err != nil {
			c.lose(w.feature, fmt.Errorf("walk the sockets that exist: %w", err))
		}
	}

	for _, a := range c.cgroupPrograms() {
		if a.prog == nil {
			continue // its feature is not loaded
		}
		if err := c.attachCgroup(a); err != nil {
			if a.feature == FeatureCore {
				return nil, fmt.Errorf("open flow capture: %w", err)
			}
			c.lose(a.feature, err)
		}
	}
	for _, f := range l.features {
		if !f.Available && !f.Skipped {
			// The program only when one was refused (a probe may say
			// the kernel lacks what the feature needs before any loads).
			args := []any{"feature", f.Name}
			if f.Program != "" {
				args = append(args, "program", f.Program)
			}
			logger.Warn("feature unavailable: flowtap runs without it", append(args, "reason", f.Reason, "without_it", f.Without)...)
			logVerifier(logger, f)
		}
	}

	c.reader, err = ringbuf.NewReader(c.objs.FlowRecords)
	if err != nil {
		return nil, fmt.Errorf("open flow capture: open ring buffer reader: %w", err)
	}
	if c.wait, err = newRingWaiter(c.objs.FlowRecords); err != nil {
		return nil, fmt.Errorf("open flow capture: %w", err)
	}
	bootToWall, err := bootToWallOffset()
	if err != nil {
		return nil, fmt.Errorf("open flow capture: %w", err)
	}
	c.dec = newDecoder(bootToWall)
	c.reportedAt = c.Now()
	c.caughtUp.Store(c.reportedAt)
	logger.Debug("flow capture attached", "cgroup", cgroupPath, "ring_buffer_bytes", size)
	return c, nil
}

// cgroupAttachment is a program and where it attaches to the cgroup.
type cgroupAttachment struct {
	prog    *ebpf.Program
	attach  ebpf.AttachType
	name    string
	feature string
}

// cgroupPrograms are the programs attached to the cgroup, in attach order:
// ownership and state callbacks first, packets last. Programs of features
// that did not load are nil.
func (c *Capture) cgroupPrograms() []cgroupAttachment {
	return []cgroupAttachment{
		{c.objs.FlowtapConnect4, ebpf.AttachCGroupInet4Connect, "connect4", FeatureCore},
		{c.objs.FlowtapConnect6, ebpf.AttachCGroupInet6Connect, "connect6", FeatureCore},
		{c.objs.FlowtapSockops, ebpf.AttachCGroupSockOps, "sock_ops", FeatureCore},
		{c.objs.FlowtapIngress, ebpf.AttachCGroupInetIngress, "ingress", FeaturePacketFlows},
		{c.objs.FlowtapEgress, ebpf.AttachCGroupInetEgress, "egress", FeaturePacketFlows},
		{c.objs.FlowtapDnsIngress, ebpf.AttachCGroupInetIngress, "DNS ingress", FeatureDNS},
		{c.objs.FlowtapDnsEgress, ebpf.AttachCGroupInetEgress, "DNS egress", FeatureDNS},
	}
}

// attachCgroup attaches a to the capture's cgroup with a BPF link.
func (c *Capture) attachCgroup(a cgroupAttachment) error {
	cl, err := link.AttachCgroup(link.CgroupOptions{Path: c.cgroupPath, Attach: a.attach, Program: a.prog})
	if err != nil {
		return fmt.Errorf("attach %s program to cgroup %s: %w%s", a.name, c.cgroupPath, err, permHint(err))
	}
	c.links = append(c.links, featureLink{a.feature, cl})
	// link.AttachCgroup falls back to a legacy attachment on kernels
	// without cgroup BPF links (before 5.7). Such an attachment outlives
	// the process if it dies, so refuse it.
	if _, err := cl.Info(); err != nil {
		return fmt.Errorf("attach %s program to cgroup %s: the kernel did not create a BPF link (needs Linux 5.7 or later): %w", a.name, c.cgroupPath, err)
	}
	return nil
}

// featureLink is an attachment and the feature it serves.
type featureLink struct {
	feature string
	link    link.Link
}

// runIter runs a BPF iterator program once, to the end. The programs write
// no text; they act (storage, ring buffer records) on every element.
func runIter(prog *ebpf.Program) error {
	it, err := link.AttachIter(link.IterOptions{Program: prog})
	if err != nil {
		return fmt.Errorf("attach iterator: %w", err)
	}
	defer it.Close()
	rd, err := it.Open()
	if err != nil {
		return fmt.Errorf("start iterator: %w", err)
	}
	defer rd.Close()
	if _, err := io.Copy(io.Discard, rd); err != nil {
		return fmt.Errorf("run iterator: %w", err)
	}
	return nil
}

// Snapshot reports every TCP socket the capture counts (one that sent or
// received a packet the cgroup_skb programs saw and has not closed) as a
// net_tcp_socket_base event with Report SocketSnapshot, its current
// counters, state and owner. The records go through the ring buffer like
// all others: Snapshot returns when the kernel has written them, and Run
// delivers them (a full ring counts them as lost). The walk covers the
// sockets of the network namespace flowtap runs in.
func (c *Capture) Snapshot() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errors.New("snapshot: the flow capture is closed")
	}
	if !c.has(FeatureSnapshots) {
		return fmt.Errorf("snapshot: %w: %s", ErrFeatureUnavailable, FeatureSnapshots)
	}
	if err := runIter(c.objs.FlowtapSnapshot); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	return nil
}

// checkCgroup2Dir makes sure path is a directory on a cgroup2 filesystem,
// so a wrong path fails with a clear message instead of EBADF from attach.
func checkCgroup2Dir(path string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return fmt.Errorf("cgroup path %s: %w", path, err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		return fmt.Errorf("cgroup path %s is not on a cgroup v2 filesystem (filesystem magic %#x); use a directory under the cgroup2 mount listed in /proc/mounts", path, st.Type)
	}
	return nil
}

// capabilityAdvice is what the capability hints say.
const capabilityAdvice = "need CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, or CAP_SYS_ADMIN; run as root or grant them"

// permHint explains a permission error from the bpf syscall, when this
// process lacks a capability flowtap needs: EPERM as root has other
// causes (a lockdown, a security module), which the hint would hide.
func permHint(err error) string {
	if errors.Is(err, unix.EPERM) && CheckPrivileges() != nil {
		return " (hint: flowtap's cgroup_skb, tracing and iterator programs " + capabilityAdvice + ")"
	}
	return ""
}

// bootToWallOffset returns wall-clock ns since the epoch minus
// CLOCK_BOOTTIME ns, measured once; the BPF programs stamp records with
// CLOCK_BOOTTIME, which does not jump with wall-clock changes.
func bootToWallOffset() (int64, error) {
	var before, after unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &before); err != nil {
		return 0, fmt.Errorf("read CLOCK_BOOTTIME: %w", err)
	}
	now := time.Now().UnixNano()
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &after); err != nil {
		return 0, fmt.Errorf("read CLOCK_BOOTTIME: %w", err)
	}
	boot := before.Nano() + (after.Nano()-before.Nano())/2
	return now - boot, nil
}

// Now returns the current time, in ns since the epoch, on the clock the
// capture's events are stamped with: CLOCK_BOOTTIME plus the offset to the
// wall clock measured at Open. It follows the events' timestamps where
// time.Now would not: when the wall clock is set (an NTP step at boot, a
// VM resumed from a snapshot), time.Now jumps and the events' timestamps
// do not. Deadlines on event time (SYN timeouts, idle eviction) must be
// checked against Now.
func (c *Capture) Now() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		// Linux has had CLOCK_BOOTTIME since 2.6.39; Open read it too.
		return time.Now().UnixNano()
	}
	return ts.Nano() + c.dec.bootToWall
}

// CaughtUp returns the time (Now's clock) up to which every record the
// programs wrote has been read and handed on by Run: when it last found
// the ring empty. A consumer that falls behind (a sink with the block
// policy holding the pipeline up) holds it back, and with it anything
// that must not decide on records not read yet, such as the flow
// tracker's SYN timeouts. Before Run's first drain it is when Open
// finished.
func (c *Capture) CaughtUp() int64 { return c.caughtUp.Load() }

// run reads the ring buffer and hands every record, decoded into a
// net_packet_flow_base, net_tcp_socket_base or net_packet_dns_base event,
// to emit (called from run's goroutine, one event at a time), and calls
// drained each time the ring buffer holds nothing more to read, before it
// waits. It blocks until ctx is done (records already in the ring buffer
// are delivered first) or Close is called, and then returns nil.
//
// While it runs it checks the kernel's lost-record counter about once a
// second, and once more before returning (unless Close ended it): when
// the counter grew it logs a warning and emits a flowtap_records_lost
// event (events.RecordsLost) with the number lost since its previous check
// and the interval. Only one run may be active at a time; run on a closed
// Capture returns nil at once.
func (c *Capture) run(ctx context.Context, emit func(events.Event), drained func()) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("run flow capture: Run is already active on this Capture")
	}
	defer c.running.Store(false)

	// Wake the reader when ctx ends: it reads what is pending, and sees
	// ctx is done.
	stop := context.AfterFunc(ctx, c.wait.interrupt)
	defer stop()

	err := c.read(ctx, emit, drained)
	c.reportLost(emit)
	return err
}

// RunBatches reads the ring buffer until ctx is done or Close is called,
// as described at run, and hands the events over in batches: emit gets up
// to max events at a time (max <= 0 means 256), whenever that many are
// ready or the ring buffer holds nothing more to read. emit runs on
// RunBatches' goroutine (the pipeline derives and routes right there, a
// batch at a time); it owns the slice it gets, which RunBatches never
// touches again. A consumer done with a batch may hand it back with
// Recycle, to be reused.
func (c *Capture) RunBatches(ctx context.Context, max int, emit func([]events.Event)) error {
	if max <= 0 {
		max = 256
	}
	next := func() []events.Event {
		select {
		case b := <-c.spare:
			if cap(b) >= max {
				return b[:0]
			}
		default:
		}
		return make([]events.Event, 0, max)
	}
	batch := next()
	flush := func() {
		if len(batch) > 0 {
			emit(batch)
			batch = next()
		}
	}
	err := c.run(ctx, func(ev events.Event) {
		batch = append(batch, ev)
		if len(batch) == max {
			flush()
		}
	}, flush)
	flush()
	return err
}

// Recycle hands back a batch RunBatches emitted, once its consumer is done
// with it, for a later batch to reuse: a batch is tens of KiB, allocated
// several times a second under load. The events in it are cleared (no
// payload stays reachable through it). Recycling is optional.
func (c *Capture) Recycle(batch []events.Event) {
	clear(batch)
	select {
	case c.spare <- batch[:0]:
	default: // enough spares; let the collector have it
	}
}

// spareBatches is how many recycled batches a Capture keeps.
const spareBatches = 8

// clockCheckEvery is how many records read checks the clock after, so a
// busy ring does not delay the lost-record check.
const clockCheckEvery = 64

// read is Run's loop; it reuses one ringbuf.Record for every read. The
// reader never blocks (its deadline is in the past): it reads what the
// ring holds, and when the ring is empty read waits in the runtime poller
// (ringWaiter) until the kernel wakes the ring's waiters (the programs do
// when the ring fills up, or for the first record after a quiet
// ringPollInterval: see flowtap.bpf.c). After a drain that read records it
// waits for the ring to hold fillThreshold, ringPollInterval at most; after
// one that read nothing, for any record, idlePollInterval at most. So a
// record waits at most about ringPollInterval, the first after a quiet
// spell not at all, and an idle capture wakes about once a second. The
// wait's end is also where it checks the lost-record counter when the ring
// is idle.
func (c *Capture) read(ctx context.Context, emit func(events.Event), drained func()) error {
	var rec ringbuf.Record
	now := time.Now()
	next := now.Add(lostPollInterval)
	c.reader.SetDeadline(time.Unix(1, 0))
	// The wait ends when the ring holds what it waits for after a
	// wake-up of its waiters, or at once when ctx is done. The reader
	// itself is only touched on this goroutine: Close may release it at
	// any time.
	stop := func() bool { return ctx.Err() != nil }
	n, sinceWait := 0, 0
	for {
		err := c.reader.ReadInto(&rec)
		switch {
		case err == nil:
			c.records.Add(1)
			sinceWait++
			if ev, err := c.dec.decode(rec.RawSample); err != nil {
				c.log.Error("dropping undecodable ring buffer record", "error", err)
			} else {
				emit(ev)
			}
			if n++; n%clockCheckEvery != 0 {
				continue
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
			// The ring is drained: what was lost so far is reported
			// with what was read (a marker never trails the records
			// around the loss by more than this), then all of it is
			// handed on, and everything written before now has been.
			empty := c.Now()
			c.reportLost(emit)
			next = time.Now().Add(lostPollInterval)
			drained()
			c.caughtUp.Store(empty)
			if ctx.Err() != nil {
				return nil
			}
			poll, fill := idlePollInterval, uint64(1)
			if sinceWait > 0 {
				poll, fill = ringPollInterval, c.fillThreshold()
			}
			sinceWait = 0
			werr := c.wait.wait(time.Now().Add(poll), stop, fill)
			if werr != nil && !errors.Is(werr, os.ErrDeadlineExceeded) {
				if c.isClosed() {
					return nil
				}
				return fmt.Errorf("run flow capture: wait for the ring buffer: %w", werr)
			}
		case errors.Is(err, os.ErrClosed):
			return nil
		default:
			return fmt.Errorf("run flow capture: read ring buffer: %w", err)
		}
		if now := time.Now(); !now.Before(next) {
			c.reportLost(emit)
			next = now.Add(lostPollInterval)
		}
	}
}

// fillThreshold is how much the ring holds when the programs wake the
// reader at once: wakeupBytes, or 1/8 of a smaller ring (wakeup_flags in
// flowtap.bpf.c).
func (c *Capture) fillThreshold() uint64 {
	return min(uint64(c.ringSize)>>3, wakeupBytes)
}

// isClosed reports whether Close was called.
func (c *Capture) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// reportLost reads the kernel's lost-record counter and, when it grew
// since Run last reported, emits a flowtap_records_lost event. It is a
// no-op after Close.
func (c *Capture) reportLost(emit func(events.Event)) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.pollLostLocked()
	now := c.Now()
	var marker *events.RecordsLost
	if c.lost > c.reported {
		marker = &events.RecordsLost{Lost: c.lost - c.reported, Total: c.lost, From: c.reportedAt, To: now}
		c.reported = c.lost
	}
	c.reportedAt = now
	c.mu.Unlock()
	if marker != nil {
		emit(events.Event{ID: events.IDRecordsLost, Timestamp: now, Payload: marker})
	}
}

// pollLost reads the per-CPU lost-record counter, and logs when loss
// begins, goes on (at most once a minute) and ends (lossLog). It is a
// no-op after Close.
func (c *Capture) pollLost() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.pollLostLocked()
}

func (c *Capture) pollLostLocked() {
	if err := c.objs.LostRecords.Lookup(uint32(0), &c.lostBuf); err != nil {
		c.log.Error("read lost-record counter", "error", err)
		return
	}
	var total uint64
	for _, v := range c.lostBuf {
		total += v
	}
	c.lossLog.observe(time.Now(), total-min(total, c.lost), total)
	c.lost = max(c.lost, total)
}

// Stats returns the number of records read so far and the total number of
// records the kernel reported lost. Unless the Capture is closed it reads
// the kernel counter now, and logs a growth it finds like Run's checks do.
func (c *Capture) Stats() Stats {
	c.pollLost()
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{Records: c.records.Load(), Lost: c.lost, DNSTruncated: c.dnsTruncatedLocked()}
}

// Close detaches the programs, reports any lost records not yet reported,
// and releases the ring buffer reader, maps and programs. It makes an
// active Run return (records still in the ring buffer are discarded;
// cancel Run's context first to receive them). Close is idempotent: later
// calls return the first call's result.
func (c *Capture) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return c.closeErr
	}
	var errs []error
	if err := c.detach(); err != nil {
		errs = append(errs, err)
	}
	// Nothing new can be lost once the programs are detached.
	c.pollLostLocked()
	c.closed = true
	if err := c.release(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		c.closeErr = fmt.Errorf("close flow capture: %w", err)
	}
	return c.closeErr
}

// detach closes the links that exist.
func (c *Capture) detach() error {
	var errs []error
	for _, l := range c.links {
		if err := l.link.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach program: %w", err))
		}
	}
	c.links = nil
	for _, l := range c.stateLinks {
		if err := l.link.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach tracing program: %w", err))
		}
	}
	c.stateLinks = nil
	return errors.Join(errs...)
}

// release closes the reader, links, maps and programs that exist.
func (c *Capture) release() error {
	var errs []error
	if err := c.detach(); err != nil {
		errs = append(errs, err)
	}
	if c.reader != nil {
		if err := c.reader.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close ring buffer reader: %w", err))
		}
	}
	if c.wait != nil {
		if err := c.wait.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close ring buffer waiter: %w", err))
		}
	}
	if c.loaded != nil {
		if err := c.loaded.close(); err != nil {
			errs = append(errs, fmt.Errorf("close BPF objects: %w", err))
		}
	}
	return errors.Join(errs...)
}

// closeObjects closes every loaded map and program (Close is a no-op on
// those never loaded) and keeps going past errors.
func closeObjects(o *flowtapObjects) error {
	var errs []error
	for _, v := range []reflect.Value{reflect.ValueOf(&o.flowtapPrograms).Elem(), reflect.ValueOf(&o.flowtapMaps).Elem()} {
		for i := 0; i < v.NumField(); i++ {
			if c, ok := v.Field(i).Interface().(io.Closer); ok {
				errs = append(errs, c.Close())
			}
		}
	}
	return errors.Join(errs...)
}

// setConst sets a load-time constant of the programs (a volatile const in
// flowtap.bpf.c), which the verifier then treats as a known value.
func setConst(spec *ebpf.CollectionSpec, name string, value any) error {
	v := spec.Variables[name]
	if v == nil {
		return fmt.Errorf("embedded BPF object has no %s variable (regenerate with go generate ./bpf/)", name)
	}
	if err := v.Set(value); err != nil {
		return fmt.Errorf("set %s: %w", name, err)
	}
	return nil
}
