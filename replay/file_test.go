// SPDX-License-Identifier: Apache-2.0

package replay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
)

// readAll reads every packet of data, copying each one's data; it stops
// at the first error that is not a *RecordError, which it returns (nil at
// the end of the file), with the record errors seen.
func readAll(t testing.TB, data []byte) (pkts []Packet, skipped []*RecordError, err error) {
	t.Helper()
	rd, err := NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, nil, err
	}
	for {
		var p Packet
		err := rd.Next(&p)
		var re *RecordError
		switch {
		case err == nil:
			p.Data = append([]byte(nil), p.Data...)
			pkts = append(pkts, p)
		case errors.Is(err, io.EOF):
			return pkts, skipped, nil
		case errors.As(err, &re):
			skipped = append(skipped, re)
		default:
			return pkts, skipped, err
		}
	}
}

// TestReaderFormats writes the same packets in every byte order and
// timestamp unit of both formats and checks that they read back the same.
func TestReaderFormats(t *testing.T) {
	fs := loopbackFrames()
	fs[3].ts += 999 // a timestamp only nanoseconds keep
	files := map[string][]byte{
		"pcap le us":   pcapFile(le(), false, linkEthernet, 262144, fs),
		"pcap be us":   pcapFile(be(), false, linkEthernet, 262144, fs),
		"pcap le ns":   pcapFile(le(), true, linkEthernet, 262144, fs),
		"pcap be ns":   pcapFile(be(), true, linkEthernet, 262144, fs),
		"pcapng le us": ngSection(nil, le(), []ngIface{{link: linkEthernet}}, fs),
		"pcapng be ns": ngSection(nil, be(), []ngIface{{link: linkEthernet, tsresol: 9}}, fs),
	}
	for name, data := range files {
		pkts, skipped, err := readAll(t, data)
		if err != nil || len(skipped) > 0 {
			t.Fatalf("%s: %v %v", name, err, skipped)
		}
		if len(pkts) != len(fs) {
			t.Fatalf("%s: %d packets, want %d", name, len(pkts), len(fs))
		}
		for i, p := range pkts {
			want := fs[i].ts
			if strings.HasSuffix(name, "us") {
				want -= want % 1000
			}
			if p.Number != uint64(i+1) || p.Timestamp != want || p.LinkType != linkEthernet || !bytes.Equal(p.Data, fs[i].data) || int(p.WireLen) != len(fs[i].data) {
				t.Errorf("%s: packet %d = {#%d ts %d link %d wire %d}, want {#%d ts %d link 1 wire %d}", name, i, p.Number, p.Timestamp, p.LinkType, p.WireLen, i+1, want, len(fs[i].data))
			}
		}
	}
}

func TestTimestampUnits(t *testing.T) {
	for _, tc := range []struct {
		resol byte
		ts    uint64
		want  int64
	}{
		{6, 1_500_000, 1_500_000_000},
		{3, 2, 2_000_000},
		{9, 123, 123},
		{12, 123_456, 123},        // picoseconds
		{0x80 | 20, 1 << 20, 1e9}, // 2^-20 s
		{0x80 | 20, 1<<20 + 1<<19, 1_500_000_000},
		{0x80 | 63, 1 << 62, 500_000_000},
		{0x80, 3, 3e9},
	} {
		u, err := unitFromResol(tc.resol)
		if err != nil {
			t.Fatal(err)
		}
		if got := u.nanos(tc.ts); got != tc.want {
			t.Errorf("if_tsresol 0x%02x: %d -> %d ns, want %d", tc.resol, tc.ts, got, tc.want)
		}
	}
	for _, bad := range []byte{28, 100, 0x80 | 64} {
		if _, err := unitFromResol(bad); err == nil {
			t.Errorf("if_tsresol 0x%02x accepted", bad)
		}
	}
}

// ngWith returns a little-endian pcapng file: a section header, an
// Ethernet interface, then blocks.
func ngWith(blocks ...[]byte) []byte {
	b := ngSection(nil, le(), []ngIface{{link: linkEthernet}}, nil)
	for _, bl := range blocks {
		b = append(b, bl...)
	}
	return b
}

// epb is an enhanced packet block on interface ifc with capLen as stated.
func epb(ifc, capLen uint32, data []byte) []byte {
	body := le().AppendUint32(nil, ifc)
	body = append(body, 0, 0, 0, 0, 0, 0, 0, 0)
	body = le().AppendUint32(body, capLen)
	body = le().AppendUint32(body, uint32(len(data)))
	return ngBlock(nil, le(), blockEPB, append(body, data...))
}

func TestReaderErrors(t *testing.T) {
	good := pcapFile(le(), false, linkEthernet, 262144, loopbackFrames())
	hugeRecord := append([]byte(nil), good[:24+8]...)
	hugeRecord = le().AppendUint32(le().AppendUint32(hugeRecord, 1<<30), 1<<30)
	badTrailer := ngWith(epb(0, 4, []byte("abcd")))
	badTrailer[len(badTrailer)-1] = 9
	v2 := ngSection(nil, le(), nil, nil)
	v2[12] = 2
	badBOM := ngSection(nil, le(), nil, nil)
	badBOM[8] = 0
	badResol := ngSection(nil, le(), []ngIface{{link: linkEthernet, tsresol: 9}}, nil)
	badResol[bytes.Index(badResol, []byte{optTSResol, 0, 1, 0, 9})+4] = 100 // the if_tsresol value
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "not a pcap or pcapng file: the file is empty"},
		{"text", []byte("hello, world"), "not a pcap or pcapng file (magic 0x68656c6c)"},
		{"short pcap header", good[:10], "pcap file header: the file ends after 10 of its 24 bytes"},
		{"record header cut", good[:24+10], "packet 1 at offset 24: the file ends after 10 of its 16 bytes"},
		{"record data cut", good[:24+16+5], "packet 1 at offset 24: the file ends after 21 of its 70 bytes"},
		{"huge record", hugeRecord, "packet 1 at offset 24: captured length 1073741824 is more than 16777216 bytes"},
		{"block length not a multiple of 4", ngWith(le().AppendUint32(le().AppendUint32(nil, blockEPB), 13)), "total length 13 is not a multiple of 4"},
		{"block trailer differs", badTrailer, "total length 36 at its start, 150994980 at its end"},
		{"block cut", ngWith(epb(0, 4, []byte("abcd")))[:50], "the file ends after"},
		{"pcapng version 2", v2, "version 2.0, flowtap reads version 1"},
		{"byte-order magic", badBOM, "byte-order magic 0x003c2b1a is neither"},
		{"if_tsresol", badResol, "if_tsresol 0x64 is finer than flowtap reads"},
	} {
		_, _, err := readAll(t, tc.data)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

// TestReaderSkipsBadRecords checks that a packet block whose content is
// unusable is reported as a *RecordError and that reading goes on.
func TestReaderSkipsBadRecords(t *testing.T) {
	data := ngWith(epb(3, 4, []byte("abcd")), epb(0, 8, []byte("abcd")), epb(0, 4, []byte("abcd")))
	pkts, skipped, err := readAll(t, data)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkts) != 1 || pkts[0].Number != 3 || string(pkts[0].Data) != "abcd" {
		t.Errorf("packets %+v, want packet 3 only", pkts)
	}
	want := []string{"packet 1 at offset 96: interface 3 was not described (the section has 1)",
		"packet 2 at offset 132: captured length 8 runs past its block (4 bytes of data)"}
	if len(skipped) != len(want) {
		t.Fatalf("skipped %v, want %v", skipped, want)
	}
	for i, re := range skipped {
		if re.Error() != want[i] {
			t.Errorf("skipped %d: %q, want %q", i, re.Error(), want[i])
		}
	}
}

// TestReaderSimplePacketBlock checks an SPB: interface 0, the snapshot
// length applied, the previous packet's timestamp.
func TestReaderSimplePacketBlock(t *testing.T) {
	idb := le().AppendUint16(nil, linkRaw)
	idb = append(idb, 0, 0)
	idb = le().AppendUint32(idb, 3) // snaplen 3
	b := ngBlock(ngSection(nil, le(), nil, nil), le(), blockIDB, idb)
	e := epb(0, 2, []byte("ab"))
	binary.LittleEndian.PutUint32(e[16:], 7) // the timestamp's low word: 7 µs
	b = append(b, e...)
	spb := le().AppendUint32(nil, 5)
	b = ngBlock(b, le(), blockSPB, append(spb, "hello"...))
	pkts, _, err := readAll(t, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkts) != 2 || string(pkts[1].Data) != "hel" || pkts[1].WireLen != 5 || pkts[1].Timestamp != 7000 || pkts[0].Timestamp != 7000 {
		t.Fatalf("packets %+v", pkts)
	}
}

// TestReaderRecordsBeyondItsBuffer reads packets larger than the Reader's
// buffer (which hands smaller ones out of the buffer, uncopied; larger
// ones are copied) between small ones and one just under the buffer's
// size, in both formats: each comes back whole.
func TestReaderRecordsBeyondItsBuffer(t *testing.T) {
	small := loopbackFrames()[:2]
	big := make([]byte, readBuffer+4096)
	for i := range big {
		big[i] = byte(i * 7)
	}
	fs := []frame{small[0], {ts: small[0].ts + 1, data: big}, small[1], {ts: small[1].ts + 1, data: big[:readBuffer-16]}, small[0]}
	for name, data := range map[string][]byte{
		"pcap":   pcapFile(le(), false, linkEthernet, 1<<20, fs),
		"pcapng": ngSection(nil, le(), []ngIface{{link: linkEthernet}}, fs),
	} {
		pkts, skipped, err := readAll(t, data)
		if err != nil || len(skipped) > 0 || len(pkts) != len(fs) {
			t.Fatalf("%s: %d packets (want %d), %v %v", name, len(pkts), len(fs), err, skipped)
		}
		for i, p := range pkts {
			if !bytes.Equal(p.Data, fs[i].data) {
				t.Errorf("%s: packet %d: %d bytes differ from the %d written", name, i, len(p.Data), len(fs[i].data))
			}
		}
	}
}
