// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestFindCgroup2MountIn(t *testing.T) {
	const hybrid = `sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /sys/fs/cgroup tmpfs ro,nosuid,nodev,noexec,mode=755 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,nosuid,nodev,noexec,relatime,xattr,name=systemd 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,nodev,noexec,relatime,memory 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nosuid,nodev,noexec,relatime 0 0
cgroup /sys/fs/cgroup/net_cls,net_prio cgroup rw,nosuid,nodev,noexec,relatime,net_cls,net_prio 0 0
`
	const pureV2 = `/dev/vda / ext4 rw,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate,memory_recursiveprot 0 0
`
	const v1Only = `proc /proc proc rw 0 0
tmpfs /sys/fs/cgroup tmpfs ro,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0
none /mnt/cgroup2-lookalike tmpfs rw 0 0
`
	const twoV2 = `cgroup2 /run/first cgroup2 rw 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw 0 0
`
	const escaped = `none /mnt/my\040cgroups cgroup2 rw 0 0
`
	for _, tc := range []struct {
		name, mounts, want string
	}{
		{"hybrid layout", hybrid, "/sys/fs/cgroup/unified"},
		{"pure v2", pureV2, "/sys/fs/cgroup"},
		{"first of two", twoV2, "/run/first"},
		{"escaped mount point", escaped, "/mnt/my cgroups"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := findCgroup2Mount(strings.NewReader(tc.mounts))
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	for _, tc := range []struct{ name, mounts string }{
		{"v1 only", v1Only},
		{"empty", ""},
		{"garbage", "x\n\n  \ncgroup2\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := findCgroup2Mount(strings.NewReader(tc.mounts))
			if err == nil {
				t.Fatalf("found %q in a table without cgroup2", got)
			}
			if !errors.Is(err, errNoCgroup2) || !strings.Contains(err.Error(), "no cgroup2 filesystem is mounted") {
				t.Fatalf("unclear error: %v", err)
			}
		})
	}
}

func TestFindCgroup2MountOnThisHost(t *testing.T) {
	got, err := FindCgroup2Mount()
	if err != nil {
		t.Skipf("this host has no cgroup v2 mount: %v", err)
	}
	if err := checkCgroup2Dir(got); err != nil {
		t.Fatalf("FindCgroup2Mount returned %q, which is not a cgroup2 directory: %v", got, err)
	}
}

func TestCheckCgroup2DirRejectsOtherFilesystems(t *testing.T) {
	err := checkCgroup2Dir(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "not on a cgroup v2 filesystem") {
		t.Fatalf("temp dir accepted as cgroup2 dir, err = %v", err)
	}
	err = checkCgroup2Dir("/nonexistent/flowtap")
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing dir: err = %v", err)
	}
}

func TestParseCapEff(t *testing.T) {
	const status = "Name:\tflowtap\nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\nCapEff:\t000001fffeffffff\nCapBnd:\t000001ffffffffff\n"
	got, err := parseCapEff(strings.NewReader(status))
	if err != nil {
		t.Fatal(err)
	}
	if got != 0x1fffeffffff {
		t.Fatalf("CapEff = %#x", got)
	}
	if _, err := parseCapEff(strings.NewReader("Name:\tx\n")); err == nil {
		t.Fatal("missing CapEff accepted")
	}
	if _, err := parseCapEff(strings.NewReader("CapEff:\tzz\n")); err == nil {
		t.Fatal("malformed CapEff accepted")
	}
}

func TestCheckCaps(t *testing.T) {
	bit := func(c ...int) uint64 {
		var m uint64
		for _, x := range c {
			m |= 1 << x
		}
		return m
	}
	const capSysResource = 24
	for _, tc := range []struct {
		name        string
		eff         uint64
		wantMissing []string // nil = allowed
		notMissing  []string
	}{
		{"root", 0x1ffffffffff, nil, nil},
		{"sys_admin alone", bit(capSysAdmin), nil, nil},
		{"bpf, net_admin and perfmon", bit(capBPF, capNetAdmin, capPerfmon), nil, nil},
		{"bpf and net_admin", bit(capBPF, capNetAdmin), []string{"CAP_PERFMON"}, []string{"CAP_BPF,", "CAP_NET_ADMIN,"}},
		{"nothing", 0, []string{"CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"}, nil},
		{"bpf only", bit(capBPF, capPerfmon), []string{"CAP_NET_ADMIN"}, []string{"CAP_BPF,", "CAP_PERFMON,"}},
		{"net_admin only", bit(capNetAdmin, capSysResource), []string{"CAP_BPF"}, []string{"missing CAP_NET_ADMIN"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkCaps(tc.eff)
			if tc.wantMissing == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("insufficient capabilities accepted")
			}
			msg := err.Error()
			for _, m := range tc.wantMissing {
				if !strings.Contains(msg, "missing") || !strings.Contains(msg, m) {
					t.Errorf("error %q does not name missing %s", msg, m)
				}
			}
			missingPart, _, _ := strings.Cut(msg, ";")
			for _, m := range tc.notMissing {
				if strings.Contains(missingPart+",", m) {
					t.Errorf("error %q names %s as missing although it is present", msg, m)
				}
			}
			if !strings.Contains(msg, "run as root or grant") {
				t.Errorf("error %q does not say how to fix it", msg)
			}
		})
	}
}
