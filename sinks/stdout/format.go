// SPDX-License-Identifier: Apache-2.0

package stdout

import (
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/flowtap/flowtap/internal/human"
	"github.com/flowtap/flowtap/plugins/sdk"
	"github.com/flowtap/flowtap/sinks/internal/jsonl"
)

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
	switch c := &ev.Context; {
	case c.PodName != "":
		b = appendText(b, c.PodName)
	case c.ContainerID != "":
		b = appendText(b, c.ShortID())
	case c.Host:
		b = append(b, "host"...)
	default:
		b = append(b, '-')
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
		b = appendField(b, f)
	}
	// Without details the line would end in padding.
	for len(b) > 0 && b[len(b)-1] == ' ' {
		b = b[:len(b)-1]
	}
	return append(b, '\n')
}

// appendField appends name=value, in human units where the name says
// what the number counts: a field counted in nanoseconds (name ending in
// "_ns") as a duration to three significant digits under its name
// without "_ns" (duration=1.5ms), a byte count (name starting with
// "bytes_" or ending in "_bytes") in binary units (bytes_sent=1.2 MiB).
// The json format keeps the raw numbers.
func appendField(b []byte, f *sdk.Field) []byte {
	if f.Value.Kind == sdk.KindUint {
		if name, ok := strings.CutSuffix(f.Name, "_ns"); ok && name != "" {
			b = appendText(b, name)
			b = append(b, '=')
			return append(b, human.Duration(time.Duration(min(f.Value.Uint, math.MaxInt64)))...)
		}
		if strings.HasPrefix(f.Name, "bytes_") || strings.HasSuffix(f.Name, "_bytes") {
			b = appendText(b, f.Name)
			b = append(b, '=')
			return append(b, human.Bytes(f.Value.Uint)...)
		}
	}
	b = appendText(b, f.Name)
	b = append(b, '=')
	return appendTableValue(b, f.Value)
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
	return jsonl.AppendValue(b, v, appendText, "?")
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
