// SPDX-License-Identifier: Apache-2.0

package identity

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/flowtap/flowtap/events"
)

// Options configure an Enricher. Zero values take the defaults.
type Options struct {
	// CgroupRoot is the cgroup2 mount the events' cgroup ids belong to.
	// Required for container identity; "" leaves Workload unset.
	CgroupRoot string
	// ProcRoot is the proc file system; default /proc.
	ProcRoot string
	// Runtimes are asked, in order, for the names, images and pods of
	// containers. None: container ids and pod uids only.
	Runtimes []Runtime
	// PodLabels are the label keys reported in pod_labels.
	PodLabels []string
	// CacheSize bounds each cache (cgroups, containers, processes).
	// Default DefaultCacheSize.
	CacheSize int
	// Logger receives the resolver's log lines.
	Logger hclog.Logger
}

// DefaultCacheSize bounds the caches by default.
const DefaultCacheSize = 16384

// Enricher fills the workload and process fields of events' contexts
// (Context.Workload, Exe, and PPID and ProcessStart where the kernel left
// them out) from caches. A process seen for the first time is read from
// /proc at once (its stat and exe link, a few µs once per process): a
// short-lived process would be gone before a queued lookup ran, and its
// events would never name their executable. A cgroup's workload is
// resolved on a goroutine of its own: the hot path never waits for a
// directory walk or a runtime's API. A context whose cgroup is not known
// yet stays without a workload (Workload nil), and a later event of the
// same cgroup gets the answer, usually within milliseconds.
//
// Enrich is for one goroutine (the derivation's); Start and Close for
// another. The caches are the hot path's own: answers come back over a
// channel that Enrich drains, so a lookup takes no lock.
type Enricher struct {
	opts Options
	log  hclog.Logger

	// The hot path's state: one map lookup per cgroup and per process,
	// none when the event's cgroup or process is the previous event's
	// (lastCG, lastProc: the last entries found complete; apply clears
	// them, since an answer can change an entry).
	cgroups map[uint64]cgroupEntry
	procs   map[uint32]procEntry
	// owners are the cgroups of processes whose events came without one
	// (the kernel gives none before Linux 5.15), by pid.
	owners   map[uint32]ownerCgroup
	lastCG   uint64
	lastW    *events.Workload
	lastPID  uint32
	lastProc procEntry

	requests chan request
	answers  chan answer
	done     chan struct{}
	stats    stats
	counts   cacheCounts
}

// cgroupEntry is a cgroup's workload, and when to ask for it again.
type cgroupEntry struct {
	w *events.Workload // nil: asked for, not known yet
	// askAt is when to ask the resolver again (0: never): for a cgroup
	// not known yet, or a container no runtime described yet.
	askAt int64
}

// ownerCgroup is a process's cgroup id as /proc said at read, for start
// time key; read again after expires.
type ownerCgroup struct {
	key, expires int64
	id           uint64
}

// procEntry is what Enrich fills a context with for a process. The map is
// keyed by pid; key is the start time the entry was read for (0 when the
// kernel did not give one), so a reused pid misses.
type procEntry struct {
	key   int64
	ppid  uint32
	start int64 // ns since the Unix epoch, from /proc
	exe   string
	// expires is when an entry keyed without a start time must be read
	// again (0: never): its pid may be reused.
	expires int64
}

// request asks the resolver for a cgroup's workload; pid is a process in
// it (its /proc/PID/cgroup names the cgroup's path).
type request struct {
	cgroup uint64
	pid    uint32
}

type answer struct {
	cgroup   uint64
	workload *events.Workload // nil: not found (yet)
	// partial: a container no runtime described (yet): used, and asked
	// for again after retryAfter.
	partial bool
}

// Stats are an Enricher's counters.
type Stats struct {
	// Asked counts lookups handed to the resolver; Dropped those not
	// handed because its queue was full (asked again at a later sight).
	Asked, Dropped uint64
	// Walks counts walks of the cgroup2 mount; RuntimeErrors failed
	// runtime API calls other than "no such container".
	Walks, RuntimeErrors uint64
}

type stats struct {
	asked, dropped, walks, runtimeErrors atomic.Uint64
}

// CacheStats are the caches' counters as the enriching goroutine keeps
// them: lookups of a cgroup's workload or a process that found what they
// looked for (Hits) or did not yet (Misses), and entries dropped to make
// room (Evictions).
type CacheStats struct {
	Entries                 int
	Hits, Misses, Evictions uint64
}

// cacheCounts are the enriching goroutine's counters (no atomics: one
// goroutine writes them, and CacheStats is read on it or under its lock).
type cacheCounts struct {
	hits, misses, evictions uint64
}

// hostWorkload is the Workload of every cgroup that is no container's.
var hostWorkload = &events.Workload{}

// retryAfter is how long an unanswered lookup waits before it is asked
// again.
const retryAfter = int64(time.Second)

// procTTL is how long a process entry keyed without a start time is used.
const procTTL = int64(10 * time.Second)

// New returns an Enricher; Start starts its resolver.
func New(opts Options) *Enricher {
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = DefaultCacheSize
	}
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Enricher{
		opts: opts, log: log,
		cgroups: map[uint64]cgroupEntry{}, procs: map[uint32]procEntry{}, owners: map[uint32]ownerCgroup{},
		requests: make(chan request, 1024), answers: make(chan answer, 1024),
		done: make(chan struct{}),
	}
}

// Enrich fills c from the caches and asks the resolver for what they
// lack. now is the event's time (ns since the Unix epoch).
func (e *Enricher) Enrich(c *events.Context, now int64) {
	if len(e.answers) > 0 {
		e.drain()
	}
	if c.CgroupID == 0 && c.PID != 0 && e.opts.CgroupRoot != "" {
		c.CgroupID = e.ownerCgroup(c.PID, c.ProcessStart, now)
	}
	if c.CgroupID != 0 && c.CgroupID == e.lastCG {
		c.Workload = e.lastW
		e.counts.hits++
	} else if c.CgroupID != 0 && e.opts.CgroupRoot != "" {
		g, ok := e.cgroups[c.CgroupID]
		if ok && g.w != nil {
			e.counts.hits++
		} else {
			e.counts.misses++
		}
		if !ok {
			g, ok = e.firstSight(c.CgroupID, c.PID, now)
		}
		if ok && g.w != nil && g.askAt == 0 {
			e.lastCG, e.lastW = c.CgroupID, g.w
		}
		c.Workload = g.w
		if !ok || g.askAt != 0 && now >= g.askAt {
			if e.ask(request{cgroup: c.CgroupID, pid: c.PID}) {
				if !ok && len(e.cgroups) >= e.opts.CacheSize {
					evictOne(e.cgroups)
					e.counts.evictions++
				}
				g.askAt = now + retryAfter
				e.cgroups[c.CgroupID] = g
			}
		}
	}
	if c.PID == 0 {
		return
	}
	if p := &e.lastProc; c.PID == e.lastPID && p.key == c.ProcessStart && p.expires == 0 {
		e.counts.hits++
		c.Exe = p.exe
		if c.PPID == 0 {
			c.PPID = p.ppid
		}
		if c.ProcessStart == 0 {
			c.ProcessStart = p.start
		}
		return
	}
	// The cached case inline (the hot path), the rest in proc.
	p, ok := e.procs[c.PID]
	if ok && p.key == c.ProcessStart && (p.expires == 0 || now < p.expires) {
		e.counts.hits++
	} else {
		p = e.proc(c.PID, c.ProcessStart, now)
	}
	if p.expires == 0 {
		e.lastPID, e.lastProc = c.PID, p
	}
	c.Exe = p.exe
	if c.PPID == 0 {
		c.PPID = p.ppid
	}
	if c.ProcessStart == 0 {
		c.ProcessStart = p.start
	}
}

// ownerCgroup returns the cgroup id of process pid (start: its start
// time, 0 if not known), for an event whose socket's cgroup the kernel
// did not give: before Linux 5.15 the sock_ops program cannot read it.
// The owner's cgroup is the socket's unless the owner moved after it
// made the socket. /proc is read once per process, and again after
// procTTL (a process may be moved); 0 when the process is gone.
func (e *Enricher) ownerCgroup(pid uint32, start, now int64) uint64 {
	if o, ok := e.owners[pid]; ok && o.key == start && now < o.expires {
		return o.id
	}
	var id uint64
	// Only if /proc's process is the event's (its start time agrees):
	// a pid of another pid namespace, or reused, names another cgroup.
	if start == 0 || e.proc(pid, start, now).start != 0 {
		_, id, _ = ownCgroup(e.opts.ProcRoot, e.opts.CgroupRoot, pid)
	}
	if _, ok := e.owners[pid]; !ok && len(e.owners) >= e.opts.CacheSize {
		evictOne(e.owners)
		e.counts.evictions++
	}
	e.owners[pid] = ownerCgroup{key: start, expires: now + procTTL, id: id}
	return id
}

// proc returns process pid's entry (start: the start time the kernel
// gave, 0 if none) from the cache, or from /proc at first sight (or when
// its pid was reused, or an entry without a start time expired).
func (e *Enricher) proc(pid uint32, start, now int64) procEntry {
	p, ok := e.procs[pid]
	if ok && p.key == start && (p.expires == 0 || now < p.expires) {
		e.counts.hits++
		return p
	}
	e.counts.misses++
	if !ok && len(e.procs) >= e.opts.CacheSize {
		evictOne(e.procs)
		e.counts.evictions++
	}
	p = readProcEntry(e.opts.ProcRoot, pid, start)
	e.procs[pid] = p
	return p
}

// firstSight gives a cgroup seen for the first time what its path says,
// at once, when the event's process is still in it: a host cgroup its
// final workload, a container's its id, runtime and pod uid (the resolver
// adds names and images from the runtime). A short-lived process's first
// events would otherwise go out before the resolver answered. It costs
// one read of /proc/PID/cgroup and one stat, once per cgroup. ok is false
// when the path is not known this way (no process, or it moved or
// exited): the resolver finds it.
func (e *Enricher) firstSight(id uint64, pid uint32, now int64) (cgroupEntry, bool) {
	path, found := processCgroup(e.opts.ProcRoot, e.opts.CgroupRoot, pid, id)
	if !found {
		return cgroupEntry{}, false
	}
	var g cgroupEntry
	info := ParseCgroupPath(path)
	if info.ContainerID == "" {
		g.w = hostWorkload
	} else {
		g.w = &events.Workload{ContainerID: info.ContainerID, ContainerRuntime: info.Runtime, PodUID: info.PodUID}
		g.askAt = now // ask the resolver for the rest
	}
	if len(e.cgroups) >= e.opts.CacheSize {
		evictOne(e.cgroups)
		e.counts.evictions++
	}
	e.cgroups[id] = g
	return g, true
}

// ask hands r to the resolver without waiting; false when its queue is
// full.
func (e *Enricher) ask(r request) bool {
	select {
	case e.requests <- r:
		e.stats.asked.Add(1)
		return true
	default:
		e.stats.dropped.Add(1)
		return false
	}
}

// drain applies the resolver's answers.
func (e *Enricher) drain() {
	for {
		select {
		case a := <-e.answers:
			e.apply(a)
		default:
			return
		}
	}
}

func (e *Enricher) apply(a answer) {
	e.lastCG = 0 // an answer may change what it holds
	g, ok := e.cgroups[a.cgroup]
	if !ok || a.workload == nil {
		return // evicted meanwhile, or still unknown: asked again at askAt
	}
	g.w = a.workload
	if !a.partial {
		g.askAt = 0
	}
	e.cgroups[a.cgroup] = g
}

// evictOne removes an entry of m, one the map's iteration order picks.
func evictOne[K comparable, V any](m map[K]V) {
	for k := range m {
		delete(m, k)
		return
	}
}

// CacheStats returns the caches' counters: call it on the goroutine that
// calls Enrich, or under the lock that goroutine holds.
func (e *Enricher) CacheStats() CacheStats {
	return CacheStats{Entries: len(e.cgroups) + len(e.procs) + len(e.owners), Hits: e.counts.hits, Misses: e.counts.misses, Evictions: e.counts.evictions}
}

// Stats returns the counters; safe from any goroutine.
func (e *Enricher) Stats() Stats {
	s := &e.stats
	return Stats{Asked: s.asked.Load(), Dropped: s.dropped.Load(), Walks: s.walks.Load(), RuntimeErrors: s.runtimeErrors.Load()}
}

// Start runs the resolver until ctx ends or Close. It first checks which
// runtimes answer and logs one INFO line naming the sockets tried.
func (e *Enricher) Start(ctx context.Context) {
	r := &resolver{e: e, containers: map[string]*containerEntry{},
		index: newCgroupIndex(e.opts.CgroupRoot, e.opts.ProcRoot, 1<<20)}
	r.checkRuntimes(ctx)
	go func() {
		defer close(e.done)
		r.run(ctx)
	}()
}

// Close stops the resolver (its context must end too, or Close waits for
// it) and closes the runtimes' connections.
func (e *Enricher) Close() {
	<-e.done
	for _, rt := range e.opts.Runtimes {
		rt.Close()
	}
}

// resolver answers lookups on its own goroutine.
type resolver struct {
	e          *Enricher
	index      *cgroupIndex
	lastWalk   time.Time
	live       []Runtime // runtimes that answered
	containers map[string]*containerEntry
}

// containerEntry is a container's metadata, or when asking failed.
type containerEntry struct {
	info    ContainerInfo
	runtime string
	sandbox map[string]string
	found   bool
	asked   time.Time
}

// minWalkInterval bounds how often the cgroup2 mount is walked.
const minWalkInterval = 200 * time.Millisecond

// checkRuntimes pings each runtime and logs which answered.
func (r *resolver) checkRuntimes(ctx context.Context) {
	if len(r.e.opts.Runtimes) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var tried, live []string
	for _, rt := range r.e.opts.Runtimes {
		tried = append(tried, rt.Name()+" "+rt.Socket())
		if err := rt.Ping(ctx); err != nil {
			r.e.log.Debug("container runtime does not answer", "runtime", rt.Name(), "socket", rt.Socket(), "error", err)
			continue
		}
		r.live = append(r.live, rt)
		live = append(live, rt.Name())
	}
	if len(live) == 0 {
		r.e.log.Info("no container runtime answers: containers get their ids from cgroup paths, no names, images or pods",
			"tried", strings.Join(tried, ", "))
		return
	}
	r.e.log.Info("container runtimes", "answering", strings.Join(live, ", "), "tried", strings.Join(tried, ", "))
}

func (r *resolver) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case q := <-r.e.requests:
			a := r.cgroup(ctx, q)
			select {
			case r.e.answers <- a:
			case <-ctx.Done():
				return
			}
		}
	}
}

// readProcEntry reads process pid's parent, start time and executable
// from /proc. start is the start time the kernel gave (0: none); a process
// whose start time differs from it is another process that reused the
// pid: nothing of it is reported. A process gone already gets an empty
// entry.
func readProcEntry(procRoot string, pid uint32, start int64) procEntry {
	entry := procEntry{key: start}
	info, err := readProc(procRoot, pid)
	if err == nil {
		began := bootToWall() + int64(info.startTicks)*clockTick
		if start == 0 || absDiff(began, start) <= 2*clockTick {
			entry.ppid, entry.exe, entry.start = info.ppid, info.exe, began
		}
	}
	if start == 0 {
		entry.expires = time.Now().UnixNano() + procTTL
	}
	return entry
}

func absDiff(a, b int64) int64 {
	if a > b {
		return a - b
	}
	return b - a
}

// bootToWall is the offset from CLOCK_BOOTTIME to the wall clock, now.
func bootToWall() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Now().UnixNano() - ts.Nano()
}

// cgroup resolves a cgroup id to its workload.
func (r *resolver) cgroup(ctx context.Context, q request) answer {
	path, ok := r.index.fromProcess(q.pid, q.cgroup)
	if !ok {
		path, ok = r.index.byID[q.cgroup]
	}
	if !ok && time.Since(r.lastWalk) >= minWalkInterval {
		r.lastWalk = time.Now()
		r.e.stats.walks.Add(1)
		if err := r.index.walk(); err != nil {
			r.e.log.Warn("workload identity: cannot read cgroups", "error", err)
		}
		path, ok = r.index.byID[q.cgroup]
	}
	if !ok {
		// Gone, or created after the walk: unknown for now; Enrich
		// asks again after retryAfter.
		return answer{cgroup: q.cgroup}
	}
	info := ParseCgroupPath(path)
	if info.ContainerID == "" {
		return answer{cgroup: q.cgroup, workload: hostWorkload}
	}
	w := &events.Workload{ContainerID: info.ContainerID, ContainerRuntime: info.Runtime, PodUID: info.PodUID}
	c := r.container(ctx, info)
	if c != nil && c.found {
		describe(w, c.runtime, c.info, c.sandbox, r.e.opts.PodLabels)
	}
	// Asked again while runtimes answer but none knew the container yet.
	return answer{cgroup: q.cgroup, workload: w, partial: len(r.live) > 0 && (c == nil || !c.found)}
}

// containerRetry is how long a container no runtime knew is not asked for
// again.
const containerRetry = time.Second

// container asks the runtimes about a container, the one its path names
// first, and caches the answer.
func (r *resolver) container(ctx context.Context, info CgroupInfo) *containerEntry {
	if c, ok := r.containers[info.ContainerID]; ok && (c.found || time.Since(c.asked) < containerRetry) {
		return c
	}
	if len(r.live) == 0 {
		return nil
	}
	c := &containerEntry{asked: time.Now()}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for _, rt := range r.ordered(info.Runtime) {
		ci, err := rt.Container(ctx, info.ContainerID)
		if errors.Is(err, ErrNoContainer) {
			continue
		}
		if err != nil {
			r.e.stats.runtimeErrors.Add(1)
			r.e.log.Debug("container runtime lookup failed", "runtime", rt.Name(), "container", info.ContainerID, "error", err)
			continue
		}
		c.info, c.runtime, c.found = ci, rt.Name(), true
		if ci.SandboxID != "" && len(r.e.opts.PodLabels) > 0 {
			if sb, err := rt.Container(ctx, ci.SandboxID); err == nil {
				c.sandbox = sb.Labels
			}
		}
		break
	}
	if len(r.containers) >= r.e.opts.CacheSize {
		evictOne(r.containers)
	}
	r.containers[info.ContainerID] = c
	return c
}

// ordered returns the live runtimes, the one named first.
func (r *resolver) ordered(name string) []Runtime {
	out := make([]Runtime, 0, len(r.live))
	for _, rt := range r.live {
		if rt.Name() == name {
			out = append(out, rt)
		}
	}
	for _, rt := range r.live {
		if rt.Name() != name {
			out = append(out, rt)
		}
	}
	return out
}
