// SPDX-License-Identifier: Apache-2.0

package host

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/flowtap/flowtap/internal/privdrop"
)

// Plugins hold no privilege. Every plugin process is started from one
// dedicated OS thread of flowtap (the launcher), which, once, made itself
// unable to hand on a privilege: it set NoNewPrivs, cleared its
// capability bounding set (when it may: CAP_SETPCAP), its ambient and its
// inheritable capabilities. A child inherits these from the thread that
// forks it, so a plugin starts with an empty bounding set, no ambient or
// inheritable capabilities, and NoNewPrivs (file capabilities and
// set-user-ID bits of anything it executes are ignored). Its permitted and
// effective sets are emptied by the exec itself: a process that is not
// root gets none from an exec without file capabilities, and root gets
// only its bounding set's, which is empty. When Config.RunAs names another
// user, the child switches to it (setgroups, setgid, setuid) before the
// exec. The launcher also installs a seccomp filter on itself, which the
// plugins inherit (seccomp.go).
//
// Why a thread and not a re-exec: Go's SysProcAttr cannot set NoNewPrivs
// or the bounding set in the child, and all three are per thread in
// Linux. The launcher thread is locked (runtime.LockOSThread) and never
// unlocked, so the Go runtime never runs anything else on it and never
// clones a new thread from it (it does that from a clean template thread
// instead). It lives as long as flowtap: Pdeathsig fires when the thread
// that forked the child ends, so the plugins die with flowtap, and only
// with it.

// Identity is a user and group a plugin runs as.
type Identity struct {
	// UID and GID are the numeric user and group.
	UID, GID uint32
	// Name is how the user was named (for logs and errors), e.g.
	// "nobody" or "65534:65534".
	Name string
}

// String returns "name (uid N, gid M)".
func (id *Identity) String() string {
	return fmt.Sprintf("%s (uid %d, gid %d)", id.Name, id.UID, id.GID)
}

// DefaultUsers are the users a plugin runs as by default when flowtap
// runs as root, the first that exists: a dedicated "flowtap" user, else
// "nobody". Without either, uid and gid 65534.
var DefaultUsers = []string{"flowtap", "nobody"}

// nobodyID is the identity used when no default user exists.
const nobodyID = 65534

// DefaultIdentity returns who a plugin runs as when its sink sets no
// run_as: nil (flowtap's own user) when flowtap is not root, since it
// could not switch; otherwise the first of DefaultUsers that exists, or
// 65534:65534.
func DefaultIdentity() *Identity {
	if os.Geteuid() != 0 {
		return nil
	}
	for _, name := range DefaultUsers {
		if id, err := LookupIdentity(name); err == nil {
			return id
		}
	}
	return &Identity{UID: nobodyID, GID: nobodyID, Name: "65534:65534"}
}

// LookupIdentity parses a run_as value: "user", "user:group", "uid" or
// "uid:gid" (names are looked up in the system's user and group
// databases). A user given alone runs with its primary group.
func LookupIdentity(spec string) (*Identity, error) {
	if spec == "" {
		return nil, errors.New("empty user: name a user such as \"nobody\", or \"user:group\", or \"uid:gid\"")
	}
	name, group, hasGroup := strings.Cut(spec, ":")
	id := &Identity{Name: spec}
	uid, gid, err := lookupUser(name)
	if err != nil {
		return nil, err
	}
	id.UID, id.GID = uid, gid
	if hasGroup {
		if id.GID, err = lookupGroup(group); err != nil {
			return nil, err
		}
	} else if gid == noGroup {
		return nil, fmt.Errorf("user %q: a numeric user has no primary group: write \"%s:GID\"", name, name)
	}
	return id, nil
}

// noGroup marks a user given as a number, which has no primary group.
const noGroup = ^uint32(0)

func lookupUser(name string) (uid, gid uint32, err error) {
	if n, perr := strconv.ParseUint(name, 10, 32); perr == nil {
		if u, lerr := user.LookupId(name); lerr == nil {
			g, _ := strconv.ParseUint(u.Gid, 10, 32)
			return uint32(n), uint32(g), nil
		}
		return uint32(n), noGroup, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, fmt.Errorf("user %q: %w (create it, e.g. useradd --system %s, or give a uid)", name, err, name)
	}
	n, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("user %q: uid %q: %w", name, u.Uid, err)
	}
	g, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("user %q: gid %q: %w", name, u.Gid, err)
	}
	return uint32(n), uint32(g), nil
}

func lookupGroup(name string) (uint32, error) {
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		return uint32(n), nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("group %q: %w", name, err)
	}
	n, err := strconv.ParseUint(g.Gid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("group %q: gid %q: %w", name, g.Gid, err)
	}
	return uint32(n), nil
}

// launcher is the thread plugins are started from.
type launcher struct {
	reqs chan launchReq
	// boundingKept: the thread could not clear its bounding set (no
	// CAP_SETPCAP); NoNewPrivs still keeps the plugins from gaining
	// anything by exec.
	boundingKept bool
	// noFilter says why the plugin filter is not installed (nil: it
	// is); an errNoFilter.
	noFilter error
}

// errNoFilter marks why plugins run without their seccomp filter: the
// kernel has none (CONFIG_SECCOMP_FILTER), flowtap does not know the
// architecture's system calls, or a filter flowtap itself runs under
// refuses seccomp(2). flowtap then logs a WARN and starts plugins all the
// same.
var errNoFilter = errors.New("plugins run without their seccomp filter")

type launchReq struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	launcherOnce sync.Once
	theLauncher  *launcher
	launcherErr  error
)

// PrepareLauncher creates the thread plugins are started from, if it does
// not exist yet. Start creates it when first needed; flowtap calls this
// before it drops its own capabilities, so that the launcher clears its
// bounding set while flowtap still may (CAP_SETPCAP).
func PrepareLauncher() error {
	_, err := getLauncher()
	return err
}

func getLauncher() (*launcher, error) {
	launcherOnce.Do(func() {
		l := &launcher{reqs: make(chan launchReq)}
		ready := make(chan error, 1)
		go func() {
			// Never unlocked: the goroutine and its thread live as long
			// as the process (see above).
			runtime.LockOSThread()
			kept, err := isolateThread()
			l.boundingKept = kept
			if err == nil {
				if err = installPluginFilter(); errors.Is(err, errNoFilter) {
					l.noFilter, err = err, nil
				}
			}
			ready <- err
			if err != nil {
				return // the thread ends with the goroutine: it is tainted
			}
			for r := range l.reqs {
				r.done <- r.cmd.Start()
			}
		}()
		if err := <-ready; err != nil {
			launcherErr = fmt.Errorf("prepare the plugin launcher thread: %w", err)
			return
		}
		theLauncher = l
	})
	return theLauncher, launcherErr
}

// start runs cmd.Start on the launcher thread.
func (l *launcher) start(cmd *exec.Cmd) error {
	done := make(chan error, 1)
	l.reqs <- launchReq{cmd: cmd, done: done}
	return <-done
}

// isolateThread makes the calling thread unable to hand a privilege on to
// what it executes: NoNewPrivs, no ambient and no inheritable
// capabilities, and an empty bounding set when it may drop it (it returns
// kept = true when it may not: no CAP_SETPCAP). Its effective and
// permitted sets stay as they are: it needs CAP_SETUID and CAP_SETGID to
// switch a child to another user.
func isolateThread() (kept bool, err error) {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return false, fmt.Errorf("set no_new_privs: %w", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return false, fmt.Errorf("clear ambient capabilities: %w", err)
	}
	for c := 0; c <= privdrop.LastCap(); c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			if errors.Is(err, unix.EPERM) {
				kept = true
				break
			}
			if !errors.Is(err, unix.EINVAL) { // EINVAL: not a capability of this kernel
				return kept, fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
			}
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return kept, fmt.Errorf("read capabilities: %w", err)
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return kept, fmt.Errorf("clear inheritable capabilities: %w", err)
	}
	return kept, nil
}

// credential returns the SysProcAttr credential that switches a child to
// id, or nil when id is nil (the child keeps flowtap's user). Switching
// needs CAP_SETUID and CAP_SETGID; without them, asking for the user
// flowtap already is works, anything else fails with a clear error.
func credential(id *Identity) (*syscall.Credential, error) {
	if id == nil {
		return nil, nil
	}
	euid, egid := uint32(os.Geteuid()), uint32(os.Getegid())
	if id.UID == euid && id.GID == egid && euid != 0 {
		return nil, nil // already that user, and no root to shed
	}
	if euid != 0 && !privdrop.Effective(unix.CAP_SETUID) {
		return nil, fmt.Errorf("run the plugin as %s: flowtap runs as uid %d without CAP_SETUID and cannot switch users: leave run_as out (the plugin then runs as flowtap's user) or give flowtap CAP_SETUID and CAP_SETGID",
			id, euid)
	}
	return &syscall.Credential{Uid: id.UID, Gid: id.GID, Groups: []uint32{}}, nil
}

// joinGroup makes gid one of flowtap's groups, so that flowtap may use the
// plugin's socket, which the plugin makes readable and writable for its
// group only (go-plugin's PLUGIN_UNIX_SOCKET_GROUP). It needs CAP_SETGID
// when flowtap is not in the group yet.
func joinGroup(gid uint32) error {
	if uint32(os.Getegid()) == gid {
		return nil
	}
	groups, err := os.Getgroups()
	if err != nil {
		return fmt.Errorf("read flowtap's groups: %w", err)
	}
	if slices.Contains(groups, int(gid)) {
		return nil
	}
	groupsMu.Lock()
	defer groupsMu.Unlock()
	if err := syscall.Setgroups(append(groups, int(gid))); err != nil {
		return fmt.Errorf("join group %d to reach the plugin's socket: %w (flowtap needs CAP_SETGID to run plugins as another user)", gid, err)
	}
	return nil
}

var groupsMu sync.Mutex
