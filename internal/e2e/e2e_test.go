// Package e2e runs the real flowtap binary with its real sink plugin
// against real kernel programs and checks what it prints.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flowtap/flowtap/internal/privtest"
)

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// TestMain removes the binaries built for the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// buildBinaries builds flowtap and its sink plugins once per test binary
// into a temporary bin directory, as 'make build' lays them out.
func buildBinaries(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "flowtap-e2e-bin-"); binErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+"/", "./cmd/...")
		cmd.Dir = filepath.Join("..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./cmd/...: %w\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

// jsonEvent is one line of the stdout sink's json format.
type jsonEvent struct {
	Timestamp int64  `json:"timestamp"`
	Event     string `json:"event"`
	Context   struct {
		SocketCookie uint64 `json:"socket_cookie"`
		CgroupID     uint64 `json:"cgroup_id"`
	} `json:"context"`
	Fields struct {
		ConnDirection string   `json:"conn_direction"`
		Src           string   `json:"src"`
		Dst           string   `json:"dst"`
		SrcPort       uint16   `json:"src_port"`
		DstPort       uint16   `json:"dst_port"`
		SrcDNS        []string `json:"src_dns"`
		DstDNS        []string `json:"dst_dns"`
		Reason        string   `json:"reason"`
	} `json:"fields"`
}

// agent is a running 'flowtap run' process.
type agent struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	events []jsonEvent
	bad    []string
	stderr bytes.Buffer
	ready  chan struct{}
	done   chan struct{}
}

func startAgent(t *testing.T, bin string, args ...string) *agent {
	t.Helper()
	a := &agent{ready: make(chan struct{}), done: make(chan struct{})}
	a.cmd = exec.Command(filepath.Join(bin, "flowtap"), append([]string{"run"}, args...)...)
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := a.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderrR, stderrW := io.Pipe()
	a.cmd.Stderr = stderrW
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("start flowtap: %v", err)
	}
	t.Cleanup(func() {
		if a.cmd.ProcessState == nil {
			a.cmd.Process.Kill()
			a.cmd.Wait()
		}
	})
	var once sync.Once
	go func() {
		sc := bufio.NewScanner(stderrR)
		for sc.Scan() {
			line := sc.Bytes()
			a.mu.Lock()
			a.stderr.Write(line)
			a.stderr.WriteByte('\n')
			a.mu.Unlock()
			if bytes.Contains(line, []byte("capture started")) {
				once.Do(func() { close(a.ready) })
			}
		}
	}()
	go func() {
		defer close(a.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			var ev jsonEvent
			err := json.Unmarshal(sc.Bytes(), &ev)
			a.mu.Lock()
			if err != nil {
				a.bad = append(a.bad, sc.Text())
			} else {
				a.events = append(a.events, ev)
			}
			a.mu.Unlock()
		}
		stderrW.Close()
	}()
	select {
	case <-a.ready:
	case <-a.done:
		t.Fatalf("flowtap exited before the capture started:\n%s", a.log())
	case <-time.After(60 * time.Second):
		t.Fatalf("flowtap did not report 'capture started' within 60s:\n%s", a.log())
	}
	return a
}

func (a *agent) log() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stderr.String()
}

func (a *agent) snapshot() []jsonEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]jsonEvent(nil), a.events...)
}

// stop sends SIGINT and waits for a clean exit.
func (a *agent) stop(t *testing.T) {
	t.Helper()
	if err := a.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatalf("signal flowtap: %v", err)
	}
	exited := make(chan error, 1)
	go func() { <-a.done; exited <- a.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("flowtap exited with %v after SIGINT:\n%s", err, a.log())
		}
	case <-time.After(30 * time.Second):
		a.cmd.Process.Kill()
		t.Fatalf("flowtap did not exit within 30s of SIGINT:\n%s", a.log())
	}
}

// conn is one connection the test made: client and server endpoints.
type conn struct {
	client, server *net.TCPAddr
}

// serve accepts on ln until it is closed: each connection reads a request,
// answers, reads until the client closes, then closes too.
func serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 64)
			if _, err := io.ReadFull(c, buf[:5]); err != nil {
				return
			}
			c.Write([]byte("pong\n"))
			io.Copy(io.Discard, c)
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
	bin := buildBinaries(t)
	a := startAgent(t, bin, "--events", "flows", "--output", "json")

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
	ours := func(ev jsonEvent) bool {
		return serverPorts[ev.Fields.DstPort] || serverPorts[ev.Fields.SrcPort]
	}
	want := 4*len(conns) + 2 // and two failed events for the refused attempt
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := 0
		for _, ev := range a.snapshot() {
			if ours(ev) {
				n++
			}
		}
		if n >= want || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	a.stop(t)

	a.mu.Lock()
	if len(a.bad) > 0 {
		t.Errorf("%d stdout lines are not JSON events, first: %q", len(a.bad), a.bad[0])
	}
	a.mu.Unlock()

	counts := map[string]int{}
	refused := map[string]int{}
	for _, ev := range a.snapshot() {
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
	expected := map[string]bool{}
	for _, c := range conns {
		src, dst := c.client.IP.String(), c.server.IP.String()
		sp, dp := uint16(c.client.Port), uint16(c.server.Port)
		for _, ev := range []string{"net_flow_tcp_begin", "net_flow_tcp_end"} {
			for _, dir := range []string{"outgoing", "incoming"} {
				k := key(ev, dir, src, sp, dst, dp)
				expected[k] = true
				if counts[k] != 1 {
					t.Errorf("%s: seen %d times, want exactly 1", k, counts[k])
				}
			}
		}
	}
	for k, n := range counts {
		if !expected[k] {
			t.Errorf("unexpected flow event for the test's ports: %s (x%d)", k, n)
		}
	}
	if t.Failed() {
		t.Logf("flowtap log:\n%s", a.log())
	}
	t.Logf("%d connections (50 IPv4, 50 IPv6): %d flow events checked", len(conns), 4*len(conns))
}

func TestRunFailsClearlyOnUnknownEvent(t *testing.T) {
	bin := buildBinaries(t)
	out, err := exec.Command(filepath.Join(bin, "flowtap"), "run", "--events", "net_flow_tcp_begn").CombinedOutput()
	if err == nil {
		t.Fatalf("flowtap run with an unknown event succeeded:\n%s", out)
	}
	if !bytes.Contains(out, []byte(`did you mean "net_flow_tcp_begin"`)) {
		t.Fatalf("error does not suggest the closest name:\n%s", out)
	}
}

func TestListAndVersion(t *testing.T) {
	bin := buildBinaries(t)
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
	bin := buildBinaries(t)
	// The binaries must be reachable by the unprivileged user.
	dir, err := os.MkdirTemp("", "flowtap-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, name := range []string{"flowtap", "flowtap-sink-stdout"} {
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
