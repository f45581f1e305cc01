// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"fmt"
	"net/netip"

	"github.com/flowtap/flowtap/events"
)

// FlowLine renders a flow event (begin, end, failed) the way the golden
// files of derive and replay spell it: kind, direction, endpoints, then
// the event's own fields and "t=" followed by at. withContext adds the
// socket cookie and pid after the endpoints. ok is false for any other
// payload.
func FlowLine(ev events.Event, at string, withContext bool) (line string, ok bool) {
	const ms = 1e6
	flow := func(kind string, f *events.Flow) string {
		s := fmt.Sprintf("%s %s %s -> %s", kind, f.Direction, netip.AddrPortFrom(f.Src, f.SrcPort), netip.AddrPortFrom(f.Dst, f.DstPort))
		if withContext {
			s += fmt.Sprintf(" cookie=%d pid=%d", ev.Context.SocketCookie, ev.Context.PID)
		}
		return s
	}
	switch p := ev.Payload.(type) {
	case *events.FlowBegin:
		return fmt.Sprintf("%s handshake=%gms t=%s", flow("begin", &p.Flow), float64(p.HandshakeNs)/ms, at), true
	case *events.FlowEnd:
		c := p.Counters
		incomplete := ""
		if p.Incomplete {
			incomplete = " incomplete"
		}
		return fmt.Sprintf("%s reason=%s%s sent=%d/%d recv=%d/%d duration=%gms t=%s", flow("end", &p.Flow), p.Reason, incomplete,
			c.BytesSent, c.PacketsSent, c.BytesReceived, c.PacketsReceived, float64(p.DurationNs)/ms, at), true
	case *events.FlowFailed:
		return fmt.Sprintf("%s reason=%s t=%s", flow("failed", &p.Flow), p.Reason, at), true
	}
	return "", false
}
