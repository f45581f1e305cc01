// SPDX-License-Identifier: Apache-2.0

package workload

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// withDefaults fills the zero values of the bounds.
func (p Plan) withDefaults() Plan {
	if p.ConnectTimeout <= 0 {
		p.ConnectTimeout = Duration(3 * time.Second)
	}
	if p.IOTimeout <= 0 {
		p.IOTimeout = Duration(10 * time.Second)
	}
	if p.Parallel <= 0 {
		p.Parallel = 4
	}
	if p.MaxDuration <= 0 {
		p.MaxDuration = Duration(2 * time.Minute)
	}
	return p
}

// Validate reports a plan that cannot run: negative counts, or namespace
// work without the namespaces it needs.
func (p Plan) Validate() error {
	for name, n := range map[string]int{
		"ipv4": p.IPv4, "ipv6": p.IPv6, "ipv4_mapped": p.IPv4Mapped, "dual_stack_v4": p.DualStackV4,
		"dual_stack_v6": p.DualStackV6, "refused_ipv4": p.RefusedIPv4, "refused_ipv6": p.RefusedIPv6,
		"netns.conns": p.Netns.Conns, "netns.refused": p.Netns.Refused, "netns.timeouts": p.Netns.Timeouts,
	} {
		if n < 0 {
			return fmt.Errorf("plan: %s = %d, must not be negative", name, n)
		}
	}
	ns := p.Netns
	if ns.Conns+ns.Refused+ns.Timeouts > 0 && ns.Client == "" {
		return errors.New("plan: netns connections or attempts need netns.client")
	}
	if ns.Timeouts > 0 && !ns.TimeoutTarget.IsValid() {
		return errors.New("plan: netns.timeouts need netns.timeout_target")
	}
	if p.Servers == nil && ns.Conns+ns.Refused > 0 && (ns.Server == "" || !ns.ServerAddr.IsValid()) {
		return errors.New("plan: without servers, netns connections need netns.server and netns.server_addr")
	}
	return nil
}

// serveConfig is what a serve child must hold for p.
func (p Plan) serveConfig() ServeConfig {
	var cfg ServeConfig
	lo4 := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 0)
	lo6 := netip.AddrPortFrom(netip.IPv6Loopback(), 0)
	if p.IPv4+p.IPv4Mapped > 0 {
		cfg.Listen = append(cfg.Listen, Endpoint{Addr: lo4})
	}
	if p.IPv6 > 0 {
		cfg.Listen = append(cfg.Listen, Endpoint{Addr: lo6})
	}
	if p.DualStackV4+p.DualStackV6 > 0 {
		cfg.Listen = append(cfg.Listen, Endpoint{Addr: netip.AddrPortFrom(netip.IPv6Unspecified(), 0)})
	}
	nsAddr := Endpoint{Addr: netip.AddrPortFrom(p.Netns.ServerAddr, 0), Netns: p.Netns.Server}
	if p.Netns.Conns > 0 {
		cfg.Listen = append(cfg.Listen, nsAddr)
	}
	if p.RefusedIPv4 > 0 {
		cfg.Closed = append(cfg.Closed, Endpoint{Addr: lo4})
	}
	if p.RefusedIPv6 > 0 {
		cfg.Closed = append(cfg.Closed, Endpoint{Addr: lo6})
	}
	if p.Netns.Refused > 0 {
		cfg.Closed = append(cfg.Closed, nsAddr)
	}
	return cfg
}

// pick returns the first endpoint that matches.
func pick(eps []Endpoint, match func(Endpoint) bool) (Endpoint, bool) {
	for _, e := range eps {
		if match(e) {
			return e, true
		}
	}
	return Endpoint{}, false
}

func isLoop4(e Endpoint) bool {
	return e.Netns == "" && e.Addr.Addr() == netip.MustParseAddr("127.0.0.1")
}
func isLoop6(e Endpoint) bool { return e.Netns == "" && e.Addr.Addr() == netip.IPv6Loopback() }
func isAny6(e Endpoint) bool  { return e.Netns == "" && e.Addr.Addr() == netip.IPv6Unspecified() }
func isNetns(e Endpoint) bool { return e.Netns != "" && !e.Addr.Addr().IsUnspecified() }

// job is one connection or attempt to make.
type job struct {
	kind    string
	family  int
	bind    netip.Addr // bound before connect (attempts only)
	remote  netip.AddrPort
	server  Endpoint
	netns   string // client namespace
	index   int    // selects the sizes and the close style
	attempt string // "" for a connection, else the expected failure reason
	local   bool   // the responder side is on this host
}

// Run performs plan and reports what it did. exe is the flowtap-workload
// binary; Run starts it as a serve child when plan.Servers is nil. The
// report is returned even with an error: errors are connections or attempts
// that did not go as planned, and they are left out of the report.
func Run(ctx context.Context, plan Plan, exe string) (*Report, error) {
	plan = plan.withDefaults()
	if err := plan.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(plan.MaxDuration))
	defer cancel()

	info := plan.Servers
	var child *ServeProcess
	if info == nil {
		var err error
		if child, err = StartServe(ctx, exe, plan.serveConfig()); err != nil {
			return nil, err
		}
		defer child.Stop()
		i := child.Info()
		info = &i
	}
	jobs, err := plan.jobs(*info)
	if err != nil {
		return nil, err
	}

	r := &runner{plan: plan, self: Self(), server: info.Process, ctx: ctx}
	r.report.Client, r.report.Server = r.self, info.Process
	r.report.Connections, r.report.Failed = []Connection{}, []Attempt{}
	r.report.Started = time.Now().UnixNano()

	// Timed-out attempts each wait the whole connect timeout: run them all
	// at once, alongside everything else.
	var timeouts, rest []job
	for _, j := range jobs {
		if j.attempt == ReasonTimeout {
			timeouts = append(timeouts, j)
		} else {
			rest = append(rest, j)
		}
	}
	var wg sync.WaitGroup
	for _, j := range timeouts {
		wg.Go(func() {
			if err := InNetns(j.netns, func() error { r.do(j); return nil }); err != nil {
				r.fail(err)
			}
		})
	}
	// Connections and refused attempts: plan.Parallel workers per
	// namespace, each on a thread of its own inside it.
	byNetns := map[string][]job{}
	for _, j := range rest {
		byNetns[j.netns] = append(byNetns[j.netns], j)
	}
	for ns, list := range byNetns {
		queue := make(chan job, len(list))
		for _, j := range list {
			queue <- j
		}
		close(queue)
		for w := 0; w < plan.Parallel; w++ {
			wg.Go(func() {
				err := InNetns(ns, func() error {
					for j := range queue {
						r.do(j)
					}
					return nil
				})
				if err != nil {
					r.fail(err)
				}
			})
		}
	}
	wg.Wait()

	r.report.Finished = time.Now().UnixNano()
	slices.SortFunc(r.report.Connections, func(a, b Connection) int { return cmp.Compare(a.Start, b.Start) })
	slices.SortFunc(r.report.Failed, func(a, b Attempt) int { return cmp.Compare(a.Start, b.Start) })
	if child != nil {
		sum, err := child.Stop()
		if err != nil {
			r.fail(err)
		} else if sum.Errors > 0 || sum.Served != len(r.report.Connections) {
			r.fail(fmt.Errorf("serve child: served %d connections of %d, %d errors (first: %s)",
				sum.Served, len(r.report.Connections), sum.Errors, sum.FirstError))
		}
	}
	return &r.report, errors.Join(r.errs...)
}

// jobs lists what plan asks for against the servers in info.
func (p Plan) jobs(info ServeInfo) ([]job, error) {
	var jobs []job
	var missing []string
	add := func(n int, eps []Endpoint, what string, match func(Endpoint) bool, mk func(e Endpoint) job) {
		if n == 0 {
			return
		}
		e, ok := pick(eps, match)
		if !ok {
			missing = append(missing, what)
			return
		}
		for range n {
			j := mk(e)
			j.server = e
			j.index = len(jobs)
			jobs = append(jobs, j)
		}
	}
	ls, cl := info.Listeners, info.Closed
	mapped := func(e Endpoint) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom16(e.Addr.Addr().As16()), e.Addr.Port())
	}
	lo4 := netip.MustParseAddr("127.0.0.1")
	add(p.IPv4, ls, "a 127.0.0.1 listener", isLoop4, func(e Endpoint) job {
		return job{kind: KindIPv4, family: unix.AF_INET, remote: e.Addr}
	})
	add(p.IPv6, ls, "a ::1 listener", isLoop6, func(e Endpoint) job {
		return job{kind: KindIPv6, family: unix.AF_INET6, remote: e.Addr}
	})
	add(p.IPv4Mapped, ls, "a 127.0.0.1 listener", isLoop4, func(e Endpoint) job {
		return job{kind: KindIPv4Mapped, family: unix.AF_INET6, remote: mapped(e)}
	})
	add(p.DualStackV4, ls, "a [::] listener", isAny6, func(e Endpoint) job {
		return job{kind: KindDualStackV4, family: unix.AF_INET, remote: netip.AddrPortFrom(lo4, e.Addr.Port())}
	})
	add(p.DualStackV6, ls, "a [::] listener", isAny6, func(e Endpoint) job {
		return job{kind: KindDualStackV6, family: unix.AF_INET6, remote: netip.AddrPortFrom(netip.IPv6Loopback(), e.Addr.Port())}
	})
	add(p.Netns.Conns, ls, "a listener in a namespace", isNetns, func(e Endpoint) job {
		return job{kind: KindNetns, family: unix.AF_INET, remote: e.Addr, netns: p.Netns.Client}
	})
	add(p.RefusedIPv4, cl, "a closed 127.0.0.1 port", isLoop4, func(e Endpoint) job {
		return job{kind: KindIPv4, family: unix.AF_INET, bind: lo4, remote: e.Addr, attempt: ReasonRefused, local: true}
	})
	add(p.RefusedIPv6, cl, "a closed ::1 port", isLoop6, func(e Endpoint) job {
		return job{kind: KindIPv6, family: unix.AF_INET6, bind: netip.IPv6Loopback(), remote: e.Addr, attempt: ReasonRefused, local: true}
	})
	add(p.Netns.Refused, cl, "a closed port in a namespace", isNetns, func(e Endpoint) job {
		return job{kind: KindNetns, family: unix.AF_INET, bind: netip.IPv4Unspecified(), remote: e.Addr, netns: p.Netns.Client, attempt: ReasonRefused, local: true}
	})
	for range p.Netns.Timeouts {
		jobs = append(jobs, job{kind: KindNetns, family: unix.AF_INET, bind: netip.IPv4Unspecified(),
			remote: p.Netns.TimeoutTarget, netns: p.Netns.Client, attempt: ReasonTimeout, index: len(jobs)})
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("the servers lack %v (have listeners %v, closed %v)", missing, ls, cl)
	}
	return jobs, nil
}

type runner struct {
	plan   Plan
	self   Process
	server Process
	ctx    context.Context
	mu     sync.Mutex
	report Report
	errs   []error
}

func (r *runner) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
}

// do makes one connection or attempt, on the calling thread (which is in
// the job's namespace), and records it.
func (r *runner) do(j job) {
	if r.ctx.Err() != nil {
		r.fail(fmt.Errorf("%s to %s not made: %w", j.kind, j.remote, context.Cause(r.ctx)))
		return
	}
	start := time.Now()
	c, local, err := dial(dialSpec{family: j.family, bind: j.bind, remote: j.remote, timeout: time.Duration(r.plan.ConnectTimeout)})
	if j.attempt != "" {
		r.attempt(j, start, c, local, err)
		return
	}
	if err != nil {
		r.fail(fmt.Errorf("%s connect to %s: %w", j.kind, j.remote, err))
		return
	}
	req, resp := SizesFor(j.index)
	style := CloseShutdown
	if j.index%2 == 1 {
		style = CloseFull
	}
	sent, recv, err := exchange(c, req, resp, style, start.Add(time.Duration(r.plan.IOTimeout)))
	if err != nil {
		r.fail(fmt.Errorf("%s connection %s → %s: %w", j.kind, local, j.remote, err))
		return
	}
	conn := Connection{
		Kind:   j.kind,
		Client: local, Server: wire(j.remote),
		ClientNetns: j.netns, ServerNetns: j.server.Netns,
		ClientFamily:        familyName(j.family),
		BytesClientToServer: sent, BytesServerToClient: recv,
		ClientPID: r.self.PID, ClientComm: r.self.Comm,
		ServerPID: r.server.PID, ServerComm: r.server.Comm,
		ClientClose: style,
		Start:       start.UnixNano(), End: time.Now().UnixNano(),
	}
	r.mu.Lock()
	r.report.Connections = append(r.report.Connections, conn)
	r.mu.Unlock()
}

// attempt records a connect that was meant to fail, if it failed the way
// it was meant to.
func (r *runner) attempt(j job, start time.Time, c *net.TCPConn, local netip.AddrPort, err error) {
	var want error = unix.ECONNREFUSED
	if j.attempt == ReasonTimeout {
		want = errConnectTimeout
	}
	if c != nil {
		c.Close()
	}
	if !errors.Is(err, want) {
		r.fail(fmt.Errorf("%s attempt %s → %s: want %v, got %v", j.kind, local, j.remote, want, err))
		return
	}
	a := Attempt{
		Kind: j.kind, Protocol: "tcp",
		Client: local, Server: wire(j.remote),
		ClientNetns: j.netns, ServerNetns: j.server.Netns,
		Reason:    j.attempt,
		ClientPID: r.self.PID, ClientComm: r.self.Comm,
		ResponderLocal: j.local,
		Error:          err.Error(),
		Start:          start.UnixNano(), End: time.Now().UnixNano(),
	}
	r.mu.Lock()
	r.report.Failed = append(r.report.Failed, a)
	r.mu.Unlock()
}

// exchange runs the client side of the protocol and closes c. It returns
// the payload bytes sent and received.
func exchange(c *net.TCPConn, req, resp uint64, style string, deadline time.Time) (sent, recv uint64, err error) {
	defer c.Close()
	c.SetDeadline(deadline)
	var hdr [HeaderSize]byte
	binary.BigEndian.PutUint64(hdr[:8], req)
	binary.BigEndian.PutUint64(hdr[8:], resp)
	n, err := c.Write(hdr[:])
	sent += uint64(n)
	if err != nil {
		return sent, recv, fmt.Errorf("write header: %w", err)
	}
	m, err := io.CopyN(c, zeros{}, int64(req))
	sent += uint64(m)
	if err != nil {
		return sent, recv, fmt.Errorf("write request: %w", err)
	}
	m, err = io.CopyN(io.Discard, c, int64(resp))
	recv += uint64(m)
	if err != nil {
		return sent, recv, fmt.Errorf("read response: %w", err)
	}
	if style == CloseShutdown {
		if err := c.CloseWrite(); err != nil {
			return sent, recv, fmt.Errorf("shutdown: %w", err)
		}
		m, err = io.Copy(io.Discard, c)
		recv += uint64(m)
		if err != nil {
			return sent, recv, fmt.Errorf("wait for the server's close: %w", err)
		}
		if m != 0 {
			return sent, recv, fmt.Errorf("%d bytes after the response", m)
		}
	}
	return sent, recv, nil
}

// RunTo is the run mode: it performs plan and writes the report to out as
// one JSON document, also when some connections went wrong (the error says
// which).
func RunTo(ctx context.Context, plan Plan, exe string, out io.Writer) error {
	rep, err := Run(ctx, plan, exe)
	if rep != nil {
		if werr := WriteJSONLine(out, rep); werr != nil {
			return errors.Join(err, werr)
		}
	}
	return err
}
