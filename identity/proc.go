// SPDX-License-Identifier: Apache-2.0

package identity

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// procInfo is what /proc says about a process.
type procInfo struct {
	ppid uint32
	// startTicks is the process's start time in clock ticks since boot
	// (field 22 of /proc/PID/stat).
	startTicks uint64
	exe        string
}

// clockTick is the unit of /proc/PID/stat's times: USER_HZ is 100 on
// every Linux architecture flowtap builds for.
const clockTick = 10_000_000 // ns

// readProc reads process pid's parent, start time and executable.
func readProc(procRoot string, pid uint32) (procInfo, error) {
	dir := filepath.Join(procRoot, strconv.FormatUint(uint64(pid), 10))
	raw, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return procInfo{}, err
	}
	info, err := parseStat(raw)
	if err != nil {
		return procInfo{}, fmt.Errorf("%s/stat: %w", dir, err)
	}
	// The link is unreadable for kernel threads and, without
	// CAP_SYS_PTRACE, for other users' processes: exe stays empty.
	info.exe, _ = os.Readlink(filepath.Join(dir, "exe"))
	return info, nil
}

// parseStat reads ppid (field 4) and starttime (field 22) of a
// /proc/PID/stat line. The command name (field 2) is in parentheses and
// may hold anything, spaces and ')' included: fields are counted after
// its last ')'.
func parseStat(raw []byte) (procInfo, error) {
	end := bytes.LastIndexByte(raw, ')')
	if end < 0 {
		return procInfo{}, fmt.Errorf("no command name")
	}
	fields := bytes.Fields(raw[end+1:])
	// fields[0] is field 3 (state).
	if len(fields) < 20 {
		return procInfo{}, fmt.Errorf("%d fields after the command name, want at least 20", len(fields))
	}
	ppid, err := strconv.ParseUint(string(fields[1]), 10, 32)
	if err != nil {
		return procInfo{}, fmt.Errorf("ppid: %w", err)
	}
	start, err := strconv.ParseUint(string(fields[19]), 10, 64)
	if err != nil {
		return procInfo{}, fmt.Errorf("starttime: %w", err)
	}
	return procInfo{ppid: uint32(ppid), startTicks: start}, nil
}
