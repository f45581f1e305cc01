// SPDX-License-Identifier: Apache-2.0

package dnscache

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

const sec = int64(1e9)

var (
	ip4 = netip.MustParseAddr("192.0.2.7")
	ip6 = netip.MustParseAddr("2001:db8::7")
)

func check(t *testing.T, c *Cache, addr netip.Addr, workload uint64, now int64, want ...string) {
	t.Helper()
	got := c.Names(addr, workload, now)
	if len(want) == 0 {
		want = nil
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Names(%s, workload %d, t=%ds) = %q, want %q", addr, workload, now/sec, got, want)
	}
}

func TestCNAMEChainInAnyOrder(t *testing.T) {
	chain := []rr{
		{name: "www.example.com", ttl: 60, target: "www.cdn.example"},
		{name: "www.cdn.example", ttl: 60, target: "edge.cdn.example"},
		{name: "edge.cdn.example", ttl: 60, addr: ip4.String()},
		{name: "edge.cdn.example", ttl: 60, addr: ip6.String()},
	}
	orders := map[string][]int{
		"wire order": {0, 1, 2, 3},
		"reversed":   {3, 2, 1, 0},
		"mixed":      {2, 0, 3, 1},
	}
	for name, order := range orders {
		t.Run(name, func(t *testing.T) {
			var answers []rr
			for _, i := range order {
				answers = append(answers, chain[i])
			}
			c := New(0)
			c.Insert(1, parsed(t, "WWW.example.com", answers...), 0)
			for _, a := range []netip.Addr{ip4, ip6} {
				check(t, c, a, 1, sec, "www.example.com", "www.cdn.example", "edge.cdn.example")
			}
			// IPv4-mapped addresses (dual-stack sockets) find the IPv4 entry.
			check(t, c, netip.AddrFrom16(ip4.As16()), 1, sec, "www.example.com", "www.cdn.example", "edge.cdn.example")
		})
	}
}

func TestAddressOnChainGetsPrefix(t *testing.T) {
	// An address record of an intermediate name carries the names up to it.
	c := New(0)
	c.Insert(1, parsed(t, "a.example",
		rr{name: "b.example", ttl: 60, addr: "192.0.2.2"},
		rr{name: "a.example", ttl: 60, target: "b.example"},
		rr{name: "b.example", ttl: 60, target: "c.example"},
		rr{name: "c.example", ttl: 60, addr: "192.0.2.3"},
		rr{name: "unrelated.example", ttl: 60, addr: "192.0.2.4"},
	), 0)
	check(t, c, netip.MustParseAddr("192.0.2.2"), 1, 0, "a.example", "b.example")
	check(t, c, netip.MustParseAddr("192.0.2.3"), 1, 0, "a.example", "b.example", "c.example")
	// Not on the chain of the question: not something the host resolved.
	check(t, c, netip.MustParseAddr("192.0.2.4"), 1, 0)
}

func TestExpiry(t *testing.T) {
	c := New(0)
	// The CNAME's TTL is the shortest on the path: it bounds the entry.
	c.Insert(1, parsed(t, "short.example",
		rr{name: "short.example", ttl: 2, target: "long.example"},
		rr{name: "long.example", ttl: 300, addr: ip4.String()},
	), 10*sec)
	check(t, c, ip4, 1, 12*sec-1, "short.example", "long.example")
	check(t, c, ip4, 1, 12*sec)
	check(t, c, ip4, 1, 13*sec)
	if s := c.Stats(); s.Expiries != 1 || s.Entries != 0 || s.Hits != 1 || s.Misses != 2 {
		t.Errorf("stats = %+v, want 1 expiry, 0 entries, 1 hit, 2 misses", s)
	}
	// A new answer brings the name back.
	c.Insert(1, parsed(t, "short.example", rr{name: "short.example", ttl: 2, addr: ip4.String()}), 20*sec)
	check(t, c, ip4, 1, 21*sec, "short.example")
	// TTL 0: never cached.
	c.Insert(1, parsed(t, "zero.example", rr{name: "zero.example", ttl: 0, addr: "192.0.2.9"}), 0)
	check(t, c, netip.MustParseAddr("192.0.2.9"), 1, 0)
}

func TestExpiredOtherEntryDoesNotHideLiveOne(t *testing.T) {
	c := New(0)
	c.Insert(1, parsed(t, "old.example", rr{name: "old.example", ttl: 1, addr: ip4.String()}), 0)
	c.Insert(1, parsed(t, "new.example", rr{name: "new.example", ttl: 100, addr: ip4.String()}), 0)
	check(t, c, ip4, 1, 0, "new.example", "old.example")
	check(t, c, ip4, 1, 5*sec, "new.example")
}

func TestWorkloadPriority(t *testing.T) {
	c := New(0)
	c.Insert(1, parsed(t, "mine.example", rr{name: "mine.example", ttl: 60, target: "edge.example"}, rr{name: "edge.example", ttl: 60, addr: ip4.String()}), 0)
	c.Insert(2, parsed(t, "theirs.example", rr{name: "theirs.example", ttl: 60, addr: ip4.String()}), sec)
	// Workload 2 resolves again later: it must not push workload 1's names back.
	c.Insert(2, parsed(t, "theirs.example", rr{name: "theirs.example", ttl: 60, addr: ip4.String()}), 2*sec)
	check(t, c, ip4, 1, 3*sec, "mine.example", "edge.example", "theirs.example")
	check(t, c, ip4, 2, 3*sec, "theirs.example", "mine.example", "edge.example")
	// A workload that resolved nothing gets everyone's, most recent first.
	check(t, c, ip4, 3, 3*sec, "theirs.example", "mine.example", "edge.example")
	// Two of one workload's queries: no name twice.
	c.Insert(1, parsed(t, "alias.example", rr{name: "alias.example", ttl: 60, target: "edge.example"}, rr{name: "edge.example", ttl: 60, addr: ip4.String()}), 4*sec)
	check(t, c, ip4, 1, 5*sec, "alias.example", "edge.example", "mine.example", "theirs.example")
}

func TestLRUEviction(t *testing.T) {
	c := New(3)
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}) }
	for i := 1; i <= 3; i++ {
		c.Insert(1, parsed(t, fmt.Sprintf("h%d.example", i), rr{name: fmt.Sprintf("h%d.example", i), ttl: 60, addr: addr(i).String()}), 0)
	}
	check(t, c, addr(1), 1, 0, "h1.example") // 1 is now more recent than 2
	c.Insert(1, parsed(t, "h4.example", rr{name: "h4.example", ttl: 60, addr: addr(4).String()}), 0)
	check(t, c, addr(2), 1, 0)
	check(t, c, addr(1), 1, 0, "h1.example")
	check(t, c, addr(3), 1, 0, "h3.example")
	check(t, c, addr(4), 1, 0, "h4.example")
	if s := c.Stats(); s.Entries != 3 || s.Evictions != 1 {
		t.Errorf("stats = %+v, want 3 entries, 1 eviction", s)
	}
	// Refreshing an entry does not add one.
	c.Insert(1, parsed(t, "h4.example", rr{name: "h4.example", ttl: 60, addr: addr(4).String()}), 0)
	if s := c.Stats(); s.Entries != 3 || s.Evictions != 1 {
		t.Errorf("after refresh: stats = %+v", s)
	}
}

func TestNamesPerAddressBounded(t *testing.T) {
	c := New(0)
	for i := 0; i < MaxNamesPerAddr+5; i++ {
		n := fmt.Sprintf("n%d.example", i)
		c.Insert(uint64(i), parsed(t, n, rr{name: n, ttl: 60, addr: ip4.String()}), 0)
	}
	got := c.Names(ip4, 0, 0)
	if len(got) != MaxNamesPerAddr || got[0] != "n0.example" && got[0] != fmt.Sprintf("n%d.example", MaxNamesPerAddr+4) {
		t.Fatalf("names = %q", got)
	}
	if s := c.Stats(); s.Entries != MaxNamesPerAddr || s.Evictions != 5 {
		t.Errorf("stats = %+v", s)
	}
}

func TestIgnoredAnswers(t *testing.T) {
	c := New(0)
	var m Message
	if err := Parse(wire(t, 1, "nx.example", dnsmessage.RCodeNameError, rr{name: "nx.example", ttl: 60, addr: ip4.String()}), &m); err != nil {
		t.Fatal(err)
	}
	c.Insert(1, &m, 0)
	q := parsed(t, "q.example", rr{name: "q.example", ttl: 60, addr: ip4.String()})
	q.Response = false
	c.Insert(1, q, 0)
	// A CNAME loop ends the chain; the address of a name on it still counts.
	c.Insert(1, parsed(t, "loop.example",
		rr{name: "loop.example", ttl: 60, target: "loop2.example"},
		rr{name: "loop2.example", ttl: 60, target: "loop.example"},
		rr{name: "loop2.example", ttl: 60, addr: ip6.String()},
	), 0)
	check(t, c, ip4, 1, 0)
	check(t, c, ip6, 1, 0, "loop.example", "loop2.example")
}

func TestLookupAllocations(t *testing.T) {
	c := New(0)
	c.Insert(1, parsed(t, "a.example", rr{name: "a.example", ttl: 60, addr: ip4.String()}), 0)
	buf := make([]string, 0, 8)
	if n := testing.AllocsPerRun(100, func() { c.AppendNames(buf[:0], ip4, 1, 0) }); n != 0 {
		t.Errorf("AppendNames allocates %v times", n)
	}
}

// fill inserts n single-address answers (with one CNAME each) into c.
func fill(b testing.TB, c *Cache, n int) []netip.Addr {
	addrs := make([]netip.Addr, n)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		q := fmt.Sprintf("host%d.example", i)
		m := &Message{Response: true, QName: q, Answers: []Record{
			{Name: q, Type: TypeCNAME, TTL: 3600, Target: "edge" + q},
			{Name: "edge" + q, Type: TypeA, TTL: 3600, Addr: addrs[i]},
		}}
		c.Insert(uint64(i%8), m, 0)
	}
	return addrs
}

// BenchmarkLookup: one lookup in a cache of 100,000 entries.
func BenchmarkLookup(b *testing.B) {
	c := New(100_000)
	addrs := fill(b, c, 100_000)
	buf := make([]string, 0, 8)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		buf = c.AppendNames(buf[:0], addrs[i%len(addrs)], 3, sec)
	}
	if len(buf) == 0 {
		b.Fatal("no names")
	}
}

// BenchmarkLookupMiss: an address the full cache does not hold.
func BenchmarkLookupMiss(b *testing.B) {
	c := New(100_000)
	fill(b, c, 100_000)
	miss := netip.MustParseAddr("192.0.2.1")
	b.ReportAllocs()
	for b.Loop() {
		c.AppendNames(nil, miss, 3, sec)
	}
}

// BenchmarkInsert: inserting a parsed answer (a CNAME and an A record,
// each time a new address) into a full cache of 100,000 entries, which
// evicts one entry per insert.
func BenchmarkInsert(b *testing.B) {
	c := New(100_000)
	fill(b, c, 100_000)
	const n = 1 << 16
	msgs := make([]Message, n)
	for i := range msgs {
		q := fmt.Sprintf("new%d.example", i)
		msgs[i] = Message{Response: true, QName: q, Answers: []Record{
			{Name: q, Type: TypeCNAME, TTL: 60, Target: "edge." + q},
			{Name: "edge." + q, Type: TypeA, TTL: 60, Addr: netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)})},
		}}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		c.Insert(uint64(i%8), &msgs[i%n], sec)
	}
}

// BenchmarkParse: parsing a response with a CNAME, an A and an AAAA record.
func BenchmarkParse(b *testing.B) {
	w := wire(b, 1, "www.example.com", dnsmessage.RCodeSuccess,
		rr{name: "www.example.com", ttl: 30, target: "cdn.example.net"},
		rr{name: "cdn.example.net", ttl: 20, addr: "192.0.2.7"},
		rr{name: "cdn.example.net", ttl: 20, addr: "2001:db8::7"})
	var m Message
	b.ReportAllocs()
	for b.Loop() {
		if err := Parse(w, &m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLookupHot: lookups of 1,000 busy addresses, picked at random,
// in a cache of 100,000 entries (the common case: a few destinations take
// most flows).
func BenchmarkLookupHot(b *testing.B) {
	c := New(100_000)
	addrs := fill(b, c, 100_000)
	r := rand.New(rand.NewPCG(3, 4))
	hot := make([]netip.Addr, 1000)
	for i := range hot {
		hot[i] = addrs[r.IntN(len(addrs))]
	}
	buf := make([]string, 0, 8)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		buf = c.AppendNames(buf[:0], hot[i%len(hot)], 3, sec)
	}
}
