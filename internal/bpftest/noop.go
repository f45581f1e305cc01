// SPDX-License-Identifier: Apache-2.0

// Package bpftest attaches programs that do nothing at the hooks where
// flowtap's kernel programs attach, for tests and benchmarks that measure
// or check the hooks themselves (the bpf package's tests, the
// internal/perf hook-floor benchmark). It is test support, not part of
// flowtap's API.
package bpftest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// AttachNoOps attaches, at every hook of spec's programs (flowtap's
// object file: where bpf.Open attaches a program), a program that does
// nothing but return (allowing the packet, the connect and the socket
// operation): cgroup programs to the cgroup v2 directory cgroupPath,
// tracing programs host-wide. The hooks come from the object file, so they
// cannot drift from Open's. It is for measuring what the hooks cost before
// flowtap's programs do any work (the internal/perf benchmarks); Close
// detaches and unloads them.
//
// sections, if any, narrow it to the hooks whose ELF section name
// ("cgroup_skb/ingress", "sockops", "tp_btf/inet_sock_set_state", ...)
// starts with one of them ("cgroup_skb" takes both directions), so that
// each hook's share can be measured; a prefix that matches no hook is an
// error naming the hooks there are. The section "tcx" is a candidate
// flowtap does not use: a TC program on the loopback interface, ingress
// and egress (TCX links, Linux 6.6), the alternative per-packet hook for
// DNS whose cost the floor compares with cgroup_skb's.
func AttachNoOps(spec *ebpf.CollectionSpec, cgroupPath string, sections ...string) (io.Closer, error) {
	var n noOps
	if i := slices.Index(sections, "tcx"); i >= 0 {
		sections = slices.Delete(slices.Clone(sections), i, i+1)
		if err := n.attachTCX("lo"); err != nil {
			n.Close()
			return nil, fmt.Errorf("attach no-op programs: %w", err)
		}
		if len(sections) == 0 {
			return &n, nil
		}
	}
	var hooks []*ebpf.ProgramSpec
	seen := map[string]bool{}
	for _, name := range sortedNames(spec.Programs) {
		p := spec.Programs[name]
		if p.Type == ebpf.Tracing && p.AttachType == ebpf.AttachTraceIter {
			continue // iterators run on request, not at a hook
		}
		// One program per hook: the flow and the DNS packet programs
		// share theirs.
		if seen[p.SectionName] {
			continue
		}
		seen[p.SectionName] = true
		hooks = append(hooks, p)
	}
	hooks, err := hooksMatching(hooks, sections)
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("attach no-op programs: %w", err)
	}
	for _, p := range hooks {
		ret := int32(1) // cgroup programs: allow
		if p.Type == ebpf.Tracing {
			ret = 0
		}
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name: "noop_" + p.Name, Type: p.Type, AttachType: p.AttachType, AttachTo: p.AttachTo,
			License:      "Dual BSD/GPL",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, ret), asm.Return()},
		})
		if err != nil {
			n.Close()
			return nil, fmt.Errorf("attach no-op programs: load one for %s: %w", p.SectionName, err)
		}
		n.progs = append(n.progs, prog)
		var l link.Link
		if p.Type == ebpf.Tracing {
			l, err = link.AttachTracing(link.TracingOptions{Program: prog})
		} else {
			l, err = link.AttachCgroup(link.CgroupOptions{Path: cgroupPath, Attach: p.AttachType, Program: prog})
		}
		if err != nil {
			n.Close()
			return nil, fmt.Errorf("attach no-op programs: attach one at %s: %w", p.SectionName, err)
		}
		n.links = append(n.links, l)
	}
	return &n, nil
}

// hooksMatching returns the hooks whose section name starts with one of
// prefixes, in their order; all of them when there is no prefix.
func hooksMatching(hooks []*ebpf.ProgramSpec, prefixes []string) ([]*ebpf.ProgramSpec, error) {
	if len(prefixes) == 0 {
		return hooks, nil
	}
	var out []*ebpf.ProgramSpec
	for _, prefix := range prefixes {
		found := false
		for _, p := range hooks {
			if strings.HasPrefix(p.SectionName, prefix) && !slices.Contains(out, p) {
				out, found = append(out, p), true
			}
		}
		if !found {
			names := make([]string, len(hooks))
			for i, p := range hooks {
				names[i] = p.SectionName
			}
			return nil, fmt.Errorf("no hook's section starts with %q; the hooks are %s", prefix, strings.Join(names, ", "))
		}
	}
	return out, nil
}

// attachTCX attaches a TC program that lets every packet pass to both
// directions of interface ifname.
func (n *noOps) attachTCX(ifname string) error {
	iface, err := net.InterfaceByName(ifname)
	if err != nil {
		return fmt.Errorf("tcx on %s: %w", ifname, err)
	}
	for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name: "noop_tcx", Type: ebpf.SchedCLS, License: "Dual BSD/GPL",
			// TCX_NEXT (-1): on to the next program, or the default.
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()},
		})
		if err != nil {
			return fmt.Errorf("tcx: load: %w", err)
		}
		n.progs = append(n.progs, prog)
		l, err := link.AttachTCX(link.TCXOptions{Interface: iface.Index, Program: prog, Attach: at})
		if err != nil {
			return fmt.Errorf("tcx on %s (needs Linux 6.6): %w", ifname, err)
		}
		n.links = append(n.links, l)
	}
	return nil
}

// noOps are the programs and links AttachNoOps made.
type noOps struct {
	progs []*ebpf.Program
	links []link.Link
}

// Close detaches and unloads them.
func (n *noOps) Close() error {
	var errs []error
	for _, l := range n.links {
		errs = append(errs, l.Close())
	}
	for _, p := range n.progs {
		errs = append(errs, p.Close())
	}
	n.links, n.progs = nil, nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("detach no-op programs: %w", err)
	}
	return nil
}

// sortedNames returns the programs' names in order, so that the hooks
// come in the same order every time.
func sortedNames(progs map[string]*ebpf.ProgramSpec) []string {
	names := make([]string, 0, len(progs))
	for n := range progs {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
