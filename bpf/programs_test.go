// SPDX-License-Identifier: Apache-2.0

package bpf_test

import (
	"testing"

	"github.com/flowtap/flowtap/bpf"
)

// TestPrograms checks that the program list 'flowtap explain' prints comes
// from the object file: the packet programs are there, with their hooks.
func TestPrograms(t *testing.T) {
	progs, err := bpf.Programs()
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]string{}
	for _, p := range progs {
		if p.Name == "" || p.Section == "" || p.Type == "" {
			t.Errorf("incomplete program info %+v", p)
		}
		sections[p.Name] = p.Section
	}
	for name, section := range map[string]string{"flowtap_ingress": "cgroup_skb/ingress", "flowtap_egress": "cgroup_skb/egress"} {
		if sections[name] != section {
			t.Errorf("program %s: section %q, want %q (all: %v)", name, sections[name], section, sections)
		}
	}
}
