package stdout

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/flowtap/flowtap/plugins/sdk"
)

// appendJSONEvent appends ev as one line of JSON:
//
//	{"timestamp":N,"event":"name","context":{...},"fields":{"name":value,...}}
//
// Fields keep the event's order. The encoder is written by hand so that a
// warm buffer formats an event without allocating.
func appendJSONEvent(b []byte, ev *sdk.Event) []byte {
	return appendJSONEventKeys(b, ev, nil)
}

// appendJSONEventKeys is appendJSONEvent, taking the fields' rendered
// names from keys when it has them (keys may be nil).
func appendJSONEventKeys(b []byte, ev *sdk.Event, keys *jsonKeys) []byte {
	b = append(b, `{"timestamp":`...)
	b = strconv.AppendInt(b, ev.Timestamp, 10)
	b = append(b, `,"event":`...)
	b = appendJSONString(b, ev.Name)
	c := &ev.Context
	b = append(b, `,"context":{"socket_cookie":`...)
	b = strconv.AppendUint(b, c.SocketCookie, 10)
	b = append(b, `,"cgroup_id":`...)
	b = strconv.AppendUint(b, c.CgroupID, 10)
	b = append(b, `,"pid":`...)
	b = strconv.AppendUint(b, uint64(c.PID), 10)
	b = append(b, `,"uid":`...)
	b = strconv.AppendUint(b, uint64(c.UID), 10)
	b = append(b, `,"comm":`...)
	b = appendJSONString(b, c.Comm)
	b = append(b, `,"host_name":`...)
	b = appendJSONString(b, c.HostName)
	b = appendJSONProcess(b, c)
	b = append(b, `},"fields":{`...)
	if k := keys.lookup(ev); k != nil {
		for i := range ev.Fields {
			b = append(b, k[i]...)
			b = appendJSONValue(b, ev.Fields[i].Value)
		}
		return append(b, "}}\n"...)
	}
	for i := range ev.Fields {
		b = appendJSONKey(b, i, ev.Fields[i].Name)
		b = appendJSONValue(b, ev.Fields[i].Value)
	}
	return append(b, "}}\n"...)
}

// appendJSONProcess appends the owner's lineage and the workload: ppid,
// process_start, exe, then the container and pod fields, "" (and
// pod_labels {}) for a socket of no container or one not known yet.
func appendJSONProcess(b []byte, c *sdk.Context) []byte {
	b = append(b, `,"ppid":`...)
	b = strconv.AppendUint(b, uint64(c.PPID), 10)
	b = append(b, `,"process_start":`...)
	b = strconv.AppendInt(b, c.ProcessStart, 10)
	b = append(b, `,"exe":`...)
	b = appendJSONString(b, c.Exe)
	w := c.Workload
	if w == nil {
		w = &noWorkload
	}
	for _, kv := range [...]struct{ key, val string }{
		{`,"container_id":`, w.ContainerID},
		{`,"container_runtime":`, w.ContainerRuntime},
		{`,"container_name":`, w.ContainerName},
		{`,"container_image":`, w.ContainerImage},
		{`,"pod_name":`, w.PodName},
		{`,"pod_namespace":`, w.PodNamespace},
		{`,"pod_uid":`, w.PodUID},
	} {
		b = append(b, kv.key...)
		b = appendJSONString(b, kv.val)
	}
	b = append(b, `,"pod_labels":{`...)
	for i, l := range w.PodLabels {
		if i > 0 {
			b = append(b, ',')
		}
		k, v, _ := strings.Cut(l, "=")
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, v)
	}
	return append(b, '}')
}

// noWorkload stands for a workload not known.
var noWorkload sdk.Workload

// appendJSONKey appends the name of field i of an event as a key: with
// the comma that separates it from field i-1, and its colon.
func appendJSONKey(b []byte, i int, name string) []byte {
	if i > 0 {
		b = append(b, ',')
	}
	b = appendJSONString(b, name)
	return append(b, ':')
}

// jsonKeys caches the field names of recent event shapes rendered as JSON
// keys (appendJSONKey), by event ID, direct-mapped: events of one ID
// mostly have the same fields, so most events reuse their keys. The SDK
// interns names, so checking that a cached shape fits compares pointers.
type jsonKeys struct {
	shapes [16]jsonShape
}

// jsonShape is one event shape: the field names and their keys.
type jsonShape struct {
	id    uint32
	names []string
	keys  []string
}

// lookup returns the keys of ev's fields, caching them if needed; nil
// when k is nil or ev has no fields.
func (k *jsonKeys) lookup(ev *sdk.Event) []string {
	if k == nil || len(ev.Fields) == 0 {
		return nil
	}
	sh := &k.shapes[ev.ID%uint32(len(k.shapes))]
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
		sh.keys[i] = string(appendJSONKey(nil, i, sh.names[i]))
	}
	return sh.keys
}

// sameString is a == b, quick when both are the same string in memory.
func sameString(a, b string) bool {
	return len(a) == len(b) && (unsafe.StringData(a) == unsafe.StringData(b) || a == b)
}

// appendJSONValue appends v as JSON; a value of unknown kind is null and a
// list is an array, [] when empty.
func appendJSONValue(b []byte, v sdk.Value) []byte {
	return appendValue(b, v, appendJSONString, "null")
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. The output is always valid
// JSON and valid UTF-8: quotes, backslashes and control characters are
// escaped, each byte of invalid UTF-8 becomes U+FFFD (as encoding/json
// does), and U+2028 and U+2029 are escaped so the line is also valid
// JavaScript.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	// Most strings (addresses, names, field names) need no escape: find
	// the first byte that may, and copy everything before it at once.
	i := jsonPlainPrefix(s)
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

// Bytes repeated in each of the 8 bytes of a word, for jsonPlainPrefix.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// jsonPlainPrefix returns the length of the longest prefix of s that
// appendJSONString copies as it is: printable ASCII other than '"' and
// '\\'. It looks at 8 bytes at a time.
func jsonPlainPrefix(s string) int {
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

// Table column widths. A longer value pushes the rest of its line right
// rather than being cut.
const (
	timeLayout = "15:04:05.000000"
	timeWidth  = len(timeLayout)
	eventWidth = 20 // len("net_packet_flow_base")
	commWidth  = 15 // the kernel's TASK_COMM_LEN without its NUL
	pidWidth   = 7
	wlWidth    = 16 // a pod name, or a short container id (12)
	colSep     = "  "
)

// tableFormatter formats events as aligned columns for people: TIME,
// EVENT, COMM, PID, WORKLOAD (the pod's name, else the container's short
// id, "host" for no container, "-" while not known), then the fields as
// name=value pairs. An event with
// src, dst, src_port and dst_port fields (the flow events) starts its
// details with "src:src_port -> dst:dst_port". Empty strings and empty
// lists are left out of the details.
type tableFormatter struct {
	loc *time.Location // time zone of the TIME column
}

// appendHeader appends the header line.
func (t tableFormatter) appendHeader(b []byte) []byte {
	b = appendPadded(b, "TIME", timeWidth)
	b = append(b, colSep...)
	b = appendPadded(b, "EVENT", eventWidth)
	b = append(b, colSep...)
	b = appendPadded(b, "COMM", commWidth)
	b = append(b, colSep...)
	b = appendLeftPad(b, "PID", pidWidth)
	b = append(b, colSep...)
	b = appendPadded(b, "WORKLOAD", wlWidth)
	b = append(b, colSep...)
	b = append(b, "DETAILS"...)
	return append(b, '\n')
}

// appendEvent appends ev as one table line.
func (t tableFormatter) appendEvent(b []byte, ev *sdk.Event) []byte {
	b = time.Unix(0, ev.Timestamp).In(t.loc).AppendFormat(b, timeLayout)
	b = append(b, colSep...)

	col := len(b)
	if ev.Name != "" {
		b = appendText(b, ev.Name)
	} else {
		b = append(b, "event_"...)
		b = strconv.AppendUint(b, uint64(ev.ID), 10)
	}
	b = pad(b, col, eventWidth)
	b = append(b, colSep...)

	col = len(b)
	if ev.Context.Comm != "" {
		b = appendText(b, ev.Context.Comm)
	} else {
		b = append(b, '-')
	}
	b = pad(b, col, commWidth)
	b = append(b, colSep...)

	var pid [10]byte
	digits := append(pid[:0], '-')
	if ev.Context.PID != 0 {
		digits = strconv.AppendUint(pid[:0], uint64(ev.Context.PID), 10)
	}
	for n := len(digits); n < pidWidth; n++ {
		b = append(b, ' ')
	}
	b = append(b, digits...)
	b = append(b, colSep...)

	col = len(b)
	switch w := ev.Context.Workload; {
	case w == nil:
		b = append(b, '-')
	case w.PodName != "":
		b = appendText(b, w.PodName)
	case w.ContainerID != "":
		b = appendText(b, w.ShortID())
	default:
		b = append(b, "host"...)
	}
	b = pad(b, col, wlWidth)
	b = append(b, colSep...)

	details := len(b)
	src, okSrc := ev.Field("src")
	dst, okDst := ev.Field("dst")
	sport, okSport := ev.Field("src_port")
	dport, okDport := ev.Field("dst_port")
	flow := okSrc && okDst && okSport && okDport
	if flow {
		b = appendEndpoint(b, src, sport)
		b = append(b, " -> "...)
		b = appendEndpoint(b, dst, dport)
	}
	for i := range ev.Fields {
		f := &ev.Fields[i]
		if flow && (f.Name == "src" || f.Name == "dst" || f.Name == "src_port" || f.Name == "dst_port") {
			continue
		}
		if (f.Value.Kind == sdk.KindString && f.Value.Str == "") || (f.Value.Kind == sdk.KindStrings && len(f.Value.Strings) == 0) {
			continue
		}
		if len(b) > details {
			b = append(b, ' ')
		}
		b = appendText(b, f.Name)
		b = append(b, '=')
		b = appendTableValue(b, f.Value)
	}
	// Without details the line would end in padding.
	for len(b) > 0 && b[len(b)-1] == ' ' {
		b = b[:len(b)-1]
	}
	return append(b, '\n')
}

// appendEndpoint appends addr:port, with an IPv6 address in brackets.
func appendEndpoint(b []byte, addr, port sdk.Value) []byte {
	v6 := addr.Kind == sdk.KindString && strings.Contains(addr.Str, ":")
	if v6 {
		b = append(b, '[')
	}
	b = appendTableValue(b, addr)
	if v6 {
		b = append(b, ']')
	}
	b = append(b, ':')
	return appendTableValue(b, port)
}

// appendTableValue appends v for people: strings bare unless they need
// quotes, lists as [a,b].
func appendTableValue(b []byte, v sdk.Value) []byte {
	return appendValue(b, v, appendText, "?")
}

// appendValue appends v with numbers and booleans in decimal and text, and
// list items, through appendStr; a value of unknown kind becomes unknown.
func appendValue(b []byte, v sdk.Value, appendStr func([]byte, string) []byte, unknown string) []byte {
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

// appendText appends s bare when that is unambiguous on a table line,
// else Go-quoted: empty strings, spaces, quotes, '=', ',', brackets and
// anything unprintable or not UTF-8 get quotes.
func appendText(b []byte, s string) []byte {
	if s == "" {
		return append(b, `""`...)
	}
	for _, r := range s {
		switch {
		case r == utf8.RuneError, r <= ' ', r == '"', r == '=', r == ',', r == '[', r == ']', r == '\\', r == 0x7f, !strconv.IsPrint(r):
			return strconv.AppendQuote(b, s)
		}
	}
	return append(b, s...)
}

// pad pads the column that starts at b[start:] with spaces to width
// characters.
func pad(b []byte, start, width int) []byte {
	for n := utf8.RuneCount(b[start:]); n < width; n++ {
		b = append(b, ' ')
	}
	return b
}

// appendPadded appends s left-aligned in width characters.
func appendPadded(b []byte, s string, width int) []byte {
	start := len(b)
	return pad(append(b, s...), start, width)
}

// appendLeftPad appends s right-aligned in width characters.
func appendLeftPad(b []byte, s string, width int) []byte {
	for n := utf8.RuneCountInString(s); n < width; n++ {
		b = append(b, ' ')
	}
	return append(b, s...)
}

// AppendJSON appends ev as one line of JSON, newline included, in the
// format of the json output (see README.md): the JSON-lines format the
// file and webhook sinks share. A warm buffer formats an event without
// allocating.
func AppendJSON(b []byte, ev *sdk.Event) []byte { return appendJSONEvent(b, ev) }
