// SPDX-License-Identifier: Apache-2.0

package workload

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"
)

// ServeProcess is a 'flowtap-workload serve' child process.
type ServeProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines *bufio.Scanner
	info  ServeInfo
	sum   ServeSummary
	err   error
	done  chan struct{}
}

// StartServe starts exe (the flowtap-workload binary) in serve mode with
// cfg, and returns once it listens. The child is killed if ctx ends or
// this process dies; Stop ends it cleanly.
func StartServe(ctx context.Context, exe string, cfg ServeConfig, extraArgs ...string) (*ServeProcess, error) {
	args := []string{"serve"}
	for _, e := range cfg.Listen {
		args = append(args, "--listen", e.String())
	}
	for _, e := range cfg.Closed {
		args = append(args, "--closed", e.String())
	}
	if cfg.IOTimeout > 0 {
		args = append(args, "--io-timeout", cfg.IOTimeout.String())
	}
	args = append(args, extraArgs...)
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p := &ServeProcess{cmd: cmd, stdin: stdin, lines: bufio.NewScanner(stdout), done: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the thread that started the child ends, not
		// the process, and InNetns ends threads: start the child from a
		// thread of its own that lives until the child is gone.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer close(p.done)
		if err := cmd.Start(); err != nil {
			ready <- fmt.Errorf("start %s serve: %w", exe, err)
			return
		}
		if !p.lines.Scan() {
			ready <- fmt.Errorf("%s serve printed no listeners: %v", exe, cmd.Wait())
			return
		}
		if err := json.Unmarshal(p.lines.Bytes(), &p.info); err != nil {
			ready <- fmt.Errorf("%s serve: first line %q: %w", exe, p.lines.Text(), err)
			cmd.Process.Kill()
			cmd.Wait()
			return
		}
		ready <- nil
		// The summary line comes when stdin closes.
		if p.lines.Scan() {
			if err := json.Unmarshal(p.lines.Bytes(), &p.sum); err != nil {
				p.err = fmt.Errorf("serve summary %q: %w", p.lines.Text(), err)
			}
		} else {
			p.err = errors.New("serve exited without a summary")
		}
		io.Copy(io.Discard, stdout)
		if err := cmd.Wait(); err != nil && p.err == nil {
			p.err = fmt.Errorf("serve: %w", err)
		}
	}()
	select {
	case err := <-ready:
		if err != nil {
			return nil, err
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		return nil, fmt.Errorf("%s serve did not listen within 30s", exe)
	}
	return p, nil
}

// Info is what the serve process printed when it started listening.
func (p *ServeProcess) Info() ServeInfo { return p.info }

// Stop closes the child's stdin, which makes it finish the connections in
// flight and exit, and returns its summary. After a minute it kills it.
// Stop may be called more than once.
func (p *ServeProcess) Stop() (ServeSummary, error) {
	p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		p.cmd.Process.Kill()
		<-p.done
		if p.err == nil {
			p.err = errors.New("serve did not exit within a minute of stdin closing: killed")
		}
	}
	return p.sum, p.err
}
