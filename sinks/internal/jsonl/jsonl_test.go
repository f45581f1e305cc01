// SPDX-License-Identifier: Apache-2.0

package jsonl

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/testutil"
	"github.com/flowtap/flowtap/plugins/sdk"
)

// nastyStrings exercise the JSON escaper: quotes, backslashes, every
// control character, non-ASCII, invalid UTF-8 and the JavaScript line
// separators.
var nastyStrings = []string{
	"",
	"plain",
	`quote " and backslash \ and slash /`,
	"newline\n tab\t cr\r bell\a nul\x00 esc\x1b del\x7f",
	"\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f",
	"non-ASCII: héllo wörld 日本語 🙂",
	"invalid UTF-8: \xff\xfe and a cut rune \xe6\x97",
	"separators \u2028 and \u2029",
	`</script><!-- & -->`,
}

func TestJSONEvent(t *testing.T) {
	ev := testutil.SDKFlowBegin()
	ev.Fields = append(ev.Fields,
		sdk.Field{Name: "delta", Value: sdk.Int(-7)},
		sdk.Field{Name: "ok", Value: sdk.Bool(true)},
		sdk.Field{Name: "unknown", Value: sdk.Value{}},
	)
	got := string(Append(nil, &ev))
	want := `{"timestamp":1700000000123456789,"event":"net_flow_tcp_begin",` +
		`"context":{"socket_cookie":18446744073709551615,"cgroup_id":4242,"pid":1234,"uid":1000,"comm":"curl","host_name":"box",` +
		`"ppid":0,"process_start":0,"exe":"","container_id":"","container_runtime":"","container_name":"","container_image":"",` +
		`"pod_name":"","pod_namespace":"","pod_uid":"","pod_labels":{}},` +
		`"fields":{"conn_direction":"outgoing","src":"10.0.0.1","dst":"93.184.216.34","src_port":43210,"dst_port":443,` +
		`"src_dns":[],"dst_dns":["example.com","www.example.com"],"delta":-7,"ok":true,"unknown":null}}` + "\n"
	if got != want {
		t.Errorf("appendJSONEvent:\n got %s\nwant %s", got, want)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(got), &v); err != nil {
		t.Fatalf("not valid JSON: %v", err)
	}
	c := &ev.Context
	c.PPID, c.ProcessStart, c.Exe = 1, 1700000000000000000, "/usr/bin/curl"
	c.ContainerID, c.ContainerRuntime, c.ContainerName, c.ContainerImage = "c", "containerd", "web", "localhost/web:1"
	c.PodName, c.PodNamespace, c.PodUID, c.PodLabels = "web-0", "payments", "u", []string{"app=web", "tier=a=b"}
	ev.Fields = nil
	got = string(Append(nil, &ev))
	want = `{"timestamp":1700000000123456789,"event":"net_flow_tcp_begin",` +
		`"context":{"socket_cookie":18446744073709551615,"cgroup_id":4242,"pid":1234,"uid":1000,"comm":"curl","host_name":"box",` +
		`"ppid":1,"process_start":1700000000000000000,"exe":"/usr/bin/curl","container_id":"c","container_runtime":"containerd",` +
		`"container_name":"web","container_image":"localhost/web:1","pod_name":"web-0","pod_namespace":"payments","pod_uid":"u",` +
		`"pod_labels":{"app":"web","tier":"a=b"}},"fields":{}}` + "\n"
	if got != want {
		t.Errorf("with a workload:\n got %s\nwant %s", got, want)
	}
}

// TestJSONContextKeysAreDocumented: the JSON context has exactly the
// keys events.ContextFields documents (flowtap list, the manual pages),
// in its order.
func TestJSONContextKeysAreDocumented(t *testing.T) {
	ev := testutil.SDKFlowBegin()
	line := Append(nil, &ev)
	var obj struct {
		Context json.RawMessage `json:"context"`
	}
	if err := json.Unmarshal(line, &obj); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(obj.Context))
	var keys []string
	dec.Token() // {
	for dec.More() {
		k, _ := dec.Token()
		keys = append(keys, k.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	var want []string
	for _, f := range events.ContextFields() {
		want = append(want, f.Name)
	}
	if strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Errorf("JSON context keys\n %v\ndocumented\n %v", keys, want)
	}
}

// TestJSONEventValid puts every nasty string in every string position and
// checks that each line is valid JSON that decodes back to the input.
func TestJSONEventValid(t *testing.T) {
	for _, s := range nastyStrings {
		ev := sdk.Event{
			Name:    s,
			Context: sdk.Context{Comm: s, HostName: s},
			Fields: []sdk.Field{
				{Name: s, Value: sdk.String(s)},
				{Name: "list", Value: sdk.Strings([]string{s, s})},
			},
		}
		line := Append(nil, &ev)
		if !bytes.HasSuffix(line, []byte("}\n")) || bytes.Count(line, []byte("\n")) != 1 {
			t.Errorf("%q: not exactly one line: %q", s, line)
		}
		var got struct {
			Event   string `json:"event"`
			Context struct {
				Comm     string `json:"comm"`
				HostName string `json:"host_name"`
			} `json:"context"`
			Fields map[string]any `json:"fields"`
		}
		if err := json.Unmarshal(line, &got); err != nil {
			t.Errorf("%q: invalid JSON %s: %v", s, line, err)
			continue
		}
		want := string([]rune(s)) // invalid bytes become U+FFFD
		if got.Event != want || got.Context.Comm != want || got.Context.HostName != want {
			t.Errorf("%q: round trip: event %q comm %q host %q", s, got.Event, got.Context.Comm, got.Context.HostName)
		}
		if got.Fields[want] != want {
			t.Errorf("%q: field round trip: %v", s, got.Fields)
		}
		if l, _ := got.Fields["list"].([]any); len(l) != 2 || l[0] != want {
			t.Errorf("%q: list round trip: %v", s, got.Fields["list"])
		}
	}
}

func TestJSONStringEscapes(t *testing.T) {
	for in, want := range map[string]string{
		"":             `""`,
		"a\"b":         `"a\"b"`,
		`a\b`:          `"a\\b"`,
		"\n\r\t":       `"\n\r\t"`,
		"\x00\x1f":     `"\u0000\u001f"`,
		"\x7f":         "\"\x7f\"",
		"é":            `"é"`,
		"\xff":         `"\ufffd"`,
		"\u2028\u2029": `"\u2028\u2029"`,
	} {
		if got := string(AppendString(nil, in)); got != want {
			t.Errorf("AppendString(%q) = %s, want %s", in, got, want)
		}
	}
}

// slowPlainPrefix is plainPrefix byte by byte.
func slowPlainPrefix(s string) int {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			return i
		}
	}
	return len(s)
}

// TestJSONPlainPrefix puts every byte value at every position of strings
// of up to 24 bytes, after and before plain ones, so that each lane of the
// 8-byte words, and each byte next to a flagged one, is checked.
func TestJSONPlainPrefix(t *testing.T) {
	for n := 1; n <= 24; n++ {
		for at := 0; at < n; at++ {
			for c := 0; c < 256; c++ {
				for _, fill := range []byte{'a', ' ', '~', 0x21, 0x5b, 0x5d} {
					b := bytes.Repeat([]byte{fill}, n)
					b[at] = byte(c)
					s := string(b)
					if got, want := plainPrefix(s), slowPlainPrefix(s); got != want {
						t.Fatalf("plainPrefix(%q) = %d, want %d", s, got, want)
					}
				}
			}
		}
	}
}

func FuzzJSONString(f *testing.F) {
	for _, s := range nastyStrings {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := plainPrefix(s), slowPlainPrefix(s); got != want {
			t.Fatalf("plainPrefix(%q) = %d, want %d", s, got, want)
		}
		out := AppendString([]byte("x"), s)[1:]
		if !utf8.Valid(out) {
			t.Fatalf("output is not valid UTF-8: %q", out)
		}
		var got string
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("invalid JSON for %q: %s: %v", s, out, err)
		}
		if want := string([]rune(s)); got != want {
			t.Fatalf("round trip of %q: got %q, want %q", s, got, want)
		}
	})
}

// BenchmarkJSONFormat formats flow events: with Append, and with an
// Encoder when one process's connections alternate begin and end (its
// caches hit: "encoder"), when two processes' connections alternate
// ("encoder-two-owners"), and when every event has another owner
// ("encoder-new-owner", the cost of a miss).
func BenchmarkJSONFormat(b *testing.B) {
	begin := testutil.SDKFlowBegin()
	end := begin
	end.Name, end.ID = events.NameNetFlowTCPEnd, sdk.ID(events.IDNetFlowTCPEnd)
	end.Fields = append(slices.Clone(begin.Fields), sdk.Field{Name: "bytes_sent", Value: sdk.Uint(1234)})
	stream := []sdk.Event{begin, end}
	for _, variant := range []string{"append", "encoder", "encoder-two-owners", "encoder-new-owner"} {
		b.Run(variant, func(b *testing.B) {
			var e Encoder
			var buf []byte
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				ev := &stream[n&1]
				n++
				switch variant {
				case "append":
					buf = Append(buf[:0], ev)
				case "encoder-two-owners":
					ev.Context.PID = uint32(n>>1) & 1
					buf = e.Append(buf[:0], ev)
				case "encoder-new-owner":
					ev.Context.PID = uint32(n)
					fallthrough
				default:
					buf = e.Append(buf[:0], ev)
				}
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

// TestEncoderMatchesAppend: an Encoder writes what Append writes, event
// after event, whichever member of the context changes from one event to
// the next (each member of sdk.Context in turn, found by reflection so a
// member added later is covered too) and back, and whatever the fields.
func TestEncoderMatchesAppend(t *testing.T) {
	base := testutil.SDKFlowBegin()
	base.Context.PodLabels = []string{"app=web"}
	var stream []sdk.Event
	ct := reflect.TypeOf(sdk.Context{})
	for i := range ct.NumField() {
		ev := base
		ev.Context.PodLabels = slices.Clone(base.Context.PodLabels)
		f := reflect.ValueOf(&ev.Context).Elem().Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(f.String() + "-changed")
		case reflect.Uint32, reflect.Uint64:
			f.SetUint(f.Uint() + 1)
		case reflect.Int64:
			f.SetInt(f.Int() + 1)
		case reflect.Bool:
			f.SetBool(!f.Bool())
		case reflect.Slice:
			f.Set(reflect.ValueOf([]string{"app=web", "tier=db"}))
		default:
			t.Fatalf("context member %s of kind %s: teach this test to change it", ct.Field(i).Name, f.Kind())
		}
		end := ev
		end.Name, end.ID = events.NameNetFlowTCPEnd, sdk.ID(events.IDNetFlowTCPEnd)
		end.Fields = append(slices.Clone(ev.Fields), sdk.Field{Name: "bytes_sent", Value: sdk.Uint(uint64(i))})
		// The change, the same context again (a cache hit), and back.
		stream = append(stream, ev, end, base)
	}
	// Same strings in other memory: equal contents still match.
	copied := base
	copied.Context.Comm = strings.Clone(base.Context.Comm)
	copied.Context.PodLabels = []string{strings.Clone(base.Context.PodLabels[0])}
	stream = append(stream, copied, base)
	// More owners in turn than the cache holds, then fewer.
	for round := range 3 {
		for pid := range contextWays + 2 - 2*round {
			ev := base
			ev.Context.PID = uint32(100 + pid)
			stream = append(stream, ev)
		}
	}

	var e Encoder
	var got, want []byte
	for i := range stream {
		got = e.Append(got[:0], &stream[i])
		want = Append(want[:0], &stream[i])
		if !bytes.Equal(got, want) {
			t.Fatalf("event %d: Encoder wrote\n%s\nAppend wrote\n%s", i, got, want)
		}
	}
}

// TestEncoderOwnsItsLabels: a caller that reuses its label list for the
// next event gets that event's labels, not the cached rendering of the
// list's earlier contents.
func TestEncoderOwnsItsLabels(t *testing.T) {
	ev := testutil.SDKFlowBegin()
	labels := []string{"app=web"}
	ev.Context.PodLabels = labels
	var e Encoder
	e.Append(nil, &ev)
	labels[0] = "app=db" // the same list, changed in place
	if got, want := e.Append(nil, &ev), Append(nil, &ev); !bytes.Equal(got, want) {
		t.Fatalf("Encoder wrote\n%s\nAppend wrote\n%s", got, want)
	}
}
