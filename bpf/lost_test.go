// SPDX-License-Identifier: Apache-2.0

package bpf_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/flowtap/flowtap/bpf"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/privtest"
	"github.com/flowtap/flowtap/internal/testutil"
)

// testCgroup is a cgroup v2 directory a test creates for its own
// processes, and removes again.
type testCgroup struct {
	path string
	fd   int
}

func newTestCgroup(t testing.TB) testCgroup {
	t.Helper()
	mount, err := bpf.FindCgroup2Mount()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(mount, fmt.Sprintf("flowtap-test-%d-%d", os.Getpid(), time.Now().UnixNano()))
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		os.Remove(path)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.Close(fd)
		// A cgroup whose last process just exited can be busy for a
		// moment.
		deadline := time.Now().Add(waitTimeout)
		for {
			err := os.Remove(path)
			if err == nil || errors.Is(err, os.ErrNotExist) {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("remove cgroup %s: %v", path, err)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	return testCgroup{path: path, fd: fd}
}

// attachFlowPacketCounter attaches, independently of flowtap's programs, a
// small cgroup_skb program to both hooks of cgroup that counts the IPv4
// TCP packets that go with a record of flowtap's in its default mode
// (flows from sock_ops, Options.PacketFlows off): each packet with SYN set
// (the connect, the listener's request, and the SYN-ACK at either end:
// one moment each), and each RST that refuses a connect. A reset of an
// established socket makes no record of its own (its closed record says
// it), nor does a FIN. The tests' traffic is IPv4 without options or
// fragments, on sockets sock_ops follows.
// The returned function reads the count.
func attachFlowPacketCounter(t *testing.T, cgroup string) func() uint64 {
	t.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	// loadByte loads the packet byte at offset R2 into R2 (or jumps out).
	loadByte := func() asm.Instructions {
		return asm.Instructions{
			asm.Mov.Reg(asm.R1, asm.R6),
			asm.Mov.Reg(asm.R3, asm.RFP),
			asm.Add.Imm(asm.R3, -16),
			asm.Mov.Imm(asm.R4, 1),
			asm.FnSkbLoadBytes.Call(),
			asm.JNE.Imm(asm.R0, 0, "out"),
			asm.LoadMem(asm.R2, asm.RFP, -16, asm.Byte),
		}
	}
	var insns asm.Instructions
	insns = append(insns,
		asm.Mov.Reg(asm.R6, asm.R1),
		// __sk_buff.protocol (offset 16) must be htons(ETH_P_IP).
		asm.LoadMem(asm.R2, asm.R6, 16, asm.Word),
		asm.JNE.Imm(asm.R2, 0x0008, "out"),
		// IHL: the TCP header offset.
		asm.Mov.Imm(asm.R2, 0),
	)
	insns = append(insns, loadByte()...)
	insns = append(insns,
		asm.Mov.Reg(asm.R7, asm.R2),
		asm.And.Imm(asm.R7, 0x0f),
		asm.LSh.Imm(asm.R7, 2),
		// Protocol: TCP.
		asm.Mov.Imm(asm.R2, 9),
	)
	insns = append(insns, loadByte()...)
	insns = append(insns,
		asm.JNE.Imm(asm.R2, 6, "out"),
		// The TCP flags byte.
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.Add.Imm(asm.R2, 13),
	)
	insns = append(insns, loadByte()...)
	insns = append(insns,
		// SYN, with or without ACK: a moment of a handshake.
		asm.JSet.Imm(asm.R2, 0x02, "count"),
		// RST: a record only when it refuses a connect, at a full
		// socket in SYN_SENT (bpf_sock.state, offset 72). Any other
		// reset ends its socket, whose closed record is counted apart.
		// FIN: no record (the closed record again).
		asm.JSet.Imm(asm.R2, 0x04, "rst"),
		asm.Ja.Label("out"),
		// __sk_buff.sk is at offset 168.
		asm.LoadMem(asm.R1, asm.R6, 168, asm.DWord).WithSymbol("rst"),
		asm.JEq.Imm(asm.R1, 0, "out"),
		asm.FnSkFullsock.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.LoadMem(asm.R1, asm.R0, 72, asm.Word),
		asm.JNE.Imm(asm.R1, 2, "out"), // TCP_SYN_SENT
		asm.StoreImm(asm.RFP, -4, 0, asm.Word).WithSymbol("count"),
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 1).WithSymbol("out"),
		asm.Return(),
	)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.CGroupSKB, License: "Dual BSD/GPL", Instructions: insns})
	if err != nil {
		t.Fatalf("load packet counter: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	for _, at := range []ebpf.AttachType{ebpf.AttachCGroupInetIngress, ebpf.AttachCGroupInetEgress} {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroup, Attach: at, Program: prog})
		if err != nil {
			t.Fatalf("attach packet counter: %v", err)
		}
		t.Cleanup(func() { l.Close() })
	}
	return func() uint64 {
		var vals []uint64
		if err := m.Lookup(uint32(0), &vals); err != nil {
			t.Fatalf("read packet counter: %v", err)
		}
		var sum uint64
		for _, v := range vals {
			sum += v
		}
		return sum
	}
}

// TestLostRecordMarkers floods a one-page ring buffer from a helper process
// in a cgroup of its own, first while nothing reads it, then while Run
// reads slowly, and checks the accounting exactly: every record the kernel
// generated was either delivered or counted in a flowtap_records_lost
// marker, and the markers add up to Stats().Lost.
//
// What was generated is counted independently: a separate cgroup_skb
// program counts the packets that make records, and every connection's two
// sockets (client and accepted) each close exactly once (TestCloseRecords
// pins that), so records = packets + 2 per connection.
func TestLostRecordMarkers(t *testing.T) {
	privtest.Require(t)
	cg := newTestCgroup(t)
	packets := attachFlowPacketCounter(t, cg.path)
	logs := &testutil.SyncBuffer{}
	c, err := bpf.Open(bpf.Options{CgroupPath: cg.path, RingBufferSize: os.Getpagesize(),
		Logger: hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Warn})})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer c.Close()
	h := startHelper(t, "flood", helperOpts{cgroupFD: cg.fd})

	// Phase 1: nobody reads; the ring fills at once.
	const conns1, conns2 = 100, 300
	h.send(t, fmt.Sprint(conns1))
	h.expect(t, "done")
	lost1, err := c.KernelLost()
	if err != nil {
		t.Fatal(err)
	}
	if lost1 == 0 {
		t.Fatalf("no records lost after %d connections with a %d-byte ring", conns1, os.Getpagesize())
	}

	// Phase 2: Run reads, slowly.
	var mu sync.Mutex
	var received uint64
	var markers []events.Event
	emit := func(ev events.Event) {
		mu.Lock()
		if ev.ID == events.IDRecordsLost {
			markers = append(markers, ev)
			mu.Unlock()
			return
		}
		received++
		mu.Unlock()
		time.Sleep(200 * time.Microsecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, emit) }()
	// Run's periodic check (about once a second) reports the loss of
	// phase 1.
	for deadline := time.Now().Add(waitTimeout); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(markers)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no flowtap_records_lost marker within %v of Run starting", waitTimeout)
		}
	}
	h.send(t, fmt.Sprint(conns2))
	h.expect(t, "done")
	h.stop(t)
	lost2, err := c.KernelLost()
	if err != nil {
		t.Fatal(err)
	}
	if lost2 <= lost1 {
		t.Errorf("no records lost while Run read slowly (kernel lost %d before, %d after)", lost1, lost2)
	}

	// Wait until Run has read everything that is left.
	var generated, kernelLost, got uint64
	for deadline := time.Now().Add(2 * waitTimeout); ; time.Sleep(20 * time.Millisecond) {
		// No-socket resets are host-wide (other traffic on the host
		// too): the program's own count of them is added.
		nosock, err := c.NoSocketResets()
		if err != nil {
			t.Fatal(err)
		}
		generated = packets() + 2*(conns1+conns2) + nosock
		if kernelLost, err = c.KernelLost(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		got = received
		mu.Unlock()
		if got+kernelLost >= generated || time.Now().After(deadline) {
			break
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return after cancel")
	}

	st := c.Stats()
	mu.Lock()
	defer mu.Unlock()
	var markerSum uint64
	prevTo := int64(0)
	for i, ev := range markers {
		m := ev.Payload.(*events.RecordsLost)
		markerSum += m.Lost
		if m.Lost == 0 || m.Total != markerSum || m.From >= m.To || m.From < prevTo || ev.Timestamp != m.To {
			t.Errorf("marker %d inconsistent: %+v at %d (running sum %d, previous end %d)", i, m, ev.Timestamp, markerSum, prevTo)
		}
		prevTo = m.To
	}
	t.Logf("%d connections: %d flow packets counted independently (plus no-socket resets), %d records generated; %d delivered, %d lost in %d markers; Stats %+v",
		conns1+conns2, packets(), generated, received, markerSum, len(markers), st)
	if received+markerSum != generated {
		t.Errorf("delivered %d + lost %d = %d, but %d records were generated", received, markerSum, received+markerSum, generated)
	}
	if len(markers) > 0 {
		if m := markers[0].Payload.(*events.RecordsLost); m.Total < lost1 {
			t.Errorf("first marker reports %d lost, the kernel had counted %d in phase 1 already", m.Total, lost1)
		}
	}
	if markerSum != st.Lost {
		t.Errorf("markers report %d lost, Stats().Lost = %d", markerSum, st.Lost)
	}
	if st.Records != received {
		t.Errorf("Stats().Records = %d, emitted %d records", st.Records, received)
	}
	// One marker from a periodic check (phase 1), at least one more for
	// phase 2 (periodic or the final check).
	if len(markers) < 2 {
		t.Errorf("%d flowtap_records_lost markers, want at least 2", len(markers))
	}
	if out := logs.String(); !strings.Contains(out, "[WARN]") || !strings.Contains(out, "flow records lost") || !strings.Contains(out, "lost_total=") {
		t.Errorf("no lost-record warning logged; log:\n%s", out)
	}
}
