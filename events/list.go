// SPDX-License-Identifier: Apache-2.0

package events

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// listEntry is the machine-readable form of a definition, as
// 'flowtap list --json' prints it.
type listEntry struct {
	ID           ID          `json:"id"`
	Name         string      `json:"name"`
	Version      string      `json:"version"`
	Description  string      `json:"description"`
	Sets         []string    `json:"sets"`
	Fields       []FieldSpec `json:"fields"`
	Dependencies []string    `json:"dependencies"`
	Source       string      `json:"source"`
	Internal     bool        `json:"internal"`
}

// WriteListJSON writes every definition as a JSON array, ordered by ID.
func (c *Catalogue) WriteListJSON(w io.Writer) error {
	out := make([]listEntry, 0, len(c.defs))
	for _, d := range c.defs {
		e := listEntry{
			ID: d.ID, Name: d.Name, Version: d.Version, Description: d.Description,
			Sets: nonNil(d.Sets), Fields: d.Fields, Dependencies: c.depNames(d),
			Source: d.Source.String(), Internal: d.Internal,
		}
		if e.Fields == nil {
			e.Fields = []FieldSpec{}
		}
		out = append(out, e)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("write event list: %w", err)
	}
	return nil
}

// WriteListTable writes every definition for people: name, sets, fields
// with types, and dependencies, one event per line.
func (c *Catalogue) WriteListTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EVENT\tSETS\tFIELDS\tDEPENDS ON")
	for _, d := range c.defs {
		name := d.Name
		if d.Internal {
			name += " (internal)"
		}
		fields := make([]string, len(d.Fields))
		for i, f := range d.Fields {
			fields[i] = f.Name + " " + f.Type
		}
		deps := strings.Join(c.depNames(d), ",")
		if deps == "" {
			deps = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", name, strings.Join(d.Sets, ","), strings.Join(fields, ", "), deps)
	}
	ctx := ContextFields()
	fields := make([]string, len(ctx))
	for i, f := range ctx {
		fields[i] = f.Name + " " + f.Type
	}
	fmt.Fprintf(tw, "(context of every event)\t-\t%s\t-\n", strings.Join(fields, ", "))
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write event list: %w", err)
	}
	return nil
}

func (c *Catalogue) depNames(d *Definition) []string {
	names := make([]string, 0, len(d.Dependencies))
	for _, id := range d.Dependencies {
		names = append(names, c.Name(id))
	}
	return names
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
