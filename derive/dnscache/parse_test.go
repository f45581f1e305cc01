// SPDX-License-Identifier: Apache-2.0

package dnscache

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

func TestParse(t *testing.T) {
	b := wire(t, 77, "WWW.Example.COM", dnsmessage.RCodeSuccess,
		rr{name: "www.example.com", ttl: 30, target: "cdn.example.net"},
		rr{name: "cdn.example.net", ttl: 20, addr: "192.0.2.7"},
		rr{name: "cdn.example.net", ttl: 20, addr: "2001:db8::7"},
	)
	var m Message
	if err := Parse(b, &m); err != nil {
		t.Fatal(err)
	}
	if m.ID != 77 || !m.Response || m.RCode != dnsmessage.RCodeSuccess || m.QName != "www.example.com" || m.QType != TypeA {
		t.Fatalf("header/question = %+v", m)
	}
	want := []Record{
		{Name: "www.example.com", Type: TypeCNAME, TTL: 30, Target: "cdn.example.net"},
		{Name: "cdn.example.net", Type: TypeA, TTL: 20, Addr: netip.MustParseAddr("192.0.2.7")},
		{Name: "cdn.example.net", Type: TypeAAAA, TTL: 20, Addr: netip.MustParseAddr("2001:db8::7")},
	}
	if len(m.Answers) != len(want) || m.AnswerCount != 3 {
		t.Fatalf("answers = %+v", m.Answers)
	}
	for i := range want {
		if m.Answers[i] != want[i] {
			t.Errorf("answer %d = %+v, want %+v", i, m.Answers[i], want[i])
		}
	}

	// Over TCP: a length prefix, and a segment that holds only part.
	tcp := binary.BigEndian.AppendUint16(nil, uint16(len(b)))
	tcp = append(tcp, b...)
	var mt Message
	if err := ParseTCP(tcp, &mt); err != nil || mt.QName != "www.example.com" || len(mt.Answers) != 3 {
		t.Fatalf("ParseTCP = %v, %+v", err, mt)
	}
	if err := ParseTCP(tcp[:len(tcp)-1], &mt); !errors.Is(err, ErrTCPSplit) {
		t.Fatalf("ParseTCP(split) = %v, want ErrTCPSplit", err)
	}
	// What came before the cut is decoded: the question, two whole records.
	if mt.QName != "www.example.com" || len(mt.Answers) != 2 {
		t.Fatalf("ParseTCP(split) decoded %+v", mt)
	}
	if err := ParseTCP(tcp[:1], &mt); !errors.Is(err, ErrTCPSplit) {
		t.Fatalf("ParseTCP(1 byte) = %v, want ErrTCPSplit", err)
	}
}

func TestParseHostile(t *testing.T) {
	good := wire(t, 1, "a.example", dnsmessage.RCodeSuccess, rr{name: "a.example", ttl: 5, addr: "192.0.2.1"})
	// The answer's name is a compression pointer (0xc00c) to the question
	// name at offset 12. Make the question name point to itself instead.
	loop := append([]byte(nil), good...)
	loop[12], loop[13] = 0xc0, 0x0c
	// A header announcing more answers than the message has.
	counts := append([]byte(nil), good...)
	binary.BigEndian.PutUint16(counts[6:], 40)
	tests := map[string][]byte{
		"empty":              nil,
		"short header":       good[:5],
		"truncated answer":   good[:len(good)-2],
		"compression loop":   loop,
		"counts beyond data": counts,
	}
	for name, b := range tests {
		var m Message
		if err := Parse(b, &m); err == nil {
			t.Errorf("%s: Parse succeeded: %+v", name, m)
		}
	}
}

func TestTypeAndRCodeStrings(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{TypeString(TypeA), "A"}, {TypeString(TypeAAAA), "AAAA"}, {TypeString(TypeCNAME), "CNAME"},
		{TypeString(65), "HTTPS"}, {TypeString(65280), "TYPE65280"},
		{RCodeString(dnsmessage.RCodeNameError), "NXDOMAIN"}, {RCodeString(dnsmessage.RCode(11)), "RCODE11"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

// FuzzParse checks that no input panics Parse or ParseTCP, that a parsed
// message respects its bounds, and that parsing is deterministic.
func FuzzParse(f *testing.F) {
	f.Add(wire(f, 1, "a.example", dnsmessage.RCodeSuccess, rr{name: "a.example", ttl: 5, addr: "192.0.2.1"}))
	f.Add(wire(f, 2, "www.example.com", dnsmessage.RCodeSuccess,
		rr{name: "cdn.example.net", ttl: 20, addr: "2001:db8::7"},
		rr{name: "www.example.com", ttl: 30, target: "cdn.example.net"}))
	f.Add(wire(f, 3, "nx.example", dnsmessage.RCodeNameError))
	f.Add([]byte{0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m1, m2 Message
		err1 := Parse(b, &m1)
		err2 := Parse(b, &m2)
		if (err1 == nil) != (err2 == nil) || m1.QName != m2.QName || len(m1.Answers) != len(m2.Answers) {
			t.Fatalf("Parse not deterministic: %v/%v", err1, err2)
		}
		if len(m1.Answers) > MaxAnswers || len(m1.Answers) > m1.AnswerCount {
			t.Fatalf("answers %d of %d beyond bound", len(m1.Answers), m1.AnswerCount)
		}
		for _, r := range m1.Answers {
			if (r.Type == TypeA || r.Type == TypeAAAA) != r.Addr.IsValid() {
				t.Fatalf("record %+v: address does not match type", r)
			}
		}
		_ = ParseTCP(b, &m1)
		c := New(8)
		c.Insert(1, &m2, 0)
		for _, r := range m2.Answers {
			if r.Addr.IsValid() {
				c.Names(r.Addr, 1, 1)
			}
		}
	})
}
