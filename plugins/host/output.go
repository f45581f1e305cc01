// SPDX-License-Identifier: Apache-2.0

package host

import (
	"context"
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// ErrOutputClosed: the sink's batch failed and the file handed to the
// plugin as its output (Config.Output, flowtap's standard output) has no
// reader any more, as when flowtap's output is piped into `head`.
// Retrying cannot succeed; a Unix tool stops there.
var ErrOutputClosed = errors.New("output closed: flowtap's standard output has no reader")

// OutputClosed reports whether f is a pipe or a socket whose other end is
// gone: writing to it would fail with EPIPE. A terminal, a regular file or
// /dev/null is never closed this way. It asks the kernel (poll), and
// changes nothing.
func OutputClosed(f *os.File) bool {
	if f == nil || !pipeOrSocket(f) {
		return false
	}
	closed, _ := pollClosed(f, 0)
	return closed
}

// WaitOutputClosed returns true once f, a pipe or a socket, has no reader
// (see OutputClosed), and false when ctx ends first or f is neither. It
// checks a few times a second, in one goroutine that blocks in poll(2).
func WaitOutputClosed(ctx context.Context, f *os.File) bool {
	if f == nil || !pipeOrSocket(f) {
		return false
	}
	for ctx.Err() == nil {
		closed, err := pollClosed(f, outputPollInterval)
		if closed {
			return true
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			return false
		}
	}
	return false
}

// outputPollInterval bounds how late WaitOutputClosed sees ctx end.
const outputPollInterval = 250 * time.Millisecond

// pipeOrSocket reports whether f is a FIFO or a socket: the files whose
// reader can go away.
func pipeOrSocket(f *os.File) bool {
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	return fi.Mode()&(os.ModeNamedPipe|os.ModeSocket) != 0
}

// pollClosed waits up to timeout for f to report an error or a hang-up:
// the write end of a pipe without readers reports POLLERR, a socket whose
// peer closed POLLHUP. It asks for no event, so ordinary readiness to
// write does not end the wait.
// (Through SyscallConn: f.Fd would put the descriptor in blocking mode.)
func pollClosed(f *os.File, timeout time.Duration) (bool, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return false, err
	}
	var closed bool
	var perr error
	err = rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd)}}
		var n int
		n, perr = unix.Poll(fds, int(timeout.Milliseconds()))
		closed = perr == nil && n > 0 && fds[0].Revents&(unix.POLLERR|unix.POLLHUP) != 0
	})
	if err != nil {
		return false, err
	}
	return closed, perr
}
