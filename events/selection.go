// SPDX-License-Identifier: Apache-2.0

package events

import (
	"fmt"
	"path"
	"sort"
	"strings"
)

// Term is one parsed item of a selection: an event name, a set name or a
// glob, optionally negated.
type Term struct {
	// Text is the term without its leading '-'.
	Text string
	// Exclude is true for "-name".
	Exclude bool
}

// IsGlob reports whether the term is a pattern rather than a name.
func (t Term) IsGlob() bool { return strings.ContainsAny(t.Text, "*?") }

// String renders the term as it would be written.
func (t Term) String() string {
	if t.Exclude {
		return "-" + t.Text
	}
	return t.Text
}

// ParseSelection splits selection expressions into terms. Each expression
// is a comma-separated list of items; several expressions (for example the
// entries of a config file's events list) are concatenated. An item is an
// event name, a set name or a glob such as "net_flow_*", each optionally
// prefixed with '-' to exclude it. Whitespace around items is ignored.
func ParseSelection(exprs ...string) ([]Term, error) {
	var terms []Term
	for _, expr := range exprs {
		for item := range strings.SplitSeq(expr, ",") {
			item = strings.TrimSpace(item)
			if item == "" {
				if strings.TrimSpace(expr) == "" {
					continue
				}
				return nil, fmt.Errorf("selection %q: empty item between commas", expr)
			}
			t := Term{Text: item}
			if strings.HasPrefix(item, "-") {
				t.Exclude = true
				t.Text = strings.TrimSpace(item[1:])
			}
			if t.Text == "" {
				return nil, fmt.Errorf("selection %q: '-' must be followed by an event, set or glob", expr)
			}
			for _, r := range t.Text {
				if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '*' || r == '?') {
					return nil, fmt.Errorf("selection item %q: invalid character %q (event and set names use a-z, 0-9 and _, globs add * and ?)", item, r)
				}
			}
			terms = append(terms, t)
		}
	}
	if len(terms) == 0 {
		return nil, fmt.Errorf("selection is empty: name at least one event or set (see 'flowtap list')")
	}
	return terms, nil
}

// Select resolves selection expressions against the catalogue and returns
// the selected event IDs in ID order. Inclusions are unioned, then every
// exclusion is removed, so the order of items does not matter. Sets and
// globs never include internal events; only their exact name does. An
// unknown name fails with the closest valid one.
func (c *Catalogue) Select(exprs ...string) ([]ID, error) {
	terms, err := ParseSelection(exprs...)
	if err != nil {
		return nil, err
	}
	include := map[ID]bool{}
	exclude := map[ID]bool{}
	positives := 0
	for _, t := range terms {
		ids, err := c.match(t)
		if err != nil {
			return nil, err
		}
		target := include
		if t.Exclude {
			target = exclude
		} else {
			positives++
		}
		for _, id := range ids {
			target[id] = true
		}
	}
	if positives == 0 {
		return nil, fmt.Errorf("selection %q only excludes: name the events or sets to include first, e.g. \"flows,%s\"", strings.Join(exprs, ","), terms[0])
	}
	out := make([]ID, 0, len(include))
	for id := range include {
		if !exclude[id] {
			out = append(out, id)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// match returns the events one term names.
func (c *Catalogue) match(t Term) ([]ID, error) {
	if t.IsGlob() {
		var ids []ID
		for _, d := range c.defs {
			if ok, _ := path.Match(t.Text, d.Name); ok && !d.Internal {
				ids = append(ids, d.ID)
			}
		}
		if len(ids) == 0 {
			return nil, fmt.Errorf("selection item %q matches no public event (see 'flowtap list')", t)
		}
		return ids, nil
	}
	if d, ok := c.byName[t.Text]; ok {
		return []ID{d.ID}, nil
	}
	if ids, ok := c.sets[t.Text]; ok {
		return ids, nil
	}
	return nil, fmt.Errorf("unknown event or set %q%s", t.Text, c.suggest(t.Text))
}

// suggest returns a "did you mean" hint with the closest event or set name.
func (c *Catalogue) suggest(name string) string {
	best, bestDist := "", -1
	consider := func(cand string) {
		d := levenshtein(name, cand)
		if bestDist < 0 || d < bestDist || d == bestDist && cand < best {
			best, bestDist = cand, d
		}
	}
	for _, d := range c.defs {
		consider(d.Name)
	}
	for s := range c.sets {
		consider(s)
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(": did you mean %q? (see 'flowtap list')", best)
}

// levenshtein is the edit distance between a and b.
func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
