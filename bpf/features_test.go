// SPDX-License-Identifier: Apache-2.0

package bpf_test

import (
	"bytes"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/flowtap/flowtap/bpf"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/privtest"
	"github.com/flowtap/flowtap/internal/testutil"
)

// TestFeaturesCoverEveryProgram: every program of the object file belongs
// to a feature, and every feature's programs exist, so no program loads
// (or fails) outside the feature accounting.
func TestFeaturesCoverEveryProgram(t *testing.T) {
	progs, err := bpf.Programs()
	if err != nil {
		t.Fatal(err)
	}
	owned := map[string]bool{}
	for _, f := range bpf.Features() {
		if len(f.Programs) == 0 || f.Summary == "" {
			t.Errorf("feature %s: no programs or no summary", f.Name)
		}
		if f.Optional && f.Without == "" {
			t.Errorf("optional feature %s does not say what is lost without it", f.Name)
		}
		for _, p := range f.Programs {
			owned[p] = true
		}
	}
	for _, p := range progs {
		if !owned[p.Name] {
			t.Errorf("program %s (%s) belongs to no feature", p.Name, p.Section)
		}
		delete(owned, p.Name)
	}
	for p := range owned {
		t.Errorf("a feature names program %s, which the object file lacks", p)
	}
}

// TestEveryProgramLoads loads every program of every feature, DNS
// included, on this kernel: a program this kernel's verifier refuses
// fails here, even if a default run would not load it.
func TestEveryProgramLoads(t *testing.T) {
	privtest.Require(t)
	r, err := bpf.Probe()
	if err != nil {
		t.Fatal(err)
	}
	if !r.CoreOK {
		t.Errorf("core: %s", r.CoreError)
	}
	if len(r.Features) != len(bpf.Features()) {
		t.Errorf("probed %d features, want %d", len(r.Features), len(bpf.Features()))
	}
	for _, f := range r.Features {
		switch {
		case f.Err != nil:
			t.Errorf("feature %s unavailable on kernel %s: program %s: %+v", f.Name, r.Kernel, f.Program, f.Err)
		case !f.Available:
			// Not a refusal: the kernel lacks what the feature needs
			// (a probe said so before loading).
			t.Logf("feature %s unavailable on kernel %s: %s", f.Name, r.Kernel, f.Reason)
		}
	}
	var text bytes.Buffer
	if err := r.WriteText(&text, true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "flowtap can run here.") {
		t.Errorf("report does not say flowtap can run:\n%s", text.String())
	}
}

// TestOptionalFeatureLost: when the kernel refuses an optional feature's
// program, Open still succeeds, logs one WARN line naming the feature, the
// program and the kernel's reason, and the events that do not need the
// feature are still exact.
func TestOptionalFeatureLost(t *testing.T) {
	privtest.Require(t)
	t.Setenv(bpf.BreakProgramsEnv, "flowtap_reset")
	var logs testutil.SyncBuffer
	r := startCapture(t, scoped(bpf.Options{Logger: hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Debug})}))
	if r.c.Has(bpf.FeatureNoSocketResets) {
		t.Fatal("nosock-resets available although its program was broken")
	}
	for _, f := range r.c.Features() {
		if f.Name != bpf.FeatureNoSocketResets && !f.Available && !f.Skipped {
			t.Errorf("feature %s lost too: %s", f.Name, f.Reason)
		}
		if f.Name == bpf.FeatureNoSocketResets && (f.Program != "flowtap_reset" || !strings.Contains(f.Reason, "verifier refused")) {
			t.Errorf("nosock-resets: program %q, reason %q; want flowtap_reset refused by the verifier", f.Program, f.Reason)
		}
	}
	var warns []string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "[WARN]") {
			warns = append(warns, line)
		}
	}
	if len(warns) != 1 || !strings.Contains(warns[0], "feature=nosock-resets") || !strings.Contains(warns[0], "program=flowtap_reset") || !strings.Contains(warns[0], "unreachable insn") {
		t.Errorf("want one WARN line naming nosock-resets, flowtap_reset and the kernel's reason, got:\n%s", strings.Join(warns, "\n"))
	}
	if !strings.Contains(logs.String(), "verifier log:") {
		t.Errorf("debug log lacks the whole verifier log:\n%s", logs.String())
	}

	// A connection: both ends' records, counters exact.
	cp, sp, evs := oneConnection(t, r)
	client := socketRecs(evs, events.SocketClosed, cp, sp)[0].Payload.(*events.TCPSocketBase)
	if client.Counters.BytesSent != uint64(len("ping")) || client.Counters.BytesReceived != uint64(len("pong")) {
		t.Errorf("client counters %+v, want 4 bytes each way", client.Counters)
	}
	// A refused attempt still shows: the reset the client's socket got.
	refused := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), closedPort(t, "tcp4", "127.0.0.1:0"))
	from := dialRefused(t, netip.MustParseAddr("127.0.0.1"), refused)
	if _, ok := r.col.waitFor(waitTimeout, func(evs []events.Event) bool {
		_, ok := find(evs, pkt{events.Ingress, refused.Port(), from.Port(), events.FlagRST | events.FlagACK})
		return ok
	}); !ok {
		t.Errorf("no ingress RST record for the refused attempt %v -> %v", from, refused)
	}
}

// TestDNSFeatureLost: when the DNS programs are refused, the capture opens
// without DNS, and the flows are still there.
func TestDNSFeatureLost(t *testing.T) {
	privtest.Require(t)
	t.Setenv(bpf.BreakProgramsEnv, bpf.FeatureDNS)
	r := startCapture(t, scoped(bpf.Options{DNS: true}))
	if r.c.Has(bpf.FeatureDNS) || !r.c.Has(bpf.FeatureCore) {
		t.Fatalf("features %+v: want DNS lost and the core there", r.c.Features())
	}
	oneConnection(t, r)
}

// oneConnection makes a loopback connection (4 bytes each way) and waits
// for both ends' closed records; it returns the client's and the server's
// ports and the events so far.
func oneConnection(t *testing.T, r *running) (cp, sp uint16, evs []events.Event) {
	t.Helper()
	ln, err := listenTCP("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serveOnce(ln)
	server := netip.MustParseAddrPort(ln.Addr().String())
	cp, sp = clientRoundTrip(t, server), server.Port()
	return cp, sp, waitSockets(t, r.col, events.SocketClosed, [2]uint16{cp, sp}, [2]uint16{sp, cp})
}

// TestSnapshotFeatureLost: without the snapshot program, Snapshot says
// the feature is unavailable, as a type.
func TestSnapshotFeatureLost(t *testing.T) {
	privtest.Require(t)
	t.Setenv(bpf.BreakProgramsEnv, "flowtap_snapshot")
	r := startCapture(t, scoped(bpf.Options{}))
	if err := r.c.Snapshot(); !errors.Is(err, bpf.ErrFeatureUnavailable) {
		t.Errorf("Snapshot: %v, want ErrFeatureUnavailable", err)
	}
}

// TestCoreProgramRefused: a refused core program is fatal; the error names
// the program, says it is not a privilege problem, and gives no
// capability hint.
func TestCoreProgramRefused(t *testing.T) {
	privtest.Require(t)
	for _, prog := range []string{"flowtap_sockops"} {
		t.Run(prog, func(t *testing.T) {
			t.Setenv(bpf.BreakProgramsEnv, prog)
			c, err := bpf.Open(scoped(bpf.Options{}))
			if err == nil {
				c.Close()
				t.Fatal("Open succeeded with a core program refused")
			}
			msg := err.Error()
			for _, want := range []string{"program " + prog, "not a privilege problem", "--verifier-log"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error lacks %q: %s", want, msg)
				}
			}
			if strings.Contains(msg, "grant them") {
				t.Errorf("error gives a capability hint as root: %s", msg)
			}
			var old *bpf.KernelTooOldError
			if errors.As(err, &old) {
				t.Errorf("a refusal on a kernel that has every requirement is blamed on its age: %v", err)
			}
		})
	}
}

// TestFeatureNamesAreStable: the names are what logs, doctor --json and
// the kernel matrix print; renaming one is a breaking change.
func TestFeatureNamesAreStable(t *testing.T) {
	var names []string
	for _, f := range bpf.Features() {
		names = append(names, f.Name)
	}
	want := []string{"dns", "packet-flows", "core", "existing-owners", "existing-closes", "mptcp", "nosock-resets", "snapshots"}
	if !slices.Equal(names, want) {
		t.Errorf("features %v, want %v", names, want)
	}
}
