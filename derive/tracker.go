// Package derive turns base events into derived ones. Its flow tracker
// follows TCP handshakes and teardowns seen by the kernel programs and emits
// net_flow_tcp_begin and net_flow_tcp_end once per local endpoint.
package derive

import (
	"net/netip"

	"github.com/flowtap/flowtap/events"
)

// connKey identifies a TCP connection independently of packet direction:
// the two endpoints in canonical order. Addresses are unmapped, so a
// dual-stack socket's IPv4-mapped packets and plain IPv4 packets agree.
type connKey struct {
	lo, hi netip.AddrPort
}

func makeKey(a, b netip.AddrPort) connKey {
	if a.Compare(b) <= 0 {
		return connKey{a, b}
	}
	return connKey{b, a}
}

// endpoint is one local socket's view of a connection.
type endpoint struct {
	begun bool
	ctx   events.Context
}

// conn is the tracker's state for one connection. Endpoints are keyed by
// role, not by socket cookie: a listener's cookie marks the server's SYN
// and SYN-ACK while the accepted socket's cookie marks everything after, so
// only the 4-tuple and the packet direction say reliably whose packet it is.
type conn struct {
	initiator netip.AddrPort // sent the SYN
	responder netip.AddrPort
	out       endpoint // the initiator, when it is local
	in        endpoint // the responder, when it is local
	finInit   bool     // the initiator sent a FIN
	finResp   bool     // the responder sent a FIN
}

// Tracker derives flow events from net_packet_flow_base events. It is not
// safe for concurrent use: one goroutine feeds it, in the order the kernel
// produced the records (one ring buffer gives that order).
type Tracker struct {
	conns map[connKey]*conn
	emit  func(events.Event)
}

// NewTracker returns a tracker that hands every derived event to emit.
// emit must not retain the event's payload beyond its own use if it
// intends to modify it; the tracker never touches an event after emitting.
func NewTracker(emit func(events.Event)) *Tracker {
	return &Tracker{conns: make(map[connKey]*conn), emit: emit}
}

// Len returns the number of connections being tracked.
func (t *Tracker) Len() int { return len(t.conns) }

// Handle consumes one event. Events other than net_packet_flow_base are
// ignored, so a tracker can sit on a shared stream.
func (t *Tracker) Handle(ev events.Event) {
	p, ok := ev.Payload.(*events.PacketFlowBase)
	if !ok {
		return
	}
	src := netip.AddrPortFrom(p.Src.Unmap(), p.SrcPort)
	dst := netip.AddrPortFrom(p.Dst.Unmap(), p.DstPort)
	key := makeKey(src, dst)
	c := t.conns[key]

	switch {
	case p.Flags.Has(events.FlagRST):
		// An RST ends whatever began; an attempt that never began just
		// goes away (failed attempts are reported by a later stage).
		if c != nil {
			t.touch(c, ev, p.Direction)
			t.finish(key, c, ev.Timestamp)
		}

	case p.Flags.Has(events.FlagSYN) && !p.Flags.Has(events.FlagACK):
		if c != nil && (c.initiator != src || c.out.begun || c.in.begun) {
			// The 4-tuple is being reused: the old connection closed
			// without us seeing both FINs (e.g. into TIME_WAIT).
			t.finish(key, c, ev.Timestamp)
			c = nil
		}
		if c == nil {
			c = &conn{initiator: src, responder: dst}
			t.conns[key] = c
		}
		// A retransmitted SYN lands here too and changes nothing but the
		// context, which stays that of the same socket.
		t.touch(c, ev, p.Direction)

	case p.Flags.Has(events.FlagSYN | events.FlagACK):
		if c == nil || c.responder != src {
			return // no SYN seen for it: flowtap started mid-handshake
		}
		t.touch(c, ev, p.Direction)
		switch p.Direction {
		case events.Egress: // a local listener answered: incoming begins
			if !c.in.begun {
				c.in.begun = true
				t.emitFlow(c, events.Incoming, ev.Timestamp, true)
			}
		case events.Ingress: // a local connect got its answer: outgoing begins
			if !c.out.begun {
				c.out.begun = true
				t.emitFlow(c, events.Outgoing, ev.Timestamp, true)
			}
		}

	case p.Flags.Has(events.FlagFIN):
		if c == nil {
			return
		}
		t.touch(c, ev, p.Direction)
		if src == c.initiator {
			c.finInit = true
		} else {
			c.finResp = true
		}
		// A half-close is not an end: both directions must have closed.
		if c.finInit && c.finResp {
			t.finish(key, c, ev.Timestamp)
		}
	}
}

// touch records the context of the local endpoint a packet belongs to:
// egress packets belong to their sender, ingress packets to their receiver.
// The latest context wins, so an incoming flow's end carries the accepted
// socket's cookie rather than the listener's.
func (t *Tracker) touch(c *conn, ev events.Event, dir events.PacketDirection) {
	p := ev.Payload.(*events.PacketFlowBase)
	local := netip.AddrPortFrom(p.Src.Unmap(), p.SrcPort)
	if dir == events.Ingress {
		local = netip.AddrPortFrom(p.Dst.Unmap(), p.DstPort)
	}
	if local == c.initiator {
		c.out.ctx = ev.Context
	} else {
		c.in.ctx = ev.Context
	}
}

// finish emits an end for every endpoint of c that began, and forgets c.
func (t *Tracker) finish(key connKey, c *conn, ts int64) {
	if c.out.begun {
		t.emitFlow(c, events.Outgoing, ts, false)
	}
	if c.in.begun {
		t.emitFlow(c, events.Incoming, ts, false)
	}
	delete(t.conns, key)
}

// Close ends every flow still open, as when flowtap stops: each begun
// endpoint gets its end, so no begin is left without one.
func (t *Tracker) Close(ts int64) {
	for key, c := range t.conns {
		t.finish(key, c, ts)
	}
}

func (t *Tracker) emitFlow(c *conn, dir events.ConnDirection, ts int64, begin bool) {
	ep := &c.out
	if dir == events.Incoming {
		ep = &c.in
	}
	f := events.Flow{
		Direction: dir,
		Src:       c.initiator.Addr(),
		Dst:       c.responder.Addr(),
		SrcPort:   c.initiator.Port(),
		DstPort:   c.responder.Port(),
	}
	ev := events.Event{Timestamp: ts, Context: ep.ctx}
	if begin {
		ev.ID, ev.Payload = events.IDNetFlowTCPBegin, &events.FlowBegin{Flow: f}
	} else {
		ev.ID, ev.Payload = events.IDNetFlowTCPEnd, &events.FlowEnd{Flow: f}
	}
	t.emit(ev)
}
