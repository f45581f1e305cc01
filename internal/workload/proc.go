// SPDX-License-Identifier: Apache-2.0

package workload

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// maxComm is the kernel's TASK_COMM_LEN minus the terminating NUL.
const maxComm = 15

// commLinkEnv carries, into the process SetComm executes, the directory of
// the link it was executed through, for it to remove.
const commLinkEnv = "FLOWTAP_WORKLOAD_COMM_LINK"

// SetComm gives every thread of this process the comm name (truncated to
// 15 bytes, as the kernel does). Client and server run the same binary;
// renaming them is what makes their comm differ.
//
// The kernel keeps comm per thread, and a new thread inherits its
// creator's. Renaming the threads one by one (renameThreads) races with
// the Go runtime starting threads: a thread cloned from one not renamed
// yet, that shows up after the walk, keeps the old name, and so does
// every thread cloned from it later (the runtime's template thread, for
// one, which starts the threads of locked goroutines such as the network
// namespace ones). That happened once in the kernel matrix: one attempt's
// connect() ran on a thread still called flowtap-workloa. So SetComm
// executes this program again, with the same arguments and environment,
// through a symbolic link called name in a new temporary directory: the
// kernel names a new program after the base name of the path it was
// executed by, so every thread of it is called name from its start. The
// new program removes the directory when it calls SetComm, which then
// returns at once. Where the link cannot be made or executed (no
// writable temporary directory, say), it falls back to renaming the
// threads. When it executes the program again it does not return.
func SetComm(name string) error {
	if len(name) > maxComm {
		name = name[:maxComm]
	}
	if name == "" || strings.ContainsRune(name, '/') {
		return fmt.Errorf("set comm %q: want 1 to 15 bytes without a slash", name)
	}
	reexecuted := false
	if dir, ok := os.LookupEnv(commLinkEnv); ok {
		reexecuted = true
		os.Unsetenv(commLinkEnv)
		os.RemoveAll(dir)
	}
	if Self().Comm == name {
		return nil
	}
	if reexecuted {
		// Executed through the link and still not called name: do
		// not loop.
		return renameThreads(name)
	}
	exe, err := os.Executable()
	if err != nil {
		return renameThreads(name)
	}
	dir, err := os.MkdirTemp("", "flowtap-workload-comm-")
	if err != nil {
		return renameThreads(name)
	}
	link := filepath.Join(dir, name)
	if err := os.Symlink(exe, link); err != nil {
		os.RemoveAll(dir)
		return renameThreads(name)
	}
	// On success, Exec does not return.
	syscall.Exec(link, os.Args, append(os.Environ(), commLinkEnv+"="+dir))
	os.RemoveAll(dir)
	return renameThreads(name)
}

// renameThreads renames every thread of this process to name, as far as a
// walk of its threads can (see SetComm).
func renameThreads(name string) error {
	// A thread started while we walk the list may inherit the old name:
	// walk until one pass finds nothing to rename.
	for pass := 0; pass < 10; pass++ {
		tids, err := filepath.Glob("/proc/self/task/*/comm")
		if err != nil {
			return err
		}
		renamed := 0
		for _, p := range tids {
			cur, err := os.ReadFile(p)
			if err != nil {
				continue // the thread exited
			}
			if strings.TrimSuffix(string(cur), "\n") == name {
				continue
			}
			if err := os.WriteFile(p, []byte(name), 0); err != nil && !os.IsNotExist(err) {
				return fmt.Errorf("set comm %q: %w", name, err)
			}
			renamed++
		}
		if renamed == 0 {
			return nil
		}
	}
	return fmt.Errorf("set comm %q: threads kept appearing with another name", name)
}

// Self returns this process's pid and comm as the kernel reports them.
func Self() Process {
	comm, _ := os.ReadFile("/proc/self/comm")
	return Process{PID: os.Getpid(), Comm: strings.TrimSuffix(string(comm), "\n")}
}
