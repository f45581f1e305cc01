// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"fmt"
	"slices"
	"sort"
)

// ProgramInfo describes one kernel program of flowtap's object file.
type ProgramInfo struct {
	// Name is the program's name in flowtap.bpf.c.
	Name string
	// Section is its ELF section, which says where it hooks in, e.g.
	// "cgroup_skb/ingress" or "tp_btf/inet_sock_set_state".
	Section string
	// Type is the BPF program type, e.g. "CGroupSKB".
	Type string
	// Features are the features the program belongs to (see Features).
	Features []string
}

// Programs lists the programs Open loads, sorted by name, from the
// embedded object file itself, so the list cannot drift from what is
// loaded. It needs no privileges: nothing is loaded into the kernel.
func Programs() ([]ProgramInfo, error) {
	spec, err := loadFlowtap()
	if err != nil {
		return nil, fmt.Errorf("read embedded BPF object: %w", err)
	}
	out := make([]ProgramInfo, 0, len(spec.Programs))
	for name, p := range spec.Programs {
		info := ProgramInfo{Name: name, Section: p.SectionName, Type: p.Type.String()}
		for _, f := range featureTable {
			if slices.Contains(f.Programs, name) {
				info.Features = append(info.Features, f.Name)
			}
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
