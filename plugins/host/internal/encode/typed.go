// SPDX-License-Identifier: Apache-2.0

package encode

import (
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/plugins/internal/wire"
)

// The typed path. Most events a host sends are flow events, and building
// the generic field list of each (Payload.AppendFields: a dozen 88-byte
// events.Field values) only to read it back cost more than the encoding
// itself. AppendPayload encodes the flow payloads straight from their Go
// fields instead, into a schema that the generic path made from
// AppendFields: the names and kinds on the wire come from the generic
// list (and so from the catalogue, which events' tests pin it to), and
// only the order of the values is written twice, here and in
// AppendFields. TestTypedMatchesGeneric checks that the two write the
// same bytes for every payload type.

// payloadType names a payload type AppendPayload encodes straight from
// its fields.
type payloadType uint8

const (
	typedNone payloadType = iota
	typedFlowBegin
	typedFlowEnd
	typedFlowFailed
)

// flowFields is how many fields events.Flow contributes, before those of
// the event type.
const flowFields = 9

// typedFields is how many fields each typed payload has.
var typedFields = [...]int{
	typedFlowBegin:  flowFields + 1,
	typedFlowEnd:    flowFields + 7,
	typedFlowFailed: flowFields + 1,
}

// typeOf returns p's payloadType.
func typeOf(p events.Payload) payloadType {
	switch p.(type) {
	case *events.FlowBegin:
		return typedFlowBegin
	case *events.FlowEnd:
		return typedFlowEnd
	case *events.FlowFailed:
		return typedFlowFailed
	}
	return typedNone
}

// AppendPayload is Append with p's fields (p nil: none). Flow events
// (events.FlowBegin, FlowEnd, FlowFailed) are encoded straight from their
// Go fields once the Encoder has their schema; the bytes are the same.
func (e *Encoder) AppendPayload(limit int, id uint32, name string, timestamp int64, c *events.Context, p events.Payload) bool {
	typed := typeOf(p)
	slot := &e.recent[id%uint32(len(e.recent))]
	if sc := *slot; typed != typedNone && sc != nil && sc.typed == typed && sc.id == id && sameString(name, sc.name) {
		mark, ndefined := len(e.buf), len(e.defined)
		e.appendTyped(sc, timestamp, c, p)
		if len(e.buf) > limit {
			e.undo(mark, ndefined, sc)
			return false
		}
		e.count++
		return true
	}
	e.fields = e.fields[:0]
	if p != nil {
		e.fields = p.AppendFields(e.fields)
	}
	ok := e.Append(limit, id, name, timestamp, c, e.fields)
	clear(e.fields) // keep no event's strings alive
	// Append left the schema of these fields in the slot.
	if sc := *slot; typed != typedNone && sc != nil && sc.id == id && len(sc.kinds) == typedFields[typed] {
		sc.typed = typed
	}
	return ok
}

// appendTyped appends an event of schema sc, whose typed is p's type, as
// appendEvent would with p.AppendFields.
func (e *Encoder) appendTyped(sc *schema, timestamp int64, c *events.Context, p events.Payload) {
	b, hasPrev := e.appendHead(sc, timestamp, c)
	prev, prevList := sc.prev[wire.CtxStrings:], sc.prevList
	switch p := p.(type) {
	case *events.FlowBegin:
		b = appendFlow(b, &p.Flow, prev, prevList, hasPrev)
		b = appendUvarint(b, p.HandshakeNs)
	case *events.FlowEnd:
		b = appendFlow(b, &p.Flow, prev, prevList, hasPrev)
		b = appendUvarint(b, p.DurationNs)
		b = appendUvarint(b, p.Counters.BytesSent)
		b = appendUvarint(b, p.Counters.BytesReceived)
		b = appendUvarint(b, p.Counters.PacketsSent)
		b = appendUvarint(b, p.Counters.PacketsReceived)
		b = appendRepeated(b, p.Reason.String(), &prev[flowFields+5], hasPrev)
		if p.Incomplete {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	case *events.FlowFailed:
		b = appendFlow(b, &p.Flow, prev, prevList, hasPrev)
		b = appendRepeated(b, p.Reason.String(), &prev[flowFields], hasPrev)
	}
	e.buf = b
}

// appendFlow appends the values of the fields events.Flow contributes,
// in their order: conn_direction, src, dst, src_port, dst_port, src_dns,
// dst_dns, flow_id, community_id. prev and prevList are the schema's, from
// the first field on.
func appendFlow(b []byte, f *events.Flow, prev []string, prevList [][]string, hasPrev bool) []byte {
	b = appendRepeated(b, f.Direction.String(), &prev[0], hasPrev)
	b = appendRepeated(b, f.SrcField(), &prev[1], hasPrev)
	b = appendRepeated(b, f.DstField(), &prev[2], hasPrev)
	b = appendUvarint(b, uint64(f.SrcPort))
	b = appendUvarint(b, uint64(f.DstPort))
	b = appendRepeatedList(b, events.Strings(f.SrcDNS).Strings, &prevList[5], hasPrev)
	b = appendRepeatedList(b, events.Strings(f.DstDNS).Strings, &prevList[6], hasPrev)
	b = appendRepeated(b, f.FlowID, &prev[7], hasPrev)
	return appendRepeated(b, f.CommunityID, &prev[8], hasPrev)
}
