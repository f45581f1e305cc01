// SPDX-License-Identifier: Apache-2.0

package bpf_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flowtap/flowtap/bpf"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/privtest"
	"github.com/flowtap/flowtap/internal/testutil"
)

// TCP states (include/net/tcp_states.h) the tests expect.
const (
	stateEstablished = 1
	stateSynSent     = 2
	stateFinWait1    = 4
	stateFinWait2    = 5
	stateCloseWait   = 8
	stateLastAck     = 9
	stateClosing     = 11
)

// helperComm is the task name of helper processes that run as another
// user: a copy of the test binary under this name.
const helperComm = "ftap-owner"

// nobody is the user helper processes run as.
const nobody = 65534

// selfComm returns this process's task name.
func selfComm(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(string(b), "\n")
}

// helperBinary links (or copies) the test binary to a directory every
// user can read, under name, so a helper has that task name and can run
// as nobody.
func helperBinary(t testing.TB, name string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := testutil.TempDirMode(t, "flowtap-helper", 0o755)
	bin := filepath.Join(dir, name)
	if err := os.Link(exe, bin); err == nil {
		if st, err := os.Stat(bin); err == nil && st.Mode().Perm()&0o005 == 0o005 {
			return bin
		}
		os.Remove(bin)
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// helper is a child process running TestHelperProcess in some mode; it
// talks line by line over stdin and stdout.
type helper struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
	done  chan struct{}
}

type helperOpts struct {
	env      []string
	asNobody bool
	cgroupFD int  // > 0: start the child in this cgroup
	netns    bool // start the child in a network namespace of its own (lo up)
}

// startHelper starts the test binary (as helperComm) in mode. The child is
// stopped (stdin closed, then killed if need be) when the test ends.
func startHelper(t testing.TB, mode string, opts helperOpts) *helper {
	t.Helper()
	bin := helperBinary(t, helperComm)
	cmd := exec.Command(bin, "-test.run=^TestHelperProcess$")
	cmd.Dir = filepath.Dir(bin)
	cmd.Env = append([]string{helperEnv + "=" + mode, "PATH=/usr/bin:/bin"}, opts.env...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	if opts.asNobody {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: nobody, Gid: nobody}
	}
	if opts.netns {
		// The namespace dies with the child.
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWNET
		cmd.Env = append(cmd.Env, "FLOWTAP_HELPER_LO_UP=1")
	}
	if opts.cgroupFD > 0 {
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = opts.cgroupFD
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper %s: %v", mode, err)
	}
	h := &helper{cmd: cmd, in: in, lines: make(chan string, 64), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
		close(h.lines)
		// Wait closes the pipe: only once everything was read.
		cmd.Wait()
		close(h.done)
	}()
	t.Cleanup(func() { h.stop(t) })
	return h
}

// expect returns the rest of the next line, which must start with prefix.
func (h *helper) expect(t testing.TB, prefix string) string {
	t.Helper()
	return h.expectWithin(t, prefix, 2*waitTimeout)
}

func (h *helper) expectWithin(t testing.TB, prefix string, timeout time.Duration) string {
	t.Helper()
	select {
	case line, ok := <-h.lines:
		if !ok {
			<-h.done
			t.Fatalf("helper exited (%v) before saying %q", h.cmd.ProcessState, prefix)
		}
		rest, found := strings.CutPrefix(line, prefix)
		if !found {
			t.Fatalf("helper said %q, want %q...", line, prefix)
		}
		return strings.TrimSpace(rest)
	case <-time.After(timeout):
		t.Fatalf("helper did not say %q within %v", prefix, timeout)
	}
	return ""
}

func (h *helper) send(t testing.TB, line string) {
	t.Helper()
	if _, err := fmt.Fprintln(h.in, line); err != nil {
		t.Fatalf("write to helper: %v", err)
	}
}

func (h *helper) pid() uint32 { return uint32(h.cmd.Process.Pid) }

// stop closes stdin (helpers exit on EOF) and waits, bounded, for exit.
func (h *helper) stop(t testing.TB) {
	h.in.Close()
	// Unread output must not block the reader, which waits for the exit.
	go func() {
		for range h.lines {
		}
	}()
	select {
	case <-h.done:
	case <-time.After(waitTimeout):
		t.Errorf("helper %d did not exit after stdin closed; killing it", h.cmd.Process.Pid)
		h.cmd.Process.Kill()
		<-h.done
	}
}

// flowHelper is the child side of the helper modes used by the flow tests.
func flowHelper(mode string, out *bufio.Writer) {
	in := bufio.NewScanner(os.Stdin)
	fail := func(err error) {
		fmt.Fprintf(out, "error %v\n", err)
		out.Flush()
		os.Exit(1)
	}
	if os.Getenv("FLOWTAP_HELPER_LO_UP") == "1" {
		if err := loUp(); err != nil {
			fail(err)
		}
	}
	switch mode {
	case "dial":
		// Connect (with MPTCP if FLOWTAP_HELPER_MPTCP=1), say the local
		// address, wait for "go", send a line, half-close, read the
		// answer, close.
		d := net.Dialer{Timeout: waitTimeout}
		d.SetMultipathTCP(os.Getenv("FLOWTAP_HELPER_MPTCP") == "1")
		c, err := d.Dial("tcp", os.Getenv("FLOWTAP_HELPER_ADDR"))
		if err != nil {
			fail(err)
		}
		c.SetDeadline(time.Now().Add(4 * waitTimeout))
		fmt.Fprintf(out, "local %s\n", c.LocalAddr())
		out.Flush()
		if !in.Scan() {
			return
		}
		if _, err := c.Write([]byte("hello from child")); err != nil {
			fail(err)
		}
		c.(*net.TCPConn).CloseWrite()
		if _, err := io.ReadAll(c); err != nil {
			fail(err)
		}
		c.Close()
		fmt.Fprintln(out, "done")
	case "listen":
		// Listen (MPTCP as Go's default, or plain TCP), say the port,
		// answer every connection until stdin ends.
		var lc net.ListenConfig
		if os.Getenv("FLOWTAP_HELPER_MPTCP") == "0" {
			lc.SetMultipathTCP(false)
		}
		ln, err := lc.Listen(context.Background(), "tcp", os.Getenv("FLOWTAP_HELPER_ADDR"))
		if err != nil {
			fail(err)
		}
		fmt.Fprintf(out, "port %d\n", ln.Addr().(*net.TCPAddr).Port)
		out.Flush()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					c.SetDeadline(time.Now().Add(waitTimeout))
					if _, err := io.ReadAll(c); err == nil {
						c.Write([]byte("pong from child"))
					}
				}()
			}
		}()
		// "dial": one round trip to the listener from this process (in
		// its network namespace), then "client PORT".
		for in.Scan() {
			if in.Text() != "dial" {
				continue
			}
			c, err := net.DialTimeout("tcp", ln.Addr().String(), waitTimeout)
			if err != nil {
				fail(err)
			}
			c.SetDeadline(time.Now().Add(waitTimeout))
			c.Write([]byte("ping"))
			c.(*net.TCPConn).CloseWrite()
			if _, err := io.ReadAll(c); err != nil {
				fail(err)
			}
			c.Close()
			fmt.Fprintf(out, "client %d\n", c.LocalAddr().(*net.TCPAddr).Port)
			out.Flush()
		}
		ln.Close()
	case "flood":
		// For every line "N": make N loopback connections one after the
		// other (the client closes first, the server on EOF), wait until
		// the server closed all of them, then say "done N".
		ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			fail(err)
		}
		defer ln.Close()
		served := make(chan struct{}, 1024)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					c.SetDeadline(time.Now().Add(waitTimeout))
					io.Copy(io.Discard, c)
					c.Close()
					served <- struct{}{}
				}()
			}
		}()
		for in.Scan() {
			n, err := strconv.Atoi(in.Text())
			if err != nil {
				fail(err)
			}
			for range n {
				c, err := net.DialTCP("tcp4", nil, ln.Addr().(*net.TCPAddr))
				if err != nil {
					fail(err)
				}
				c.Close()
			}
			deadline := time.After(2 * waitTimeout)
			for range n {
				select {
				case <-served:
				case <-deadline:
					fail(errors.New("server side did not close every connection in time"))
				}
			}
			fmt.Fprintf(out, "done %d\n", n)
			out.Flush()
		}
	case "rate":
		rateHelper(out)
	case "bulk":
		bulkHelper(out)
	default:
		fmt.Fprintf(out, "error unknown helper mode %q\n", mode)
	}
}

// socketRecs returns the net_tcp_socket_base events of report kind for the
// local socket lport talking to rport.
func socketRecs(evs []events.Event, report events.SocketReport, lport, rport uint16) []events.Event {
	var out []events.Event
	for _, ev := range evs {
		s, ok := ev.Payload.(*events.TCPSocketBase)
		if ok && s.Report == report && s.LocalPort == lport && s.RemotePort == rport {
			out = append(out, ev)
		}
	}
	return out
}

// waitSockets waits until every (lport, rport) pair has a record of kind
// report and returns all events then.
func waitSockets(t *testing.T, col *collector, report events.SocketReport, pairs ...[2]uint16) []events.Event {
	t.Helper()
	evs, ok := col.waitFor(waitTimeout, func(evs []events.Event) bool {
		for _, p := range pairs {
			if len(socketRecs(evs, report, p[0], p[1])) == 0 {
				return false
			}
		}
		return true
	})
	if !ok {
		for _, p := range pairs {
			if len(socketRecs(evs, report, p[0], p[1])) == 0 {
				t.Errorf("no %v record for local port %d, remote port %d", report, p[0], p[1])
			}
		}
		t.Fatalf("records so far for these ports:%s", dump(portEvents(evs, pairs...)))
	}
	return evs
}

// portEvents returns the packet and socket events that involve any port
// of pairs.
func portEvents(evs []events.Event, pairs ...[2]uint16) []events.Event {
	has := func(a, b uint16) bool {
		for _, p := range pairs {
			if (a == p[0] && b == p[1]) || (a == p[1] && b == p[0]) {
				return true
			}
		}
		return false
	}
	var out []events.Event
	for _, ev := range evs {
		switch p := ev.Payload.(type) {
		case *events.PacketFlowBase:
			if has(p.SrcPort, p.DstPort) {
				out = append(out, ev)
			}
		case *events.TCPSocketBase:
			if has(p.LocalPort, p.RemotePort) {
				out = append(out, ev)
			}
		}
	}
	return out
}

// wantOwner checks the process context of ev.
func wantOwner(t *testing.T, what string, ev events.Event, pid, uid uint32, comm string) {
	t.Helper()
	if x := ev.Context; x.PID != pid || x.UID != uid || x.Comm != comm {
		t.Errorf("%s: owner pid/uid/comm %d/%d/%q, want %d/%d/%q", what, x.PID, x.UID, x.Comm, pid, uid, comm)
	}
}

// wantSocketOwner checks the owner a socket record (closed, snapshot)
// stands for. With packet flows the record carries it. Flows from
// sock_ops keep no per-socket state, so their socket records carry none:
// the owner is on the first record the socket sent, its SYN (or SYN-ACK,
// accepted), which the tracker keeps it from; evs are the records so far.
func wantSocketOwner(t *testing.T, packetFlows bool, what string, evs []events.Event, ev events.Event, pid, uid uint32, comm string) {
	t.Helper()
	if packetFlows {
		wantOwner(t, what, ev, pid, uid, comm)
		return
	}
	s := ev.Payload.(*events.TCPSocketBase)
	if ev.Context.PID != 0 {
		t.Errorf("%s: owner pid %d on a socket record of flows from sock_ops, which keep none", what, ev.Context.PID)
	}
	for _, e := range evs {
		p, ok := e.Payload.(*events.PacketFlowBase)
		if ok && p.Direction == events.Egress && p.Flags.Has(events.FlagSYN) && p.SrcPort == s.LocalPort && p.DstPort == s.RemotePort {
			wantOwner(t, what+" (its first record)", e, pid, uid, comm)
			return
		}
	}
	t.Errorf("%s: no SYN or SYN-ACK record of socket %d -> %d", what, s.LocalPort, s.RemotePort)
}

// tcpPair is one established loopback connection.
type tcpPair struct {
	client, server             *net.TCPConn
	clientCookie, serverCookie uint64
	clientPort, serverPort     uint16
}

// dialPair connects to ln and returns both ends.
func dialPair(t *testing.T, ln net.Listener) tcpPair {
	t.Helper()
	type acc struct {
		c   net.Conn
		err error
	}
	ch := make(chan acc, 1)
	go func() {
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(waitTimeout))
		c, err := ln.Accept()
		ch <- acc{c, err}
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), waitTimeout)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	a := <-ch
	if a.err != nil {
		c.Close()
		t.Fatalf("accept: %v", a.err)
	}
	p := tcpPair{client: c.(*net.TCPConn), server: a.c.(*net.TCPConn)}
	p.client.SetDeadline(time.Now().Add(4 * waitTimeout))
	p.server.SetDeadline(time.Now().Add(4 * waitTimeout))
	t.Cleanup(func() { p.client.Close(); p.server.Close() })
	p.clientCookie = sockCookie(t, p.client)
	p.serverCookie = sockCookie(t, p.server)
	p.clientPort = netip.MustParseAddrPort(c.LocalAddr().String()).Port()
	p.serverPort = netip.MustParseAddrPort(c.RemoteAddr().String()).Port()
	return p
}

// payload returns n bytes of a pattern.
func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 3)
	}
	return b
}

// exchange writes the client's chunks to the server and the server's
// chunks back, reading each side fully; it returns the byte counts.
func exchange(t *testing.T, p tcpPair, clientChunks, serverChunks []int) (a, b int) {
	t.Helper()
	for _, n := range clientChunks {
		a += n
	}
	for _, n := range serverChunks {
		b += n
	}
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, a)
		if _, err := io.ReadFull(p.server, buf); err != nil {
			errc <- fmt.Errorf("server read: %w", err)
			return
		}
		for _, n := range serverChunks {
			if _, err := p.server.Write(payload(n)); err != nil {
				errc <- fmt.Errorf("server write: %w", err)
				return
			}
		}
		errc <- nil
	}()
	for _, n := range clientChunks {
		if _, err := p.client.Write(payload(n)); err != nil {
			t.Fatalf("client write: %v", err)
		}
	}
	buf := make([]byte, b)
	if _, err := io.ReadFull(p.client, buf); err != nil {
		t.Fatalf("client read: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return a, b
}

// tcpInfo returns TCP_INFO of c.
func tcpInfo(t *testing.T, c *net.TCPConn) *unix.TCPInfo {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	var ierr error
	if err := raw.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil {
		t.Fatal(err)
	}
	if ierr != nil {
		t.Fatalf("TCP_INFO: %v", ierr)
	}
	return info
}

// settle waits (bounded) until neither end of p has unacknowledged data,
// so no data is retransmitted any more, and returns both ends' TCP_INFO.
func settle(t *testing.T, p tcpPair) (client, server *unix.TCPInfo) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		client, server = tcpInfo(t, p.client), tcpInfo(t, p.server)
		if client.Unacked == 0 && server.Unacked == 0 {
			return client, server
		}
		if time.Now().After(deadline) {
			t.Fatalf("data still unacknowledged after %v (client %d, server %d segments)", waitTimeout, client.Unacked, server.Unacked)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// closeOrderly closes first then second, each after reading the other's
// EOF where it comes second.
func closeOrderly(t *testing.T, first, second *net.TCPConn) {
	t.Helper()
	if err := first.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if _, err := io.ReadAll(second); err != nil {
		t.Fatalf("read to EOF: %v", err)
	}
	if err := second.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// TestSnapshot reports an open connection's sockets with their current
// counters.
func TestSnapshot(t *testing.T) { forModes(t, snapshot) }

func snapshot(t *testing.T, mode func(bpf.Options) bpf.Options) {
	privtest.Require(t)
	packetFlows := mode(bpf.Options{}).PacketFlows
	r := startCapture(t, mode(bpf.Options{}))
	ln, err := listenTCP("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lport := netip.MustParseAddrPort(ln.Addr().String()).Port()
	p := dialPair(t, ln)
	a, b := exchange(t, p, []int{12345, 300000}, []int{777})
	ci, si := settle(t, p)
	wantA, wantB := uint64(a), uint64(b)

	if err := r.c.Snapshot(); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	evs := waitSockets(t, r.col, events.SocketSnapshot, [2]uint16{p.clientPort, p.serverPort}, [2]uint16{p.serverPort, p.clientPort})
	cl := socketRecs(evs, events.SocketSnapshot, p.clientPort, p.serverPort)
	sv := socketRecs(evs, events.SocketSnapshot, p.serverPort, p.clientPort)
	t.Logf("snapshot:%s", dump(append(cl, sv...)))
	if len(cl) != 1 || len(sv) != 1 {
		t.Fatalf("%d client and %d server snapshot records, want one each", len(cl), len(sv))
	}
	t.Logf("TCP_INFO segments out/in: client %d/%d, server %d/%d", ci.Segs_out, ci.Segs_in, si.Segs_out, si.Segs_in)
	// Packets are the kernel's segs_out and segs_in (a GSO packet counts
	// its segments), handshake included.
	if c := cl[0].Payload.(*events.TCPSocketBase).Counters; c.PacketsSent != uint64(ci.Segs_out) || c.PacketsReceived != uint64(ci.Segs_in) {
		t.Errorf("client packets sent/received %d/%d, TCP_INFO segs_out/segs_in %d/%d", c.PacketsSent, c.PacketsReceived, ci.Segs_out, ci.Segs_in)
	}
	if c := sv[0].Payload.(*events.TCPSocketBase).Counters; c.PacketsSent != uint64(si.Segs_out) || c.PacketsReceived != uint64(si.Segs_in) {
		t.Errorf("server packets sent/received %d/%d, TCP_INFO segs_out/segs_in %d/%d", c.PacketsSent, c.PacketsReceived, si.Segs_out, si.Segs_in)
	}
	for _, x := range []struct {
		who        string
		ev         events.Event
		sent, recv uint64
		cookie     uint64
	}{
		{"client", cl[0], wantA, wantB, p.clientCookie},
		{"server", sv[0], wantB, wantA, p.serverCookie},
	} {
		s := x.ev.Payload.(*events.TCPSocketBase)
		if s.Counters.BytesSent != x.sent || s.Counters.BytesReceived != x.recv || s.Counters.PacketsSent == 0 || s.Counters.PacketsReceived == 0 {
			t.Errorf("%s snapshot counters %+v, want bytes %d/%d and packets > 0", x.who, s.Counters, x.sent, x.recv)
		}
		if s.State != stateEstablished {
			t.Errorf("%s snapshot state %s, want ESTABLISHED", x.who, tcpStateName(s.State))
		}
		if x.ev.ID != events.IDNetTCPSocketBase || x.ev.Context.SocketCookie != x.cookie {
			t.Errorf("%s snapshot: id %d cookie %d, want %d and %d", x.who, x.ev.ID, x.ev.Context.SocketCookie, events.IDNetTCPSocketBase, x.cookie)
		}
		if s.Local != netip.MustParseAddr("127.0.0.1") || s.Remote != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("%s snapshot addresses %v -> %v", x.who, s.Local, s.Remote)
		}
		wantSocketOwner(t, packetFlows, x.who+" snapshot", r.col.snapshot(), x.ev, uint32(os.Getpid()), uint32(os.Getuid()), selfComm(t))
	}
	// The listener has no counters, so no snapshot.
	for _, ev := range r.col.snapshot() {
		if s, ok := ev.Payload.(*events.TCPSocketBase); ok && s.LocalPort == lport && s.RemotePort == 0 {
			t.Errorf("listener reported:%s", dump([]events.Event{ev}))
		}
	}
	// A second snapshot reports again (the sockets are still open).
	if err := r.c.Snapshot(); err != nil {
		t.Fatalf("second Snapshot: %v", err)
	}
	if _, ok := r.col.waitFor(waitTimeout, func(evs []events.Event) bool {
		return len(socketRecs(evs, events.SocketSnapshot, p.clientPort, p.serverPort)) == 2
	}); !ok {
		t.Errorf("second snapshot did not report the client socket again")
	}

	r.stop(t)
	if err := r.c.Snapshot(); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Snapshot after Close: %v, want a 'closed' error", err)
	}
}

// TestCloseRecords checks that every socket of a connection reports
// TCP_CLOSE exactly once, with the state it left, for the usual ways a
// connection ends, and that a refused connect reports SYN_SENT -> CLOSE.
func TestCloseRecords(t *testing.T) { forModes(t, closeRecords) }

func closeRecords(t *testing.T, mode func(bpf.Options) bpf.Options) {
	privtest.Require(t)
	packetFlows := mode(bpf.Options{}).PacketFlows
	r := startCapture(t, mode(bpf.Options{}))
	type pattern struct {
		name string
		// end closes the connection; client and server old states are
		// the states the sockets must leave for TCP_CLOSE.
		end                     func(t *testing.T, p tcpPair)
		clientStates, srvStates []uint8
	}
	patterns := []pattern{
		{"client closes first", func(t *testing.T, p tcpPair) { closeOrderly(t, p.client, p.server) },
			// The active closer leaves FIN_WAIT2 (or CLOSING on a
			// simultaneous close) when it becomes a TIME_WAIT
			// mini-socket; the passive closer leaves LAST_ACK.
			[]uint8{stateFinWait2, stateClosing}, []uint8{stateLastAck}},
		{"server closes first", func(t *testing.T, p tcpPair) { closeOrderly(t, p.server, p.client) },
			[]uint8{stateLastAck}, []uint8{stateFinWait2, stateClosing}},
		{"client resets (SO_LINGER 0)", func(t *testing.T, p tcpPair) {
			if err := p.client.SetLinger(0); err != nil {
				t.Fatal(err)
			}
			p.client.Close()
			// The server sees the RST: reading fails with ECONNRESET.
			_, err := io.ReadAll(p.server)
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("server read after RST: %v, want ECONNRESET", err)
			}
			p.server.Close()
		}, []uint8{stateEstablished}, []uint8{stateEstablished}},
	}
	for _, network := range []struct{ name, network, addr string }{
		{"ipv4", "tcp4", "127.0.0.1:0"},
		{"ipv6", "tcp6", "[::1]:0"},
	} {
		for _, pat := range patterns {
			t.Run(network.name+"/"+pat.name, func(t *testing.T) {
				ln, err := listenTCP(network.network, network.addr)
				if err != nil {
					t.Fatal(err)
				}
				lport := netip.MustParseAddrPort(ln.Addr().String()).Port()
				p := dialPair(t, ln)
				exchange(t, p, []int{100}, []int{200})
				pat.end(t, p)
				ln.Close()
				waitSockets(t, r.col, events.SocketClosed, [2]uint16{p.clientPort, p.serverPort}, [2]uint16{p.serverPort, p.clientPort})
				// Give duplicates a bounded chance to show up.
				evs, _ := r.col.waitFor(300*time.Millisecond, func([]events.Event) bool { return false })
				cl := socketRecs(evs, events.SocketClosed, p.clientPort, p.serverPort)
				sv := socketRecs(evs, events.SocketClosed, p.serverPort, p.clientPort)
				t.Logf("records:%s", dump(portEvents(evs, [2]uint16{p.clientPort, p.serverPort})))
				for _, x := range []struct {
					who    string
					recs   []events.Event
					cookie uint64
					states []uint8
				}{
					{"client", cl, p.clientCookie, pat.clientStates},
					{"server", sv, p.serverCookie, pat.srvStates},
				} {
					if len(x.recs) != 1 {
						t.Errorf("%s: %d closed records, want exactly 1", x.who, len(x.recs))
						continue
					}
					ev := x.recs[0]
					s := ev.Payload.(*events.TCPSocketBase)
					if ev.Context.SocketCookie != x.cookie {
						t.Errorf("%s closed record cookie %d, want SO_COOKIE %d", x.who, ev.Context.SocketCookie, x.cookie)
					}
					ok := false
					for _, st := range x.states {
						ok = ok || s.State == st
					}
					if !ok {
						t.Errorf("%s closed record: left state %s, want one of %v", x.who, tcpStateName(s.State), stateNames(x.states))
					}
					if s.Counters.BytesSent == 0 || s.Counters.BytesReceived == 0 {
						t.Errorf("%s closed record without counters: %+v", x.who, s.Counters)
					}
					wantSocketOwner(t, packetFlows, x.who+" closed record", evs, ev, uint32(os.Getpid()), uint32(os.Getuid()), selfComm(t))
					wantLoopback := netip.MustParseAddr("127.0.0.1")
					if network.network == "tcp6" {
						wantLoopback = netip.IPv6Loopback()
					}
					if s.Local != wantLoopback || s.Remote != wantLoopback {
						t.Errorf("%s closed record addresses %v <-> %v, want %v", x.who, s.Local, s.Remote, wantLoopback)
					}
				}
				// The listener never had counters: closing it reports
				// nothing.
				for _, ev := range evs {
					if s, ok := ev.Payload.(*events.TCPSocketBase); ok && s.LocalPort == lport && s.RemotePort == 0 {
						t.Errorf("listener reported:%s", dump([]events.Event{ev}))
					}
				}
			})
		}
	}

	t.Run("refused connect", func(t *testing.T) {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		sp := netip.MustParseAddrPort(ln.Addr().String()).Port()
		ln.Close()
		var cp uint16
		var cookie uint64
		d := net.Dialer{Timeout: waitTimeout, Control: func(_, _ string, rc syscall.RawConn) error {
			var cerr error
			rc.Control(func(fd uintptr) {
				if cerr = unix.Bind(int(fd), &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); cerr != nil {
					return
				}
				sa, err := unix.Getsockname(int(fd))
				if err != nil {
					cerr = err
					return
				}
				cp = uint16(sa.(*unix.SockaddrInet4).Port)
				cookie, cerr = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_COOKIE)
			})
			return cerr
		}}
		_, err = d.Dial("tcp4", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), sp).String())
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial a closed port: %v, want ECONNREFUSED", err)
		}
		waitSockets(t, r.col, events.SocketClosed, [2]uint16{cp, sp})
		evs, _ := r.col.waitFor(300*time.Millisecond, func([]events.Event) bool { return false })
		recs := socketRecs(evs, events.SocketClosed, cp, sp)
		t.Logf("records:%s", dump(portEvents(evs, [2]uint16{cp, sp})))
		if len(recs) != 1 {
			t.Fatalf("%d closed records for the refused socket, want 1", len(recs))
		}
		s := recs[0].Payload.(*events.TCPSocketBase)
		if s.State != stateSynSent || recs[0].Context.SocketCookie != cookie {
			t.Errorf("refused socket: left %s with cookie %d, want SYN_SENT and %d", tcpStateName(s.State), recs[0].Context.SocketCookie, cookie)
		}
		if s.Counters.PacketsSent == 0 || s.Counters.BytesSent != 0 {
			t.Errorf("refused socket counters %+v, want packets sent > 0 and no payload", s.Counters)
		}
		wantSocketOwner(t, packetFlows, "refused socket", evs, recs[0], uint32(os.Getpid()), uint32(os.Getuid()), selfComm(t))
	})
	// The tp_btf copies cover for each other: on a busy host each is
	// sometimes skipped (the exact counts above prove none of ours was
	// lost). Log how often.
	skips, err := r.c.StateSkips()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("state program copies skipped %v times; stats %+v", skips, r.c.Stats())
}

func stateNames(states []uint8) []string {
	var out []string
	for _, s := range states {
		out = append(out, tcpStateName(s))
	}
	return out
}

// TestOwnership checks the process context on records of sockets owned by
// other processes: connections made by a child process, and listeners
// created in a child before and after Open, with Go's default (MPTCP)
// listener and a plain TCP one. The child runs as nobody under its own
// task name.
func TestOwnership(t *testing.T) { forModes(t, ownership) }

// TestOwnershipWithoutSockopsTask is TestOwnership's flows from sock_ops
// as on a kernel whose sock_ops programs may not read the current task
// (before Linux 6.x): the cgroup connect programs record connectors and
// the state program listeners.
func TestOwnershipWithoutSockopsTask(t *testing.T) {
	t.Setenv(bpf.HideHelpersEnv, "FnGetCurrentTaskBtf")
	ownership(t, scoped)
}

func ownership(t *testing.T, mode func(bpf.Options) bpf.Options) {
	privtest.Require(t)
	self, selfUID, comm := uint32(os.Getpid()), uint32(os.Getuid()), selfComm(t)
	// With flows from sock_ops, a listener's SYN is its request socket's,
	// which carries no owner; the SYN-ACK is the accepted socket's.
	packetFlows := mode(bpf.Options{}).PacketFlows

	t.Run("outgoing from a child", func(t *testing.T) {
		r := startCapture(t, mode(bpf.Options{}))
		ln, err := listenTCP("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go serveOnce(ln)
		h := startHelper(t, "dial", helperOpts{asNobody: true, env: []string{"FLOWTAP_HELPER_ADDR=" + ln.Addr().String()}})
		cp := netip.MustParseAddrPort(h.expect(t, "local ")).Port()
		sp := netip.MustParseAddrPort(ln.Addr().String()).Port()
		h.send(t, "go")
		h.expect(t, "done")
		evs := waitSockets(t, r.col, events.SocketClosed, [2]uint16{cp, sp}, [2]uint16{sp, cp})
		t.Logf("records:%s", dump(portEvents(evs, [2]uint16{cp, sp})))
		mine := forConn(evs, conn{client: netip.AddrPortFrom(netip.Addr{}, cp), server: netip.AddrPortFrom(netip.Addr{}, sp)})
		syn, ok := find(mine, pkt{events.Egress, cp, sp, events.FlagSYN})
		if !ok {
			t.Fatal("no egress SYN from the child")
		}
		wantOwner(t, "child's SYN", syn, h.pid(), nobody, helperComm)
		wantSocketOwner(t, packetFlows, "child's closed record", evs, socketRecs(evs, events.SocketClosed, cp, sp)[0], h.pid(), nobody, helperComm)
		wantSocketOwner(t, packetFlows, "accepted socket's closed record", evs, socketRecs(evs, events.SocketClosed, sp, cp)[0], self, selfUID, comm)
	})

	for _, tc := range []struct {
		name  string
		mptcp bool
	}{
		{"connection of a child made before Open", false},
		// Both ends MPTCP: the child's TCP subflow has no file; it gets
		// the owner of its MPTCP socket.
		{"MPTCP connection of a child made before Open", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !packetFlows {
				t.Skip("with flows from sock_ops, a connection made before Open is not followed: its flow never begins")
			}
			var ln net.Listener
			var err error
			if tc.mptcp {
				ln, err = net.Listen("tcp4", "127.0.0.1:0") // Go's default: MPTCP
			} else {
				ln, err = listenTCP("tcp4", "127.0.0.1:0")
			}
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go serveOnce(ln)
			mptcp := "0"
			if tc.mptcp {
				mptcp = "1"
			}
			h := startHelper(t, "dial", helperOpts{asNobody: true, env: []string{"FLOWTAP_HELPER_ADDR=" + ln.Addr().String(), "FLOWTAP_HELPER_MPTCP=" + mptcp}})
			cp := netip.MustParseAddrPort(h.expect(t, "local ")).Port()
			sp := netip.MustParseAddrPort(ln.Addr().String()).Port()
			r := startCapture(t, mode(bpf.Options{}))
			h.send(t, "go")
			h.expect(t, "done")
			evs := waitSockets(t, r.col, events.SocketClosed, [2]uint16{cp, sp}, [2]uint16{sp, cp})
			t.Logf("records:%s", dump(portEvents(evs, [2]uint16{cp, sp})))
			mine := forConn(evs, conn{client: netip.AddrPortFrom(netip.Addr{}, cp), server: netip.AddrPortFrom(netip.Addr{}, sp)})
			fin, ok := find(mine, pkt{events.Egress, cp, sp, events.FlagFIN | events.FlagACK})
			if !ok {
				t.Fatal("no egress FIN from the child")
			}
			wantOwner(t, "child's FIN", fin, h.pid(), nobody, helperComm)
			wantSocketOwner(t, packetFlows, "child's closed record", evs, socketRecs(evs, events.SocketClosed, cp, sp)[0], h.pid(), nobody, helperComm)
			wantSocketOwner(t, packetFlows, "accepted socket's closed record", evs, socketRecs(evs, events.SocketClosed, sp, cp)[0], self, selfUID, comm)
		})
	}

	for _, tc := range []struct {
		name       string
		beforeOpen bool
		mptcp      bool
	}{
		{"listener in a child before Open (Go default, MPTCP)", true, true},
		{"listener in a child before Open (plain TCP)", true, false},
		{"listener in a child after Open (Go default, MPTCP)", false, true},
		{"listener in a child after Open (plain TCP)", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r *running
			if !tc.beforeOpen {
				r = startCapture(t, mode(bpf.Options{}))
			}
			mptcp := "0"
			if tc.mptcp {
				mptcp = "1"
			}
			h := startHelper(t, "listen", helperOpts{asNobody: true, env: []string{"FLOWTAP_HELPER_ADDR=127.0.0.1:0", "FLOWTAP_HELPER_MPTCP=" + mptcp}})
			sp64, err := strconv.ParseUint(h.expect(t, "port "), 10, 16)
			if err != nil {
				t.Fatal(err)
			}
			sp := uint16(sp64)
			if tc.beforeOpen {
				r = startCapture(t, mode(bpf.Options{}))
			}
			cp := clientRoundTrip(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), sp))
			evs := waitSockets(t, r.col, events.SocketClosed, [2]uint16{cp, sp}, [2]uint16{sp, cp})
			t.Logf("records:%s", dump(portEvents(evs, [2]uint16{cp, sp})))
			mine := forConn(evs, conn{client: netip.AddrPortFrom(netip.Addr{}, cp), server: netip.AddrPortFrom(netip.Addr{}, sp)})
			for _, w := range []struct {
				what string
				pkt  pkt
			}{
				{"listener's SYN", pkt{events.Ingress, cp, sp, events.FlagSYN}},
				{"listener's SYN-ACK", pkt{events.Egress, sp, cp, events.FlagSYN | events.FlagACK}},
			} {
				if !packetFlows && w.pkt.flags == events.FlagSYN {
					continue
				}
				ev, ok := find(mine, w.pkt)
				if !ok {
					t.Errorf("no record %v", w.pkt)
					continue
				}
				wantOwner(t, w.what, ev, h.pid(), nobody, helperComm)
			}
			wantSocketOwner(t, packetFlows, "accepted socket's closed record", evs, socketRecs(evs, events.SocketClosed, sp, cp)[0], h.pid(), nobody, helperComm)
			wantSocketOwner(t, packetFlows, "client's closed record", evs, socketRecs(evs, events.SocketClosed, cp, sp)[0], self, selfUID, comm)
		})
	}

	// The start-up walk of TCP sockets sees flowtap's network namespace
	// only: a listener of another one gets the owner the walk of task
	// files recorded when its first SYN arrives, and its accepted
	// children inherit it.
	for _, tc := range []struct {
		name  string
		mptcp string
	}{
		{"listener in another network namespace before Open (plain TCP)", "0"},
		{"listener in another network namespace before Open (Go default, MPTCP)", "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startHelper(t, "listen", helperOpts{netns: true, env: []string{"FLOWTAP_HELPER_ADDR=127.0.0.1:0", "FLOWTAP_HELPER_MPTCP=" + tc.mptcp}})
			sp64, err := strconv.ParseUint(h.expect(t, "port "), 10, 16)
			if err != nil {
				t.Fatal(err)
			}
			sp := uint16(sp64)
			r := startCapture(t, mode(bpf.Options{}))
			h.send(t, "dial")
			cp64, err := strconv.ParseUint(h.expect(t, "client "), 10, 16)
			if err != nil {
				t.Fatal(err)
			}
			cp := uint16(cp64)
			evs := waitSockets(t, r.col, events.SocketClosed, [2]uint16{cp, sp}, [2]uint16{sp, cp})
			t.Logf("records:%s", dump(portEvents(evs, [2]uint16{cp, sp})))
			mine := forConn(evs, conn{client: netip.AddrPortFrom(netip.Addr{}, cp), server: netip.AddrPortFrom(netip.Addr{}, sp)})
			want := pkt{events.Ingress, cp, sp, events.FlagSYN}
			if !packetFlows {
				want = pkt{events.Egress, sp, cp, events.FlagSYN | events.FlagACK}
			}
			ev, ok := find(mine, want)
			if !ok {
				t.Fatalf("no record %v", want)
			}
			wantOwner(t, "listener's first record", ev, h.pid(), 0, helperComm)
			wantSocketOwner(t, packetFlows, "accepted socket's closed record", evs, socketRecs(evs, events.SocketClosed, sp, cp)[0], h.pid(), 0, helperComm)
		})
	}

	t.Run("Go net.Listen listener in this process after Open", func(t *testing.T) {
		r := startCapture(t, mode(bpf.Options{}))
		// net.Listen's default: MPTCP where the kernel has it. MPTCP stays
		// enabled: its TCP subflow listener must get the owner too.
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		fdCookie := sockCookie(t, ln.(*net.TCPListener))
		accepted := make(chan uint64, 1)
		go func() {
			ln.(*net.TCPListener).SetDeadline(time.Now().Add(waitTimeout))
			c, err := ln.Accept()
			if err != nil {
				accepted <- 0
				return
			}
			defer c.Close()
			accepted <- sockCookie(t, c.(*net.TCPConn))
			c.SetDeadline(time.Now().Add(waitTimeout))
			if _, err := io.ReadAll(c); err == nil {
				c.Write([]byte("pong"))
			}
		}()
		sp := netip.MustParseAddrPort(ln.Addr().String()).Port()
		cp := clientRoundTrip(t, netip.MustParseAddrPort(ln.Addr().String()))
		acceptedCookie := <-accepted
		evs := waitSockets(t, r.col, events.SocketClosed, [2]uint16{cp, sp}, [2]uint16{sp, cp})
		mine := forConn(evs, conn{client: netip.AddrPortFrom(netip.Addr{}, cp), server: netip.AddrPortFrom(netip.Addr{}, sp)})
		synack, ok := find(mine, pkt{events.Egress, sp, cp, events.FlagSYN | events.FlagACK})
		if !ok {
			t.Fatalf("no SYN-ACK record:%s", dump(mine))
		}
		closed := socketRecs(evs, events.SocketClosed, sp, cp)[0]
		t.Logf("listener fd cookie %d, SYN-ACK cookie %d; accepted fd cookie %d, its closed record's cookie %d (the listener's differ when it is MPTCP: the fd is the MPTCP socket, the records carry its TCP subflow listener's); records:%s",
			fdCookie, synack.Context.SocketCookie, acceptedCookie, closed.Context.SocketCookie, dump(portEvents(evs, [2]uint16{cp, sp})))
		wantOwner(t, "SYN-ACK", synack, self, selfUID, comm)
		wantSocketOwner(t, packetFlows, "accepted socket's closed record", evs, socketRecs(evs, events.SocketClosed, sp, cp)[0], self, selfUID, comm)
	})
}

// loUp brings up the loopback interface of this process's network
// namespace.
func loUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get lo flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	return nil
}

// serveOnce accepts one connection, reads it to EOF, answers and closes.
func serveOnce(ln net.Listener) {
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(2 * waitTimeout))
	c, err := ln.Accept()
	if err != nil {
		return
	}
	defer c.Close()
	// Generous: a connection made before Open waits for it, which takes
	// tens of seconds under an emulated CPU (the kernel matrix).
	c.SetDeadline(time.Now().Add(12 * waitTimeout))
	if _, err := io.ReadAll(c); err == nil {
		c.Write([]byte("pong"))
	}
}

// clientRoundTrip connects to addr, sends a line, half-closes, reads the
// answer and closes; it returns the client port.
func clientRoundTrip(t *testing.T, addr netip.AddrPort) uint16 {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), waitTimeout)
	if err != nil {
		t.Fatalf("dial %v: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitTimeout))
	cp := netip.MustParseAddrPort(c.LocalAddr().String()).Port()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil || len(b) == 0 {
		t.Fatalf("read answer: %q, %v", b, err)
	}
	return cp
}

// TestDualStack connects an AF_INET6 socket to 127.0.0.1 through the
// IPv4-mapped address ::ffff:127.0.0.1: the packets are IPv4 on the wire,
// the socket itself reports the mapped addresses.
func TestDualStack(t *testing.T) { forModes(t, dualStack) }

func dualStack(t *testing.T, mode func(bpf.Options) bpf.Options) {
	privtest.Require(t)
	r := startCapture(t, mode(bpf.Options{}))
	ln, err := listenTCP("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serveOnce(ln)
	sp := netip.MustParseAddrPort(ln.Addr().String()).Port()

	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "dual-stack")
	defer f.Close()
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
		t.Fatal(err)
	}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5})
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &unix.Timeval{Sec: 5})
	mapped := netip.MustParseAddr("::ffff:127.0.0.1")
	if err := unix.Connect(fd, &unix.SockaddrInet6{Addr: mapped.As16(), Port: int(sp)}); err != nil {
		t.Fatalf("connect to [%v]:%d: %v", mapped, sp, err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	cp := uint16(sa.(*unix.SockaddrInet6).Port)
	cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(fd, []byte("ping over a mapped address")); err != nil {
		t.Fatal(err)
	}
	unix.Shutdown(fd, unix.SHUT_WR)
	buf := make([]byte, 64)
	for range 10 {
		n, err := unix.Read(fd, buf)
		if n <= 0 || err != nil {
			break
		}
	}
	f.Close()

	evs := waitSockets(t, r.col, events.SocketClosed, [2]uint16{cp, sp})
	t.Logf("records:%s", dump(portEvents(evs, [2]uint16{cp, sp})))
	mine := forConn(evs, conn{client: netip.AddrPortFrom(netip.Addr{}, cp), server: netip.AddrPortFrom(netip.Addr{}, sp)})
	syn, ok := find(mine, pkt{events.Egress, cp, sp, events.FlagSYN})
	if !ok {
		t.Fatal("dual-stack SYN not captured")
	}
	if p := syn.Payload.(*events.PacketFlowBase); !p.Src.Is4() || p.Src != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("SYN of the AF_INET6 socket: source %v, want plain IPv4 127.0.0.1 (the wire format)", p.Src)
	}
	if syn.Context.SocketCookie != cookie {
		t.Errorf("SYN cookie %d, want %d", syn.Context.SocketCookie, cookie)
	}
	rec := socketRecs(evs, events.SocketClosed, cp, sp)[0]
	s := rec.Payload.(*events.TCPSocketBase)
	if s.Local != mapped || s.Remote != mapped {
		t.Errorf("closed record of the AF_INET6 socket: %v <-> %v, want the socket's own IPv4-mapped %v", s.Local, s.Remote, mapped)
	}
	if rec.Context.SocketCookie != cookie || s.Counters.BytesSent != uint64(len("ping over a mapped address")) {
		t.Errorf("closed record cookie %d counters %+v", rec.Context.SocketCookie, s.Counters)
	}
}
