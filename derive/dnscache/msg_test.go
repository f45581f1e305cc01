// SPDX-License-Identifier: Apache-2.0

package dnscache

import (
	"net/netip"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// rr is a test answer record: A/AAAA when addr is set, else CNAME.
type rr struct {
	name   string
	ttl    uint32
	addr   string
	target string
}

// wire builds a response for qname with the given answers.
func wire(t testing.TB, id uint16, qname string, rcode dnsmessage.RCode, answers ...rr) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, Response: true, RCode: rcode})
	b.EnableCompression()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.StartQuestions())
	must(b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(qname + "."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}))
	must(b.StartAnswers())
	for _, a := range answers {
		h := dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(a.name + "."), Class: dnsmessage.ClassINET, TTL: a.ttl}
		switch {
		case a.addr == "":
			must(b.CNAMEResource(h, dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName(a.target + ".")}))
		case netip.MustParseAddr(a.addr).Is4():
			must(b.AResource(h, dnsmessage.AResource{A: netip.MustParseAddr(a.addr).As4()}))
		default:
			must(b.AAAAResource(h, dnsmessage.AAAAResource{AAAA: netip.MustParseAddr(a.addr).As16()}))
		}
	}
	out, err := b.Finish()
	must(err)
	return out
}

// parsed builds and parses a response.
func parsed(t testing.TB, qname string, answers ...rr) *Message {
	t.Helper()
	var m Message
	if err := Parse(wire(t, 1, qname, dnsmessage.RCodeSuccess, answers...), &m); err != nil {
		t.Fatal(err)
	}
	return &m
}
