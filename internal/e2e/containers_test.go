// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowtap/flowtap/internal/e2e/harness"
	"github.com/flowtap/flowtap/internal/privtest"
	"github.com/flowtap/flowtap/internal/testutil"
)

// The container runtimes of the workload identity tests come from
// Debian's packages (make deps): containerd, its runc shim, ctr, dockerd.
// The tests start the daemons themselves, with their state in a temporary
// directory, and stop them by the PID they started.

// needTools skips (outside CI) or fails (in CI, where make deps installs
// them) when a runtime's programs are missing.
func needTools(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		testutil.NeedTool(t, n)
	}
}

// daemon is a runtime daemon a test started.
type daemon struct {
	cmd  *exec.Cmd
	dir  string
	sock string
	log  *bytes.Buffer
}

// startDaemon starts name with args, logging into a buffer, waits until
// sock accepts connections, and stops it (SIGTERM, then SIGKILL) at the
// end of the test, unmounting whatever it left mounted under dir.
func startDaemon(t *testing.T, dir, sock, name string, args ...string) *daemon {
	t.Helper()
	d := &daemon{dir: dir, sock: sock, log: &bytes.Buffer{}}
	d.cmd = exec.Command(name, args...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			d.cmd.Process.Kill()
			<-done
		}
		unmountUnder(t, dir)
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
			return d
		}
		select {
		case err := <-done:
			t.Fatalf("%s exited: %v\n%s", name, err, d.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not open %s in 30 s:\n%s", name, sock, d.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// unmountUnder lazily unmounts every mount below dir, deepest first, so
// that the temporary directory can be removed.
func unmountUnder(t *testing.T, dir string) {
	raw, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	var mounts []string
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
			mounts = append(mounts, f[1])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := syscall.Unmount(mounts[i], syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			t.Logf("unmount %s: %v", mounts[i], err)
		}
	}
}

// startContainerd starts containerd with its state under a temporary
// directory and returns its API socket. The CRI plugin is off: the tests
// play the kubelet through the API (ctr) themselves.
func startContainerd(t *testing.T) *daemon {
	needTools(t, "containerd", "containerd-shim-runc-v2", "runc", "ctr")
	dir := shortTempDir(t, "ftcd")
	sock := filepath.Join(dir, "c.sock")
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc")
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return startDaemon(t, dir, sock, "containerd", "--config", path)
}

// shortTempDir is a temporary directory with a short path: unix socket
// paths are limited to 107 bytes, and t.TempDir's carry the test's name.
func shortTempDir(t *testing.T, prefix string) string {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unmountUnder(t, dir)
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	return dir
}

// buildClientImage builds testdata/netclient static and packs it as the
// only file of an image, a docker-archive tar (which both docker load
// and ctr images import read) named ref, without any registry.
func buildClientImage(t *testing.T, dir, ref string) string {
	t.Helper()
	bin := filepath.Join(dir, "netclient")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./testdata/netclient")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build netclient: %v\n%s", err, out)
	}
	app, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	put := func(tw *tar.Writer, name string, mode int64, data []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(data)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	put(tw, "app", 0o755, app)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	layerID := sum(layer.Bytes())
	config, err := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Entrypoint": []string{"/app"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + layerID}},
	})
	if err != nil {
		t.Fatal(err)
	}
	configName := sum(config) + ".json"
	manifest, err := json.Marshal([]map[string]any{{
		"Config": configName, "RepoTags": []string{ref}, "Layers": []string{layerID + "/layer.tar"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var archive bytes.Buffer
	aw := tar.NewWriter(&archive)
	put(aw, layerID+"/layer.tar", 0o644, layer.Bytes())
	put(aw, configName, 0o644, config)
	put(aw, "manifest.json", 0o644, manifest)
	if err := aw.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "image.tar")
	if err := os.WriteFile(path, archive.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// run runs a command with a deadline and fails the test on an error.
func run(t *testing.T, limit time.Duration, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// startDockerd starts Docker Engine on the test's containerd, with its
// state under a temporary directory and no networking of its own (the
// containers use the host's network), and returns it.
func startDockerd(t *testing.T, containerd *daemon) *daemon {
	needTools(t, "dockerd")
	dir := shortTempDir(t, "ftdk")
	sock := filepath.Join(dir, "d.sock")
	return startDaemon(t, dir, sock, "dockerd",
		"--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "pid"), "-H", "unix://"+sock, "--containerd", containerd.sock,
		"--bridge", "none", "--iptables=false", "--ip-masq=false", "--userland-proxy=false")
}

// dockerAPI calls Docker Engine's API at sock: method, path, a JSON or
// tar body; it returns the response body and fails on a status >= 300.
func dockerAPI(t *testing.T, sock, method, path, contentType string, body []byte) []byte {
	t.Helper()
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}}
	req, err := http.NewRequest(method, "http://docker/v1.41"+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("docker API %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Fatalf("docker API %s %s: %s: %s", method, path, resp.Status, out)
	}
	return out
}

// countingListener accepts connections on a loopback port until the
// test ends, reading what each sends: the host side of the containers'
// connections.
func countingListener(t *testing.T) net.Listener {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				io.Copy(io.Discard, c)
			}()
		}
	}()
	return ln
}

// TestContainerIdentity runs real containers under Debian's containerd
// and Docker Engine, started by the test, against flowtap: each container
// connects to a listener of this process over loopback (the containers
// share the host's network), and every flow event of the container's
// side carries its container id and runtime, and — from a second after
// flowtap first saw the container on — its name, image, and for the
// pod-like container (created through containerd's API with the labels
// the kubelet sets) its pod; the host side's events say host. A second
// pipeline, filtered on pod_namespace=payments, gets the pod's events and
// nothing else. Every begin joins its end by flow_id.
func TestContainerIdentity(t *testing.T) {
	privtest.Require(t)
	started := time.Now()
	containerd := startContainerd(t)
	dockerd := startDockerd(t, containerd)
	t.Logf("containerd and dockerd up in %v", time.Since(started).Round(time.Millisecond))

	dir := shortTempDir(t, "ftimg")
	const ref = "localhost/flowtap-test:1"
	image := buildClientImage(t, dir, ref)
	run(t, time.Minute, "ctr", "-a", containerd.sock, "-n", "k8s.io", "images", "import", image)
	tarball, err := os.ReadFile(image)
	if err != nil {
		t.Fatal(err)
	}
	dockerAPI(t, dockerd.sock, http.MethodPost, "/images/load?quiet=1", "application/x-tar", tarball)
	t.Logf("image %s imported into both in %v", ref, time.Since(started).Round(time.Millisecond))

	ln := countingListener(t)
	port := ln.Addr().(*net.TCPAddr).Port
	podFile := filepath.Join(sharedDir(t), "pod.jsonl") // the file sink runs unprivileged
	cfg := filepath.Join(dir, "flowtap.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`capture:
  workload:
    containerd_socket: %s
    docker_socket: %s
    podman_socket: none
    pod_labels: [app, missing]
pipelines:
  - name: all
    events: [flows]
    filter: dst_port=%d
    sinks: [{plugin: stdout, config: {format: json}}]
  - name: payments
    events: [flows]
    filter: pod_namespace=payments
    sinks: [{plugin: file, config: {path: %s}}]
`, containerd.sock, dockerd.sock, port, podFile)), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := harness.Binaries(t)
	a := harness.Start(t, bin, "--config", cfg)

	// The pod-like container: a kubelet-made container as containerd's
	// API holds it (namespace k8s.io, the kubelet's labels; the cgroup
	// path /k8s.io/<id>).
	podID := strings.Repeat("c0ffee", 11)[:64]
	const podUID = "6f1d2c3b-4a59-4e8f-9b7a-0c1d2e3f4a5b"
	const conns = 12 // 200 ms apart: 2.2 s of connections
	t0 := time.Now()
	run(t, time.Minute, "ctr", "-a", containerd.sock, "-n", "k8s.io", "run", "--rm", "--net-host",
		"--label", "io.kubernetes.pod.name=web-0", "--label", "io.kubernetes.pod.namespace=payments",
		"--label", "io.kubernetes.pod.uid="+podUID, "--label", "io.kubernetes.container.name=client",
		"--label", "app=web", ref, podID, "/app", ln.Addr().String(), fmt.Sprint(conns))
	t.Logf("containerd container ran in %v", time.Since(t0).Round(time.Millisecond))

	// A Docker container, named, on the same listener.
	t1 := time.Now()
	var created struct{ ID string }
	body, _ := json.Marshal(map[string]any{"Image": ref, "Cmd": []string{ln.Addr().String(), fmt.Sprint(conns)},
		"HostConfig": map[string]any{"NetworkMode": "host"}})
	if err := json.Unmarshal(dockerAPI(t, dockerd.sock, http.MethodPost, "/containers/create?name=ftclient", "application/json", body), &created); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dockerAPI(t, dockerd.sock, http.MethodDelete, "/containers/"+created.ID+"?force=1", "", nil) })
	dockerAPI(t, dockerd.sock, http.MethodPost, "/containers/"+created.ID+"/start", "", nil)
	var waited struct{ StatusCode int }
	if err := json.Unmarshal(dockerAPI(t, dockerd.sock, http.MethodPost, "/containers/"+created.ID+"/wait", "", nil), &waited); err != nil || waited.StatusCode != 0 {
		t.Fatalf("docker container exited with %d (%v)", waited.StatusCode, err)
	}
	t.Logf("docker container ran in %v", time.Since(t1).Round(time.Millisecond))

	// Both containers' connections: a begin and an end on each side.
	want := 2 * conns * 4
	if !a.WaitEvents(want, func(ev harness.Event) bool { return ev.Event != evFailed }, 20*time.Second) {
		t.Errorf("flowtap reported %d flow events of the listener's port, want %d", len(a.Events()), want)
	}
	a.Stop(t)
	if log := a.Log(); !strings.Contains(log, "container runtimes") || !strings.Contains(log, `answering="containerd, docker"`) {
		t.Errorf("no INFO line naming the runtimes that answer:\n%s", log)
	}

	checkContainer(t, a.Events(), podID, harness.Context{ContainerID: podID, ContainerRuntime: "containerd", ContainerName: "client",
		ContainerImage: ref, PodName: "web-0", PodNamespace: "payments", PodUID: podUID, PodLabels: map[string]string{"app": "web"}}, conns)
	checkContainer(t, a.Events(), created.ID, harness.Context{ContainerID: created.ID, ContainerRuntime: "docker", ContainerName: "ftclient",
		ContainerImage: ref, PodLabels: map[string]string{}}, conns)

	// The host side: this process's accepted sockets.
	hostSide := 0
	for _, ev := range a.Events() {
		if ev.Fields.ConnDirection == "incoming" {
			hostSide++
			if c := ev.Context; c.ContainerID != "" || c.PodName != "" || c.PID != os.Getpid() {
				t.Errorf("host side %s %s: pid %d container %q pod %q, want this process (%d) and no container", ev.Event, ev.Fields.FlowID, c.PID, c.ContainerID, c.PodName, os.Getpid())
			}
		}
	}
	if hostSide != 2*conns*2 {
		t.Errorf("%d incoming events on the host side, want %d", hostSide, 2*conns*2)
	}
	checkFlowIDJoins(t, a.Events())

	// The payments pipeline: the pod's events only.
	raw, err := os.ReadFile(podFile)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var ev harness.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if ev.Context.PodNamespace != "payments" || ev.Context.ContainerID != podID {
			t.Errorf("pod_namespace=payments passed an event of %q/%q", ev.Context.PodNamespace, ev.Context.ContainerID)
		}
		n++
	}
	if n == 0 {
		t.Error("the pod_namespace=payments pipeline got nothing")
	}
	t.Logf("%d events of the pod through pod_namespace=payments; the whole test took %v", n, time.Since(started).Round(time.Millisecond))
}

// checkContainer checks the events of a container's side, found by the
// cgroup id of those that name the container: all of them are outgoing,
// one begin per connection; every one carries the container's id and
// runtime (from the cgroup's path, read at flowtap's first sight of it),
// and those from a second after the first on everything the runtime says
// (the first ones may not: the runtime is asked in the background).
func checkContainer(t *testing.T, evs []harness.Event, id string, want harness.Context, conns int) {
	t.Helper()
	var cgroup uint64
	for _, ev := range evs {
		if ev.Context.ContainerID == id {
			cgroup = ev.Context.CgroupID
			break
		}
	}
	if cgroup == 0 {
		t.Errorf("no event names container %s", id)
		return
	}
	var first int64
	begins, full, total := 0, 0, 0
	for _, ev := range evs {
		c := ev.Context
		if c.CgroupID != cgroup {
			continue
		}
		total++
		if first == 0 {
			first = ev.Timestamp
		}
		early := ev.Timestamp < first+int64(time.Second)
		if ev.Fields.ConnDirection != "outgoing" || c.Comm != "app" || c.Exe != "/app" && !(early && c.Exe == "") {
			t.Errorf("%s of container %s: direction %s exe %q comm %q, want outgoing from /app", ev.Event, id[:12], ev.Fields.ConnDirection, c.Exe, c.Comm)
		}
		if ev.Event == evBegin {
			begins++
		}
		got := harness.Context{ContainerID: c.ContainerID, ContainerRuntime: c.ContainerRuntime, ContainerName: c.ContainerName,
			ContainerImage: c.ContainerImage, PodName: c.PodName, PodNamespace: c.PodNamespace, PodUID: c.PodUID, PodLabels: c.PodLabels}
		if c.ContainerID != want.ContainerID || c.ContainerRuntime != want.ContainerRuntime {
			// From the cgroup's path, at flowtap's first sight of it.
			t.Errorf("%s of container %s %v after its first event: container id %q runtime %q, want them from the first event on",
				ev.Event, id[:12], time.Duration(ev.Timestamp-first), c.ContainerID, c.ContainerRuntime)
		}
		if reflect.DeepEqual(got, want) {
			full++
		} else if !early {
			t.Errorf("%s of container %s %v after its first event: %+v, want %+v", ev.Event, id[:12], time.Duration(ev.Timestamp-first), got, want)
		}
	}
	if begins != conns {
		t.Errorf("container %s: %d outgoing begins, want %d", id[:12], begins, conns)
	}
	t.Logf("container %s (%s): %d of its %d events complete", id[:12], want.ContainerRuntime, full, total)
}

// checkFlowIDJoins checks that every end has a begin of the same flow_id,
// direction and tuple, and that no two begins share one.
func checkFlowIDJoins(t *testing.T, evs []harness.Event) {
	t.Helper()
	begins := map[string]harness.Event{}
	for _, ev := range evs {
		f := ev.Fields
		switch ev.Event {
		case evBegin:
			if _, dup := begins[f.FlowID]; dup || f.FlowID == "" {
				t.Errorf("begin flow_id %q empty or used twice", f.FlowID)
			}
			begins[f.FlowID] = ev
		case evEnd:
			b, ok := begins[f.FlowID]
			if !ok || b.Fields.ConnDirection != f.ConnDirection || b.Fields.SrcPort != f.SrcPort || b.Fields.CommunityID != f.CommunityID {
				t.Errorf("end %s %s:%d: flow_id %q joins no begin of this endpoint", f.ConnDirection, f.Src, f.SrcPort, f.FlowID)
			}
		}
	}
}
