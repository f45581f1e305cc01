// SPDX-License-Identifier: Apache-2.0

package replay

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
)

// Magic numbers of the two capture formats, as read big-endian from the
// first four bytes of a file.
const (
	magicPcapMicro   = 0xa1b2c3d4 // classic pcap, microsecond timestamps
	magicPcapNano    = 0xa1b23c4d // classic pcap, nanosecond timestamps
	magicPcapMicroLE = 0xd4c3b2a1 // the same, written little-endian
	magicPcapNanoLE  = 0x4d3cb2a1
	blockSHB         = 0x0a0d0d0a // pcapng section header block (a palindrome)
	pcapngByteOrder  = 0x1a2b3c4d // pcapng byte-order magic
)

// pcapng block types the reader understands; others are skipped.
const (
	blockIDB = 0x00000001 // interface description
	blockOPB = 0x00000002 // packet block (obsolete, still written by old tools)
	blockSPB = 0x00000003 // simple packet
	blockEPB = 0x00000006 // enhanced packet
)

// pcapng interface options the reader uses.
const (
	optEnd      = 0
	optTSResol  = 9  // if_tsresol: 1 byte
	optTSOffset = 14 // if_tsoffset: 8 bytes, seconds
)

// maxRecord bounds one record or block: a corrupt length field must not
// make the reader allocate gigabytes. The largest packets seen in practice
// (BIG TCP GSO packets captured on loopback) are a few hundred KiB.
const maxRecord = 16 << 20

// Packet is one captured packet as the file holds it.
type Packet struct {
	// Number is the packet's place among the file's packets, from 1.
	Number uint64
	// Offset is where its record starts in the file (bytes).
	Offset int64
	// Timestamp is nanoseconds since the Unix epoch.
	Timestamp int64
	// LinkType is the LINKTYPE_* value of the interface it was captured on.
	LinkType uint32
	// Data are the captured bytes, starting with the link-layer header.
	// They are valid until the next call to Next.
	Data []byte
	// WireLen is the packet's length on the wire; more than len(Data)
	// when the capture's snapshot length cut it.
	WireLen uint32
}

// errNotCapture says the file is not a capture file at all.
var errNotCapture = errors.New("not a pcap or pcapng file")

// iface is a pcapng interface: its link type and timestamp unit.
type iface struct {
	linkType uint32
	snapLen  uint32
	tsUnit   tsUnit
	tsOffset int64 // ns added to every timestamp (if_tsoffset)
}

// tsUnit converts timestamps counted in some unit to nanoseconds: the
// unit is 10^-exp seconds, or 2^-exp seconds when binary is set.
type tsUnit struct {
	exp    uint8
	binary bool
}

// nanos converts a timestamp in u's unit to nanoseconds.
func (u tsUnit) nanos(ts uint64) int64 {
	if u.binary {
		if u.exp == 0 {
			return int64(ts) * 1e9
		}
		sec := ts >> u.exp
		hi, lo := bits.Mul64(ts&(1<<u.exp-1), 1e9)
		return int64(sec)*1e9 + int64(hi<<(64-u.exp)|lo>>u.exp)
	}
	switch {
	case u.exp == 9:
		return int64(ts)
	case u.exp < 9:
		return int64(ts) * pow10[9-u.exp]
	default:
		return int64(ts / uint64(pow10[u.exp-9]))
	}
}

// pow10[i] is 10^i.
var pow10 = [...]int64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18}

// unitFromResol decodes if_tsresol: the high bit says a power of two,
// the rest is the negative exponent.
func unitFromResol(b byte) (tsUnit, error) {
	u := tsUnit{exp: b & 0x7f, binary: b&0x80 != 0}
	if u.binary && u.exp > 63 || !u.binary && int(u.exp) >= len(pow10)+9 {
		return tsUnit{}, fmt.Errorf("if_tsresol 0x%02x is finer than flowtap reads (at most 2^-63 or 10^-27 s)", b)
	}
	return u, nil
}

// readBuffer is the Reader's buffer: every packet of a capture whose
// snapshot length is at most this is read without a copy.
const readBuffer = 256 << 10

// Reader reads packets from a classic pcap or a pcapng capture file. It
// reads the stream once, in order, so it works on pipes. A Reader is not
// safe for concurrent use.
type Reader struct {
	r      *bufio.Reader
	off    int64 // bytes consumed so far
	number uint64
	ng     bool
	order  binary.ByteOrder
	buf    []byte

	// classic pcap
	linkType uint32
	unit     tsUnit

	// pcapng: the current section's interfaces
	ifaces  []iface
	skipped uint64
	// lastTS is the latest timestamp read: simple packet blocks have none
	// and take it.
	lastTS int64
}

// NewReader reads the file header (a pcapng file's first section header)
// and returns a Reader positioned at the first packet. A file that is
// neither format fails with the magic number it starts with.
func NewReader(r io.Reader) (*Reader, error) {
	rd := &Reader{r: bufio.NewReaderSize(r, readBuffer)}
	head, err := rd.r.Peek(4)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: the file is empty or shorter than a magic number (%d bytes)", errNotCapture, len(head))
		}
		return nil, fmt.Errorf("read file header: %w", err)
	}
	switch magic := binary.BigEndian.Uint32(head); magic {
	case magicPcapMicro, magicPcapNano, magicPcapMicroLE, magicPcapNanoLE:
		return rd, rd.readPcapHeader(magic)
	case blockSHB:
		rd.ng = true
		if _, err := rd.readBlock(nil); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		return rd, nil
	default:
		return nil, fmt.Errorf("%w (magic 0x%08x): want classic pcap (0xa1b2c3d4, 0xa1b23c4d, either byte order) or pcapng (0x0a0d0d0a); convert others with editcap", errNotCapture, magic)
	}
}

// Format returns "pcap" or "pcapng".
func (rd *Reader) Format() string {
	if rd.ng {
		return "pcapng"
	}
	return "pcap"
}

// Offset returns how many bytes of the file have been read.
func (rd *Reader) Offset() int64 { return rd.off }

// SkippedBlocks returns how many pcapng blocks of kinds the reader does
// not use (name resolution, statistics, custom, ...) it passed over.
func (rd *Reader) SkippedBlocks() uint64 { return rd.skipped }

// RecordError is a record that cannot be used although the file goes on
// (its block is whole, its content is not): Next skips it, and the next
// call reads on.
type RecordError struct {
	Number uint64 // the packet's number, as if it were one
	Offset int64  // where its block starts
	Reason string
}

func (e *RecordError) Error() string {
	return fmt.Sprintf("packet %d at offset %d: %s", e.Number, e.Offset, e.Reason)
}

// truncatedError is a file that ends inside a record.
type truncatedError struct {
	got, want int64 // bytes of the record there are, and should be
}

func (e *truncatedError) Error() string {
	return fmt.Sprintf("the file ends after %d of its %d bytes (cut short? tcpdump writes whole packets when stopped with SIGINT or SIGTERM)", e.got, e.want)
}

// read reads n bytes of a record that starts at start and is want bytes
// long into the reader's buffer (valid until the next read). At a clean
// end of file, with nothing of the record read, it returns io.EOF; a file
// that ends inside the record is a *truncatedError.
func (rd *Reader) read(n int, start, want int64) ([]byte, error) {
	if cap(rd.buf) < n {
		rd.buf = make([]byte, max(n, 2*cap(rd.buf), 256))
	}
	b := rd.buf[:n]
	got, err := io.ReadFull(rd.r, b)
	rd.off += int64(got)
	switch {
	case err == nil:
		return b, nil
	case errors.Is(err, io.EOF) && rd.off == start:
		return nil, io.EOF
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return nil, &truncatedError{got: rd.off - start, want: want}
	}
	return nil, err
}

// view is read without the copy: the n bytes stay in the buffered
// reader's buffer, valid until the next read, when the buffer holds them
// (any packet of a capture with a common snapshot length).
func (rd *Reader) view(n int, start, want int64) ([]byte, error) {
	if b, err := rd.r.Peek(n); err == nil {
		if _, err := rd.r.Discard(n); err != nil {
			return nil, err
		}
		rd.off += int64(n)
		return b, nil
	}
	return rd.read(n, start, want)
}

// readPcapHeader reads the 24-byte classic pcap file header.
func (rd *Reader) readPcapHeader(magic uint32) error {
	rd.order = binary.BigEndian
	if magic == magicPcapMicroLE || magic == magicPcapNanoLE {
		rd.order = binary.LittleEndian
	}
	rd.unit = tsUnit{exp: 6}
	if magic == magicPcapNano || magic == magicPcapNanoLE {
		rd.unit.exp = 9
	}
	h, err := rd.read(24, 0, 24)
	if err != nil {
		return fmt.Errorf("pcap file header: %w", err)
	}
	// The link type is in the low 16 bits; the high bits may carry the
	// FCS length, which IP parsing does not need.
	rd.linkType = rd.order.Uint32(h[20:]) & 0xffff
	return nil
}

// Next reads the next packet into p. It returns io.EOF at the end of the
// file, and a *RecordError for a record it skips (reading can go on). Any
// other error (the file ends inside a record, or a length makes no sense,
// so that the next record cannot be found) ends the file: it names the
// record's offset.
func (rd *Reader) Next(p *Packet) error {
	if !rd.ng {
		return rd.nextPcap(p)
	}
	for {
		ok, err := rd.readBlock(p)
		if err != nil || ok {
			return err
		}
	}
}

// nextPcap reads one classic pcap record.
func (rd *Reader) nextPcap(p *Packet) error {
	start := rd.off
	h, err := rd.read(16, start, 16)
	if err != nil {
		if err == io.EOF {
			return err
		}
		return fmt.Errorf("packet %d at offset %d: %w", rd.number+1, start, err)
	}
	sec, frac := rd.order.Uint32(h), rd.order.Uint32(h[4:])
	capLen, wireLen := rd.order.Uint32(h[8:]), rd.order.Uint32(h[12:])
	rd.number++
	if capLen > maxRecord {
		return fmt.Errorf("packet %d at offset %d: captured length %d is more than %d bytes: the file is corrupt", rd.number, start, capLen, maxRecord)
	}
	data, err := rd.view(int(capLen), start, 16+int64(capLen))
	if err != nil {
		return fmt.Errorf("packet %d at offset %d: %w", rd.number, start, err)
	}
	*p = Packet{Number: rd.number, Offset: start, LinkType: rd.linkType, Data: data, WireLen: max(wireLen, capLen),
		Timestamp: int64(sec)*1e9 + rd.unit.nanos(uint64(frac))}
	rd.lastTS = p.Timestamp
	return nil
}

// readBlock reads one pcapng block; ok says it was a packet, now in p.
func (rd *Reader) readBlock(p *Packet) (ok bool, err error) {
	start := rd.off
	h, err := rd.read(8, start, 8)
	if err != nil {
		if err == io.EOF {
			return false, err
		}
		return false, fmt.Errorf("pcapng block at offset %d: %w", start, err)
	}
	if binary.BigEndian.Uint32(h) == blockSHB {
		return false, rd.readSHB(start, h[4:8])
	}
	typ := rd.order.Uint32(h)
	length := rd.order.Uint32(h[4:])
	if err := checkBlockLen(length, 12, start); err != nil {
		return false, err
	}
	body, err := rd.blockBody(length, start)
	if err != nil {
		return false, err
	}
	switch typ {
	case blockIDB:
		return false, rd.addInterface(body, start)
	case blockEPB, blockOPB, blockSPB:
		rd.number++
		if err := rd.packet(typ, body, start, p); err != nil {
			return false, &RecordError{Number: rd.number, Offset: start, Reason: err.Error()}
		}
		return true, nil
	}
	rd.skipped++
	return false, nil
}

// checkBlockLen checks a pcapng block's total length.
func checkBlockLen(length, least uint32, start int64) error {
	if length < least || length%4 != 0 || length > maxRecord {
		return fmt.Errorf("pcapng block at offset %d: total length %d is not a multiple of 4 between %d and %d: the file is corrupt", start, length, least, maxRecord)
	}
	return nil
}

// blockBody reads the rest of a block whose 8-byte header was read and
// returns its body, checking the trailing copy of its length.
func (rd *Reader) blockBody(length uint32, start int64) ([]byte, error) {
	rest, err := rd.view(int(length)-8, start, int64(length))
	if err != nil {
		return nil, fmt.Errorf("pcapng block at offset %d: %w", start, err)
	}
	body, trailer := rest[:len(rest)-4], rd.order.Uint32(rest[len(rest)-4:])
	if trailer != length {
		return nil, fmt.Errorf("pcapng block at offset %d: total length %d at its start, %d at its end: the file is corrupt", start, length, trailer)
	}
	return body, nil
}

// readSHB reads a section header block whose type was read; rest are the
// next 4 bytes (its length, in a byte order it is about to tell).
func (rd *Reader) readSHB(start int64, lenBytes []byte) error {
	lb := [4]byte(lenBytes)
	bom, err := rd.read(4, start, 12)
	if err != nil {
		return fmt.Errorf("pcapng section header at offset %d: %w", start, err)
	}
	switch binary.BigEndian.Uint32(bom) {
	case pcapngByteOrder:
		rd.order = binary.BigEndian
	case 0x4d3c2b1a:
		rd.order = binary.LittleEndian
	default:
		return fmt.Errorf("pcapng section header at offset %d: byte-order magic 0x%08x is neither 0x1a2b3c4d nor its reverse: the file is corrupt", start, binary.BigEndian.Uint32(bom))
	}
	length := rd.order.Uint32(lb[:])
	if err := checkBlockLen(length, 28, start); err != nil {
		return err
	}
	// The body after the byte-order magic: version, section length,
	// options, then the trailing length.
	rest, err := rd.read(int(length)-12, start, int64(length))
	if err != nil {
		return fmt.Errorf("pcapng section header at offset %d: %w", start, err)
	}
	if trailer := rd.order.Uint32(rest[len(rest)-4:]); trailer != length {
		return fmt.Errorf("pcapng section header at offset %d: total length %d at its start, %d at its end: the file is corrupt", start, length, trailer)
	}
	if major := rd.order.Uint16(rest); major != 1 {
		return fmt.Errorf("pcapng section header at offset %d: version %d.%d, flowtap reads version 1", start, major, rd.order.Uint16(rest[2:]))
	}
	rd.ifaces = rd.ifaces[:0] // interfaces are numbered per section
	return nil
}

// addInterface reads an interface description block's body.
func (rd *Reader) addInterface(body []byte, start int64) error {
	if len(body) < 8 {
		return fmt.Errorf("pcapng interface description at offset %d: %d bytes, want at least 8: the file is corrupt", start, len(body))
	}
	ifc := iface{linkType: uint32(rd.order.Uint16(body)), snapLen: rd.order.Uint32(body[4:]), tsUnit: tsUnit{exp: 6}}
	err := rd.options(body[8:], func(code uint16, v []byte) error {
		switch {
		case code == optTSResol && len(v) == 1:
			u, err := unitFromResol(v[0])
			if err != nil {
				return err
			}
			ifc.tsUnit = u
		case code == optTSOffset && len(v) == 8:
			ifc.tsOffset = int64(rd.order.Uint64(v)) * 1e9
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pcapng interface %d at offset %d: %w", len(rd.ifaces), start, err)
	}
	if len(rd.ifaces) >= maxInterfaces {
		return fmt.Errorf("pcapng interface description at offset %d: more than %d interfaces in one section", start, maxInterfaces)
	}
	rd.ifaces = append(rd.ifaces, ifc)
	return nil
}

// maxInterfaces bounds a section's interfaces.
const maxInterfaces = 1 << 16

// options walks pcapng options (code, length, value padded to 4 bytes)
// up to opt_endofopt or the end of b.
func (rd *Reader) options(b []byte, fn func(code uint16, v []byte) error) error {
	for len(b) >= 4 {
		code, n := rd.order.Uint16(b), int(rd.order.Uint16(b[2:]))
		if code == optEnd {
			return nil
		}
		padded := (n + 3) &^ 3
		if 4+padded > len(b) {
			return fmt.Errorf("option %d of %d bytes runs past the block", code, n)
		}
		if err := fn(code, b[4:4+n]); err != nil {
			return err
		}
		b = b[4+padded:]
	}
	return nil
}

// packet reads an enhanced, simple or obsolete packet block's body into p.
func (rd *Reader) packet(typ uint32, body []byte, start int64, p *Packet) error {
	var ifID, capLen, wireLen uint32
	var ts uint64
	var data []byte
	switch typ {
	case blockEPB, blockOPB:
		if len(body) < 20 {
			return fmt.Errorf("packet block of %d bytes, want at least 20", len(body))
		}
		if typ == blockEPB {
			ifID = rd.order.Uint32(body)
		} else {
			ifID = uint32(rd.order.Uint16(body))
		}
		ts = uint64(rd.order.Uint32(body[4:]))<<32 | uint64(rd.order.Uint32(body[8:]))
		capLen, wireLen = rd.order.Uint32(body[12:]), rd.order.Uint32(body[16:])
		if uint64(capLen) > uint64(len(body)-20) {
			return fmt.Errorf("captured length %d runs past its block (%d bytes of data)", capLen, len(body)-20)
		}
		data = body[20 : 20+capLen]
	case blockSPB:
		if len(body) < 4 {
			return fmt.Errorf("simple packet block of %d bytes, want at least 4", len(body))
		}
		wireLen = rd.order.Uint32(body)
		data = body[4:]
		if uint64(len(data)) > uint64(wireLen) {
			data = data[:wireLen] // the rest is padding
		}
	}
	if int(ifID) >= len(rd.ifaces) {
		return fmt.Errorf("interface %d was not described (the section has %d)", ifID, len(rd.ifaces))
	}
	ifc := &rd.ifaces[ifID]
	if typ == blockSPB {
		if ifc.snapLen != 0 && uint32(len(data)) > ifc.snapLen {
			data = data[:ifc.snapLen]
		}
		p.Timestamp = rd.lastTS // a simple packet block has no timestamp
	} else {
		p.Timestamp = ifc.tsUnit.nanos(ts) + ifc.tsOffset
		rd.lastTS = p.Timestamp
	}
	p.Number, p.Offset, p.LinkType, p.Data = rd.number, start, ifc.linkType, data
	p.WireLen = max(wireLen, uint32(len(data)))
	return nil
}
