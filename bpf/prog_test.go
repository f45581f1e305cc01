// SPDX-License-Identifier: Apache-2.0

package bpf_test

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/flowtap/flowtap/bpf"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/privtest"
)

// Packet builders for BPF_PROG_TEST_RUN. cgroup_skb test runs take an
// Ethernet frame; the kernel strips the Ethernet header, so the program
// sees the skb from the network header on, as it does on real traffic.

var (
	v4Src = netip.MustParseAddr("192.0.2.1")
	v4Dst = netip.MustParseAddr("198.51.100.2")
	v6Src = netip.MustParseAddr("2001:db8::1")
	v6Dst = netip.MustParseAddr("2001:db8::2")
)

func tcpHeader(sport, dport uint16, flags events.TCPFlags) []byte {
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	binary.BigEndian.PutUint32(h[4:], 1000)
	h[12] = 5 << 4
	h[13] = byte(flags)
	binary.BigEndian.PutUint16(h[14:], 65535)
	return h
}

// ipv4 builds an IPv4 packet; optWords adds that many 4-byte NOP option
// words; fragOff is the raw frag_off field (flags and offset).
func ipv4(proto byte, optWords int, fragOff uint16, payload []byte) []byte {
	hl := 20 + 4*optWords
	p := make([]byte, hl, hl+len(payload))
	p[0] = 4<<4 | byte(hl/4)
	binary.BigEndian.PutUint16(p[2:], uint16(hl+len(payload)))
	binary.BigEndian.PutUint16(p[6:], fragOff)
	p[8] = 64
	p[9] = proto
	s, d := v4Src.As4(), v4Dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	for i := 20; i < hl; i++ {
		p[i] = 1 // NOP
	}
	return append(p, payload...)
}

// ext is one IPv6 extension header (or the final protocol when len(body)
// is 0 and it is last).
type ext struct {
	proto byte
	body  []byte // without the next-header byte; nil for the final protocol
}

func genericExt(proto byte) ext { return ext{proto, make([]byte, 7)} } // hdrlen 0: 8 bytes

func fragExt(offset uint16, more bool) ext {
	b := make([]byte, 7)
	fo := offset << 3
	if more {
		fo |= 1
	}
	binary.BigEndian.PutUint16(b[1:], fo)
	return ext{44, b}
}

func authExt() ext {
	b := make([]byte, 23) // 24 bytes: (hdrlen 4 + 2) * 4
	b[0] = 4
	return ext{51, b}
}

// ipv6 builds an IPv6 packet whose header chain is exts followed by final
// (the protocol of payload).
func ipv6(exts []ext, final byte, payload []byte) []byte {
	var chain []byte
	for i, e := range exts {
		next := final
		if i+1 < len(exts) {
			next = exts[i+1].proto
		}
		chain = append(chain, next)
		chain = append(chain, e.body...)
	}
	p := make([]byte, 40, 40+len(chain)+len(payload))
	p[0] = 6 << 4
	binary.BigEndian.PutUint16(p[4:], uint16(len(chain)+len(payload)))
	first := final
	if len(exts) > 0 {
		first = exts[0].proto
	}
	p[6] = first
	p[7] = 64
	s, d := v6Src.As16(), v6Dst.As16()
	copy(p[8:], s[:])
	copy(p[24:], d[:])
	p = append(p, chain...)
	return append(p, payload...)
}

func ether(ethType uint16, pkt []byte) []byte {
	f := make([]byte, 14, 14+len(pkt))
	f[0], f[6] = 0x02, 0x02
	binary.BigEndian.PutUint16(f[12:], ethType)
	return append(f, pkt...)
}

// loadTestObjects loads (but does not attach) the programs and maps.
func loadTestObjects(t *testing.T) (*bpf.TestObjects, *ringbuf.Reader) {
	t.Helper()
	objs, err := bpf.LoadTestObjects(64 << 10)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() { objs.Close() })
	rd, err := ringbuf.NewReader(objs.Records)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	return objs, rd
}

// drain returns every record currently in the ring buffer, decoded.
func drain(t *testing.T, rd *ringbuf.Reader) []events.Event {
	t.Helper()
	var out []events.Event
	rd.SetDeadline(time.Now())
	for {
		rec, err := rd.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out
		}
		if err != nil {
			t.Fatalf("read ring buffer: %v", err)
		}
		ev, err := bpf.Decode(rec.RawSample, 0)
		if err != nil {
			t.Fatalf("kernel wrote an undecodable record: %v", err)
		}
		out = append(out, ev)
	}
}

// TestProgramParsing runs both programs on crafted packets with
// BPF_PROG_TEST_RUN: header walking, flag selection, fragments, and that
// every packet is allowed.
func TestProgramParsing(t *testing.T) {
	privtest.Require(t)
	objs, rd := loadTestObjects(t)

	syn := tcpHeader(40000, 443, events.FlagSYN)
	const ipProtoTCP, ipProtoUDP = 6, 17
	sixExts := []ext{genericExt(0), genericExt(60), genericExt(43), fragExt(0, true), authExt(), genericExt(60)}
	sevenExts := append(append([]ext(nil), sixExts...), genericExt(60))

	type want struct {
		v6    bool
		flags events.TCPFlags
	}
	for _, tc := range []struct {
		name  string
		frame []byte
		want  *want // nil: no record
	}{
		{"v4 SYN", ether(0x0800, ipv4(ipProtoTCP, 0, 0, syn)), &want{false, events.FlagSYN}},
		{"v4 SYN-ACK", ether(0x0800, ipv4(ipProtoTCP, 0, 0, tcpHeader(40000, 443, events.FlagSYN|events.FlagACK))), &want{false, events.FlagSYN | events.FlagACK}},
		{"v4 FIN-ACK with data", ether(0x0800, ipv4(ipProtoTCP, 0, 0, append(tcpHeader(40000, 443, events.FlagFIN|events.FlagACK|events.FlagPSH), "bye"...))), &want{false, events.FlagFIN | events.FlagACK | events.FlagPSH}},
		{"v4 RST", ether(0x0800, ipv4(ipProtoTCP, 0, 0, tcpHeader(40000, 443, events.FlagRST))), &want{false, events.FlagRST}},
		{"v4 data ACK", ether(0x0800, ipv4(ipProtoTCP, 0, 0, append(tcpHeader(40000, 443, events.FlagACK|events.FlagPSH), "data"...))), nil},
		{"v4 pure ACK", ether(0x0800, ipv4(ipProtoTCP, 0, 0, tcpHeader(40000, 443, events.FlagACK))), nil},
		{"v4 with options", ether(0x0800, ipv4(ipProtoTCP, 3, 0, syn)), &want{false, events.FlagSYN}},
		{"v4 first fragment", ether(0x0800, ipv4(ipProtoTCP, 0, 0x2000, syn)), &want{false, events.FlagSYN}},
		{"v4 later fragment", ether(0x0800, ipv4(ipProtoTCP, 0, 0x2000|185, syn)), nil},
		{"v4 UDP", ether(0x0800, ipv4(ipProtoUDP, 0, 0, syn)), nil},
		{"v4 truncated TCP", ether(0x0800, ipv4(ipProtoTCP, 0, 0, syn[:10])), nil},
		{"v4 bad version", ether(0x0800, func() []byte { p := ipv4(ipProtoTCP, 0, 0, syn); p[0] = 6<<4 | 5; return p }()), nil},
		{"ARP", ether(0x0806, make([]byte, 28)), nil},
		{"v6 SYN", ether(0x86dd, ipv6(nil, ipProtoTCP, syn)), &want{true, events.FlagSYN}},
		{"v6 data", ether(0x86dd, ipv6(nil, ipProtoTCP, append(tcpHeader(40000, 443, events.FlagACK), "x"...))), nil},
		{"v6 hop-by-hop, dstopts, routing", ether(0x86dd, ipv6([]ext{genericExt(0), genericExt(60), genericExt(43)}, ipProtoTCP, syn)), &want{true, events.FlagSYN}},
		{"v6 first fragment", ether(0x86dd, ipv6([]ext{fragExt(0, true)}, ipProtoTCP, syn)), &want{true, events.FlagSYN}},
		{"v6 later fragment", ether(0x86dd, ipv6([]ext{fragExt(185, false)}, ipProtoTCP, syn)), nil},
		{"v6 AH", ether(0x86dd, ipv6([]ext{authExt()}, ipProtoTCP, syn)), &want{true, events.FlagSYN}},
		{"v6 six extension headers", ether(0x86dd, ipv6(sixExts, ipProtoTCP, tcpHeader(40000, 443, events.FlagRST))), &want{true, events.FlagRST}},
		{"v6 seven extension headers (over the limit)", ether(0x86dd, ipv6(sevenExts, ipProtoTCP, syn)), nil},
		{"v6 UDP", ether(0x86dd, ipv6([]ext{genericExt(60)}, ipProtoUDP, syn)), nil},
		{"v6 no next header", ether(0x86dd, ipv6(nil, 59, syn)), nil},
		{"v6 truncated extension", ether(0x86dd, ipv6(nil, 0, []byte{6, 0})), nil},
	} {
		for _, dir := range []struct {
			prog *ebpf.Program
			dir  events.PacketDirection
		}{{objs.Ingress, events.Ingress}, {objs.Egress, events.Egress}} {
			t.Run(tc.name+"/"+dir.dir.String(), func(t *testing.T) {
				ret, err := dir.prog.Run(&ebpf.RunOptions{Data: tc.frame})
				if err != nil {
					t.Fatalf("test run: %v", err)
				}
				if ret != 1 {
					t.Errorf("program returned %d, want 1 (allow)", ret)
				}
				got := drain(t, rd)
				if tc.want == nil {
					if len(got) != 0 {
						t.Fatalf("expected no record, got %d: %+v", len(got), got[0].Payload)
					}
					return
				}
				if len(got) != 1 {
					t.Fatalf("expected one record, got %d", len(got))
				}
				ev := got[0]
				p := ev.Payload.(*events.PacketFlowBase)
				src, dst := v4Src, v4Dst
				if tc.want.v6 {
					src, dst = v6Src, v6Dst
				}
				if p.Src != src || p.Dst != dst {
					t.Errorf("addresses %v -> %v, want %v -> %v", p.Src, p.Dst, src, dst)
				}
				if p.SrcPort != 40000 || p.DstPort != 443 {
					t.Errorf("ports %d -> %d, want 40000 -> 443", p.SrcPort, p.DstPort)
				}
				if p.Flags != tc.want.flags {
					t.Errorf("flags %v, want %v", p.Flags, tc.want.flags)
				}
				if p.Direction != dir.dir {
					t.Errorf("direction %v, want %v", p.Direction, dir.dir)
				}
				if want := uint32(len(tc.frame) - 14); p.Length != want {
					t.Errorf("length %d, want %d (IP packet length)", p.Length, want)
				}
				if ev.Timestamp <= 0 {
					t.Errorf("boot-time timestamp %d not set", ev.Timestamp)
				}
				if ev.Context.SocketCookie == 0 {
					t.Errorf("no socket cookie")
				}
			})
		}
	}
}
