// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// procMounts is where the kernel lists this process's mounts.
const procMounts = "/proc/mounts"

// FindCgroup2Mount returns the mount point of the cgroup v2 hierarchy as
// listed in /proc/mounts, e.g. "/sys/fs/cgroup" on a pure v2 system or
// "/sys/fs/cgroup/unified" in a hybrid layout. If several cgroup2 mounts
// exist, the first one listed wins.
func FindCgroup2Mount() (string, error) {
	f, err := os.Open(procMounts)
	if err != nil {
		return "", fmt.Errorf("find cgroup v2 mount: %w (is /proc mounted?)", err)
	}
	defer f.Close()
	return findCgroup2Mount(f)
}

// errNoCgroup2 is returned when no cgroup2 mount is listed.
var errNoCgroup2 = errors.New("no cgroup2 filesystem is mounted; mount one (e.g. mount -t cgroup2 none /sys/fs/cgroup/unified) or set the cgroup path explicitly")

// findCgroup2Mount parses mounts in /proc/mounts format (device, mount
// point, type, options, ...; octal escapes in the mount point) and returns
// the first mount point of type cgroup2.
func findCgroup2Mount(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || fields[2] != "cgroup2" {
			continue
		}
		return unescapeMountField(fields[1]), nil
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("find cgroup v2 mount: read mount table: %w", err)
	}
	return "", fmt.Errorf("find cgroup v2 mount: %w", errNoCgroup2)
}

// unescapeMountField undoes the octal escapes (\040 for space, \011 tab,
// \012 newline, \134 backslash) the kernel uses in /proc/mounts fields.
func unescapeMountField(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
