// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

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
//
// The runtime poller forgets a wake-up that came before a wait began, so
// the waiter looks at the ring's positions itself before it waits: it maps
// the ring's consumer and producer pages read-only (its own mapping, which
// lives as long as it does, whatever becomes of the reader).
type ringWaiter struct {
	f          *os.File
	raw        syscall.RawConn
	cons, prod []byte // the ring's consumer and producer position pages
	closeOnce  sync.Once
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
	page := os.Getpagesize()
	cons, err := unix.Mmap(fd, 0, page, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("map the ring buffer's consumer position: %w", err)
	}
	prod, err := unix.Mmap(fd, int64(page), page, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		unix.Munmap(cons)
		unix.Close(fd)
		return nil, fmt.Errorf("map the ring buffer's producer position: %w", err)
	}
	w := &ringWaiter{cons: cons, prod: prod}
	f := os.NewFile(uintptr(fd), "flowtap ring buffer")
	// A deadline is only accepted on a descriptor the poller took.
	w.f = f
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		w.Close()
		return nil, fmt.Errorf("register the ring buffer with the Go runtime poller: %w", err)
	}
	if w.raw, err = f.SyscallConn(); err != nil {
		w.Close()
		return nil, fmt.Errorf("register the ring buffer with the Go runtime poller: %w", err)
	}
	return w, nil
}

// holds reports whether the ring holds at least n bytes the reader has
// not consumed yet (records with their headers, written or reserved).
func (w *ringWaiter) holds(n uint64) bool {
	c := atomic.LoadUint64((*uint64)(unsafe.Pointer(&w.cons[0])))
	p := atomic.LoadUint64((*uint64)(unsafe.Pointer(&w.prod[0])))
	return p-c >= n
}

// wait returns when the ring holds at least fill bytes (1: any record)
// or stop reports true, which it asks first and again after each wake-up
// of the ring's waiters; or at deadline (os.ErrDeadlineExceeded); or when
// interrupt or Close is called (an error). A fill above what the programs
// wake the reader for (Capture.fillThreshold) waits for the deadline.
func (w *ringWaiter) wait(deadline time.Time, stop func() bool, fill uint64) error {
	if err := w.f.SetReadDeadline(deadline); err != nil {
		return err
	}
	return w.raw.Read(func(uintptr) bool { return stop() || w.holds(fill) })
}

// interrupt makes a wait in progress return at once.
func (w *ringWaiter) interrupt() {
	_ = w.f.SetReadDeadline(time.Unix(1, 0))
}

// Close releases the duplicate descriptor, then the mappings. A wait in
// progress returns first: closing the file waits for it, and no wait can
// look at the positions after that (the file is closed), so unmapping is
// safe. Later calls return nil.
func (w *ringWaiter) Close() error {
	var errs []error
	w.closeOnce.Do(func() {
		if w.f != nil {
			if err := w.f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
				errs = append(errs, err)
			}
		}
		for _, m := range [][]byte{w.cons, w.prod} {
			if m != nil {
				errs = append(errs, unix.Munmap(m))
			}
		}
	})
	return errors.Join(errs...)
}
