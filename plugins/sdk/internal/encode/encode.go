// SPDX-License-Identifier: Apache-2.0

// Package encode writes sdk events in the event encoding
// (plugins/internal/wire/README.md), for the SDK's test harness (sdktest)
// and its own tests. It is plain rather than fast: the host has its own,
// tuned encoder for flowtap's internal events; the SDK's decoder must read
// what either writes, which the host's in-process tests check.
package encode

import (
	"encoding/binary"
	"unsafe"

	"github.com/flowtap/flowtap/plugins/internal/wire"
)

// Context, Field and Value mirror the sdk types of those names (this
// package cannot import sdk, whose own tests use it): callers copy.
type Context struct {
	SocketCookie, CgroupID uint64
	PID, UID               uint32
	Comm, HostName         string
	PPID                   uint32
	ProcessStart           int64
	Exe                    string
	Host                   bool
	ContainerID            string
	ContainerRuntime       string
	ContainerName          string
	ContainerImage         string
	PodName                string
	PodNamespace           string
	PodUID                 string
	PodLabels              []string
}

// Field is one named value.
type Field struct {
	Name  string
	Value Value
}

// Value is a typed value: the member Kind names is set.
type Value struct {
	Kind    Kind
	Str     string
	Uint    uint64
	Int     int64
	Bool    bool
	Strings []string
}

// Kind is a value's kind, the encoding's code.
type Kind uint8

// Kinds.
const (
	KindInvalid Kind = wire.KindInvalid
	KindString  Kind = wire.KindString
	KindUint    Kind = wire.KindUint
	KindInt     Kind = wire.KindInt
	KindBool    Kind = wire.KindBool
	KindStrings Kind = wire.KindStrings
)

// Encoder writes one batch at a time: Start, Append events, Finish.
type Encoder struct {
	buf     []byte
	count   uint32
	schemas []*schema // defined in the current batch, by index
}

// schema is one event shape defined in the batch, with the strings of
// its last event, which the next one may repeat.
type schema struct {
	id         uint16
	name       string
	names      []string
	kinds      []Kind
	prev       []string   // the context's strings (slot*), then each field's string
	prevList   [][]string // each field's list
	prevLabels []string
	hasPrev    bool
}

// Start begins a batch, writing into buf's memory.
func (e *Encoder) Start(buf []byte) {
	e.buf = append(buf[:0], wire.Layout, 0, 0, 0, 0)
	e.count, e.schemas = 0, e.schemas[:0]
}

// Len is the batch's length so far; Count its events.
func (e *Encoder) Len() int   { return len(e.buf) }
func (e *Encoder) Count() int { return int(e.count) }

// Finish completes the batch and returns it.
func (e *Encoder) Finish() []byte {
	binary.LittleEndian.PutUint32(e.buf[1:wire.HeaderLen], e.count)
	b := e.buf
	e.buf = nil
	return b
}

// Append adds an event unless the batch would grow past limit bytes (it
// then leaves the batch as it was and returns false). A string or list
// that is the very one (same memory) as in the batch's previous event of
// the same shape is sent as a repeat.
func (e *Encoder) Append(limit int, id uint16, name string, ts int64, c *Context, fields []Field) bool {
	mark, nschemas := len(e.buf), len(e.schemas)
	sc, index := e.schemaFor(id, name, fields)
	saved := *sc
	saved.prev, saved.prevList = append([]string(nil), sc.prev...), append([][]string(nil), sc.prevList...)
	saved.prevLabels = sc.prevLabels
	b := uvarint(e.buf, uint64(index)+1)
	b = binary.LittleEndian.AppendUint64(b, uint64(ts))
	b = uvarint(b, c.SocketCookie)
	b = uvarint(b, c.CgroupID)
	b = uvarint(b, uint64(c.PID))
	b = uvarint(b, uint64(c.UID))
	b = sc.str(b, wire.SlotComm, c.Comm)
	b = sc.str(b, wire.SlotHost, c.HostName)
	b = uvarint(b, uint64(c.PPID))
	b = uvarint(b, uint64(c.ProcessStart<<1)^uint64(c.ProcessStart>>63))
	b = sc.str(b, wire.SlotExe, c.Exe)
	switch {
	case c.ContainerID != "":
		b = append(b, wire.WorkloadContainer)
		for i, s := range [...]string{c.ContainerID, c.ContainerRuntime, c.ContainerName, c.ContainerImage, c.PodName, c.PodNamespace, c.PodUID} {
			b = sc.str(b, wire.SlotContainerID+i, s)
		}
		b = sc.labels(b, c.PodLabels)
	case c.Host:
		b = append(b, wire.WorkloadHost)
	default:
		b = append(b, wire.WorkloadUnknown)
	}
	for i := range fields {
		v := &fields[i].Value
		switch sc.kinds[i] {
		case KindString:
			b = sc.str(b, wire.CtxStrings+i, v.Str)
		case KindUint:
			b = uvarint(b, v.Uint)
		case KindInt:
			b = uvarint(b, uint64(v.Int<<1)^uint64(v.Int>>63))
		case KindBool:
			if v.Bool {
				b = append(b, 1)
			} else {
				b = append(b, 0)
			}
		case KindStrings:
			b = sc.list(b, i, v.Strings)
		}
	}
	sc.hasPrev = true
	if len(b) > limit {
		*sc = saved
		e.buf, e.schemas = b[:mark], e.schemas[:nschemas]
		return false
	}
	e.buf = b
	e.count++
	return true
}

// schemaFor returns the batch's schema of this shape and its index,
// defining it (in the batch) if needed.
func (e *Encoder) schemaFor(id uint16, name string, fields []Field) (*schema, int) {
	for i, sc := range e.schemas {
		if sc.fits(id, name, fields) {
			return sc, i
		}
	}
	sc := &schema{id: id, name: name, prev: make([]string, wire.CtxStrings+len(fields)), prevList: make([][]string, len(fields))}
	e.buf = append(e.buf, 0)
	e.buf = uvarint(e.buf, uint64(id))
	e.buf = str(e.buf, name)
	e.buf = uvarint(e.buf, uint64(len(fields)))
	for _, f := range fields {
		kind := f.Value.Kind
		if kind > KindStrings {
			kind = KindInvalid
		}
		sc.names, sc.kinds = append(sc.names, f.Name), append(sc.kinds, kind)
		e.buf = append(e.buf, byte(kind))
		e.buf = str(e.buf, f.Name)
	}
	e.schemas = append(e.schemas, sc)
	return sc, len(e.schemas) - 1
}

func (sc *schema) fits(id uint16, name string, fields []Field) bool {
	if sc.id != id || sc.name != name || len(sc.names) != len(fields) {
		return false
	}
	for i, f := range fields {
		kind := f.Value.Kind
		if kind > KindStrings {
			kind = KindInvalid
		}
		if sc.names[i] != f.Name || sc.kinds[i] != kind {
			return false
		}
	}
	return true
}

// str appends s as an rstring in place i of the schema's strings.
func (sc *schema) str(b []byte, i int, s string) []byte {
	if sc.hasPrev && len(s) == len(sc.prev[i]) && unsafe.StringData(s) == unsafe.StringData(sc.prev[i]) {
		return append(b, 0)
	}
	sc.prev[i] = s
	return append(uvarint(b, uint64(len(s))+1), s...)
}

// labels appends the pod labels as an rlist.
func (sc *schema) labels(b []byte, l []string) []byte {
	if sc.hasPrev && len(l) == len(sc.prevLabels) && unsafe.SliceData(l) == unsafe.SliceData(sc.prevLabels) {
		return append(b, 0)
	}
	sc.prevLabels = l
	b = uvarint(b, uint64(len(l))+1)
	for _, s := range l {
		b = str(b, s)
	}
	return b
}

// list appends l as an rlist for field i.
func (sc *schema) list(b []byte, i int, l []string) []byte {
	if sc.hasPrev && len(l) == len(sc.prevList[i]) && unsafe.SliceData(l) == unsafe.SliceData(sc.prevList[i]) {
		return append(b, 0)
	}
	sc.prevList[i] = l
	b = uvarint(b, uint64(len(l))+1)
	for _, s := range l {
		b = str(b, s)
	}
	return b
}

func uvarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

func str(b []byte, s string) []byte { return append(uvarint(b, uint64(len(s))), s...) }
