// SPDX-License-Identifier: Apache-2.0

package derive

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/flowtap/flowtap/events"
)

// fakeNames names 192.0.2.x addresses by workload and records the calls.
type fakeNames struct {
	calls []string
}

func (f *fakeNames) AppendNames(dst []string, addr netip.Addr, workload uint64, now int64) []string {
	f.calls = append(f.calls, addr.String())
	if addr.Is4() && addr.As4()[2] == 2 {
		dst = append(dst, "w"+string(rune('0'+workload))+"."+addr.String())
	}
	return dst
}

func TestFlowNames(t *testing.T) {
	var got []events.Event
	names := &fakeNames{}
	tr := NewTracker(Config{Names: names}, func(ev events.Event) { got = append(got, ev) })
	feed(t, tr,
		"egress 10.0.0.1:40000 > 192.0.2.7:443 SYN cookie=1 cgroup=3",
		"ingress 192.0.2.7:443 > 10.0.0.1:40000 SYN|ACK cookie=1 cgroup=3",
		"close 10.0.0.1:40000 ~ 192.0.2.7:443 FIN_WAIT2 cookie=1 cgroup=3 sent=1/1 recv=1/1",
		"egress 10.0.0.1:40001 > 192.0.2.8:443 SYN cookie=2 cgroup=4",
		"ingress 192.0.2.8:443 > 10.0.0.1:40001 RST|ACK cookie=2 cgroup=4",
	)
	tr.Close(1e12)
	want := map[events.ID][]string{
		events.IDNetFlowTCPBegin:  {"w3.192.0.2.7"},
		events.IDNetFlowTCPEnd:    {"w3.192.0.2.7"},
		events.IDNetFlowTCPFailed: {"w4.192.0.2.8"},
	}
	if len(got) != 3 {
		t.Fatalf("got %d events, want begin, end, failed: %+v", len(got), got)
	}
	for _, ev := range got {
		var f events.Flow
		switch p := ev.Payload.(type) {
		case *events.FlowBegin:
			f = p.Flow
		case *events.FlowEnd:
			f = p.Flow
		case *events.FlowFailed:
			f = p.Flow
		}
		if !reflect.DeepEqual(f.DstDNS, want[ev.ID]) || f.SrcDNS != nil {
			t.Errorf("event %d: src_dns %q dst_dns %q, want none and %q", ev.ID, f.SrcDNS, f.DstDNS, want[ev.ID])
		}
	}
	// The end reuses the begin's names: four lookups in all (src and dst
	// at the begin, src and dst at the failure).
	if len(names.calls) != 4 {
		t.Errorf("lookups %q, want 4", names.calls)
	}
}
