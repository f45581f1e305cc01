// SPDX-License-Identifier: Apache-2.0

package events

// This file gives consumers that must read a few fields of many events
// (filters) typed access without rendering every field: AppendFields
// renders them all, as values.

// FlowOf returns the flow fields of a flow event's payload (begin, end,
// failed, and any payload embedding Flow), or false for other payloads.
// The returned Flow belongs to the event and must not be modified.
func FlowOf(p Payload) (*Flow, bool) {
	// The built-in flow payloads first: a concrete type switch costs a
	// comparison, an interface assertion a table lookup.
	switch p := p.(type) {
	case *FlowBegin:
		return &p.Flow, true
	case *FlowEnd:
		return &p.Flow, true
	case *FlowFailed:
		return &p.Flow, true
	}
	fp, ok := p.(interface{ flowFields() *Flow })
	if !ok {
		return nil, false
	}
	return fp.flowFields(), true
}

// flowFields lets FlowOf reach the Flow embedded in a payload.
func (f *Flow) flowFields() *Flow { return f }

// FieldValues returns the values an enumerated string field can take, in
// the catalogue's spelling, or nil when the field is free text. Filters use
// it to reject a misspelt value when they are compiled rather than
// silently never matching.
func FieldValues(field string) []string {
	switch field {
	case "conn_direction":
		return []string{Outgoing.String(), Incoming.String()}
	case "direction":
		return []string{Ingress.String(), Egress.String()}
	case "close_reason":
		return []string{CloseFIN.String(), CloseRST.String(), CloseEvicted.String(), CloseShutdown.String()}
	case "reason":
		return []string{FailRefused.String(), FailTimeout.String()}
	case "report":
		return []string{SocketClosed.String(), SocketSnapshot.String()}
	}
	return nil
}
