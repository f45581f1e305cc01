// SPDX-License-Identifier: Apache-2.0

package events

import (
	"fmt"
	"io"
	"reflect"
	"strings"
)

// SchemaVersion is the version of the event schema as a whole: the event
// IDs and names, each event's fields with their types, and the context every
// event carries. It is what a sink, a stored file or a consumer of the
// NATS stream is written against, and 'flowtap version' prints it.
//
// It is a semantic version, bumped in the same change that alters the
// schema:
//   - MAJOR when a consumer written for the old schema could misread
//     events: an event or field removed or renamed, a field's type or
//     meaning changed, an ID reused;
//   - MINOR when something is only added: an event, a field, a set, a
//     context field (consumers must ignore fields they do not know);
//   - PATCH for corrections to descriptions alone.
//
// Each Definition also has its own Version, for changes to that one event.
// TestSchemaVersion holds the schema against testdata/schema.golden and
// refuses a changed schema under an unchanged SchemaVersion.
const SchemaVersion = "1.2.0"

// WriteSchema writes the parts of the catalogue that SchemaVersion versions,
// one line each, in a stable order: the context fields, then every event
// with its ID, version, sets and typed fields. Two catalogues with the same
// output have the same schema.
func (c *Catalogue) WriteSchema(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "schema %s\n", SchemaVersion)
	ct := reflect.TypeFor[Context]()
	for i := range ct.NumField() {
		f := ct.Field(i)
		fmt.Fprintf(&b, "context %s %s\n", f.Name, f.Type)
	}
	wt := reflect.TypeFor[Workload]()
	for i := range wt.NumField() {
		f := wt.Field(i)
		fmt.Fprintf(&b, "context Workload.%s %s\n", f.Name, f.Type)
	}
	for _, d := range c.defs {
		fmt.Fprintf(&b, "event %d %s %s sets=%s", d.ID, d.Name, d.Version, strings.Join(d.Sets, ","))
		if d.Internal {
			b.WriteString(" internal")
		}
		b.WriteString("\n")
		for _, f := range d.Fields {
			fmt.Fprintf(&b, "  field %s %s\n", f.Name, f.Type)
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write event schema: %w", err)
	}
	return nil
}
