// SPDX-License-Identifier: Apache-2.0

package release

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowtap/flowtap/internal/privtest"
	"github.com/flowtap/flowtap/internal/testutil"
	"golang.org/x/sys/unix"
)

// The capabilities the image's flowtap must end up with, and no more:
// CAP_NET_ADMIN (12), CAP_PERFMON (38), CAP_BPF (39).
const wantCaps = 1<<12 | 1<<38 | 1<<39

// podman runs podman with storage, state and temporary files of its own
// under dir, so the test touches none of the machine's containers. runc:
// crun refuses the hybrid cgroup layout some hosts (this one) have.
type podman struct {
	bin  string
	base []string
}

func newPodman(t *testing.T, dir string) *podman {
	p := &podman{bin: testutil.NeedTool(t, "podman")}
	testutil.NeedTool(t, "runc")
	p.base = []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"), "--tmpdir", filepath.Join(dir, "tmp"),
		"--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file", "--runtime", "runc"}
	return p
}

func (p *podman) cmd(args ...string) *exec.Cmd {
	return exec.Command(p.bin, append(append([]string{}, p.base...), args...)...)
}

func (p *podman) run(t *testing.T, args ...string) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd := p.cmd(args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("podman %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return strings.TrimSpace(string(out))
}

// unmountBelow lazily unmounts whatever podman left mounted under dir, so
// the temporary directory can be removed.
func unmountBelow(dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			points = append(points, f[4])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		unix.Unmount(points[i], unix.MNT_DETACH)
	}
}

// TestImageUnderPodman builds the image with 'make image', loads the OCI
// archive into a private podman store and runs it as a user would: its
// default non-root user, the three capabilities and no others, host PID
// and network namespaces, the host's cgroup tree and BTF mounted. A
// loopback connection the test makes on the host must come out as flow
// events carrying the test's own PID; flowtap must hold exactly the three
// capabilities and its sink plugin none; /healthz, /readyz and /metrics
// must answer on --metrics-addr (the manifests' probes and scrape); SIGINT
// must drain and exit 0.
func TestImageUnderPodman(t *testing.T) {
	privtest.Require(t)
	tmp := t.TempDir()
	pm := newPodman(t, filepath.Join(tmp, "podman"))
	t.Cleanup(func() { unmountBelow(tmp) })

	dist := filepath.Join(tmp, "dist")
	makeIn(t, repoRoot, "image", "DIST="+dist, "RELEASE_BIN="+filepath.Join(tmp, "bin"), "RELEASE_PLATFORMS=linux/"+runtime.GOARCH)
	archives, _ := filepath.Glob(filepath.Join(dist, "flowtap_*_linux_"+runtime.GOARCH+".oci.tar"))
	if len(archives) != 1 {
		t.Fatalf("make image wrote %v", archives)
	}
	if st, err := os.Stat(archives[0]); err == nil {
		t.Logf("image archive %s: %d bytes", filepath.Base(archives[0]), st.Size())
	}

	loaded := pm.run(t, "load", "-q", "-i", archives[0])
	image, ok := strings.CutPrefix(loaded, "Loaded image: ")
	if !ok {
		t.Fatalf("podman load: %q", loaded)
	}
	t.Logf("loaded %s, %s bytes unpacked", image, pm.run(t, "image", "inspect", "--format", "{{.Size}}", image))
	if user := pm.run(t, "image", "inspect", "--format", "{{.Config.User}}", image); user != "65532:65532" {
		t.Errorf("image user %q, want the non-root 65532:65532", user)
	}

	name := fmt.Sprintf("flowtap-test-%d", os.Getpid())
	// The endpoints the DaemonSet's probes and scrape annotations use, on
	// the host's loopback (host network).
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	t.Cleanup(func() { pm.cmd("rm", "-f", "-t", "0", name).Run() })
	cmd := pm.cmd("run", "--rm", "--name", name,
		"--pid=host", "--network=host",
		"--cap-drop=all", "--cap-add=CAP_BPF,CAP_NET_ADMIN,CAP_PERFMON",
		// The default seccomp profiles of podman and containerd allow
		// bpf(2) only with CAP_SYS_ADMIN.
		"--security-opt", "seccomp=unconfined",
		// This host's bounding set lacks CAP_SYS_RESOURCE: runc cannot
		// raise these limits to podman's defaults.
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
		"-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro", "-v", "/sys/kernel/btf:/sys/kernel/btf:ro",
		image, "run", "--output", "json", "--metrics-addr", metricsAddr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	agent := startAgent(t, cmd)

	pid, err := strconv.Atoi(pm.run(t, "inspect", "--format", "{{.State.Pid}}", name))
	if err != nil || pid <= 0 {
		t.Fatalf("container pid: %v", err)
	}
	agent.waitLog(t, "privileges dropped", 30*time.Second)
	checkCaps(t, pid)

	// The host's loopback connection, with the test's PID: host network
	// and PID namespaces.
	begin := agent.waitFlow(t, loopbackConnection(t))
	t.Logf("begin from the host's loopback connection: %v", begin)
	checkEndpoints(t, "http://"+metricsAddr)
	// SIGINT reaches flowtap through podman's signal proxy.
	agent.stop(t, cmd.Process.Pid)
}

// checkEndpoints: the image's flowtap answers the probes of the
// Kubernetes manifests (/healthz, /readyz: 200 once the capture is
// attached and its sink up) and serves its metrics on /metrics.
func checkEndpoints(t *testing.T, base string) {
	t.Helper()
	get := func(path string) (int, string) {
		c := http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d %s", code, body)
	}
	if code, body := get("/readyz"); code != http.StatusOK || !strings.Contains(body, `"status": "ready"`) {
		t.Errorf("/readyz: %d %s", code, body)
	}
	if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, "flowtap_build_info{") ||
		!strings.Contains(body, `flowtap_sink_up{pipeline="default",sink="stdout"} 1`) || !strings.Contains(body, "flowtap_capture_attached 1") {
		t.Errorf("/metrics: %d, lacks flowtap_build_info, the stdout sink up or the capture attached:\n%s", code, body)
	}
}

// loopbackConnection makes one TCP connection on the host's loopback,
// with a request and an answer, closes it, and returns the server port.
func loopbackConnection(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err != nil {
			served <- err
			return
		}
		_, err = c.Write([]byte("world"))
		served <- err
	}()
	c, err := net.DialTimeout("tcp4", ln.Addr().String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	return ln.Addr().(*net.TCPAddr).Port
}

// procStatus returns the named hexadecimal capability or the Uid line of
// /proc/pid/status.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

func hexCaps(t *testing.T, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		t.Fatalf("capability mask %q: %v", s, err)
	}
	return v
}

// checkCaps: the container's flowtap runs as 65532; it gained CAP_BPF,
// CAP_NET_ADMIN and CAP_PERFMON from the file capabilities (not ambient
// ones) and, its programs attached, dropped them all (not root: its
// plugins run as itself, so it needs none to restart or kill them), with
// NoNewPrivs; the bounding set, which it may not change without
// CAP_SETPCAP, stays the three. Its children (the sink plugins) hold
// none and have NoNewPrivs.
func checkCaps(t *testing.T, pid int) {
	t.Helper()
	st := procStatus(t, pid)
	if !strings.HasPrefix(st["Name"], "flowtap") {
		t.Fatalf("container pid %d is %q, not flowtap", pid, st["Name"])
	}
	if uids := strings.Fields(st["Uid"]); len(uids) != 4 || uids[0] != "65532" || uids[1] != "65532" {
		t.Errorf("flowtap runs as uid %q, want 65532", st["Uid"])
	}
	for _, k := range []string{"CapEff", "CapPrm", "CapInh"} {
		if got := hexCaps(t, st[k]); got != 0 {
			t.Errorf("flowtap %s = %#x after attaching, want 0", k, got)
		}
	}
	if got := hexCaps(t, st["CapBnd"]); got != wantCaps {
		t.Errorf("flowtap CapBnd = %#x, want %#x (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON)", got, uint64(wantCaps))
	}
	if st["NoNewPrivs"] != "1" {
		t.Errorf("flowtap NoNewPrivs = %q, want 1", st["NoNewPrivs"])
	}
	if got := hexCaps(t, st["CapAmb"]); got != 0 {
		t.Errorf("flowtap CapAmb = %#x, want 0: ambient capabilities would pass to the plugins", got)
	}
	children := 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil || testutil.ParentPID(child) != pid {
			continue
		}
		children++
		cs := procStatus(t, child)
		if got := hexCaps(t, cs["CapEff"]) | hexCaps(t, cs["CapPrm"]) | hexCaps(t, cs["CapAmb"]) | hexCaps(t, cs["CapInh"]); got != 0 || cs["NoNewPrivs"] != "1" {
			t.Errorf("child %d (%s) of flowtap holds capabilities %#x (NoNewPrivs %s), want none and NoNewPrivs", child, cs["Name"], got, cs["NoNewPrivs"])
		}
	}
	if children == 0 {
		t.Error("flowtap has no child process: the stdout sink plugin should be running")
	}
	t.Logf("flowtap (pid %d): uid %s, CapEff %s, CapAmb %s; %d child process(es) without capabilities",
		pid, strings.Fields(st["Uid"])[0], st["CapEff"], st["CapAmb"], children)
}
