// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Linux capability numbers (include/uapi/linux/capability.h).
const (
	capNetAdmin = 12
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

var capNames = map[int]string{
	capNetAdmin: "CAP_NET_ADMIN",
	capSysAdmin: "CAP_SYS_ADMIN",
	capPerfmon:  "CAP_PERFMON",
	capBPF:      "CAP_BPF",
}

// CheckPrivileges reports whether this process has the capabilities that
// Open needs: CAP_BPF (create the maps, load the programs), CAP_NET_ADMIN
// (load the sock_ops and cgroup/connect programs, attach programs to a
// cgroup) and CAP_PERFMON (load the tracing and iterator programs:
// tp_btf/inet_sock_set_state, iter/task_file, iter/tcp; use
// bpf_skc_to_mptcp_sock and bpf_skc_to_tcp_sock), or CAP_SYS_ADMIN, which
// the kernel accepts in place of all three. It reads CapEff from /proc/self/status; the error names the
// missing capabilities and how to grant them.
func CheckPrivileges() error {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return fmt.Errorf("check privileges: %w (is /proc mounted?)", err)
	}
	defer f.Close()
	eff, err := parseCapEff(f)
	if err != nil {
		return fmt.Errorf("check privileges: %w", err)
	}
	return checkCaps(eff)
}

// parseCapEff returns the effective capability mask from text in the
// format of /proc/<pid>/status.
func parseCapEff(r io.Reader) (uint64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return 0, fmt.Errorf("parse CapEff %q: %w", strings.TrimSpace(v), err)
		}
		return mask, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read process status: %w", err)
	}
	return 0, fmt.Errorf("no CapEff line in process status")
}

// checkCaps decides whether the effective capability mask eff is enough
// for Open, and if not says which capabilities are missing.
func checkCaps(eff uint64) error {
	has := func(c int) bool { return eff&(1<<c) != 0 }
	if has(capSysAdmin) {
		return nil
	}
	var missing []string
	for _, c := range []int{capBPF, capNetAdmin, capPerfmon} {
		if !has(c) {
			missing = append(missing, capNames[c])
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("insufficient privileges to load and attach the flowtap BPF programs: missing %s; run as root or grant CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (or CAP_SYS_ADMIN), e.g. setcap cap_bpf,cap_net_admin,cap_perfmon+ep on the binary",
		strings.Join(missing, ", "))
}
