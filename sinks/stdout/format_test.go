package stdout

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/flowtap/flowtap/events"
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

func flowEvent() sdk.Event {
	return sdk.Event{
		Timestamp: 1700000000123456789,
		ID:        uint32(events.IDNetFlowTCPBegin),
		Name:      events.NameNetFlowTCPBegin,
		Context: sdk.Context{
			SocketCookie: 18446744073709551615,
			CgroupID:     4242,
			PID:          1234,
			UID:          1000,
			Comm:         "curl",
			HostName:     "box",
		},
		Fields: []sdk.Field{
			{Name: "conn_direction", Value: events.String("outgoing")},
			{Name: "src", Value: events.String("10.0.0.1")},
			{Name: "dst", Value: events.String("93.184.216.34")},
			{Name: "src_port", Value: events.Uint(43210)},
			{Name: "dst_port", Value: events.Uint(443)},
			{Name: "src_dns", Value: events.Strings(nil)},
			{Name: "dst_dns", Value: events.Strings([]string{"example.com", "www.example.com"})},
		},
	}
}

func TestJSONEvent(t *testing.T) {
	ev := flowEvent()
	ev.Fields = append(ev.Fields,
		sdk.Field{Name: "delta", Value: events.Int(-7)},
		sdk.Field{Name: "ok", Value: events.Bool(true)},
		sdk.Field{Name: "unknown", Value: sdk.Value{}},
	)
	got := string(appendJSONEvent(nil, &ev))
	want := `{"timestamp":1700000000123456789,"event":"net_flow_tcp_begin",` +
		`"context":{"socket_cookie":18446744073709551615,"cgroup_id":4242,"pid":1234,"uid":1000,"comm":"curl","host_name":"box",` +
		`"ppid":0,"process_start":0,"exe":"","container_id":"","container_runtime":"","container_name":"","container_image":"",` +
		`"pod_name":"","pod_namespace":"","pod_uid":"","pod_labels":{}},` +
		`"fields":{"conn_direction":"outgoing","src":"10.0.0.1","dst":"93.184.216.34","src_port":43210,"dst_port":443,` +
		`"src_dns":[],"dst_dns":["example.com","www.example.com"],"delta":-7,"ok":true,"unknown":null}}` + "\n"
	if got != want {
		t.Errorf("appendJSONEvent:\n got %s\nwant %s", got, want)
	}
	ev.Context.PPID, ev.Context.ProcessStart, ev.Context.Exe = 1, 1700000000000000000, "/usr/bin/curl"
	ev.Context.Workload = &sdk.Workload{ContainerID: "c", ContainerRuntime: "containerd", ContainerName: "web", ContainerImage: "localhost/web:1",
		PodName: "web-0", PodNamespace: "payments", PodUID: "u", PodLabels: []string{"app=web", "tier=a=b"}}
	ev.Fields = nil
	got = string(appendJSONEvent(nil, &ev))
	want = `{"timestamp":1700000000123456789,"event":"net_flow_tcp_begin",` +
		`"context":{"socket_cookie":18446744073709551615,"cgroup_id":4242,"pid":1234,"uid":1000,"comm":"curl","host_name":"box",` +
		`"ppid":1,"process_start":1700000000000000000,"exe":"/usr/bin/curl","container_id":"c","container_runtime":"containerd",` +
		`"container_name":"web","container_image":"localhost/web:1","pod_name":"web-0","pod_namespace":"payments","pod_uid":"u",` +
		`"pod_labels":{"app":"web","tier":"a=b"}},"fields":{}}` + "\n"
	if got != want {
		t.Errorf("appendJSONEvent with a workload:\n got %s\nwant %s", got, want)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(got), &v); err != nil {
		t.Fatalf("not valid JSON: %v", err)
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
				{Name: s, Value: events.String(s)},
				{Name: "list", Value: events.Strings([]string{s, s})},
			},
		}
		line := appendJSONEvent(nil, &ev)
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
		if got := string(appendJSONString(nil, in)); got != want {
			t.Errorf("appendJSONString(%q) = %s, want %s", in, got, want)
		}
	}
}

// plainPrefix is jsonPlainPrefix byte by byte.
func plainPrefix(s string) int {
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
					if got, want := jsonPlainPrefix(s), plainPrefix(s); got != want {
						t.Fatalf("jsonPlainPrefix(%q) = %d, want %d", s, got, want)
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
		if got, want := jsonPlainPrefix(s), plainPrefix(s); got != want {
			t.Fatalf("jsonPlainPrefix(%q) = %d, want %d", s, got, want)
		}
		out := appendJSONString([]byte("x"), s)[1:]
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

func TestTableAlignment(t *testing.T) {
	tf := tableFormatter{loc: time.UTC}
	v6 := flowEvent()
	v6.Name = events.NameNetFlowTCPEnd
	v6.Context = sdk.Context{Comm: "a-much-longer-c", PID: 4194304}
	v6.Fields = []sdk.Field{
		{Name: "conn_direction", Value: events.String("incoming")},
		{Name: "src", Value: events.String("2001:db8::1")},
		{Name: "dst", Value: events.String("::1")},
		{Name: "src_port", Value: events.Uint(55555)},
		{Name: "dst_port", Value: events.Uint(22)},
	}
	other := sdk.Event{Timestamp: 5, ID: 7, Fields: []sdk.Field{
		{Name: "note", Value: events.String("has space")},
		{Name: "empty", Value: events.String("")},
		{Name: "n", Value: events.Int(-1)},
	}}
	ev := flowEvent()
	out := string(tf.appendHeader(nil))
	out += string(tf.appendEvent(nil, &ev))
	out += string(tf.appendEvent(nil, &v6))
	out += string(tf.appendEvent(nil, &other))
	pod, ctr, host := flowEvent(), flowEvent(), flowEvent()
	pod.Context.Workload = &sdk.Workload{ContainerID: strings.Repeat("3f", 32), PodName: "web-0"}
	ctr.Context.Workload = &sdk.Workload{ContainerID: strings.Repeat("3f", 32)}
	host.Context.Workload = &sdk.Workload{}
	for _, e := range []*sdk.Event{&pod, &ctr, &host} {
		e.Fields = e.Fields[:5]
		out += string(tf.appendEvent(nil, e))
	}
	want := "" +
		"TIME             EVENT                 COMM                 PID  WORKLOAD          DETAILS\n" +
		"22:13:20.123456  net_flow_tcp_begin    curl                1234  -                 10.0.0.1:43210 -> 93.184.216.34:443 conn_direction=outgoing dst_dns=[example.com,www.example.com]\n" +
		"22:13:20.123456  net_flow_tcp_end      a-much-longer-c  4194304  -                 [2001:db8::1]:55555 -> [::1]:22 conn_direction=incoming\n" +
		"00:00:00.000000  event_7               -                      -  -                 note=\"has space\" n=-1\n" +
		"22:13:20.123456  net_flow_tcp_begin    curl                1234  web-0             10.0.0.1:43210 -> 93.184.216.34:443 conn_direction=outgoing\n" +
		"22:13:20.123456  net_flow_tcp_begin    curl                1234  3f3f3f3f3f3f      10.0.0.1:43210 -> 93.184.216.34:443 conn_direction=outgoing\n" +
		"22:13:20.123456  net_flow_tcp_begin    curl                1234  host              10.0.0.1:43210 -> 93.184.216.34:443 conn_direction=outgoing\n"
	if out != want {
		t.Errorf("table:\n%s\nwant:\n%s", out, want)
	}
	// Every column starts at the same offset on every line.
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	for _, col := range []string{"EVENT", "COMM", "WORKLOAD", "DETAILS"} {
		at := strings.Index(lines[0], col)
		for _, l := range lines[1:] {
			if l[at-2:at] != "  " || l[at] == ' ' {
				t.Errorf("column %s does not start at %d in %q", col, at, l)
			}
		}
	}
}

func TestTableQuotesAmbiguousText(t *testing.T) {
	tf := tableFormatter{loc: time.UTC}
	ev := sdk.Event{Name: "x", Context: sdk.Context{Comm: "evil\nname", PID: 1}, Fields: []sdk.Field{
		{Name: "s", Value: events.String("a=b")},
		{Name: "l", Value: events.Strings([]string{"ok", "x,y"})},
	}}
	got := string(tf.appendEvent(nil, &ev))
	if strings.Count(got, "\n") != 1 {
		t.Fatalf("event spans lines: %q", got)
	}
	for _, want := range []string{`"evil\nname"`, `s="a=b"`, `l=[ok,"x,y"]`} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %s", got, want)
		}
	}
}

func BenchmarkJSONFormat(b *testing.B) {
	ev := flowEvent()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = appendJSONEvent(buf[:0], &ev)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkTableFormat(b *testing.B) {
	ev := flowEvent()
	tf := tableFormatter{loc: time.UTC}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = tf.appendEvent(buf[:0], &ev)
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkSinkWriteJSON is the whole Write path of a 100-event batch.
func BenchmarkSinkWriteJSON(b *testing.B) {
	s := New()
	s.out = io.Discard
	if err := s.Configure(b.Context(), []byte(`{"format":"json"}`)); err != nil {
		b.Fatal(err)
	}
	batch := make([]sdk.Event, 100)
	for i := range batch {
		batch[i] = flowEvent()
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Write(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "events/s")
}

// TestJSONContextKeysAreDocumented: the JSON context has exactly the
// keys events.ContextFields documents (flowtap list, the manual pages),
// in its order.
func TestJSONContextKeysAreDocumented(t *testing.T) {
	ev := flowEvent()
	line := appendJSONEvent(nil, &ev)
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
