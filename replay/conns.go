// SPDX-License-Identifier: Apache-2.0

package replay

import (
	"bytes"
	"encoding/binary"
	"net/netip"

	"github.com/flowtap/flowtap/events"
)

// TCP states (include/net/tcp_states.h) a snapshot reports.
const (
	stateEstablished = 1
	stateFinWait2    = 5
	stateCloseWait   = 8
)

// maxAdvance is the largest jump of a stream's sequence number counted as
// payload: a window is at most 1 GiB (RFC 7323), so a segment further
// ahead is not part of the stream (a stray or forged segment).
const maxAdvance = 1 << 30

// closedLinger is how long (capture time) the counters of a connection
// closed on the wire are kept, so a retransmitted FIN or a late ACK
// still finds them: the kernel's TIME_WAIT, 60 s.
const closedLinger = 60e9

// endKey is one end of a connection: its address (16 bytes, IPv4 as
// IPv4-mapped) and port, big-endian, so that bytes order them.
type endKey [18]byte

// putEnd writes the end of a and port to e, in place: building the keys
// by value cost a fifth of the replay's producer.
func putEnd(e *endKey, a netip.Addr, port uint16) {
	*(*[16]byte)(e[:16]) = a.As16()
	binary.BigEndian.PutUint16(e[16:], port)
}

// connKey is a connection's two ends, the lower first.
type connKey [2]endKey

// stream is what one end of a connection sent.
type stream struct {
	started bool   // next is set: its SYN, or its first segment, was seen
	isn     uint32 // initial sequence number, when its SYN was seen
	next    uint32 // sequence number after the highest payload byte seen
	bytes   uint64 // payload bytes, each sequence number once
	packets uint64 // segments, retransmissions and pure ACKs included
	fin     bool
}

// connState is the wire's view of one TCP connection: what each end sent.
type connState struct {
	key  connKey
	ends [2]netip.AddrPort // [0] is the lower end of key
	// sent[i] is what ends[i] sent.
	sent        [2]stream
	established bool // a SYN-ACK was seen
	closed      bool // FIN both ways, or RST
	// forgetAt is when a closed connection is forgotten (capture time).
	forgetAt int64
	// link holds the connection's places in the table's two lists (the
	// lists are intrusive: a connection costs one allocation).
	link [2]connLink
}

// The table's lists, as indexes into connState.link.
const (
	lruList    = 0 // every connection, least recently seen first
	closedList = 1 // connections closed on the wire, by time of close
)

// connLink is a connection's place in one list.
type connLink struct {
	prev, next *connState
	in         bool // the connection is in the list
}

// connList is an intrusive doubly linked list of connections, through
// their link[which].
type connList struct {
	head, tail *connState
	which      int
}

// front is the first connection, nil when the list is empty.
func (l *connList) front() *connState { return l.head }

// next is the connection after c.
func (l *connList) next(c *connState) *connState { return c.link[l.which].next }

func (l *connList) pushBack(c *connState) {
	k := &c.link[l.which]
	k.prev, k.next, k.in = l.tail, nil, true
	if l.tail != nil {
		l.tail.link[l.which].next = c
	} else {
		l.head = c
	}
	l.tail = c
}

// remove takes c out of the list; a connection not in it is left alone.
func (l *connList) remove(c *connState) {
	k := &c.link[l.which]
	if !k.in {
		return
	}
	if k.prev != nil {
		k.prev.link[l.which].next = k.next
	} else {
		l.head = k.next
	}
	if k.next != nil {
		k.next.link[l.which].prev = k.prev
	} else {
		l.tail = k.prev
	}
	*k = connLink{}
}

func (l *connList) moveToBack(c *connState) {
	if l.tail != c {
		l.remove(c)
		l.pushBack(c)
	}
}

// open reports whether the connection was established and has not closed.
func (c *connState) open() bool { return c.established && !c.closed }

// counters are end i's totals: what it sent and what the other end sent.
func (c *connState) counters(i int) events.Counters {
	out, in := &c.sent[i], &c.sent[1-i]
	return events.Counters{BytesSent: out.bytes, PacketsSent: out.packets, BytesReceived: in.bytes, PacketsReceived: in.packets}
}

// state is end i's TCP state as well as the wire tells it.
func (c *connState) state(i int) uint8 {
	switch {
	case c.sent[i].fin:
		return stateFinWait2
	case c.sent[1-i].fin:
		return stateCloseWait
	}
	return stateEstablished
}

// connTable holds the connections whose SYN was seen, least recently seen
// first, at most max of them: those closed on the wire too, while they
// linger. Memory therefore stays bounded by max whatever the capture.
type connTable struct {
	max int
	m   map[connKey]*connState
	lru connList
	// closed holds the closed connections still lingering, by time of
	// close; remove takes a connection out of it too.
	closed connList
	open   int // connections that are open()
	// evicted counts connections dropped because the table was full;
	// outOfWindow segments whose payload was not counted.
	evicted, outOfWindow uint64
	// last is the connection the previous segment belonged to (nil:
	// none, or removed since): a capture's segments come in runs of one
	// connection (a handshake, a request and its answer, a bulk
	// transfer), and comparing the key is cheaper than hashing it.
	last *connState
}

func newConnTable(max int) *connTable {
	return &connTable{max: max, m: make(map[connKey]*connState), lru: connList{which: lruList}, closed: connList{which: closedList}}
}

// update counts one TCP segment and returns its connection and which end
// sent it; nil for a connection whose SYN was not seen (not counted: the
// flow tracker ignores those too).
func (t *connTable) update(p *packet, ts int64) (*connState, int) {
	t.forget(ts)
	var key connKey
	putEnd(&key[0], p.src, p.sport)
	putEnd(&key[1], p.dst, p.dport)
	from := 0
	if bytes.Compare(key[0][:], key[1][:]) > 0 {
		key[0], key[1] = key[1], key[0]
		from = 1
	}
	c := t.last
	if c == nil || c.key != key {
		c = t.m[key]
	}
	if p.flags&(events.FlagSYN|events.FlagACK) == events.FlagSYN {
		// A SYN after a close, or with another initial sequence number,
		// opens a new connection on the same 4-tuple.
		if c != nil && (c.closed || c.sent[from].started && c.sent[from].isn != p.seq) {
			t.remove(c)
			c = nil
		}
		if c == nil {
			c = t.insert(key, from, p)
		}
	}
	if c == nil {
		return nil, 0
	}
	t.last = c
	t.lru.moveToBack(c)
	wasOpen := c.open()
	t.segment(c, from, p, ts)
	t.countOpen(c, wasOpen)
	return c, from
}

// segment counts a segment that end from of c sent.
func (t *connTable) segment(c *connState, from int, p *packet, ts int64) {
	s := &c.sent[from]
	s.packets++
	seq := p.seq
	switch {
	case p.flags.Has(events.FlagSYN):
		if p.flags.Has(events.FlagACK) {
			c.established = true
		}
		if !s.started || s.isn != seq {
			s.started, s.isn, s.next = true, seq, seq+1
		}
		seq++ // the SYN takes a sequence number; data in it (TCP Fast Open) follows
	case !s.started:
		s.started, s.next = true, seq // its SYN-ACK was not captured: count from here
	}
	if p.flags.Has(events.FlagRST) {
		t.close(c, ts) // a reset's payload, if any, is a diagnostic, not data
		return
	}
	if p.payloadLen > 0 {
		end := seq + p.payloadLen
		switch adv := int64(int32(end - s.next)); {
		case adv > maxAdvance:
			t.outOfWindow++
		case adv > 0:
			s.bytes += uint64(adv)
			s.next = end
		}
	}
	if p.flags.Has(events.FlagFIN) {
		s.fin = true
		if c.sent[1-from].fin {
			t.close(c, ts)
		}
	}
}

// countOpen keeps t.open in step with c after an update.
func (t *connTable) countOpen(c *connState, wasOpen bool) {
	switch now := c.open(); {
	case now && !wasOpen:
		t.open++
	case !now && wasOpen:
		t.open--
	}
}

func (t *connTable) insert(key connKey, from int, p *packet) *connState {
	if len(t.m) >= t.max {
		if front := t.lru.front(); front != nil {
			t.evicted++
			t.remove(front)
		}
	}
	c := &connState{key: key}
	c.ends[from] = netip.AddrPortFrom(p.src, p.sport)
	c.ends[1-from] = netip.AddrPortFrom(p.dst, p.dport)
	t.lru.pushBack(c)
	t.m[key] = c
	return c
}

func (t *connTable) remove(c *connState) {
	if t.last == c {
		t.last = nil
	}
	t.closed.remove(c)
	if t.m[c.key] != c {
		return
	}
	if c.open() {
		t.open--
	}
	delete(t.m, c.key)
	t.lru.remove(c)
}

// close marks c closed on the wire; it is forgotten closedLinger later.
func (t *connTable) close(c *connState, ts int64) {
	if !c.closed {
		c.closed = true
		c.forgetAt = ts + closedLinger
		t.closed.pushBack(c)
	}
}

// forget drops the closed connections whose linger ended by ts. They are
// in the order of the capture, whose time hardly ever runs back: the front
// is all that is due.
func (t *connTable) forget(ts int64) {
	for c := t.closed.front(); c != nil && c.forgetAt <= ts; c = t.closed.front() {
		t.remove(c)
	}
}
