package bpf

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ringWaiter waits for the ring buffer through the Go runtime's network
// poller rather than in a blocking epoll_wait.
//
// A goroutine blocked in a system call holds its thread, and the Go
// runtime's monitor (sysmon), which hands a P stuck in a system call to
// another thread, keeps polling every 20 µs for as long as one is: with
// the reader waiting up to ringPollInterval in epoll_wait most of the
// time, flowtap woke about 1,600 times a second more than it needed to on
// a busy host. The network poller parks the goroutine instead, and the
// ring's file descriptor wakes it like a socket would (the ring is
// pollable; the kernel programs force a wake-up when it fills, see
// flowtap.bpf.c). ringbuf.Reader then only ever reads what is there, with
// a deadline in the past.
type ringWaiter struct {
	f   *os.File
	raw syscall.RawConn
}

// newRingWaiter registers a duplicate of ring's descriptor, non-blocking,
// with the runtime poller.
func newRingWaiter(ring *ebpf.Map) (*ringWaiter, error) {
	fd, err := unix.FcntlInt(uintptr(ring.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("duplicate the ring buffer's descriptor: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("make the ring buffer's descriptor non-blocking: %w", err)
	}
	f := os.NewFile(uintptr(fd), "flowtap ring buffer")
	// A deadline is only accepted on a descriptor the poller took.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, fmt.Errorf("register the ring buffer with the Go runtime poller: %w", err)
	}
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("register the ring buffer with the Go runtime poller: %w", err)
	}
	return &ringWaiter{f: f, raw: raw}, nil
}

// wait returns when ready reports true, which it asks first and again
// after each wake-up of the ring's waiters, or at deadline
// (os.ErrDeadlineExceeded), or when interrupt or Close is called (an
// error).
func (w *ringWaiter) wait(deadline time.Time, ready func() bool) error {
	if err := w.f.SetReadDeadline(deadline); err != nil {
		return err
	}
	return w.raw.Read(func(uintptr) bool { return ready() })
}

// interrupt makes a wait in progress return at once.
func (w *ringWaiter) interrupt() {
	_ = w.f.SetReadDeadline(time.Unix(1, 0))
}

// Close releases the duplicate descriptor; a wait in progress returns.
func (w *ringWaiter) Close() error {
	if err := w.f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return err
	}
	return nil
}
