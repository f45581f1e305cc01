// SPDX-License-Identifier: Apache-2.0

// Package spdx checks and adds the SPDX-License-Identifier line that every
// flowtap source file starts with (after a #! line, if any).
//
// flowtap is Apache-2.0, except the BPF C programs, which the kernel loads
// and which call GPL-only helpers: they are dual-licensed, GPL-2.0-only OR
// BSD-2-Clause, and their license section must say "Dual BSD/GPL", the
// kernel's name for that pair. Generated files (a "Code generated ... DO NOT
// EDIT." line) are their generator's business and are skipped.
package spdx

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
)

// The licenses files carry.
const (
	// Apache is flowtap's license.
	Apache = "Apache-2.0"
	// DualBPF is the BPF C programs' license, as SPDX spells it.
	DualBPF = "(GPL-2.0-only OR BSD-2-Clause)"
	// KernelDual is the same pair as the kernel's license section spells
	// it (include/linux/license.h).
	KernelDual = "Dual BSD/GPL"
)

// Tag precedes the license expression in a header.
const Tag = "SPDX-License-Identifier:"

// ErrMissing is reported for a source file without a header.
var ErrMissing = errors.New("no " + Tag + " header")

// style says how a kind of file spells a header line.
type style struct {
	comment string // "//" or "#"
	shebang bool   // a first "#!" line stays first
}

// Kind returns how name (a slash-separated path) spells its header and
// whether it is a source file that needs one at all. content decides for
// files without an extension (a "#!" first line makes a script).
func Kind(name string, content []byte) (s style, ok bool) {
	base := path.Base(name)
	switch {
	case strings.HasSuffix(base, ".go"), strings.HasSuffix(base, ".c"), strings.HasSuffix(base, ".h"), strings.HasSuffix(base, ".proto"):
		return style{comment: "//"}, true
	case strings.HasSuffix(base, ".sh"), bytes.HasPrefix(content, []byte("#!")):
		return style{comment: "#", shebang: true}, true
	case base == "Makefile" || strings.HasSuffix(base, ".mk"):
		return style{comment: "#"}, true
	}
	return style{}, false
}

// License is the license name (a slash-separated path) must carry.
func License(name string) string {
	if strings.HasSuffix(name, ".bpf.c") || strings.HasPrefix(name, "bpf/") && strings.HasSuffix(name, ".h") {
		return DualBPF
	}
	return Apache
}

// generatedRE is the Go convention for generated files, which other
// generators (bpf2go, protoc) follow too.
var generatedRE = regexp.MustCompile(`(?m)^// Code generated .* DO NOT EDIT\.$`)

// found returns the license expression of the header in content, or "".
// The header is the first line, or the second after a "#!" line.
func found(content []byte) string {
	lines := strings.SplitN(string(content), "\n", 3)
	first := lines[0]
	if strings.HasPrefix(first, "#!") && len(lines) > 1 {
		first = lines[1]
	}
	if _, after, ok := strings.Cut(first, Tag); ok {
		return strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(after), "*/"))
	}
	return ""
}

// licenseSectionRE finds a BPF program's license string:
// char __license[] SEC("license") = "...";  (or LICENSE, _license).
var licenseSectionRE = regexp.MustCompile(`SEC\("license"\)\s*=\s*"([^"]*)"`)

// Check returns nil when content, the file called name, needs no header
// or carries the right one; otherwise an error that says what to do.
func Check(name string, content []byte) error {
	if _, ok := Kind(name, content); !ok || generatedRE.Match(content) {
		return nil
	}
	want := License(name)
	got := found(content)
	switch {
	case got == "":
		return fmt.Errorf("%s: %w (want %q; make spdx adds it)", name, ErrMissing, want)
	case got != want:
		return fmt.Errorf("%s: header says %q, want %q", name, got, want)
	}
	if want == DualBPF {
		m := licenseSectionRE.FindSubmatch(content)
		if m == nil {
			return fmt.Errorf("%s: no SEC(\"license\") string; the kernel needs one: char __license[] SEC(\"license\") = %q;", name, KernelDual)
		}
		if string(m[1]) != KernelDual {
			return fmt.Errorf("%s: SEC(\"license\") says %q, want %q to match its SPDX header %s", name, m[1], KernelDual, DualBPF)
		}
	}
	return nil
}

// Fix returns content with a header added, and whether it changed it.
// A file that needs none, has one, or is generated is returned as it is;
// a wrong license in an existing header is left for a person to decide
// (Check reports it).
func Fix(name string, content []byte) ([]byte, bool) {
	s, ok := Kind(name, content)
	if !ok || generatedRE.Match(content) || found(content) != "" {
		return content, false
	}
	line := s.comment + " " + Tag + " " + License(name) + "\n"
	var out bytes.Buffer
	rest := content
	if s.shebang && bytes.HasPrefix(content, []byte("#!")) {
		first, after, _ := bytes.Cut(content, []byte("\n"))
		out.Write(first)
		out.WriteString("\n")
		rest = after
	}
	out.WriteString(line)
	// A blank line keeps the header out of a Go package's doc comment
	// and away from build constraints.
	if len(rest) > 0 && !bytes.HasPrefix(rest, []byte("\n")) {
		out.WriteString("\n")
	}
	out.Write(rest)
	return out.Bytes(), true
}
