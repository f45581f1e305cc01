// SPDX-License-Identifier: Apache-2.0

//go:build amd64 || arm64

package host

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/flowtap/flowtap/internal/privdrop"
	"github.com/flowtap/flowtap/internal/testutil"
)

// probeEnv makes the test binary, started again, run TestSeccompProbe.
const probeEnv = "FLOWTAP_SECCOMP_PROBE"

// probeResult is what TestSeccompProbe prints: the errno each probe got (0
// for success), and the probing process's seccomp mode and filter count.
type probeResult struct {
	Errno          map[string]int
	Seccomp        int
	SeccompFilters int
}

// TestSeccompProbe is not a test of its own: started with probeEnv set
// (runProbe), it makes a system call of each kind the plugin filter
// refuses, each with arguments that change nothing (bad descriptors, null
// pointers, no flags), a clone with a namespace flag and a plain one, and
// prints what each returned.
func TestSeccompProbe(t *testing.T) {
	if os.Getenv(probeEnv) != "1" {
		t.Skip("a helper of TestPluginFilter")
	}
	raw := testutil.RawErrno
	pid := uintptr(os.Getpid())
	bad := ^uintptr(0) // -1: no such descriptor
	res := probeResult{Errno: map[string]int{
		// Other processes (this one: nothing is changed).
		"ptrace":           raw(unix.SYS_PTRACE, unix.PTRACE_PEEKDATA, pid, 0),
		"process_vm_readv": raw(unix.SYS_PROCESS_VM_READV, pid, 0, 0, 0, 0, 0),
		"pidfd_getfd":      raw(unix.SYS_PIDFD_GETFD, bad, 0, 0),
		// Namespaces: no flags, no descriptor.
		"unshare": raw(unix.SYS_UNSHARE, 0),
		"setns":   raw(unix.SYS_SETNS, bad, 0),
		// Kernel interfaces, with null or bad arguments.
		"bpf":             raw(unix.SYS_BPF, ^uintptr(0), 0, 0),
		"perf_event_open": raw(unix.SYS_PERF_EVENT_OPEN, 0, 0, bad, bad, 0),
		"userfaultfd":     raw(unix.SYS_USERFAULTFD, ^uintptr(0)),
		"io_uring_setup":  raw(unix.SYS_IO_URING_SETUP, 0, 0),
		"keyctl":          raw(unix.SYS_KEYCTL, ^uintptr(0)),
		"add_key":         raw(unix.SYS_ADD_KEY, 0, 0, 0, 0, 0),
		"mount":           raw(unix.SYS_MOUNT, 0, 0, 0, 0, 0),
		"fsopen":          raw(unix.SYS_FSOPEN, 0, 0),
		"chroot":          raw(unix.SYS_CHROOT, 0),
		// clone3 with a size no kernel accepts: nothing is cloned.
		"clone3": raw(unix.SYS_CLONE3, 0, 0),
	}}
	// clone with and without a namespace flag, through Go's own fork.
	errnoOf := func(err error) int {
		var e syscall.Errno
		if errors.As(err, &e) {
			return int(e)
		}
		if err != nil {
			return -1
		}
		return 0
	}
	userns := exec.Command("true")
	userns.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWUSER}
	res.Errno["clone_newuser"] = errnoOf(userns.Run())
	res.Errno["clone"] = errnoOf(exec.Command("true").Run())
	st, err := privdrop.ReadStatus("self")
	if err != nil {
		t.Fatal(err)
	}
	res.Seccomp, res.SeccompFilters = st.Seccomp, st.SeccompFilters
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		t.Fatal(err)
	}
}

// runProbe runs TestSeccompProbe in a new process, started from the
// plugin launcher thread (launched) or from an ordinary one.
func runProbe(t *testing.T, launched bool) probeResult {
	t.Helper()
	p := testutil.NewProbe("TestSeccompProbe", probeEnv+"=1")
	if launched {
		l, err := getLauncher()
		if err != nil {
			t.Fatal(err)
		}
		if l.noFilter != nil {
			t.Fatalf("the launcher installed no filter: %v", l.noFilter)
		}
		if err := l.start(p.Cmd); err != nil {
			t.Fatal(err)
		}
	} else if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var res probeResult
	p.Wait(t, &res)
	return res
}

// TestPluginFilter starts a process from the plugin launcher thread, as
// every plugin is, and checks that the seccomp filter is on it and
// refuses each probed call (EPERM; clone3 ENOSYS, so that C libraries
// fall back to clone), while a plain fork still works. The same probe
// started from another thread shows the calls answer otherwise without
// the filter: the probe can tell.
func TestPluginFilter(t *testing.T) {
	filtered := runProbe(t, true)
	plain := runProbe(t, false)
	t.Logf("from the launcher: %+v", filtered)
	t.Logf("from another thread: %+v", plain)
	if filtered.Seccomp != 2 || filtered.SeccompFilters != plain.SeccompFilters+1 {
		t.Errorf("launched probe: Seccomp %d with %d filters, want mode 2 with one filter more than without (%d)",
			filtered.Seccomp, filtered.SeccompFilters, plain.SeccompFilters)
	}
	for name, errno := range filtered.Errno {
		want := int(unix.EPERM)
		switch name {
		case "clone3":
			want = int(unix.ENOSYS)
		case "clone":
			want = 0
		}
		if errno != want {
			t.Errorf("%s under the filter: %v, want %v", name, syscall.Errno(errno), syscall.Errno(want))
		}
	}
	// Without the filter these succeed or fail otherwise.
	for name, want := range map[string]syscall.Errno{
		"process_vm_readv": 0, "unshare": 0, "setns": unix.EBADF, "clone3": unix.EINVAL, "clone": 0,
	} {
		if got := syscall.Errno(plain.Errno[name]); got != want {
			t.Errorf("%s without the filter: %v, want %v", name, got, want)
		}
	}
}
