// SPDX-License-Identifier: Apache-2.0

package replay

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"runtime"
	"testing"

	"github.com/flowtap/flowtap/derive"
	"github.com/flowtap/flowtap/events"
)

// streamCapture writes a pcap of n loopback connections to w, one frame
// at a time (the test never holds the file): each a handshake, a request
// and an answer, and a close, started 10 µs apart (100,000 connections a
// second of capture time, all within one closedLinger and one idle
// timeout, so nothing ages out: only the bounds can keep memory flat);
// 8 packets each.
// Clients are spread over 127.0.0.0/16 so that no 4-tuple repeats.
func streamCapture(w io.WriteCloser, n int) {
	defer w.Close()
	order := binary.LittleEndian
	b := order.AppendUint32(nil, magicPcapMicro)
	b = order.AppendUint16(b, 2)
	b = order.AppendUint16(b, 4)
	b = append(b, make([]byte, 8)...)
	b = order.AppendUint32(b, 262144)
	b = order.AppendUint32(b, linkEthernet)
	if _, err := w.Write(b); err != nil {
		return
	}
	for i := range n {
		start := float64(i) / 100 // ms
		client := fmt.Sprintf("127.0.%d.%d:%d", 1+i/60000%200, 1+i/200%250, 10000+i%200)
		c := newConv(client, "127.0.0.1:8080", uint32(i)*7919, uint32(i)*104729).handshake(start)
		c.send(start+0.3, 0, psh, "GET").send(start+0.4, 1, psh, "200 OK").closeFrom(start+0.5, 0)
		b = b[:0]
		for _, s := range c.out {
			data := ethernet(s.s.ip())
			b = order.AppendUint32(b, uint32(s.ts/sec))
			b = order.AppendUint32(b, uint32((s.ts%sec)/1000))
			b = order.AppendUint32(b, uint32(len(data)))
			b = order.AppendUint32(b, uint32(len(data)))
			b = append(b, data...)
		}
		if _, err := w.Write(b); err != nil {
			return
		}
	}
}

// TestMemoryBoundedByTables replays 400,000 connections with the
// connection table and the flow table bounded at 4,096 each, and holds
// the heap in use, sampled all along, to a bound that does not grow with
// the number of connections: it must stay within memBound of what
// 20,000 connections take. Closed connections linger 60 s of capture
// time, which this capture never reaches: only the tables' bounds keep
// memory flat.
func TestMemoryBoundedByTables(t *testing.T) {
	small := peakHeap(t, 20_000)
	large := peakHeap(t, 400_000)
	t.Logf("peak heap in use: %.1f MiB after 20,000 connections, %.1f MiB after 400,000", float64(small)/(1<<20), float64(large)/(1<<20))
	if large > small+memBound {
		t.Errorf("peak heap grew by %.1f MiB from 20,000 to 400,000 connections, want at most %d MiB: memory grows with the connections",
			float64(large-small)/(1<<20), memBound>>20)
	}
}

// memBound is how much more heap 400,000 connections may take than 20,000
// with both tables bounded at 4,096: slack for the garbage collector's
// timing, not for anything kept per connection (400,000 connections of
// even 100 bytes each would be 38 MiB).
const memBound = 8 << 20

// peakHeap replays n connections (streamCapture) through the producer
// and the flow tracker, both bounded at 4,096 connections, and returns
// the largest heap in use seen after a collection, sampled every 50,000
// connections' worth of batches.
func peakHeap(t *testing.T, n int) uint64 {
	t.Helper()
	const tables = 4096
	r, w := io.Pipe()
	go streamCapture(w, n)
	var ends int
	tr := derive.NewTracker(derive.Config{MaxFlows: tables, CloseGrace: CloseGrace}, func(ev events.Event) {
		if ev.ID == events.IDNetFlowTCPEnd {
			ends++
		}
	})
	clock := NewClock(tr)
	p := New(r, Options{MaxConns: tables})
	var peak uint64
	var batches int
	sample := func() {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
	}
	err := p.RunBatches(context.Background(), 256, func(evs []events.Event) {
		for _, ev := range evs {
			clock.Advance(ev.Timestamp)
			tr.Handle(ev)
		}
		if batches++; batches%2000 == 0 {
			sample()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	// The rest end as a run's shutdown ends them.
	tr.Close(clock.now + 1)
	sample()
	if st := p.Stats(); st.Packets != uint64(8*n) {
		t.Fatalf("%d packets replayed, want %d", st.Packets, 8*n)
	}
	if ends != 2*n {
		t.Errorf("%d ends, want %d (two local endpoints per connection)", ends, 2*n)
	}
	return peak
}
