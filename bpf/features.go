// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/hashicorp/go-hclog"
)

// Names of the capture's features. Each kernel program belongs to one; a
// feature is available when all its programs load and attach.
const (
	// FeatureCore is the flow capture itself: the sock_ops program
	// follows the TCP sockets of the cgroup from connect() or accept() to
	// close and writes the flows' moments (SYN, SYN-ACK, refusal, close
	// with the kernel's counters); cgroup connect4/6 record who connects.
	// Without it flowtap does not start.
	FeatureCore = "core"
	// FeatureDNS is DNS capture: cgroup_skb programs that report UDP and
	// TCP port 53 payloads.
	FeatureDNS = "dns"
	// FeaturePacketFlows is the record of every flow-relevant packet
	// (SYN, SYN-ACK, FIN, RST) by cgroup_skb programs, when
	// net_packet_flow_base is selected by name; the flows are then derived
	// from the packets rather than from the sock_ops program's moments.
	FeaturePacketFlows = "packet-flows"
	// FeatureExistingOwners gives sockets that existed before start their
	// owning process (iter/task_file, then iter/tcp).
	FeatureExistingOwners = "existing-owners"
	// FeatureExistingCloses reports the close of sockets that existed
	// before start, and records owners of sockets connecting outside the
	// watched cgroup (tp_btf/inet_sock_set_state). Only the packet flows
	// use it: flows from sock_ops never begin for sockets from before
	// start.
	FeatureExistingCloses = "existing-closes"
	// FeatureMPTCP gives MPTCP subflows their MPTCP socket's owner
	// (bpf_skc_to_mptcp_sock in the packet programs; iter/tcp at start).
	FeatureMPTCP = "mptcp"
	// FeatureNoSocketResets reports packets no socket took that the
	// kernel answers with a reset: refused attempts
	// (tp_btf/tcp_send_reset).
	FeatureNoSocketResets = "nosock-resets"
	// FeatureSnapshots reports the counters of open sockets on request
	// (iter/tcp), which keeps idle flows from being evicted and gives
	// flows still open at shutdown their bytes.
	FeatureSnapshots = "snapshots"
)

// MinimumKernel is the oldest Linux release flowtap's core is known to
// load and run on: the oldest kernel of the kernel matrix (make
// test-kernels), Debian 11's 5.10, where flows, DNS, owners and snapshots
// work and the packet flows are unavailable (see tracingStorageProbe).
// An older kernel fails with KernelTooOldError (see coreRequirements);
// 5.11 to 6.0 are untested.
const MinimumKernel = "5.10"

// ErrFeatureUnavailable is wrapped by the errors of calls that need a
// feature this capture does not have (see Capture.Features).
var ErrFeatureUnavailable = errors.New("feature unavailable on this kernel")

// Feature describes one feature of the capture.
type Feature struct {
	// Name is one of the Feature* constants.
	Name string `json:"name"`
	// Summary says what the feature gives.
	Summary string `json:"summary"`
	// Without says what is missing when the feature is unavailable.
	Without string `json:"without,omitempty"`
	// Programs are the kernel programs the feature needs.
	Programs []string `json:"programs"`
	// Optional features may be unavailable; flowtap starts without them.
	Optional bool `json:"optional"`
}

// FeatureStatus is whether one feature is available on this kernel.
type FeatureStatus struct {
	Feature
	// Available is true when every program of the feature loaded (and,
	// for Open, attached).
	Available bool `json:"available"`
	// Program names the program that failed, if one did.
	Program string `json:"failed_program,omitempty"`
	// Skipped is true when the feature was not wanted (DNS capture off),
	// so it was not tried.
	Skipped bool `json:"skipped,omitempty"`
	// Reason says why the feature is unavailable, in one line: the
	// kernel's reason, or why it was not loaded.
	Reason string `json:"reason,omitempty"`
	// Err is the whole error, with the verifier's log when the verifier
	// refused the program (print it with %+v).
	Err error `json:"-"`
}

// featureTable lists the features in load order: the packet flows before
// the core (the sock_ops program writes the flows' moments only without
// them), the core before the other optional ones.
var featureTable = []Feature{
	{Name: FeatureDNS, Optional: true,
		Summary:  "DNS queries and answers (UDP and TCP port 53 payloads), for net_packet_dns and src_dns/dst_dns",
		Without:  "no DNS events; src_dns and dst_dns stay empty",
		Programs: []string{flowtapProgFlowtapDnsIngress, flowtapProgFlowtapDnsEgress}},
	{Name: FeaturePacketFlows, Optional: true,
		Summary:  "every flow-relevant packet (SYN, SYN-ACK, FIN, RST) as net_packet_flow_base, from a per-packet hook",
		Without:  "net_packet_flow_base carries the moments the sock_ops program saw, not packets",
		Programs: []string{flowtapProgFlowtapIngress, flowtapProgFlowtapEgress}},
	{Name: FeatureCore,
		Summary:  "flow capture: connect, accept, handshake, refusal and close of TCP sockets, with the kernel's counters",
		Programs: []string{flowtapProgFlowtapConnect4, flowtapProgFlowtapConnect6, flowtapProgFlowtapSockops}},
	{Name: FeatureExistingOwners, Optional: true,
		Summary:  "owning process of sockets that existed before flowtap started",
		Without:  "flows of sockets opened before start (a server's listener) have no pid, comm or uid",
		Programs: []string{flowtapProgFlowtapFiles, flowtapProgFlowtapOwners}},
	{Name: FeatureExistingCloses, Optional: true,
		Summary:  "with packet flows: close of sockets that existed before flowtap started, with their final counters, and owners of sockets connecting outside the watched cgroup; where sock_ops cannot read the current task (before Linux 6.x): listeners' owners",
		Without:  "with packet flows, sockets opened before start end on FIN both ways or by idle eviction; where sock_ops cannot read the current task, accepted connections have no owner",
		Programs: []string{flowtapProgFlowtapState}},
	{Name: FeatureMPTCP, Optional: true,
		Summary:  "MPTCP subflows carry their MPTCP socket's owner",
		Without:  "MPTCP subflows a kernel worker opened have no owner",
		Programs: []string{flowtapProgFlowtapSubflows}},
	{Name: FeatureNoSocketResets, Optional: true,
		Summary:  "packets no socket took, answered with a reset: attempts this host refused (IPv4 and IPv6, any network namespace)",
		Without:  "attempts this host refused are reported by their initiator only, when it is local",
		Programs: []string{flowtapProgFlowtapReset}},
	{Name: FeatureSnapshots, Optional: true,
		Summary:  "periodic counters of open sockets",
		Without:  "idle flows are evicted after the idle timeout; flows open at shutdown end with the counters last seen",
		Programs: []string{flowtapProgFlowtapSnapshot}},
}

// Features lists the capture's features in load order.
func Features() []Feature {
	out := make([]Feature, len(featureTable))
	for i, f := range featureTable {
		f.Programs = slices.Clone(f.Programs)
		out[i] = f
	}
	return out
}

// HideHelpersEnv names the environment variable that makes the loader's
// probes report helpers missing (comma-separated names as cilium/ebpf's
// asm.BuiltinFunc prints them, e.g. FnGetCurrentTaskBtf, and
// tcp_send_reset for the no-socket resets), for tests of the paths older
// kernels take on a newer one.
const HideHelpersEnv = "FLOWTAP_TEST_HIDE_HELPERS"

// haveHelper is features.HaveProgramHelper, with HideHelpersEnv applied.
func haveHelper(pt ebpf.ProgramType, fn asm.BuiltinFunc) error {
	for _, n := range strings.Split(os.Getenv(HideHelpersEnv), ",") {
		if strings.TrimSpace(n) == fn.String() {
			return fmt.Errorf("%s hidden by %s: %w", fn, HideHelpersEnv, ebpf.ErrNotSupported)
		}
	}
	return features.HaveProgramHelper(pt, fn)
}

// BreakProgramsEnv names the environment variable that makes programs
// fail to load, for tests of the degradation path: a comma-separated list
// of program names (broken wherever they load) and feature names (their
// programs broken while that feature loads them: "dns" breaks the packet
// programs). The loader appends an instruction
// no path reaches, so the kernel's verifier really refuses the program.
const BreakProgramsEnv = "FLOWTAP_TEST_BREAK_PROGRAMS"

// loadOptions are what the loader needs besides the spec.
type loadOptions struct {
	// dns loads the DNS programs.
	dns bool
	// packetFlows loads the packet programs that record flow packets
	// (and the state program that goes with them).
	packetFlows bool
	// sockopsOwner: the sock_ops program may read the current task, so
	// it records the caller of connect() and listen() itself (probed).
	sockopsOwner bool
	// broken are programs made to fail (BreakProgramsEnv).
	broken map[string]bool
}

// skip says why feature name is not wanted with these options, or "".
// packetFlows says whether the packet flows loaded.
func (o loadOptions) skip(name string, packetFlows bool) string {
	switch {
	case name == FeatureDNS && !o.dns:
		return "not selected (no selected event needs DNS, or DNS capture is off)"
	case name == FeaturePacketFlows && !o.packetFlows:
		return "not selected (net_packet_flow_base is not selected by name): flows come from the sock_ops program"
	case name == FeatureExistingCloses && !packetFlows && o.sockopsOwner:
		return "not needed: without packet flows, sockets from before start begin no flow, and sock_ops records listeners' owners"
	case name == FeatureMPTCP && !packetFlows:
		return "not used without packet flows: further MPTCP subflows a kernel worker opens have no owner"
	}
	return ""
}

// programs are the programs of feature f these options load. Flows from
// sock_ops need no cgroup connect program when the sock_ops program can
// read the caller of connect() itself, and no socket-local storage for
// the owners of sockets from before start: their listeners' owners are
// enough (listen_owners, filled by flowtap_files).
func (o loadOptions) programs(f Feature, packetFlows bool) []string {
	if packetFlows {
		return f.Programs
	}
	var out []string
	for _, p := range f.Programs {
		switch {
		case p == flowtapProgFlowtapOwners:
		case o.sockopsOwner && (p == flowtapProgFlowtapConnect4 || p == flowtapProgFlowtapConnect6):
		default:
			out = append(out, p)
		}
	}
	return out
}

// PlannedPrograms lists the programs Open loads and attaches (or runs, for
// the iterators) with opts on a kernel that has every feature, in load
// order: the hooks a selection costs.
func PlannedPrograms(opts Options) ([]ProgramInfo, error) {
	all, err := Programs()
	if err != nil {
		return nil, err
	}
	lo := loadOptions{dns: opts.DNS, packetFlows: opts.PacketFlows, sockopsOwner: true}
	var out []ProgramInfo
	for _, f := range featureTable {
		if lo.skip(f.Name, opts.PacketFlows) != "" {
			continue
		}
		for _, name := range lo.programs(f, opts.PacketFlows) {
			for _, p := range all {
				if p.Name == name {
					out = append(out, p)
				}
			}
		}
	}
	return out, nil
}

func brokenPrograms() map[string]bool {
	v := os.Getenv(BreakProgramsEnv)
	if v == "" {
		return nil
	}
	out := map[string]bool{}
	for _, n := range strings.Split(v, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out[n] = true
		}
	}
	return out
}

// loaded are the maps and programs the loader created. Programs of
// unavailable features stay nil.
type loaded struct {
	objs flowtapObjects
	// data holds the data sections the programs share (.bss).
	data     *ebpf.Collection
	features []FeatureStatus
}

// close releases every map and program.
func (l *loaded) close() error {
	var errs []error
	if err := closeObjects(&l.objs); err != nil {
		errs = append(errs, err)
	}
	if l.data != nil {
		l.data.Close()
		l.data = nil
	}
	return errors.Join(errs...)
}

// feature returns the status of feature name.
func (l *loaded) feature(name string) *FeatureStatus {
	for i := range l.features {
		if l.features[i].Name == name {
			return &l.features[i]
		}
	}
	return nil
}

// has reports whether feature name is available.
func (l *loaded) has(name string) bool {
	f := l.feature(name)
	return f != nil && f.Available
}

// programSlot returns where the loaded program name goes in objs.
func (o *flowtapObjects) programSlot(name string) (**ebpf.Program, error) {
	v := reflect.ValueOf(&o.flowtapPrograms).Elem()
	for i := 0; i < v.NumField(); i++ {
		if v.Type().Field(i).Tag.Get("ebpf") == name {
			return v.Field(i).Addr().Interface().(**ebpf.Program), nil
		}
	}
	return nil, fmt.Errorf("embedded BPF object has no program %s (regenerate with go generate ./bpf/)", name)
}

// loadFeatures creates the maps, then loads the programs feature by
// feature: a feature whose program the kernel refuses is marked
// unavailable, with the reason, and loading goes on (the caller decides
// what an unavailable core means). The error is for what leaves nothing
// to load: the maps.
func loadFeatures(spec *ebpf.CollectionSpec, opts loadOptions) (_ *loaded, err error) {
	l := &loaded{}
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	mptcp := mptcpHelperProbe()
	if err := setConst(spec, flowtapVarMptcpEnabled, boolByte(mptcp == nil)); err != nil {
		return nil, err
	}
	opts.sockopsOwner = haveHelper(ebpf.SockOps, asm.FnGetCurrentTaskBtf) == nil
	if err := setConst(spec, flowtapVarSockopsOwner, boolByte(opts.sockopsOwner)); err != nil {
		return nil, err
	}
	// Tracing and raw tracepoint programs got it together (5.11);
	// cilium/ebpf probes only the latter.
	taskBTF := haveHelper(ebpf.RawTracepoint, asm.FnGetCurrentTaskBtf) == nil
	if err := setConst(spec, flowtapVarTaskBtf, boolByte(taskBTF)); err != nil {
		return nil, err
	}
	netnsCookie := haveHelper(ebpf.CGroupSKB, asm.FnGetNetnsCookie) == nil
	if err := setConst(spec, flowtapVarNetnsCookieSkb, boolByte(netnsCookie)); err != nil {
		return nil, err
	}

	mapsOnly := spec.Copy()
	mapsOnly.Programs = nil
	coll, err := ebpf.NewCollection(mapsOnly)
	if err != nil {
		return nil, fmt.Errorf("create BPF maps: %w%s", err, permHint(err))
	}
	// Every program shares the maps; each load makes its own copy of
	// the read-only constants (.rodata), set as they are when it loads.
	replace := map[string]*ebpf.Map{}
	for name, m := range coll.Maps {
		if name != ".rodata" {
			replace[name] = m
		}
	}
	if err := coll.Assign(&l.objs.flowtapMaps); err != nil {
		coll.Close()
		return nil, fmt.Errorf("create BPF maps: %w", err)
	}
	l.data = coll // what Assign left: the data sections
	storage := tracingStorageProbe(l.objs.SockStates)
	if err := setConst(spec, flowtapVarTracingStorage, boolByte(storage == nil)); err != nil {
		return nil, err
	}

	for _, f := range featureTable {
		st := FeatureStatus{Feature: f}
		if st.Reason = opts.skip(f.Name, l.has(FeaturePacketFlows)); st.Reason != "" {
			st.Skipped = true
		}
		switch {
		case st.Skipped:
		case f.Name == FeatureMPTCP && mptcp != nil:
			st.Reason = mptcp.Error()
		case f.Name == FeaturePacketFlows && storage != nil:
			st.Reason = storage.Error()
		case f.Name == FeatureNoSocketResets && noSocketResetsTraced() != nil:
			st.Reason = noSocketResetsTraced().Error()
		default:
			if f.Name == FeatureCore {
				// The sock_ops program writes the flows' moments
				// unless the packet programs record them.
				if err := setConst(spec, flowtapVarSocketFlows, boolByte(!l.has(FeaturePacketFlows))); err != nil {
					return nil, err
				}
			}
			st.Program, st.Err = l.loadPrograms(spec, f, opts.programs(f, l.has(FeaturePacketFlows)), replace, opts.broken)
			st.Available = st.Err == nil
			if st.Err != nil {
				st.Reason = reasonOf(st.Err)
			}
		}
		l.features = append(l.features, st)
	}
	return l, nil
}

// loadPrograms loads the named programs of feature f that are not loaded yet,
// with the spec's constants as they are now. When one fails, it unloads
// those it loaded and returns the failing program's name and the error.
func (l *loaded) loadPrograms(spec *ebpf.CollectionSpec, f Feature, names []string, replace map[string]*ebpf.Map, broken map[string]bool) (string, error) {
	var done []**ebpf.Program
	for _, name := range names {
		slot, err := l.objs.programSlot(name)
		if err != nil {
			return name, err
		}
		if *slot != nil {
			continue
		}
		p, err := loadProgram(spec, name, replace, broken[name] || broken[f.Name])
		if err != nil {
			for _, s := range done {
				(*s).Close()
				*s = nil
			}
			return name, err
		}
		*slot = p
		done = append(done, slot)
	}
	return "", nil
}

// loadProgram loads one program of spec against the shared maps.
func loadProgram(spec *ebpf.CollectionSpec, name string, replace map[string]*ebpf.Map, broken bool) (*ebpf.Program, error) {
	one := spec.Copy()
	ps := one.Programs[name]
	if ps == nil {
		return nil, fmt.Errorf("embedded BPF object has no program %s", name)
	}
	one.Programs = map[string]*ebpf.ProgramSpec{name: ps}
	if broken {
		// Code no path reaches: the verifier refuses the program.
		ps.Instructions = append(slices.Clone(ps.Instructions), asm.Mov.Imm(asm.R0, 0), asm.Return())
	}
	repl := map[string]*ebpf.Map{}
	for n, m := range replace {
		if _, ok := one.Maps[n]; ok {
			repl[n] = m
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(one, ebpf.CollectionOptions{MapReplacements: repl})
	if err != nil {
		return nil, err
	}
	defer coll.Close()
	return coll.DetachProgram(name), nil
}

// mptcpHelperProbe reports why MPTCP owner lookups cannot run here: nil
// when the kernel gives cgroup_skb programs bpf_skc_to_mptcp_sock.
func mptcpHelperProbe() error {
	err := haveHelper(ebpf.CGroupSKB, asm.FnSkcToMptcpSock)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ebpf.ErrNotSupported):
		return errors.New("the kernel lacks bpf_skc_to_mptcp_sock for cgroup_skb programs (Linux 5.19)")
	default:
		return fmt.Errorf("probe bpf_skc_to_mptcp_sock: %w", err)
	}
}

// tracingStorageProbe says why tracing programs may not use socket-local
// storage (Linux 5.11), which the packet flows need (the state program
// gives sockets their owners and reports their closes there): nil where
// they may. It loads a tp_btf program that looks a socket up in states,
// flowtap's own socket storage map; cilium/ebpf has no probe for tracing
// programs' helpers.
func tracingStorageProbe(states *ebpf.Map) error {
	for _, n := range strings.Split(os.Getenv(HideHelpersEnv), ",") {
		if strings.TrimSpace(n) == "tracing_storage" {
			return errors.New("socket-local storage in tracing programs hidden by " + HideHelpersEnv)
		}
	}
	prog, err := ebpf.NewProgramWithOptions(&ebpf.ProgramSpec{
		Type:       ebpf.Tracing,
		AttachType: ebpf.AttachTraceRawTp,
		AttachTo:   "inet_sock_set_state",
		License:    "GPL",
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R2, asm.R1, 0, asm.DWord), // ctx[0]: the socket
			asm.LoadMapPtr(asm.R1, states.FD()),
			asm.Mov.Imm(asm.R3, 0),
			asm.Mov.Imm(asm.R4, 0),
			asm.FnSkStorageGet.Call(),
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	}, ebpf.ProgramOptions{LogDisabled: true})
	if err != nil {
		return fmt.Errorf("the kernel lacks socket-local storage in tracing programs (Linux 5.11), which the packet flows need for sockets' owners and closes: %w", err)
	}
	prog.Close()
	return nil
}

// noSocketResetsTraced reports why tcp_send_reset does not fire for the
// resets the kernel sends for packets no socket took: nil where it does.
// It always fired for sockets' resets, and from Linux 6.10 (which gave the
// tracepoint its reason argument) also without a socket; before that the
// program loads and never sees a refused attempt.
func noSocketResetsTraced() error {
	if os.Getenv(HideHelpersEnv) != "" && slices.Contains(strings.Split(os.Getenv(HideHelpersEnv), ","), "tcp_send_reset") {
		return errors.New("no-socket resets hidden by " + HideHelpersEnv)
	}
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return fmt.Errorf("read the kernel's BTF: %w", err)
	}
	var td *btf.Typedef
	if err := spec.TypeByName("btf_trace_tcp_send_reset", &td); err != nil {
		return fmt.Errorf("the kernel has no tcp_send_reset tracepoint: %w", err)
	}
	ptr, ok := td.Type.(*btf.Pointer)
	if !ok {
		return errors.New("the kernel's tcp_send_reset tracepoint has an unknown shape")
	}
	proto, ok := ptr.Target.(*btf.FuncProto)
	if !ok {
		return errors.New("the kernel's tcp_send_reset tracepoint has an unknown shape")
	}
	// void *, sk, skb, reason: the reason came with the no-socket resets.
	if len(proto.Params) < 4 {
		return errors.New("this kernel traces the resets of sockets only: tcp_send_reset fires for packets no socket took from Linux 6.10")
	}
	return nil
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// reasonOf is the one-line reason of a load or attach failure: for a
// verifier refusal, the verifier's last words.
func reasonOf(err error) string {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return "the kernel's verifier refused it: " + ve.Error()
	}
	return err.Error()
}

// coreError is the error of a core program the kernel refused: it names
// the program, says whether this is a missing capability or a kernel too
// old or different, and how to see the whole verifier log.
func coreError(st FeatureStatus) error {
	var ve *ebpf.VerifierError
	switch {
	case CheckPrivileges() != nil:
		// Without CAP_PERFMON the kernel hides helpers (EINVAL) as well
		// as refusing programs (EPERM): either way the capabilities are
		// the cause.
		return fmt.Errorf("load core program: %w (hint: flowtap's programs %s)", st.Err, capabilityAdvice)
	case errors.As(st.Err, &ve):
		if missing := missingKernelFeatures(); len(missing) > 0 {
			return &KernelTooOldError{Program: st.Program, Missing: missing, Err: st.Err}
		}
		return fmt.Errorf("load core program: %w (the kernel's verifier refused it; flowtap has the capabilities it needs, so this is not a privilege problem: run 'flowtap doctor --verifier-log' for the whole log and report it with the kernel release)", st.Err)
	default:
		return fmt.Errorf("load core program: %w", st.Err)
	}
}

// KernelTooOldError says that the running kernel lacks what flowtap's core
// needs.
type KernelTooOldError struct {
	// Program is the core program the kernel refused.
	Program string
	// Missing lists what the kernel lacks, each with the release that
	// brought it.
	Missing []string
	// Err is the kernel's refusal.
	Err error
}

func (e *KernelTooOldError) Error() string {
	return fmt.Sprintf("this kernel is too old for flowtap: it needs Linux %s or later; the kernel lacks %s (program %s was refused: %v)",
		MinimumKernel, strings.Join(e.Missing, ", "), e.Program, e.Err)
}

func (e *KernelTooOldError) Unwrap() error { return e.Err }

// kernelRequirement is one thing the core needs from the kernel, with a
// probe of it.
type kernelRequirement struct {
	what  string
	probe func() error
}

// coreRequirements are what the core programs use, newest first.
var coreRequirements = []kernelRequirement{
	{"bpf_skc_to_tcp_sock in sock_ops programs (Linux 5.9)", func() error {
		return features.HaveProgramHelper(ebpf.SockOps, asm.FnSkcToTcpSock)
	}},
	{"bpf_ktime_get_boot_ns (Linux 5.8)", func() error {
		return features.HaveProgramHelper(ebpf.CGroupSKB, asm.FnKtimeGetBootNs)
	}},
	{"the BPF ring buffer (Linux 5.8)", func() error { return features.HaveMapType(ebpf.RingBuf) }},
	{"socket-local storage in cgroup_skb programs (Linux 5.2)", func() error {
		return features.HaveProgramHelper(ebpf.CGroupSKB, asm.FnSkStorageGet)
	}},
}

// missingKernelFeatures probes the core's requirements and lists those
// the kernel lacks.
func missingKernelFeatures() []string {
	var out []string
	for _, r := range coreRequirements {
		if err := r.probe(); errors.Is(err, ebpf.ErrNotSupported) {
			out = append(out, r.what)
		}
	}
	return out
}

// Features returns the status of each feature of the capture, in load
// order.
func (c *Capture) Features() []FeatureStatus {
	return slices.Clone(c.features)
}

// Has reports whether the capture has the feature name.
func (c *Capture) Has(name string) bool { return c.has(name) }

// lose marks feature name unavailable after its programs loaded (an
// attach or a walk failed) and unloads the programs no other available
// feature uses.
func (c *Capture) lose(name string, err error) {
	f := c.feature(name)
	if f == nil || !f.Available {
		return
	}
	f.Available, f.Err, f.Reason = false, err, reasonOf(err)
	if f.Program == "" && len(f.Programs) > 0 {
		f.Program = f.Programs[0]
	}
	c.links = closeLinks(c.links, name)
	c.stateLinks = closeLinks(c.stateLinks, name)
	for _, p := range f.Programs {
		if c.usedByOther(name, p) {
			continue
		}
		if slot, err := c.objs.programSlot(p); err == nil && *slot != nil {
			(*slot).Close()
			*slot = nil
		}
	}
}

// usedByOther reports whether an available feature other than name needs
// program prog.
func (l *loaded) usedByOther(name, prog string) bool {
	for _, f := range l.features {
		if f.Name != name && f.Available && slices.Contains(f.Programs, prog) {
			return true
		}
	}
	return false
}

// logVerifier logs, at debug level, the whole verifier log of a feature's
// refused program.
func logVerifier(log hclog.Logger, f FeatureStatus) {
	var ve *ebpf.VerifierError
	if errors.As(f.Err, &ve) {
		log.Debug("verifier log", "feature", f.Name, "program", f.Program, "log", fmt.Sprintf("%+v", ve))
	}
}

// closeLinks detaches the links of feature name and returns the others.
func closeLinks(links []featureLink, name string) []featureLink {
	out := links[:0]
	for _, l := range links {
		if l.feature == name {
			l.link.Close()
			continue
		}
		out = append(out, l)
	}
	return out
}
