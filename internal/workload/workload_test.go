// SPDX-License-Identifier: Apache-2.0

package workload

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowtap/flowtap/internal/privtest"
)

func TestParseEndpoint(t *testing.T) {
	for in, want := range map[string]Endpoint{
		"127.0.0.1:0":         {Addr: netip.MustParseAddrPort("127.0.0.1:0")},
		"[::1]:80":            {Addr: netip.MustParseAddrPort("[::1]:80")},
		"10.0.0.2:0@ns-b":     {Addr: netip.MustParseAddrPort("10.0.0.2:0"), Netns: "ns-b"},
		"[::]:9@/proc/1/ns/x": {Addr: netip.MustParseAddrPort("[::]:9"), Netns: "/proc/1/ns/x"},
	} {
		got, err := ParseEndpoint(in)
		if err != nil || got != want {
			t.Errorf("ParseEndpoint(%q) = %v, %v; want %v", in, got, err, want)
		}
		if got.String() != in {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), in)
		}
	}
	for _, bad := range []string{"", "127.0.0.1", "127.0.0.1:0@", "host:80"} {
		if _, err := ParseEndpoint(bad); err == nil {
			t.Errorf("ParseEndpoint(%q) succeeded", bad)
		}
	}
}

func TestSizesCoverLargeBothWays(t *testing.T) {
	var bigReq, bigResp, zeroResp bool
	for i := range 40 {
		req, resp := SizesFor(i)
		bigReq = bigReq || req >= 256<<10
		bigResp = bigResp || resp >= 256<<10
		zeroResp = zeroResp || resp == 0
	}
	if !bigReq || !bigResp || !zeroResp {
		t.Fatalf("40 connections lack a large request (%v), a large response (%v) or an empty response (%v)", bigReq, bigResp, zeroResp)
	}
}

func TestPlanValidate(t *testing.T) {
	for name, p := range map[string]Plan{
		"negative":           {IPv4: -1},
		"netns no client":    {Netns: NetnsPlan{Conns: 1}},
		"timeouts no target": {Netns: NetnsPlan{Client: "a", Timeouts: 1}},
		"no server netns":    {Netns: NetnsPlan{Client: "a", Refused: 1}},
	} {
		if err := p.Validate(); err == nil {
			t.Errorf("%s: plan %+v validated", name, p)
		}
	}
}

// TestLoopbackInProcess runs both sides in this process: every connection
// kind, refused attempts, and a serve summary that agrees with the report.
func TestLoopbackInProcess(t *testing.T) {
	plan := Plan{IPv4: 12, IPv6: 12, IPv4Mapped: 4, DualStackV4: 4, DualStackV6: 4, RefusedIPv4: 3, RefusedIPv6: 3}
	srv, err := Listen(plan.serveConfig())
	if err != nil {
		t.Fatal(err)
	}
	info := srv.Info()
	plan.Servers = &info
	ctx, cancel := context.WithCancel(context.Background())
	sumc := make(chan ServeSummary, 1)
	go func() { sumc <- srv.Serve(ctx) }()

	rep, err := Run(context.Background(), plan, "")
	cancel()
	sum := <-sumc
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(rep.Connections), 36; got != want {
		t.Fatalf("%d connections, want %d", got, want)
	}
	if got, want := len(rep.Failed), 6; got != want {
		t.Fatalf("%d failed attempts, want %d", got, want)
	}
	var in, out uint64
	kinds := map[string]int{}
	// A client port may serve two connections to different servers; a
	// whole 4-tuple is used once.
	type pair struct{ client, server netip.AddrPort }
	seen := map[pair]bool{}
	for _, c := range rep.Connections {
		kinds[c.Kind]++
		in += c.BytesClientToServer
		out += c.BytesServerToClient
		if seen[pair{c.Client, c.Server}] {
			t.Errorf("connection %s → %s reported twice", c.Client, c.Server)
		}
		seen[pair{c.Client, c.Server}] = true
		if c.Client.Addr().Is4In6() || c.Server.Addr().Is4In6() {
			t.Errorf("%s: addresses must be reported unmapped: %s → %s", c.Kind, c.Client, c.Server)
		}
		wantV4 := c.Kind == KindIPv4 || c.Kind == KindIPv4Mapped || c.Kind == KindDualStackV4
		if c.Client.Addr().Is4() != wantV4 || c.Server.Addr().Is4() != wantV4 {
			t.Errorf("%s: %s → %s has the wrong IP version on the wire", c.Kind, c.Client, c.Server)
		}
		if c.BytesClientToServer < HeaderSize {
			t.Errorf("%s: %d bytes client→server, less than the header", c.Kind, c.BytesClientToServer)
		}
	}
	if kinds[KindIPv4Mapped] != 4 || kinds[KindDualStackV4] != 4 || kinds[KindDualStackV6] != 4 {
		t.Errorf("kinds = %v", kinds)
	}
	for _, c := range rep.Connections {
		if c.Kind == KindIPv4Mapped && c.ClientFamily != "inet6" {
			t.Errorf("ipv4_mapped connection from a %s socket", c.ClientFamily)
		}
	}
	for _, a := range rep.Failed {
		if a.Reason != ReasonRefused || !a.ResponderLocal || a.Client.Port() == 0 || a.Server.Port() == 0 {
			t.Errorf("attempt %+v", a)
		}
	}
	if sum.Served != 36 || sum.Errors != 0 || sum.BytesReceived != in || sum.BytesSent != out {
		t.Errorf("server summary %+v disagrees with the report: %d connections, %d bytes in, %d out", sum, len(rep.Connections), in, out)
	}
}

var (
	exeOnce sync.Once
	exePath string
	exeErr  error
)

// buildExe builds cmd/flowtap-workload once per test binary.
func buildExe(t *testing.T) string {
	t.Helper()
	exeOnce.Do(func() {
		dir, err := os.MkdirTemp("", "flowtap-workload-")
		if err != nil {
			exeErr = err
			return
		}
		exePath = filepath.Join(dir, "flowtap-workload")
		cmd := exec.Command("go", "build", "-o", exePath, "./cmd/flowtap-workload")
		cmd.Dir = filepath.Join("..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			exeErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if exeErr != nil {
		t.Fatal(exeErr)
	}
	return exePath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if exePath != "" {
		os.RemoveAll(filepath.Dir(exePath))
	}
	os.Exit(code)
}

// TestServeChildProcess checks that Run starts its own server process when
// the plan has none, and that pid and comm differ between the two sides.
func TestServeChildProcess(t *testing.T) {
	exe := buildExe(t)
	out, err := exec.Command(exe, "run", "--ipv4", "3", "--refused-ipv6", "1").Output()
	if err != nil {
		t.Fatalf("flowtap-workload run: %v", err)
	}
	var rep Report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Connections) != 3 || len(rep.Failed) != 1 {
		t.Fatalf("report has %d connections and %d attempts, want 3 and 1", len(rep.Connections), len(rep.Failed))
	}
	c := rep.Connections[0]
	if c.ClientPID == c.ServerPID || c.ClientComm != "ftw-client" || c.ServerComm != "ftw-serve" {
		t.Errorf("client %d %q, server %d %q: want two processes named ftw-client and ftw-serve", c.ClientPID, c.ClientComm, c.ServerPID, c.ServerComm)
	}
}

// TestCommFromExec: a serve process takes its --comm by executing itself
// again through a link of that name, so every one of its threads carries
// the name from its start (renaming threads one by one raced with the Go
// runtime starting new ones), and the link's directory is gone once it
// runs.
func TestCommFromExec(t *testing.T) {
	exe := buildExe(t)
	const name = "ftw-comm-test"
	listen := Endpoint{Addr: netip.MustParseAddrPort("127.0.0.1:0")}
	p, err := StartServe(context.Background(), exe, ServeConfig{Listen: []Endpoint{listen}}, "--comm", name)
	if err != nil {
		t.Fatalf("StartServe: %v", err)
	}
	defer p.Stop()
	info := p.Info()
	if info.PID != p.cmd.Process.Pid || info.Comm != name {
		t.Fatalf("serve reports pid %d comm %q, want %d %q (the same process, renamed)", info.PID, info.Comm, p.cmd.Process.Pid, name)
	}
	comms, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/comm", info.PID))
	if err != nil || len(comms) < 2 {
		t.Fatalf("threads of %d: %v %v, want a Go process's several", info.PID, comms, err)
	}
	for _, p := range comms {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread exited
		}
		if got := strings.TrimSpace(string(b)); got != name {
			t.Errorf("%s: %q, want %q", p, got, name)
		}
	}
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", info.PID))
	if err != nil {
		t.Fatal(err)
	}
	var dir string
	for _, kv := range strings.Split(string(environ), "\x00") {
		if v, ok := strings.CutPrefix(kv, commLinkEnv+"="); ok {
			dir = v
		}
	}
	if dir == "" {
		t.Fatalf("%s is not in the environment serve was executed with: it did not execute itself through a link", commLinkEnv)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the link's directory %s: %v, want it removed", dir, err)
	}
}

// TestNetns runs namespace connections, refused and timed-out attempts
// between two namespaces this test creates and deletes.
func TestNetns(t *testing.T) {
	privtest.Require(t)
	exe := buildExe(t)
	ctx := context.Background()
	suffix := fmt.Sprint(os.Getpid() % 100000)
	topo, err := NewTopology(ctx, "ftw", suffix, netip.MustParsePrefix("10.213.250.0/29"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Error(err)
		}
	})
	plan := Plan{
		ConnectTimeout: Duration(time.Second),
		Netns: NetnsPlan{
			Client: topo.ClientNS, Server: topo.ServerNS, ServerAddr: topo.ServerAddr,
			Conns: 10, Refused: 3, Timeouts: 3,
			TimeoutTarget: netip.AddrPortFrom(topo.DropAddr, 80),
		},
	}
	rep, err := Run(ctx, plan, exe)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Connections) != 10 {
		t.Errorf("%d namespace connections, want 10", len(rep.Connections))
	}
	for _, c := range rep.Connections {
		if c.Client.Addr() != topo.ClientAddr || c.Server.Addr() != topo.ServerAddr || c.ServerNetns != topo.ServerNS {
			t.Errorf("connection %s → %s (server netns %q): want %s → %s in %s", c.Client, c.Server, c.ServerNetns, topo.ClientAddr, topo.ServerAddr, topo.ServerNS)
		}
	}
	reasons := map[string]int{}
	for _, a := range rep.Failed {
		reasons[a.Reason]++
		if a.Client.Addr() != topo.ClientAddr || a.Client.Port() == 0 {
			t.Errorf("attempt from %s, want %s with a port", a.Client, topo.ClientAddr)
		}
		if a.Reason == ReasonTimeout && (a.ResponderLocal || a.Server.Addr() != topo.DropAddr) {
			t.Errorf("timeout attempt %+v", a)
		}
	}
	if reasons[ReasonRefused] != 3 || reasons[ReasonTimeout] != 3 {
		t.Errorf("failed attempts by reason: %v, want 3 refused and 3 timeouts", reasons)
	}
}
