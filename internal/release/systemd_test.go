// SPDX-License-Identifier: Apache-2.0

package release

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowtap/flowtap/internal/privtest"
	"github.com/flowtap/flowtap/internal/testutil"
)

const unitFile = "../../deploy/systemd/flowtap.service"

// unitRoot lays out a root directory for 'systemd-analyze verify --root':
// flowtap where the unit runs it, the kill program ExecReload uses, this
// machine's systemd units (the targets the unit refers to), and unit as
// /etc/systemd/system/flowtap.service.
func unitRoot(t *testing.T, flowtap string, unit []byte) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"usr/local/bin", "usr/bin", "usr/lib/systemd", "etc/systemd/system"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("usr/bin", filepath.Join(root, "bin")); err != nil {
		t.Fatal(err)
	}
	copyFile(t, flowtap, filepath.Join(root, "usr/local/bin/flowtap"), 0o755)
	kill, err := filepath.EvalSymlinks("/bin/kill")
	if err != nil {
		t.Fatalf("/bin/kill (procps): %v", err)
	}
	copyFile(t, kill, filepath.Join(root, "usr/bin/kill"), 0o755)
	units, err := filepath.EvalSymlinks("/lib/systemd/system")
	if err != nil {
		t.Fatalf("this machine's systemd units: %v", err)
	}
	if out, err := exec.Command("cp", "-a", units, filepath.Join(root, "usr/lib/systemd/system")).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v\n%s", units, err, out)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/systemd/system/flowtap.service"), unit, 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, mode); err != nil {
		t.Fatal(err)
	}
}

// verify runs systemd-analyze verify on unit and returns what it said
// about flowtap.service: nothing, when the unit is right. (verify exits 0
// on a misspelt key or a bad value, which it only logs.)
func verify(t *testing.T, analyze, flowtap string, unit []byte) []string {
	t.Helper()
	root := unitRoot(t, flowtap, unit)
	out, err := exec.Command(analyze, "verify", "--root="+root, "flowtap.service").CombinedOutput()
	var complaints []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(l, "flowtap.service") {
			complaints = append(complaints, l)
		}
	}
	if err != nil && len(complaints) == 0 {
		complaints = append(complaints, err.Error()+": "+string(out))
	}
	return complaints
}

// TestSystemdUnitVerifies: systemd-analyze verify accepts the unit with
// flowtap installed where it says, and has something to say about a
// misspelt key, so the check can fail.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze := testutil.NeedTool(t, "systemd-analyze")
	unit, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	flowtap := filepath.Join(t.TempDir(), "flowtap")
	testutil.BuildBinary(t, "../../cmd/flowtap", flowtap)
	if c := verify(t, analyze, flowtap, unit); len(c) > 0 {
		t.Errorf("systemd-analyze verify %s:\n%s", unitFile, strings.Join(c, "\n"))
	}
	bad := []byte(strings.Replace(string(unit), "ProtectSystem=strict", "ProtectSystm=strict", 1))
	if c := verify(t, analyze, flowtap, bad); len(c) == 0 {
		t.Error("systemd-analyze verify said nothing about a misspelt ProtectSystem")
	}
}

// unitSettings reads the [Service] section's settings (a key given twice
// keeps both values).
func unitSettings(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "[") {
			section = l
			continue
		}
		if k, v, ok := strings.Cut(l, "="); ok && section == "[Service]" && !strings.HasPrefix(l, "#") {
			out[k] = append(out[k], v)
		}
	}
	return out
}

// TestSystemdUnitContract holds the unit to what the README promises:
// the three capabilities and no others, no privilege gains, a read-only
// system, the config in /etc/flowtap, SIGHUP for reload, bpf(2) allowed
// past the system call filter; and keeps its exposure score, as
// 'systemd-analyze security' rates it, at 2.5 or better.
func TestSystemdUnitContract(t *testing.T) {
	s := unitSettings(t)
	one := func(k string) string {
		if len(s[k]) != 1 {
			t.Errorf("%s set %d times, want once", k, len(s[k]))
			return ""
		}
		return s[k][0]
	}
	// CAP_SETPCAP: flowtap empties its plugins' bounding sets and its own
	// (deploy/README.md).
	caps := []string{"CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON", "CAP_SETPCAP"}
	for _, k := range []string{"AmbientCapabilities", "CapabilityBoundingSet"} {
		got := strings.Fields(one(k))
		slices.Sort(got)
		if !slices.Equal(got, caps) {
			t.Errorf("%s = %v, want %v", k, got, caps)
		}
	}
	for k, want := range map[string]string{
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"LimitMEMLOCK": "infinity", "ExecReload": "/bin/kill -HUP $MAINPID", "User": "flowtap",
	} {
		if got := one(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if got := one("ExecStart"); !strings.Contains(got, "--config /etc/flowtap/") || !strings.Contains(got, "--metrics-addr 127.0.0.1:9464") {
		t.Errorf("ExecStart %q does not read its config from /etc/flowtap/ or serve metrics on 127.0.0.1:9464", got)
	}
	if got := strings.Fields(one("SystemCallFilter")); !slices.Contains(got, "bpf") || !slices.Contains(got, "@system-service") {
		t.Errorf("SystemCallFilter %v: want @system-service and bpf", got)
	}
	if got := strings.Fields(one("RestrictAddressFamilies")); !slices.Equal(got, []string{"AF_UNIX", "AF_INET", "AF_INET6"}) {
		t.Errorf("RestrictAddressFamilies %v", got)
	}

	analyze := testutil.NeedTool(t, "systemd-analyze")
	out, err := exec.Command(analyze, "security", "--offline=yes", unitFile).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for flowtap.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("systemd-analyze security --offline=yes: exposure %.1f", score)
	if score > 2.5 {
		t.Errorf("exposure level %.1f, want 2.5 or better (README gives the score):\n%s", score, out)
	}
}

// expandSyscalls turns a SystemCallFilter= list into system call names,
// expanding each @group (and the groups inside it) the way this
// machine's systemd does.
func expandSyscalls(t *testing.T, analyze string, items []string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	seen := map[string]bool{}
	var add func(item string)
	add = func(item string) {
		if !strings.HasPrefix(item, "@") {
			out[item] = true
			return
		}
		if seen[item] {
			return
		}
		seen[item] = true
		list, err := exec.Command(analyze, "syscall-filter", item).Output()
		if err != nil {
			t.Fatalf("systemd-analyze syscall-filter %s: %v", item, err)
		}
		for _, l := range strings.Split(string(list), "\n")[1:] {
			l = strings.TrimSpace(l)
			if l != "" && !strings.HasPrefix(l, "#") {
				add(l)
			}
		}
	}
	for _, it := range items {
		add(it)
	}
	return out
}

// TestSystemdSandboxFitsFlowtap runs flowtap as the unit runs it, short of
// systemd itself (which is not this machine's init): as an unprivileged
// user whose ambient and bounding sets are exactly the unit's capabilities,
// with no_new_privs, under strace. It must start, report a loopback
// connection, and stop cleanly; and every system call that flowtap and its
// sink plugin made must be one the unit's SystemCallFilter= allows (the
// others would fail with EPERM), every socket family one
// RestrictAddressFamilies= allows.
func TestSystemdSandboxFitsFlowtap(t *testing.T) {
	privtest.Require(t)
	strace, setpriv, analyze := testutil.NeedTool(t, "strace"), testutil.NeedTool(t, "setpriv"), testutil.NeedTool(t, "systemd-analyze")
	s := unitSettings(t)
	if len(s["SystemCallFilter"]) != 1 || len(s["RestrictAddressFamilies"]) != 1 || len(s["AmbientCapabilities"]) != 1 {
		t.Fatal("the unit must set SystemCallFilter, RestrictAddressFamilies and AmbientCapabilities once each")
	}
	allowed := expandSyscalls(t, analyze, strings.Fields(s["SystemCallFilter"][0]))
	families := strings.Fields(s["RestrictAddressFamilies"][0])
	var caps []string
	for _, c := range strings.Fields(s["AmbientCapabilities"][0]) {
		caps = append(caps, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}
	capList := "-all," + strings.Join(caps, ",")

	// Binaries and config where the unprivileged user can read them.
	dir := testutil.TempDirMode(t, "flowtap-unit-", 0o755)
	build := exec.Command("go", "build", "-o", dir+"/", "./cmd/flowtap", "./cmd/flowtap-sink-stdout")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // as make build: flowtap drops its capabilities
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	trace := filepath.Join(t.TempDir(), "trace")
	// As the unit: metrics on loopback (a free port here), asked for
	// below so that serving them is in the trace too.
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cmd := exec.Command(strace, "-f", "-qq", "-o", trace, "--",
		setpriv, "--reuid=65532", "--regid=65532", "--clear-groups",
		"--inh-caps="+capList, "--ambient-caps="+capList, "--bounding-set="+capList, "--no-new-privs",
		filepath.Join(dir, "flowtap"), "run", "--output", "json", "--metrics-addr", metricsAddr)
	// The unit's PrivateTmp=: a /tmp of its own for the plugins' sockets.
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o1777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, 0o1777); err != nil {
		t.Fatal(err)
	}
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	agent := startAgent(t, cmd)

	// The traced process tree: strace, then flowtap (setpriv execs it).
	flowtap := 0
	for i := 0; i < 50 && flowtap == 0; i++ {
		flowtap = childOf(cmd.Process.Pid)
		time.Sleep(20 * time.Millisecond)
	}
	if flowtap == 0 {
		t.Fatal("no flowtap process under strace")
	}
	// Once attached, flowtap holds nothing: it runs as the unit's user,
	// and so do its plugins, which it needs no capability to restart or
	// kill. With the unit's CAP_SETPCAP it empties the bounding sets too.
	agent.waitLog(t, "privileges dropped", 30*time.Second)
	st := procStatus(t, flowtap)
	if uid := strings.Fields(st["Uid"]); uid[0] != "65532" || st["NoNewPrivs"] != "1" {
		t.Errorf("flowtap runs as uid %s, NoNewPrivs %s; want the unit's user and no_new_privs", st["Uid"], st["NoNewPrivs"])
	}
	for _, pid := range append([]int{flowtap}, childrenOf(flowtap)...) {
		ps := procStatus(t, pid)
		for _, k := range []string{"CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd"} {
			if hexCaps(t, ps[k]) != 0 {
				t.Errorf("process %d (%s) after attaching: %s = %s, want 0", pid, ps["Name"], k, ps[k])
			}
		}
	}

	port := loopbackConnection(t)
	agent.waitFlow(t, port)
	checkEndpoints(t, "http://"+metricsAddr)
	agent.stop(t, flowtap)

	data, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	callRE := regexp.MustCompile(`(?m)^\d+\s+([a-z0-9_]+)\(`)
	used := map[string]int{}
	for _, m := range callRE.FindAllSubmatch(data, -1) {
		used[string(m[1])]++
	}
	var refused []string
	for name := range used {
		if !allowed[name] {
			refused = append(refused, name)
		}
	}
	slices.Sort(refused)
	if len(refused) > 0 {
		t.Errorf("flowtap made system calls the unit's SystemCallFilter refuses: %v", refused)
	}
	famRE := regexp.MustCompile(`(?m)^\d+\s+socket(?:pair)?\((AF_[A-Z0-9]+)`)
	for _, m := range famRE.FindAllSubmatch(data, -1) {
		if !slices.Contains(families, string(m[1])) {
			t.Errorf("flowtap opened an %s socket, which RestrictAddressFamilies=%v refuses", m[1], families)
		}
	}
	t.Logf("%d distinct system calls, all allowed by SystemCallFilter=%s; bpf(2) called %d times, perf_event_open(2) %d", len(used), s["SystemCallFilter"][0], used["bpf"], used["perf_event_open"])
}

// childrenOf returns the child processes of pid.
func childrenOf(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if child, err := strconv.Atoi(e.Name()); err == nil && testutil.ParentPID(child) == pid {
			out = append(out, child)
		}
	}
	return out
}

// childOf returns a child process of pid, or 0.
func childOf(pid int) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if child, err := strconv.Atoi(e.Name()); err == nil && testutil.ParentPID(child) == pid {
			return child
		}
	}
	return 0
}
