// SPDX-License-Identifier: Apache-2.0

package workload

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ServeConfig configures Serve.
type ServeConfig struct {
	// Listen are the addresses to accept connections on (port 0: any).
	Listen []Endpoint
	// Closed are addresses to bind without listening (port 0: any).
	Closed []Endpoint
	// IOTimeout bounds each connection. Default 30s.
	IOTimeout time.Duration
}

// Server is a running Serve: its listeners, closed ports and counters.
type Server struct {
	info    ServeInfo
	lns     []net.Listener
	closed  []int
	timeout time.Duration
	wg      sync.WaitGroup
	mu      sync.Mutex
	sum     ServeSummary
}

// Listen opens the listeners and closed ports. Listeners use Go's defaults,
// which on Linux means MPTCP sockets: flowtap must cope with them, so the
// workload does not turn MPTCP off.
func Listen(cfg ServeConfig) (*Server, error) {
	s := &Server{timeout: cfg.IOTimeout}
	if s.timeout <= 0 {
		s.timeout = 30 * time.Second
	}
	s.info.Process = Self()
	s.info.Listeners = []Endpoint{}
	s.info.Closed = []Endpoint{}
	for _, e := range cfg.Listen {
		var ln net.Listener
		err := InNetns(e.Netns, func() error {
			var err error
			ln, err = net.Listen(listenNetwork(e.Addr.Addr()), e.Addr.String())
			return err
		})
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("listen %s: %w", e, err)
		}
		s.lns = append(s.lns, ln)
		ap := ln.Addr().(*net.TCPAddr).AddrPort()
		s.info.Listeners = append(s.info.Listeners, Endpoint{Addr: netip.AddrPortFrom(e.Addr.Addr(), ap.Port()), Netns: e.Netns})
	}
	for _, e := range cfg.Closed {
		var fd int
		var bound netip.AddrPort
		err := InNetns(e.Netns, func() error {
			family := unix.AF_INET6
			if e.Addr.Addr().Is4() {
				family = unix.AF_INET
			}
			var err error
			if fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP); err != nil {
				return err
			}
			if err = unix.Bind(fd, sockaddr(family, e.Addr)); err != nil {
				unix.Close(fd)
				return err
			}
			bound = sockname(fd)
			return nil
		})
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("bind closed port %s: %w", e, err)
		}
		s.closed = append(s.closed, fd)
		s.info.Closed = append(s.info.Closed, Endpoint{Addr: bound, Netns: e.Netns})
	}
	return s, nil
}

// listenNetwork keeps an IPv4 listener IPv4-only and a specific IPv6
// address IPv6-only; the unspecified IPv6 address listens dual-stack.
func listenNetwork(a netip.Addr) string {
	switch {
	case a.Is4():
		return "tcp4"
	case a.IsUnspecified():
		return "tcp"
	}
	return "tcp6"
}

// Info returns what a serve process prints once it listens.
func (s *Server) Info() ServeInfo { return s.info }

// Serve accepts and answers connections until ctx ends, then closes the
// listeners, waits for the connections in flight (each bounded by the I/O
// timeout) and returns the totals.
func (s *Server) Serve(ctx context.Context) ServeSummary {
	for _, ln := range s.lns {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.accept(ln)
		}()
	}
	<-ctx.Done()
	s.Close()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sum
}

// Close closes the listeners and closed ports; connections in flight go on.
func (s *Server) Close() {
	for _, ln := range s.lns {
		ln.Close()
	}
	for _, fd := range s.closed {
		unix.Close(fd)
	}
	s.closed = nil
}

func (s *Server) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.fail(fmt.Errorf("accept on %s: %w", ln.Addr(), err))
			}
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			in, out, err := answer(c, s.timeout)
			s.mu.Lock()
			s.sum.BytesReceived += in
			s.sum.BytesSent += out
			if err == nil {
				s.sum.Served++
			}
			s.mu.Unlock()
			if err != nil {
				s.fail(fmt.Errorf("connection from %s: %w", c.RemoteAddr(), err))
			}
		}()
	}
}

func (s *Server) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sum.Errors++
	if s.sum.FirstError == "" {
		s.sum.FirstError = err.Error()
	}
}

// answer runs the server side of one connection: read the header and the
// request, send the response, wait for the client's FIN, close.
func answer(c net.Conn, timeout time.Duration) (in, out uint64, err error) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	var hdr [HeaderSize]byte
	n, err := io.ReadFull(c, hdr[:])
	in += uint64(n)
	if err != nil {
		return in, out, fmt.Errorf("read header: %w", err)
	}
	req, resp := binary.BigEndian.Uint64(hdr[:8]), binary.BigEndian.Uint64(hdr[8:])
	if req > maxMessage || resp > maxMessage {
		return in, out, fmt.Errorf("header asks for %d/%d bytes, more than %d", req, resp, maxMessage)
	}
	m, err := io.CopyN(io.Discard, c, int64(req))
	in += uint64(m)
	if err != nil {
		return in, out, fmt.Errorf("read request: %w", err)
	}
	m, err = io.CopyN(c, zeros{}, int64(resp))
	out += uint64(m)
	if err != nil {
		return in, out, fmt.Errorf("write response: %w", err)
	}
	m, err = io.Copy(io.Discard, c)
	in += uint64(m)
	if err != nil {
		return in, out, fmt.Errorf("wait for the client's close: %w", err)
	}
	if m != 0 {
		return in, out, fmt.Errorf("%d bytes after the request", m)
	}
	return in, out, nil
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// WriteJSONLine writes v as one line of JSON.
func WriteJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// ServeUntil is the serve mode: it listens per cfg, writes the ServeInfo
// line to out, serves until stdin reaches end of file (the parent closed
// it or died), ctx ends or lifetime passes, then writes the ServeSummary
// line. It fails if any connection broke the protocol.
func ServeUntil(ctx context.Context, cfg ServeConfig, stdin io.Reader, out io.Writer, lifetime time.Duration) error {
	s, err := Listen(cfg)
	if err != nil {
		return err
	}
	if err := WriteJSONLine(out, s.Info()); err != nil {
		s.Close()
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, lifetime)
	defer cancel()
	go func() {
		io.Copy(io.Discard, stdin)
		cancel()
	}()
	sum := s.Serve(ctx)
	if err := WriteJSONLine(out, sum); err != nil {
		return err
	}
	if sum.Errors > 0 {
		return fmt.Errorf("%d connections failed, first: %s", sum.Errors, sum.FirstError)
	}
	return nil
}
