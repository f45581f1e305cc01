// SPDX-License-Identifier: Apache-2.0

package stdout

import (
	"bytes"
	"fmt"
	"strings"
	"text/template"
	"time"

	"github.com/flowtap/flowtap/plugins/sdk"
)

// TemplateEvent is what a template of format "template" is executed on,
// once per event. Besides its fields it has the method Field:
//
//	{{.Time.Format "15:04:05"}} {{.Name}} {{.Context.Comm}} -> {{.Field "dst"}}:{{.Field "dst_port"}}
//
// The template's output for an event is one line: a newline is added if
// it does not end with one.
type TemplateEvent struct {
	// Timestamp is nanoseconds since the Unix epoch; Time the same as a
	// time.Time in the local time zone.
	Timestamp int64
	Time      time.Time
	// Name is the event's name, e.g. "net_flow_tcp_begin"; ID its
	// catalogue ID.
	Name string
	ID   sdk.ID
	// Context is the event's context: .Context.PID, .Context.Comm,
	// .Context.UID, .Context.HostName, .Context.CgroupID,
	// .Context.SocketCookie.
	Context sdk.Context
	// Fields maps each field's name to its value: a string, a uint64, an
	// int64, a bool or a []string.
	Fields map[string]any
}

// Field returns the value of the named field, or "" if the event has no
// such field (so a template may use it on any event).
func (e TemplateEvent) Field(name string) any {
	if v, ok := e.Fields[name]; ok {
		return v
	}
	return ""
}

// templateFuncs are the functions templates may call besides the
// built-ins.
var templateFuncs = template.FuncMap{
	"join":  strings.Join,
	"upper": strings.ToUpper,
	"lower": strings.ToLower,
}

// parseTemplate parses a template of format "template".
func parseTemplate(src string) (*template.Template, error) {
	t, err := template.New("stdout").Funcs(templateFuncs).Option("missingkey=error").Parse(src)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	return t, nil
}

// executeTemplate appends t's output for ev to b, ending it with a
// newline.
func executeTemplate(t *template.Template, b []byte, ev *sdk.Event) ([]byte, error) {
	te := TemplateEvent{
		Timestamp: ev.Timestamp,
		Time:      time.Unix(0, ev.Timestamp),
		Name:      ev.Name,
		ID:        ev.ID,
		Context:   ev.Context,
		Fields:    make(map[string]any, len(ev.Fields)),
	}
	for _, f := range ev.Fields {
		te.Fields[f.Name] = goValue(f.Value)
	}
	buf := bytes.NewBuffer(b)
	if err := t.Execute(buf, te); err != nil {
		return b, fmt.Errorf("template: event %s: %w", ev.Name, err)
	}
	b = buf.Bytes()
	if len(b) == 0 || b[len(b)-1] != '\n' {
		b = append(b, '\n')
	}
	return b, nil
}

// goValue is v as a plain Go value.
func goValue(v sdk.Value) any {
	switch v.Kind {
	case sdk.KindString:
		return v.Str
	case sdk.KindUint:
		return v.Uint
	case sdk.KindInt:
		return v.Int
	case sdk.KindBool:
		return v.Bool
	case sdk.KindStrings:
		return v.Strings
	}
	return nil
}
