// SPDX-License-Identifier: Apache-2.0

// Package replay is flowtap's second base producer: it reads a capture
// file (classic pcap or pcapng) and builds from it the base events the
// kernel programs produce (net_packet_flow_base for SYN, SYN-ACK, FIN and
// RST packets, net_packet_dns_base for port-53 payloads), so that
// derivation, pipelines and sinks run without root and without BPF. See
// README.md for what a capture can and cannot tell.
package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/flowtap/flowtap/bpf/limits"
	"github.com/flowtap/flowtap/derive"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/slab"
)

// CloseGrace is the flow tracker's close grace for a replay: the tracker
// waits that long after FIN both ways (or a RST) for the socket's close
// report, which a capture never has, so there is nothing to wait for.
const CloseGrace = time.Nanosecond

// maxLogged is how many bad packets are logged; the rest are counted.
const maxLogged = 10

// Snapshots made up for gaps in the capture's time (the rounds after the
// first that one packet's timestamp makes due) are bounded over the whole
// file to gapEventsBase + gapEventsPerPacket per packet read: a day's gap
// with 1,000 open connections (2,000 packets at least) takes 864 rounds,
// 1.7 million snapshots of both ends, within the bound; a corrupt file
// whose every timestamp jumps by years must not take hours.
const (
	gapEventsBase      = 1 << 16
	gapEventsPerPacket = 1024
)

// spareBatches is how many recycled batches a Producer keeps for reuse:
// enough for a consumer that holds several (the pipeline's hand-off
// between reading and derivation holds up to 8).
const spareBatches = 16

// Options configure a Producer.
type Options struct {
	// Name names the input in errors and logs: the file name, or "-".
	Name string
	// Local are the networks of the host(s) whose view the replay takes: a
	// packet from a local address is an egress record of its sender, a
	// packet to one an ingress record of its receiver (both when both
	// ends are local, as on loopback). Empty means every address is
	// local: each connection is then reported from both ends.
	Local []netip.Prefix
	// DNS makes port-53 payloads into net_packet_dns_base events, as the
	// kernel's DNS capture does.
	DNS bool
	// SnapshotEvery is how often (capture time) the producer reports its
	// open connections' counters as net_tcp_socket_base snapshots, as the
	// live pipeline asks the kernel to: this keeps live connections from
	// idle eviction. Default: derive.Config's SnapshotInterval
	// for the default idle timeout (100 s), as the live pipeline.
	SnapshotEvery time.Duration
	// MaxConns bounds the connections whose counters are kept; the least
	// recently seen is dropped beyond it. Default derive.DefaultMaxFlows.
	MaxConns int
	// Logger receives what the replay has to say; nil discards it.
	Logger hclog.Logger
}

// Stats are a replay's counters. Every packet read is counted in Packets
// and in exactly one of Used, NotIP, OtherProtocol, Fragments, NotLocal,
// Snaplen, Malformed and UnknownLinkType.
type Stats struct {
	Packets uint64 // packets read from the file
	Used    uint64 // TCP or UDP packets with a local end
	Events  uint64 // base events produced, snapshots included
	// NotIP: neither IPv4 nor IPv6 (ARP, LLDP, ...); OtherProtocol: IP
	// but neither TCP nor UDP (ICMP, ...); Fragments: non-first IP
	// fragments (no TCP or UDP header); NotLocal: TCP or UDP with neither
	// end in Options.Local.
	NotIP, OtherProtocol, Fragments, NotLocal uint64
	// Snaplen counts packets whose headers the capture's snapshot length
	// cut; Malformed packets whose headers contradict themselves, and
	// records of the file that could not be used.
	Snaplen, Malformed uint64
	// UnknownLinkType counts packets of interfaces with a link type the
	// decoder does not read (each type is named in the log once).
	UnknownLinkType uint64
	// SkippedBlocks counts pcapng blocks of kinds the replay does not use.
	SkippedBlocks uint64
	// OutOfWindow counts segments whose sequence number jumped more than
	// a TCP window ahead: their payload is not counted.
	OutOfWindow uint64
	// Evicted counts connections whose counters were dropped because
	// MaxConns were open at once.
	Evicted uint64
}

// Producer replays one capture file. RunBatches reads it once; a Producer
// is not safe for concurrent use.
type Producer struct {
	in    io.Reader
	rd    *Reader // once the file header is read (Open)
	opts  Options
	log   hclog.Logger
	conns *connTable
	stats Stats
	pkt   packet
	// packets is the slab the packet records' payloads are carved from.
	packets []events.PacketFlowBase

	// Base events are built into batch and handed to emit when it is full.
	batch []events.Event
	max   int
	emit  func([]events.Event)
	spare chan []events.Event

	started   bool
	last      int64  // latest timestamp read
	nextSnap  int64  // capture time of the next snapshot round
	gapEvents uint64 // snapshots made up for gaps (gapEventsBase)
	gapWarned bool
	logged    int
	links     map[uint32]bool // unknown link types named in the log
}

// New returns a Producer that reads a capture file from in.
func New(in io.Reader, opts Options) *Producer {
	if opts.SnapshotEvery <= 0 {
		opts.SnapshotEvery = derive.Config{}.SnapshotInterval()
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = derive.DefaultMaxFlows
	}
	if opts.Name == "" {
		opts.Name = "-"
	}
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Producer{in: in, opts: opts, log: log, conns: newConnTable(opts.MaxConns),
		spare: make(chan []events.Event, spareBatches), links: map[uint32]bool{}}
}

// ParseLocal parses --local values: CIDR prefixes or single addresses,
// each value possibly a comma-separated list.
func ParseLocal(values []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range values {
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if a, err := netip.ParseAddr(s); err == nil {
				out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
				continue
			}
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("local address %q: want a CIDR prefix such as 10.0.0.0/8 or fd00::/8, or an address: %w", s, err)
			}
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				// ::ffff:10.0.0.0/104 is 10.0.0.0/8: addresses are matched unmapped.
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			out = append(out, p.Masked())
		}
	}
	return out, nil
}

// Stats returns the replay's counters; call it after RunBatches returned.
func (p *Producer) Stats() Stats {
	s := p.stats
	s.Evicted, s.OutOfWindow = p.conns.evicted, p.conns.outOfWindow
	return s
}

// End returns the capture time at which the replay ends: just after the
// last packet (CloseGrace after it), so that a connection whose closing
// packet is the file's last still ends as closed, not by shutdown. It is
// 0 when the file had no packet. Call it after RunBatches returned.
func (p *Producer) End() int64 {
	if !p.started {
		return 0
	}
	return p.last + int64(CloseGrace)
}

// RunBatches reads the whole file and hands its base events to emit in
// batches of at most max, in the file's order. At the end of the file it
// reports the connections still open (snapshots with their counters) and
// returns nil. A file that is no capture file, or that ends inside a
// record, is an error (after everything before was delivered); bad
// packets are counted (Stats) and the first few logged. When ctx ends it
// stops reading and returns nil. emit may keep a batch until it calls
// Recycle.
func (p *Producer) RunBatches(ctx context.Context, size int, emit func([]events.Event)) error {
	p.max, p.emit = max(size, 1), emit
	p.batch = p.nextBatch()
	err := p.run(ctx)
	if p.started {
		p.snapshot(p.last) // as the live pipeline at its stop
	}
	p.flush()
	if err != nil {
		return fmt.Errorf("replay %s: %w", p.opts.Name, err)
	}
	return nil
}

// Open reads the file header, so that a file that is not a capture fails
// before anything else starts; RunBatches does it if Open was not called.
func (p *Producer) Open() error {
	if err := p.open(); err != nil {
		return fmt.Errorf("replay %s: %w", p.opts.Name, err)
	}
	return nil
}

func (p *Producer) open() error {
	if p.rd != nil {
		return nil
	}
	rd, err := NewReader(p.in)
	if err != nil {
		return err
	}
	p.rd = rd
	return nil
}

func (p *Producer) run(ctx context.Context) error {
	if err := p.open(); err != nil {
		return err
	}
	rd := p.rd
	local := "every address (no --local given: each connection is reported from both ends)"
	if len(p.opts.Local) > 0 {
		local = fmt.Sprint(p.opts.Local)
	}
	p.log.Info("replaying", "file", p.opts.Name, "format", rd.Format(), "local", local, "dns", p.opts.DNS)
	defer func() { p.stats.SkippedBlocks = rd.SkippedBlocks() }()
	var pk Packet
	for n := 0; ; n++ {
		if n%1024 == 0 && ctx.Err() != nil {
			p.log.Warn("replay stopped before the end of the file", "file", p.opts.Name, "packets", p.stats.Packets)
			return nil
		}
		err := rd.Next(&pk)
		if err == nil {
			p.packet(&pk)
			continue
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		var re *RecordError // declared here: it escapes, and allocates
		if !errors.As(err, &re) {
			return err
		}
		p.stats.Packets++
		p.stats.Malformed++
		p.problem(re.Number, re.Offset, re.Reason)
	}
}

// packet turns one captured packet into base events.
func (p *Producer) packet(pk *Packet) {
	p.stats.Packets++
	p.advance(pk.Timestamp)
	d := &p.pkt
	if err := decodePacket(pk.LinkType, pk.Data, pk.WireLen, d); err != nil {
		p.skip(pk, err)
		return
	}
	srcLocal, dstLocal := p.local(d.src), p.local(d.dst)
	if !srcLocal && !dstLocal {
		p.stats.NotLocal++
		return
	}
	p.stats.Used++
	var c *connState
	from := 0
	if d.proto == protoTCP {
		c, from = p.conns.update(d, pk.Timestamp)
	}
	// As the kernel: the sender's egress hook, then the receiver's
	// ingress hook; each sees the DNS payload first, then the flow.
	if srcLocal {
		p.hook(events.Egress, c, from, pk.Timestamp)
	}
	if dstLocal {
		p.hook(events.Ingress, c, 1-from, pk.Timestamp)
	}
}

// hook makes what one local end's hook would record of the packet just
// decoded: end is that end's index in c (nil when not counted).
func (p *Producer) hook(dir events.PacketDirection, c *connState, end int, ts int64) {
	d := &p.pkt
	if p.opts.DNS && (d.sport == 53 || d.dport == 53) && d.payloadLen > 0 {
		captured := d.payload[:min(len(d.payload), limits.DNSMaxPayload)]
		ev := &events.PacketDNSBase{
			DNSPacket: events.DNSPacket{Direction: dir, Proto: events.DNSOverUDP, Src: d.src, Dst: d.dst, SrcPort: d.sport, DstPort: d.dport},
			Length:    d.payloadLen,
			Truncated: uint32(len(captured)) < d.payloadLen,
			Payload:   append([]byte(nil), captured...),
		}
		if d.proto == protoTCP {
			ev.Proto = events.DNSOverTCP
		}
		p.add(events.Event{ID: events.IDNetPacketDNSBase, Timestamp: ts, Payload: ev})
	}
	if d.proto != protoTCP || d.flags&(events.FlagSYN|events.FlagFIN|events.FlagRST) == 0 {
		return // data packets only count
	}
	ev := slab.Carve(&p.packets)
	*ev = events.PacketFlowBase{Direction: dir, Src: d.src, Dst: d.dst, SrcPort: d.sport, DstPort: d.dport, Flags: d.flags, Length: d.ipLen}
	if c != nil {
		ev.Counters = c.counters(end)
	}
	p.add(events.Event{ID: events.IDNetPacketFlowBase, Timestamp: ts, Payload: ev})
}

// local reports whether a is in Options.Local (every address when empty).
func (p *Producer) local(a netip.Addr) bool {
	if len(p.opts.Local) == 0 {
		return true
	}
	a = a.Unmap()
	for _, pf := range p.opts.Local {
		if pf.Contains(a) {
			return true
		}
	}
	return false
}

// advance moves the capture's time to ts: the snapshot rounds due by then
// come first. Time never runs back (a record older than the last one
// keeps its own timestamp, but moves nothing).
func (p *Producer) advance(ts int64) {
	every := int64(p.opts.SnapshotEvery)
	if !p.started {
		p.started, p.last, p.nextSnap = true, ts, ts+every
		return
	}
	if ts <= p.last {
		return
	}
	p.last = ts
	for rounds := 0; p.nextSnap <= ts; rounds++ {
		if p.conns.open == 0 || rounds > 0 && p.gapEvents >= gapEventsBase+gapEventsPerPacket*p.stats.Packets {
			if p.conns.open > 0 && !p.gapWarned {
				p.gapWarned = true
				p.log.Warn("the capture's time jumps too often: open connections are no longer reported through its gaps, so the flow tracker may evict them as idle",
					"at", time.Unix(0, ts).UTC().Format(time.RFC3339Nano), "snapshots_for_gaps", p.gapEvents)
			}
			p.nextSnap += ((ts-p.nextSnap)/every + 1) * every
			return
		}
		n := p.snapshot(p.nextSnap)
		if rounds > 0 {
			p.gapEvents += n
		}
		p.nextSnap += every
	}
}

// snapshot reports every open connection's local ends with their
// counters, as the kernel's socket snapshots do, and returns how many.
func (p *Producer) snapshot(ts int64) uint64 {
	var n uint64
	for c := p.conns.lru.front(); c != nil; c = p.conns.lru.next(c) {
		if !c.open() {
			continue
		}
		for i, end := range c.ends {
			if !p.local(end.Addr()) {
				continue
			}
			peer := c.ends[1-i]
			n++
			p.add(events.Event{ID: events.IDNetTCPSocketBase, Timestamp: ts, Payload: &events.TCPSocketBase{
				Report: events.SocketSnapshot, Local: end.Addr(), Remote: peer.Addr(), LocalPort: end.Port(), RemotePort: peer.Port(),
				State: c.state(i), Counters: c.counters(i),
			}})
		}
	}
	return n
}

// skip counts a packet the decoder could not use, and logs it if it is
// bad input.
func (p *Producer) skip(pk *Packet, err error) {
	var de *decodeError
	if !errors.As(err, &de) {
		de = &decodeError{kindMalformed, err.Error()}
	}
	switch de.kind {
	case kindNotIP:
		p.stats.NotIP++
	case kindOtherProto:
		p.stats.OtherProtocol++
	case kindFragment:
		p.stats.Fragments++
	case kindSnaplen:
		p.stats.Snaplen++
		p.problem(pk.Number, pk.Offset, de.reason)
	case kindMalformed:
		p.stats.Malformed++
		p.problem(pk.Number, pk.Offset, de.reason)
	case kindUnknownLink:
		p.stats.UnknownLinkType++
		if !p.links[pk.LinkType] && len(p.links) < 64 {
			p.links[pk.LinkType] = true
			p.log.Warn("packets of an unknown link type are skipped (counted)", "file", p.opts.Name, "link_type", pk.LinkType, "first_packet", pk.Number)
		}
	}
}

// problem logs a bad packet, the first maxLogged of them.
func (p *Producer) problem(number uint64, offset int64, reason string) {
	p.logged++
	if p.logged > maxLogged {
		return
	}
	p.log.Warn("bad packet skipped", "file", p.opts.Name, "packet", number, "offset", offset, "problem", reason)
	if p.logged == maxLogged {
		p.log.Warn("further bad packets are counted, not logged", "file", p.opts.Name)
	}
}

func (p *Producer) add(ev events.Event) {
	p.stats.Events++
	p.batch = append(p.batch, ev)
	if len(p.batch) >= p.max {
		p.flush()
	}
}

func (p *Producer) flush() {
	if len(p.batch) > 0 {
		p.emit(p.batch)
		p.batch = p.nextBatch()
	}
}

func (p *Producer) nextBatch() []events.Event {
	select {
	case b := <-p.spare:
		if cap(b) >= p.max {
			return b[:0]
		}
	default:
	}
	return make([]events.Event, 0, p.max)
}

// Recycle hands back a batch RunBatches emitted, once its consumer is done
// with it, for a later batch to reuse. Recycling is optional, and safe
// from another goroutine than RunBatches' (a consumer that derives
// beside the reading, as the pipeline does).
func (p *Producer) Recycle(batch []events.Event) {
	clear(batch)
	select {
	case p.spare <- batch[:0]:
	default:
	}
}
