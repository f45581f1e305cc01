// SPDX-License-Identifier: Apache-2.0

package workload

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// dialSpec is one connect, made with raw socket calls because the net
// package cannot do two things the workload needs: connect an AF_INET6
// socket to an IPv4-mapped address (it dials those as AF_INET), and tell
// the local port of an attempt that failed (it closes the socket first).
type dialSpec struct {
	// family is unix.AF_INET or unix.AF_INET6.
	family int
	// bind, when valid, is bound with port 0 before connecting, so the
	// local port is known even when the connect fails.
	bind netip.Addr
	// remote is where to connect. For an AF_INET6 socket an IPv4 address
	// is used in its mapped form (and IPV6_V6ONLY is turned off).
	remote  netip.AddrPort
	timeout time.Duration
}

// errConnectTimeout is returned when no answer came within the timeout.
var errConnectTimeout = errors.New("connect timed out")

// dial creates the socket in the calling thread's network namespace and
// connects it. It returns the connection, and the local address (unmapped)
// whether or not the connect succeeded.
func dial(s dialSpec) (*net.TCPConn, netip.AddrPort, error) {
	fd, err := unix.Socket(s.family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return nil, netip.AddrPort{}, fmt.Errorf("socket: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	if s.family == unix.AF_INET6 {
		v6only := 1
		if s.remote.Addr().Is4() || s.remote.Addr().Is4In6() || (s.bind.IsValid() && s.bind.Unmap().Is4()) {
			v6only = 0
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, v6only); err != nil {
			return nil, netip.AddrPort{}, fmt.Errorf("IPV6_V6ONLY: %w", err)
		}
	}
	if s.bind.IsValid() {
		if err := unix.Bind(fd, sockaddr(s.family, netip.AddrPortFrom(s.bind, 0))); err != nil {
			return nil, netip.AddrPort{}, fmt.Errorf("bind %s: %w", s.bind, err)
		}
	}
	err = unix.Connect(fd, sockaddr(s.family, s.remote))
	if errors.Is(err, unix.EINPROGRESS) {
		err = waitConnect(fd, s.timeout)
	}
	local := sockname(fd)
	if err != nil {
		return nil, local, err
	}
	f := os.NewFile(uintptr(fd), "tcp")
	c, err := net.FileConn(f) // duplicates fd
	f.Close()
	ok = true // f.Close closed fd
	if err != nil {
		return nil, local, err
	}
	return c.(*net.TCPConn), local, nil
}

// waitConnect waits for a non-blocking connect to finish. Blocking the
// thread in poll is deliberate: a namespace dial runs on a locked thread
// anyway, and it keeps the socket out of the runtime's poller until it is
// connected.
func waitConnect(fd int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return errConnectTimeout
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, err := unix.Poll(pfd, int(left.Milliseconds())+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("poll: %w", err)
		}
		if n == 0 {
			continue // the loop re-checks the deadline
		}
		soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			return fmt.Errorf("SO_ERROR: %w", err)
		}
		if soerr != 0 {
			return unix.Errno(soerr)
		}
		return nil
	}
}

// sockaddr converts ap for a socket of the given family; an AF_INET6 socket
// gets IPv4 addresses in their mapped form.
func sockaddr(family int, ap netip.AddrPort) unix.Sockaddr {
	if family == unix.AF_INET {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().Unmap().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// sockname returns the socket's local address, unmapped; zero on error.
func sockname(fd int) netip.AddrPort {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return netip.AddrPort{}
	}
	return fromSockaddr(sa)
}

func fromSockaddr(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
	}
	return netip.AddrPort{}
}

// wire returns the address as it appears in packets: unmapped.
func wire(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// familyName names a socket family as Report records it.
func familyName(family int) string {
	if family == unix.AF_INET {
		return "inet"
	}
	return "inet6"
}
