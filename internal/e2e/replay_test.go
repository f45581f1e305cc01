// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
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

	"github.com/flowtap/flowtap/internal/e2e/harness"
	"github.com/flowtap/flowtap/internal/privtest"
)

// replayCmd runs 'flowtap replay args...' (at most a minute) and returns
// the events it printed (--output json), its log and its error.
func replayCmd(t *testing.T, bin string, stdin io.Reader, args ...string) ([]harness.Event, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "flowtap"), append([]string{"replay"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &stdout, &stderr
	err := cmd.Run()
	var evs []harness.Event
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev harness.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Errorf("stdout line is not a JSON event: %q", sc.Text())
			continue
		}
		evs = append(evs, ev)
	}
	return evs, stderr.String(), err
}

// flowLine renders a flow event for comparisons: name, direction,
// endpoints, and for ends the payload bytes and close reason, for
// failures the reason.
func flowLine(ev harness.Event) string {
	f := ev.Fields
	s := key(ev.Event, f.ConnDirection, f.Src, f.SrcPort, f.Dst, f.DstPort)
	switch ev.Event {
	case "net_flow_tcp_end":
		s += fmt.Sprintf(" sent=%d received=%d reason=%s", f.BytesSent, f.BytesReceived, f.CloseReason)
	case "net_flow_tcp_failed":
		s += " reason=" + f.Reason
	}
	return s
}

// TestReplayFile replays a committed capture (no privilege needed): the
// flows of the connection in it, exit status 0; from standard input too;
// a file cut short is an error naming the offset after the events before
// it were delivered; a file that is no capture fails before the sinks
// start.
func TestReplayFile(t *testing.T) {
	bin := harness.Binaries(t)
	file := filepath.Join("..", "..", "replay", "testdata", "loopback_ipv4.pcap")
	want := []string{
		"net_flow_tcp_begin incoming 127.0.0.1:40000>127.0.0.1:8080",
		"net_flow_tcp_begin outgoing 127.0.0.1:40000>127.0.0.1:8080",
		"net_flow_tcp_end outgoing 127.0.0.1:40000>127.0.0.1:8080 sent=6 received=12 reason=fin",
		"net_flow_tcp_end incoming 127.0.0.1:40000>127.0.0.1:8080 sent=12 received=6 reason=fin",
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{file}, {"-", "--local", "127.0.0.0/8"}} {
		evs, log, err := replayCmd(t, bin, bytes.NewReader(data), append(args, "--output", "json")...)
		if err != nil {
			t.Fatalf("flowtap replay %v: %v\n%s", args, err, log)
		}
		var got []string
		for _, ev := range evs {
			got = append(got, flowLine(ev))
			if ev.Context.PID != 0 || ev.Context.SocketCookie != 0 || ev.Context.CgroupID != 0 {
				t.Errorf("replayed event with process context: %+v", ev.Context)
			}
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("flowtap replay %v:\n%s\nwant:\n%s\nlog:\n%s", args, strings.Join(got, "\n"), strings.Join(want, "\n"), log)
		}
	}

	evs, log, err := replayCmd(t, bin, nil, filepath.Join("..", "..", "replay", "testdata", "truncated.pcap"), "--output", "json", "--events", "net_flow_tcp_begin")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(log, "packet 8 at offset 532: the file ends after 36 of its 70 bytes") || len(evs) != 2 {
		t.Errorf("truncated file: %v, %d events, log:\n%s", err, len(evs), log)
	}

	// Not a capture: refused before any sink plugin starts.
	_, log, err = replayCmd(t, bin, strings.NewReader("GET / HTTP/1.1\r\n\r\n"), "-")
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(log, "not a pcap or pcapng file (magic 0x47455420)") {
		t.Errorf("not a capture: %v, log:\n%s", err, log)
	}
	if strings.Contains(log, "flowtap.sink") {
		t.Errorf("not a capture: sink plugins started before the file was refused; log:\n%s", log)
	}
}

// tcpdump captures loopback traffic into a file.
type tcpdump struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it exited, err and log set
	err  error
	log  bytes.Buffer
}

// startTcpdump starts 'tcpdump -i lo -w file filter...' and returns once
// it is capturing.
func startTcpdump(t *testing.T, file string, filter ...string) *tcpdump {
	t.Helper()
	path, err := exec.LookPath("tcpdump")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("tcpdump not found (make deps installs it): %v", err)
		}
		t.Skipf("tcpdump not found (make deps installs it): %v", err)
	}
	// --immediate-mode: each packet reaches tcpdump at once, not in
	// blocks the kernel hands over later (those still in the kernel when
	// tcpdump stops are lost); -U: each is written at once; -B: 64 MiB of
	// kernel buffer (with the default 2 MiB, loopback's 64 KiB packets
	// were dropped on a busy 2-CPU machine); -Z root: the file is written
	// as root, not as the user tcpdump drops to.
	args := append([]string{"-i", "lo", "-n", "--immediate-mode", "-U", "-B", "65536", "-Z", "root", "-w", file}, filter...)
	td := &tcpdump{cmd: exec.Command(path, args...), done: make(chan struct{})}
	td.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := td.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := td.cmd.Start(); err != nil {
		t.Fatalf("start tcpdump: %v", err)
	}
	t.Cleanup(func() {
		select {
		case <-td.done:
		default:
			td.cmd.Process.Kill()
			<-td.done
		}
	})
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		var log bytes.Buffer
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "listening on ") {
				close(listening)
			}
		}
		td.err = td.cmd.Wait()
		td.log = log
		close(td.done)
	}()
	select {
	case <-listening:
	case <-td.done:
		t.Fatalf("tcpdump exited: %v\n%s", td.err, td.log.String())
	case <-time.After(15 * time.Second):
		t.Fatal("tcpdump did not start capturing within 15s")
	}
	return td
}

// stop ends tcpdump (SIGINT: it writes what it holds) and waits for it.
func (td *tcpdump) stop(t *testing.T) {
	t.Helper()
	if err := td.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatalf("stop tcpdump: %v", err)
	}
	select {
	case <-td.done:
		if td.err != nil {
			t.Fatalf("tcpdump: %v\n%s", td.err, td.log.String())
		}
		log := strings.ReplaceAll(strings.TrimSpace(td.log.String()), "\n", "; ")
		// A capture with holes cannot match the live agent: say so
		// rather than report differences that are tcpdump's.
		if !strings.Contains(log, " 0 packets dropped by kernel") {
			t.Fatalf("tcpdump lost packets, the capture is incomplete: %s", log)
		}
		t.Logf("tcpdump: %s", log)
	case <-time.After(15 * time.Second):
		t.Fatal("tcpdump did not stop within 15s")
	}
}

// serveSized answers each connection's request line "get N\n" with N
// bytes, reads until the client closes, then closes.
func serveSized(ln net.Listener) {
	acceptEach(ln, func(c net.Conn) {
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return
		}
		n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "get ")))
		if err != nil || n < 0 || n > 1<<20 {
			return
		}
		c.Write(bytes.Repeat([]byte("x"), n))
		io.Copy(io.Discard, c)
	})
}

// listenServing starts a loopback listener that serves each connection
// with serveSized until the test ends, and returns it with its port.
func listenServing(t *testing.T, network, address string) (net.Listener, uint16) {
	t.Helper()
	ln, err := net.Listen(network, address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go serveSized(ln)
	return ln, uint16(ln.Addr().(*net.TCPAddr).Port)
}

func itoa(port uint16) string { return strconv.Itoa(int(port)) }

// dialSized makes a connection to ln, asks for n bytes, reads them, sends
// extra bytes and closes; it returns the payload each way.
func dialSized(t *testing.T, ln net.Listener, n, extra int) (sent, received int) {
	t.Helper()
	c, err := net.DialTimeout(ln.Addr().Network(), ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", ln.Addr(), err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := fmt.Sprintf("get %d\n", n)
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, n)); err != nil {
		t.Fatalf("read answer: %v", err)
	}
	if _, err := c.Write(make([]byte, extra)); err != nil {
		t.Fatal(err)
	}
	return len(req) + extra, n
}

// TestReplayMatchesLive captures loopback connections with tcpdump while
// the live agent watches them, then replays the capture: both must report
// the same flows (begin and end per direction and 4-tuple, payload bytes
// each way, close reasons) and the same refused attempt.
func TestReplayMatchesLive(t *testing.T) {
	privtest.Require(t)
	bin := harness.Binaries(t)

	ln4, port4 := listenServing(t, "tcp4", "127.0.0.1:0")
	ln6, port6 := listenServing(t, "tcp6", "[::1]:0")
	probe, closed := listenServing(t, "tcp4", "127.0.0.1:0")
	probe.Close() // a port nothing listens on
	ports := map[uint16]bool{port4: true, port6: true, closed: true}
	ours := func(ev harness.Event) bool { return ports[ev.Fields.DstPort] }

	file := filepath.Join(t.TempDir(), "lo.pcap")
	td := startTcpdump(t, file, "tcp", "and", "(", "port", itoa(port4), "or", "port", itoa(port6), "or", "port", itoa(closed), ")")
	a := harness.Start(t, bin, "--events", "flows", "--output", "json")

	const perFamily = 6
	var bytesEach []string // client port, sent, received
	for i := range perFamily {
		for _, ln := range []net.Listener{ln4, ln6} {
			n, extra := 1+i*40000, i*1000 // up to 200,001 bytes: many segments
			sent, received := dialSized(t, ln, n, extra)
			bytesEach = append(bytesEach, fmt.Sprintf("sent=%d received=%d", sent, received))
		}
	}
	if _, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", closed), 2*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial closed port: want ECONNREFUSED, got %v", err)
	}

	// Live: 4 flow events per connection, 2 for the refused attempt.
	want := 4*2*perFamily + 2
	a.WaitEvents(want, ours, 30*time.Second)
	a.Stop(t)
	time.Sleep(500 * time.Millisecond) // let the last packets reach tcpdump's file
	td.stop(t)

	replayed, log, err := replayCmd(t, bin, nil, file, "--events", "flows", "--output", "json", "--local", "127.0.0.0/8,::1")
	if err != nil {
		t.Fatalf("flowtap replay: %v\n%s", err, log)
	}
	lines := func(evs []harness.Event) map[string]int {
		out := map[string]int{}
		for _, ev := range evs {
			if ours(ev) {
				out[flowLine(ev)]++
			}
		}
		return out
	}
	live, rep := lines(a.Events()), lines(replayed)
	if len(live) != want {
		t.Errorf("live: %d distinct flow events for the test's ports, want %d", len(live), want)
	}
	for k, n := range live {
		if rep[k] != n {
			t.Errorf("live reported %q %d time(s), replay %d", k, n, rep[k])
		}
	}
	for k, n := range rep {
		if live[k] == 0 {
			t.Errorf("replay reported %q %d time(s), live never", k, n)
		}
	}
	for _, k := range []string{"outgoing", "incoming"} {
		refused := fmt.Sprintf("net_flow_tcp_failed %s 127.0.0.1:", k)
		found := false
		for line := range rep {
			found = found || strings.HasPrefix(line, refused) && strings.HasSuffix(line, fmt.Sprintf(">127.0.0.1:%d reason=refused", closed))
		}
		if !found {
			t.Errorf("replay lacks the refused attempt (%s)", k)
		}
	}
	// The byte counts are the test's own, not only live's.
	for _, b := range bytesEach {
		n := 0
		for line := range rep {
			if strings.Contains(line, b+" reason=fin") {
				n++
			}
		}
		if n < 1 {
			t.Errorf("replay has no outgoing end with %s", b)
		}
	}
	if t.Failed() {
		t.Logf("replay log:\n%s\nlive log:\n%s", log, a.Log())
	}
}

// TestCommunityIDMatchesSuricata replays the committed captures through
// flowtap and through Suricata (Debian's, from bookworm-backports; make
// deps installs it) and holds every community_id flowtap gives a
// connection to the one Suricata's eve.json gives the same flow: the same
// string for the same 5-tuple, as the Community ID specification means.
func TestCommunityIDMatchesSuricata(t *testing.T) {
	suricata, err := exec.LookPath("suricata")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("suricata is not installed (make deps installs it from bookworm-backports): %v", err)
		}
		t.Skipf("suricata is not installed, so flowtap's community_id is not compared with Suricata's (make deps installs it): %v", err)
	}
	bin := harness.Binaries(t)
	compared := 0
	for _, name := range []string{"loopback_ipv4.pcap", "ipv6_ext.pcap", "refused.pcap", "retransmit_vlan.pcap"} {
		file, err := filepath.Abs(filepath.Join("..", "..", "replay", "testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		evs, log, err := replayCmd(t, bin, nil, file, "--output", "json")
		if err != nil {
			t.Fatalf("flowtap replay %s: %v\n%s", name, err, log)
		}
		// Suricata with its stock configuration (it needs the stock
		// flow, flow-timeouts and stream sections), no rules, Community
		// ID on in its eve log (outputs[1] is eve-log).
		dir := t.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := exec.CommandContext(ctx, suricata, "-c", "/etc/suricata/suricata.yaml", "-r", file, "-l", dir, "-k", "none",
			"-S", "/dev/null", "--runmode", "single", "--set", "outputs.1.eve-log.community-id=true").CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("suricata -r %s: %v\n%s", name, err, out)
		}
		raw, err := os.ReadFile(filepath.Join(dir, "eve.json"))
		if err != nil {
			t.Fatal(err)
		}
		theirs := map[string]string{} // "addr port addr port" (either order) -> community_id
		for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
			var r struct {
				EventType   string `json:"event_type"`
				Proto       string `json:"proto"`
				SrcIP       string `json:"src_ip"`
				SrcPort     int    `json:"src_port"`
				DestIP      string `json:"dest_ip"`
				DestPort    int    `json:"dest_port"`
				CommunityID string `json:"community_id"`
			}
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("eve.json: %v: %s", err, line)
			}
			if r.EventType != "flow" || r.Proto != "TCP" {
				continue
			}
			// eve.json writes IPv6 addresses in full.
			src, dst := netip.MustParseAddr(r.SrcIP).String(), netip.MustParseAddr(r.DestIP).String()
			theirs[fmt.Sprintf("%s %d %s %d", src, r.SrcPort, dst, r.DestPort)] = r.CommunityID
			theirs[fmt.Sprintf("%s %d %s %d", dst, r.DestPort, src, r.SrcPort)] = r.CommunityID
		}
		for _, ev := range evs {
			f := ev.Fields
			key := fmt.Sprintf("%s %d %s %d", f.Src, f.SrcPort, f.Dst, f.DstPort)
			cid, ok := theirs[key]
			if !ok {
				t.Errorf("%s: Suricata has no flow %s (flowtap's %s %s)", name, key, ev.Event, f.CommunityID)
				continue
			}
			if f.CommunityID != cid {
				t.Errorf("%s: %s %s: flowtap community_id %q, Suricata %q", name, ev.Event, key, f.CommunityID, cid)
			}
			compared++
		}
	}
	if compared == 0 {
		t.Fatal("no flow event to compare")
	}
	t.Logf("%d flow events' community_id equal to Suricata's", compared)
}
