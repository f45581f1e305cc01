// SPDX-License-Identifier: Apache-2.0

package nats

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowtap/flowtap/internal/testutil"
)

// natsServerPkg is the nats-server command, built from the module in
// go.mod: the cluster tests run it as real processes.
const natsServerPkg = "github.com/nats-io/nats-server/v2"

// natsServerBin is the nats-server binary, built once per test binary
// into binDir.
var natsServerBin struct {
	once sync.Once
	path string
}

// binDir holds binaries built once for the whole test binary; TestMain
// removes it.
var binDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// buildNATSServer returns the path of a nats-server binary, building it
// at the first call.
func buildNATSServer(tb testing.TB) string {
	tb.Helper()
	natsServerBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "flowtap-nats-test-")
		if err != nil {
			tb.Fatal(err)
		}
		binDir = dir
		path := filepath.Join(dir, "nats-server")
		testutil.BuildBinary(tb, natsServerPkg, path)
		natsServerBin.path = path
	})
	if natsServerBin.path == "" {
		tb.Fatal("nats-server could not be built (see the first test that tried)")
	}
	return natsServerBin.path
}

// natsNode is one nats-server process of a natsCluster. It keeps its
// ports and store directory across restarts.
type natsNode struct {
	name                    string
	port, routePort, httpPt int
	dir                     string // store directory, config and log
	cmd                     *exec.Cmd
	exited                  chan struct{} // closed when cmd has been waited for
}

// natsCluster is a NATS cluster of real nats-server processes with
// JetStream on 127.0.0.1, each with its own store directory under the
// test's temporary directory. One node is a plain server (no
// clustering). The test's cleanup kills every process it started.
type natsCluster struct {
	tb    testing.TB
	bin   string
	nodes []*natsNode
}

// startCluster starts n nodes and waits until JetStream answers.
func startCluster(tb testing.TB, n int) *natsCluster {
	tb.Helper()
	c := &natsCluster{tb: tb, bin: buildNATSServer(tb)}
	base := tb.TempDir()
	for i := range n {
		ports := freePorts(tb, 3)
		c.nodes = append(c.nodes, &natsNode{name: fmt.Sprintf("n%d", i+1), port: ports[0], routePort: ports[1], httpPt: ports[2],
			dir: filepath.Join(base, fmt.Sprintf("n%d", i+1))})
	}
	tb.Cleanup(c.stopAll)
	for _, nd := range c.nodes {
		if err := os.MkdirAll(nd.dir, 0o700); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(nd.dir, "nats.conf"), []byte(c.config(nd)), 0o600); err != nil {
			tb.Fatal(err)
		}
		c.start(nd)
	}
	c.waitJetStream()
	return c
}

// freePorts returns n TCP ports on 127.0.0.1 that were free a moment ago.
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// config is node nd's configuration file.
func (c *natsCluster) config(nd *natsNode) string {
	var b strings.Builder
	fmt.Fprintf(&b, "server_name: %s\nlisten: 127.0.0.1:%d\nhttp: 127.0.0.1:%d\n", nd.name, nd.port, nd.httpPt)
	fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n  max_memory_store: 64MB\n  max_file_store: 4GB\n}\n", filepath.Join(nd.dir, "store"))
	if len(c.nodes) > 1 {
		var routes []string
		for _, o := range c.nodes {
			routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", o.routePort))
		}
		fmt.Fprintf(&b, "cluster {\n  name: flowtap-test\n  listen: 127.0.0.1:%d\n  routes: [%s]\n}\n", nd.routePort, strings.Join(routes, ", "))
	}
	return b.String()
}

// start starts node nd (again) and waits until it accepts clients.
func (c *natsCluster) start(nd *natsNode) {
	c.tb.Helper()
	logf, err := os.OpenFile(filepath.Join(nd.dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.tb.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(c.bin, "-c", filepath.Join(nd.dir, "nats.conf"))
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the test binary dies, its servers die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		c.tb.Fatalf("start nats-server %s: %v", nd.name, err)
	}
	nd.cmd, nd.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) { _ = cmd.Wait(); close(exited) }(nd.exited)
	deadline := time.Now().Add(15 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", nd.port), time.Second)
		if err == nil {
			conn.Close()
			return
		}
		select {
		case <-nd.exited:
			c.tb.Fatalf("nats-server %s exited at start:\n%s", nd.name, c.logTail(nd))
		default:
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("nats-server %s does not accept clients within 15s:\n%s", nd.name, c.logTail(nd))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill kills node nd with SIGKILL, by the PID this test started, and
// waits until it is gone.
func (c *natsCluster) kill(nd *natsNode) {
	c.tb.Helper()
	if nd.cmd == nil {
		return
	}
	if err := nd.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		c.tb.Errorf("kill nats-server %s (pid %d): %v", nd.name, nd.cmd.Process.Pid, err)
	}
	select {
	case <-nd.exited:
	case <-time.After(10 * time.Second):
		c.tb.Errorf("nats-server %s (pid %d) still runs 10s after SIGKILL", nd.name, nd.cmd.Process.Pid)
	}
	nd.cmd = nil
}

// stopAll kills every node still running; on a failed test it logs the
// end of each server's log.
func (c *natsCluster) stopAll() {
	for _, nd := range c.nodes {
		c.kill(nd)
		if c.tb.Failed() {
			c.tb.Logf("nats-server %s log:\n%s", nd.name, c.logTail(nd))
		}
	}
}

// logTail is the end of node nd's log.
func (c *natsCluster) logTail(nd *natsNode) string {
	data, _ := os.ReadFile(filepath.Join(nd.dir, "server.log"))
	const most = 4000
	if len(data) > most {
		data = data[len(data)-most:]
	}
	return string(data)
}

// urls are the client URLs of every node.
func (c *natsCluster) urls() []string {
	var out []string
	for _, nd := range c.nodes {
		out = append(out, fmt.Sprintf("nats://127.0.0.1:%d", nd.port))
	}
	return out
}

// node returns the node called name.
func (c *natsCluster) node(name string) *natsNode {
	for _, nd := range c.nodes {
		if nd.name == name {
			return nd
		}
	}
	c.tb.Fatalf("no node %q", name)
	return nil
}

// jetStream connects a test client to every node (it fails over as the
// sink does), closed by the test's cleanup.
func (c *natsCluster) jetStream() jetstream.JetStream {
	c.tb.Helper()
	nc, err := natsgo.Connect(strings.Join(c.urls(), ","), natsgo.MaxReconnects(-1), natsgo.ReconnectWait(100*time.Millisecond))
	if err != nil {
		c.tb.Fatalf("test client: %v", err)
	}
	c.tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(5*time.Second))
	if err != nil {
		c.tb.Fatal(err)
	}
	return js
}

// waitJetStream waits until the cluster's JetStream answers API calls (a
// cluster first elects its meta leader).
func (c *natsCluster) waitJetStream() {
	c.tb.Helper()
	js := c.jetStream()
	retry(c.tb, 30*time.Second, "JetStream ready", func(ctx context.Context) error {
		_, err := js.AccountInfo(ctx)
		return err
	})
}

// retry calls f until it succeeds, at most for limit; then it fails tb
// with what f last returned.
func retry(tb testing.TB, limit time.Duration, what string, f func(ctx context.Context) error) {
	tb.Helper()
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := f(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %s: %v", what, limit, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// addStream creates a file-backed stream with replicas, capturing
// subjects; tweak, if not nil, changes its config first.
func (c *natsCluster) addStream(name string, replicas int, tweak func(*jetstream.StreamConfig), subjects ...string) jetstream.Stream {
	c.tb.Helper()
	cfg := jetstream.StreamConfig{Name: name, Subjects: subjects, Storage: jetstream.FileStorage, Replicas: replicas}
	if tweak != nil {
		tweak(&cfg)
	}
	js := c.jetStream()
	var str jetstream.Stream
	retry(c.tb, 30*time.Second, "create stream "+name, func(ctx context.Context) error {
		var err error
		str, err = js.CreateOrUpdateStream(ctx, cfg)
		return err
	})
	return str
}

// leader is the node leading stream str, once it has one.
func (c *natsCluster) leader(str jetstream.Stream) *natsNode {
	c.tb.Helper()
	var name string
	retry(c.tb, 30*time.Second, "stream leader", func(ctx context.Context) error {
		info, err := str.Info(ctx)
		if err != nil {
			return err
		}
		if info.Cluster == nil || info.Cluster.Leader == "" {
			return errors.New("no leader")
		}
		name = info.Cluster.Leader
		return nil
	})
	return c.node(name)
}

// cpu is the CPU time the running nodes have used.
func (c *natsCluster) cpu() time.Duration {
	var sum time.Duration
	for _, nd := range c.nodes {
		if nd.cmd != nil {
			sum += processCPU(nd.cmd.Process.Pid)
		}
	}
	return sum
}

// processCPU is the CPU time (user and system) process pid has used, from
// /proc, in clock ticks of 10ms; 0 if it is gone.
func processCPU(pid int) time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command, which is in parentheses: utime and
	// stime are the 12th and 13th.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// clientsNamed counts the clients called name connected to node nd, from
// its monitoring endpoint.
func (c *natsCluster) clientsNamed(nd *natsNode, name string) int {
	c.tb.Helper()
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get(fmt.Sprintf("http://127.0.0.1:%d/connz?limit=1000", nd.httpPt))
	if err != nil {
		return 0 // not running
	}
	defer resp.Body.Close()
	var connz struct {
		Conns []struct {
			Name string `json:"name"`
		} `json:"connections"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&connz); err != nil {
		c.tb.Fatalf("connz of %s: %v", nd.name, err)
	}
	n := 0
	for _, cn := range connz.Conns {
		if cn.Name == name {
			n++
		}
	}
	return n
}
