// SPDX-License-Identifier: Apache-2.0

package replay

// The capture fixtures in testdata/ are written by this file, so they can be
// read, changed and made again: TestFixtures checks that every committed
// fixture is exactly what the generator writes, and
//
//	go test ./replay/ -run TestFixtures -args -regen
//
// rewrites them. Nothing here depends on the clock or on randomness.

import (
	"bytes"
	"encoding/binary"
	"flag"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flowtap/flowtap/events"
)

var regen = flag.Bool("regen", false, "rewrite the capture fixtures in testdata/ from the generator")

// t0 is when every fixture's capture starts: 2024-01-01T00:00:00Z.
var t0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

const (
	msec = int64(time.Millisecond)
	sec  = int64(time.Second)
)

// seg is one TCP segment or UDP datagram to build.
type seg struct {
	src, dst netip.AddrPort
	udp      bool
	flags    events.TCPFlags
	seq, ack uint32
	payload  []byte
	// ext6 are IPv6 extension headers (protocol numbers) to put between
	// the IPv6 header and TCP/UDP, each 8 bytes.
	ext6 []uint8
	// fragOff makes an IPv4 packet a fragment at this offset (8-byte units).
	fragOff uint16
	// proto overrides the transport protocol number (ICMP: 1).
	proto uint8
}

// ip builds the IP packet of s: IPv4 or IPv6 after its addresses.
func (s seg) ip() []byte {
	var l4 []byte
	proto := uint8(protoTCP)
	if s.udp {
		proto = protoUDP
		l4 = binary.BigEndian.AppendUint16(l4, s.src.Port())
		l4 = binary.BigEndian.AppendUint16(l4, s.dst.Port())
		l4 = binary.BigEndian.AppendUint16(l4, uint16(8+len(s.payload)))
		l4 = append(l4, 0, 0)
	} else {
		l4 = binary.BigEndian.AppendUint16(l4, s.src.Port())
		l4 = binary.BigEndian.AppendUint16(l4, s.dst.Port())
		l4 = binary.BigEndian.AppendUint32(l4, s.seq)
		l4 = binary.BigEndian.AppendUint32(l4, s.ack)
		l4 = append(l4, 5<<4, byte(s.flags), 0xff, 0xff, 0, 0, 0, 0) // no options; window; checksum; urgent
	}
	if s.proto != 0 {
		proto = s.proto
	}
	l4 = append(l4, s.payload...)
	if s.src.Addr().Is4() {
		h := make([]byte, 20)
		h[0] = 0x45
		binary.BigEndian.PutUint16(h[2:], uint16(20+len(l4)))
		binary.BigEndian.PutUint16(h[6:], s.fragOff)
		h[8], h[9] = 64, proto
		a, b := s.src.Addr().As4(), s.dst.Addr().As4()
		copy(h[12:], a[:])
		copy(h[16:], b[:])
		var sum uint32
		for i := 0; i < 20; i += 2 {
			sum += uint32(binary.BigEndian.Uint16(h[i:]))
		}
		for sum > 0xffff {
			sum = sum&0xffff + sum>>16
		}
		binary.BigEndian.PutUint16(h[10:], ^uint16(sum))
		return append(h, l4...)
	}
	var ext []byte
	next := proto
	for i := len(s.ext6) - 1; i >= 0; i-- {
		// Each extension header: next header, length (8-byte units
		// beyond the first 8), then padding options.
		e := []byte{next, 0, 1, 4, 0, 0, 0, 0}
		if s.ext6[i] == protoFragment {
			e = []byte{next, 0, 0, 0, 0, 0, 0, 42} // offset 0, id 42: a first fragment
		}
		ext = append(e, ext...)
		next = s.ext6[i]
	}
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(ext)+len(l4)))
	h[6], h[7] = next, 64
	a, b := s.src.Addr().As16(), s.dst.Addr().As16()
	copy(h[8:], a[:])
	copy(h[24:], b[:])
	return append(append(h, ext...), l4...)
}

// Link-layer framings.

func ethernet(ip []byte, tags ...uint16) []byte {
	f := []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2}
	for _, tpid := range tags {
		f = binary.BigEndian.AppendUint16(f, tpid)
		f = append(f, 0, 7) // VLAN 7
	}
	return append(binary.BigEndian.AppendUint16(f, etherOf(ip)), ip...)
}

func etherOf(ip []byte) uint16 {
	if ip[0]>>4 == 6 {
		return etherIPv6
	}
	return etherIPv4
}

func sll(ip []byte) []byte {
	f := []byte{0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0}
	return append(binary.BigEndian.AppendUint16(f, etherOf(ip)), ip...)
}

func sll2(ip []byte) []byte {
	f := binary.BigEndian.AppendUint16(nil, etherOf(ip))
	f = append(f, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0)
	return append(f, ip...)
}

// null is BSD loopback framing: the address family in the byte order of
// the capturing host.
func null(ip []byte, order binary.AppendByteOrder, family uint32) []byte {
	return append(order.AppendUint32(nil, family), ip...)
}

// conv builds one TCP conversation with consistent sequence numbers:
// end 0 is the client, end 1 the server.
type conv struct {
	ends [2]netip.AddrPort
	seq  [2]uint32
	ext6 []uint8
	out  []stamped
}

// stamped is a built segment and when it was captured.
type stamped struct {
	ts int64
	s  seg
}

func newConv(client, server string, isnC, isnS uint32) *conv {
	return &conv{ends: [2]netip.AddrPort{netip.MustParseAddrPort(client), netip.MustParseAddrPort(server)}, seq: [2]uint32{isnC, isnS}}
}

// send adds a segment from end from at time ms (after t0), advancing
// that end's sequence number by its payload, SYN and FIN.
func (c *conv) send(ms float64, from int, flags events.TCPFlags, payload string) *conv {
	c.sendAt(ms, from, flags, payload, c.seq[from])
	c.seq[from] += uint32(len(payload))
	if flags&(events.FlagSYN|events.FlagFIN) != 0 {
		c.seq[from]++
	}
	return c
}

// sendAt adds a segment with sequence number seq, not advancing anything
// (a retransmission).
func (c *conv) sendAt(ms float64, from int, flags events.TCPFlags, payload string, seq uint32) *conv {
	var ack uint32
	if flags.Has(events.FlagACK) {
		ack = c.seq[1-from]
	}
	c.out = append(c.out, stamped{t0 + int64(math.Round(ms*float64(msec))), seg{src: c.ends[from], dst: c.ends[1-from], flags: flags, seq: seq, ack: ack, payload: []byte(payload), ext6: c.ext6}})
	return c
}

// handshake adds SYN, SYN-ACK and ACK at ms, ms+0.1 and ms+0.2.
func (c *conv) handshake(ms float64) *conv {
	return c.send(ms, 0, syn, "").send(ms+0.1, 1, synAck, "").send(ms+0.2, 0, ack, "")
}

// closeFrom adds a FIN from end from, the other's FIN, and the last ACK.
func (c *conv) closeFrom(ms float64, from int) *conv {
	return c.send(ms, from, finAck, "").send(ms+0.1, 1-from, finAck, "").send(ms+0.2, from, ack, "")
}

const (
	syn    = events.FlagSYN
	ack    = events.FlagACK
	synAck = events.FlagSYN | events.FlagACK
	psh    = events.FlagPSH | events.FlagACK
	finAck = events.FlagFIN | events.FlagACK
	rstAck = events.FlagRST | events.FlagACK
)

// frame is one captured packet to write.
type frame struct {
	ts    int64
	iface int // pcapng interface
	data  []byte
	wire  int // its length on the wire; 0: len(data)
}

// frames frames every segment of the conversations with link, merged in
// time order (stable: a tie keeps the argument order).
func frames(link func([]byte) []byte, iface int, segs ...[]stamped) []frame {
	var out []frame
	for _, ss := range segs {
		for _, s := range ss {
			out = append(out, frame{ts: s.ts, iface: iface, data: link(s.s.ip())})
		}
	}
	sortFrames(out)
	return out
}

// sortFrames orders frames by time, stably (insertion sort: fixtures are small).
func sortFrames(f []frame) {
	for i := 1; i < len(f); i++ {
		for j := i; j > 0 && f[j].ts < f[j-1].ts; j-- {
			f[j], f[j-1] = f[j-1], f[j]
		}
	}
}

// pcapFile writes a classic pcap file.
func pcapFile(order binary.AppendByteOrder, nano bool, link, snaplen uint32, fs []frame) []byte {
	magic := uint32(magicPcapMicro)
	if nano {
		magic = magicPcapNano
	}
	b := order.AppendUint32(nil, magic)
	b = order.AppendUint16(b, 2)
	b = order.AppendUint16(b, 4)
	b = append(b, make([]byte, 8)...)
	b = order.AppendUint32(b, snaplen)
	b = order.AppendUint32(b, link)
	for _, f := range fs {
		frac := (f.ts % sec) / 1000
		if nano {
			frac = f.ts % sec
		}
		data := f.data
		if uint32(len(data)) > snaplen {
			data = data[:snaplen]
		}
		b = order.AppendUint32(b, uint32(f.ts/sec))
		b = order.AppendUint32(b, uint32(frac))
		b = order.AppendUint32(b, uint32(len(data)))
		b = order.AppendUint32(b, uint32(max(f.wire, len(f.data))))
		b = append(b, data...)
	}
	return b
}

// ngIface is a pcapng interface to describe.
type ngIface struct {
	link    uint16
	tsresol byte // 0: the default, microseconds
}

// ngBlock appends one pcapng block.
func ngBlock(b []byte, order binary.AppendByteOrder, typ uint32, body []byte) []byte {
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	n := uint32(12 + len(body))
	b = order.AppendUint32(b, typ)
	b = order.AppendUint32(b, n)
	b = append(b, body...)
	return order.AppendUint32(b, n)
}

// ngSection appends a pcapng section: header, interfaces, packets (EPB,
// or SPB for frames of interface -1, which becomes interface 0), and a
// block of a kind the reader skips (a custom block) after the interfaces.
func ngSection(b []byte, order binary.AppendByteOrder, ifaces []ngIface, fs []frame) []byte {
	shb := order.AppendUint32(nil, pcapngByteOrder)
	shb = order.AppendUint16(shb, 1)
	shb = order.AppendUint16(shb, 0)
	shb = order.AppendUint64(shb, ^uint64(0)) // section length unknown
	b = ngBlock(b, order, blockSHB, shb)
	for _, ifc := range ifaces {
		idb := order.AppendUint16(nil, ifc.link)
		idb = order.AppendUint16(idb, 0)
		idb = order.AppendUint32(idb, 262144)
		if ifc.tsresol != 0 {
			idb = order.AppendUint16(idb, optTSResol)
			idb = order.AppendUint16(idb, 1)
			idb = append(idb, ifc.tsresol, 0, 0, 0)
		}
		idb = append(idb, 0, 0, 0, 0) // opt_endofopt
		b = ngBlock(b, order, blockIDB, idb)
	}
	b = ngBlock(b, order, 0x00000bad, []byte("a custom block the reader skips"))
	for _, f := range fs {
		if f.iface < 0 {
			spb := order.AppendUint32(nil, uint32(len(f.data)))
			b = ngBlock(b, order, blockSPB, append(spb, f.data...))
			continue
		}
		ts := uint64(f.ts / 1000) // microseconds
		if r := ifaces[f.iface].tsresol; r == 9 {
			ts = uint64(f.ts)
		} else if r != 0 {
			panic("fixture: unsupported tsresol")
		}
		epb := order.AppendUint32(nil, uint32(f.iface))
		epb = order.AppendUint32(epb, uint32(ts>>32))
		epb = order.AppendUint32(epb, uint32(ts))
		epb = order.AppendUint32(epb, uint32(len(f.data)))
		epb = order.AppendUint32(epb, uint32(max(f.wire, len(f.data))))
		b = ngBlock(b, order, blockEPB, append(epb, f.data...))
	}
	return b
}

// fixture is one capture file in testdata/ and how it is replayed.
type fixture struct {
	name  string // file name in testdata/
	about string
	local []string // Options.Local
	dns   bool
	build func() []byte
}

func be() binary.AppendByteOrder { return binary.BigEndian }
func le() binary.AppendByteOrder { return binary.LittleEndian }

// fixtures are the capture files of the golden tests.
var fixtures = []fixture{
	{
		name:  "loopback_ipv4.pcap",
		about: "a loopback connection (tcpdump -i lo: Ethernet framing), data both ways, client closes first",
		build: func() []byte { return pcapFile(le(), false, linkEthernet, 262144, loopbackFrames()) },
	},
	{
		name:  "ipv6_ext.pcap",
		about: "::1, IPv6 with hop-by-hop and destination options headers before TCP, raw IP link type, big-endian with nanoseconds; an ICMPv6 packet and a non-first fragment are skipped; the server resets",
		build: func() []byte {
			c := newConv("[::1]:40001", "[::1]:8443", 0xfffffff0, 7) // the client's sequence numbers wrap
			c.ext6 = []uint8{protoHopByHop, protoDestOpts}
			c.handshake(0).send(1, 0, psh, "0123456789abcdefghijklmnopqrstuvwxyz").send(1.1, 1, ack, "").
				send(5, 1, rstAck, "")
			icmp := seg{src: c.ends[0], dst: c.ends[1], proto: 58, payload: []byte{128, 0, 0, 0}}
			frag := seg{src: c.ends[0], dst: c.ends[1], ext6: []uint8{protoFragment}, payload: []byte("x")}
			fs := frames(func(ip []byte) []byte { return ip }, 0, c.out)
			fragIP := frag.ip()
			fragIP[40+2], fragIP[40+3] = 0, 8 // fragment offset 1 (8 bytes)
			fs = append(fs, frame{ts: t0 + 3*msec, data: icmp.ip()}, frame{ts: t0 + 4*msec, data: fragIP})
			sortFrames(fs)
			return pcapFile(be(), true, linkRaw, 262144, fs)
		},
	},
	{
		name:  "refused.pcap",
		about: "connect() to a closed loopback port: the kernel answers the SYN with RST (BSD loopback link type)",
		build: func() []byte {
			c := newConv("127.0.0.1:40002", "127.0.0.1:9", 100, 0).send(0, 0, syn, "")
			c.seq[1] = 0
			c.send(0.05, 1, rstAck, "")
			return pcapFile(le(), false, linkNull, 262144, frames(func(ip []byte) []byte { return null(ip, binary.LittleEndian, 2) }, 0, c.out))
		},
	},
	{
		name:  "syn_timeout.pcap",
		about: "a SYN to a remote host that never answers, retransmitted; a DNS query and answer later on (Linux cooked capture); only 10.1.0.0/16 is local",
		local: []string{"10.1.0.0/16"},
		dns:   true,
		build: func() []byte {
			c := newConv("10.1.0.5:40003", "192.0.2.10:80", 555, 0).send(0, 0, syn, "")
			c.sendAt(1000, 0, syn, "", 555).sendAt(3000, 0, syn, "", 555).sendAt(7000, 0, syn, "", 555)
			q := dnsMsg(0x1234, false)
			a := dnsMsg(0x1234, true)
			dns := []stamped{
				{t0 + 15000*msec, seg{src: netip.MustParseAddrPort("10.1.0.5:33333"), dst: netip.MustParseAddrPort("10.1.0.1:53"), udp: true, payload: q}},
				{t0 + 15001*msec, seg{src: netip.MustParseAddrPort("10.1.0.1:53"), dst: netip.MustParseAddrPort("10.1.0.5:33333"), udp: true, payload: a}},
			}
			return pcapFile(le(), false, linkSLL, 262144, frames(sll, 0, c.out, dns))
		},
	},
	{
		name:  "retransmit_vlan.pcap",
		about: "802.1Q and 802.1ad VLAN-tagged Ethernet; only 10.0.0.1 is local; a data segment retransmitted whole and one retransmitted with new data after it; a snapshot length of 80 bytes cuts the data but not the headers",
		local: []string{"10.0.0.1"},
		build: func() []byte {
			c := newConv("10.0.0.1:40004", "10.0.0.2:443", 1, 1<<31).handshake(0)
			seq := c.seq[0]
			c.send(1, 0, psh, string(bytes.Repeat([]byte("a"), 100))).
				sendAt(201, 0, psh, string(bytes.Repeat([]byte("a"), 100)), seq). // the same segment again
				sendAt(401, 0, psh, string(bytes.Repeat([]byte("b"), 150)), seq)  // again, with 50 new bytes
			c.seq[0] = seq + 150
			c.send(402, 1, ack, "").send(500, 1, psh, string(bytes.Repeat([]byte("z"), 1000))).send(501, 0, ack, "").
				closeFrom(600, 1)
			var fs []frame
			for i, s := range c.out {
				tags := []uint16{etherVLAN}
				if i%2 == 1 {
					tags = []uint16{etherQinQ, etherVLAN}
				}
				fs = append(fs, frame{ts: s.ts, data: ethernet(s.s.ip(), tags...)})
			}
			return pcapFile(be(), false, linkEthernet, 80, fs)
		},
	},
	{
		name:  "sll2_long.pcap",
		about: "Linux cooked v2; a connection open for 7 minutes, data every minute and never closed, so longer than the idle timeout: it ends at the end of the capture (shutdown) with every byte",
		build: func() []byte {
			c := newConv("10.9.0.1:40005", "10.9.0.2:22", 77, 99).handshake(0)
			for m := 1; m <= 7; m++ {
				at := float64(m * 60000)
				c.send(at, 0, psh, "ping\n").send(at+1, 1, psh, "pong!\n").send(at+2, 0, ack, "")
			}
			return pcapFile(le(), true, linkSLL2, 262144, frames(sll2, 0, c.out))
		},
	},
	{
		name:  "two_interfaces.pcapng",
		about: "pcapng: a big-endian section with an Ethernet interface (microseconds) and a raw IP one (nanoseconds), a simple packet block, a custom block; then a little-endian section with an IPv4 interface and one of an unknown link type",
		build: func() []byte {
			a := newConv("192.168.5.1:40006", "192.168.5.2:80", 10, 20).handshake(0).
				send(1, 0, psh, "GET / HTTP/1.0\r\n\r\n").send(2, 1, psh, "HTTP/1.0 204 No Content\r\n\r\n").closeFrom(3, 1)
			b := newConv("192.168.6.1:40007", "192.168.6.2:80", 30, 40).handshake(0.5).send(1.5, 0, psh, "x").closeFrom(2.5, 0)
			fs := append(frames(func(ip []byte) []byte { return ethernet(ip) }, 0, a.out), frames(func(ip []byte) []byte { return ip }, 1, b.out)...)
			sortFrames(fs)
			// An ARP-less Ethernet frame in a simple packet block (no timestamp).
			fs = append(fs, frame{iface: -1, data: append([]byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x06}, make([]byte, 28)...)})
			out := ngSection(nil, binary.BigEndian, []ngIface{{link: linkEthernet}, {link: linkRaw, tsresol: 9}}, fs)

			c := newConv("192.168.7.1:40008", "192.168.7.2:80", 50, 60).handshake(4).closeFrom(5, 0)
			fs = frames(func(ip []byte) []byte { return ip }, 0, c.out)
			fs = append(fs, frame{ts: t0 + 6*msec, iface: 1, data: []byte("whatever link type 147 carries")})
			return ngSection(out, binary.LittleEndian, []ngIface{{link: linkIPv4, tsresol: 9}, {link: 147}}, fs)
		},
	},
	{
		name:  "truncated.pcap",
		about: "loopback_ipv4.pcap cut in the middle of its first FIN's record: the file is an error after every earlier packet was delivered",
		build: func() []byte {
			fs := loopbackFrames()
			whole := pcapFile(le(), false, linkEthernet, 262144, fs)
			// The first FIN is the 8th packet: cut its record after its
			// header and 20 bytes.
			cut := len(pcapFile(le(), false, linkEthernet, 262144, fs[:7])) + 16 + 20
			return whole[:cut]
		},
	},
}

// loopbackFrames is the connection of loopback_ipv4.pcap.
func loopbackFrames() []frame {
	c := newConv("127.0.0.1:40000", "127.0.0.1:8080", 1000, 5000).handshake(0).
		send(1, 0, psh, "hello\n").send(1.1, 1, ack, "").
		send(2, 1, psh, "hello, world").send(2.1, 0, ack, "").
		closeFrom(10, 0)
	return frames(func(ip []byte) []byte { return ethernet(ip) }, 0, c.out)
}

// dnsMsg is a DNS query for example.com A, or its answer (93.184.215.14,
// TTL 300).
func dnsMsg(id uint16, answer bool) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	flags, an := uint16(0x0100), uint16(0)
	if answer {
		flags, an = 0x8180, 1
	}
	b = binary.BigEndian.AppendUint16(b, flags)
	b = append(b, 0, 1, byte(an>>8), byte(an), 0, 0, 0, 0)
	b = append(b, 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 1, 0, 1)
	if answer {
		b = append(b, 0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 93, 184, 215, 14)
	}
	return b
}

// TestFixtures checks that the committed capture files are what the
// generator writes (with -regen, it writes them).
func TestFixtures(t *testing.T) {
	for _, f := range fixtures {
		path := filepath.Join("testdata", f.name)
		got := f.build()
		if *regen {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (go test ./replay/ -run TestFixtures -args -regen writes it)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what the generator writes (go test ./replay/ -run TestFixtures -args -regen rewrites it)", path)
		}
	}
}
