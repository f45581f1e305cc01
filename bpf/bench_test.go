// SPDX-License-Identifier: Apache-2.0

package bpf_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/flowtap/flowtap/bpf"
	"github.com/flowtap/flowtap/bpf/limits"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/privtest"
)

// rateHelper is the child side of BenchmarkConnectionRate: it opens
// connections at FLOWTAP_RATE per second for FLOWTAP_SECONDS seconds to 16
// listeners of its own on 127.0.0.1 ... 127.0.0.16, then prints
// "done <connections> <seconds> <failed>". It uses blocking socket calls
// directly (no Go netpoller), the cheapest way to make many connections:
// the server closes each accepted socket at once, the client closes right
// after connect.
func rateHelper(out *bufio.Writer) {
	rate, _ := strconv.Atoi(os.Getenv("FLOWTAP_RATE"))
	secs, _ := strconv.ParseFloat(os.Getenv("FLOWTAP_SECONDS"), 64)
	if rate <= 0 || secs <= 0 {
		fmt.Fprintln(out, "error FLOWTAP_RATE and FLOWTAP_SECONDS must be positive")
		return
	}
	var addrs []unix.SockaddrInet4
	for i := 1; i <= 16; i++ {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			fmt.Fprintf(out, "error %v\n", err)
			return
		}
		defer unix.Close(fd)
		sa := unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, byte(i)}}
		if err := unix.Bind(fd, &sa); err != nil {
			fmt.Fprintf(out, "error bind: %v\n", err)
			return
		}
		if err := unix.Listen(fd, 4096); err != nil {
			fmt.Fprintf(out, "error listen: %v\n", err)
			return
		}
		got, err := unix.Getsockname(fd)
		if err != nil {
			fmt.Fprintf(out, "error %v\n", err)
			return
		}
		sa.Port = got.(*unix.SockaddrInet4).Port
		addrs = append(addrs, sa)
		go func() {
			for {
				nfd, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
				if err != nil {
					if err == unix.EINTR || err == unix.ECONNABORTED {
						continue
					}
					return
				}
				unix.Close(nfd)
			}
		}()
	}
	const workers = 16
	total := int(float64(rate) * secs)
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := next.Add(1) - 1
				if k >= int64(total) {
					return
				}
				if d := time.Until(start.Add(time.Duration(k) * interval)); d > 0 {
					time.Sleep(d)
				}
				fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					failed.Add(1)
					continue
				}
				sa := addrs[k%int64(len(addrs))]
				if err := unix.Connect(fd, &sa); err != nil {
					failed.Add(1)
				}
				unix.Close(fd)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	fmt.Fprintf(out, "done %d %.3f %d\n", total-int(failed.Load()), elapsed, failed.Load())
}

// BenchmarkConnectionRate measures whether the ring buffer holds up when a
// helper process (in a cgroup of its own, which the capture watches) opens
// 20,000 loopback connections per second for 10 seconds while Run consumes
// the records (decoding them, nothing more): it
// reports the connection rate reached, records per second, records lost
// and the peak ring buffer fill. FLOWTAP_RING_BYTES sets the ring size
// (default: limits.DefaultRingBufferSize); FLOWTAP_RATE and FLOWTAP_SECONDS the
// load. One iteration is one whole run, so use -benchtime=1x.
func BenchmarkConnectionRate(b *testing.B) {
	privtest.Require(b)
	ring := limits.DefaultRingBufferSize
	if v := os.Getenv("FLOWTAP_RING_BYTES"); v != "" {
		ring, _ = strconv.Atoi(v)
	}
	rate, secs := "20000", "10"
	if v := os.Getenv("FLOWTAP_RATE"); v != "" {
		rate = v
	}
	if v := os.Getenv("FLOWTAP_SECONDS"); v != "" {
		secs = v
	}
	// The generator runs in a cgroup of its own and the capture watches
	// that cgroup: the figures are the generator's, not the host's.
	cg := newTestCgroup(b)
	for b.Loop() {
		c, err := bpf.Open(bpf.Options{RingBufferSize: ring, CgroupPath: cg.path})
		if err != nil {
			b.Fatalf("Open: %v", err)
		}
		var records, markers, closed atomic.Uint64
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- c.Run(ctx, func(ev events.Event) {
				if ev.ID == events.IDRecordsLost {
					markers.Add(ev.Payload.(*events.RecordsLost).Lost)
					return
				}
				records.Add(1)
				if s, ok := ev.Payload.(*events.TCPSocketBase); ok && s.Report == events.SocketClosed {
					closed.Add(1)
				}
			})
		}()
		// Sample the ring's fill level.
		var peak atomic.Int64
		stopSampling := make(chan struct{})
		var sampler sync.WaitGroup
		sampler.Add(1)
		go func() {
			defer sampler.Done()
			t := time.NewTicker(time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stopSampling:
					return
				case <-t.C:
					if n := int64(c.RingAvailable()); n > peak.Load() {
						peak.Store(n)
					}
				}
			}
		}()

		overflows0 := tcpExtCounter(b, "ListenOverflows")
		var ru0 unix.Rusage
		unix.Getrusage(unix.RUSAGE_SELF, &ru0)
		h := startHelper(b, "rate", helperOpts{cgroupFD: cg.fd, env: []string{"FLOWTAP_RATE=" + rate, "FLOWTAP_SECONDS=" + secs}})
		start := time.Now()
		var conns, failed int
		var elapsed float64
		line := h.expectWithin(b, "done ", 10*time.Minute)
		if _, err := fmt.Sscanf(line, "%d %f %d", &conns, &elapsed, &failed); err != nil {
			b.Fatalf("helper said %q", line)
		}
		h.stop(b)
		// Sockets finish closing on their own after the helper exited (a
		// FIN or last ACK may need a retransmission on a busy host): wait
		// until every socket reported or nothing came for 3 seconds
		// (bounded), then let Run drain the ring and stop it.
		want := uint64(2*conns + failed)
		last, quiet := closed.Load(), time.Now()
		for deadline := time.Now().Add(30 * time.Second); closed.Load() < want && time.Since(quiet) < 3*time.Second && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
			if n := closed.Load(); n != last {
				last, quiet = n, time.Now()
			}
		}
		for deadline := time.Now().Add(5 * time.Second); c.RingAvailable() > 0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		wall := time.Since(start).Seconds()
		cancel()
		if err := <-done; err != nil {
			b.Fatalf("Run: %v", err)
		}
		var ru1 unix.Rusage
		unix.Getrusage(unix.RUSAGE_SELF, &ru1)
		cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
		close(stopSampling)
		sampler.Wait()
		st := c.Stats()
		overflows := tcpExtCounter(b, "ListenOverflows") - overflows0
		skips, _ := c.StateSkips()
		c.Close()
		b.ReportMetric(float64(conns)/elapsed, "conns/s")
		b.ReportMetric(float64(records.Load())/wall, "records/s")
		b.ReportMetric(float64(st.Lost), "lost")
		b.ReportMetric(float64(peak.Load()), "peak-ring-bytes")
		perRecord := cpu / time.Duration(max(records.Load(), 1))
		b.ReportMetric(float64(perRecord.Nanoseconds()), "consumer-ns/record")
		// Every connection's two sockets close once each (a failed
		// connect's one socket once), except that a connection the
		// server dropped for a full accept queue (host-wide
		// ListenOverflows) may have no server socket.
		b.ReportMetric(float64(2*conns+failed-int(closed.Load())), "missing-closed")
		b.Logf("ring %d bytes: %d connections in %.2fs (%.0f/s, %d failed), %d records (%.1f per connection, %.0f/s), %d closed records (want %d; %d accept queue overflows on the host), lost %d (markers %d), state program copies skipped %v times, peak fill %d bytes (%.1f%%); consumer CPU %v (%v per record)",
			ring, conns, elapsed, float64(conns)/elapsed, failed, records.Load(), float64(records.Load())/float64(max(conns, 1)), float64(records.Load())/wall,
			closed.Load(), 2*conns+failed, overflows, st.Lost, markers.Load(), skips, peak.Load(), 100*float64(peak.Load())/float64(ring), cpu, perRecord)
	}
}

// bulkHelper is the child side of BenchmarkLoopbackThroughput: it streams
// 128 KiB writes over one loopback connection to itself for
// FLOWTAP_SECONDS seconds and prints "done <bytes> <seconds>".
func bulkHelper(out *bufio.Writer) {
	secs, _ := strconv.ParseFloat(os.Getenv("FLOWTAP_SECONDS"), 64)
	ln, err := listenTCP("tcp4", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(out, "error %v\n", err)
		return
	}
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		n, _ := io.Copy(io.Discard, c)
		c.Close()
		got <- n
	}()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		fmt.Fprintf(out, "error %v\n", err)
		return
	}
	buf := make([]byte, 128<<10)
	start := time.Now()
	end := start.Add(time.Duration(secs * float64(time.Second)))
	for time.Now().Before(end) {
		if _, err := c.Write(buf); err != nil {
			fmt.Fprintf(out, "error %v\n", err)
			return
		}
	}
	c.Close()
	n := <-got
	fmt.Fprintf(out, "done %d %.3f\n", n, time.Since(start).Seconds())
}

// BenchmarkLoopbackThroughput streams data over one loopback connection,
// like iperf3, in a helper process in a cgroup of its own, alternately
// without and with a capture attached to that cgroup, and reports the
// throughput of both and the average run time of the cgroup_skb programs
// per packet (kernel BPF statistics, enabled for the duration).
// FLOWTAP_SECONDS sets the length of each run (default 3), FLOWTAP_ROUNDS
// the number of alternations (default 3).
func BenchmarkLoopbackThroughput(b *testing.B) {
	privtest.Require(b)
	secs, rounds := "3", 3
	if v := os.Getenv("FLOWTAP_SECONDS"); v != "" {
		secs = v
	}
	if v := os.Getenv("FLOWTAP_ROUNDS"); v != "" {
		rounds, _ = strconv.Atoi(v)
	}
	cg := newTestCgroup(b)
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatalf("enable BPF statistics: %v", err)
	}
	defer stats.Close()
	run := func() float64 {
		h := startHelper(b, "bulk", helperOpts{cgroupFD: cg.fd, env: []string{"FLOWTAP_SECONDS=" + secs}})
		var n int64
		var s float64
		line := h.expectWithin(b, "done ", time.Minute)
		if _, err := fmt.Sscanf(line, "%d %f", &n, &s); err != nil {
			b.Fatalf("helper said %q", line)
		}
		h.stop(b)
		return float64(n) / s
	}
	for b.Loop() {
		var without, with []float64
		var runs, ns uint64
		for range rounds {
			without = append(without, run())
			// FLOWTAP_DNS=1: with DNS capture (its per-packet cost);
			// FLOWTAP_PACKET_FLOWS=1: with the flow packet programs.
			c, err := bpf.Open(bpf.Options{CgroupPath: cg.path, DNS: os.Getenv("FLOWTAP_DNS") == "1", PacketFlows: os.Getenv("FLOWTAP_PACKET_FLOWS") == "1"})
			if err != nil {
				b.Fatalf("Open: %v", err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx, func(events.Event) {}) }()
			progs := c.PacketPrograms()
			with = append(with, run())
			st := progStats(b, progs)
			runs += st[0]
			ns += st[1]
			cancel()
			<-done
			c.Close()
		}
		mean := func(v []float64) float64 {
			var s float64
			for _, x := range v {
				s += x
			}
			return s / float64(len(v))
		}
		b.ReportMetric(mean(without)/1e6, "MB/s-without")
		b.ReportMetric(mean(with)/1e6, "MB/s-with")
		b.ReportMetric(100*(1-mean(with)/mean(without)), "%-loss")
		if runs > 0 {
			b.ReportMetric(float64(ns)/float64(runs), "prog-ns/packet")
		}
		b.Logf("throughput without %v, with %v (MB/s); %d program runs, %.0f ns each", scaled(without), scaled(with), runs, float64(ns)/float64(max(runs, 1)))
	}
}

func scaled(v []float64) []int {
	var out []int
	for _, x := range v {
		out = append(out, int(x/1e6))
	}
	return out
}

// progStats sums run count and run time (ns) of progs.
func progStats(b *testing.B, progs []*ebpf.Program) [2]uint64 {
	var s [2]uint64
	for _, p := range progs {
		st, err := p.Stats()
		if err != nil {
			b.Fatal(err)
		}
		s[0] += st.RunCount
		s[1] += uint64(st.Runtime.Nanoseconds())
	}
	return s
}

// tcpExtCounter reads a TcpExt counter from /proc/net/netstat.
func tcpExtCounter(b *testing.B, name string) int {
	data, err := os.ReadFile("/proc/net/netstat")
	if err != nil {
		b.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	for i := 0; i+1 < len(lines); i++ {
		if !strings.HasPrefix(lines[i], "TcpExt:") {
			continue
		}
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		for j := range names {
			if names[j] == name && j < len(values) {
				v, _ := strconv.Atoi(values[j])
				return v
			}
		}
	}
	return 0
}

// BenchmarkOpenExistingSockets measures Open (load, attach, and the walks
// that give existing sockets their owners) and Close, with no and with
// 10,000 TCP sockets open in this process (5,000 loopback connections,
// both ends): the difference is what the existing-owners walks cost at
// start-up.
func BenchmarkOpenExistingSockets(b *testing.B) {
	privtest.Require(b)
	for _, conns := range []int{0, 5000} {
		b.Run(fmt.Sprintf("sockets=%d", 2*conns), func(b *testing.B) {
			closeAll := openConnections(b, conns)
			defer closeAll()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c, err := bpf.Open(scoped(bpf.Options{}))
				if err != nil {
					b.Fatal(err)
				}
				if err := c.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// openConnections makes n loopback connections that stay open (2n
// sockets, raising RLIMIT_NOFILE as needed) and returns how to close them.
func openConnections(b *testing.B, n int) func() {
	b.Helper()
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	old := lim
	if want := uint64(2*n + 1024); lim.Cur < want {
		lim.Cur = want
		if lim.Max < want {
			lim.Max = want
		}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			b.Fatalf("raise RLIMIT_NOFILE to %d: %v", want, err)
		}
	}
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	var conns []net.Conn
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
		ln.Close()
		unix.Setrlimit(unix.RLIMIT_NOFILE, &old)
	}
	for i := 0; i < n; i++ {
		c, err := net.DialTCP("tcp4", nil, ln.Addr().(*net.TCPAddr))
		if err != nil {
			closeAll()
			b.Fatalf("connection %d: %v", i, err)
		}
		s, err := ln.AcceptTCP()
		if err != nil {
			c.Close()
			closeAll()
			b.Fatalf("accept %d: %v", i, err)
		}
		conns = append(conns, c, s)
	}
	return closeAll
}
