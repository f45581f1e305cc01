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
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/flowtap/flowtap/bpf"
	"github.com/flowtap/flowtap/internal/e2e/harness"
	"github.com/flowtap/flowtap/internal/privtest"
	"github.com/flowtap/flowtap/internal/testutil"
	"github.com/flowtap/flowtap/internal/workload"
)

// The operations side of a running agent, with the real binary: a real
// Prometheus scraping it, promtool on its exposition, /readyz turning 503
// and back, and 'flowtap run | head -1'.

// testCgroup creates a cgroup v2 directory for the test's workload and
// returns its path and an open descriptor (for CLONE_INTO_CGROUP); both
// go when the test ends.
func testCgroup(t *testing.T, name string) (string, *os.File) {
	t.Helper()
	root, err := bpf.FindCgroup2Mount()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, fmt.Sprintf("flowtap-e2e-%s-%d", name, os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	fd, err := os.Open(dir)
	if err != nil {
		os.Remove(dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		fd.Close()
		// Exited processes may keep the cgroup busy for a moment.
		for i := 0; i < 100; i++ {
			if err := os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("remove cgroup %s: still busy", dir)
	})
	return dir, fd
}

// metricsAddr is the address flowtap logged it serves its metrics on.
var metricsAddr = regexp.MustCompile(`serving metrics: address=(\S+)`)

// agentMetrics returns the base URL of a started agent's endpoints.
func agentMetrics(t *testing.T, a *harness.Agent) string {
	t.Helper()
	m := metricsAddr.FindStringSubmatch(a.Log())
	if m == nil {
		t.Fatalf("flowtap did not log where it serves metrics:\n%s", a.Log())
	}
	return "http://" + m[1]
}

// httpGet returns the status and body of GET u.
func httpGet(u string) (int, []byte, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// sampleValue finds "name{labels} value" in a text exposition; labels is
// the exact label text ("" for none).
func sampleValue(exposition []byte, name, labels string) (float64, bool) {
	prefix := name
	if labels != "" {
		prefix += "{" + labels + "}"
	}
	sc := bufio.NewScanner(bytes.NewReader(exposition))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), prefix+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		return v, err == nil
	}
	return 0, false
}

// TestPrometheusScrapesFlowtap: Debian's Prometheus, started by the test
// on 127.0.0.1 with a config and data directory of its own, scrapes a
// running flowtap every second. flowtap watches a cgroup of the test's,
// where a bounded workload makes 40 loopback connections: its query API
// must then return flowtap_events_total for net_flow_tcp_begin and
// net_flow_tcp_end as 80 each (both ends of each connection are in the
// cgroup). promtool check metrics passes on flowtap's /metrics.
func TestPrometheusScrapesFlowtap(t *testing.T) {
	privtest.Require(t)
	promBin, promtool := testutil.NeedTool(t, "prometheus"), testutil.NeedTool(t, "promtool")
	began := time.Now()
	bin := harness.Binaries(t)
	cg, cgFD := testCgroup(t, "metrics")

	a := harness.StartWith(t, bin, harness.Options{DiscardStdout: true,
		Args: []string{"--cgroup", cg, "--metrics-addr", "127.0.0.1:0", "--output", "json", "--stats-interval", "2s"}})
	base := agentMetrics(t, a)
	target := strings.TrimPrefix(base, "http://")

	promPort := testutil.FreePort(t)
	prom := startPrometheus(t, promBin, target, promPort)

	// The workload, in the cgroup from its first instruction on
	// (CLONE_INTO_CGROUP): its server child inherits it.
	const conns = 40
	plan, err := json.Marshal(workload.Plan{IPv4: conns, Parallel: 4, MaxDuration: workload.Duration(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "flowtap-workload"), "run", "--plan", "-")
	cmd.Stdin = bytes.NewReader(plan)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgFD.Fd()), Pdeathsig: syscall.SIGKILL}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("workload: %v\n%s", err, out)
	}

	// flowtap's own count first, then Prometheus' view of it.
	var exposition []byte
	ok := waitFor(30*time.Second, func() bool {
		_, body, err := httpGet(base + "/metrics")
		if err != nil {
			return false
		}
		exposition = body
		b, _ := sampleValue(body, "flowtap_events_total", `event="net_flow_tcp_begin"`)
		e, _ := sampleValue(body, "flowtap_events_total", `event="net_flow_tcp_end"`)
		return b == 2*conns && e == 2*conns
	})
	if !ok {
		t.Fatalf("flowtap's /metrics does not count %d begins and ends:\n%s", 2*conns, grepLines(exposition, "flowtap_events_total"))
	}
	for _, ev := range []string{"net_flow_tcp_begin", "net_flow_tcp_end"} {
		query := fmt.Sprintf(`flowtap_events_total{job="flowtap",event=%q}`, ev)
		var got string
		if !waitFor(30*time.Second, func() bool { got = prom.query(t, query); return got == strconv.Itoa(2*conns) }) {
			t.Errorf("Prometheus: %s = %q, want %d", query, got, 2*conns)
		}
	}
	if up := prom.query(t, `up{job="flowtap"}`); up != "1" {
		t.Errorf(`Prometheus: up{job="flowtap"} = %q`, up)
	}
	if sink := prom.query(t, `flowtap_sink_up{job="flowtap",pipeline="default",sink="stdout"}`); sink != "1" {
		t.Errorf("Prometheus: flowtap_sink_up of the stdout sink = %q", sink)
	}

	// The kernel's counters, read after flowtap dropped its privileges.
	for _, want := range []string{"flowtap_capture_attached 1", `flowtap_bpf_program_recursion_misses_total{program="flowtap_sockops"} `,
		`flowtap_capture_feature_available{feature="core"} 1`, "flowtap_records_lost_total 0", "flowtap_ring_buffer_bytes "} {
		if !bytes.Contains(exposition, []byte(want)) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// promtool lints the exposition: names, types, help, units.
	check := exec.Command(promtool, "check", "metrics")
	check.Stdin = bytes.NewReader(exposition)
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	// 'flowtap status' against the live agent.
	status := exec.Command(filepath.Join(bin, "flowtap"), "status", "--addr", target, "--interval", "1s")
	out, err := status.CombinedOutput()
	if err != nil {
		t.Errorf("flowtap status: %v\n%s", err, out)
	}
	for _, want := range []string{"at " + base + ": ready\n", "\nuptime:", "\nevents:", "\nrecords lost:   0\n",
		"\nflows tracked:", "  default   stdout  up     0 of 8,192"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("flowtap status lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(a.Log(), "stats: interval=") {
		t.Errorf("no stats line in flowtap's log:\n%s", a.Log())
	}

	a.Stop(t)
	prom.stop(t)
	t.Logf("Prometheus saw %d begins and ends of %d connections; the test took %v", 2*conns, conns, time.Since(began).Round(time.Millisecond))
}

// grepLines returns the lines of b that contain s.
func grepLines(b []byte, s string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// prometheus is a Prometheus server the test started.
type prometheus struct {
	cmd  *exec.Cmd
	base string
	out  *testutil.SyncBuffer
	done chan struct{} // closed when it exited, with err
	err  error
}

// startPrometheus starts Prometheus on 127.0.0.1:port with a temporary
// config (one job, "flowtap", scraping target every second) and data
// directory, and returns once it is ready.
func startPrometheus(t *testing.T, bin, target string, port int) *prometheus {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	body := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: flowtap
    static_configs:
      - targets: [%q]
`, target)
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &prometheus{base: fmt.Sprintf("http://127.0.0.1:%d", port), out: &testutil.SyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--storage.tsdb.retention.time=1h")
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	if !waitFor(60*time.Second, func() bool {
		code, _, err := httpGet(p.base + "/-/ready")
		return err == nil && code == http.StatusOK
	}) {
		t.Fatalf("Prometheus did not become ready:\n%s", p.out)
	}
	return p
}

// query returns the value of an instant query's single sample, "" when
// there is none.
func (p *prometheus) query(t *testing.T, q string) string {
	t.Helper()
	code, body, err := httpGet(p.base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil || code != http.StatusOK {
		t.Fatalf("Prometheus query %s: %d %v %s", q, code, err, body)
	}
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Status != "success" {
		t.Fatalf("Prometheus query %s: %s (%v)", q, body, err)
	}
	if len(r.Data.Result) != 1 {
		return ""
	}
	v, _ := r.Data.Result[0].Value[1].(string)
	return v
}

// stop ends Prometheus by its PID (SIGTERM) and waits for it.
func (p *prometheus) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("stop Prometheus: %v", err)
		return
	}
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("Prometheus exited with %v:\n%s", p.err, p.out)
		}
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		t.Errorf("Prometheus did not stop within 30 s")
	}
}

// readiness is /readyz's body.
type readiness struct {
	Status   string `json:"status"`
	Phase    string `json:"phase"`
	NotReady []struct {
		Component, Pipeline, Sink, State, Reason string
	} `json:"not_ready"`
}

func readyz(base string) (int, readiness, error) {
	var r readiness
	code, body, err := httpGet(base + "/readyz")
	if err != nil {
		return 0, r, err
	}
	return code, r, json.Unmarshal(body, &r)
}

// TestReadyzTurnsAndRecovers: /readyz with the real agent. While the
// capture attaches it answers 503 naming the capture; once attached,
// 200. A webhook sink whose endpoint fails is disabled after its restarts
// (on_failure: disable): 503 naming the sink, state failed. A reload
// (SIGHUP) pointing it at a working endpoint starts a new sink: 200
// again, and flowtap_config_reloads_total{result="ok"} is 1.
func TestReadyzTurnsAndRecovers(t *testing.T) {
	privtest.Require(t)
	bin := harness.Binaries(t)
	var goodPosts atomic.Int64
	bad := httpServer(t, func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) })
	good := httpServer(t, func(w http.ResponseWriter, _ *http.Request) { goodPosts.Add(1) })
	config := func(endpoint string) string {
		return fmt.Sprintf(`pipelines:
  - name: alerts
    events: [flows]
    sinks:
      - plugin: webhook
        config: {url: %q, timeout: 2s, retry: {max_attempts: 1}}
        restart: {max_attempts: 2, initial_backoff: 50ms, max_backoff: 100ms}
        on_failure: disable
`, endpoint)
	}
	cfg := writeConfig(t, config(bad))
	port := testutil.FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	// Ask /readyz from before flowtap starts until it is ready.
	var (
		mu   sync.Mutex
		seen []readiness
	)
	stopPolling := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			select {
			case <-stopPolling:
				return
			case <-time.After(5 * time.Millisecond):
			}
			code, r, err := readyz(base)
			if err != nil {
				continue // not listening yet
			}
			mu.Lock()
			seen = append(seen, r)
			mu.Unlock()
			if code == http.StatusOK {
				return
			}
		}
	}()
	a := harness.StartWith(t, bin, harness.Options{DiscardStdout: true,
		Args: []string{"--config", cfg, "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", port)}})
	select {
	case <-polled:
	case <-time.After(20 * time.Second):
		close(stopPolling)
		<-polled
		t.Fatalf("/readyz never answered 200 after the capture started:\n%s", a.Log())
	}
	mu.Lock()
	if len(seen) < 2 || seen[0].Status != "not ready" || seen[0].Phase != "starting" || len(seen[0].NotReady) != 1 ||
		seen[0].NotReady[0].Component != "capture" || seen[len(seen)-1].Status != "ready" {
		t.Errorf("/readyz while flowtap started: first %+v, last %+v (%d answers): want 503 for the capture, then 200", seen[0], seen[len(seen)-1], len(seen))
	}
	mu.Unlock()

	// Events for the webhook: it fails, restarts twice, and is disabled.
	ln := loopback(t)
	if _, err := dialOnce(ln); err != nil {
		t.Fatal(err)
	}
	var r readiness
	if !waitFor(30*time.Second, func() bool {
		code, got, err := readyz(base)
		r = got
		return err == nil && code == http.StatusServiceUnavailable && len(r.NotReady) == 1 && r.NotReady[0].State == "failed"
	}) {
		t.Fatalf("/readyz = %+v, want 503 for the disabled sink\n%s", r, a.Log())
	}
	if nr := r.NotReady[0]; nr.Component != "sink" || nr.Pipeline != "alerts" || nr.Sink != "webhook" || !strings.Contains(nr.Reason, "503") {
		t.Errorf("not ready: %+v", nr)
	}

	// The fix: the same pipeline, a working endpoint; SIGHUP.
	if err := os.WriteFile(cfg, []byte(config(good)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(a.PID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !waitFor(30*time.Second, func() bool {
		code, got, err := readyz(base)
		r = got
		return err == nil && code == http.StatusOK
	}) {
		t.Fatalf("/readyz = %+v after the reload, want 200\n%s", r, a.Log())
	}
	if _, err := dialOnce(ln); err != nil {
		t.Fatal(err)
	}
	if !waitFor(30*time.Second, func() bool { return goodPosts.Load() > 0 }) {
		t.Errorf("the reloaded sink posted nothing")
	}
	_, body, err := httpGet(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := sampleValue(body, "flowtap_config_reloads_total", `result="ok"`); v != 1 {
		t.Errorf(`flowtap_config_reloads_total{result="ok"} = %v, want 1`, v)
	}
	a.Stop(t)
}

// httpServer serves h on 127.0.0.1 until the test ends and returns its
// URL.
func httpServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// TestRunPipedIntoHead: 'flowtap run | head -1', as a user types it in
// bash. head exits after the table's header line; flowtap must then end
// within seconds, with status 0 (or the SIGPIPE status, 141), without
// retrying the stdout sink and without an ERROR line.
func TestRunPipedIntoHead(t *testing.T) {
	privtest.Require(t)
	bash := testutil.NeedTool(t, "bash")
	bin := harness.Binaries(t)
	ln := loopback(t)
	errLog := filepath.Join(t.TempDir(), "stderr")
	script := fmt.Sprintf(`%q run 2>%q | head -1; echo "status=${PIPESTATUS[0]}"`, filepath.Join(bin, "flowtap"), errLog)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bash, "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	out := &testutil.SyncBuffer{}
	cmd.Stdout = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	done := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the group: bash, flowtap, head
			<-done
		}
	})

	// Connections, one every 50 ms, until bash returns: the first makes
	// the header line (it comes with the first events), and head exits;
	// the watcher of flowtap's standard output, or the next batch's
	// write, must then stop flowtap.
	first := time.Now()
	var ended time.Duration
	for ended == 0 {
		if time.Since(first) > 15*time.Second {
			t.Fatalf("flowtap still runs 15 s after the first connection; stdout %q", out.String())
		}
		if _, err := dialOnce(ln); err != nil {
			t.Fatal(err)
		}
		select {
		case <-done:
			if waitErr != nil {
				t.Fatalf("bash: %v", waitErr)
			}
			ended = time.Since(first)
		case <-time.After(50 * time.Millisecond):
		}
	}
	logs, _ := os.ReadFile(errLog)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	status := lines[len(lines)-1]
	if status != "status=0" && status != "status=141" {
		t.Errorf("flowtap's exit status: %s, want 0 or 141\n%s", status, logs)
	}
	if !strings.HasPrefix(lines[0], "TIME ") {
		t.Errorf("head printed %q, want the table's header", lines[0])
	}
	for _, bad := range []string{"[ERROR]", "retrying", "giving up"} {
		if bytes.Contains(logs, []byte(bad)) {
			t.Errorf("flowtap's log has %q:\n%s", bad, logs)
		}
	}
	if !bytes.Contains(logs, []byte("standard output closed: stopping flowtap")) {
		t.Errorf("flowtap did not say why it stopped:\n%s", logs)
	}
	t.Logf("flowtap ended %v after the first connection (%s)", ended.Round(time.Millisecond), status)
}
