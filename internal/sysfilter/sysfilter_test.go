// SPDX-License-Identifier: Apache-2.0

//go:build amd64 || arm64

package sysfilter

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/flowtap/flowtap/internal/privdrop"
	"github.com/flowtap/flowtap/internal/testutil"
)

// TestProgramJumps checks both filters' shape: every jump lands inside the
// program, and the program ends in a return.
func TestProgramJumps(t *testing.T) {
	for name, denied := range map[string][]uintptr{"plugin": Plugin, "agent": Agent} {
		prog := Program(denied)
		if len(prog) > 4096 { // BPF_MAXINSNS
			t.Fatalf("%s: %d instructions", name, len(prog))
		}
		for i, ins := range prog {
			if ins.Code&0x07 != unix.BPF_JMP {
				continue
			}
			for _, off := range []uint8{ins.Jt, ins.Jf} {
				if to := i + 1 + int(off); to >= len(prog) {
					t.Fatalf("%s: instruction %d jumps to %d, past the end (%d)", name, i, to, len(prog))
				}
			}
		}
		if last := prog[len(prog)-1]; last.Code != unix.BPF_RET|unix.BPF_K {
			t.Errorf("%s: the program ends in %#x, not a return", name, last.Code)
		}
	}
	if slices.Contains(Agent, unix.SYS_BPF) || slices.Contains(Agent, unix.SYS_PERF_EVENT_OPEN) || !slices.Contains(Agent, unix.SYS_PTRACE) {
		t.Errorf("the agent's list must allow bpf and perf_event_open and deny ptrace: %v", Agent)
	}
}

// agentProbeEnv makes the test binary, started again, run
// TestAgentFilterProbe.
const agentProbeEnv = "FLOWTAP_AGENT_FILTER_PROBE"

// agentProbe is what TestAgentFilterProbe prints.
type agentProbe struct {
	Errno map[string]int
	// Threads: each thread's seccomp mode and filter count, from
	// /proc/self/task/*/status.
	Threads map[string][2]int
}

// TestAgentFilterProbe is not a test of its own: started with
// agentProbeEnv set, it starts threads, installs the agent filter on the
// whole process (InstallProcess), then makes calls the filter refuses and
// calls flowtap needs, each with arguments that change nothing, and prints
// what each returned and every thread's seccomp status.
func TestAgentFilterProbe(t *testing.T) {
	if os.Getenv(agentProbeEnv) != "1" {
		t.Skip("a helper of TestAgentFilter")
	}
	// Threads that exist before the filter: TSYNC must reach them.
	stop := make(chan struct{})
	defer close(stop)
	for range 3 {
		ready := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			close(ready)
			<-stop
		}()
		<-ready
	}
	if os.Getenv(agentProbeEnv+"_PLAIN") != "1" {
		if err := InstallProcess(Agent); err != nil {
			t.Fatal(err)
		}
	}
	raw := testutil.RawErrno
	pid := uintptr(os.Getpid())
	bad := ^uintptr(0)
	res := agentProbe{Errno: map[string]int{
		"ptrace":           raw(unix.SYS_PTRACE, unix.PTRACE_PEEKDATA, pid, 0),
		"process_vm_readv": raw(unix.SYS_PROCESS_VM_READV, pid, 0, 0, 0, 0, 0),
		"unshare":          raw(unix.SYS_UNSHARE, 0),
		"setns":            raw(unix.SYS_SETNS, bad, 0),
		"mount":            raw(unix.SYS_MOUNT, 0, 0, 0, 0, 0),
		"keyctl":           raw(unix.SYS_KEYCTL, bad),
		"clone3":           raw(unix.SYS_CLONE3, 0, 0),
		// What flowtap needs: allowed (the kernel's own answer to bad
		// arguments, not the filter's EPERM).
		"bpf": raw(unix.SYS_BPF, bad, 0, 0),
	}, Threads: map[string][2]int{}}
	res.Errno["exec"] = 0
	if err := exec.Command("true").Run(); err != nil {
		res.Errno["exec"] = -1
	}
	tasks, err := filepath.Glob("/proc/self/task/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		st, err := privdrop.ReadStatus("self/task/" + filepath.Base(task))
		if err != nil {
			continue // a thread that ended
		}
		res.Threads[filepath.Base(task)] = [2]int{st.Seccomp, st.SeccompFilters}
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		t.Fatal(err)
	}
}

// TestAgentFilter runs TestAgentFilterProbe in a new process: every thread
// of it, also those started before, runs under the filter; the denied
// calls answer EPERM (clone3 ENOSYS), bpf gets the kernel's own answer,
// and starting a program still works.
func TestAgentFilter(t *testing.T) {
	res, plain := runAgentProbe(t, true), runAgentProbe(t, false)
	t.Logf("filtered: %+v", res)
	t.Logf("plain: %+v", plain)
	// Without the filter these succeed or fail otherwise: the probe can
	// tell.
	for name, want := range map[string]syscall.Errno{
		"process_vm_readv": 0, "unshare": 0, "setns": unix.EBADF, "clone3": unix.EINVAL, "exec": 0,
	} {
		if got := syscall.Errno(plain.Errno[name]); got != want {
			t.Errorf("%s without the filter: %v, want %v", name, got, want)
		}
	}
	base, err := privdrop.ReadStatus("self")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Threads) < 4 {
		t.Errorf("%d threads seen, want the main one and the 3 started before the filter at least", len(res.Threads))
	}
	for tid, st := range res.Threads {
		if st[0] != 2 || st[1] != base.SeccompFilters+1 {
			t.Errorf("thread %s: Seccomp %d with %d filters, want mode 2 with one filter more than the test (%d)", tid, st[0], st[1], base.SeccompFilters)
		}
	}
	for name, errno := range res.Errno {
		want := int(unix.EPERM)
		switch name {
		case "clone3":
			want = int(unix.ENOSYS)
		case "exec":
			want = 0
		case "bpf":
			if errno == int(unix.EPERM) {
				t.Errorf("bpf under the agent filter: EPERM, want the kernel's answer to a bad command")
			}
			continue
		}
		if errno != want {
			t.Errorf("%s under the agent filter: %v, want %v", name, syscall.Errno(errno), syscall.Errno(want))
		}
	}
}

// runAgentProbe runs TestAgentFilterProbe in a new process, with the
// filter or without it.
func runAgentProbe(t *testing.T, filtered bool) agentProbe {
	t.Helper()
	env := []string{agentProbeEnv + "=1"}
	if !filtered {
		env = append(env, agentProbeEnv+"_PLAIN=1")
	}
	p := testutil.NewProbe("TestAgentFilterProbe", env...)
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var res agentProbe
	p.Wait(t, &res)
	return res
}
