// SPDX-License-Identifier: Apache-2.0

// Package filter compiles filter expressions such as
//
//	conn_direction=incoming and dst_port=1-1023 and not src=127.0.0.0/8
//
// into typed predicates over flowtap events. An expression is parsed once
// (Parse), then compiled against the definitions of the events a pipeline
// selected (Compile): every clause is checked against the types of the
// fields it names, and values are converted once (ports to numbers, CIDRs
// to prefixes, globs to matchers), so matching an event compares numbers,
// addresses and bytes, and allocates nothing. See README.md for the
// grammar.
package filter

import (
	"fmt"
	"strings"
)

// Limits that keep hostile or accidental input cheap to reject.
const (
	// MaxLength is the longest expression accepted, in bytes.
	MaxLength = 4096
	// MaxDepth bounds the nesting of parentheses and negations.
	MaxDepth = 32
)

// SyntaxError is a malformed expression: what is wrong, and where (a byte
// offset into the expression, counted from 1).
type SyntaxError struct {
	Expr string
	Pos  int
	Msg  string
}

// Error implements error.
func (e *SyntaxError) Error() string {
	return fmt.Sprintf("filter %q: at %d: %s", e.Expr, e.Pos, e.Msg)
}

// Op is a clause's comparison.
type Op uint8

// Comparisons.
const (
	OpEq Op = iota + 1 // = or ==: any of the values matches
	OpNe               // !=: none of the values matches
	OpLt               // <
	OpLe               // <=
	OpGt               // >
	OpGe               // >=
)

// String returns the operator as written.
func (o Op) String() string {
	switch o {
	case OpEq:
		return "="
	case OpNe:
		return "!="
	case OpLt:
		return "<"
	case OpLe:
		return "<="
	case OpGt:
		return ">"
	case OpGe:
		return ">="
	}
	return "?"
}

// Expr is a parsed, not yet compiled, filter expression.
type Expr struct {
	src  string
	root node
}

// String returns the expression as it was written.
func (e *Expr) String() string { return e.src }

// Canonical returns the expression fully parenthesised, as the parser
// understood it (for 'flowtap explain' and tests).
func (e *Expr) Canonical() string { return e.root.String() }

// Fields returns the field names the expression mentions, in order of
// first appearance.
func (e *Expr) Fields() []string {
	var out []string
	seen := map[string]bool{}
	walk(e.root, func(c *clause) {
		if !seen[c.field] {
			seen[c.field] = true
			out = append(out, c.field)
		}
	})
	return out
}

func walk(n node, f func(*clause)) {
	switch n := n.(type) {
	case *binary:
		walk(n.l, f)
		walk(n.r, f)
	case *negation:
		walk(n.x, f)
	case *clause:
		f(n)
	}
}

// node is a parsed expression tree node.
type node interface{ String() string }

// binary is "l and r" or "l or r".
type binary struct {
	and  bool
	l, r node
}

func (b *binary) String() string {
	op := "or"
	if b.and {
		op = "and"
	}
	return "(" + b.l.String() + " " + op + " " + b.r.String() + ")"
}

// negation is "not x".
type negation struct{ x node }

func (n *negation) String() string { return "not " + n.x.String() }

// clause is "field op value[,value...]".
type clause struct {
	field  string
	op     Op
	values []string
	pos    int // of the field, from 1
	vpos   int // of the first value, from 1
}

func (c *clause) String() string {
	vals := make([]string, len(c.values))
	for i, v := range c.values {
		if needsQuote(v) {
			v = quote(v)
		}
		vals[i] = v
	}
	return c.field + c.op.String() + strings.Join(vals, ",")
}

func needsQuote(v string) bool {
	if v == "" || v == "and" || v == "or" || v == "not" {
		return true
	}
	for i := 0; i < len(v); i++ {
		if !isBare(v[i]) {
			return true
		}
	}
	return false
}

func quote(v string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		if v[i] == '"' || v[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(v[i])
	}
	b.WriteByte('"')
	return b.String()
}

// isBare reports whether c may appear in an unquoted value.
func isBare(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', '(', ')', ',', '"', '!', '=', '<', '>', '&', '|':
		return false
	}
	return c > ' ' && c < 0x7f
}

func isIdent(c byte, first bool) bool {
	return c >= 'a' && c <= 'z' || c == '_' || !first && c >= '0' && c <= '9'
}

// Parse parses a filter expression. The empty (or all-blank) expression is
// an error: a pipeline without a filter has no filter, not an empty one.
func Parse(src string) (*Expr, error) {
	p := &parser{src: src}
	if len(src) > MaxLength {
		return nil, p.errAt(MaxLength, fmt.Sprintf("expression longer than %d bytes", MaxLength))
	}
	p.skip()
	if p.i == len(src) {
		return nil, p.errAt(p.i, "empty expression: write a clause such as dst_port=443, or leave the filter out")
	}
	root, err := p.or(0)
	if err != nil {
		return nil, err
	}
	p.skip()
	if p.i < len(src) {
		if src[p.i] == ')' {
			return nil, p.errAt(p.i, "')' without a matching '('")
		}
		return nil, p.errAt(p.i, fmt.Sprintf("expected 'and', 'or' or the end, found %q", p.word()))
	}
	return &Expr{src: src, root: root}, nil
}

type parser struct {
	src string
	i   int
}

func (p *parser) errAt(i int, msg string) error {
	return &SyntaxError{Expr: p.src, Pos: i + 1, Msg: msg}
}

func (p *parser) skip() {
	for p.i < len(p.src) && strings.IndexByte(" \t\r\n", p.src[p.i]) >= 0 {
		p.i++
	}
}

// word returns the text at the cursor up to the next blank, for messages.
func (p *parser) word() string {
	j := p.i
	for j < len(p.src) && j-p.i < 20 && strings.IndexByte(" \t\r\n", p.src[j]) < 0 {
		j++
	}
	return p.src[p.i:j]
}

// keyword consumes kw (a word such as "and", or a symbol such as "&&") if
// it is next; a word must not run on into an identifier.
func (p *parser) keyword(kw string) bool {
	p.skip()
	if !strings.HasPrefix(p.src[p.i:], kw) {
		return false
	}
	end := p.i + len(kw)
	if isIdent(kw[0], true) && end < len(p.src) && isIdent(p.src[end], false) {
		return false
	}
	p.i = end
	return true
}

func (p *parser) or(depth int) (node, error) {
	l, err := p.and(depth)
	if err != nil {
		return nil, err
	}
	for p.keyword("or") || p.keyword("||") {
		r, err := p.and(depth)
		if err != nil {
			return nil, err
		}
		l = &binary{l: l, r: r}
	}
	return l, nil
}

func (p *parser) and(depth int) (node, error) {
	l, err := p.unary(depth)
	if err != nil {
		return nil, err
	}
	for p.keyword("and") || p.keyword("&&") {
		r, err := p.unary(depth)
		if err != nil {
			return nil, err
		}
		l = &binary{and: true, l: l, r: r}
	}
	return l, nil
}

func (p *parser) unary(depth int) (node, error) {
	if depth >= MaxDepth {
		return nil, p.errAt(p.i, fmt.Sprintf("nested more than %d deep", MaxDepth))
	}
	p.skip()
	start := p.i
	if p.keyword("not") || p.i < len(p.src) && p.src[p.i] == '!' && !strings.HasPrefix(p.src[p.i:], "!=") && p.advance(1) {
		x, err := p.unary(depth + 1)
		if err != nil {
			return nil, err
		}
		return &negation{x: x}, nil
	}
	if p.i < len(p.src) && p.src[p.i] == '(' {
		p.i++
		x, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		p.skip()
		if p.i >= len(p.src) || p.src[p.i] != ')' {
			return nil, p.errAt(start, "'(' is never closed")
		}
		p.i++
		return x, nil
	}
	return p.clause()
}

func (p *parser) advance(n int) bool { p.i += n; return true }

func (p *parser) clause() (node, error) {
	p.skip()
	start := p.i
	if p.i == len(p.src) {
		return nil, p.errAt(p.i, "expected a clause such as dst_port=443, found the end")
	}
	for p.i < len(p.src) && isIdent(p.src[p.i], p.i == start) {
		p.i++
	}
	if p.i == start {
		return nil, p.errAt(p.i, fmt.Sprintf("expected a field name (a-z, 0-9, _), found %q", p.word()))
	}
	c := &clause{field: p.src[start:p.i], pos: start + 1}
	switch c.field {
	case "and", "or", "not":
		return nil, p.errAt(start, fmt.Sprintf("expected a clause such as dst_port=443, found %q", c.field))
	}
	p.skip()
	ops := []struct {
		text string
		op   Op
	}{{"==", OpEq}, {"!=", OpNe}, {"<=", OpLe}, {">=", OpGe}, {"=", OpEq}, {"<", OpLt}, {">", OpGt}}
	for _, o := range ops {
		if strings.HasPrefix(p.src[p.i:], o.text) {
			c.op = o.op
			p.i += len(o.text)
			break
		}
	}
	if c.op == 0 {
		return nil, p.errAt(p.i, fmt.Sprintf("expected an operator (=, !=, <, <=, >, >=) after %q, found %q", c.field, p.word()))
	}
	p.skip()
	c.vpos = p.i + 1
	for {
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		c.values = append(c.values, v)
		if p.i < len(p.src) && p.src[p.i] == ',' {
			p.i++
			continue
		}
		break
	}
	return c, nil
}

// value reads one quoted or bare value.
func (p *parser) value() (string, error) {
	start := p.i
	if p.i < len(p.src) && p.src[p.i] == '"' {
		var b strings.Builder
		for p.i++; p.i < len(p.src); p.i++ {
			ch := p.src[p.i]
			switch ch {
			case '\\':
				if p.i+1 >= len(p.src) {
					return "", p.errAt(start, "unterminated quoted value")
				}
				p.i++
				b.WriteByte(p.src[p.i])
			case '"':
				p.i++
				return b.String(), nil
			default:
				b.WriteByte(ch)
			}
		}
		return "", p.errAt(start, "unterminated quoted value")
	}
	for p.i < len(p.src) && isBare(p.src[p.i]) {
		p.i++
	}
	if p.i == start {
		if p.i == len(p.src) {
			return "", p.errAt(p.i, "expected a value, found the end")
		}
		return "", p.errAt(p.i, fmt.Sprintf("expected a value, found %q (quote values holding spaces or symbols: \"...\")", p.src[p.i:p.i+1]))
	}
	return p.src[start:p.i], nil
}
