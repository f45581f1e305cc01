// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowtap/flowtap/bpf"
	"github.com/flowtap/flowtap/internal/e2e/harness"
	"github.com/flowtap/flowtap/internal/privdrop"
	"github.com/flowtap/flowtap/internal/privtest"
)

// keptCaps are the capabilities a root flowtap keeps once its programs
// are attached: CAP_KILL, CAP_SETGID, CAP_SETUID, CAP_SYS_PTRACE
// (cmd/flowtap keptCapabilities says why).
const keptCaps = 1<<5 | 1<<6 | 1<<7 | 1<<19

// TestDroppedPrivileges: once its programs are attached, a root flowtap's
// /proc/<pid>/status shows only CAP_KILL, CAP_SETGID, CAP_SETUID and
// CAP_SYS_PTRACE (and CAP_BPF where the kernel needs it, before Linux
// 5.19), in every set, no ambient or inheritable capability, NoNewPrivs,
// and its seccomp filter on every thread; its sink plugins run as an
// unprivileged user with no capability at all, NoNewPrivs, and flowtap's
// filter and their own. What flowtap dropped it did not need: a connection held
// idle across two idle timeouts (3 s) is kept alive by the socket
// snapshots, which flowtap asks the kernel for after the drop, and ends
// with its FIN, not evicted.
func TestDroppedPrivileges(t *testing.T) {
	privtest.Require(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	bin := harness.Binaries(t)
	a := harness.Start(t, bin, "--output", "json", "--events", "net_flow_tcp_end", "--flow-idle-timeout", "3s")
	defer a.Stop(t)
	if !a.WaitLog("privileges dropped", 10*time.Second) {
		t.Fatalf("no 'privileges dropped' in the log:\n%s", a.Log())
	}
	st, err := privdrop.ReadStatus(fmt.Sprint(a.PID()))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("flowtap %d: Uid %v CapEff %s CapBnd %s NoNewPrivs %v Seccomp %d (%d filters)", a.PID(), st.UID, privdrop.Caps(st.Eff), privdrop.Caps(st.Bnd), st.NoNewPrivs, st.Seccomp, st.SeccompFilters)
	keptCaps := uint64(keptCaps)
	if need, err := bpf.MapReadsNeedCapability(); err != nil {
		t.Fatal(err)
	} else if need {
		keptCaps |= 1 << 39 // CAP_BPF, before Linux 5.19
	}
	if st.Eff != keptCaps || st.Prm != keptCaps || st.Bnd != keptCaps || st.Inh != 0 || st.Amb != 0 || !st.NoNewPrivs {
		t.Errorf("flowtap keeps Eff %v Prm %v Bnd %v Inh %v Amb %v NoNewPrivs %v; want only CAP_KILL, CAP_SETGID, CAP_SETUID, CAP_SYS_PTRACE and NoNewPrivs",
			privdrop.Caps(st.Eff), privdrop.Caps(st.Prm), privdrop.Caps(st.Bnd), privdrop.Caps(st.Inh), privdrop.Caps(st.Amb), st.NoNewPrivs)
	}
	// Every thread of flowtap runs under its seccomp filter (also those
	// from before it was installed); the plugin launcher thread under
	// the plugins' too; each plugin under both.
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", a.PID()))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("flowtap's threads: %v %v", tasks, err)
	}
	if st.Seccomp != 2 || st.SeccompFilters < 1 {
		t.Errorf("flowtap: Seccomp %d with %d filters, want mode 2 and its filter", st.Seccomp, st.SeccompFilters)
	}
	launchers := 0
	for _, task := range tasks {
		ts, err := privdrop.ReadStatus(fmt.Sprintf("%d/task/%s", a.PID(), filepath.Base(task)))
		if err != nil {
			continue // a thread that ended
		}
		switch {
		case ts.Seccomp == 2 && ts.SeccompFilters == st.SeccompFilters:
		case ts.Seccomp == 2 && ts.SeccompFilters == st.SeccompFilters+1 && launchers == 0:
			launchers++
		default:
			t.Errorf("flowtap thread %s: Seccomp %d with %d filters, want mode 2 with the process's %d (one more on the plugin launcher)", filepath.Base(task), ts.Seccomp, ts.SeccompFilters, st.SeccompFilters)
		}
	}
	plugins := children(a.PID())
	if len(plugins) == 0 {
		t.Fatal("flowtap runs no plugin")
	}
	for _, pid := range plugins {
		ps, err := privdrop.ReadStatus(fmt.Sprint(pid))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("plugin %d: Uid %v CapEff %#x CapBnd %#x NoNewPrivs %v Seccomp %d (%d filters)", pid, ps.UID, ps.Eff, ps.Bnd, ps.NoNewPrivs, ps.Seccomp, ps.SeccompFilters)
		if ps.Seccomp != 2 || ps.SeccompFilters != st.SeccompFilters+1 {
			t.Errorf("plugin %d: Seccomp %d with %d filters, want flowtap's %d and its own", pid, ps.Seccomp, ps.SeccompFilters, st.SeccompFilters)
		}
		if len(ps.UID) == 0 || ps.UID[0] == "0" || ps.Eff|ps.Prm|ps.Bnd|ps.Inh|ps.Amb != 0 || !ps.NoNewPrivs {
			t.Errorf("plugin %d: uid %v, capabilities eff %#x prm %#x bnd %#x inh %#x amb %#x, NoNewPrivs %v; want an unprivileged user, none, and NoNewPrivs",
				pid, ps.UID, ps.Eff, ps.Prm, ps.Bnd, ps.Inh, ps.Amb, ps.NoNewPrivs)
		}
	}

	ln := loopback(t)
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	local := c.LocalAddr().(*net.TCPAddr).Port
	time.Sleep(7 * time.Second) // idle past two idle timeouts
	c.Close()
	ok := a.WaitEvents(1, func(ev harness.Event) bool {
		return ev.Event == "net_flow_tcp_end" && int(ev.Fields.SrcPort) == local && ev.Fields.ConnDirection == "outgoing"
	}, 10*time.Second)
	if !ok {
		t.Fatalf("no end for the idle connection:\n%s", a.Log())
	}
	for _, ev := range a.Events() {
		if int(ev.Fields.SrcPort) == local && ev.Fields.ConnDirection == "outgoing" && ev.Fields.CloseReason != "fin" {
			t.Errorf("the idle connection ended %q, want fin: its snapshots did not keep it alive after the drop", ev.Fields.CloseReason)
		}
	}
}

// sockets lists the Unix socket files under dir.
func sockets(dir string) []string {
	var out []string
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type()&fs.ModeSocket != 0 {
			out = append(out, path)
		}
		return nil
	})
	return out
}

// TestNoSocketLeftAfterPluginKills kills flowtap's sink plugin with
// SIGKILL five times: each time the supervisor starts a new one, and no
// socket of a killed plugin is left behind, neither in the temporary
// directory (where go-plugin puts them by default) nor in flowtap's
// private socket directory; once flowtap exits, none at all.
func TestNoSocketLeftAfterPluginKills(t *testing.T) {
	privtest.Require(t)
	bin := harness.Binaries(t)
	tmp := t.TempDir()
	cfg := writeConfig(t, `
pipelines:
  - name: p
    events: [flows]
    sinks:
      - plugin: stdout
        restart: {initial_backoff: 50ms, max_attempts: 10}
`)
	a := harness.StartWith(t, bin, harness.Options{Args: []string{"--config", cfg}, DiscardStdout: true, Env: []string{"TMPDIR=" + tmp}})
	private := filepath.Join("/run/flowtap", fmt.Sprint(a.PID()))
	all := func() []string { return append(sockets(tmp), sockets(private)...) }
	for i := range 5 {
		plugins := children(a.PID())
		if len(plugins) != 1 {
			t.Fatalf("kill %d: flowtap has %d child processes %v, want its sink plugin", i+1, len(plugins), plugins)
		}
		if err := syscall.Kill(plugins[0], syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		restarted := false
		for deadline := time.Now().Add(10 * time.Second); !restarted && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			now := children(a.PID())
			restarted = len(now) == 1 && now[0] != plugins[0] && strings.Count(a.Log(), "sink plugin restarted") > i
		}
		if !restarted {
			t.Fatalf("kill %d: no new plugin within 10 s\n%s", i+1, a.Log())
		}
	}
	if s := all(); len(s) != 1 {
		t.Errorf("after 5 kills, %d sockets: %v; want only the running plugin's", len(s), s)
	}
	a.Stop(t)
	if s := all(); len(s) != 0 {
		t.Errorf("after flowtap exited, sockets are left: %v", s)
	}
	if _, err := os.Stat(private); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("flowtap's socket directory %s is left behind (%v)", private, err)
	}
}

// TestBlockDeadSinkExitsNonZero: a sink with the block policy whose plugin
// hangs holds events when flowtap is stopped; shutdown waits its
// drain_timeout (2 s), then the events are lost, logged as such, and
// flowtap exits with status 1.
func TestBlockDeadSinkExitsNonZero(t *testing.T) {
	privtest.Require(t)
	bin := harness.Binaries(t)
	flaky := flakyPlugin(t)
	cfg := writeConfig(t, fmt.Sprintf(`
pipelines:
  - name: p
    events: [flows]
    sinks:
      - plugin: %s
        config: {hang_after: 1}
        queue: {policy: block, drain_timeout: 2s}
`, flaky))
	a := harness.StartWith(t, bin, harness.Options{Args: []string{"--config", cfg}, DiscardStdout: true})
	ln := loopback(t)
	dialMany(t, "tcp4", ln, 5)
	time.Sleep(500 * time.Millisecond) // a batch reaches the plugin, which hangs
	start := time.Now()
	err := a.Signal(syscall.SIGTERM, time.Minute)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("flowtap exited with %v, want status 1\n%s", err, a.Log())
	}
	if d := time.Since(start); d < 2*time.Second {
		t.Errorf("flowtap exited %v after SIGTERM: it did not wait the drain timeout", d)
	}
	log := a.Log()
	for _, want := range []string{"events lost", "drain timeout"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log does not say %q:\n%s", want, log)
		}
	}
}
