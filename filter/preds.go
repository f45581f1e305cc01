// SPDX-License-Identifier: Apache-2.0

package filter

import (
	"net/netip"
	"strings"

	"github.com/flowtap/flowtap/events"
)

// pred is a compiled predicate over one event.
type pred interface {
	match(ev *events.Event, s *scratch) bool
}

type constPred bool

func (p constPred) match(*events.Event, *scratch) bool { return bool(p) }

// andPred holds when every predicate of the list holds.
type andPred []pred

func (p andPred) match(ev *events.Event, s *scratch) bool {
	for _, x := range p {
		if !x.match(ev, s) {
			return false
		}
	}
	return true
}

// orPred holds when any predicate of the list holds.
type orPred []pred

func (p orPred) match(ev *events.Event, s *scratch) bool {
	for _, x := range p {
		if x.match(ev, s) {
			return true
		}
	}
	return false
}

type notPred struct{ x pred }

func (p *notPred) match(ev *events.Event, s *scratch) bool { return !p.x.match(ev, s) }

// urange is an inclusive range of unsigned values.
type urange struct{ lo, hi uint64 }

func inRanges(r []urange, v uint64) bool {
	for i := range r {
		if v >= r[i].lo && v <= r[i].hi {
			return true
		}
	}
	return false
}

// irange is an inclusive range of signed values.
type irange struct{ lo, hi int64 }

// addrMatcher matches addresses against prefixes (a single address is a
// full-length prefix). IPv4-mapped IPv6 addresses match as IPv4.
type addrMatcher []netip.Prefix

func (m addrMatcher) match(a netip.Addr) bool {
	if a.Is4In6() {
		a = a.Unmap()
	}
	for _, p := range m {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// strMatcher matches exact strings and globs.
type strMatcher struct {
	exact []string
	globs []glob
	fold  bool // exact and globs are lower case; compare folding ASCII case
}

func (m *strMatcher) match(s string) bool {
	for _, e := range m.exact {
		if e == s || m.fold && equalFold(e, s) {
			return true
		}
	}
	for i := range m.globs {
		if m.globs[i].match(s, m.fold) {
			return true
		}
	}
	return false
}

func (m *strMatcher) matchAny(list []string) bool {
	for _, s := range list {
		if m.match(s) {
			return true
		}
	}
	return false
}

// equalFold compares lower-case l with s, folding s's ASCII letters. It
// compares from the end: DNS names that differ mostly differ there.
func equalFold(l, s string) bool {
	if len(l) != len(s) {
		return false
	}
	for i := len(s) - 1; i >= 0; i-- {
		if lower(s[i]) != l[i] {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// glob is a pattern where * matches any run of bytes (also empty) and ?
// any one byte. The common forms with a single star and no ? ("*.example.com",
// "web-*", "a*z") match by prefix and suffix, without backtracking.
type glob struct {
	pat            string
	simple         bool // one '*', no '?': prefix*suffix
	prefix, suffix string
}

func newGlob(p string) glob {
	g := glob{pat: p}
	if strings.Count(p, "*") == 1 && !strings.Contains(p, "?") {
		g.simple = true
		g.prefix, g.suffix, _ = strings.Cut(p, "*")
	}
	return g
}

// hasPrefixFold reports whether s starts with lower-case p, folding s's
// ASCII case when fold is set.
func hasPrefixFold(s, p string, fold bool) bool {
	if len(s) < len(p) {
		return false
	}
	// Names are mostly lower case already: try the plain comparison first.
	return s[:len(p)] == p || fold && equalFold(p, s[:len(p)])
}

func hasSuffixFold(s, p string, fold bool) bool {
	if len(s) < len(p) {
		return false
	}
	return s[len(s)-len(p):] == p || fold && equalFold(p, s[len(s)-len(p):])
}

// match reports whether s matches g. The general case backtracks only to
// the last star, so it runs in O(len(g)*len(s)) at worst.
func (g *glob) match(s string, fold bool) bool {
	if g.simple {
		return len(s) >= len(g.prefix)+len(g.suffix) && hasPrefixFold(s, g.prefix, fold) && hasSuffixFold(s, g.suffix, fold)
	}
	p := g.pat
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		c := s[si]
		if fold {
			c = lower(c)
		}
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == c):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// ctxUintPred matches a numeric context field.
type ctxUintPred struct {
	field string
	r     []urange
}

func (p *ctxUintPred) match(ev *events.Event, _ *scratch) bool {
	var v uint64
	switch p.field {
	case FieldPID:
		v = uint64(ev.Context.PID)
	case FieldUID:
		v = uint64(ev.Context.UID)
	case FieldPPID:
		v = uint64(ev.Context.PPID)
	default:
		v = ev.Context.CgroupID
	}
	return inRanges(p.r, v)
}

// commPred matches the process command name.
type commPred struct{ m strMatcher }

func (p *commPred) match(ev *events.Event, _ *scratch) bool { return p.m.match(ev.Context.Comm) }

// ctxStrPred matches a string context field; false when the event lacks
// it.
type ctxStrPred struct {
	m   strMatcher
	get func(*events.Context) (string, bool)
}

func (p *ctxStrPred) match(ev *events.Event, _ *scratch) bool {
	v, ok := p.get(&ev.Context)
	return ok && p.m.match(v)
}

// hostPred matches host: true for a socket of no container, false for a
// container's; neither while the workload is not known.
type hostPred struct{ want [2]bool }

func (p *hostPred) match(ev *events.Event, _ *scratch) bool {
	w := ev.Context.Workload
	if w == nil {
		return false
	}
	if w.ContainerID == "" {
		return p.want[1]
	}
	return p.want[0]
}

// flowDirPred matches conn_direction on flow payloads without rendering
// it; generic handles any other payload with the field.
type flowDirPred struct {
	set     uint8 // bit d set: ConnDirection d matches
	generic pred
}

func (p *flowDirPred) match(ev *events.Event, s *scratch) bool {
	if f := s.flow; s.isFlow {
		return p.set&(1<<f.Direction) != 0
	}
	return p.generic.match(ev, s)
}

// flowPortPred matches src_port or dst_port of flow payloads.
type flowPortPred struct {
	dst     bool
	r       []urange
	generic pred
}

func (p *flowPortPred) match(ev *events.Event, s *scratch) bool {
	if f := s.flow; s.isFlow {
		port := f.SrcPort
		if p.dst {
			port = f.DstPort
		}
		return inRanges(p.r, uint64(port))
	}
	return p.generic.match(ev, s)
}

// flowAddrPred matches src or dst of flow payloads against prefixes.
type flowAddrPred struct {
	dst     bool
	m       addrMatcher
	generic pred
}

func (p *flowAddrPred) match(ev *events.Event, s *scratch) bool {
	if f := s.flow; s.isFlow {
		a := f.Src
		if p.dst {
			a = f.Dst
		}
		return p.m.match(a)
	}
	return p.generic.match(ev, s)
}

// flowDNSPred matches src_dns or dst_dns of flow payloads: true if any
// name matches.
type flowDNSPred struct {
	dst     bool
	m       strMatcher
	generic pred
}

func (p *flowDNSPred) match(ev *events.Event, s *scratch) bool {
	if f := s.flow; s.isFlow {
		names := f.SrcDNS
		if p.dst {
			names = f.DstDNS
		}
		return p.m.matchAny(names)
	}
	return p.generic.match(ev, s)
}

// The generic predicates read a field rendered by AppendFields, by its
// index in the catalogue's field list.

type uintPred struct {
	idx int
	r   []urange
}

func (p *uintPred) match(ev *events.Event, s *scratch) bool {
	v := s.field(ev, p.idx)
	return v.Kind == events.KindUint && inRanges(p.r, v.Uint)
}

type intPred struct {
	idx int
	r   []irange
}

func (p *intPred) match(ev *events.Event, s *scratch) bool {
	v := s.field(ev, p.idx)
	if v.Kind != events.KindInt {
		return false
	}
	for _, r := range p.r {
		if v.Int >= r.lo && v.Int <= r.hi {
			return true
		}
	}
	return false
}

type boolPred struct {
	idx  int
	want [2]bool // want[0]: false matches; want[1]: true matches
}

func (p *boolPred) match(ev *events.Event, s *scratch) bool {
	v := s.field(ev, p.idx)
	if v.Kind != events.KindBool {
		return false
	}
	if v.Bool {
		return p.want[1]
	}
	return p.want[0]
}

type strPred struct {
	idx int
	m   strMatcher
}

func (p *strPred) match(ev *events.Event, s *scratch) bool {
	v := s.field(ev, p.idx)
	return v.Kind == events.KindString && p.m.match(v.Str)
}

type strsPred struct {
	idx int
	m   strMatcher
}

func (p *strsPred) match(ev *events.Event, s *scratch) bool {
	v := s.field(ev, p.idx)
	return v.Kind == events.KindStrings && p.m.matchAny(v.Strings)
}

// addrTextPred matches a string field holding an address against
// prefixes, parsing it (without allocating).
type addrTextPred struct {
	idx int
	m   addrMatcher
}

func (p *addrTextPred) match(ev *events.Event, s *scratch) bool {
	v := s.field(ev, p.idx)
	if v.Kind != events.KindString {
		return false
	}
	a, err := netip.ParseAddr(v.Str)
	return err == nil && p.m.match(a)
}
