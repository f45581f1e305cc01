// SPDX-License-Identifier: Apache-2.0

// Package encode is the host's encoder of the event encoding
// (plugins/internal/wire/README.md): flowtap's events.Event, straight
// from their payloads where it can, into the bytes of a Batch.
package encode

import (
	"encoding/binary"
	"unsafe"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/plugins/internal/wire"
)

// The event encoding of Batch.events. README.md specifies it; in short:
//
//	events  = layout:u8 count:u32le record*
//	record  = 0:uvarint schema | (index+1):uvarint event
//	schema  = id:uvarint name:string nfields:uvarint (kind:u8 name:string)*nfields
//	event   = timestamp:i64le cookie:uvarint cgroup:uvarint pid:uvarint uid:uvarint
//	          comm:rstring host:rstring value*   (one value per schema field)
//	value   = rstring | uvarint | zigzag varint | u8 (0 or 1) | rlist
//	rstring = 0:uvarint | (len+1):uvarint byte*len
//	rlist   = 0:uvarint | (n+1):uvarint string*n
//	string  = len:uvarint byte*len
//
// Schemas are numbered 0, 1, ... in the order a batch defines them, and a
// schema is defined before the first event that uses it. A 0 in place of
// a string or a list ("rstring", "rlist") repeats the value of the same
// field in the batch's previous event of the same schema. Every batch is
// self-contained: nothing carries over from one batch to the next.

// Compile-time check that events.Kind values are the wire codes
// (wire.Kind*): a
// negative array length fails the build.
var (
	_ [wire.KindString - int(events.KindString)]struct{}
	_ [int(events.KindString) - wire.KindString]struct{}
	_ [wire.KindUint - int(events.KindUint)]struct{}
	_ [int(events.KindUint) - wire.KindUint]struct{}
	_ [wire.KindInt - int(events.KindInt)]struct{}
	_ [int(events.KindInt) - wire.KindInt]struct{}
	_ [wire.KindBool - int(events.KindBool)]struct{}
	_ [int(events.KindBool) - wire.KindBool]struct{}
	_ [wire.KindStrings - int(events.KindStrings)]struct{}
	_ [int(events.KindStrings) - wire.KindStrings]struct{}
)

// maxCachedSchemas bounds the encoder's schema cache. Payloads have a
// handful of shapes each, so the bound is only reached by a producer
// whose field lists keep changing; the cache then starts over.
const maxCachedSchemas = 1024

// Encoder writes events in the event encoding. It caches the schema of
// every event shape it has seen (event ID, name, field names and kinds), so
// that once warm it encodes an event without allocating, and defines each
// schema once per batch with a copy of cached bytes.
//
// Use: Start a batch, Append events, Finish it. An Encoder is not safe for
// concurrent use.
type Encoder struct {
	buf   []byte
	count uint32
	// gen numbers the batches; a schema defined in the current batch has
	// gen == this gen.
	gen uint64
	// defined lists the schemas defined in the current batch, by index.
	defined []*schema
	byID    map[uint32][]*schema
	cached  int
	// recent is the last schema used per ID, direct-mapped: batches
	// mostly repeat a few shapes, so most events skip the map.
	recent [16]*schema
	// fields is AppendPayload's scratch for Payload.AppendFields.
	fields []events.Field
}

// schema is one cached event shape.
type schema struct {
	id    uint32
	name  string
	names []string
	kinds []events.Kind
	def   []byte // the encoded definition, after its 0 tag
	// typed is the payload type whose fields the schema holds, when
	// AppendPayload encodes that type straight from its Go fields
	// (typed.go); typedNone otherwise.
	typed payloadType
	gen   uint64 // the batch that last defined it
	index uint64 // its index in that batch
	// prev holds the strings of the batch's last event of this schema,
	// when prevGen is the batch's gen: the context's strings (wire.SlotComm,
	// ...), prev[wire.CtxStrings+i] field i's value if it is a string; prevList[i] field
	// i's value if it is a list.
	prev     []string
	prevList [][]string
	// prevLabels is the last event's pod labels, prevWorkload its
	// workload (the workload is sent as "the same" when it is the very
	// same).
	prevLabels   []string
	prevWorkload *events.Workload
	prevGen      uint64
}

// Start begins a batch, writing into buf's memory (buf's contents are
// discarded; nil is fine).
func (e *Encoder) Start(buf []byte) {
	e.buf = append(buf[:0], wire.Layout, 0, 0, 0, 0)
	e.count = 0
	e.gen++
	e.defined = e.defined[:0]
}

// Len is the current length of the batch in bytes.
func (e *Encoder) Len() int { return len(e.buf) }

// Count is the number of events in the batch.
func (e *Encoder) Count() int { return int(e.count) }

// Finish completes the batch and returns it. The Encoder keeps no
// reference to it: the next Start needs a buffer of its own.
func (e *Encoder) Finish() []byte {
	binary.LittleEndian.PutUint32(e.buf[1:wire.HeaderLen], e.count)
	for _, sc := range e.defined { // keep no event's memory alive
		clear(sc.prev)
		clear(sc.prevList)
		sc.prevLabels, sc.prevWorkload = nil, nil
		sc.prevGen = 0
	}
	b := e.buf
	e.buf = nil
	return b
}

// Append adds one event to the batch, unless that would make the batch
// longer than limit bytes: then it leaves the batch as it was and returns
// false. fields are the event's fields in order; name is its catalogue
// name. The Encoder keeps references to the event's strings and string
// lists until Finish (to encode repeated values once), so the lists must
// not change until then.
func (e *Encoder) Append(limit int, id uint32, name string, timestamp int64, c *events.Context, fields []events.Field) bool {
	mark, ndefined := len(e.buf), len(e.defined)
	// The schema last used for this ID is the likely one; encoding checks
	// it field by field, and only on a mismatch does the Encoder look for
	// (or make) the right one.
	sc := e.recent[id%uint32(len(e.recent))]
	ok := sc != nil && sc.id == id && len(sc.kinds) == len(fields) && sameString(name, sc.name)
	if ok {
		ok = e.appendEvent(sc, timestamp, c, fields, true)
	}
	if !ok {
		e.undo(mark, ndefined, sc)
		sc = e.schemaFor(id, name, fields)
		e.appendEvent(sc, timestamp, c, fields, false)
	}
	if len(e.buf) > limit {
		e.undo(mark, ndefined, sc)
		return false
	}
	e.count++
	return true
}

// undo truncates the batch to mark and forgets the schemas defined after
// the first ndefined, so that the batch defines them again when needed.
// appendEvent recorded the undone event's strings in sc (if not nil) as
// the ones the next event may repeat: sc forgets them, and its next event
// in the batch repeats nothing.
func (e *Encoder) undo(mark, ndefined int, sc *schema) {
	for _, sc := range e.defined[ndefined:] {
		sc.gen = 0
	}
	e.defined = e.defined[:ndefined]
	e.buf = e.buf[:mark]
	if sc != nil {
		sc.prevGen = 0
	}
}

// appendEvent appends an event of schema sc, defining sc first if this
// batch has not, and records its strings in sc for the next event of sc
// to repeat. If check is set it verifies, as it goes, that the fields have
// sc's names and kinds, and stops with false at the first that does not;
// otherwise the caller knows they do.
//
// A string or list is sent as a repeat only if it is the very same one
// (same memory) as in the previous event: comparing pointers costs next to
// nothing, and what repeats is mostly constants (directions, reasons, the
// host name) and shared lists; comparing contents cost more than it
// saved. Recording writes a pointer only where it changes: while the
// garbage collector marks, each pointer written costs a write barrier.
func (e *Encoder) appendEvent(sc *schema, timestamp int64, c *events.Context, fields []events.Field, check bool) bool {
	kinds, names, prev, prevList := sc.kinds, sc.names, sc.prev, sc.prevList
	if len(kinds) != len(fields) || len(names) != len(fields) || len(prev) != wire.CtxStrings+len(fields) || len(prevList) != len(fields) {
		return false
	}
	b, hasPrev := e.appendHead(sc, timestamp, c)
	for i := range fields {
		f := &fields[i]
		kind := kinds[i]
		if check && (f.Value.Kind != kind || !sameString(f.Name, names[i])) {
			e.buf = b
			return false
		}
		switch kind {
		case events.KindString:
			b = appendRepeated(b, f.Value.Str, &prev[wire.CtxStrings+i], hasPrev)
		case events.KindUint:
			b = appendUvarint(b, f.Value.Uint)
		case events.KindInt:
			b = appendUvarint(b, uint64(f.Value.Int<<1)^uint64(f.Value.Int>>63))
		case events.KindBool:
			if f.Value.Bool {
				b = append(b, 1)
			} else {
				b = append(b, 0)
			}
		case events.KindStrings:
			b = appendRepeatedList(b, f.Value.Strings, &prevList[i], hasPrev)
		}
	}
	e.buf = b
	return true
}

// appendHead begins an event of schema sc, defining sc first if this
// batch has not: it appends the record tag, the timestamp and the
// context, and returns the batch so far and whether sc's prev holds the
// previous event's strings (which the event's values may repeat).
func (e *Encoder) appendHead(sc *schema, timestamp int64, c *events.Context) ([]byte, bool) {
	if sc.gen != e.gen {
		sc.gen, sc.index = e.gen, uint64(len(e.defined))
		e.defined = append(e.defined, sc)
		e.buf = append(e.buf, 0)
		e.buf = append(e.buf, sc.def...)
	}
	hasPrev := sc.prevGen == e.gen
	sc.prevGen = e.gen
	b := appendUvarint(e.buf, sc.index+1)
	b = binary.LittleEndian.AppendUint64(b, uint64(timestamp))
	b = appendUvarint(b, c.SocketCookie)
	b = appendUvarint(b, c.CgroupID)
	b = appendUvarint(b, uint64(c.PID))
	b = appendUvarint(b, uint64(c.UID))
	b = appendRepeated(b, c.Comm, &sc.prev[wire.SlotComm], hasPrev)
	b = appendRepeated(b, c.HostName, &sc.prev[wire.SlotHost], hasPrev)
	b = appendUvarint(b, uint64(c.PPID))
	b = appendUvarint(b, uint64(c.ProcessStart<<1)^uint64(c.ProcessStart>>63))
	b = appendRepeated(b, c.Exe, &sc.prev[wire.SlotExe], hasPrev)
	b = appendWorkload(b, sc, c.Workload, hasPrev)
	return b, hasPrev
}

// appendWorkload appends the workload of an event of schema sc
// (wire.Workload* tags).
func appendWorkload(b []byte, sc *schema, w *events.Workload, hasPrev bool) []byte {
	switch {
	case w == nil:
		return append(b, wire.WorkloadUnknown)
	case w == sc.prevWorkload && hasPrev:
		return append(b, wire.WorkloadSame)
	case w.ContainerID == "":
		sc.prevWorkload = w
		return append(b, wire.WorkloadHost)
	}
	sc.prevWorkload = w
	b = append(b, wire.WorkloadContainer)
	p := sc.prev
	b = appendRepeated(b, w.ContainerID, &p[wire.SlotContainerID], hasPrev)
	b = appendRepeated(b, w.ContainerRuntime, &p[wire.SlotContainerRuntime], hasPrev)
	b = appendRepeated(b, w.ContainerName, &p[wire.SlotContainerName], hasPrev)
	b = appendRepeated(b, w.ContainerImage, &p[wire.SlotContainerImage], hasPrev)
	b = appendRepeated(b, w.PodName, &p[wire.SlotPodName], hasPrev)
	b = appendRepeated(b, w.PodNamespace, &p[wire.SlotPodNamespace], hasPrev)
	b = appendRepeated(b, w.PodUID, &p[wire.SlotPodUID], hasPrev)
	return appendRepeatedList(b, events.Strings(w.PodLabels).Strings, &sc.prevLabels, hasPrev)
}

// appendRepeatedList appends l as an rlist: 0 if l is the very list
// (same memory, same length) *prev holds and hasPrev says *prev is the
// previous event's, else its length + 1 and its strings. It leaves l in
// *prev.
func appendRepeatedList(b []byte, l []string, prev *[]string, hasPrev bool) []byte {
	if len(l) == len(*prev) && unsafe.SliceData(l) == unsafe.SliceData(*prev) {
		if hasPrev {
			return append(b, 0)
		}
	} else {
		*prev = l
	}
	b = appendUvarint(b, uint64(len(l))+1)
	for _, s := range l {
		b = appendString(b, s)
	}
	return b
}

// appendRepeated appends s as an rstring: 0 if s is the very string *prev
// holds and hasPrev says *prev is the previous event's, else its length +
// 1 and its bytes. It leaves s in *prev.
func appendRepeated(b []byte, s string, prev *string, hasPrev bool) []byte {
	if len(s) == len(*prev) && unsafe.StringData(s) == unsafe.StringData(*prev) {
		if hasPrev {
			return append(b, 0)
		}
	} else {
		*prev = s
	}
	return append(appendUvarint(b, uint64(len(s))+1), s...)
}

// schemaFor returns the cached schema of an event of this shape, caching
// a new one if needed.
func (e *Encoder) schemaFor(id uint32, name string, fields []events.Field) *schema {
	slot := &e.recent[id%uint32(len(e.recent))]
	for _, sc := range e.byID[id] {
		if sc.matches(name, fields) {
			*slot = sc
			return sc
		}
	}
	if e.byID == nil || e.cached >= maxCachedSchemas {
		// Start over. Schemas defined in the current batch stay valid:
		// they are in e.defined and in the batch already.
		e.byID, e.cached = map[uint32][]*schema{}, 0
		clear(e.recent[:])
	}
	sc := &schema{
		id: id, name: name,
		names: make([]string, len(fields)), kinds: make([]events.Kind, len(fields)),
		prev: make([]string, wire.CtxStrings+len(fields)), prevList: make([][]string, len(fields)),
	}
	def := appendUvarint(nil, uint64(id))
	def = appendString(def, name)
	def = appendUvarint(def, uint64(len(fields)))
	for i := range fields {
		kind := fields[i].Value.Kind
		if kind > events.KindStrings {
			kind = events.KindInvalid // a kind this encoding does not know
		}
		sc.names[i], sc.kinds[i] = fields[i].Name, kind
		def = append(def, byte(kind))
		def = appendString(def, fields[i].Name)
	}
	sc.def = def
	e.byID[id] = append(e.byID[id], sc)
	e.cached++
	*slot = sc
	return sc
}

// matches reports whether an event with this name and these fields has
// the schema's shape.
func (sc *schema) matches(name string, fields []events.Field) bool {
	if len(fields) != len(sc.names) || !sameString(name, sc.name) {
		return false
	}
	for i := range fields {
		kind := fields[i].Value.Kind
		if kind > events.KindStrings {
			kind = events.KindInvalid
		}
		if kind != sc.kinds[i] || !sameString(fields[i].Name, sc.names[i]) {
			return false
		}
	}
	return true
}

// sameString is a == b, quick when both are the same constant (the usual
// case for field names).
func sameString(a, b string) bool {
	return len(a) == len(b) && (unsafe.StringData(a) == unsafe.StringData(b) || a == b)
}

// appendUvarint is binary.AppendUvarint, unrolled for values below 2^21
// (ports, pids, counters, durations in the milliseconds).
func appendUvarint(b []byte, v uint64) []byte {
	switch {
	case v < 1<<7:
		return append(b, byte(v))
	case v < 1<<14:
		return append(b, byte(v)|0x80, byte(v>>7))
	case v < 1<<21:
		return append(b, byte(v)|0x80, byte(v>>7)|0x80, byte(v>>14))
	}
	return binary.AppendUvarint(b, v)
}

func appendString(b []byte, s string) []byte {
	return append(appendUvarint(b, uint64(len(s))), s...)
}
