// SPDX-License-Identifier: Apache-2.0

package replay

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/flowtap/flowtap/derive"
	"github.com/flowtap/flowtap/events"
)

// tcpSeg is a TCP segment from 10.0.0.1:1234 to 10.0.0.2:80 with 5 bytes.
func tcpSeg() seg {
	return seg{src: netip.MustParseAddrPort("10.0.0.1:1234"), dst: netip.MustParseAddrPort("10.0.0.2:80"),
		flags: synAck, seq: 42, payload: []byte("hello")}
}

// tcpSeg6 is the same over IPv6 with extension headers ext.
func tcpSeg6(ext ...uint8) seg {
	s := tcpSeg()
	s.src, s.dst = netip.MustParseAddrPort("[fd00::1]:1234"), netip.MustParseAddrPort("[fd00::2]:80")
	s.ext6 = ext
	return s
}

func TestDecodeLinkTypes(t *testing.T) {
	ip4, ip6 := tcpSeg().ip(), tcpSeg6().ip()
	for _, tc := range []struct {
		name string
		link uint32
		data []byte
	}{
		{"ethernet", linkEthernet, ethernet(ip4)},
		{"ethernet 802.1Q", linkEthernet, ethernet(ip6, etherVLAN)},
		{"ethernet 802.1ad+802.1Q", linkEthernet, ethernet(ip4, etherQinQ, etherVLAN)},
		{"ethernet old QinQ", linkEthernet, ethernet(ip4, etherQinQv1, etherVLAN)},
		{"sll", linkSLL, sll(ip6)},
		{"sll2", linkSLL2, sll2(ip4)},
		{"sll2 vlan", linkSLL2, append(append(binary.BigEndian.AppendUint16(nil, etherVLAN), sll2(ip4)[2:20]...), append([]byte{0, 7, 8, 0}, ip4...)...)},
		{"raw 101", linkRaw, ip6},
		{"raw 12", linkRaw12, ip4},
		{"raw 14", linkRaw14, ip6},
		{"ipv4 228", linkIPv4, ip4},
		{"ipv6 229", linkIPv6, ip6},
		{"null little-endian AF_INET", linkNull, null(ip4, binary.LittleEndian, 2)},
		{"null big-endian AF_INET", linkNull, null(ip4, binary.BigEndian, 2)},
		{"null AF_INET6 linux", linkNull, null(ip6, binary.LittleEndian, 10)},
		{"null AF_INET6 freebsd", linkNull, null(ip6, binary.LittleEndian, 28)},
		{"null AF_INET6 darwin", linkNull, null(ip6, binary.BigEndian, 30)},
		{"loop AF_INET6 openbsd", linkLoop, null(ip6, binary.BigEndian, 24)},
	} {
		var p packet
		if err := decodePacket(tc.link, tc.data, uint32(len(tc.data)), &p); err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if p.sport != 1234 || p.dport != 80 || p.seq != 42 || p.flags != synAck || p.proto != protoTCP ||
			p.payloadLen != 5 || string(p.payload) != "hello" || !p.src.IsValid() || p.src.Unmap().Is4() != p.dst.Unmap().Is4() {
			t.Errorf("%s: decoded %+v", tc.name, p)
		}
	}
}

func TestDecodeIPv6ExtensionHeaders(t *testing.T) {
	for _, ext := range [][]uint8{
		nil,
		{protoHopByHop},
		{protoHopByHop, protoRouting, protoDestOpts},
		{protoFragment}, // a first fragment
		{protoAH},
		{protoHopByHop, protoDestOpts, protoRouting, protoDestOpts, protoAH, protoFragment}, // six: the most
	} {
		var p packet
		data := tcpSeg6(ext...).ip()
		if err := decodePacket(linkRaw, data, uint32(len(data)), &p); err != nil || p.payloadLen != 5 || p.dport != 80 {
			t.Errorf("extension headers %v: %v, %+v", ext, err, p)
		}
	}
}

func TestDecodeSkips(t *testing.T) {
	s := tcpSeg()
	ip4 := s.ip()
	udp := s
	udp.udp = true

	withOptions := append(append(append([]byte(nil), ip4[:20]...), 1, 1, 1, 0), ip4[20:]...) // NOP NOP NOP EOL
	withOptions[0] = 0x46
	binary.BigEndian.PutUint16(withOptions[2:], uint16(len(withOptions)))
	ihl4 := append([]byte(nil), ip4...)
	ihl4[0] = 0x44
	tooLong := append([]byte(nil), ip4...)
	binary.BigEndian.PutUint16(tooLong[2:], 2000)
	frag := s
	frag.fragOff = 185 // a non-first fragment
	firstFrag := s
	firstFrag.fragOff = 0x2000 // more fragments, offset 0
	icmp := s
	icmp.proto = 1
	badDoff := append([]byte(nil), ip4...)
	badDoff[20+12] = 0x40
	seven := tcpSeg6(protoHopByHop, protoDestOpts, protoDestOpts, protoDestOpts, protoDestOpts, protoDestOpts, protoDestOpts).ip()
	nonFirst6 := tcpSeg6(protoFragment).ip()
	nonFirst6[40+3] = 8
	icmp6 := tcpSeg6()
	icmp6.proto = 58
	noNext := tcpSeg6()
	noNext.proto = 59
	extPast := tcpSeg6(protoHopByHop).ip()
	extPast[41] = 200 // 1608 bytes of hop-by-hop options
	tso := append([]byte(nil), ip4...)
	binary.BigEndian.PutUint16(tso[2:], 0) // a segmentation-offload packet: length 0

	for _, tc := range []struct {
		name string
		link uint32
		data []byte
		wire int // 0: len(data)
		kind kind
		want string // part of the reason, or the payload length when kind is 0
	}{
		{"ipv4 udp", linkRaw, udp.ip(), 0, 0, "5"},
		{"ipv4 options", linkRaw, withOptions, 0, 0, "5"},
		{"ipv4 first fragment", linkRaw, firstFrag.ip(), 0, 0, "5"},
		{"ipv4 length 0 (TSO)", linkRaw, tso, 0, 0, "5"},
		{"arp", linkEthernet, append([]byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x06}, make([]byte, 28)...), 0, kindNotIP, ""},
		{"802.3 llc", linkEthernet, append([]byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0, 40}, make([]byte, 40)...), 0, kindNotIP, ""},
		{"null other family", linkNull, null(ip4, binary.LittleEndian, 7), 0, kindNotIP, ""},
		{"raw version 5", linkRaw, append([]byte{0x50}, ip4[1:]...), 0, kindNotIP, ""},
		{"icmp", linkRaw, icmp.ip(), 0, kindOtherProto, ""},
		{"icmpv6", linkRaw, icmp6.ip(), 0, kindOtherProto, ""},
		{"ipv6 no next header", linkRaw, noNext.ip(), 0, kindOtherProto, ""},
		{"seven extension headers", linkRaw, seven, 0, kindOtherProto, ""},
		{"ipv4 non-first fragment", linkRaw, frag.ip(), 0, kindFragment, ""},
		{"ipv6 non-first fragment", linkRaw, nonFirst6, 0, kindFragment, ""},
		{"ipv4 header length 16", linkRaw, ihl4, 0, kindMalformed, "IPv4 header length 16, less than 20"},
		{"ipv4 total length past the packet", linkRaw, tooLong, 0, kindMalformed, "IPv4 total length 2000, the header is 20 and the packet 45 bytes"},
		{"tcp data offset 16", linkRaw, badDoff, 0, kindMalformed, "TCP data offset 16"},
		{"ipv6 extension past the packet", linkRaw, extPast, 0, kindMalformed, "IPv6 extension headers run"},
		{"ethernet cut by snaplen", linkEthernet, ethernet(ip4)[:30], 100, kindSnaplen, "IPv4 header needs 20 bytes, the capture kept 16 of 86"},
		{"tcp cut by snaplen", linkEthernet, ethernet(ip4)[:40], 59, kindSnaplen, "TCP header needs 20 bytes, the capture kept 6 of 25"},
		{"ethernet runt", linkEthernet, []byte{1, 2, 3}, 0, kindMalformed, "Ethernet header needs 14 bytes, the packet has 3"},
		{"vlan cut", linkEthernet, ethernet(ip4, etherVLAN)[:16], 0, kindMalformed, "VLAN tag needs 18 bytes"},
		{"nine vlan tags", linkEthernet, ethernet(ip4, etherVLAN, etherVLAN, etherVLAN, etherVLAN, etherVLAN, etherVLAN, etherVLAN, etherVLAN, etherVLAN), 0, kindMalformed, "more than 8 VLAN tags"},
		{"unknown link type", 147, ip4, 0, kindUnknownLink, ""},
	} {
		var p packet
		wire := tc.wire
		if wire == 0 {
			wire = len(tc.data)
		}
		err := decodePacket(tc.link, tc.data, uint32(wire), &p)
		if tc.kind == 0 {
			if err != nil || tc.want != itoa(p.payloadLen) {
				t.Errorf("%s: %v, payload %d, want %s", tc.name, err, p.payloadLen, tc.want)
			}
			continue
		}
		de, ok := err.(*decodeError)
		if !ok || de.kind != tc.kind || !strings.Contains(de.reason, tc.want) {
			t.Errorf("%s: error %v, want kind %d containing %q", tc.name, err, tc.kind, tc.want)
		}
	}
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

func TestParseLocal(t *testing.T) {
	got, err := ParseLocal([]string{"10.0.0.0/8, 192.168.1.7", "::1", "::ffff:172.16.0.0/108", "10.1.2.3/16"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "192.168.1.7/32", "::1/128", "172.16.0.0/12", "10.1.0.0/16"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range got {
		if got[i].String() != want[i] {
			t.Errorf("prefix %d: %v, want %s", i, got[i], want[i])
		}
	}
	if _, err := ParseLocal([]string{"10.0.0.0/33"}); err == nil || !strings.Contains(err.Error(), `local address "10.0.0.0/33"`) {
		t.Errorf("a bad prefix: %v", err)
	}
}

// TestLocalSides checks which hooks a packet makes records for: the
// sender's egress when its source is local, the receiver's ingress when
// its destination is, and nothing when neither is; IPv4-mapped addresses
// match IPv4 prefixes.
func TestLocalSides(t *testing.T) {
	conv := func(client, server string) []frame {
		c := newConv(client, server, 1, 2).send(0, 0, syn, "")
		return frames(func(ip []byte) []byte { return ip }, 0, c.out)
	}
	var fs []frame
	fs = append(fs, conv("10.0.0.1:1000", "192.0.2.1:80")...)      // local client
	fs = append(fs, conv("192.0.2.1:1001", "10.0.0.2:80")...)      // local server
	fs = append(fs, conv("10.0.0.1:1002", "10.0.0.2:80")...)       // both
	fs = append(fs, conv("192.0.2.1:1003", "192.0.2.2:80")...)     // neither
	fs = append(fs, conv("[::ffff:10.0.0.3]:1004", "[::1]:80")...) // mapped
	data := pcapFile(le(), true, linkRaw, 262144, fs)
	out := replayFile(t, data, Options{Local: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, derive.Config{})
	var got []string
	for _, ev := range out.base {
		p := ev.Payload.(*events.PacketFlowBase)
		got = append(got, p.Direction.String()+" "+itoa(uint32(p.SrcPort)))
	}
	want := "egress 1000, ingress 1001, egress 1002, ingress 1002, egress 1004"
	if strings.Join(got, ", ") != want {
		t.Errorf("records: %s, want %s", strings.Join(got, ", "), want)
	}
	if out.stats.NotLocal != 1 {
		t.Errorf("not local: %d, want 1", out.stats.NotLocal)
	}
}

// TestCounters checks the wire counters: payload counted once per
// sequence number, across wrap-around, not for SYN, FIN or RST; a new
// connection on a closed 4-tuple starts over; a jump past a window is not
// counted.
func TestCounters(t *testing.T) {
	tbl := newConnTable(10)
	isn := uint32(0xfffffffa)
	c := newConv("10.0.0.1:1000", "10.0.0.2:80", isn, 100).handshake(0)
	c.send(1, 0, psh, "0123456789") // the sequence numbers wrap
	c.send(2, 0, psh, "abc")
	c.sendAt(3, 0, psh, "0123456789abc", isn+1)    // everything again
	c.sendAt(4, 0, psh, "x", isn+1+maxAdvance+100) // far beyond a window
	c.send(5, 1, psh, "hi").send(6, 0, finAck, "").send(7, 1, finAck, "")
	var st *connState
	for _, s := range c.out {
		var p packet
		data := s.s.ip()
		if err := decodePacket(linkRaw, data, uint32(len(data)), &p); err != nil {
			t.Fatal(err)
		}
		st, _ = tbl.update(&p, s.ts)
	}
	if got := st.counters(0); got != (events.Counters{BytesSent: 13, PacketsSent: 7, BytesReceived: 2, PacketsReceived: 3}) {
		t.Errorf("client counters %+v", got)
	}
	if !st.closed || tbl.open != 0 || tbl.outOfWindow != 1 {
		t.Errorf("closed %v, open %d, out of window %d", st.closed, tbl.open, tbl.outOfWindow)
	}
	// A new SYN on the 4-tuple starts a new connection.
	n := newConv("10.0.0.1:1000", "10.0.0.2:80", 5, 6).send(8, 0, syn, "")
	var p packet
	data := n.out[0].s.ip()
	if err := decodePacket(linkRaw, data, uint32(len(data)), &p); err != nil {
		t.Fatal(err)
	}
	if st2, _ := tbl.update(&p, n.out[0].ts); st2 == st || st2.counters(0).PacketsSent != 1 || len(tbl.m) != 1 {
		t.Errorf("a SYN on a closed 4-tuple did not start over: %+v", st2)
	}
}

// TestBadPacketsLogged checks that bad packets are counted and the first
// ones logged with their number and what is wrong.
func TestBadPacketsLogged(t *testing.T) {
	fs := loopbackFrames()
	fs[2].data = fs[2].data[:20] // cut inside the IPv4 header; the wire length says it was longer
	fs[2].wire = 54
	bad := append([]byte(nil), fs[4].data...)
	bad[14] = 0x43 // IPv4 header length 12
	fs[4].data = bad
	data := pcapFile(le(), false, linkEthernet, 262144, fs)
	out := replayFile(t, data, Options{}, derive.Config{})
	if out.stats.Snaplen != 1 || out.stats.Malformed != 1 || out.stats.Used != uint64(len(fs)-2) {
		t.Errorf("stats %+v", out.stats)
	}
	for _, want := range []string{"packet=3 offset=164 problem=\"IPv4 header needs 20 bytes, the capture kept 6 of 40 (snapshot length)\"",
		"packet=5 offset=276 problem=\"IPv4 header length 12, less than 20\""} {
		if !strings.Contains(out.log, want) {
			t.Errorf("log lacks %q:\n%s", want, out.log)
		}
	}
}

// TestStopsOnContext checks that a cancelled context stops the replay
// without an error.
func TestStopsOnContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p := New(bytes.NewReader(fixtureByName("loopback_ipv4.pcap").build()), Options{})
	if err := p.RunBatches(ctx, 10, func([]events.Event) { t.Error("events after the stop") }); err != nil {
		t.Fatal(err)
	}
}

func fixtureByName(name string) fixture {
	for _, f := range fixtures {
		if f.name == name {
			return f
		}
	}
	panic("no fixture " + name)
}

// TestGaps checks the capture's time jumping: a connection silent for two
// hours (longer than the idle timeout) is still open when it closes, as
// live, since the producer reports it through the gap; and a file whose
// every timestamp jumps by years costs a bounded number of snapshots.
func TestGaps(t *testing.T) {
	c := newConv("10.0.0.1:1000", "10.0.0.2:80", 1, 2).handshake(0).
		send(1, 0, psh, "abc").closeFrom(2*3600*1000, 1)
	data := pcapFile(le(), true, linkRaw, 262144, frames(func(ip []byte) []byte { return ip }, 0, c.out))
	out := replayFile(t, data, Options{}, derive.Config{})
	var got []string
	for _, ev := range out.derived {
		got = append(got, formatEvent(ev))
	}
	want := "begin incoming 10.0.0.1:1000 -> 10.0.0.2:80 handshake=0.1ms t=0.1\n" +
		"begin outgoing 10.0.0.1:1000 -> 10.0.0.2:80 handshake=0.1ms t=0.1\n" +
		"end outgoing 10.0.0.1:1000 -> 10.0.0.2:80 reason=fin sent=3/4 recv=0/2 duration=7.200000000001e+06ms t=7200000.100001\n" +
		"end incoming 10.0.0.1:1000 -> 10.0.0.2:80 reason=fin sent=0/2 recv=3/4 duration=7.200000000001e+06ms t=7200000.100001"
	if strings.Join(got, "\n") != want {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
	}

	// 10 open connections, then 10 packets 10 years apart.
	var fs []frame
	for i := range 10 {
		c := newConv(fmt.Sprintf("10.0.0.1:%d", 2000+i), "10.0.0.2:80", 1, 2).handshake(0)
		fs = append(fs, frames(func(ip []byte) []byte { return ip }, 0, c.out)...)
	}
	for i := range 10 {
		s := tcpSeg()
		s.flags = ack
		fs = append(fs, frame{ts: t0 + int64(i+1)*10*365*24*3600*sec, data: s.ip()})
	}
	out = replayFile(t, pcapFile(le(), true, linkRaw, 262144, fs), Options{}, derive.Config{})
	snapshots := 0
	for _, ev := range out.base {
		if ev.ID == events.IDNetTCPSocketBase {
			snapshots++
		}
	}
	if budget := gapEventsBase + gapEventsPerPacket*int(out.stats.Packets) + 20*10; snapshots > budget || !strings.Contains(out.log, "time jumps too often") {
		t.Errorf("%d snapshots (at most %d), log:\n%s", snapshots, budget, out.log)
	}
}

// TestForgottenConnectionNotReused: the table remembers the connection of
// the previous segment, to skip the map for runs of one connection's
// segments. A connection forgotten since (its linger after a close ended)
// must not be found that way: a stray segment of its 4-tuple after the
// linger belongs to no connection, and a new SYN gets a new one.
func TestForgottenConnectionNotReused(t *testing.T) {
	tbl := newConnTable(10)
	lingerMs := float64(closedLinger) / float64(msec)
	c := newConv("10.0.0.1:1000", "10.0.0.2:80", 100, 200).handshake(0).send(1, 1, rstAck, "")
	c.send(lingerMs+10, 0, ack, "")   // after the linger: nobody's
	c.send(lingerMs+20, 0, syn, "")   // a new connection on the 4-tuple
	c.send(lingerMs+20.1, 0, ack, "") // ... whose segment is counted on it
	var got []*connState
	for _, s := range c.out {
		var p packet
		data := s.s.ip()
		if err := decodePacket(linkRaw, data, uint32(len(data)), &p); err != nil {
			t.Fatal(err)
		}
		st, _ := tbl.update(&p, s.ts)
		got = append(got, st)
	}
	first := got[0]
	if first == nil || got[3] != first || !first.closed {
		t.Fatalf("the reset connection: %v", got[:4])
	}
	if got[4] != nil {
		t.Errorf("a segment after the closed connection's linger was counted on it: %+v", got[4])
	}
	if got[5] == nil || got[5] == first || got[6] != got[5] || got[5].counters(0).PacketsSent != 2 {
		t.Errorf("the new connection on the 4-tuple: %+v %+v", got[5], got[6])
	}
}
