// SPDX-License-Identifier: Apache-2.0

package replay

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/flowtap/flowtap/derive"
	"github.com/flowtap/flowtap/events"
)

// benchCapture is a pcap (Ethernet, as tcpdump -i lo writes) of n loopback
// connections one after the other, each a handshake, 10 requests of 100
// bytes and answers of 1,000 with their ACKs, and a close: 46 packets. It
// returns the file and its number of packets.
func benchCapture(n int) ([]byte, int) {
	var fs []frame
	for i := range n {
		start := float64(i * 50)
		c := newConv(fmt.Sprintf("127.0.0.1:%d", 10000+i), "127.0.0.1:8080", uint32(i)*7919, uint32(i)*104729).handshake(start)
		for r := range 10 {
			at := start + 1 + float64(r)*4
			c.send(at, 0, psh, string(make([]byte, 100))).send(at+1, 1, psh, string(make([]byte, 1000))).send(at+2, 0, ack, "")
			c.send(at+3, 1, ack, "")
		}
		c.closeFrom(start+45, 0)
		for _, s := range c.out {
			fs = append(fs, frame{ts: s.ts, data: ethernet(s.s.ip())})
		}
	}
	return pcapFile(le(), false, linkEthernet, 262144, fs), len(fs)
}

// BenchmarkReplay measures the producer alone: reading, decoding, counting
// and building base events (every address local, so each flow packet
// makes two).
func BenchmarkReplay(b *testing.B) {
	benchReplay(b, false)
}

// BenchmarkReplayTracker adds the flow tracker, driven by the capture's
// clock: what 'flowtap replay' does before routing to sinks.
func BenchmarkReplayTracker(b *testing.B) {
	benchReplay(b, true)
}

func benchReplay(b *testing.B, track bool) {
	data, packets := benchCapture(2000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var derived int
	for b.Loop() {
		tr := derive.NewTracker(derive.Config{CloseGrace: CloseGrace}, func(events.Event) { derived++ })
		clock := NewClock(tr)
		p := New(bytes.NewReader(data), Options{})
		err := p.RunBatches(context.Background(), 256, func(evs []events.Event) {
			if track {
				for _, ev := range evs {
					clock.Advance(ev.Timestamp)
					tr.Handle(ev)
				}
			}
			p.Recycle(evs)
		})
		if err != nil {
			b.Fatal(err)
		}
		if track {
			clock.Advance(p.End())
			tr.Close(p.End())
		}
	}
	if track && derived != 4*2000*b.N {
		b.Fatalf("%d flow events, want %d", derived, 4*2000*b.N)
	}
	b.ReportMetric(float64(packets)*float64(b.N)/b.Elapsed().Seconds(), "packets/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(packets*b.N), "ns/packet")
}

// BenchmarkDecode measures decoding one Ethernet IPv4 TCP data packet.
func BenchmarkDecode(b *testing.B) {
	s := tcpSeg()
	s.payload = make([]byte, 1000)
	data := ethernet(s.ip())
	b.ReportAllocs()
	var p packet
	for b.Loop() {
		if err := decodePacket(linkEthernet, data, uint32(len(data)), &p); err != nil {
			b.Fatal(err)
		}
	}
}
