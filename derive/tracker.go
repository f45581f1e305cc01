// SPDX-License-Identifier: Apache-2.0

// Package derive turns base events into derived ones. Its flow tracker
// follows TCP handshakes, teardowns and socket closes seen by the kernel
// programs and emits net_flow_tcp_begin, net_flow_tcp_end and
// net_flow_tcp_failed once per local endpoint.
package derive

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/flowtap/flowtap/derive/communityid"
	"github.com/flowtap/flowtap/events"
)

// TCP states as the kernel numbers them (include/net/tcp_states.h).
const (
	tcpEstablished = 1
	tcpSynSent     = 2
	tcpSynRecv     = 3
	tcpFinWait1    = 4
	tcpFinWait2    = 5
	tcpTimeWait    = 6
	tcpClose       = 7
	tcpCloseWait   = 8
	tcpLastAck     = 9
	tcpListen      = 10
	tcpClosing     = 11
)

// Config bounds the tracker. Zero values take the defaults.
type Config struct {
	// MaxFlows bounds the connection table; when it is full the least
	// recently active connection is evicted. Default 65536.
	MaxFlows int
	// IdleTimeout evicts a connection nothing has been heard of for this
	// long (no packet record, no socket report; the pipeline asks the
	// kernel for snapshots of live sockets more often than this, so only
	// connections whose socket is gone unnoticed expire). Default 5m.
	IdleTimeout time.Duration
	// SYNTimeout is how long an attempt may wait for its SYN-ACK before it
	// is reported as failed with reason timeout. Default 10s.
	SYNTimeout time.Duration
	// CloseGrace is how long an endpoint of a connection that closed on the
	// wire (FIN both ways, or RST) waits for its socket's close report,
	// which carries the final counters, before it ends without it.
	// Default 2s.
	CloseGrace time.Duration
	// LossGrace is how long after its SYN timeout an attempt still waits
	// before it is reported as failed, for a lost-record marker
	// (events.RecordsLost) to say its SYN-ACK may have been lost: the
	// kernel capture counts lost records about once a second. 0 (the
	// default): no wait, for producers that lose nothing (a capture
	// file); the pipeline sets DefaultLossGrace for the kernel's.
	LossGrace time.Duration
	// Names fills src_dns and dst_dns; nil leaves them empty. It is
	// called on the tracker's goroutine only.
	Names Resolver
	// CommunityIDSeed is the seed of community_id (Community ID v1);
	// Zeek's and Suricata's default is 0.
	CommunityIDSeed uint16
	// FlowIDSeed keys the flow_id sequence (see flowid.go); 0 draws a
	// random key, as a running flowtap does. Tests set one to get the
	// same identifiers every run.
	FlowIDSeed uint64
}

// Resolver names IP addresses from the DNS answers the host saw; the DNS
// cache (derive/dnscache.Cache) implements it. AppendNames appends to dst
// the names for addr at time now (ns, the events' clock), those resolved
// by workload (a cgroup id) first.
type Resolver interface {
	AppendNames(dst []string, addr netip.Addr, workload uint64, now int64) []string
}

// Defaults for Config.
const (
	DefaultMaxFlows    = 65536
	DefaultIdleTimeout = 5 * time.Minute
	DefaultSYNTimeout  = 10 * time.Second
	DefaultCloseGrace  = 2 * time.Second
	// DefaultLossGrace is the LossGrace for the kernel capture: twice
	// the interval at which it counts lost records.
	DefaultLossGrace = 2 * time.Second
)

// SnapshotInterval is how often a producer should report its live
// sockets' counters (net_tcp_socket_base snapshots) to a tracker of this
// Config: a third of the idle timeout (100 s by default), at least a
// second. Snapshots exist so that a live connection is never evicted as
// idle, and a third leaves two missed rounds of margin. The kernel
// capture (asked by the pipeline) and the pcap replay (in capture time)
// both follow it, so that a replayed capture derives what the live agent
// did.
//
// The live pipeline used to cap it at a minute "so that counters stay
// fresh", but counters reach events only when a flow ends: at its close
// report (final counters), at shutdown (after a last snapshot) or at an
// eviction; only a flow evicted from a full table ends with counters up
// to one interval old either way.
func (c Config) SnapshotInterval() time.Duration {
	return max(c.withDefaults().IdleTimeout/3, time.Second)
}

// failedLinger is how long a timed-out attempt is remembered: the kernel
// retransmits a SYN for about 127 s by default (net.ipv4.tcp_syn_retries
// = 6), and each retransmission must be known as part of the attempt
// already reported.
const failedLinger = 130 * time.Second

func (c Config) withDefaults() Config {
	if c.MaxFlows <= 0 {
		c.MaxFlows = DefaultMaxFlows
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.SYNTimeout <= 0 {
		c.SYNTimeout = DefaultSYNTimeout
	}
	if c.CloseGrace <= 0 {
		c.CloseGrace = DefaultCloseGrace
	}
	return c
}

// Stats are the tracker's counters.
type Stats struct {
	Flows       int    // connections tracked now
	Begun       uint64 // begin events emitted
	Ended       uint64 // end events emitted
	Failed      uint64 // failed events emitted
	EvictedIdle uint64 // connections evicted by the idle timeout
	EvictedFull uint64 // connections evicted because the table was full
	// EvictedReused: connections ended because a new connection began
	// on the same addresses and ports while they were open (their close
	// was never seen).
	EvictedReused uint64
	CloseMissing  uint64 // endpoints that ended without their socket's close report
	// LossMarkers: lost-record markers (events.RecordsLost) seen.
	LossMarkers uint64
	// Unresolved: attempts that got no SYN-ACK in time while records
	// were being lost: not reported as failed, since the answer may be
	// what was lost. The socket's close report decides, if one comes.
	Unresolved uint64
	// Incomplete: ends marked incomplete (records of the flow may have
	// been lost).
	Incomplete uint64
}

// connKey identifies a TCP connection independently of packet direction:
// the two endpoints in canonical order, each as its address's 16 bytes and
// its port. Addresses are unmapped before (so a dual-stack socket's
// IPv4-mapped addresses and plain IPv4 agree, and an IPv4 address cannot
// equal an IPv6 one); the kernel's records carry no zones. The key has no
// padding and no pointer, so the map hashes and compares it as one block
// of 36 bytes: a pair of netip.AddrPort (64 bytes, padded, a pointer in
// each) was hashed field by field, four hash calls per lookup.
type connKey struct {
	loAddr, hiAddr [16]byte
	loPort, hiPort uint16
}

func makeKey(a, b netip.AddrPort) connKey {
	var k connKey
	k.set(a, b)
	return k
}

// set makes k the key of the connection between a and b, in place, on
// the path of every packet (2.5 % less time per event in
// BenchmarkTrackerLoopback than building it by value).
func (k *connKey) set(a, b netip.AddrPort) {
	k.loAddr, k.hiAddr = a.Addr().As16(), b.Addr().As16()
	k.loPort, k.hiPort = a.Port(), b.Port()
	if !keyLess(&k.loAddr, k.loPort, &k.hiAddr, k.hiPort) {
		k.loAddr, k.hiAddr = k.hiAddr, k.loAddr
		k.loPort, k.hiPort = k.hiPort, k.loPort
	}
}

// keyLess orders endpoints by address bytes, then port; equal ones are
// not less.
func keyLess(a *[16]byte, pa uint16, b *[16]byte, pb uint16) bool {
	a0, b0 := binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(b[:8])
	if a0 != b0 {
		return a0 < b0
	}
	a1, b1 := binary.BigEndian.Uint64(a[8:]), binary.BigEndian.Uint64(b[8:])
	if a1 != b1 {
		return a1 < b1
	}
	return pa < pb
}

// endpoint is one local socket's view of a connection.
type endpoint struct {
	local    bool  // a packet of this endpoint passed a local hook
	begun    bool  // its begin was emitted
	ended    bool  // its end (or failure) was emitted
	closed   bool  // its socket's close report arrived
	synSeen  bool  // synTS is set
	synTS    int64 // first SYN it sent (outgoing) or received (incoming)
	beginTS  int64
	ctx      events.Context
	counters events.Counters
	// srcDNS and dstDNS are the names looked up at the begin; the end
	// carries the same.
	srcDNS, dstDNS []string
	// flowID is the endpoint's flow_id, given when its first event is
	// emitted.
	flowID string
}

// conn is the tracker's state for one connection. Endpoints are keyed by
// role, not by socket cookie: a listener's cookie marks the server's SYN
// and SYN-ACK while the accepted socket's cookie marks everything after, so
// only the 4-tuple and the packet direction say reliably whose packet it is.
type conn struct {
	key       connKey
	initiator netip.AddrPort // sent the SYN
	responder netip.AddrPort
	// initText and respText are the addresses rendered once per
	// connection, not once per event.
	initText, respText string
	// communityID is computed with the first event of the connection.
	communityID string
	out         endpoint // the initiator, when it is local
	in          endpoint // the responder, when it is local
	finInit     bool     // the initiator sent a FIN
	finResp     bool     // the responder sent a FIN
	rst         bool     // a reset was seen
	// failed: the attempt timed out and was reported. The conn stays, so
	// that the initiator's retransmitted SYNs and its socket's close
	// report are known to belong to it, until that report or
	// failedLinger.
	failed bool
	// lossy: records were lost while the connection was tracked, so any
	// of its records may be missing: its ends are marked incomplete, and
	// a missing SYN-ACK is not taken for a timeout.
	lossy bool
	// unresolved: the attempt timed out while lossy, and was not
	// reported; like failed, it stays until its close report (which
	// decides) or failedLinger.
	unresolved bool
	closingTS  int64 // when FIN both ways or RST was seen; 0 while open
	lastSeen   int64

	// Intrusive list ordered by lastSeen, oldest first.
	prev, next *conn
	// gen tells queue entries apart from a reused key's new connection.
	gen uint64
}

func (c *conn) endpoint(dir events.ConnDirection) *endpoint {
	if dir == events.Incoming {
		return &c.in
	}
	return &c.out
}

// begun reports whether any endpoint began.
func (c *conn) begun() bool { return c.out.begun || c.in.begun }

// synRetransmit reports whether a SYN from the initiator of this begun
// connection is its attempt's SYN again rather than a new connection on
// the same 4-tuple. Only the responder has begun (it sent a SYN-ACK), the
// initiator has not seen an answer, and nothing of a close has been seen
// on either side: the SYN-ACK was lost on the way and the initiator
// retransmits. A responder that is not closed answers such a SYN with its
// SYN-ACK again (or, established, with an ACK), never with a new
// connection, so a 4-tuple cannot be reused before it closes.
func (c *conn) synRetransmit() bool {
	return c.in.begun && !c.out.begun && !c.in.closed && !c.in.ended &&
		!c.finInit && !c.finResp && !c.rst
}

// open reports whether an endpoint that began has not ended yet.
func (c *conn) open() bool {
	return c.out.begun && !c.out.ended || c.in.begun && !c.in.ended
}

// deadline is an entry of a time-ordered queue: the connection and the
// generation it had when queued.
type deadline struct {
	c   *conn
	gen uint64
	at  int64
}

// Tracker derives flow events from net_packet_flow_base and
// net_tcp_socket_base events. It is not safe for concurrent use: one
// goroutine feeds it in the order the kernel produced the records (one
// ring buffer gives that order) and calls Tick from time to time.
type Tracker struct {
	cfg   Config
	conns map[connKey]*conn
	// last is the connection the previous lookup found or insert made
	// (nil once removed): a connection's records come in runs (a
	// handshake, a close, both ends of a loopback connection), and
	// comparing its key is cheaper than hashing it.
	last *conn
	// lossUntil is the end of the latest window records were lost in
	// (events.RecordsLost.To); 0 before any loss.
	lossUntil int64
	emit      func(events.Event)
	stats     Stats
	gen       uint64
	ids       flowIDs
	cid       communityid.Hasher

	// lru holds every connection, least recently seen first.
	head, tail *conn
	// handshakes and closings are FIFO queues: entries are appended with
	// non-decreasing deadlines, so Tick only looks at their fronts.
	handshakes []deadline
	closings   []deadline
	failures   []deadline // failed attempts kept until failedLinger

	// free holds removed connections for insert to reuse: most
	// connections are short, and a new one per connection would keep
	// every removed one alive through the deadline queues (which hold
	// them until their deadline, the SYN timeout for all) and fill the
	// heap with them. Entries still queued for a reused conn are told
	// apart by its gen.
	free []*conn

	// texts caches addresses rendered by AddrText, direct-mapped by
	// address: hosts talk to and from a few addresses most of the time.
	texts [256]addrText
}

// addrText is an address and its text.
type addrText struct {
	addr netip.Addr
	text string
}

// maxFree bounds the connections kept for reuse.
const maxFree = 4096

// NewTracker returns a tracker that hands every derived event to emit.
// The tracker never touches an event after emitting it.
func NewTracker(cfg Config, emit func(events.Event)) *Tracker {
	return &Tracker{cfg: cfg.withDefaults(), conns: make(map[connKey]*conn), emit: emit,
		ids: newFlowIDs(cfg.FlowIDSeed), cid: communityid.Hasher{Seed: cfg.CommunityIDSeed}}
}

// Stats returns the tracker's counters.
func (t *Tracker) Stats() Stats {
	s := t.stats
	s.Flows = len(t.conns)
	return s
}

// Len returns the number of connections being tracked.
func (t *Tracker) Len() int { return len(t.conns) }

// Handle consumes one event. Events other than the two base events are
// ignored, so a tracker can sit on a shared stream.
func (t *Tracker) Handle(ev events.Event) {
	switch p := ev.Payload.(type) {
	case *events.PacketFlowBase:
		t.packet(ev, p)
	case *events.TCPSocketBase:
		t.socket(ev, p)
	case *events.RecordsLost:
		t.recordsLost(p)
	}
}

// recordsLost marks every connection tracked now: records were lost while
// it was open, so any of its records may be missing. The marker may come
// before records written earlier than the lost ones (the capture counts
// losses while it drains the ring), so a connection first seen later
// with a record stamped within the loss window (up to the marker's To) is
// marked too (seen). A connection whose every record was lost is never
// tracked, and nothing is derived from it.
func (t *Tracker) recordsLost(p *events.RecordsLost) {
	t.stats.LossMarkers++
	t.lossUntil = max(t.lossUntil, p.To)
	for c := t.head; c != nil; c = c.next {
		c.lossy = true
	}
}

func (t *Tracker) packet(ev events.Event, p *events.PacketFlowBase) {
	src := netip.AddrPortFrom(p.Src.Unmap(), p.SrcPort)
	dst := netip.AddrPortFrom(p.Dst.Unmap(), p.DstPort)
	var key connKey
	key.set(src, dst)
	c := t.lookup(key)
	syn := p.Flags.Has(events.FlagSYN)

	if p.NoSocket {
		// No socket took this SYN and the kernel reset it (a closed port):
		// an attempt against this host was refused. A port scan shows up
		// this way. The initiator's own failure, when it is local too, is
		// reported when the reset reaches it.
		if syn && !p.Flags.Has(events.FlagACK) {
			ctx := ev.Context
			if c != nil && c.initiator == src {
				c.in.ended = true // reported here, not again on the reset
				ctx = c.in.ctx
				mergeContext(&ctx, ev.Context)
				t.seen(c, ev.Timestamp)
			}
			var ep *endpoint
			if c != nil && c.initiator == src {
				ep = &c.in
			}
			t.emitFailed(ev.Timestamp, src, dst, events.Incoming, ctx, events.FailRefused, c, ep)
		}
		return
	}

	switch {
	case p.Flags.Has(events.FlagRST):
		if c == nil {
			return
		}
		t.touch(c, ev, p, src, dst)
		c.rst = true
		if !c.begun() {
			t.refused(c, ev, src)
			return
		}
		t.closing(c, ev.Timestamp)

	case syn && !p.Flags.Has(events.FlagACK):
		if c != nil && (c.initiator != src || c.begun() && !c.synRetransmit()) {
			// The 4-tuple is reused: the old connection closed without
			// us seeing it end (e.g. its records were lost). Its end is
			// an eviction, counted, and incomplete: its close is missing.
			t.stats.EvictedReused++
			c.lossy = true
			t.finishAll(c, ev.Timestamp, events.CloseEvicted)
			c = nil
		}
		if c == nil {
			c = t.insert(key, src, dst, ev.Timestamp)
		}
		t.touch(c, ev, p, src, dst)
		// A retransmitted SYN keeps the first SYN's time.
		ep := &c.out
		if p.Direction == events.Ingress {
			ep = &c.in
		}
		if !ep.synSeen {
			ep.synSeen, ep.synTS = true, ev.Timestamp
		}

	case syn: // SYN-ACK
		if c == nil || c.responder != src {
			return // no SYN seen for it: flowtap started mid-handshake
		}
		if c.failed {
			// An answer after the attempt was reported as timed out:
			// the attempt stays failed.
			t.touch(c, ev, p, src, dst)
			return
		}
		t.touch(c, ev, p, src, dst)
		dir := events.Outgoing // a local connect got its answer
		if p.Direction == events.Egress {
			dir = events.Incoming // a local listener answered
		}
		if ep := c.endpoint(dir); !ep.begun {
			ep.begun, ep.beginTS = true, ev.Timestamp
			if !ep.synSeen { // the SYN passed before this endpoint's hooks saw it
				ep.synSeen, ep.synTS = true, ev.Timestamp
			}
			t.emitBegin(c, dir, ev.Timestamp)
		}

	case p.Flags.Has(events.FlagFIN):
		if c == nil {
			return
		}
		t.touch(c, ev, p, src, dst)
		if src == c.initiator {
			c.finInit = true
		} else {
			c.finResp = true
		}
		// A half-close is not an end: both directions must have closed.
		if c.finInit && c.finResp {
			t.closing(c, ev.Timestamp)
		}
	}
}

// refused reports an attempt answered by RST: the initiator's attempt
// failed (when it is local), and so did a local listener's side that
// received the SYN and reset it (e.g. an overflowing accept queue).
func (t *Tracker) refused(c *conn, ev events.Event, src netip.AddrPort) {
	if src == c.responder {
		if c.out.local && !c.out.ended {
			c.out.ended = true
			t.emitFailed(ev.Timestamp, c.initiator, c.responder, events.Outgoing, c.out.ctx, events.FailRefused, c, &c.out)
		}
		if c.in.local && !c.in.ended {
			c.in.ended = true
			t.emitFailed(ev.Timestamp, c.initiator, c.responder, events.Incoming, c.in.ctx, events.FailRefused, c, &c.in)
		}
	}
	// An initiator resetting its own attempt is not a refusal; either way
	// the attempt is over.
	t.remove(c)
}

// socket handles a socket report: a close (final counters) or a snapshot.
func (t *Tracker) socket(ev events.Event, s *events.TCPSocketBase) {
	local := netip.AddrPortFrom(s.Local.Unmap(), s.LocalPort)
	remote := netip.AddrPortFrom(s.Remote.Unmap(), s.RemotePort)
	c := t.lookup(makeKey(local, remote))
	if c == nil {
		return
	}
	dir := events.Outgoing
	if local != c.initiator {
		dir = events.Incoming
	}
	ep := c.endpoint(dir)
	ep.counters = s.Counters
	mergeContext(&ep.ctx, ev.Context)
	t.seen(c, ev.Timestamp)
	if s.Report != events.SocketClosed {
		return
	}
	ep.closed = true
	if c.failed {
		// The socket of an attempt already reported as timed out.
		t.remove(c)
		return
	}
	if c.unresolved && !ep.begun && !ep.ended {
		// An attempt that timed out while records were lost: its
		// socket's last state says what happened.
		if dir == events.Outgoing && s.State == tcpSynSent {
			t.emitFailed(ev.Timestamp, c.initiator, c.responder, events.Outgoing, ep.ctx, events.FailTimeout, c, ep)
			ep.ended = true
		} else if s.State != tcpSynSent && s.State != tcpSynRecv && s.State != tcpListen {
			// It was established: its begin was among the records
			// lost. Report the flow, incomplete.
			ep.begun, ep.beginTS = true, ep.synTS
			t.emitBegin(c, dir, ep.synTS)
			reason := events.CloseFIN
			if c.rst || abortive(s.State) {
				reason = events.CloseRST
			}
			t.finish(c, dir, ev.Timestamp, reason)
		}
		if !c.open() && (c.out.ended || !c.out.local) && (c.in.ended || !c.in.local) {
			t.remove(c)
		}
		return
	}
	switch {
	case ep.begun && !ep.ended:
		reason := events.CloseFIN
		if c.rst || abortive(s.State) {
			reason = events.CloseRST
		}
		t.finish(c, dir, ev.Timestamp, reason)
		if !c.open() {
			t.remove(c)
		}
	case !ep.begun && !ep.ended && dir == events.Outgoing && s.State == tcpSynSent:
		// connect() gave up before any answer came.
		t.emitFailed(ev.Timestamp, c.initiator, c.responder, events.Outgoing, ep.ctx, events.FailTimeout, c, ep)
		ep.ended = true
		if !c.open() {
			t.remove(c)
		}
	}
}

// abortive reports whether a socket leaving state for TCP_CLOSE means it
// was reset or aborted rather than closed with FIN both ways.
func abortive(state uint8) bool {
	switch state {
	case tcpLastAck, tcpFinWait2, tcpClosing, tcpTimeWait:
		return false
	}
	return true
}

// touch records a packet against the local endpoint it belongs to: egress
// packets belong to their sender, ingress packets to their receiver.
func (t *Tracker) touch(c *conn, ev events.Event, p *events.PacketFlowBase, src, dst netip.AddrPort) {
	local := src
	if p.Direction == events.Ingress {
		local = dst
	}
	ep := &c.in
	if local == c.initiator {
		ep = &c.out
	}
	ep.local = true
	mergeContext(&ep.ctx, ev.Context)
	// SYN and SYN-ACK of an incoming flow pass on the listener: its
	// counters are not the flow's. Later packets carry the socket's own.
	if !p.Flags.Has(events.FlagSYN) {
		ep.counters = p.Counters
	}
	t.seen(c, ev.Timestamp)
}

// mergeContext updates ctx with what next knows: the latest socket
// cookie wins (an accepted socket's over its listener's), while process
// details are only replaced by known ones.
func mergeContext(ctx *events.Context, next events.Context) {
	if next.SocketCookie != 0 {
		ctx.SocketCookie = next.SocketCookie
	}
	if next.CgroupID != 0 {
		ctx.CgroupID = next.CgroupID
	}
	if next.PID != 0 {
		ctx.PID, ctx.UID, ctx.Comm = next.PID, next.UID, next.Comm
		ctx.PPID, ctx.ProcessStart, ctx.Exe = next.PPID, next.ProcessStart, next.Exe
	}
	if next.HostName != "" {
		ctx.HostName = next.HostName
	}
}

// closing marks a connection closed on the wire. Endpoints still open end
// when their socket's close report arrives, or after CloseGrace.
func (t *Tracker) closing(c *conn, ts int64) {
	if c.closingTS != 0 {
		return
	}
	c.closingTS = ts
	t.closings = t.enqueue(t.closings, deadline{c, c.gen, ts + int64(t.cfg.CloseGrace)})
}

// Tick advances the tracker's clock to now (ns since the Unix epoch):
// attempts past the SYN timeout fail, closed connections whose socket
// reports did not come end, idle connections are evicted.
func (t *Tracker) Tick(now int64) {
	for len(t.handshakes) > 0 && t.handshakes[0].at <= now {
		d := t.handshakes[0]
		t.handshakes = t.handshakes[1:]
		c := d.c
		if c.gen != d.gen || t.conns[c.key] != c || c.begun() {
			continue
		}
		if c.lossy {
			// No SYN-ACK was seen, but records were lost meanwhile: the
			// SYN-ACK may be among them. Not a failure until its
			// socket's close report says so.
			t.stats.Unresolved++
			c.unresolved = true
			t.failures = append(t.failures, deadline{c, c.gen, now + int64(failedLinger)})
			continue
		}
		// No SYN-ACK in time: each local side of the attempt failed.
		if c.out.local && !c.out.ended {
			c.out.ended = true
			t.emitFailed(now, c.initiator, c.responder, events.Outgoing, c.out.ctx, events.FailTimeout, c, &c.out)
		}
		if c.in.local && !c.in.ended {
			c.in.ended = true
			t.emitFailed(now, c.initiator, c.responder, events.Incoming, c.in.ctx, events.FailTimeout, c, &c.in)
		}
		// The initiator goes on retransmitting its SYN (the kernel's
		// default, for about two minutes): those belong to this attempt,
		// which must not start again and fail once more.
		c.failed = true
		t.failures = t.enqueue(t.failures, deadline{c, c.gen, now + int64(failedLinger)})
	}
	for len(t.failures) > 0 && t.failures[0].at <= now {
		d := t.failures[0]
		t.failures = t.failures[1:]
		if c := d.c; c.gen == d.gen && t.conns[c.key] == c && (c.failed || c.unresolved && !c.open()) {
			t.remove(c)
		}
	}
	if len(t.failures) == 0 {
		t.failures = nil
	}
	for len(t.closings) > 0 && t.closings[0].at <= now {
		d := t.closings[0]
		t.closings = t.closings[1:]
		c := d.c
		if c.gen != d.gen || t.conns[c.key] != c {
			continue
		}
		reason := events.CloseFIN
		if c.rst {
			reason = events.CloseRST
		}
		t.stats.CloseMissing += uint64(t.finishAll(c, now, reason))
	}
	idle := now - int64(t.cfg.IdleTimeout)
	for t.head != nil && t.head.lastSeen <= idle {
		t.stats.EvictedIdle++
		t.finishAll(t.head, now, events.CloseEvicted)
	}
	if len(t.handshakes) == 0 {
		t.handshakes = nil // let the backing array go
	}
	if len(t.closings) == 0 {
		t.closings = nil
	}
}

// NextDeadline returns the earliest time (ns since the Unix epoch) at
// which Tick has something to do: a SYN timeout, a close grace, the end of
// a failed attempt's memory or an idle eviction; ok is false when nothing
// is pending. Entries of connections already forgotten can make it earlier
// than needed: a Tick then only drops them, so ticking at each deadline in
// turn always makes progress. A producer that replays recorded time
// (replay/) ticks exactly at each deadline its timestamps pass, instead of
// at a wall-clock interval.
func (t *Tracker) NextDeadline() (next int64, ok bool) {
	consider := func(at int64) {
		if !ok || at < next {
			next, ok = at, true
		}
	}
	for _, q := range [...][]deadline{t.handshakes, t.failures, t.closings} {
		if len(q) > 0 {
			consider(q[0].at)
		}
	}
	if t.head != nil {
		consider(t.head.lastSeen + int64(t.cfg.IdleTimeout))
	}
	return next, ok
}

// Close ends every flow still open, as when flowtap stops: each begun
// endpoint gets its end with reason shutdown.
func (t *Tracker) Close(now int64) {
	for t.head != nil {
		t.finishAll(t.head, now, events.CloseShutdown)
	}
	t.handshakes, t.closings = nil, nil
}

// insert adds a new connection, evicting the least recently seen one when
// the table is full.
func (t *Tracker) insert(key connKey, initiator, responder netip.AddrPort, ts int64) *conn {
	if len(t.conns) >= t.cfg.MaxFlows && t.head != nil {
		t.stats.EvictedFull++
		t.finishAll(t.head, ts, events.CloseEvicted)
	}
	t.gen++
	var c *conn
	if n := len(t.free); n > 0 {
		c, t.free = t.free[n-1], t.free[:n-1]
	} else {
		c = new(conn)
	}
	*c = conn{key: key, initiator: initiator, responder: responder, gen: t.gen, lastSeen: ts, lossy: t.lossUntil != 0 && ts <= t.lossUntil,
		initText: t.addrText(initiator.Addr()), respText: t.addrText(responder.Addr())}
	t.conns[key] = c
	t.last = c
	t.pushBack(c)
	t.handshakes = t.enqueue(t.handshakes, deadline{c, c.gen, ts + int64(t.cfg.SYNTimeout)})
	return c
}

// enqueue appends d to the deadline queue q. Entries stay queued until
// their deadline even when their connection is gone (removed, its conn
// reused for another), which Tick skips: at a high connection rate a SYN
// timeout's worth of them would outgrow MaxFlows. When q holds twice the
// table's bound, enqueue drops the entries whose connection is gone, so
// the queues, like the table, stay bounded by MaxFlows whatever the rate.
// The order of the rest, and so the queue's, is kept.
func (t *Tracker) enqueue(q []deadline, d deadline) []deadline {
	if len(q) >= 2*max(t.cfg.MaxFlows, 1024) {
		live := q[:0]
		for _, e := range q {
			if e.c.gen == e.gen && t.conns[e.c.key] == e.c {
				live = append(live, e)
			}
		}
		clear(q[len(live):])
		q = live
	}
	return append(q, d)
}

// addrText is events.AddrText(a), from the cache when it has a.
func (t *Tracker) addrText(a netip.Addr) string {
	b := a.As16()
	h := (binary.LittleEndian.Uint64(b[:8]) ^ binary.LittleEndian.Uint64(b[8:])) * 0x9e3779b97f4a7c15
	e := &t.texts[h>>(64-8)]
	if e.text == "" || e.addr != a {
		e.addr, e.text = a, events.AddrText(a)
	}
	return e.text
}

// seen moves c to the back of the LRU list, and marks it lossy if ts is
// within a window records were lost in.
func (t *Tracker) seen(c *conn, ts int64) {
	if ts > c.lastSeen {
		c.lastSeen = ts
	}
	if t.lossUntil != 0 && ts <= t.lossUntil {
		c.lossy = true
	}
	if t.tail == c {
		return
	}
	t.unlink(c)
	t.pushBack(c)
}

func (t *Tracker) pushBack(c *conn) {
	c.prev, c.next = t.tail, nil
	if t.tail != nil {
		t.tail.next = c
	} else {
		t.head = c
	}
	t.tail = c
}

func (t *Tracker) unlink(c *conn) {
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		t.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		t.tail = c.prev
	}
	c.prev, c.next = nil, nil
}

// lookup returns the connection of key, nil when there is none.
func (t *Tracker) lookup(key connKey) *conn {
	if c := t.last; c != nil && c.key == key {
		return c
	}
	c := t.conns[key]
	if c != nil {
		t.last = c
	}
	return c
}

// remove forgets c, and keeps it for reuse. The caller must not use c
// afterwards.
func (t *Tracker) remove(c *conn) {
	if t.last == c {
		t.last = nil
	}
	if t.conns[c.key] == c {
		delete(t.conns, c.key)
		t.unlink(c)
		if len(t.free) < maxFree {
			t.free = append(t.free, c)
		}
	}
	c.gen = 0 // invalidates queue entries
}

// finishAll ends every endpoint of c that began and has not ended, and
// forgets c. It returns how many ends it emitted.
func (t *Tracker) finishAll(c *conn, ts int64, reason events.CloseReason) int {
	n := 0
	for _, dir := range [2]events.ConnDirection{events.Outgoing, events.Incoming} {
		if ep := c.endpoint(dir); ep.begun && !ep.ended {
			t.finish(c, dir, ts, reason)
			n++
		}
	}
	t.remove(c)
	return n
}

func (t *Tracker) flow(c *conn, dir events.ConnDirection) events.Flow {
	ep := c.endpoint(dir)
	return events.Flow{
		SrcDNS:      ep.srcDNS,
		DstDNS:      ep.dstDNS,
		Direction:   dir,
		Src:         c.initiator.Addr(),
		Dst:         c.responder.Addr(),
		SrcPort:     c.initiator.Port(),
		DstPort:     c.responder.Port(),
		SrcText:     c.initText,
		DstText:     c.respText,
		FlowID:      t.flowID(ep),
		CommunityID: t.communityID(c),
	}
}

// flowID returns the endpoint's flow_id, giving it one on first use.
func (t *Tracker) flowID(ep *endpoint) string {
	if ep.flowID == "" {
		ep.flowID = t.ids.id()
	}
	return ep.flowID
}

// communityID returns the connection's community_id, computing it on
// first use: once per connection, not once per event.
func (t *Tracker) communityID(c *conn) string {
	if c.communityID == "" {
		c.communityID = t.cid.TCP(c.initiator.Addr(), c.responder.Addr(), c.initiator.Port(), c.responder.Port())
	}
	return c.communityID
}

func (t *Tracker) emitBegin(c *conn, dir events.ConnDirection, ts int64) {
	ep := c.endpoint(dir)
	ep.srcDNS = t.names(c.initiator.Addr(), ep.ctx.CgroupID, ts)
	ep.dstDNS = t.names(c.responder.Addr(), ep.ctx.CgroupID, ts)
	t.stats.Begun++
	t.emit(events.Event{
		ID: events.IDNetFlowTCPBegin, Timestamp: ts, Context: ep.ctx,
		Payload: &events.FlowBegin{Flow: t.flow(c, dir), HandshakeNs: uint64(ts - ep.synTS)},
	})
}

func (t *Tracker) finish(c *conn, dir events.ConnDirection, ts int64, reason events.CloseReason) {
	ep := c.endpoint(dir)
	ep.ended = true
	var dur uint64
	if ts > ep.beginTS {
		dur = uint64(ts - ep.beginTS)
	}
	t.stats.Ended++
	if c.lossy {
		t.stats.Incomplete++
	}
	t.emit(events.Event{
		ID: events.IDNetFlowTCPEnd, Timestamp: ts, Context: ep.ctx,
		Payload: &events.FlowEnd{Flow: t.flow(c, dir), DurationNs: dur, Counters: ep.counters, Reason: reason, Incomplete: c.lossy},
	})
}

// emitFailed reports a failed attempt of the local endpoint ep of c; c and
// ep are nil for an attempt no connection was kept for (a SYN to a closed
// port).
func (t *Tracker) emitFailed(ts int64, initiator, responder netip.AddrPort, dir events.ConnDirection, ctx events.Context,
	reason events.FailReason, c *conn, ep *endpoint) {
	t.stats.Failed++
	var flowID, cid string
	if ep != nil {
		flowID = t.flowID(ep)
	} else {
		flowID = t.ids.id()
	}
	if c != nil {
		cid = t.communityID(c)
	} else {
		cid = t.cid.TCP(initiator.Addr(), responder.Addr(), initiator.Port(), responder.Port())
	}
	t.emit(events.Event{
		ID: events.IDNetFlowTCPFailed, Timestamp: ts, Context: ctx,
		Payload: &events.FlowFailed{Flow: events.Flow{
			Direction:   dir,
			Src:         initiator.Addr(),
			Dst:         responder.Addr(),
			SrcPort:     initiator.Port(),
			DstPort:     responder.Port(),
			SrcDNS:      t.names(initiator.Addr(), ctx.CgroupID, ts),
			DstDNS:      t.names(responder.Addr(), ctx.CgroupID, ts),
			SrcText:     t.addrText(initiator.Addr()),
			DstText:     t.addrText(responder.Addr()),
			FlowID:      flowID,
			CommunityID: cid,
		}, Reason: reason},
	})
}

// names looks addr up in the resolver, if there is one; nil when it has
// no name.
func (t *Tracker) names(addr netip.Addr, workload uint64, ts int64) []string {
	if t.cfg.Names == nil {
		return nil
	}
	return t.cfg.Names.AppendNames(nil, addr, workload, ts)
}
