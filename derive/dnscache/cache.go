// SPDX-License-Identifier: Apache-2.0

// Package dnscache turns the DNS answers seen on the wire into names for
// IP addresses: the cache behind src_dns and dst_dns of flow events.
//
// Parse and ParseTCP decode a DNS message (golang.org/x/net/dns/dnsmessage
// does the wire format); Cache.Insert binds every A and AAAA address of an
// answer to the queried name and the CNAME chain that led to it; Cache
// lookups return the names the asking workload resolved first, then those
// other workloads resolved. Entries expire with their TTL, the cache is
// bounded and evicts the least recently used entry. See README.md.
package dnscache

import (
	"net/netip"

	"golang.org/x/net/dns/dnsmessage"
)

// DefaultSize is the number of entries New uses for size <= 0.
const DefaultSize = 100_000

// MaxNamesPerAddr bounds the entries (distinct workload and query name
// pairs) kept for one address, so a lookup costs a bounded walk; beyond
// it the address's oldest entry is evicted.
const MaxNamesPerAddr = 16

// maxChain bounds how many CNAME hops Insert follows from the query name.
const maxChain = 16

// Stats are a cache's counters.
type Stats struct {
	Entries   int    // entries held now
	Inserts   uint64 // entries added or refreshed
	Hits      uint64 // lookups that returned at least one name
	Misses    uint64 // lookups that returned none
	Evictions uint64 // entries dropped to make room (cache or address full)
	Expiries  uint64 // entries dropped because their TTL ran out
}

// addrKey is an address as map key: 16 bytes, IPv4 in its IPv4-mapped
// form, hashed and compared faster than a netip.Addr (which holds a zone
// pointer). Zones are dropped: DNS answers carry none.
type addrKey [16]byte

func keyOf(a netip.Addr) addrKey { return a.Unmap().As16() }

// none marks the end of an index list.
const none = -1

// entry binds one address to the names one workload's query resolved it
// with: names[0] is the queried name, then the CNAME chain to the owner
// of the address record.
type entry struct {
	addr     addrKey
	workload uint64
	names    []string
	expires  int64 // ns; the entry is dead from this instant on
	// used is set by lookups; eviction gives a used entry a second
	// chance instead of moving it on every lookup.
	used bool
	// Least recently used list (prev towards the oldest) and the
	// address's entry list (newest first).
	prev, next int32
	addrNext   int32
}

// Cache maps IP addresses to the domain names the host resolved them
// from. It is not safe for concurrent use: the pipeline's derivation
// goroutine owns it. Times are nanoseconds on any clock, as long as
// Insert and lookups use the same one (the pipeline passes event
// timestamps).
type Cache struct {
	size    int
	entries []entry
	free    []int32
	byAddr  index // first entry of each address
	// head is the most recently used entry, tail the least.
	head, tail int32
	stats      Stats
	// chain is Insert's scratch space.
	chain [maxChain + 1]string
	ttl   [maxChain + 1]uint32
}

// New returns an empty cache that holds at most size entries (DefaultSize
// when size <= 0).
func New(size int) *Cache {
	if size <= 0 {
		size = DefaultSize
	}
	return &Cache{size: size, byAddr: newIndex(size), head: none, tail: none}
}

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	s := c.stats
	s.Entries = c.len()
	return s
}

// len is the number of live entries.
func (c *Cache) len() int { return len(c.entries) - len(c.free) }

// Insert adds the addresses of a successful DNS response to the cache,
// attributed to workload (the cgroup id of the socket that received it).
// Each A or AAAA record whose owner is the queried name or on its CNAME
// chain is bound to the names from the query to that owner; the CNAME
// records may come in any order. The entry lives for the smallest TTL on
// that path. Responses with an error code, without a question, or with
// records unrelated to the question add nothing for those records.
func (c *Cache) Insert(workload uint64, m *Message, now int64) {
	if !m.Response || m.RCode != dnsmessage.RCodeSuccess || m.QName == "" {
		return
	}
	// Follow the CNAME chain from the query name; records may be in any
	// order, so each hop scans the (bounded) answer list.
	n := 1
	c.chain[0], c.ttl[0] = m.QName, ^uint32(0)
	for n <= maxChain {
		cur := c.chain[n-1]
		found := false
		for i := range m.Answers {
			r := &m.Answers[i]
			if r.Type == TypeCNAME && r.Name == cur {
				if seen(c.chain[:n], r.Target) {
					break // a loop: stop here
				}
				c.chain[n] = r.Target
				c.ttl[n] = min(c.ttl[n-1], r.TTL)
				n++
				found = true
				break
			}
		}
		if !found {
			break
		}
	}
	var names []string // shared by the entries of this answer, never changed
	for i := range m.Answers {
		r := &m.Answers[i]
		if r.Type != TypeA && r.Type != TypeAAAA {
			continue
		}
		pos := -1
		for j := 0; j < n; j++ {
			if c.chain[j] == r.Name {
				pos = j
				break
			}
		}
		if pos < 0 {
			continue
		}
		ttl := min(c.ttl[pos], r.TTL)
		if ttl == 0 {
			continue
		}
		if names == nil {
			names = make([]string, n)
			copy(names, c.chain[:n])
		}
		c.put(keyOf(r.Addr), workload, names[:pos+1:pos+1], now+int64(ttl)*1e9)
	}
}

func seen(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// put adds or refreshes the entry of (addr, workload, names[0]).
func (c *Cache) put(addr addrKey, workload uint64, names []string, expires int64) {
	c.stats.Inserts++
	first, ok := c.byAddr.get(addr)
	if ok {
		count := 0
		last, lastPrev := int32(none), int32(none)
		for i, prev := first, int32(none); i != none; prev, i = i, c.entries[i].addrNext {
			e := &c.entries[i]
			if e.workload == workload && e.names[0] == names[0] {
				e.names, e.expires, e.used = names, expires, false
				c.touch(i)
				return
			}
			count++
			last, lastPrev = i, prev
		}
		if count >= MaxNamesPerAddr {
			c.stats.Evictions++
			c.drop(last, lastPrev)
		}
	}
	if c.len() >= c.size {
		c.evictOldest()
	}
	var i int32
	if n := len(c.free); n > 0 {
		i = c.free[n-1]
		c.free = c.free[:n-1]
	} else {
		c.entries = append(c.entries, entry{})
		i = int32(len(c.entries) - 1)
	}
	head, _ := c.byAddr.get(addr) // none when absent
	c.entries[i] = entry{addr: addr, workload: workload, names: names, expires: expires, prev: none, next: none, addrNext: head}
	c.byAddr.set(addr, i)
	c.pushFront(i)
}

// maxSecondChances bounds how many looked-up entries one eviction moves
// to the front before it evicts the oldest regardless.
const maxSecondChances = 32

// evictOldest drops the least recently used entry. Lookups only mark the
// entries they return (moving them in the list would cost a lookup three
// more cache misses); eviction moves marked entries from the tail to the
// front instead (second chance), which orders them as a lookup would
// have, only later.
func (c *Cache) evictOldest() {
	for n := 0; c.tail != none; n++ {
		i := c.tail
		if e := &c.entries[i]; e.used && n < maxSecondChances {
			e.used = false
			c.touch(i)
			continue
		}
		c.stats.Evictions++
		c.dropFromAddr(i)
		return
	}
}

// AppendNames appends to dst the names cached for addr (an IPv4-mapped
// address is looked up as IPv4) at time now: first those workload
// resolved, then those other workloads resolved, each list starting with
// the queried name followed by its CNAME chain, and no name twice.
// Expired entries are never returned; they are dropped as they are met.
func (c *Cache) AppendNames(dst []string, addr netip.Addr, workload uint64, now int64) []string {
	key := keyOf(addr)
	first, ok := c.byAddr.get(key)
	if !ok {
		c.stats.Misses++
		return dst
	}
	start := len(dst)
	// First walk: drop expired entries, append the workload's own names
	// and note whether other workloads have any.
	others := false
	live := int32(none) // the address's first live entry
	for i, prev := first, int32(none); i != none; {
		e := &c.entries[i]
		next := e.addrNext
		switch {
		case e.expires <= now:
			c.stats.Expiries++
			c.drop(i, prev)
			i = next
			continue
		case e.workload == workload:
			e.used = true
			dst = appendNew(dst, start, e.names)
		default:
			others = true
		}
		if live == none {
			live = i
		}
		prev, i = i, next
	}
	if others {
		for i := live; i != none; i = c.entries[i].addrNext {
			if e := &c.entries[i]; e.workload != workload {
				e.used = true
				dst = appendNew(dst, start, e.names)
			}
		}
	}
	if len(dst) > start {
		c.stats.Hits++
	} else {
		c.stats.Misses++
	}
	return dst
}

// appendNew appends the names not yet in dst[start:].
func appendNew(dst []string, start int, names []string) []string {
	if len(dst) == start {
		// One by one: cheaper than append(dst, names...) for the one
		// to three names of a typical entry.
		//lint:ignore S1011 measured: the loop is cheaper for short lists
		for _, n := range names {
			dst = append(dst, n)
		}
		return dst
	}
	for _, n := range names {
		if !seen(dst[start:], n) {
			dst = append(dst, n)
		}
	}
	return dst
}

// Names returns the names for addr as AppendNames does, in a new slice
// (nil when there are none).
func (c *Cache) Names(addr netip.Addr, workload uint64, now int64) []string {
	return c.AppendNames(nil, addr, workload, now)
}

// dropFromAddr removes entry i, finding its predecessor in its address's
// list.
func (c *Cache) dropFromAddr(i int32) {
	prev := int32(none)
	j, _ := c.byAddr.get(c.entries[i].addr)
	for ; j != i && j != none; j = c.entries[j].addrNext {
		prev = j
	}
	c.drop(i, prev)
}

// drop removes entry i, whose predecessor in its address's list is prev
// (none when it is the first).
func (c *Cache) drop(i, prev int32) {
	e := &c.entries[i]
	if prev == none {
		if e.addrNext == none {
			c.byAddr.del(e.addr)
		} else {
			c.byAddr.set(e.addr, e.addrNext)
		}
	} else {
		c.entries[prev].addrNext = e.addrNext
	}
	c.unlink(i)
	*e = entry{prev: none, next: none, addrNext: none}
	c.free = append(c.free, i)
}

func (c *Cache) pushFront(i int32) {
	e := &c.entries[i]
	e.prev, e.next = none, c.head
	if c.head != none {
		c.entries[c.head].prev = i
	}
	c.head = i
	if c.tail == none {
		c.tail = i
	}
}

func (c *Cache) unlink(i int32) {
	e := &c.entries[i]
	if e.prev != none {
		c.entries[e.prev].next = e.next
	} else {
		c.head = e.next
	}
	if e.next != none {
		c.entries[e.next].prev = e.prev
	} else {
		c.tail = e.prev
	}
	e.prev, e.next = none, none
}

// touch marks entry i most recently used.
func (c *Cache) touch(i int32) {
	if c.head == i {
		return
	}
	c.unlink(i)
	c.pushFront(i)
}
