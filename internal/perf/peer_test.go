// SPDX-License-Identifier: Apache-2.0

package perf

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// tcplifeScript is the peer of the short-connection figures: a port of
// bpftrace's tcplife to the sock:inet_sock_set_state tracepoint (kprobes
// do not exist on this machine class), one program that prints one line
// per TCP socket that closes after it was established: pid, comm, ports,
// lifetime in µs.
const tcplifeScript = `
tracepoint:sock:inet_sock_set_state /args->protocol == 6/ {
	if (args->newstate == 1) { @born[args->skaddr] = nsecs; }
	if (args->newstate == 7 && @born[args->skaddr]) {
		printf("%d %s %d %d %d\n", pid, comm, args->sport, args->dport, (nsecs - @born[args->skaddr]) / 1000);
		delete(@born[args->skaddr]);
	}
}
END { clear(@born); }
`

// peer is a running bpftrace tcplife-style script.
type peer struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startPeer starts the bpftrace peer, its output to /dev/null, and
// returns once its probe is attached. It mounts tracefs if it is not
// (bpftrace needs it) and leaves it mounted for the next sides.
func startPeer(b *testing.B) *peer {
	b.Helper()
	bin := requireTool(b, "bpftrace")
	if err := ensureTracefs(); err != nil {
		b.Fatalf("bpftrace peer: %v", err)
	}
	script, err := os.CreateTemp(b.TempDir(), "tcplife-*.bt")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := script.WriteString(tcplifeScript); err != nil {
		b.Fatal(err)
	}
	script.Close()
	// -B full: bpftrace's output buffered like flowtap's stdout to a file.
	cmd := exec.Command(bin, "-B", "full", script.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatalf("start bpftrace: %v", err)
	}
	p := &peer{cmd: cmd, done: make(chan struct{})}
	attached := make(chan struct{})
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		signalled := false
		for sc.Scan() {
			if !signalled && strings.HasPrefix(sc.Text(), "Attaching") {
				close(attached)
				signalled = true
			}
		}
		cmd.Wait()
	}()
	select {
	case <-attached:
		// bpftrace prints the line before the probe is live.
		time.Sleep(500 * time.Millisecond)
	case <-p.done:
		b.Fatalf("bpftrace exited before attaching: %s", stderr.String())
	case <-time.After(60 * time.Second):
		p.stop(b)
		b.Fatalf("bpftrace did not attach within 60 s: %s", stderr.String())
	}
	return p
}

// cpu returns the CPU bpftrace used so far.
func (p *peer) cpu() time.Duration { return treeCPU(p.cmd.Process.Pid) }

// stop ends bpftrace (SIGINT, then SIGKILL after 10 s) and waits for it.
func (p *peer) stop(b *testing.B) {
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// ensureTracefs mounts tracefs at /sys/kernel/tracing unless it is.
func ensureTracefs() error {
	if _, err := os.Stat("/sys/kernel/tracing/events"); err == nil {
		return nil
	}
	err := unix.Mount("nodev", "/sys/kernel/tracing", "tracefs", 0, "")
	if err != nil && !errors.Is(err, unix.EBUSY) {
		return err
	}
	return nil
}

// sideRunner is something running beside the workload on one side of an
// interleaved comparison: how much CPU it used so far, and how to stop it.
type sideRunner struct {
	cpu  func() time.Duration
	stop func()
}

// side is one "with" side of interleaveSides.
type side struct {
	name  string
	start func() sideRunner
}

// sideSamples are what interleaveSides measured of one side.
type sideSamples struct {
	samples []float64
	cores   float64
}

// interleaveSides takes, in each of rounds rounds, one sample without
// anything beside the workload and one with each side, in an order that
// rotates from round to round, so that every side sees the machine's drift
// alike. It returns the samples without, and each side's.
func interleaveSides(b *testing.B, rounds int, sample func() float64, sides []side) (without []float64, with map[string]*sideSamples) {
	b.Helper()
	with = map[string]*sideSamples{}
	used := map[string]time.Duration{}
	wall := map[string]time.Duration{}
	for _, s := range sides {
		with[s.name] = &sideSamples{}
	}
	n := len(sides) + 1
	for r := range rounds {
		for i := range n {
			k := (i + r) % n
			if k == len(sides) {
				without = append(without, sample())
				continue
			}
			s := sides[k]
			run := s.start()
			cpu0, t0 := run.cpu(), time.Now()
			with[s.name].samples = append(with[s.name].samples, sample())
			used[s.name] += run.cpu() - cpu0
			wall[s.name] += time.Since(t0)
			run.stop()
		}
	}
	b.Logf("samples without, in order: %.4g", without)
	for _, s := range sides {
		w := with[s.name]
		w.cores = used[s.name].Seconds() / wall[s.name].Seconds()
		b.Logf("samples with %s, in order: %.4g", s.name, w.samples)
	}
	return without, with
}

// peerSide is the bpftrace peer as a side.
func peerSide(b *testing.B) side {
	return side{"peer", func() sideRunner {
		p := startPeer(b)
		return sideRunner{p.cpu, func() { p.stop(b) }}
	}}
}
