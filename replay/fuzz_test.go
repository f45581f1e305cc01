// SPDX-License-Identifier: Apache-2.0

package replay

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/flowtap/flowtap/events"
)

// fixtureFiles returns the committed capture fixtures, the fuzz seeds.
func fixtureFiles(f *testing.F) [][]byte {
	var out [][]byte
	for _, fx := range fixtures {
		data, err := os.ReadFile(filepath.Join("testdata", fx.name))
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, data)
	}
	return out
}

// FuzzReader replays arbitrary files: nothing panics, every packet read
// is counted exactly once, events are well-formed, and packet numbers
// only grow.
func FuzzReader(f *testing.F) {
	for _, data := range fixtureFiles(f) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rd, err := NewReader(bytes.NewReader(data))
		if err == nil {
			var last uint64
			for {
				var p Packet
				err := rd.Next(&p)
				var re *RecordError
				if errors.As(err, &re) {
					if re.Number <= last {
						t.Fatalf("record error numbered %d after %d", re.Number, last)
					}
					last = re.Number
					continue
				}
				if err != nil {
					break
				}
				if p.Number <= last || len(p.Data) > maxRecord || int(p.WireLen) < len(p.Data) {
					t.Fatalf("packet %+v after number %d", p, last)
				}
				last = p.Number
			}
		}
		p := New(bytes.NewReader(data), Options{DNS: true})
		var n uint64
		p.RunBatches(context.Background(), 16, func(evs []events.Event) {
			for _, ev := range evs {
				n++
				if ev.Payload == nil || ev.Payload.EventID() != ev.ID {
					t.Fatalf("event %d with payload %T", ev.ID, ev.Payload)
				}
				if d, ok := ev.Payload.(*events.PacketDNSBase); ok && (len(d.Payload) > int(d.Length) || len(d.Payload) == 0) {
					t.Fatalf("DNS event with %d of %d bytes", len(d.Payload), d.Length)
				}
			}
		})
		s := p.Stats()
		if s.Events != n || s.Used+s.NotIP+s.OtherProtocol+s.Fragments+s.NotLocal+s.Snaplen+s.Malformed+s.UnknownLinkType != s.Packets {
			t.Fatalf("%d events delivered, stats %+v", n, s)
		}
	})
}

// FuzzDecode decodes arbitrary packets of every link type: nothing
// panics, a decoded packet is consistent, a skipped one has a reason.
func FuzzDecode(f *testing.F) {
	for _, data := range fixtureFiles(f) {
		rd, err := NewReader(bytes.NewReader(data))
		if err != nil {
			continue
		}
		var p Packet
		for rd.Next(&p) == nil {
			f.Add(uint16(p.LinkType), append([]byte(nil), p.Data...), p.WireLen)
		}
	}
	f.Fuzz(func(t *testing.T, link uint16, data []byte, wire uint32) {
		var p packet
		err := decodePacket(uint32(link), data, wire, &p)
		if err != nil {
			var de *decodeError
			if !errors.As(err, &de) || de.kind < kindNotIP || de.kind > kindUnknownLink || de.reason == "" {
				t.Fatalf("error %v (%T)", err, err)
			}
			return
		}
		if !p.src.IsValid() || !p.dst.IsValid() || p.proto != protoTCP && p.proto != protoUDP ||
			len(p.payload) > int(p.payloadLen) || p.payloadLen >= p.ipLen {
			t.Fatalf("decoded %+v", p)
		}
	})
}
