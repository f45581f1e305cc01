// SPDX-License-Identifier: Apache-2.0

// Package harness runs the real flowtap binaries for end-to-end tests and
// benchmarks: it builds them once, starts 'flowtap run', waits for the
// capture to start, collects what the stdout sink prints and the log, and
// stops flowtap the way a user does (SIGINT), checking it exits 0.
package harness

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flowtap/flowtap/internal/testutil"
)

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// Binaries builds every command of the module (flowtap, its sink plugins,
// flowtap-workload) once per test binary into a temporary directory laid
// out as 'make build' lays out bin/, and returns that directory. Call
// RemoveBinaries from TestMain. With testutil.BinariesEnv set (the kernel
// matrix's guests have no Go toolchain), it returns that directory of
// prebuilt binaries instead.
func Binaries(tb testing.TB) string {
	tb.Helper()
	if dir := testutil.PrebuiltBinaries(); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "flowtap")); err != nil {
			tb.Fatalf("prebuilt binaries (%s=%s): %v", testutil.BinariesEnv, dir, err)
		}
		return dir
	}
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "flowtap-e2e-bin-"); binErr != nil {
			return
		}
		root, err := moduleRoot()
		if err != nil {
			binErr = err
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+"/", "./cmd/...")
		// As 'make build': without cgo, flowtap can drop its
		// capabilities on every thread (internal/privdrop).
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./cmd/...: %w\n%s", err, out)
		}
	})
	if binErr != nil {
		tb.Fatal(binErr)
	}
	return binDir
}

// RemoveBinaries deletes what Binaries built.
func RemoveBinaries() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

// moduleRoot finds the directory holding go.mod, from the test's directory.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the flowtap module")
	}
	return filepath.Dir(mod), nil
}

// Event is one line of the stdout sink's json format.
type Event struct {
	Timestamp int64   `json:"timestamp"`
	Event     string  `json:"event"`
	Context   Context `json:"context"`
	Fields    Fields  `json:"fields"`
}

// Context is an event's context.
type Context struct {
	SocketCookie uint64 `json:"socket_cookie"`
	CgroupID     uint64 `json:"cgroup_id"`
	PID          int    `json:"pid"`
	UID          int    `json:"uid"`
	Comm         string `json:"comm"`
	HostName     string `json:"host_name"`
	PPID         int    `json:"ppid"`
	ProcessStart int64  `json:"process_start"`
	Exe          string `json:"exe"`
	// The workload: "" for the host (and while not known).
	ContainerID      string            `json:"container_id"`
	ContainerRuntime string            `json:"container_runtime"`
	ContainerName    string            `json:"container_name"`
	ContainerImage   string            `json:"container_image"`
	PodName          string            `json:"pod_name"`
	PodNamespace     string            `json:"pod_namespace"`
	PodUID           string            `json:"pod_uid"`
	PodLabels        map[string]string `json:"pod_labels"`
}

// Fields are the fields of the flow events, net_packet_dns and
// flowtap_records_lost.
// A field an event lacks reads as its zero value.
type Fields struct {
	ConnDirection   string   `json:"conn_direction"`
	Src             string   `json:"src"`
	Dst             string   `json:"dst"`
	SrcPort         uint16   `json:"src_port"`
	DstPort         uint16   `json:"dst_port"`
	SrcDNS          []string `json:"src_dns"`
	DstDNS          []string `json:"dst_dns"`
	HandshakeNs     uint64   `json:"handshake_ns"`
	DurationNs      uint64   `json:"duration_ns"`
	BytesSent       uint64   `json:"bytes_sent"`
	BytesReceived   uint64   `json:"bytes_received"`
	PacketsSent     uint64   `json:"packets_sent"`
	PacketsReceived uint64   `json:"packets_received"`
	CloseReason     string   `json:"close_reason"`
	Reason          string   `json:"reason"`
	FlowID          string   `json:"flow_id"`
	CommunityID     string   `json:"community_id"`
	Lost            uint64   `json:"lost"`
	LostTotal       uint64   `json:"lost_total"`
	// net_packet_dns
	QueryName string   `json:"query_name"`
	QueryType string   `json:"query_type"`
	RCode     string   `json:"rcode"`
	Response  bool     `json:"response"`
	Answers   []string `json:"answers"`
}

// Options configure Start.
type Options struct {
	// Args follow 'flowtap run'.
	Args []string
	// Stdout, if set, receives every line the sinks print instead of the
	// agent parsing and keeping them (benchmarks: count, don't store).
	Stdout func(line []byte)
	// DiscardStdout sends the sinks' output to /dev/null.
	DiscardStdout bool
	// ReadyTimeout bounds the wait for "capture started". Default 60s.
	ReadyTimeout time.Duration
	// Env is added to flowtap's environment.
	Env []string
}

// Agent is a running 'flowtap run'.
type Agent struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	events []Event
	bad    []string
	stderr bytes.Buffer
	ready  chan struct{}
	done   chan struct{}
	exited chan error
}

// Start runs 'flowtap run args...' from bin with its stdout parsed into
// events, and returns once flowtap logs "capture started".
func Start(tb testing.TB, bin string, args ...string) *Agent {
	tb.Helper()
	return StartWith(tb, bin, Options{Args: args})
}

// StartWith is Start with options.
func StartWith(tb testing.TB, bin string, opts Options) *Agent {
	tb.Helper()
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 60 * time.Second
	}
	a := &Agent{ready: make(chan struct{}), done: make(chan struct{}), exited: make(chan error, 1)}
	a.cmd = exec.Command(filepath.Join(bin, "flowtap"), append([]string{"run"}, opts.Args...)...)
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if len(opts.Env) > 0 {
		a.cmd.Env = append(os.Environ(), opts.Env...)
	}
	var stdout io.ReadCloser
	if !opts.DiscardStdout {
		var err error
		if stdout, err = a.cmd.StdoutPipe(); err != nil {
			tb.Fatal(err)
		}
	}
	stderrR, stderrW := io.Pipe()
	a.cmd.Stderr = stderrW
	started := make(chan error, 1)
	go func() {
		// Pdeathsig follows the thread that started the child: keep that
		// thread alive, and to this goroutine, until flowtap has exited.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := a.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		if stdout != nil {
			a.readStdout(stdout, opts.Stdout)
		}
		err := a.cmd.Wait()
		stderrW.Close()
		close(a.done)
		a.exited <- err
	}()
	if err := <-started; err != nil {
		tb.Fatalf("start flowtap: %v", err)
	}
	tb.Cleanup(func() {
		select {
		case <-a.done:
		default:
			a.cmd.Process.Kill()
			<-a.done
		}
	})
	var once sync.Once
	go func() {
		sc := bufio.NewScanner(stderrR)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
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
		io.Copy(io.Discard, stderrR)
	}()
	select {
	case <-a.ready:
	case <-a.done:
		tb.Fatalf("flowtap exited before the capture started:\n%s", a.Log())
	case <-time.After(opts.ReadyTimeout):
		tb.Fatalf("flowtap did not report 'capture started' within %v:\n%s", opts.ReadyTimeout, a.Log())
	}
	return a
}

func (a *Agent) readStdout(r io.Reader, sink func([]byte)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if sink != nil {
			sink(sc.Bytes())
			continue
		}
		var ev Event
		err := json.Unmarshal(sc.Bytes(), &ev)
		a.mu.Lock()
		if err != nil {
			a.bad = append(a.bad, sc.Text())
		} else {
			a.events = append(a.events, ev)
		}
		a.mu.Unlock()
	}
	io.Copy(io.Discard, r)
}

// PID is flowtap's process id.
func (a *Agent) PID() int { return a.cmd.Process.Pid }

// Log returns what flowtap logged so far.
func (a *Agent) Log() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stderr.String()
}

// Events returns a copy of the events parsed so far.
func (a *Agent) Events() []Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Event(nil), a.events...)
}

// WaitEvents waits until at least n of the events parsed so far satisfy
// match, at most limit, and reports whether they did. Events are polled
// every 50 ms.
func (a *Agent) WaitEvents(n int, match func(Event) bool, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for {
		a.mu.Lock()
		got := 0
		for _, ev := range a.events {
			if match(ev) {
				got++
			}
		}
		a.mu.Unlock()
		if got >= n {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Bad returns the stdout lines that were not JSON events.
func (a *Agent) Bad() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.bad...)
}

// WaitLog waits up to limit for a log line containing s, and reports
// whether one came.
func (a *Agent) WaitLog(s string, limit time.Duration) bool {
	for deadline := time.Now().Add(limit); ; time.Sleep(20 * time.Millisecond) {
		if strings.Contains(a.Log(), s) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// Stop sends SIGINT and waits (at most 30s) for flowtap to exit; anything
// but exit status 0 fails the test.
func (a *Agent) Stop(tb testing.TB) {
	tb.Helper()
	if err := a.Interrupt(30 * time.Second); err != nil {
		tb.Fatalf("%v\n%s", err, a.Log())
	}
}

// Interrupt sends SIGINT and waits up to limit for flowtap to exit 0.
func (a *Agent) Interrupt(limit time.Duration) error {
	return a.Signal(os.Interrupt, limit)
}

// Signal sends sig and waits up to limit for flowtap to exit 0.
func (a *Agent) Signal(sig os.Signal, limit time.Duration) error {
	if err := a.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal flowtap: %w", err)
	}
	if err := a.Wait(limit); err != nil {
		return fmt.Errorf("after %v: %w", sig, err)
	}
	return nil
}

// Wait waits up to limit for flowtap to exit on its own, and returns nil
// if it exited 0, else why not (an *exec.ExitError for another status).
// If flowtap is still running at the limit, it is killed.
func (a *Agent) Wait(limit time.Duration) error {
	select {
	case err := <-a.exited:
		if err != nil {
			return fmt.Errorf("flowtap exited with %w", err)
		}
		return nil
	case <-time.After(limit):
		a.cmd.Process.Kill()
		return fmt.Errorf("flowtap did not exit within %v: killed", limit)
	}
}

// stoppedLine matches flowtap's last log line, e.g.
// "stopped: base_events=11 derived_events=4 delivered=4 lost_records=0".
var stoppedLine = regexp.MustCompile(`\bstopped:(.*)$`)

// Stopped returns the key=value totals of flowtap's "stopped" log line,
// or nil if it has not logged one.
func (a *Agent) Stopped() map[string]uint64 {
	var out map[string]uint64
	for _, line := range strings.Split(a.Log(), "\n") {
		m := stoppedLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		out = map[string]uint64{}
		for _, kv := range strings.Fields(m[1]) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			if n, err := strconv.ParseUint(v, 10, 64); err == nil {
				out[k] = n
			}
		}
	}
	return out
}

// RunHelp returns the output of 'flowtap run --help', to learn which flags
// this build has.
func RunHelp(bin string) string {
	out, _ := exec.Command(filepath.Join(bin, "flowtap"), "run", "--help").CombinedOutput()
	return string(out)
}
