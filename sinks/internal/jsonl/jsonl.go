// SPDX-License-Identifier: Apache-2.0

// Package jsonl formats sdk events as JSON lines, the one line format of
// the built-in sinks: the stdout sink's json output, the file sink's
// lines, the webhook sink's POST bodies and the NATS sink's messages.
package jsonl

import (
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/flowtap/flowtap/plugins/sdk"
)

// Append appends ev as one line of JSON, newline included:
//
//	{"timestamp":N,"event":"name","context":{...},"fields":{"name":value,...}}
//
// Fields keep the event's order. The encoder is written by hand so that a
// warm buffer formats an event without allocating. It is the stdout sink's
// json format (see sinks/stdout/README.md) and the line format of the file
// sink, the webhook sink's POST bodies and the NATS sink's messages.
func Append(b []byte, ev *sdk.Event) []byte {
	return appendEvent(b, ev, nil)
}

// Encoder formats events exactly as Append does, faster for a stream of
// them: it keeps the fields' names of recent event shapes rendered as
// keys, and the rendering of the last few contexts past their socket
// cookie, which a stream's events often share (the begin and end of one
// connection, the connections of a few busy processes). A sink that formats
// many events keeps one Encoder. The zero Encoder is ready; it is not safe
// for concurrent use. It keeps the strings of the contexts it cached, and
// so the memory behind them (for a plugin, a few batches').
type Encoder struct {
	keys fieldKeys
	ctx  contextCache
}

// Append appends ev as one line of JSON, as the package's Append does.
func (e *Encoder) Append(b []byte, ev *sdk.Event) []byte { return appendEvent(b, ev, e) }

// appendEvent is Append, taking the fields' rendered names and the
// context's rendering from e's caches when it has them (e may be nil).
func appendEvent(b []byte, ev *sdk.Event, e *Encoder) []byte {
	b = append(b, `{"timestamp":`...)
	b = strconv.AppendInt(b, ev.Timestamp, 10)
	b = append(b, `,"event":`...)
	b = AppendString(b, ev.Name)
	c := &ev.Context
	b = append(b, `,"context":{"socket_cookie":`...)
	b = strconv.AppendUint(b, c.SocketCookie, 10)
	if e == nil {
		b = appendContextRest(b, c)
	} else {
		b = e.ctx.append(b, c)
	}
	b = append(b, `},"fields":{`...)
	var keys *fieldKeys
	if e != nil {
		keys = &e.keys
	}
	if k := keys.lookup(ev); k != nil {
		for i := range ev.Fields {
			b = append(b, k[i]...)
			b = appendValue(b, ev.Fields[i].Value)
		}
		return append(b, "}}\n"...)
	}
	for i := range ev.Fields {
		b = appendKey(b, i, ev.Fields[i].Name)
		b = appendValue(b, ev.Fields[i].Value)
	}
	return append(b, "}}\n"...)
}

// appendContextRest appends the members of the context after its socket
// cookie, without the closing brace.
func appendContextRest(b []byte, c *sdk.Context) []byte {
	b = append(b, `,"cgroup_id":`...)
	b = strconv.AppendUint(b, c.CgroupID, 10)
	b = append(b, `,"pid":`...)
	b = strconv.AppendUint(b, uint64(c.PID), 10)
	b = append(b, `,"uid":`...)
	b = strconv.AppendUint(b, uint64(c.UID), 10)
	b = append(b, `,"comm":`...)
	b = AppendString(b, c.Comm)
	b = append(b, `,"host_name":`...)
	b = AppendString(b, c.HostName)
	return appendProcess(b, c)
}

// contextCache holds the renderings (appendContextRest) of the last
// contexts an Encoder formatted, a few: a host's streams interleave the
// events of a few busy processes (a client and the server it talks to).
type contextCache struct {
	entries [contextWays]contextEntry
	next    int // the entry a miss replaces: round robin
}

// contextWays is how many contexts a contextCache holds.
const contextWays = 4

// contextEntry is one context and its rendering.
type contextEntry struct {
	valid bool
	ctx   sdk.Context // SocketCookie unused
	json  []byte
}

// append appends c's members after its socket cookie, from the cache when
// c renders as a cached context did.
func (cc *contextCache) append(b []byte, c *sdk.Context) []byte {
	for i := range cc.entries {
		if e := &cc.entries[i]; e.valid && sameRendering(&e.ctx, c) {
			return append(b, e.json...)
		}
	}
	start := len(b)
	b = appendContextRest(b, c)
	e := &cc.entries[cc.next]
	cc.next = (cc.next + 1) % contextWays
	e.json = append(e.json[:0], b[start:]...)
	// The labels are copied: the cache must not see a later change of
	// the caller's list (strings are immutable; a slice is not).
	labels := append(e.ctx.PodLabels[:0], c.PodLabels...)
	e.ctx, e.valid = *c, true
	e.ctx.PodLabels = labels
	return b
}

// sameRendering reports whether a and b render alike past the socket
// cookie: every member appendContextRest writes is equal. Strings the SDK
// repeats are the same in memory, so most comparisons end at a pointer.
func sameRendering(a, b *sdk.Context) bool {
	if a.CgroupID != b.CgroupID || a.PID != b.PID || a.UID != b.UID || a.PPID != b.PPID || a.ProcessStart != b.ProcessStart {
		return false
	}
	if !sameString(a.Comm, b.Comm) || !sameString(a.HostName, b.HostName) || !sameString(a.Exe, b.Exe) ||
		!sameString(a.ContainerID, b.ContainerID) || !sameString(a.ContainerRuntime, b.ContainerRuntime) ||
		!sameString(a.ContainerName, b.ContainerName) || !sameString(a.ContainerImage, b.ContainerImage) ||
		!sameString(a.PodName, b.PodName) || !sameString(a.PodNamespace, b.PodNamespace) || !sameString(a.PodUID, b.PodUID) {
		return false
	}
	if len(a.PodLabels) != len(b.PodLabels) {
		return false
	}
	for i := range a.PodLabels {
		if !sameString(a.PodLabels[i], b.PodLabels[i]) {
			return false
		}
	}
	return true
}

// appendProcess appends the owner's lineage and the workload: ppid,
// process_start, exe, then the container and pod fields ("" and
// pod_labels {} for a socket of no container, or one not known yet).
func appendProcess(b []byte, c *sdk.Context) []byte {
	b = append(b, `,"ppid":`...)
	b = strconv.AppendUint(b, uint64(c.PPID), 10)
	b = append(b, `,"process_start":`...)
	b = strconv.AppendInt(b, c.ProcessStart, 10)
	b = append(b, `,"exe":`...)
	b = AppendString(b, c.Exe)
	for _, kv := range [...]struct{ key, val string }{
		{`,"container_id":`, c.ContainerID},
		{`,"container_runtime":`, c.ContainerRuntime},
		{`,"container_name":`, c.ContainerName},
		{`,"container_image":`, c.ContainerImage},
		{`,"pod_name":`, c.PodName},
		{`,"pod_namespace":`, c.PodNamespace},
		{`,"pod_uid":`, c.PodUID},
	} {
		b = append(b, kv.key...)
		b = AppendString(b, kv.val)
	}
	b = append(b, `,"pod_labels":{`...)
	for i, l := range c.PodLabels {
		if i > 0 {
			b = append(b, ',')
		}
		k, v, _ := strings.Cut(l, "=")
		b = AppendString(b, k)
		b = append(b, ':')
		b = AppendString(b, v)
	}
	return append(b, '}')
}

// appendKey appends the name of field i of an event as a key: with
// the comma that separates it from field i-1, and its colon.
func appendKey(b []byte, i int, name string) []byte {
	if i > 0 {
		b = append(b, ',')
	}
	b = AppendString(b, name)
	return append(b, ':')
}

// fieldKeys caches the field names of recent event shapes rendered as JSON
// keys (appendKey), for an Encoder, by event ID, direct-mapped: events of one ID
// mostly have the same fields, so most events reuse their keys. The SDK
// interns names, so checking that a cached shape fits compares pointers.
type fieldKeys struct {
	shapes [16]jsonShape
}

// jsonShape is one event shape: the field names and their keys.
type jsonShape struct {
	id    sdk.ID
	names []string
	keys  []string
}

// lookup returns the keys of ev's fields, caching them if needed; nil
// when k is nil or ev has no fields.
func (k *fieldKeys) lookup(ev *sdk.Event) []string {
	if k == nil || len(ev.Fields) == 0 {
		return nil
	}
	sh := &k.shapes[int(ev.ID)%len(k.shapes)]
	if sh.id == ev.ID && len(sh.names) == len(ev.Fields) {
		fits := true
		for i := range ev.Fields {
			if !sameString(ev.Fields[i].Name, sh.names[i]) {
				fits = false
				break
			}
		}
		if fits {
			return sh.keys
		}
	}
	sh.id = ev.ID
	sh.names, sh.keys = make([]string, len(ev.Fields)), make([]string, len(ev.Fields))
	for i := range ev.Fields {
		sh.names[i] = ev.Fields[i].Name
		sh.keys[i] = string(appendKey(nil, i, sh.names[i]))
	}
	return sh.keys
}

// sameString is a == b, quick when both are the same string in memory.
func sameString(a, b string) bool {
	return len(a) == len(b) && (unsafe.StringData(a) == unsafe.StringData(b) || a == b)
}

// appendValue appends v as JSON; a value of unknown kind is null and a
// list is an array, [] when empty.
func appendValue(b []byte, v sdk.Value) []byte {
	return AppendValue(b, v, AppendString, "null")
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string. The output is always valid
// JSON and valid UTF-8: quotes, backslashes and control characters are
// escaped, each byte of invalid UTF-8 becomes U+FFFD (as encoding/json
// does), and U+2028 and U+2029 are escaped so the line is also valid
// JavaScript.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	// Most strings (addresses, names, field names) need no escape: find
	// the first byte that may, and copy everything before it at once.
	i := plainPrefix(s)
	if i == len(s) {
		b = append(b, s...)
		return append(b, '"')
	}
	start := 0 // s[start:i] is pending, needing no escape
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// Bytes repeated in each of the 8 bytes of a word, for plainPrefix.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// plainPrefix returns the length of the longest prefix of s that
// AppendString copies as it is: printable ASCII other than '"' and
// '\\'. It looks at 8 bytes at a time.
func plainPrefix(s string) int {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := s[i : i+8]
		x := uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
			uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
		// A byte's high bit is set in each term when the byte is, in
		// turn: below 0x20, '"', '\\', or not ASCII. The subtractions
		// may also flag bytes above a flagged one, never a word with
		// none.
		ctl := (x - 0x20*ones) &^ x
		q := x ^ '"'*ones
		q = (q - ones) &^ q
		bs := x ^ '\\'*ones
		bs = (bs - ones) &^ bs
		if (ctl|q|bs|x)&highs != 0 {
			break
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			break
		}
	}
	return i
}

// AppendValue appends v with numbers and booleans in decimal and text, and
// list items, through appendStr; a value of unknown kind becomes unknown.
// The stdout sink's table format shares it, with its own appendStr.
func AppendValue(b []byte, v sdk.Value, appendStr func([]byte, string) []byte, unknown string) []byte {
	switch v.Kind {
	case sdk.KindString:
		return appendStr(b, v.Str)
	case sdk.KindUint:
		return strconv.AppendUint(b, v.Uint, 10)
	case sdk.KindInt:
		return strconv.AppendInt(b, v.Int, 10)
	case sdk.KindBool:
		return strconv.AppendBool(b, v.Bool)
	case sdk.KindStrings:
		b = append(b, '[')
		for i, s := range v.Strings {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendStr(b, s)
		}
		return append(b, ']')
	}
	return append(b, unknown...)
}
