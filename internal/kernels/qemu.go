// SPDX-License-Identifier: Apache-2.0

package kernels

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// QEMU boots a kernel with an initramfs under qemu-system-x86_64.
type QEMU struct {
	// Accel is qemu's accelerator: "tcg" (the default) or "kvm". On the
	// project's machines /dev/kvm exists but cannot run these kernels
	// (no vmx/svm: they abort or crawl), so the matrix uses TCG unless
	// told otherwise.
	Accel string
	// MemoryMiB is the guest's memory; the initramfs is unpacked into it.
	MemoryMiB int
	// CPUs is the guest's CPU count.
	CPUs int
	// Timeout bounds one boot; the guest is killed after it.
	Timeout time.Duration
	// Append is added to the kernel command line.
	Append string
	// Echo, if set, also receives the console.
	Echo io.Writer
}

// ErrTimeout is returned by Boot when the guest ran out of time.
var ErrTimeout = errors.New("guest killed after its timeout")

// Boot runs the guest until it powers off: its console (ttyS0) goes to
// the file consolePath, its results port (ttyS1) to resultsPath.
func (q QEMU) Boot(ctx context.Context, vmlinuz, initrd, consolePath, resultsPath string) error {
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return fmt.Errorf("qemu-system-x86_64: %w (install Debian's qemu-system-x86: make deps)", err)
	}
	console, err := os.Create(consolePath)
	if err != nil {
		return fmt.Errorf("console log: %w", err)
	}
	defer console.Close()
	os.Remove(resultsPath)
	ctx, cancel := context.WithTimeout(ctx, q.Timeout)
	defer cancel()
	accel := q.Accel
	if accel == "" {
		accel = "tcg"
	}
	cpu := "max"
	if accel == "kvm" {
		cpu = "host"
	}
	args := []string{
		"-accel", accel, "-cpu", cpu,
		"-m", fmt.Sprint(q.MemoryMiB), "-smp", fmt.Sprint(q.CPUs),
		"-nographic", "-no-reboot", "-nodefaults", "-display", "none",
		"-serial", "stdio", "-serial", "file:" + resultsPath,
		"-kernel", vmlinuz, "-initrd", initrd,
		// panic=-1: reboot at once on a panic, which -no-reboot turns
		// into qemu exiting.
		"-append", strings.TrimSpace("console=ttyS0 panic=-1 quiet " + q.Append),
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	var out io.Writer = console
	if q.Echo != nil {
		out = io.MultiWriter(console, q.Echo)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 5 * time.Second
	fmt.Fprintf(console, "+ %s %q\n", bin, args)
	err = cmd.Run()
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w (%v)", ErrTimeout, q.Timeout)
	}
	if err != nil {
		return fmt.Errorf("qemu: %w", err)
	}
	return nil
}
