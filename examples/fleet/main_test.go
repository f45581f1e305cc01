// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

func TestHostEvent(t *testing.T) {
	for _, tc := range []struct {
		subject, host, event string
		ok                   bool
	}{
		{"flowtap.web-1.net_flow_tcp_begin", "web-1", "net_flow_tcp_begin", true},
		{"flowtap.db_example_com.net_flow_tcp_end", "db_example_com", "net_flow_tcp_end", true},
		{"flowtap.web-1", "", "", false},
		{"flowtap.web-1.a.b", "", "", false},
		{"other.web-1.net_flow_tcp_begin", "", "", false},
		{"flowtap..net_flow_tcp_begin", "", "", false},
	} {
		host, event, ok := hostEvent(tc.subject, "flowtap")
		if host != tc.host || event != tc.event || ok != tc.ok {
			t.Errorf("hostEvent(%q) = %q, %q, %v; want %q, %q, %v", tc.subject, host, event, ok, tc.host, tc.event, tc.ok)
		}
	}
}

func TestEventCount(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header nats.Header
		body   string
		want   int
		err    string
	}{
		{"one event", nil, `{"event":"net_flow_tcp_begin"}`, 1, ""},
		{"packed", nats.Header{"Flowtap-Events": {"3"}, "Content-Type": {"application/x-ndjson"}}, "{}\n{}\n{}\n", 3, ""},
		{"packed, one event", nats.Header{"Flowtap-Events": {"1"}}, "{}\n", 1, ""},
		{"count off", nats.Header{"Flowtap-Events": {"2"}}, "{}\n{}\n{}\n", 0, "Flowtap-Events: 2, but the body holds 3"},
		{"no final newline", nats.Header{"Flowtap-Events": {"2"}}, "{}\n{}", 0, "but the body holds 1"},
		{"not a count", nats.Header{"Flowtap-Events": {"many"}}, "{}\n", 0, `"many" is not a count`},
	} {
		n, err := eventCount(tc.header, []byte(tc.body))
		if n != tc.want || (tc.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: eventCount = %d, %v; want %d, %q", tc.name, n, err, tc.want, tc.err)
		}
	}
}

func TestPrintTable(t *testing.T) {
	counts := map[string]*Counts{}
	for _, ev := range []struct{ host, event string }{
		{"web-2", "net_flow_tcp_begin"}, {"web-1", "net_flow_tcp_begin"}, {"web-1", "net_flow_tcp_end"},
		{"web-1", "net_flow_tcp_failed"}, {"web-2", "net_packet_dns"},
	} {
		if counts[ev.host] == nil {
			counts[ev.host] = &Counts{}
		}
		counts[ev.host].add(ev.event, 1)
	}
	var out bytes.Buffer
	printTable(&out, counts)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := [][]string{
		{"host", "connections", "ended", "failed", "other"},
		{"web-1", "1", "1", "1", "0"},
		{"web-2", "1", "0", "0", "1"},
		{"2", "hosts", "2", "1", "1", "1"},
	}
	if len(lines) != len(want) {
		t.Fatalf("table:\n%s", out.String())
	}
	for i, l := range lines {
		if got := strings.Fields(l); strings.Join(got, " ") != strings.Join(want[i], " ") {
			t.Errorf("line %d: %q, want %q", i, got, want[i])
		}
	}
}
