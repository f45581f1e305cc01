// SPDX-License-Identifier: Apache-2.0

// Package e2e runs the real flowtap binary with its real sink plugin
// against real kernel programs and checks what it prints.
package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/flowtap/flowtap/bpf"
	"github.com/flowtap/flowtap/internal/e2e/harness"
	"github.com/flowtap/flowtap/internal/privtest"
)

// TestMain removes the binaries built for the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	harness.RemoveBinaries()
	os.Exit(code)
}

// conn is one connection the test made: client and server endpoints.
type conn struct {
	client, server *net.TCPAddr
}

// serve accepts on ln until it is closed: each connection reads a request,
// answers, reads until the client closes, then closes too.
func serve(ln net.Listener) {
	acceptEach(ln, func(c net.Conn) {
		buf := make([]byte, 64)
		if _, err := io.ReadFull(c, buf[:5]); err != nil {
			return
		}
		c.Write([]byte("pong\n"))
		io.Copy(io.Discard, c)
	})
}

// acceptEach accepts on ln until it is closed and hands each connection,
// with a 10 s deadline, to handle on a goroutine of its own; the
// connection is closed when handle returns.
func acceptEach(ln net.Listener, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			handle(c)
		}()
	}
}

// dialMany makes n connections to ln, each sending data both ways and
// closing.
func dialMany(t *testing.T, network string, ln net.Listener, n int) []conn {
	t.Helper()
	var out []conn
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout(network, ln.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", ln.Addr(), err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("read answer: %v", err)
		}
		out = append(out, conn{client: c.LocalAddr().(*net.TCPAddr), server: c.RemoteAddr().(*net.TCPAddr)})
		c.Close()
	}
	return out
}

func key(ev string, dir string, src string, sport uint16, dst string, dport uint16) string {
	return fmt.Sprintf("%s %s %s:%d>%s:%d", ev, dir, src, sport, dst, dport)
}

func TestLoopbackFlowsEndToEnd(t *testing.T) {
	privtest.Require(t)
	bin := harness.Binaries(t)
	a := harness.Start(t, bin, "--events", "flows", "--output", "json")

	ln4, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln4.Close()
	ln6, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln6.Close()
	go serve(ln4)
	go serve(ln6)

	conns := append(dialMany(t, "tcp4", ln4, 50), dialMany(t, "tcp6", ln6, 50)...)

	// A connection attempt to a closed port: refused, so no begin.
	probe, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := uint16(probe.Addr().(*net.TCPAddr).Port)
	probe.Close()
	if _, err := net.DialTimeout("tcp4", probe.Addr().String(), 2*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial closed port: want ECONNREFUSED, got %v", err)
	}

	serverPorts := map[uint16]bool{
		uint16(ln4.Addr().(*net.TCPAddr).Port): true,
		uint16(ln6.Addr().(*net.TCPAddr).Port): true,
		closedPort:                             true,
	}
	ours := func(ev harness.Event) bool {
		return serverPorts[ev.Fields.DstPort] || serverPorts[ev.Fields.SrcPort]
	}
	a.WaitEvents(4*len(conns)+2, ours, 30*time.Second) // and two failed events for the refused attempt
	a.Stop(t)

	if bad := a.Bad(); len(bad) > 0 {
		t.Errorf("%d stdout lines are not JSON events, first: %q", len(bad), bad[0])
	}

	counts := map[string]int{}
	refused := map[string]int{}
	for _, ev := range a.Events() {
		if !ours(ev) {
			continue
		}
		f := ev.Fields
		if f.DstPort == closedPort {
			refused[ev.Event+" "+f.ConnDirection+" "+f.Reason]++
			continue
		}
		counts[key(ev.Event, f.ConnDirection, f.Src, f.SrcPort, f.Dst, f.DstPort)]++
		if ev.Context.SocketCookie == 0 || ev.Context.CgroupID == 0 {
			t.Errorf("%s %s: context lacks cookie or cgroup: %+v", ev.Event, f.ConnDirection, ev.Context)
		}
		if f.SrcDNS == nil || f.DstDNS == nil || len(f.SrcDNS) != 0 || len(f.DstDNS) != 0 {
			t.Errorf("dns fields must be empty lists, got %v %v", f.SrcDNS, f.DstDNS)
		}
		if age := time.Since(time.Unix(0, ev.Timestamp)); age < 0 || age > 2*time.Minute {
			t.Errorf("%s timestamp %d is %v away from now", ev.Event, ev.Timestamp, age)
		}
	}
	// The refused attempt: no begin; one failed event for the client's
	// attempt and one for the attempt against this host.
	for _, k := range []string{"net_flow_tcp_failed outgoing refused", "net_flow_tcp_failed incoming refused"} {
		if refused[k] != 1 {
			t.Errorf("refused attempt to port %d: %q seen %d times, want 1 (all: %v)", closedPort, k, refused[k], refused)
		}
		delete(refused, k)
	}
	if len(refused) > 0 {
		t.Errorf("refused attempt to port %d: unexpected events %v", closedPort, refused)
	}
	pairs := make([][2]netip.AddrPort, len(conns))
	for i, c := range conns {
		pairs[i] = [2]netip.AddrPort{c.client.AddrPort(), c.server.AddrPort()}
	}
	checkOneBeginEndEach(t, counts, pairs)
	if t.Failed() {
		t.Logf("flowtap log:\n%s", a.Log())
	}
	t.Logf("%d connections (50 IPv4, 50 IPv6): %d flow events checked", len(conns), 4*len(conns))
}

func TestRunFailsClearlyOnUnknownEvent(t *testing.T) {
	bin := harness.Binaries(t)
	out, err := exec.Command(filepath.Join(bin, "flowtap"), "run", "--events", "net_flow_tcp_begn").CombinedOutput()
	if err == nil {
		t.Fatalf("flowtap run with an unknown event succeeded:\n%s", out)
	}
	if !bytes.Contains(out, []byte(`did you mean "net_flow_tcp_begin"`)) {
		t.Fatalf("error does not suggest the closest name:\n%s", out)
	}
}

func TestListAndVersion(t *testing.T) {
	bin := harness.Binaries(t)
	out, err := exec.Command(filepath.Join(bin, "flowtap"), "list", "--json").Output()
	if err != nil {
		t.Fatalf("flowtap list --json: %v", err)
	}
	var list []struct {
		Name string   `json:"name"`
		Sets []string `json:"sets"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatalf("list --json is not JSON: %v\n%s", err, out)
	}
	names := map[string]bool{}
	for _, e := range list {
		names[e.Name] = true
	}
	for _, n := range []string{"net_packet_flow_base", "net_flow_tcp_begin", "net_flow_tcp_end"} {
		if !names[n] {
			t.Errorf("flowtap list lacks %s", n)
		}
	}
	out, err = exec.Command(filepath.Join(bin, "flowtap"), "version").Output()
	if err != nil || !bytes.HasPrefix(out, []byte("flowtap ")) {
		t.Fatalf("flowtap version = %q, %v", out, err)
	}
}

// TestRunWithoutPrivilegesNamesWhatIsMissing runs flowtap as an
// unprivileged user and checks that it refuses with the missing
// capabilities named, before it launches anything.
func TestRunWithoutPrivilegesNamesWhatIsMissing(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to an unprivileged user; an unprivileged run is covered by running flowtap as that user")
	}
	dir := publicCopies(t, harness.Binaries(t), "flowtap", "flowtap-sink-stdout")
	cmd := exec.Command(filepath.Join(dir, "flowtap"), "run")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("flowtap run as nobody succeeded:\n%s", out)
	}
	for _, want := range []string{"CAP_BPF", "CAP_NET_ADMIN", "root"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("error does not name %s:\n%s", want, out)
		}
	}
	if bytes.Contains(out, []byte("configured stdout sink")) {
		t.Errorf("a sink was started before the privilege check failed:\n%s", out)
	}
}

// TestDoctor: 'flowtap doctor' probes every feature on this kernel and
// says the core runs (exit 0); with a core program the verifier refuses,
// it names the program and exits 1; without privileges, it names the
// missing capabilities and exits 1.
func TestDoctor(t *testing.T) {
	privtest.Require(t)
	bin := harness.Binaries(t)
	out, err := exec.Command(filepath.Join(bin, "flowtap"), "doctor", "--json").Output()
	if err != nil {
		t.Fatalf("flowtap doctor --json: %v\n%s", err, out)
	}
	var r struct {
		Kernel   string `json:"kernel"`
		BTF      bool   `json:"btf"`
		Cgroup2  string `json:"cgroup2"`
		CoreOK   bool   `json:"core_ok"`
		Features []struct {
			Name      string `json:"name"`
			Available bool   `json:"available"`
			Reason    string `json:"reason"`
		} `json:"features"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("doctor --json is not JSON: %v\n%s", err, out)
	}
	if r.Kernel == "" || !r.BTF || r.Cgroup2 == "" || !r.CoreOK || len(r.Features) < 7 {
		t.Errorf("doctor report %+v: want kernel, BTF, cgroup2, core_ok and 7 features", r)
	}
	for _, f := range r.Features {
		if !f.Available {
			t.Errorf("feature %s unavailable here: %s", f.Name, f.Reason)
		}
	}

	cmd := exec.Command(filepath.Join(bin, "flowtap"), "doctor", "--verifier-log")
	cmd.Env = append(os.Environ(), bpf.BreakProgramsEnv+"=flowtap_sockops")
	out, err = cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("doctor with a refused core program: %v, want exit status 1\n%s", err, out)
	}
	for _, want := range []string{"UNAVAILABLE (flowtap cannot start)", "program flowtap_sockops", "not a privilege problem", "verifier log of flowtap_sockops", "unreachable insn"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("doctor output lacks %q:\n%s", want, out)
		}
	}

	cmd = exec.Command(filepath.Join(publicCopies(t, bin, "flowtap"), "flowtap"), "doctor")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err = cmd.CombinedOutput()
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("doctor as nobody: %v, want exit status 1\n%s", err, out)
	}
	for _, want := range []string{"lacks CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON", "flowtap cannot run here"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("doctor as nobody lacks %q:\n%s", want, out)
		}
	}
}

// publicCopies copies the named binaries from bin into a directory an
// unprivileged user can reach, removed when the test ends, and returns it.
func publicCopies(t *testing.T, bin string, names ...string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "flowtap-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(bin, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
