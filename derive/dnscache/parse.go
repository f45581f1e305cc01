// SPDX-License-Identifier: Apache-2.0

package dnscache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/net/dns/dnsmessage"
)

// Record types the cache uses, as numbered on the wire.
const (
	TypeA     uint16 = 1
	TypeCNAME uint16 = 5
	TypeAAAA  uint16 = 28
)

// MaxAnswers bounds the answer records Parse keeps from one message; the
// rest are skipped (a real answer rarely has more than a few dozen).
const MaxAnswers = 64

// ErrTCPSplit is returned by ParseTCP when a segment does not hold a whole
// DNS message: the message continues in later segments, which flowtap does
// not reassemble (see README.md).
var ErrTCPSplit = errors.New("dns over tcp: message split over segments")

// Message is the part of a DNS message flowtap uses: header, first
// question and the answer section's IN-class A, AAAA and CNAME records.
// Names are lower case without the trailing dot ("www.example.com").
type Message struct {
	ID       uint16
	Response bool
	RCode    dnsmessage.RCode
	// QName and QType are the first question's; QName is "" when the
	// message has no question.
	QName string
	QType uint16
	// Answers holds at most MaxAnswers records of the answer section, in
	// wire order; AnswerCount is how many the section had in total
	// (records of other types and classes included).
	Answers     []Record
	AnswerCount int
}

// Record is one answer record. Addr is set for A and AAAA, Target for
// CNAME.
type Record struct {
	Name   string
	Type   uint16
	TTL    uint32
	Addr   netip.Addr
	Target string
}

// Reset empties m, keeping its answer storage for reuse.
func (m *Message) Reset() {
	*m = Message{Answers: m.Answers[:0]}
}

// Parse decodes the DNS message in b into m (reusing m's answer slice).
// Malformed, truncated or hostile input (compression loops, counts beyond
// the data, overlong names) is an error, never a panic; m then holds what
// was decoded before the error.
func Parse(b []byte, m *Message) error {
	m.Reset()
	var p dnsmessage.Parser
	h, err := p.Start(b)
	if err != nil {
		return fmt.Errorf("parse dns header: %w", err)
	}
	m.ID, m.Response, m.RCode = h.ID, h.Response, h.RCode
	q, err := p.Question()
	switch {
	case err == nil:
		m.QName = nameString(&q.Name)
		m.QType = uint16(q.Type)
	case errors.Is(err, dnsmessage.ErrSectionDone):
	default:
		return fmt.Errorf("parse dns question: %w", err)
	}
	if err := p.SkipAllQuestions(); err != nil {
		return fmt.Errorf("parse dns questions: %w", err)
	}
	for {
		rh, err := p.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("parse dns answer %d: %w", m.AnswerCount, err)
		}
		m.AnswerCount++
		keep := rh.Class == dnsmessage.ClassINET && len(m.Answers) < MaxAnswers
		switch {
		case keep && rh.Type == dnsmessage.TypeA:
			r, err := p.AResource()
			if err != nil {
				return fmt.Errorf("parse dns answer %d (A): %w", m.AnswerCount, err)
			}
			m.Answers = append(m.Answers, Record{Name: nameString(&rh.Name), Type: TypeA, TTL: rh.TTL, Addr: netip.AddrFrom4(r.A)})
		case keep && rh.Type == dnsmessage.TypeAAAA:
			r, err := p.AAAAResource()
			if err != nil {
				return fmt.Errorf("parse dns answer %d (AAAA): %w", m.AnswerCount, err)
			}
			m.Answers = append(m.Answers, Record{Name: nameString(&rh.Name), Type: TypeAAAA, TTL: rh.TTL, Addr: netip.AddrFrom16(r.AAAA)})
		case keep && rh.Type == dnsmessage.TypeCNAME:
			r, err := p.CNAMEResource()
			if err != nil {
				return fmt.Errorf("parse dns answer %d (CNAME): %w", m.AnswerCount, err)
			}
			m.Answers = append(m.Answers, Record{Name: nameString(&rh.Name), Type: TypeCNAME, TTL: rh.TTL, Target: nameString(&r.CNAME)})
		default:
			if err := p.SkipAnswer(); err != nil {
				return fmt.Errorf("parse dns answer %d: %w", m.AnswerCount, err)
			}
		}
	}
}

// ParseTCP decodes the first DNS message of a DNS-over-TCP segment: a
// 2-byte length prefix, then the message. A segment that holds less than
// the prefix announces gives an error wrapping ErrTCPSplit; m then holds
// what the bytes present decoded to (see Parse).
func ParseTCP(b []byte, m *Message) error {
	m.Reset()
	if len(b) < 2 {
		return fmt.Errorf("parse dns over tcp: %d bytes, no length prefix: %w", len(b), ErrTCPSplit)
	}
	n := int(binary.BigEndian.Uint16(b))
	if n > len(b)-2 {
		err := Parse(b[2:], m)
		return fmt.Errorf("parse dns over tcp: prefix says %d bytes, segment has %d (%v): %w", n, len(b)-2, err, ErrTCPSplit)
	}
	return Parse(b[2:2+n], m)
}

// nameString renders a DNS name lower case without the trailing dot, in
// one allocation.
func nameString(n *dnsmessage.Name) string {
	l := int(n.Length)
	if l > 0 && n.Data[l-1] == '.' {
		l--
	}
	var buf [255]byte
	b := buf[:l]
	for i, c := range n.Data[:l] {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	return string(b)
}

// TypeString names a record type: A, AAAA, CNAME, ... or TYPEn for a
// type without a name.
func TypeString(t uint16) string {
	s := dnsmessage.Type(t).String() // "TypeA", or the number
	if len(s) > 4 && s[:4] == "Type" {
		return s[4:]
	}
	return fmt.Sprintf("TYPE%d", t)
}

// RCodeString names a response code: NOERROR, NXDOMAIN, ... or RCODEn.
func RCodeString(r dnsmessage.RCode) string {
	switch r {
	case dnsmessage.RCodeSuccess:
		return "NOERROR"
	case dnsmessage.RCodeFormatError:
		return "FORMERR"
	case dnsmessage.RCodeServerFailure:
		return "SERVFAIL"
	case dnsmessage.RCodeNameError:
		return "NXDOMAIN"
	case dnsmessage.RCodeNotImplemented:
		return "NOTIMP"
	case dnsmessage.RCodeRefused:
		return "REFUSED"
	}
	return fmt.Sprintf("RCODE%d", uint16(r))
}
