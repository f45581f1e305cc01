// SPDX-License-Identifier: Apache-2.0

package filter

import "github.com/flowtap/flowtap/events"

// Typed access to the payload fields of the built-in flow events that are
// not part of events.Flow. Each accessor reports false for a payload it
// does not know, and the predicate then falls back to the rendered field,
// so an accessor missing here costs speed, never correctness.

// uintAccessor returns a reader of an unsigned payload field, or nil.
func uintAccessor(field string) func(events.Payload) (uint64, bool) {
	switch field {
	case "handshake_ns":
		return func(p events.Payload) (uint64, bool) {
			b, ok := p.(*events.FlowBegin)
			if !ok {
				return 0, false
			}
			return b.HandshakeNs, true
		}
	case "duration_ns":
		return func(p events.Payload) (uint64, bool) {
			e, ok := p.(*events.FlowEnd)
			if !ok {
				return 0, false
			}
			return e.DurationNs, true
		}
	case "bytes_sent", "bytes_received", "packets_sent", "packets_received":
		return func(p events.Payload) (uint64, bool) {
			e, ok := p.(*events.FlowEnd)
			if !ok {
				return 0, false
			}
			c := &e.Counters
			switch field {
			case "bytes_sent":
				return c.BytesSent, true
			case "bytes_received":
				return c.BytesReceived, true
			case "packets_sent":
				return c.PacketsSent, true
			}
			return c.PacketsReceived, true
		}
	}
	return nil
}

// enumAccessor returns a reader of an enumerated string payload field as
// its rendered value (a constant string: no allocation), or nil.
func enumAccessor(field string) func(events.Payload) (string, bool) {
	switch field {
	case "close_reason":
		return func(p events.Payload) (string, bool) {
			e, ok := p.(*events.FlowEnd)
			if !ok {
				return "", false
			}
			return e.Reason.String(), true
		}
	case "reason":
		return func(p events.Payload) (string, bool) {
			f, ok := p.(*events.FlowFailed)
			if !ok {
				return "", false
			}
			return f.Reason.String(), true
		}
	}
	return nil
}

// typedUintPred reads a field through an accessor, else renders it.
type typedUintPred struct {
	get     func(events.Payload) (uint64, bool)
	r       []urange
	generic pred
}

func (p *typedUintPred) match(ev *events.Event, s *scratch) bool {
	if v, ok := p.get(ev.Payload); ok {
		return inRanges(p.r, v)
	}
	return p.generic.match(ev, s)
}

// typedEnumPred reads an enumerated field through an accessor, else
// renders it.
type typedEnumPred struct {
	get     func(events.Payload) (string, bool)
	m       strMatcher
	generic pred
}

func (p *typedEnumPred) match(ev *events.Event, s *scratch) bool {
	if v, ok := p.get(ev.Payload); ok {
		return p.m.match(v)
	}
	return p.generic.match(ev, s)
}
