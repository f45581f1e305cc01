// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ParentPID returns the parent of process pid, or 0 if pid is not
// running. Tests check it before they signal a plugin they started.
func ParentPID(pid int) int {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command, which is in parentheses: state, ppid.
	i := strings.LastIndexByte(string(stat), ')')
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}
