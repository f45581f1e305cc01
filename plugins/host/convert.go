package host

import (
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/plugins/proto"
)

// converter turns batches of events into wire batches, reusing the wire
// messages from batch to batch: once warm, converting a batch of events of
// the same shapes allocates nothing. Field lists are not copied: the wire
// message refers to the events' own strings and string slices, which
// events never change after emission.
type converter struct {
	msg    proto.Batch
	events []*proto.Event // every event message made so far
	fields []events.Field // scratch for Payload.AppendFields
}

// batch fills and returns the wire batch for evs. The result is valid
// until the next call.
func (c *converter) batch(seq uint64, evs []events.Event, name func(events.ID) string) *proto.Batch {
	for len(c.events) < len(evs) {
		c.events = append(c.events, &proto.Event{Context: &proto.Context{}})
	}
	c.msg.Seq = seq
	c.msg.Events = c.events[:len(evs)]
	for i := range evs {
		ev := &evs[i]
		pe := c.events[i]
		pe.Timestamp = ev.Timestamp
		pe.Id = uint32(ev.ID)
		pe.Name = name(ev.ID)
		pc := pe.Context
		pc.SocketCookie = ev.Context.SocketCookie
		pc.CgroupId = ev.Context.CgroupID
		pc.Pid = ev.Context.PID
		pc.Uid = ev.Context.UID
		pc.Comm = ev.Context.Comm
		pc.HostName = ev.Context.HostName
		c.fields = c.fields[:0]
		if ev.Payload != nil {
			c.fields = ev.Payload.AppendFields(c.fields)
		}
		pe.Fields = fillFields(pe.Fields, c.fields)
	}
	return &c.msg
}

// fillFields sets dst to fs, reusing dst's field messages and their value
// wrappers where the kind matches.
func fillFields(dst []*proto.Field, fs []events.Field) []*proto.Field {
	dst = dst[:cap(dst)]
	for len(dst) < len(fs) {
		dst = append(dst, &proto.Field{})
	}
	dst = dst[:len(fs)]
	for i, f := range fs {
		pf := dst[i]
		pf.Name = f.Name
		setValue(pf, f.Value)
	}
	return dst
}

// setValue sets pf's value to v, reusing the oneof wrapper when it already
// holds the same kind.
func setValue(pf *proto.Field, v events.Value) {
	switch v.Kind {
	case events.KindString:
		if w, ok := pf.Value.(*proto.Field_Str); ok {
			w.Str = v.Str
		} else {
			pf.Value = &proto.Field_Str{Str: v.Str}
		}
	case events.KindUint:
		if w, ok := pf.Value.(*proto.Field_Uint); ok {
			w.Uint = v.Uint
		} else {
			pf.Value = &proto.Field_Uint{Uint: v.Uint}
		}
	case events.KindInt:
		if w, ok := pf.Value.(*proto.Field_Int); ok {
			w.Int = v.Int
		} else {
			pf.Value = &proto.Field_Int{Int: v.Int}
		}
	case events.KindBool:
		if w, ok := pf.Value.(*proto.Field_Bool); ok {
			w.Bool = v.Bool
		} else {
			pf.Value = &proto.Field_Bool{Bool: v.Bool}
		}
	case events.KindStrings:
		w, ok := pf.Value.(*proto.Field_Strings)
		if !ok || w.Strings == nil {
			w = &proto.Field_Strings{Strings: &proto.StringList{}}
			pf.Value = w
		}
		w.Strings.Values = v.Strings
	default:
		pf.Value = nil
	}
}
