// SPDX-License-Identifier: Apache-2.0

package identity

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowtap/flowtap/events"
)

const testID = "3f4c0b5e8a9d7c6b1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d"

// fakeCgroupTree makes directories in the shapes of a cgroup2 mount: the
// index reads ids as directory inode numbers, as on cgroup v2, so any
// directory tree stands for one. It returns the root and the ids of a
// Kubernetes container's cgroup and of a host service's.
func fakeCgroupTree(t testing.TB) (root string, container, host uint64) {
	root = t.TempDir()
	cpath := filepath.Join(root, "kubepods.slice", "kubepods-burstable.slice",
		"kubepods-burstable-pod6f1d2c3b_4a59_4e8f_9b7a_0c1d2e3f4a5b.slice", "cri-containerd-"+testID+".scope")
	hpath := filepath.Join(root, "system.slice", "sshd.service")
	for _, p := range []string{cpath, hpath} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c, err := inode(cpath)
	if err != nil {
		t.Fatal(err)
	}
	h, err := inode(hpath)
	if err != nil {
		t.Fatal(err)
	}
	return root, c, h
}

// enrichUntil enriches a copy of c until done says it is filled, or fails
// after 5 s.
func enrichUntil(t *testing.T, e *Enricher, c events.Context, done func(*events.Context) bool) events.Context {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := c
		e.Enrich(&got, time.Now().UnixNano())
		if done(&got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("not enriched within 5 s: %+v (workload %+v)", got, got.Workload)
		}
		time.Sleep(time.Millisecond)
	}
}

func startEnricher(t *testing.T, opts Options) *Enricher {
	e := New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	e.Start(ctx)
	t.Cleanup(func() { cancel(); e.Close() })
	return e
}

func TestEnrichWorkloadFromCgroupTree(t *testing.T) {
	root, cid, hid := fakeCgroupTree(t)
	e := startEnricher(t, Options{CgroupRoot: root})

	c := events.Context{CgroupID: cid}
	first := c
	e.Enrich(&first, time.Now().UnixNano())
	if first.Workload != nil {
		t.Fatalf("first sight filled from an empty cache: %+v", first.Workload)
	}
	got := enrichUntil(t, e, c, func(c *events.Context) bool { return c.Workload != nil })
	w := got.Workload
	if w.ContainerID != testID || w.ContainerRuntime != RuntimeContainerd || w.PodUID != "6f1d2c3b-4a59-4e8f-9b7a-0c1d2e3f4a5b" || w.Host() {
		t.Errorf("container cgroup: %+v", w)
	}
	if w.ShortID() != testID[:12] {
		t.Errorf("short id %q", w.ShortID())
	}
	h := enrichUntil(t, e, events.Context{CgroupID: hid}, func(c *events.Context) bool { return c.Workload != nil })
	if !h.Workload.Host() {
		t.Errorf("host cgroup: %+v", h.Workload)
	}
	// A cgroup that does not exist stays unknown, and is not walked for
	// again and again.
	gone := events.Context{CgroupID: 1 << 60}
	for range 50 {
		g := gone
		e.Enrich(&g, time.Now().UnixNano())
		if g.Workload != nil {
			t.Fatalf("unknown cgroup got %+v", g.Workload)
		}
	}
	if s := e.Stats(); s.Walks > 3 {
		t.Errorf("%d walks of the cgroup tree for one unknown id", s.Walks)
	}
	// The caches count what they found and what not (the metrics' and
	// the stats line's flowtap_cache_*{cache="workload"}).
	cs := e.CacheStats()
	if cs.Entries < 3 || cs.Hits < 2 || cs.Misses < 51 {
		t.Errorf("cache stats %+v: want 3 entries, a hit for each cgroup found, a miss for each of the 51 unknown sights at least", cs)
	}
}

// TestEnrichWorkloadAtFirstSight: the first event of a cgroup whose
// process is still in it gets what the cgroup's path says at once (a
// short-lived process is gone before the resolver would answer): a host
// cgroup its final workload, not asked of the resolver; a container's
// its id, runtime and pod, asked of the resolver for names and images.
// A process that is no longer in the event's cgroup tells nothing: the
// resolver finds the cgroup by walking.
func TestEnrichWorkloadAtFirstSight(t *testing.T) {
	root, cid, hid := fakeCgroupTree(t)
	procRoot := t.TempDir()
	for pid, path := range map[int]string{
		100: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6f1d2c3b_4a59_4e8f_9b7a_0c1d2e3f4a5b.slice/cri-containerd-" + testID + ".scope",
		200: "/system.slice/sshd.service",
		300: "/system.slice/other.service", // moved since: not the event's cgroup
	} {
		dir := filepath.Join(procRoot, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		// A hybrid layout: v1 lines first, the v2 line "0::" last.
		content := "12:memory:/v1path\n1:name=systemd:/v1path\n0::" + path + "\n"
		if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e := startEnricher(t, Options{CgroupRoot: root, ProcRoot: procRoot})
	first := func(c events.Context) events.Context {
		e.Enrich(&c, time.Now().UnixNano())
		return c
	}

	h := first(events.Context{CgroupID: hid, PID: 200})
	if h.Workload == nil || !h.Workload.Host() {
		t.Fatalf("host cgroup's first event: workload %+v, want the host", h.Workload)
	}
	if s := e.Stats(); s.Asked != 0 {
		t.Errorf("a host cgroup known from its path was asked of the resolver (%d lookups)", s.Asked)
	}
	c := first(events.Context{CgroupID: cid, PID: 100})
	if w := c.Workload; w == nil || w.ContainerID != testID || w.ContainerRuntime != RuntimeContainerd || w.PodUID != "6f1d2c3b-4a59-4e8f-9b7a-0c1d2e3f4a5b" {
		t.Fatalf("container cgroup's first event: workload %+v, want its id, runtime and pod uid", w)
	}
	if s := e.Stats(); s.Asked != 1 {
		t.Errorf("container cgroup: %d lookups queued, want 1 (its names and image)", s.Asked)
	}
	if cs := e.CacheStats(); cs.Misses != 4 || cs.Hits != 0 {
		t.Errorf("cache stats %+v: want a miss for each first sight (two cgroups, two processes)", cs)
	}
	if again := first(events.Context{CgroupID: hid, PID: 200}); again.Workload != h.Workload {
		t.Errorf("second event of the host cgroup: %+v", again.Workload)
	}

	// Process 300 says it is in another cgroup than the event's: nothing
	// at first sight, the walk finds it.
	root2, _, hid2 := fakeCgroupTree(t)
	e2 := startEnricher(t, Options{CgroupRoot: root2, ProcRoot: procRoot})
	moved := events.Context{CgroupID: hid2, PID: 300}
	m := moved
	e2.Enrich(&m, time.Now().UnixNano())
	if m.Workload != nil {
		t.Fatalf("a process in another cgroup named the event's: %+v", m.Workload)
	}
	if got := enrichUntil(t, e2, moved, func(c *events.Context) bool { return c.Workload != nil }); !got.Workload.Host() {
		t.Errorf("walked: %+v, want the host", got.Workload)
	}
}

// TestEnrichCgroupFromOwner: an event the kernel gave no cgroup (before
// Linux 5.15) gets its owner's, and the workload that goes with it; an
// event without an owner, or of an owner gone, stays without.
func TestEnrichCgroupFromOwner(t *testing.T) {
	root, cid, _ := fakeCgroupTree(t)
	procRoot := t.TempDir()
	dir := filepath.Join(procRoot, "100")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6f1d2c3b_4a59_4e8f_9b7a_0c1d2e3f4a5b.slice/cri-containerd-" + testID + ".scope"
	if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte("0::"+path+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := startEnricher(t, Options{CgroupRoot: root, ProcRoot: procRoot})
	for i := range 2 { // read, then cached
		c := events.Context{PID: 100} // no start time from the kernel
		e.Enrich(&c, time.Now().UnixNano())
		if c.CgroupID != cid || c.Workload == nil || c.Workload.ContainerID != testID {
			t.Fatalf("event %d without a cgroup: cgroup %d workload %+v, want the owner's cgroup %d and its container", i, c.CgroupID, c.Workload, cid)
		}
	}
	// No owner, an owner gone, and an owner whose start time /proc does
	// not confirm (another process holds the pid, or the pid is of
	// another pid namespace): no cgroup.
	for _, c := range []events.Context{{PID: 0}, {PID: 101}, {PID: 100, ProcessStart: 42}} {
		e.Enrich(&c, time.Now().UnixNano())
		if c.CgroupID != 0 || c.Workload != nil {
			t.Errorf("pid %d start %d: cgroup %d workload %+v, want none", c.PID, c.ProcessStart, c.CgroupID, c.Workload)
		}
	}

	// This process, on the real /proc and cgroup2 mount, with its real
	// start time: its own cgroup.
	mount, own := ownCgroupMount(t)
	info, err := readProc("/proc", uint32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	start := bootToWall() + int64(info.startTicks)*clockTick
	live := startEnricher(t, Options{CgroupRoot: mount})
	c := events.Context{PID: uint32(os.Getpid()), ProcessStart: start}
	live.Enrich(&c, time.Now().UnixNano())
	if c.CgroupID != own {
		t.Errorf("this process: cgroup %d, want its own %d", c.CgroupID, own)
	}
}

// ownCgroupMount returns the cgroup2 mount and this process's cgroup id,
// or skips.
func ownCgroupMount(tb testing.TB) (string, uint64) {
	tb.Helper()
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		tb.Fatal(err)
	}
	var root string
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[2] == "cgroup2" {
			root = f[1]
		}
	}
	if root == "" {
		tb.Skip("no cgroup2 mount")
	}
	_, id, ok := ownCgroup("/proc", root, uint32(os.Getpid()))
	if !ok {
		tb.Skip("this process's cgroup is not under the cgroup2 mount")
	}
	return root, id
}

// TestEnrichProcess: a process's first event already names its
// executable and parent (read from /proc at first sight, not queued: a
// short-lived process would be gone before an answer came), a later one
// comes from the cache, and a start time that is not the process's (its
// pid reused) gets nothing of the process holding the pid now.
func TestEnrichProcess(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	info, err := readProc("/proc", uint32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	start := bootToWall() + int64(info.startTicks)*clockTick
	e := startEnricher(t, Options{})
	enrich := func(c events.Context) events.Context {
		e.Enrich(&c, time.Now().UnixNano())
		return c
	}

	// The kernel gave the start time: /proc's must agree.
	for i, what := range []string{"first event", "second event (cached)"} {
		got := enrich(events.Context{PID: uint32(os.Getpid()), ProcessStart: start})
		if got.Exe != exe || got.PPID != uint32(os.Getppid()) {
			t.Errorf("%s: exe %q ppid %d, want %q %d", what, got.Exe, got.PPID, exe, os.Getppid())
		}
		if cs := e.CacheStats(); cs.Misses != 1 || cs.Hits != uint64(i) {
			t.Errorf("%s: cache stats %+v, want 1 miss and %d hits", what, cs, i)
		}
	}
	// No start time from the kernel: /proc gives it.
	if got := enrich(events.Context{PID: uint32(os.Getpid())}); got.Exe != exe || absDiff(got.ProcessStart, start) > clockTick {
		t.Errorf("no kernel start time: exe %q start %d, want %q %d", got.Exe, got.ProcessStart, exe, start)
	}
	// A start time that is not this process's: the pid was reused, and
	// nothing of the process now holding it is reported.
	stale := events.Context{PID: uint32(os.Getpid()), ProcessStart: start - int64(time.Hour)}
	for range 2 {
		if g := enrich(stale); g.Exe != "" || g.PPID != 0 {
			t.Fatalf("a reused pid got the new process's details: %+v", g)
		}
	}
	if s := e.Stats(); s.Asked != 0 {
		t.Errorf("%d lookups queued for processes, want none", s.Asked)
	}
}

// TestEnrichProcessGone: a process that has exited and been reaped gets an
// empty entry at once (nothing to read), and no error.
func TestEnrichProcessGone(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	e := startEnricher(t, Options{})
	c := events.Context{PID: uint32(cmd.ProcessState.Pid()), ProcessStart: time.Now().UnixNano()}
	e.Enrich(&c, time.Now().UnixNano())
	if c.Exe != "" || c.PPID != 0 {
		t.Errorf("a reaped process got details: %+v", c)
	}
}

func TestParseStat(t *testing.T) {
	// A command name with spaces and parentheses.
	line := "4242 (my (odd) app) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10 0\n"
	p, err := parseStat([]byte(line))
	if err != nil || p.ppid != 17 || p.startTicks != 123456 {
		t.Errorf("parseStat: %+v, %v", p, err)
	}
	for _, bad := range []string{"", "1 (x", "1 (x) S 2"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q) accepted", bad)
		}
	}
}

// BenchmarkEnrichWarm is the per-event cost of enrichment with a warm
// cache: a container socket's context with its process, both cached. Its
// "none" case is the same loop without Enrich (copying the context): what
// enrichment adds is the difference.
func BenchmarkEnrichWarm(b *testing.B) {
	b.Run("enrich", benchEnrich(true))
	b.Run("none", benchEnrich(false))
	b.Run("enrich-64", benchEnrichSpread(true))
	b.Run("none-64", benchEnrichSpread(false))
}

// benchEnrichSpread is benchEnrich over 64 cgroups and processes in
// turn, so that every event looks its cgroup and process up in the maps.
func benchEnrichSpread(on bool) func(*testing.B) {
	return func(b *testing.B) {
		e := New(Options{CgroupRoot: "/sys/fs/cgroup"})
		var ctxs [64]events.Context
		for i := range ctxs {
			id, pid, start := uint64(1000+i), uint32(4000+i), int64(1_700_000_000_000_000_000+i)
			e.cgroups[id] = cgroupEntry{w: &events.Workload{ContainerID: testID, ContainerRuntime: RuntimeContainerd}}
			e.procs[pid] = procEntry{key: start, ppid: 1, start: start, exe: "/usr/bin/app"}
			ctxs[i] = events.Context{CgroupID: id, PID: pid, ProcessStart: start, PPID: 1}
		}
		now := time.Now().UnixNano()
		b.ReportAllocs()
		var sink events.Context
		i := 0
		for b.Loop() {
			ctx := ctxs[i&63]
			i++
			if on {
				e.Enrich(&ctx, now)
			}
			sink = ctx
		}
		if on && sink.Exe != "/usr/bin/app" {
			b.Fatalf("not enriched: %+v", sink)
		}
	}
}

func benchEnrich(on bool) func(*testing.B) {
	return func(b *testing.B) { benchmarkEnrich(b, on) }
}

func benchmarkEnrich(b *testing.B, on bool) {
	root, cid, _ := fakeCgroupTree(b)
	e := New(Options{CgroupRoot: root})
	e.cgroups[cid] = cgroupEntry{w: &events.Workload{ContainerID: testID, ContainerRuntime: RuntimeContainerd}}
	e.procs[4242] = procEntry{key: 1_700_000_000_000_000_000, ppid: 1, start: 1_700_000_000_000_000_000, exe: "/usr/bin/app"}
	c := events.Context{CgroupID: cid, PID: 4242, ProcessStart: 1_700_000_000_000_000_000, PPID: 1}
	now := time.Now().UnixNano()
	b.ReportAllocs()
	var sink events.Context
	for b.Loop() {
		ctx := c
		if on {
			e.Enrich(&ctx, now)
		}
		sink = ctx
	}
	if on && sink.Exe != "/usr/bin/app" {
		b.Fatalf("not enriched: %+v", sink)
	}
}

// BenchmarkReadProcEntry measures what the first event of a new process
// adds on the hot path: reading its stat and exe link from /proc.
func BenchmarkReadProcEntry(b *testing.B) {
	pid := uint32(os.Getpid())
	var p procEntry
	for b.Loop() {
		p = readProcEntry("/proc", pid, 0)
	}
	if p.exe == "" {
		b.Fatal("no exe read")
	}
}

// BenchmarkProcessCgroup measures what the first event of a new cgroup
// adds on the hot path: its process's /proc/PID/cgroup and one stat.
func BenchmarkProcessCgroup(b *testing.B) {
	root, id := ownCgroupMount(b)
	pid := uint32(os.Getpid())
	for b.Loop() {
		if _, ok := processCgroup("/proc", root, pid, id); !ok {
			b.Fatal("own cgroup not found")
		}
	}
}
