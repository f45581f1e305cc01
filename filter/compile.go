// SPDX-License-Identifier: Apache-2.0

package filter

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/flowtap/flowtap/events"
)

// Context fields: every event has them, whatever its payload.
const (
	FieldPID      = "pid"
	FieldUID      = "uid"
	FieldComm     = "comm"
	FieldCgroupID = "cgroup_id"
	FieldPPID     = "ppid"
	FieldExe      = "exe"
	FieldHost     = "host"
)

// contextFields are the fields every event has, with their types.
var contextFields = []events.FieldSpec{
	{Name: FieldPID, Type: "uint32", Doc: "process id of the socket's owner (0 when not known)"},
	{Name: FieldUID, Type: "uint32", Doc: "user id of the socket's owner"},
	{Name: FieldComm, Type: "string", Doc: "command name of the socket's owner"},
	{Name: FieldCgroupID, Type: "uint64", Doc: "cgroup v2 id of the socket"},
	{Name: FieldPPID, Type: "uint32", Doc: "parent process id of the socket's owner"},
	{Name: FieldExe, Type: "string", Doc: "executable path of the socket's owner"},
	{Name: FieldHost, Type: "bool", Doc: "true: the socket belongs to no container; false: to a container (neither while not known)"},
	{Name: "container_id", Type: "string", Doc: "full id of the socket's container (a glob such as 3f4c0b5e8a9d* matches a short id)"},
	{Name: "container_runtime", Type: "string", Doc: "docker, containerd, cri-o or podman"},
	{Name: "container_name", Type: "string", Doc: "the container's name, as its runtime (or the pod spec) names it"},
	{Name: "container_image", Type: "string", Doc: "the container's image"},
	{Name: "pod_name", Type: "string", Doc: "Kubernetes pod name"},
	{Name: "pod_namespace", Type: "string", Doc: "Kubernetes pod namespace"},
	{Name: "pod_uid", Type: "string", Doc: "Kubernetes pod uid"},
}

// workloadFields read the workload's string fields; false when the event's
// socket is not known to be a container's.
var workloadFields = map[string]func(*events.Workload) string{
	"container_id":      func(w *events.Workload) string { return w.ContainerID },
	"container_runtime": func(w *events.Workload) string { return w.ContainerRuntime },
	"container_name":    func(w *events.Workload) string { return w.ContainerName },
	"container_image":   func(w *events.Workload) string { return w.ContainerImage },
	"pod_name":          func(w *events.Workload) string { return w.PodName },
	"pod_namespace":     func(w *events.Workload) string { return w.PodNamespace },
	"pod_uid":           func(w *events.Workload) string { return w.PodUID },
}

// FieldError is a clause that does not fit the fields of the events it
// is compiled for: an unknown field, a value of the wrong type, or an
// operator the field's type has no meaning for.
type FieldError struct {
	Expr  string
	Pos   int // of the clause, from 1
	Field string
	Msg   string
}

// Error implements error.
func (e *FieldError) Error() string {
	return fmt.Sprintf("filter %q: at %d: field %q: %s", e.Expr, e.Pos, e.Field, e.Msg)
}

// Filter is a compiled expression: a typed predicate per event it was
// compiled for. Match allocates nothing for flow events. A Filter is not
// safe for concurrent use (it keeps scratch space); give each goroutine
// its own, with Clone.
type Filter struct {
	expr  *Expr
	progs []program
	s     scratch
}

// program is the predicate for one event ID.
type program struct {
	id   events.ID
	pred pred
}

// New parses and compiles src for the given event definitions.
func New(src string, defs []*events.Definition) (*Filter, error) {
	e, err := Parse(src)
	if err != nil {
		return nil, err
	}
	return Compile(e, defs)
}

// Compile compiles e for events of the given definitions. A clause whose
// field some of the events lack is false for those events (so "not" and
// "!=" make it true); a field none of them has (nor the context) is an
// error, as is a value that does not fit the field's type. All such
// problems are reported together, each a *FieldError.
func Compile(e *Expr, defs []*events.Definition) (*Filter, error) {
	f := &Filter{expr: e}
	c := &compiler{expr: e, defs: defs, seen: map[string]bool{}}
	c.check()
	for _, d := range defs {
		f.progs = append(f.progs, program{id: d.ID, pred: c.compile(e.root, d)})
	}
	if len(c.errs) > 0 {
		return nil, errors.Join(c.errs...)
	}
	return f, nil
}

// String returns the expression as written.
func (f *Filter) String() string { return f.expr.String() }

// Expr returns the parsed expression.
func (f *Filter) Expr() *Expr { return f.expr }

// Clone returns a Filter sharing f's compiled predicates with scratch
// space of its own, for another goroutine.
func (f *Filter) Clone() *Filter {
	if f == nil {
		return nil
	}
	return &Filter{expr: f.expr, progs: f.progs}
}

// Match reports whether ev passes the filter. A nil Filter passes every
// event; an event of an ID the filter was not compiled for passes none.
func (f *Filter) Match(ev *events.Event) bool {
	if f == nil {
		return true
	}
	for i := range f.progs {
		if f.progs[i].id == ev.ID {
			f.s.filled = false
			f.s.flow, f.s.isFlow = events.FlowOf(ev.Payload)
			return f.progs[i].pred.match(ev, &f.s)
		}
	}
	return false
}

// scratch holds an event's rendered fields while it is matched, for the
// clauses that have no typed access path; they are rendered at most once
// per event.
type scratch struct {
	fields []events.Field
	filled bool
	// flow is the event's flow fields, when isFlow.
	flow   *events.Flow
	isFlow bool
}

func (s *scratch) field(ev *events.Event, idx int) *events.Value {
	if !s.filled {
		s.fields = ev.Payload.AppendFields(s.fields[:0])
		s.filled = true
	}
	if idx >= len(s.fields) {
		return &events.Value{}
	}
	return &s.fields[idx].Value
}

type compiler struct {
	expr *Expr
	defs []*events.Definition
	errs []error
	seen map[string]bool
}

func (c *compiler) fail(cl *clause, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	key := cl.field + "\x00" + strconv.Itoa(cl.pos) + "\x00" + msg
	if c.seen[key] {
		return
	}
	c.seen[key] = true
	c.errs = append(c.errs, &FieldError{Expr: c.expr.src, Pos: cl.pos, Field: cl.field, Msg: msg})
}

// validFields lists the fields of the definitions and the context fields,
// sorted and unique.
func (c *compiler) validFields() []string {
	set := map[string]bool{}
	for _, f := range contextFields {
		set[f.Name] = true
	}
	for _, d := range c.defs {
		for _, f := range d.Fields {
			set[f.Name] = true
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// check reports clauses on fields none of the events (nor the context)
// has.
func (c *compiler) check() {
	walk(c.expr.root, func(cl *clause) {
		if isContext(cl.field) {
			return
		}
		for _, d := range c.defs {
			if fieldIndex(d, cl.field) >= 0 {
				return
			}
		}
		names := make([]string, len(c.defs))
		for i, d := range c.defs {
			names[i] = d.Name
		}
		valid := c.validFields()
		hint := ""
		if s := events.Closest(cl.field, valid); s != "" {
			hint = fmt.Sprintf(": did you mean %q?", s)
		}
		c.fail(cl, "no such field in the selected events (%s)%s (valid: %s)", strings.Join(names, ", "), hint, strings.Join(valid, ", "))
	})
}

func isContext(name string) bool {
	for _, f := range contextFields {
		if f.Name == name {
			return true
		}
	}
	return false
}

func fieldIndex(d *events.Definition, name string) int {
	for i, f := range d.Fields {
		if f.Name == name {
			return i
		}
	}
	return -1
}

func (c *compiler) compile(n node, d *events.Definition) pred {
	switch n := n.(type) {
	case *binary:
		// A chain of "and" (or of "or") becomes one flat list, evaluated
		// in a loop. Predicates have no side effects, so the cheaper
		// ones go first: the loop then often stops before the dearer.
		var list []pred
		var flatten func(x node)
		flatten = func(x node) {
			if b, ok := x.(*binary); ok && b.and == n.and {
				flatten(b.l)
				flatten(b.r)
				return
			}
			list = append(list, c.compile(x, d))
		}
		flatten(n)
		sort.SliceStable(list, func(i, j int) bool { return cost(list[i]) < cost(list[j]) })
		if n.and {
			return andPred(list)
		}
		return orPred(list)
	case *negation:
		return &notPred{c.compile(n.x, d)}
	case *clause:
		p := c.clause(n, d)
		if n.op == OpNe {
			return &notPred{p}
		}
		return p
	}
	panic(fmt.Sprintf("filter: unknown node %T", n))
}

// clause compiles one clause for one event definition. For OpNe it
// returns the positive (=) predicate; compile negates it.
func (c *compiler) clause(cl *clause, d *events.Definition) pred {
	if get, ok := workloadFields[cl.field]; ok {
		m, ok := c.strings(cl, nil, false)
		if !ok {
			return constPred(false)
		}
		return &ctxStrPred{m: m, get: func(ctx *events.Context) (string, bool) {
			if ctx.Workload == nil || ctx.Workload.ContainerID == "" {
				return "", false
			}
			return get(ctx.Workload), true
		}}
	}
	switch cl.field {
	case FieldExe:
		m, ok := c.strings(cl, nil, false)
		if !ok {
			return constPred(false)
		}
		return &ctxStrPred{m: m, get: func(ctx *events.Context) (string, bool) { return ctx.Exe, ctx.Exe != "" }}
	case FieldHost:
		want, ok := c.bools(cl)
		if !ok {
			return constPred(false)
		}
		return &hostPred{want: want}
	case FieldPID, FieldUID, FieldCgroupID, FieldPPID:
		max := uint64(math.MaxUint32)
		if cl.field == FieldCgroupID {
			max = math.MaxUint64
		}
		r, ok := c.ranges(cl, max)
		if !ok {
			return constPred(false)
		}
		return &ctxUintPred{field: cl.field, r: r}
	case FieldComm:
		m, ok := c.strings(cl, nil, false)
		if !ok {
			return constPred(false)
		}
		return &commPred{m: m}
	}
	idx := fieldIndex(d, cl.field)
	if idx < 0 {
		return constPred(false)
	}
	spec := d.Fields[idx]
	switch spec.Type {
	case "uint8", "uint16", "uint32", "uint64":
		bits, _ := strconv.Atoi(strings.TrimPrefix(spec.Type, "uint"))
		r, ok := c.ranges(cl, maxUint(bits))
		if !ok {
			return constPred(false)
		}
		generic := &uintPred{idx: idx, r: r}
		switch cl.field {
		case "src_port":
			return &flowPortPred{dst: false, r: r, generic: generic}
		case "dst_port":
			return &flowPortPred{dst: true, r: r, generic: generic}
		}
		if get := uintAccessor(cl.field); get != nil {
			return &typedUintPred{get: get, r: r, generic: generic}
		}
		return generic
	case "int64":
		r, ok := c.intRanges(cl)
		if !ok {
			return constPred(false)
		}
		return &intPred{idx: idx, r: r}
	case "bool":
		want, ok := c.bools(cl)
		if !ok {
			return constPred(false)
		}
		return &boolPred{idx: idx, want: want}
	case "string":
		if addrs, ok := c.addresses(cl); ok {
			generic := &addrTextPred{idx: idx, m: addrs}
			switch cl.field {
			case "src":
				return &flowAddrPred{dst: false, m: addrs, generic: generic}
			case "dst":
				return &flowAddrPred{dst: true, m: addrs, generic: generic}
			}
			return generic
		}
		enum := events.FieldValues(cl.field)
		m, ok := c.strings(cl, enum, false)
		if !ok {
			return constPred(false)
		}
		generic := &strPred{idx: idx, m: m}
		if cl.field == "conn_direction" {
			var set uint8
			for _, v := range m.exact {
				switch v {
				case events.Outgoing.String():
					set |= 1 << events.Outgoing
				case events.Incoming.String():
					set |= 1 << events.Incoming
				}
			}
			return &flowDirPred{set: set, generic: generic}
		}
		if get := enumAccessor(cl.field); get != nil {
			return &typedEnumPred{get: get, m: m, generic: generic}
		}
		return generic
	case "[]string":
		m, ok := c.strings(cl, nil, true)
		if !ok {
			return constPred(false)
		}
		generic := &strsPred{idx: idx, m: m}
		switch cl.field {
		case "src_dns":
			return &flowDNSPred{dst: false, m: m, generic: generic}
		case "dst_dns":
			return &flowDNSPred{dst: true, m: m, generic: generic}
		}
		return generic
	}
	c.fail(cl, "fields of type %s cannot be filtered on", spec.Type)
	return constPred(false)
}

func (c *compiler) eqOnly(cl *clause, typ string) bool {
	if cl.op != OpEq && cl.op != OpNe {
		c.fail(cl, "operator %s does not apply to a %s field (use = or !=)", cl.op, typ)
		return false
	}
	return true
}

// ranges converts the values of a numeric clause: numbers and lo-hi
// ranges for = and !=, one number for the orderings.
func (c *compiler) ranges(cl *clause, max uint64) ([]urange, bool) {
	parse := func(s string) (uint64, bool) {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n > max {
			c.fail(cl, "value %q is not a number from 0 to %d (write N, N-M for a range, or a list: 22,80,8000-8999)", s, max)
			return 0, false
		}
		return n, true
	}
	if cl.op != OpEq && cl.op != OpNe {
		if len(cl.values) != 1 || strings.Contains(cl.values[0], "-") {
			c.fail(cl, "operator %s takes one number, not a list or range", cl.op)
			return nil, false
		}
		n, ok := parse(cl.values[0])
		if !ok {
			return nil, false
		}
		switch cl.op {
		case OpLt:
			if n == 0 {
				return []urange{}, true // matches nothing
			}
			return []urange{{0, n - 1}}, true
		case OpLe:
			return []urange{{0, n}}, true
		case OpGt:
			if n == max {
				return []urange{}, true
			}
			return []urange{{n + 1, max}}, true
		default:
			return []urange{{n, max}}, true
		}
	}
	var out []urange
	for _, v := range cl.values {
		lo, hi, isRange := strings.Cut(v, "-")
		if lo == "" {
			lo, isRange = v, false // a negative number: parse reports it
		}
		a, ok := parse(lo)
		if !ok {
			return nil, false
		}
		b := a
		if isRange {
			if b, ok = parse(hi); !ok {
				return nil, false
			}
			if b < a {
				c.fail(cl, "range %q runs backwards (write the low end first)", v)
				return nil, false
			}
		}
		out = append(out, urange{a, b})
	}
	return out, true
}

// intRanges converts the values of an int64 clause: numbers, possibly
// negative, with = and !=, or one number with an ordering.
func (c *compiler) intRanges(cl *clause) ([]irange, bool) {
	nums := make([]int64, len(cl.values))
	for i, v := range cl.values {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			c.fail(cl, "value %q is not an integer", v)
			return nil, false
		}
		nums[i] = n
	}
	switch cl.op {
	case OpEq, OpNe:
		out := make([]irange, len(nums))
		for i, n := range nums {
			out[i] = irange{n, n}
		}
		return out, true
	}
	if len(nums) != 1 {
		c.fail(cl, "operator %s takes one number, not a list", cl.op)
		return nil, false
	}
	n := nums[0]
	switch cl.op {
	case OpLt:
		if n == math.MinInt64 {
			return []irange{}, true
		}
		return []irange{{math.MinInt64, n - 1}}, true
	case OpLe:
		return []irange{{math.MinInt64, n}}, true
	case OpGt:
		if n == math.MaxInt64 {
			return []irange{}, true
		}
		return []irange{{n + 1, math.MaxInt64}}, true
	default:
		return []irange{{n, math.MaxInt64}}, true
	}
}

// addresses converts the values of a string clause when every one is an
// IP address or a CIDR prefix; ok is false when none is (the clause is a
// plain string clause then). A mix is an error.
func (c *compiler) addresses(cl *clause) (addrMatcher, bool) {
	var m addrMatcher
	for _, v := range cl.values {
		var p netip.Prefix
		if a, err := netip.ParseAddr(v); err == nil {
			p = netip.PrefixFrom(a, a.BitLen())
		} else if pp, err := netip.ParsePrefix(v); err == nil {
			p = pp.Masked()
		} else if strings.Contains(v, "/") && (strings.Contains(v, ":") || v[0] >= '0' && v[0] <= '9') {
			c.fail(cl, "value %q is not a valid CIDR prefix: %v", v, err)
			return nil, true
		} else {
			if len(m) > 0 {
				c.fail(cl, "value %q is not an IP address or CIDR prefix, unlike the values before it", v)
			}
			return nil, len(m) > 0
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		m = append(m, p)
	}
	if len(m) > 0 && !c.eqOnly(cl, "address") {
		return nil, true
	}
	if len(m) > 0 && events.FieldValues(cl.field) != nil {
		c.fail(cl, "value %q is an address, but the field takes one of: %s", cl.values[0], strings.Join(events.FieldValues(cl.field), ", "))
	}
	return m, len(m) > 0
}

// strings converts the values of a string clause: exact values and globs
// (* and ?). enum, when set, lists the only valid values (no globs).
// fold compares case-insensitively (DNS names).
func (c *compiler) strings(cl *clause, enum []string, fold bool) (strMatcher, bool) {
	if !c.eqOnly(cl, "string") {
		return strMatcher{}, false
	}
	var m strMatcher
	m.fold = fold
	for _, v := range cl.values {
		if enum != nil {
			found := false
			for _, e := range enum {
				found = found || e == v
			}
			if !found {
				hint := ""
				if s := events.Closest(v, enum); s != "" {
					hint = fmt.Sprintf(": did you mean %q?", s)
				}
				c.fail(cl, "value %q is not valid%s (valid: %s)", v, hint, strings.Join(enum, ", "))
				return m, false
			}
			m.exact = append(m.exact, v)
			continue
		}
		if fold {
			v = strings.ToLower(v)
		}
		if strings.ContainsAny(v, "*?") {
			m.globs = append(m.globs, newGlob(v))
		} else {
			m.exact = append(m.exact, v)
		}
	}
	return m, true
}

// cost estimates what evaluating p costs, in rough units: a typed field
// read is 1, a list of names 4, a rendered field 8.
func cost(p pred) int {
	switch p := p.(type) {
	case constPred:
		return 0
	case andPred:
		return sumCost(p)
	case orPred:
		return sumCost(p)
	case *notPred:
		return cost(p.x)
	case *flowDNSPred, *commPred, *typedEnumPred, *ctxStrPred:
		return 4
	case *uintPred, *intPred, *boolPred, *strPred, *strsPred, *addrTextPred:
		return 8
	}
	return 1
}

func sumCost(list []pred) int {
	n := 0
	for _, p := range list {
		n += cost(p)
	}
	return n
}

// maxUint is the largest value of an unsigned integer of the given width.
func maxUint(bits int) uint64 {
	if bits >= 64 {
		return math.MaxUint64
	}
	return 1<<bits - 1
}

// bools reads the values of a bool clause: want[1] when true is among
// them, want[0] when false is.
func (c *compiler) bools(cl *clause) (want [2]bool, ok bool) {
	if !c.eqOnly(cl, "bool") {
		return want, false
	}
	for _, v := range cl.values {
		if v != "true" && v != "false" {
			c.fail(cl, "value %q is not a bool (valid: true, false)", v)
			return want, false
		}
		if v == "true" {
			want[1] = true
		} else {
			want[0] = true
		}
	}
	return want, true
}
