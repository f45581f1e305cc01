// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// Report is what this kernel and this process can do for flowtap: the
// kernel, its BTF, the cgroup v2 mount, the capabilities, and for each
// feature whether its programs load here. flowtap doctor prints it.
type Report struct {
	// Kernel is the kernel release (uname -r).
	Kernel string `json:"kernel"`
	// MinimumKernel is the oldest release flowtap's core is known to
	// run on (MinimumKernel).
	MinimumKernel string `json:"minimum_kernel"`
	// BTF is true when the kernel describes its types
	// (/sys/kernel/btf/vmlinux), which the tracing programs and CO-RE
	// need.
	BTF      bool   `json:"btf"`
	BTFError string `json:"btf_error,omitempty"`
	// Cgroup2 is the cgroup v2 mount point flowtap attaches to by default;
	// Cgroup2Hybrid is true when it sits beside cgroup v1 hierarchies.
	Cgroup2       string `json:"cgroup2"`
	Cgroup2Hybrid bool   `json:"cgroup2_hybrid"`
	Cgroup2Error  string `json:"cgroup2_error,omitempty"`
	// Capabilities lists the capabilities flowtap needs and whether
	// this process has them.
	Capabilities []CapabilityStatus `json:"capabilities"`
	// Features are the capture's features, probed by loading their
	// programs into the kernel (and unloading them).
	Features []FeatureStatus `json:"features"`
	// CoreOK is true when the core loads: flowtap run can start.
	CoreOK bool `json:"core_ok"`
	// CoreError says why the core cannot run.
	CoreError string `json:"core_error,omitempty"`
}

// CapabilityStatus is one capability and whether the process has it.
type CapabilityStatus struct {
	Name string `json:"name"`
	Have bool   `json:"have"`
}

// Probe finds out what this kernel and process can do: it loads every
// program of every feature (DNS and packet flows included, the sock_ops
// program in both its variants) without attaching any, and unloads them. It needs the same privileges as Open; without them the
// report says which are missing. The error is for a report that could not
// be made at all.
func Probe() (*Report, error) {
	r := &Report{MinimumKernel: MinimumKernel}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return nil, fmt.Errorf("probe kernel: uname: %w", err)
	}
	r.Kernel = unix.ByteSliceToString(u.Release[:])
	if _, err := btf.LoadKernelSpec(); err != nil {
		r.BTFError = err.Error()
	} else {
		r.BTF = true
	}
	if m, err := FindCgroup2Mount(); err != nil {
		r.Cgroup2Error = err.Error()
	} else {
		r.Cgroup2 = m
		r.Cgroup2Hybrid = hybridCgroups()
	}
	eff, capErr := effectiveCaps()
	for _, c := range []int{capBPF, capNetAdmin, capPerfmon, capSysAdmin} {
		r.Capabilities = append(r.Capabilities, CapabilityStatus{Name: capNames[c], Have: capErr == nil && eff&(1<<c) != 0})
	}

	spec, err := loadFlowtap()
	if err != nil {
		return nil, fmt.Errorf("probe: read embedded BPF object: %w", err)
	}
	spec.Maps[flowtapMapFlowRecords].Value = nil
	// The smallest ring: the probe writes nothing.
	spec.Maps[flowtapMapFlowRecords].MaxEntries = uint32(os.Getpagesize())
	if err := rlimit.RemoveMemlock(); err != nil {
		r.CoreError = fmt.Sprintf("remove memlock limit: %v (hint: grant CAP_BPF (or CAP_SYS_ADMIN))", err)
		return r, nil
	}
	// What a default run loads (flows from sock_ops, DNS), then what a
	// run that selects net_packet_flow_base loads: the sock_ops program
	// differs between the two (socket_flows), so both are verified.
	l, err := loadFeatures(spec.Copy(), loadOptions{dns: true, broken: brokenPrograms()})
	if err != nil {
		r.CoreError = err.Error()
		return r, nil
	}
	defer l.close()
	pl, err := loadFeatures(spec.Copy(), loadOptions{packetFlows: true, broken: brokenPrograms()})
	if err != nil {
		r.CoreError = err.Error()
		return r, nil
	}
	defer pl.close()
	// A feature counts as available when every variant of it loaded.
	for _, f := range l.features {
		p := *pl.feature(f.Name)
		if f.Name == FeaturePacketFlows {
			// Packet flows need the core in its packet variant.
			if core := pl.feature(FeatureCore); p.Available && !core.Available {
				p.Available, p.Program, p.Err, p.Reason = false, core.Program, core.Err, core.Reason
			}
		}
		switch {
		case f.Name == FeatureCore:
			// A default run's core; the packet variant's failure is
			// packet-flows'.
		case f.Skipped && (p.Available || !p.Skipped):
			f = p
		case (f.Available || f.Skipped) && !p.Available && !p.Skipped:
			f = p
			f.Reason = "with packet flows: " + f.Reason
		}
		r.Features = append(r.Features, f)
	}
	if core := l.feature(FeatureCore); core.Available {
		r.CoreOK = true
	} else {
		r.CoreError = coreError(*core).Error()
	}
	return r, nil
}

// effectiveCaps reads this process's effective capability mask.
func effectiveCaps() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return parseCapEff(f)
}

// hybridCgroups reports whether cgroup v1 hierarchies are mounted beside
// cgroup v2.
func hybridCgroups() bool {
	data, err := os.ReadFile(procMounts)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[2] == "cgroup" {
			return true
		}
	}
	return false
}

// WriteJSON writes the report as one JSON object.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// WriteText writes the report for people. verifierLog adds the whole
// verifier log of every refused program.
func (r *Report) WriteText(w io.Writer, verifierLog bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "kernel:\t%s (flowtap needs %s or later)\n", r.Kernel, r.MinimumKernel)
	if r.BTF {
		fmt.Fprintf(tw, "BTF:\tyes (/sys/kernel/btf/vmlinux)\n")
	} else {
		fmt.Fprintf(tw, "BTF:\tno: %s\n", r.BTFError)
	}
	switch {
	case r.Cgroup2Error != "":
		fmt.Fprintf(tw, "cgroup v2:\tno: %s\n", r.Cgroup2Error)
	case r.Cgroup2Hybrid:
		fmt.Fprintf(tw, "cgroup v2:\t%s (hybrid: cgroup v1 hierarchies mounted too)\n", r.Cgroup2)
	default:
		fmt.Fprintf(tw, "cgroup v2:\t%s\n", r.Cgroup2)
	}
	var have, lack []string
	for _, c := range r.Capabilities {
		if c.Have {
			have = append(have, c.Name)
		} else {
			lack = append(lack, c.Name)
		}
	}
	fmt.Fprintf(tw, "capabilities:\thas %s; lacks %s (needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, or CAP_SYS_ADMIN)\n",
		orNone(have), orNone(lack))
	fmt.Fprintln(tw, "\nfeatures (probed by loading their programs):")
	for _, f := range r.Features {
		state := "available"
		switch {
		case f.Skipped:
			state = "not probed"
		case !f.Available && f.Optional:
			state = "unavailable"
		case !f.Available:
			state = "UNAVAILABLE (flowtap cannot start)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", f.Name, state, f.Summary)
		if !f.Available && !f.Skipped {
			if f.Program != "" {
				fmt.Fprintf(tw, "  \t\tprogram %s: %s\n", f.Program, f.Reason)
			} else {
				fmt.Fprintf(tw, "  \t\t%s\n", f.Reason)
			}
			if f.Without != "" {
				fmt.Fprintf(tw, "  \t\twithout it: %s\n", f.Without)
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if r.CoreOK {
		fmt.Fprintln(w, "\nflowtap can run here.")
	} else {
		fmt.Fprintf(w, "\nflowtap cannot run here: %s\n", r.CoreError)
	}
	if verifierLog {
		for _, f := range r.Features {
			var ve *ebpf.VerifierError
			if errors.As(f.Err, &ve) {
				fmt.Fprintf(w, "\nverifier log of %s (feature %s):\n%+v\n", f.Program, f.Name, ve)
			}
		}
	}
	return nil
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
