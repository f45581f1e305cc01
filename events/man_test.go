// SPDX-License-Identifier: Apache-2.0

package events

import (
	"bytes"
	"strings"
	"testing"
)

// TestWriteMan checks every event's page has the reference page's sections
// and every field with its type, so the page cannot lose what the
// catalogue says.
func TestWriteMan(t *testing.T) {
	c := builtin(t)
	for _, d := range c.Definitions() {
		var b bytes.Buffer
		if err := c.WriteMan(&b, d.Name); err != nil {
			t.Fatal(err)
		}
		page := b.String()
		want := []string{"## NAME\n\n**" + d.Name + "** - ", "## DESCRIPTION", "## EVENT SETS", "## DATA FIELDS", "## DEPENDENCIES", "## RELATED EVENTS", d.Description}
		for _, s := range d.Sets {
			want = append(want, "**"+s+"**")
		}
		for _, f := range d.Fields {
			want = append(want, "**"+f.Name+"** (*"+f.Type+"*)\n: ")
		}
		for _, dep := range d.Dependencies {
			want = append(want, "- "+c.Name(dep)+": ")
		}
		for _, w := range want {
			if !strings.Contains(page, w) {
				t.Errorf("page of %s lacks %q", d.Name, w)
			}
		}
	}
	var b bytes.Buffer
	if err := c.WriteMan(&b, "net_flow_tcp_ends"); err == nil || !strings.Contains(err.Error(), `did you mean "net_flow_tcp_end"`) {
		t.Errorf("unknown event error = %v", err)
	}
}

func TestRelatedEvents(t *testing.T) {
	c := builtin(t)
	d, _ := c.Lookup(NameNetFlowTCPEnd)
	var names []string
	for _, r := range c.related(d) {
		names = append(names, r.Name)
	}
	if got := strings.Join(names, " "); got != "net_packet_flow_base net_tcp_socket_base net_packet_dns_base net_flow_tcp_begin net_flow_tcp_failed net_packet_dns" {
		t.Errorf("related events of net_flow_tcp_end = %s", got)
	}
}

func TestClosest(t *testing.T) {
	for _, tt := range []struct{ in, want string }{{"flow", "flows"}, {"dst_prt", "dst_port"}, {"zzzzzzzz", ""}} {
		if got := Closest(tt.in, []string{"flows", "dst_port", "src"}); got != tt.want {
			t.Errorf("Closest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
