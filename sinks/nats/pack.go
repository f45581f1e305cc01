// SPDX-License-Identifier: Apache-2.0

package nats

import (
	"strconv"
	"strings"
)

// EventsHeader is the header of a packed message that says how many
// events it holds: as many JSON lines as its body has.
const EventsHeader = "Flowtap-Events"

// PackedContentType is the Content-Type header of a packed message: its
// body is JSON lines (newline-delimited JSON), one event a line.
const PackedContentType = "application/x-ndjson"

// contentTypeHeader is the header naming a packed message's format.
const contentTypeHeader = "Content-Type"

// packer groups a batch's events into packed messages: up to perMessage
// events of one subject each, their JSON lines at most maxBytes in all
// (an event larger than that travels alone).
//
// The grouping is a function of the batch alone (its events, their
// order, and the two bounds): the same batch, written again after a
// failure, by this process or by a new one, gives the same messages with
// the same bodies, and so the same Nats-Msg-Id, which the stream
// deduplicates. Nothing from an earlier batch carries over.
type packer struct {
	perMessage int
	maxBytes   int
	// Scratch space reused from batch to batch.
	lines []byte         // the batch's JSON lines, in batch order
	ends  []int          // per event: the end of its line in lines
	subjs []string       // per event: its subject
	of    []int          // per event: the index of its message
	sizes []int          // per message: its body's size so far
	open  map[string]int // per subject: its message being filled
}

// group assigns the events, whose lines and subjects are in p.lines,
// p.ends and p.subjs, to messages, in msgs[:0] (subject and events set),
// and returns them. Messages come in the order of their first event, so
// that within a subject they keep the events' order: each holds a run of
// its subject's events, the next run in a later message.
func (p *packer) group(msgs []message) []message {
	msgs = msgs[:0]
	p.of, p.sizes = p.of[:0], p.sizes[:0]
	if p.open == nil {
		p.open = map[string]int{}
	}
	clear(p.open)
	start := 0
	for i, end := range p.ends {
		size := end - start
		start = end
		subj := p.subjs[i]
		k, ok := p.open[subj]
		if !ok || msgs[k].events >= p.perMessage || p.sizes[k]+size > p.maxBytes {
			k = len(msgs)
			msgs = append(msgs, message{subject: subj})
			p.sizes = append(p.sizes, 0)
			p.open[subj] = k
		}
		msgs[k].events++
		p.sizes[k] += size
		p.of = append(p.of, k)
	}
	return msgs
}

// bodies copies the events' lines into data, grown as needed, each
// message's body contiguous, and points each message's body at its
// part. It returns data.
func (p *packer) bodies(msgs []message, data []byte) []byte {
	total := len(p.lines)
	if cap(data) < total {
		data = make([]byte, total, total+total/4)
	}
	data = data[:total]
	// at[k]: where the next line of message k goes; sizes becomes it.
	at := p.sizes
	off := 0
	for k := range msgs {
		size := at[k]
		msgs[k].body = data[off : off+size : off+size]
		at[k] = off
		off += size
	}
	start := 0
	for i, end := range p.ends {
		k := p.of[i]
		at[k] += copy(data[at[k]:], p.lines[start:end])
		start = end
	}
	for k := range msgs {
		msgs[k].count = countString(msgs[k].events)
	}
	return data
}

// smallCounts are the Flowtap-Events values of the commonest counts,
// shared.
var smallCounts = func() []string {
	out := make([]string, 257)
	for i := range out {
		out[i] = strconv.Itoa(i)
	}
	return out
}()

// countString is n in decimal.
func countString(n int) string {
	if n < len(smallCounts) {
		return smallCounts[n]
	}
	return strconv.Itoa(n)
}

// headerSize is the most bytes the headers of a message take on the wire
// beside its body: the static ones, and the sink's own (Nats-Msg-Id and,
// packed, Flowtap-Events with up to perMessage, and Content-Type), as
// NATS encodes them ("NATS/1.0\r\n", "Name: value\r\n" each, "\r\n").
func headerSize(static map[string][]string, perMessage int) int {
	n := len("NATS/1.0\r\n") + len("\r\n")
	line := func(k, v string) { n += len(k) + len(": ") + len(v) + len("\r\n") }
	for k, vs := range static {
		for _, v := range vs {
			line(k, v)
		}
	}
	line("Nats-Msg-Id", strings.Repeat("x", msgIDLen))
	if perMessage > 1 {
		line(EventsHeader, strconv.Itoa(perMessage))
		if _, ok := static[contentTypeHeader]; !ok {
			line(contentTypeHeader, PackedContentType)
		}
	}
	return n
}
