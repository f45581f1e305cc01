// SPDX-License-Identifier: Apache-2.0

package workload

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// maxComm is the kernel's TASK_COMM_LEN minus the terminating NUL.
const maxComm = 15

// SetComm renames every thread of this process to name (truncated to 15
// bytes, as the kernel does). The kernel keeps comm per thread and a new
// thread inherits its creator's, so once every existing thread is renamed,
// so are the threads the Go runtime starts later. Client and server run the
// same binary; renaming them is what makes their comm differ.
func SetComm(name string) error {
	if len(name) > maxComm {
		name = name[:maxComm]
	}
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
