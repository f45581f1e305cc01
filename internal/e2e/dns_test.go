// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/flowtap/flowtap/bpf"
	"github.com/flowtap/flowtap/internal/e2e/harness"
	"github.com/flowtap/flowtap/internal/privtest"
)

// The DNS test's addresses: 127/8 loopback addresses nothing else on the
// host uses. The server answers on port 53 of dnsServerAddr; the names
// resolve to dnsTargetAddr (and ::1), where the test listens.
const (
	dnsServerAddr = "127.53.0.53"
	dnsTargetAddr = "127.53.1.10"
	dnsTCPTarget  = "127.53.1.11"
	// dnsTTL is the TTL of every answer, in seconds: long enough for the
	// lookups and connections that must see the names on a loaded host
	// (the other workload is a re-executed test binary), short enough to
	// wait for.
	dnsTTL = 5
)

// dnsZone is what the test server answers: for each name and type the
// answer records, deliberately not in chain order.
func dnsZone(name string, qtype dnsmessage.Type) ([]dnsmessage.Resource, bool) {
	hdr := func(n string, t dnsmessage.Type) dnsmessage.ResourceHeader {
		return dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(n), Type: t, Class: dnsmessage.ClassINET, TTL: dnsTTL}
	}
	cname := func(from, to string) dnsmessage.Resource {
		return dnsmessage.Resource{Header: hdr(from, dnsmessage.TypeCNAME), Body: &dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName(to)}}
	}
	a := func(n, addr string) dnsmessage.Resource {
		return dnsmessage.Resource{Header: hdr(n, dnsmessage.TypeA), Body: &dnsmessage.AResource{A: netip.MustParseAddr(addr).As4()}}
	}
	switch {
	case name == "svc.flowtap-test." && qtype == dnsmessage.TypeA:
		// svc -> alias -> edge -> dnsTargetAddr, the address first and the
		// chain reversed.
		return []dnsmessage.Resource{a("edge.flowtap-test.", dnsTargetAddr), cname("alias.flowtap-test.", "edge.flowtap-test."), cname("svc.flowtap-test.", "alias.flowtap-test.")}, true
	case name == "svc.flowtap-test." && qtype == dnsmessage.TypeAAAA:
		return []dnsmessage.Resource{cname("alias.flowtap-test.", "edge.flowtap-test."),
			{Header: hdr("edge.flowtap-test.", dnsmessage.TypeAAAA), Body: &dnsmessage.AAAAResource{AAAA: netip.IPv6Loopback().As16()}},
			cname("svc.flowtap-test.", "alias.flowtap-test.")}, true
	case name == "other.flowtap-test." && qtype == dnsmessage.TypeA:
		return []dnsmessage.Resource{a("other.flowtap-test.", dnsTargetAddr)}, true
	case name == "tcp.flowtap-test." && qtype == dnsmessage.TypeA:
		return []dnsmessage.Resource{a("tcp.flowtap-test.", dnsTCPTarget)}, true
	case strings.HasSuffix(name, ".flowtap-test."):
		return nil, true // the name exists, not with this type
	}
	return nil, false
}

// dnsAnswer builds the response to a query.
func dnsAnswer(query []byte) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	answers, ok := dnsZone(strings.ToLower(q.Name.String()), q.Type)
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	if !ok {
		rh.RCode = dnsmessage.RCodeNameError
	}
	m := dnsmessage.Message{Header: rh, Questions: []dnsmessage.Question{q}, Answers: answers}
	return m.Pack()
}

// dnsServer serves UDP and TCP port 53 on dnsServerAddr until the test
// ends. It counts the queries it answered.
type dnsServer struct {
	mu      sync.Mutex
	queries int
}

func startDNSServer(t *testing.T) *dnsServer {
	t.Helper()
	s := &dnsServer{}
	udp, err := net.ListenPacket("udp4", dnsServerAddr+":53")
	if err != nil {
		t.Fatalf("DNS test server: %v (hint: is something else serving %s:53?)", err, dnsServerAddr)
	}
	tcp, err := net.Listen("tcp4", dnsServerAddr+":53")
	if err != nil {
		udp.Close()
		t.Fatalf("DNS test server: %v", err)
	}
	t.Cleanup(func() { udp.Close(); tcp.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := udp.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp, err := dnsAnswer(buf[:n]); err == nil {
				udp.WriteTo(resp, from)
				s.count()
			}
		}
	}()
	go func() {
		for {
			c, err := tcp.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				for range 4 { // a resolver sends at most A and AAAA per connection
					var l [2]byte
					if _, err := readFull(c, l[:]); err != nil {
						return
					}
					q := make([]byte, int(l[0])<<8|int(l[1]))
					if _, err := readFull(c, q); err != nil {
						return
					}
					resp, err := dnsAnswer(q)
					if err != nil {
						return
					}
					c.Write(append([]byte{byte(len(resp) >> 8), byte(len(resp))}, resp...))
					s.count()
				}
			}()
		}
	}()
	return s
}

func (s *dnsServer) count() {
	s.mu.Lock()
	s.queries++
	s.mu.Unlock()
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// resolver resolves through the test server only, over network ("udp" or
// "tcp").
func resolver(network string) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, dnsServerAddr+":53")
	}}
}

// resolve looks name up and checks the addresses.
func resolve(t *testing.T, network, name string, want ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addrs, err := resolver(network).LookupHost(ctx, name)
	if err != nil {
		t.Fatalf("resolve %s over %s: %v", name, network, err)
	}
	if !sameSet(addrs, want) {
		t.Fatalf("resolve %s: %v, want %v", name, addrs, want)
	}
}

func sameSet(a, b []string) bool {
	m := map[string]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}

// connectOnce connects to addr, exchanges a few bytes and closes; it
// returns the client's port.
func connectOnce(t *testing.T, addr string) uint16 {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := readFull(c, make([]byte, 5)); err != nil {
		t.Fatalf("read answer from %s: %v", addr, err)
	}
	return uint16(c.LocalAddr().(*net.TCPAddr).Port)
}

// otherWorkloadEnv makes the test binary act as another workload's
// resolver (TestDNSOtherWorkloadHelper).
const otherWorkloadEnv = "FLOWTAP_E2E_DNS_OTHER"

// TestDNSOtherWorkloadHelper is not a test: run by TestDNSNamesEndToEnd in
// a cgroup of its own, it resolves other.flowtap-test and exits.
func TestDNSOtherWorkloadHelper(t *testing.T) {
	name := os.Getenv(otherWorkloadEnv)
	if name == "" {
		t.Skip("helper process for TestDNSNamesEndToEnd")
	}
	resolve(t, "udp", name, dnsTargetAddr)
}

// resolveInOtherCgroup runs the helper in a new cgroup (created under the
// cgroup v2 root, removed afterwards) so its answers belong to another
// workload.
func resolveInOtherCgroup(t *testing.T, name string) {
	t.Helper()
	root, err := bpf.FindCgroup2Mount()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, fmt.Sprintf("flowtap-e2e-dns-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	defer func() {
		// The exited helper may keep the cgroup busy for a moment.
		for i := 0; i < 50; i++ {
			if err := os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("remove cgroup %s: still busy", dir)
	}()
	fd, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestDNSOtherWorkloadHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), otherWorkloadEnv+"="+name)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd()), Pdeathsig: syscall.SIGKILL}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("other workload's lookup: %v\n%s", err, out)
	}
}

// TestDNSNamesEndToEnd runs flowtap with its defaults for DNS (on, since
// the flow events have DNS fields) and a DNS server of the test's own on
// loopback: names on begin and end in order (queried name, then the CNAME
// chain), no name once the TTL has passed, another workload's answer after
// the connecting workload's own, DNS over TCP, and net_packet_dns.
func TestDNSNamesEndToEnd(t *testing.T) {
	privtest.Require(t)
	bin := harness.Binaries(t)
	a := harness.Start(t, bin, "--events", "flows,net_packet_dns", "--output", "json")
	startDNSServer(t)

	ln4, err := net.Listen("tcp4", dnsTargetAddr+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln4.Close()
	ln6, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln6.Close()
	lnTCP, err := net.Listen("tcp4", dnsTCPTarget+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer lnTCP.Close()
	for _, ln := range []net.Listener{ln4, ln6, lnTCP} {
		go serve(ln)
	}
	port4 := uint16(ln4.Addr().(*net.TCPAddr).Port)
	port6 := uint16(ln6.Addr().(*net.TCPAddr).Port)

	chain := []string{"svc.flowtap-test", "alias.flowtap-test", "edge.flowtap-test"}
	type check struct {
		what   string
		dst    string
		sport  uint16
		dport  uint16
		dstDNS []string
	}
	var checks []check

	// 1. Resolve (A and AAAA, CNAME chain out of order) and connect.
	start := time.Now()
	resolve(t, "udp", "svc.flowtap-test.", dnsTargetAddr, "::1")
	checks = append(checks,
		check{"own answer, IPv4", dnsTargetAddr, connectOnce(t, ln4.Addr().String()), port4, chain},
		check{"own answer, IPv6", "::1", connectOnce(t, ln6.Addr().String()), port6, chain})

	// 2. Another workload (another cgroup) resolves another name to the
	// same address: it comes after the connecting workload's own names.
	resolveInOtherCgroup(t, "other.flowtap-test.")
	otherDone := time.Now()
	checks = append(checks, check{"another workload's answer after the own", dnsTargetAddr, connectOnce(t, ln4.Addr().String()), port4, append(chain[:3:3], "other.flowtap-test")})
	if time.Since(start) > (dnsTTL-1)*time.Second {
		t.Fatalf("the lookups and connections took %v: too slow to check names before the %ds TTL ends", time.Since(start), dnsTTL)
	}

	// 3. DNS over TCP.
	resolve(t, "tcp", "tcp.flowtap-test.", dnsTCPTarget)
	checks = append(checks, check{"answer over TCP", dnsTCPTarget, connectOnce(t, lnTCP.Addr().String()), uint16(lnTCP.Addr().(*net.TCPAddr).Port), []string{"tcp.flowtap-test"}})

	// 4. Every answer's TTL over: a new connection without a new lookup
	// has no name.
	time.Sleep(time.Until(otherDone.Add(dnsTTL*time.Second + 700*time.Millisecond)))
	checks = append(checks, check{"after the TTL", dnsTargetAddr, connectOnce(t, ln4.Addr().String()), port4, []string{}})

	find := func(evs []harness.Event, event, dir string, c check) (harness.Event, bool) {
		for _, ev := range evs {
			f := ev.Fields
			if ev.Event == event && f.ConnDirection == dir && f.SrcPort == c.sport && f.DstPort == c.dport && f.Dst == c.dst {
				return ev, true
			}
		}
		return harness.Event{}, false
	}
	complete := func(evs []harness.Event) bool {
		for _, c := range checks {
			for _, e := range []string{"net_flow_tcp_begin", "net_flow_tcp_end"} {
				if _, ok := find(evs, e, "outgoing", c); !ok {
					return false
				}
			}
		}
		return true
	}
	deadline := time.Now().Add(30 * time.Second)
	for !complete(a.Events()) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	a.Stop(t)
	evs := a.Events()
	for _, c := range checks {
		for _, e := range []string{"net_flow_tcp_begin", "net_flow_tcp_end"} {
			ev, ok := find(evs, e, "outgoing", c)
			if !ok {
				t.Errorf("%s: no %s outgoing for port %d -> %s:%d", c.what, e, c.sport, c.dst, c.dport)
				continue
			}
			if !reflect.DeepEqual(ev.Fields.DstDNS, c.dstDNS) {
				t.Errorf("%s: %s dst_dns = %q, want %q", c.what, e, ev.Fields.DstDNS, c.dstDNS)
			}
		}
	}
	// net_packet_dns: the query and the answer of the AAAA lookup, seen
	// by the client and by the server (both local).
	var answers int
	for _, ev := range evs {
		f := ev.Fields
		if ev.Event != "net_packet_dns" || f.QueryName != "svc.flowtap-test" || f.QueryType != "AAAA" {
			continue
		}
		if f.Response {
			answers++
			want := []string{
				fmt.Sprintf("alias.flowtap-test CNAME %d edge.flowtap-test", dnsTTL),
				fmt.Sprintf("edge.flowtap-test AAAA %d ::1", dnsTTL),
				fmt.Sprintf("svc.flowtap-test CNAME %d alias.flowtap-test", dnsTTL),
			}
			if f.RCode != "NOERROR" || !reflect.DeepEqual(f.Answers, want) {
				t.Errorf("net_packet_dns answer: rcode %s answers %q, want NOERROR %q", f.RCode, f.Answers, want)
			}
		}
	}
	if answers < 2 {
		t.Errorf("net_packet_dns: %d AAAA answers for svc.flowtap-test, want at least 2 (server egress, client ingress)", answers)
	}
	if t.Failed() {
		t.Logf("flowtap log:\n%s", a.Log())
	}
}

// TestDNSOffEndToEnd: with --dns=false flowtap loads no DNS code and the
// flow events carry no names, even right after a lookup.
func TestDNSOffEndToEnd(t *testing.T) {
	privtest.Require(t)
	bin := harness.Binaries(t)
	a := harness.Start(t, bin, "--events", "flows", "--output", "json", "--dns=false")
	startDNSServer(t)
	ln4, err := net.Listen("tcp4", dnsTargetAddr+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln4.Close()
	go serve(ln4)
	resolve(t, "udp", "svc.flowtap-test.", dnsTargetAddr, "::1")
	sport := connectOnce(t, ln4.Addr().String())
	var got *harness.Event
	deadline := time.Now().Add(30 * time.Second)
	for got == nil && time.Now().Before(deadline) {
		for _, ev := range a.Events() {
			if ev.Event == "net_flow_tcp_begin" && ev.Fields.ConnDirection == "outgoing" && ev.Fields.SrcPort == sport {
				got = &ev
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	a.Stop(t)
	if got == nil {
		t.Fatalf("no begin for port %d", sport)
	}
	if len(got.Fields.DstDNS) != 0 {
		t.Errorf("--dns=false: dst_dns = %q, want none", got.Fields.DstDNS)
	}
	if !strings.Contains(a.Log(), "dns=false") {
		t.Errorf("log does not say DNS capture is off:\n%s", a.Log())
	}
}
