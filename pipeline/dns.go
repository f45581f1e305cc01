// SPDX-License-Identifier: Apache-2.0

package pipeline

import (
	"errors"
	"fmt"

	"github.com/hashicorp/go-hclog"

	"github.com/flowtap/flowtap/configs"
	"github.com/flowtap/flowtap/derive/dnscache"
	"github.com/flowtap/flowtap/events"
)

// dnsEnabled decides whether DNS capture runs: when a selected event
// needs it (a flow event's src_dns/dst_dns, or net_packet_dns), unless the
// config turns it off. Selecting net_packet_dns (or its base event) with
// DNS turned off is an error: it could never be emitted.
func dnsEnabled(plan *events.Plan, cfg configs.DNS) (bool, error) {
	if !plan.Needs(events.ProducerKernelDNS) {
		return false, nil
	}
	if cfg.Enabled == nil || *cfg.Enabled {
		return true, nil
	}
	if plan.Emits(events.IDNetPacketDNS) || plan.Emits(events.IDNetPacketDNSBase) {
		return false, errors.New("net_packet_dns is selected but DNS capture is turned off (capture.dns.enabled: false or --dns=false): turn it on or leave the event out")
	}
	return false, nil
}

// DNSStats are the DNS stage's counters.
type DNSStats struct {
	Messages  uint64 // DNS records from the kernel
	Malformed uint64 // messages that did not parse
	// Truncated counts messages that could not be parsed whole: cut by the
	// kernel's capture bound, or a DNS-over-TCP message split over
	// segments (not reassembled).
	Truncated uint64
	// PartialUsed counts truncated answers whose whole records (those
	// before the cut) still went into the cache.
	PartialUsed uint64
	Cache       dnscache.Stats
}

// dnsStage parses the kernel's DNS records, feeds the cache and derives
// net_packet_dns. It runs in the derivation, under its lock.
type dnsStage struct {
	cache *dnscache.Cache
	// wanted says whether a pipeline selects net_packet_dns now; emit
	// delivers one. Either nil: never emitted.
	wanted func() bool
	emit   func(events.Event)
	msg    dnscache.Message
	stats  DNSStats
}

func newDNSStage(size int, wanted func() bool, emit func(events.Event)) *dnsStage {
	return &dnsStage{cache: dnscache.New(size), wanted: wanted, emit: emit}
}

// emits reports whether any pipeline's selection delivers event id.
func (r *router) emits(id events.ID) bool {
	for i := range r.routes {
		if r.routes[i].plan.Emits(id) {
			return true
		}
	}
	return false
}

// checkDNS rejects a reloaded config whose plan selects DNS events while
// this run has no DNS capture (it starts only with flowtap), and warns when
// only the names of flow events would need it.
func (rl *reloader) checkDNS(plan *events.Plan, cfg *configs.Config) error {
	if rl.dns || !plan.Needs(events.ProducerKernelDNS) {
		return nil
	}
	if plan.Emits(events.IDNetPacketDNS) || plan.Emits(events.IDNetPacketDNSBase) {
		return errors.New("the new config selects DNS events, but this run has no DNS capture: restart flowtap (with capture.dns.enabled not false)")
	}
	if cfg.Capture.DNS.Enabled == nil || *cfg.Capture.DNS.Enabled {
		rl.log.Warn("config reload: this run has no DNS capture: src_dns and dst_dns stay empty until flowtap restarts")
	}
	return nil
}

// handle takes one net_packet_dns_base event. Responses a local socket
// received (ingress) fill the cache, attributed to the receiving
// socket's cgroup; a local resolver's answers to a local client pass
// ingress at the client too.
func (d *dnsStage) handle(ev events.Event) {
	p, ok := ev.Payload.(*events.PacketDNSBase)
	if !ok {
		return
	}
	d.stats.Messages++
	var err error
	if p.Proto == events.DNSOverTCP {
		err = dnscache.ParseTCP(p.Payload, &d.msg)
	} else {
		err = dnscache.Parse(p.Payload, &d.msg)
	}
	if err != nil {
		if !p.Truncated && !errors.Is(err, dnscache.ErrTCPSplit) {
			d.stats.Malformed++
			return
		}
		// Cut short (kernel capture bound, or a TCP message longer than
		// its segment): the records decoded before the cut are whole and
		// true, so they still go into the cache; no net_packet_dns.
		d.stats.Truncated++
		if p.Direction == events.Ingress && d.msg.Response && len(d.msg.Answers) > 0 {
			d.stats.PartialUsed++
			d.cache.Insert(ev.Context.CgroupID, &d.msg, ev.Timestamp)
		}
		return
	}
	if p.Direction == events.Ingress && d.msg.Response {
		d.cache.Insert(ev.Context.CgroupID, &d.msg, ev.Timestamp)
	}
	if d.emit != nil && d.wanted != nil && d.wanted() {
		d.emit(events.Event{ID: events.IDNetPacketDNS, Timestamp: ev.Timestamp, Context: ev.Context, Payload: d.packet(p)})
	}
}

// packet builds the net_packet_dns payload of the parsed message.
func (d *dnsStage) packet(p *events.PacketDNSBase) *events.PacketDNS {
	m := &d.msg
	out := &events.PacketDNS{
		DNSPacket: p.DNSPacket,
		ID:        m.ID, Response: m.Response, QueryName: m.QName,
		QueryType: dnscache.TypeString(m.QType), RCode: dnscache.RCodeString(m.RCode),
	}
	if len(m.Answers) > 0 {
		out.Answers = make([]string, len(m.Answers))
		for i, r := range m.Answers {
			data := r.Target
			if r.Addr.IsValid() {
				data = r.Addr.String()
			}
			out.Answers[i] = fmt.Sprintf("%s %s %d %s", r.Name, dnscache.TypeString(r.Type), r.TTL, data)
		}
	}
	return out
}

func (d *dnsStage) log(log hclog.Logger) {
	s := d.stats
	s.Cache = d.cache.Stats()
	log.Info("dns", "messages", s.Messages, "malformed", s.Malformed, "truncated", s.Truncated, "truncated_used", s.PartialUsed,
		"cache_entries", s.Cache.Entries, "cache_hits", s.Cache.Hits, "cache_misses", s.Cache.Misses,
		"cache_evictions", s.Cache.Evictions, "cache_expiries", s.Cache.Expiries)
}
