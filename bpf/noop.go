package bpf

import (
	"errors"
	"fmt"
	"io"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// AttachNoOps attaches, at every hook where Open attaches a program, a
// program that does nothing but return (allowing the packet, the connect
// and the socket operation): cgroup programs to the cgroup v2 directory
// cgroupPath, tracing programs host-wide. The hooks come from the embedded
// object file, so they cannot drift from Open's. It is for measuring what
// the hooks cost before flowtap's programs do any work (the
// internal/perf benchmarks); Close detaches and unloads them.
func AttachNoOps(cgroupPath string) (io.Closer, error) {
	spec, err := loadFlowtap()
	if err != nil {
		return nil, fmt.Errorf("attach no-op programs: read embedded BPF object: %w", err)
	}
	var n noOps
	for _, p := range spec.Programs {
		if p.Type == ebpf.Tracing && p.AttachType == ebpf.AttachTraceIter {
			continue // iterators run on request, not at a hook
		}
		ret := int32(1) // cgroup programs: allow
		if p.Type == ebpf.Tracing {
			ret = 0
		}
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name: "noop_" + p.Name, Type: p.Type, AttachType: p.AttachType, AttachTo: p.AttachTo,
			License:      "Dual MIT/GPL",
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
