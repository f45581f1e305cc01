// SPDX-License-Identifier: Apache-2.0

package events

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// WriteMan writes the manual page of one event, in Markdown laid out like
// Tracee's event manual pages (a pandoc title block, then NAME,
// DESCRIPTION, EVENT SETS, DATA FIELDS, DEPENDENCIES, RELATED EVENTS).
// Everything on it comes from the definitions, so it cannot drift from
// what flowtap emits. An unknown name fails with the closest valid one.
func (c *Catalogue) WriteMan(w io.Writer, name string) error {
	d, ok := c.byName[name]
	if !ok {
		return c.noManPage(name)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "---\ntitle: FLOWTAP-%s\nsection: 1\nheader: flowtap Event Manual\n---\n\n", strings.ToUpper(strings.ReplaceAll(d.Name, "_", "-")))
	fmt.Fprintf(&b, "## NAME\n\n**%s** - %s\n\n", d.Name, d.Summary())
	fmt.Fprintf(&b, "## DESCRIPTION\n\n%s\n\n", d.Description)
	switch {
	case d.Internal:
		b.WriteString("This event is internal: flowtap emits it only when a pipeline selects it by its exact name, never through a set or a glob.\n\n")
	case d.ID == IDRecordsLost:
		b.WriteString("No set includes this event: flowtap sends it to every pipeline that consumes kernel events, and no filter drops it.\n\n")
	}
	fmt.Fprintf(&b, "Source: %s. Version: %s. ID: %d.\n\n", d.Source, d.Version, d.ID)

	b.WriteString("## EVENT SETS\n\n")
	if len(d.Sets) == 0 {
		b.WriteString("None.\n\n")
	} else {
		sets := make([]string, len(d.Sets))
		for i, s := range d.Sets {
			sets[i] = "**" + s + "**"
		}
		b.WriteString(strings.Join(sets, ", ") + "\n\n")
	}

	b.WriteString("## DATA FIELDS\n\n")
	if len(d.Fields) == 0 {
		b.WriteString("None.\n\n")
	}
	for _, f := range d.Fields {
		fmt.Fprintf(&b, "**%s** (*%s*)\n: %s\n\n", f.Name, f.Type, upperFirst(f.Doc))
	}
	b.WriteString("## CONTEXT\n\n")
	b.WriteString("Every event also carries its timestamp and context: the socket, its owning process where it is known, the host, and the workload (container and Kubernetes pod) where the socket belongs to one. Filters can test the fields above and pid, uid, comm, cgroup_id, ppid, exe, the container and pod fields, and host=true|false (see `flowtap run --filter`).\n\n")
	for _, f := range ContextFields() {
		fmt.Fprintf(&b, "**%s** (*%s*)\n: %s\n\n", f.Name, f.Type, upperFirst(f.Doc))
	}

	b.WriteString("## DEPENDENCIES\n\n")
	if d.Source == SourceKernel {
		fmt.Fprintf(&b, "**Kernel programs:**\n\n- %s: flowtap's kernel programs (see `flowtap explain` for the list)\n\n", d.Producer)
	} else {
		b.WriteString("**Event Dependencies:**\n\n")
		for _, id := range d.Dependencies {
			dep := c.byID[id]
			fmt.Fprintf(&b, "- %s: %s\n", dep.Name, dep.Summary())
		}
		fmt.Fprintf(&b, "\n**Derivation:** %s\n\n", d.Deriver)
	}

	if len(d.UseCases) > 0 {
		b.WriteString("## USE CASES\n\n")
		for _, u := range d.UseCases {
			fmt.Fprintf(&b, "- %s\n\n", u)
		}
	}

	b.WriteString("## RELATED EVENTS\n\n")
	related := c.related(d)
	if len(related) == 0 {
		b.WriteString("None.\n")
	}
	for _, r := range related {
		fmt.Fprintf(&b, "- **%s**: %s\n", r.Name, r.Summary())
	}
	_, err := w.Write(b.Bytes())
	if err != nil {
		return fmt.Errorf("write manual page of %s: %w", name, err)
	}
	return nil
}

// noManPage is WriteMan's error for a name that is no event: a set's
// name gets its events, anything else the closest event name (never a
// set's, which has no page).
func (c *Catalogue) noManPage(name string) error {
	if _, ok := c.sets[name]; ok {
		return fmt.Errorf("%q is a set of events, not an event: its events are %s (see 'flowtap man EVENT' for each)", name, strings.Join(c.setEventNames(name), ", "))
	}
	var all []string
	for _, d := range c.defs {
		all = append(all, d.Name)
	}
	if best := Closest(name, all); best != "" {
		return fmt.Errorf("no event %q: did you mean %q? (see 'flowtap list')", name, best)
	}
	if set := Closest(name, c.Sets()); set != "" {
		return fmt.Errorf("no event %q: the set %q is close; its events are %s (see 'flowtap list')", name, set, strings.Join(c.setEventNames(set), ", "))
	}
	return fmt.Errorf("no event %q (see 'flowtap list' for the events)", name)
}

// setEventNames names the events of set.
func (c *Catalogue) setEventNames(set string) []string {
	var names []string
	for _, id := range c.sets[set] {
		names = append(names, c.Name(id))
	}
	return names
}

// related returns the events that d derives from, that derive from d, or
// that share a dependency with d, ordered by ID.
func (c *Catalogue) related(d *Definition) []*Definition {
	seen := map[ID]bool{d.ID: true}
	var out []*Definition
	add := func(x *Definition) {
		if !seen[x.ID] {
			seen[x.ID] = true
			out = append(out, x)
		}
	}
	deps := map[ID]bool{}
	for _, id := range d.Dependencies {
		deps[id] = true
		add(c.byID[id])
	}
	for _, x := range c.defs {
		for _, id := range x.Dependencies {
			if id == d.ID || deps[id] {
				add(x)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Summary is the first sentence of the event's description, without its
// period and details: the one-line description of the manual page's NAME
// section, of its lists, and of shell completion.
func (d *Definition) Summary() string {
	s := d.Description
	if i := strings.Index(s, ". "); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimSuffix(s, ".")
	if i := strings.Index(s, ": "); i >= 0 && i > 20 {
		s = s[:i] // the part before the details
	}
	return s
}

func upperFirst(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// WriteManDir writes the manual page of every event into dir as
// <event>.md, and removes any other *.md file there, so the directory
// holds exactly the catalogue's pages.
func (c *Catalogue) WriteManDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write manual pages: %w", err)
	}
	want := map[string]bool{}
	for _, d := range c.defs {
		var b bytes.Buffer
		if err := c.WriteMan(&b, d.Name); err != nil {
			return err
		}
		path := filepath.Join(dir, d.Name+".md")
		want[path] = true
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("write manual page: %w", err)
		}
	}
	old, err := filepath.Glob(filepath.Join(dir, "*.md"))
	if err != nil {
		return fmt.Errorf("write manual pages: %w", err)
	}
	for _, p := range old {
		if !want[p] && filepath.Base(p) != "README.md" {
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("remove stale manual page: %w", err)
			}
		}
	}
	return nil
}
