// SPDX-License-Identifier: Apache-2.0

package sdk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"unsafe"

	"github.com/flowtap/flowtap/plugins/internal/wire"
)

// minEventLen is the smallest encoded event: its record tag, timestamp,
// four context numbers and two context strings, and no fields. It bounds
// how many events a batch of a given length can claim to hold.
const minEventLen = 1 + 8 + 4 + 2 + 4

// maxInterned bounds the table of interned event and field names. A
// host sends a few dozen; the bound only stops a faulty one from growing
// the table without end (names past it are copied instead).
const maxInterned = 4096

// decoder turns the event encoding (proto.Batch's events, see
// plugins/internal/wire/README.md) into Events, reusing its memory from batch to
// batch. Once warm, decoding a batch allocates nothing:
//
//   - string values point into the batch's bytes, which the caller hands
//     over for good: they must never be modified again. The strings are
//     therefore immutable, as Go strings must be, and stay valid after
//     Write returns; but a kept string keeps the whole batch's bytes in
//     memory.
//   - event and field names are interned, so they stay the same strings
//     from batch to batch and keep no batch in memory;
//   - events, fields and string lists live in slabs reused by the next
//     batch. Each event's Fields, and each string list, is a window of a
//     slab with its capacity cut to its length, so that a sink appending to
//     one cannot overwrite the next.
//
// A decoder is not safe for concurrent use.
type decoder struct {
	events  []Event
	fields  []Field
	strs    []string
	schemas []schema
	// schemaFields holds the fields (names and kinds, zero values) of the
	// batch's schemas.
	schemaFields []Field
	// prevStrs and prevLists hold the schemas' prev and prevList.
	prevStrs  []string
	prevLists [][]string
	names     map[string]string
}

// schema is one schema a batch defined.
type schema struct {
	id     ID
	name   string
	fields []Field
	// prev holds the strings of the batch's last event of this schema,
	// which a later one may repeat: the context's (wire.SlotComm, ...), then
	// prev[wire.CtxStrings+i] field i's string; prevList[i] field i's list. seen
	// says there was such an event.
	prev     []string
	prevList [][]string
	seen     bool
	// prevLabels are the pod labels of the last event with a
	// container's workload; prevTag the workload tag (host or container)
	// the next may repeat.
	prevLabels []string
	prevTag    byte
}

// noFields is the Fields of an event without fields: never nil, and with
// no capacity, so nothing can write through it.
var noFields = []Field{}

// Reading positions at or past badPos say why reading failed; the first
// failure sticks, since every read at such a position fails the same way.
const (
	badTruncated = -1 - iota // the data ends inside a value
	badOverflow              // a varint longer than 64 bits
	badUint32                // a number over 32 bits where 32 are the most
	badBool                  // a bool other than 0 or 1
	badRepeat                // a repeated value with no earlier event to repeat
	badWorkload              // a workload tag the layout does not have
	badPos                   // the smallest bad position
)

// badError explains a bad position.
func badError(p int) error {
	switch p {
	case badOverflow:
		return errors.New("varint overflows 64 bits")
	case badUint32:
		return errors.New("number does not fit in 32 bits")
	case badBool:
		return errors.New("bool is neither 0 nor 1")
	case badWorkload:
		return errors.New("workload tag is not 0 (unknown), 1 (host), 2 (container) or 3 (the same)")
	case badRepeat:
		return errors.New("repeats a value of the previous event of its schema, but it is the first")
	}
	return errors.New("truncated")
}

// decode decodes one batch. The result is valid until the next call; data
// must not be modified afterwards, ever (see decoder).
func (d *decoder) decode(data []byte) ([]Event, error) {
	if len(data) < wire.HeaderLen {
		return nil, fmt.Errorf("decode events: %d bytes, shorter than the %d-byte header", len(data), wire.HeaderLen)
	}
	if data[0] != wire.Layout {
		return nil, fmt.Errorf("decode events: event encoding layout %d, this SDK decodes layout %d: build the plugin against the host's flowtap plugins/sdk", data[0], wire.Layout)
	}
	count := binary.LittleEndian.Uint32(data[1:wire.HeaderLen])
	if uint64(count) > uint64(len(data)-wire.HeaderLen)/minEventLen {
		return nil, fmt.Errorf("decode events: header claims %d events, more than %d bytes can hold", count, len(data))
	}
	if cap(d.events) < int(count) {
		d.events = make([]Event, 0, max(int(count), 2*cap(d.events)))
	}
	evs := d.events[:0]
	fields, strs := d.fields[:0], d.strs[:0]
	d.schemas, d.schemaFields = d.schemas[:0], d.schemaFields[:0]
	clear(d.prevStrs) // drop the last batch's strings
	clear(d.prevLists)
	d.prevStrs, d.prevLists = d.prevStrs[:0], d.prevLists[:0]
	evs, fields, strs, err := d.decodeRecords(data, count, evs, fields, strs)
	// Keep the slabs, grown or not, for the next batch.
	d.fields, d.strs = fields[:0], strs[:0]
	if err != nil {
		return nil, err
	}
	d.events = evs
	return evs, nil
}

// decodeRecords decodes the records of a batch that claims count events,
// appending to evs and to the fields and strs slabs.
func (d *decoder) decodeRecords(data []byte, count uint32, evs []Event, fields []Field, strs []string) ([]Event, []Field, []string, error) {
	p := wire.HeaderLen
	for p < len(data) {
		start := p
		var tag uint64
		if data[p] < 0x80 { // p < len(data)
			tag, p = uint64(data[p]), p+1
		} else {
			tag, p = readUvarint(data, p)
		}
		if tag == 0 {
			if p < 0 {
				return nil, fields, strs, fmt.Errorf("decode events: record at byte %d: %w", start, badError(p))
			}
			var err error
			if p, err = d.readSchema(data, p); err != nil {
				return nil, fields, strs, fmt.Errorf("decode events: schema %d at byte %d: %w", len(d.schemas), start, err)
			}
			continue
		}
		if tag-1 >= uint64(len(d.schemas)) {
			return nil, fields, strs, fmt.Errorf("decode events: event %d at byte %d: schema %d is not defined (the batch defines %d)", len(evs), start, tag-1, len(d.schemas))
		}
		if len(evs) == int(count) {
			return nil, fields, strs, fmt.Errorf("decode events: more events than the %d the header claims", count)
		}
		sc := &d.schemas[tag-1]
		// evs has room for count events. Like the fields below, the event
		// is set member by member, pointers only where they change.
		evs = evs[:len(evs)+1]
		ev := &evs[len(evs)-1]
		ev.ID = sc.id
		if !samePointer(ev.Name, sc.name) {
			ev.Name = sc.name
		}
		if p <= len(data)-8 {
			ev.Timestamp = int64(binary.LittleEndian.Uint64(data[p:]))
			p += 8
		} else {
			p = badTruncated
		}
		c := &ev.Context
		c.SocketCookie, p = readUvarint(data, p)
		c.CgroupID, p = readUvarint(data, p)
		c.PID, p = readUint32(data, p)
		c.UID, p = readUint32(data, p)
		var comm, host string
		comm, p = readRepeated(data, p, sc, wire.SlotComm)
		host, p = readRepeated(data, p, sc, wire.SlotHost)
		if !samePointer(c.Comm, comm) {
			c.Comm = comm
		}
		if !samePointer(c.HostName, host) {
			c.HostName = host
		}
		p = readProcess(data, p, sc, c)

		n := len(sc.fields)
		if n == 0 {
			if !sameSlice(ev.Fields, noFields) {
				ev.Fields = noFields
			}
		} else {
			first := len(fields)
			if first+n > cap(fields) {
				// The events decoded so far keep the old array.
				fields = append(make([]Field, 0, max(2*cap(fields), first+n, 64)), fields...)
			}
			// The slab still holds an earlier batch's fields. Each field is
			// set member by member, and a pointer only where it changes:
			// while the garbage collector marks, every pointer written costs
			// a write barrier, and the names, for one, rarely change.
			fields = fields[:first+n]
			fs := fields[first : first+n : first+n]
			if !sameSlice(ev.Fields, fs) {
				ev.Fields = fs
			}
			for j := range fs {
				f := &fs[j]
				if name := sc.fields[j].Name; !samePointer(f.Name, name) {
					f.Name = name
				}
				v := &f.Value
				kind := sc.fields[j].Value.Kind
				v.Kind, v.Uint, v.Int, v.Bool = kind, 0, 0, false
				if kind != KindString && len(v.Str) > 0 {
					v.Str = ""
				}
				if kind != KindStrings && v.Strings != nil {
					v.Strings = nil
				}
				switch kind {
				case KindString:
					var s string
					s, p = readRepeated(data, p, sc, wire.CtxStrings+j)
					if !samePointer(v.Str, s) {
						v.Str = s
					}
				case KindUint:
					v.Uint, p = readUvarint(data, p)
				case KindInt:
					var u uint64
					u, p = readUvarint(data, p)
					v.Int = int64(u>>1) ^ -int64(u&1)
				case KindBool:
					switch {
					case uint(p) < uint(len(data)) && data[p] <= 1:
						v.Bool = data[p] == 1
						p++
					case p >= len(data):
						p = badTruncated
					case p >= 0:
						p = badBool
					}
				case KindStrings:
					var k uint64
					k, p = readUvarint(data, p)
					l := emptyStrings
					switch {
					case p < 0:
					case k == 0: // the previous event's list, copied
						if !sc.seen {
							p = badRepeat
						} else if prev := sc.prevList[j]; len(prev) > 0 {
							at := len(strs)
							strs = append(strs, prev...)
							l = strs[at:len(strs):len(strs)]
						}
					case k-1 > uint64(len(data)-p): // each string takes a byte at least
						p = badTruncated
					case k > 1:
						at := len(strs)
						for range k - 1 {
							var s string
							s, p = readString(data, p)
							strs = append(strs, s)
						}
						l = strs[at:len(strs):len(strs)]
					}
					v.Strings = l
					sc.prevList[j] = l
				}
			}
		}
		if p < 0 {
			return nil, fields, strs, fmt.Errorf("decode events: event %d (%s) at byte %d: %w", len(evs)-1, sc.name, start, badError(p))
		}
		sc.seen = true
	}
	if len(evs) != int(count) {
		return nil, fields, strs, fmt.Errorf("decode events: %d events, the header claims %d", len(evs), count)
	}
	return evs, fields, strs, nil
}

// readSchema reads one schema definition, after its tag, from data[p:]
// and returns the position after it.
func (d *decoder) readSchema(data []byte, p int) (int, error) {
	var id uint32
	var name, fname []byte
	var n uint64
	id, p = readUint32(data, p)
	name, p = readBytes(data, p)
	n, p = readUvarint(data, p)
	if p < 0 {
		return p, badError(p)
	}
	if id > math.MaxUint16 {
		return p, fmt.Errorf("event id %d: over 16 bits", id)
	}
	if n > uint64(len(data)-p)/2 { // a kind byte and a name length each
		return p, fmt.Errorf("%d fields: %w", n, badError(badTruncated))
	}
	first := len(d.schemaFields)
	for range n {
		var kind Kind
		if p < len(data) {
			kind = Kind(data[p])
			p++
		}
		fname, p = readBytes(data, p)
		if p < 0 {
			return p, badError(p)
		}
		if kind > KindStrings {
			return p, fmt.Errorf("field %q: unknown kind %d", fname, kind)
		}
		d.schemaFields = append(d.schemaFields, Field{Name: d.intern(fname), Value: Value{Kind: kind}})
	}
	// If schemaFields grows later in the batch, this window keeps
	// pointing at the array that held it then, which nothing overwrites.
	nf := len(d.schemaFields) - first
	at, atList := len(d.prevStrs), len(d.prevLists)
	d.prevStrs = slices.Grow(d.prevStrs, wire.CtxStrings+nf)[:at+wire.CtxStrings+nf]
	d.prevLists = slices.Grow(d.prevLists, nf)[:atList+nf]
	clear(d.prevStrs[at:])
	clear(d.prevLists[atList:])
	d.schemas = append(d.schemas, schema{
		id:       ID(id),
		name:     d.intern(name),
		fields:   d.schemaFields[first:len(d.schemaFields):len(d.schemaFields)],
		prev:     d.prevStrs[at:len(d.prevStrs):len(d.prevStrs)],
		prevList: d.prevLists[atList:len(d.prevLists):len(d.prevLists)],
	})
	return p, nil
}

// intern returns b as a string shared with earlier batches.
func (d *decoder) intern(b []byte) string {
	if s, ok := d.names[string(b)]; ok {
		return s
	}
	s := string(b)
	if d.names == nil {
		d.names = map[string]string{}
	}
	if len(d.names) < maxInterned {
		d.names[s] = s
	}
	return s
}

// The readers below read one primitive at data[p:] and return it with the
// position after it. At a bad position (p < 0) they return zero and p.

// readUvarint reads a uvarint. Callers where one byte is the rule check
// for it first themselves: the function is too large to be inlined.
func readUvarint(data []byte, p int) (uint64, int) {
	if p < 0 {
		return 0, p
	}
	// Unrolled up to three bytes: ports, pids, counters, durations.
	if p+2 < len(data) {
		b0, b1, b2 := data[p], data[p+1], data[p+2]
		switch {
		case b0 < 0x80:
			return uint64(b0), p + 1
		case b1 < 0x80:
			return uint64(b0&0x7f) | uint64(b1)<<7, p + 2
		case b2 < 0x80:
			return uint64(b0&0x7f) | uint64(b1&0x7f)<<7 | uint64(b2)<<14, p + 3
		}
	}
	v, n := binary.Uvarint(data[min(p, len(data)):])
	switch {
	case n == 0:
		return 0, badTruncated
	case n < 0:
		return 0, badOverflow
	}
	return v, p + n
}

func readUint32(data []byte, p int) (uint32, int) {
	v, p := readUvarint(data, p)
	if v > math.MaxUint32 {
		return 0, badUint32
	}
	return uint32(v), p
}

// readBytes reads a length-prefixed byte string, aliasing data.
func readBytes(data []byte, p int) ([]byte, int) {
	n, p := readUvarint(data, p)
	if n > uint64(len(data)-p) || p < 0 {
		if p >= 0 {
			p = badTruncated
		}
		return nil, p
	}
	end := p + int(n)
	return data[p:end:end], end
}

// readRepeated reads an rstring of slot slot of schema sc: a string
// (aliasing data) or a 0 that repeats the slot's value in the previous
// event of sc. It records the result as the slot's value.
func readRepeated(data []byte, p int, sc *schema, slot int) (string, int) {
	var n uint64
	if uint(p) < uint(len(data)) && data[p] < 0x80 {
		n, p = uint64(data[p]), p+1
	} else {
		n, p = readUvarint(data, p)
	}
	var s string
	switch {
	case p < 0:
		return "", p
	case n == 0:
		if !sc.seen {
			return "", badRepeat
		}
		s = sc.prev[slot]
	case n-1 > uint64(len(data)-p):
		return "", badTruncated
	case n > 1:
		s = unsafe.String(&data[p], int(n-1))
		p += int(n - 1)
	}
	if !samePointer(sc.prev[slot], s) { // spare a write barrier
		sc.prev[slot] = s
	}
	return s, p
}

// readProcess reads the owner's parent, start and executable and the
// workload (wire.Workload* tags) into c.
func readProcess(data []byte, p int, sc *schema, c *Context) int {
	c.PPID, p = readUint32(data, p)
	var zz uint64
	zz, p = readUvarint(data, p)
	c.ProcessStart = int64(zz>>1) ^ -int64(zz&1)
	var exe string
	exe, p = readRepeated(data, p, sc, wire.SlotExe)
	if !samePointer(c.Exe, exe) {
		c.Exe = exe
	}
	if p < 0 {
		return p
	}
	if p >= len(data) {
		return badTruncated
	}
	tag := data[p]
	p++
	if tag == wire.WorkloadSame {
		if !sc.seen || sc.prevTag == 0 {
			return badRepeat
		}
		tag = sc.prevTag
		if tag == wire.WorkloadContainer {
			setWorkload(c, sc.prev[wire.SlotContainerID:wire.SlotPodUID+1], sc.prevLabels)
			return p
		}
	}
	switch tag {
	case wire.WorkloadUnknown, wire.WorkloadHost:
		setWorkload(c, nil, nil)
		c.Host = tag == wire.WorkloadHost
		if tag == wire.WorkloadHost {
			sc.prevTag = tag
		}
		return p
	case wire.WorkloadContainer:
	default:
		return badWorkload
	}
	for slot := wire.SlotContainerID; slot <= wire.SlotPodUID; slot++ {
		_, p = readRepeated(data, p, sc, slot)
	}
	var labels []string
	labels, p = readLabels(data, p, sc)
	if p < 0 {
		return p
	}
	sc.prevTag, sc.prevLabels = tag, labels
	setWorkload(c, sc.prev[wire.SlotContainerID:wire.SlotPodUID+1], labels)
	return p
}

// setWorkload sets c's container fields from the strings of the slots
// wire.SlotContainerID..wire.SlotPodUID (nil: none) and the labels.
func setWorkload(c *Context, s []string, labels []string) {
	c.Host = false
	if s == nil {
		s = make([]string, wire.SlotPodUID+1-wire.SlotContainerID) // no allocation: it does not escape
	}
	c.ContainerID, c.ContainerRuntime, c.ContainerName, c.ContainerImage = s[0], s[1], s[2], s[3]
	c.PodName, c.PodNamespace, c.PodUID = s[4], s[5], s[6]
	c.PodLabels = labels
}

// readLabels reads the pod labels of a container's workload: an rlist,
// copied (strings alias the batch, the list does not).
func readLabels(data []byte, p int, sc *schema) ([]string, int) {
	var k uint64
	k, p = readUvarint(data, p)
	switch {
	case p < 0:
		return nil, p
	case k == 0:
		if !sc.seen {
			return nil, badRepeat
		}
		return sc.prevLabels, p
	case k == 1:
		return nil, p
	case k-1 > uint64(len(data)-p): // each string takes a byte at least
		return nil, badTruncated
	}
	l := make([]string, 0, k-1)
	for range k - 1 {
		var b []byte
		b, p = readBytes(data, p)
		if p < 0 {
			return nil, p
		}
		l = append(l, unsafe.String(unsafe.SliceData(b), len(b)))
	}
	return l, p
}

// samePointer reports whether a and b are the same string in memory: the
// same bytes at the same address (not merely equal contents).
func samePointer(a, b string) bool {
	return len(a) == len(b) && unsafe.StringData(a) == unsafe.StringData(b)
}

// sameSlice reports whether a and b are the same window of the same array.
func sameSlice(a, b []Field) bool {
	return len(a) == len(b) && cap(a) == cap(b) && unsafe.SliceData(a) == unsafe.SliceData(b)
}

// readString reads a length-prefixed string that aliases data.
func readString(data []byte, p int) (string, int) {
	var n uint64
	if uint(p) < uint(len(data)) && data[p] < 0x80 {
		n, p = uint64(data[p]), p+1
	} else {
		n, p = readUvarint(data, p)
	}
	if n == 0 || n > uint64(len(data)-p) || p < 0 {
		if n != 0 && p >= 0 {
			p = badTruncated
		}
		return "", p
	}
	return unsafe.String(&data[p], int(n)), p + int(n)
}
