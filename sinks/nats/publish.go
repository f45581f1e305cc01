// SPDX-License-Identifier: Apache-2.0

package nats

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// publisher publishes a batch of messages into JetStream asynchronously,
// at most window of them unacknowledged at a time, and collects the
// stream's acknowledgements: each message carries its own reply subject,
// a prefix (one wildcard subscription) and a sequence number. A batch
// ends when every message is settled (stored, refused) or its deadline
// passes; an acknowledgement arriving after its batch ended is only
// counted as late. One batch at a time.
//
// It replaces jetstream.PublishMsgAsync, which costs a timer, a future
// and two channels per message and has no notion of a batch.
type publisher struct {
	nc     *natsgo.Conn
	sub    *natsgo.Subscription
	prefix string // reply subjects are prefix + decimal sequence number
	window int
	// msg is the message being published, reused: nats.go copies it into
	// its buffer before PublishMsg returns.
	msg natsgo.Msg
	// wake has room for one signal: something the publishing goroutine
	// waits for happened (an acknowledgement brought the messages in
	// flight down to wantOpen).
	wake chan struct{}

	mu       sync.Mutex
	first    uint64    // sequence number of the batch's first message
	next     uint64    // sequence number of the next batch's first message
	msgs     []message // the batch's messages, for their event counts
	done     []bool    // by message of the batch: settled
	nobody   []bool    // by message of the batch: nobody received it once (no responders)
	retry    []int     // messages of the batch nobody received, to publish again
	open     int       // messages of the batch published and not settled
	wantOpen int       // signal wake when open drops to this
	tally    tally     // the batch's outcomes so far
	late     uint64    // acknowledgements of batches that had ended, in all
}

// tally counts the outcomes of one batch, in events (a packed message
// counts as many as it holds) and in messages.
type tally struct {
	stored        int // events acknowledged by the stream, as new messages
	duplicates    int // events acknowledged as copies of messages the stream held
	storedMsgs    int
	duplicateMsgs int
	fails         failures
}

// newPublisher subscribes to the acknowledgements on nc.
func newPublisher(nc *natsgo.Conn, window int) (*publisher, error) {
	p := &publisher{nc: nc, prefix: nc.NewInbox() + ".", window: window, wake: make(chan struct{}, 1)}
	sub, err := nc.Subscribe(p.prefix+"*", p.onAck)
	if err != nil {
		return nil, fmt.Errorf("subscribe to JetStream acknowledgements: %w", err)
	}
	// The window bounds what can be pending; the defaults (64 MiB) are
	// far above it, but acknowledgements must never be dropped as a slow
	// consumer's.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("subscribe to JetStream acknowledgements: %w", err)
	}
	p.sub = sub
	return p, nil
}

// message is one message to publish: the event's JSON on its subject,
// with its Nats-Msg-Id; or, packed, the JSON lines of events of one
// subject, with their count.
type message struct {
	subject string
	id      string
	body    []byte
	// events is how many events the message holds; count is that
	// number as the Flowtap-Events header's value, "" for a message of
	// one event not packed.
	events int
	count  string
}

// send publishes msgs, each with header (the static headers), its
// Nats-Msg-Id and, packed, its Flowtap-Events count, at most window
// unacknowledged at a time, and waits until
// every one is settled or ctx ends. If patient, messages nobody received
// (no responders: the stream has no leader right now, as while a cluster
// elects one) are published again every noRespondersWait while ctx
// lasts. It returns their tally: every message not acknowledged in time
// counts as failed.
func (p *publisher) send(ctx context.Context, msgs []message, header natsgo.Header, patient bool) tally {
	replies := p.begin(msgs)
	hv := setHeaders(header, msgs)
	var todo []int // nil: every message
	var err error
	for {
		if err = p.publishAll(ctx, msgs, todo, replies, header, hv); err != nil {
			break
		}
		p.mu.Lock()
		p.wantOpen = 0
		p.mu.Unlock()
		if err = p.await(ctx, func() bool { return p.open == 0 }); err != nil {
			break
		}
		p.mu.Lock()
		again := patient && len(p.retry) > 0
		p.mu.Unlock()
		if !again {
			break
		}
		select {
		case <-time.After(noRespondersWait):
		case <-ctx.Done():
			return p.end(nil) // the retries fail as nobody received them
		}
		todo = p.takeRetries()
	}
	return p.end(err)
}

// noRespondersWait is the wait before messages nobody received are
// published again.
const noRespondersWait = 250 * time.Millisecond

// publishAll publishes the messages of msgs that todo lists (nil: all),
// each once fewer than window are in flight. An error means ctx ended.
func (p *publisher) publishAll(ctx context.Context, msgs []message, todo []int, replies []string, header natsgo.Header, hv headerValues) error {
	defer func() { p.msg = natsgo.Msg{} }()
	p.mu.Lock()
	p.wantOpen = p.window / 2
	p.mu.Unlock()
	n := len(msgs)
	if todo != nil {
		n = len(todo)
	}
	for k := range n {
		i := k
		if todo != nil {
			i = todo[k]
		}
		if err := p.acquire(ctx); err != nil {
			return err
		}
		m := &msgs[i]
		hv.set(m)
		p.msg.Subject, p.msg.Reply, p.msg.Header, p.msg.Data = m.subject, replies[i], header, m.body
		if err := p.nc.PublishMsg(&p.msg); err != nil {
			p.settle(i, err)
		}
	}
	return nil
}

// acquire waits until fewer than window messages are in flight, and
// counts one more, before it is published: its acknowledgement may come
// first.
func (p *publisher) acquire(ctx context.Context) error {
	return p.await(ctx, func() bool {
		if p.open >= p.window {
			return false
		}
		p.open++
		return true
	})
}

// takeRetries returns the messages to publish again, now unsettled.
func (p *publisher) takeRetries() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	todo := p.retry
	p.retry = nil
	for _, i := range todo {
		p.done[i] = false
	}
	return todo
}

// begin starts a batch of messages and returns the reply subject of
// each, all in one allocation.
func (p *publisher) begin(msgs []message) []string {
	n := len(msgs)
	p.mu.Lock()
	p.msgs = msgs
	p.first = p.next
	p.next += uint64(n)
	p.done = slices.Grow(p.done[:0], n)[:n]
	clear(p.done)
	p.nobody = slices.Grow(p.nobody[:0], n)[:n]
	clear(p.nobody)
	p.open, p.tally, p.retry = 0, tally{}, nil
	first := p.first
	p.mu.Unlock()

	buf := make([]byte, 0, n*(len(p.prefix)+8))
	ends := make([]int, n)
	for i := range n {
		buf = append(buf, p.prefix...)
		buf = strconv.AppendUint(buf, first+uint64(i), 10)
		ends[i] = len(buf)
	}
	all := string(buf)
	replies := make([]string, n)
	start := 0
	for i, end := range ends {
		replies[i] = all[start:end]
		start = end
	}
	return replies
}

// end ends the batch: every message not settled counts as failed with
// err (nil: not acknowledged in time), and later acknowledgements of the
// batch are only counted as late. It returns the batch's tally.
func (p *publisher) end(err error) tally {
	p.mu.Lock()
	defer p.mu.Unlock()
	// A message published again after nobody received it, and still
	// unanswered, fails as nobody received it: that says why, where the
	// deadline that cut its last attempt short would not.
	msgs, evs, nobodyMsgs, nobodyEvs := 0, 0, 0, 0
	for i, d := range p.done {
		switch {
		case d:
		case p.nobody[i]:
			nobodyMsgs++
			nobodyEvs += p.msgs[i].weight()
		default:
			msgs++
			evs += p.msgs[i].weight()
		}
	}
	if msgs > 0 {
		if err == nil {
			err = errNoAck
		}
		p.tally.fails.add(msgs, evs, err)
	}
	for _, i := range p.retry {
		nobodyMsgs++
		nobodyEvs += p.msgs[i].weight()
	}
	if nobodyMsgs > 0 {
		p.tally.fails.add(nobodyMsgs, nobodyEvs, natsgo.ErrNoResponders)
	}
	t := p.tally
	p.first, p.done, p.open, p.retry, p.msgs = p.next, p.done[:0], 0, nil, nil
	return t
}

// await waits until ready (called with mu held) is true, or ctx ends.
// ready may change the state it checks only when it returns true.
func (p *publisher) await(ctx context.Context, ready func() bool) error {
	for {
		p.mu.Lock()
		ok := ready()
		p.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-p.wake:
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", errNoAck, ctx.Err())
		}
	}
}

// onAck receives an acknowledgement (or an error status) for the
// message whose reply subject it arrives on.
func (p *publisher) onAck(m *natsgo.Msg) {
	seq, err := strconv.ParseUint(m.Subject[min(len(p.prefix), len(m.Subject)):], 10, 64)
	if err != nil {
		return // not one of ours
	}
	dup, aerr := decodeAck(m)
	p.mu.Lock()
	i := seq - p.first // wraps for an earlier batch: out of range
	if seq < p.first || i >= uint64(len(p.done)) || p.done[i] {
		p.late++
		p.mu.Unlock()
		return
	}
	p.settleLocked(int(i), dup, aerr)
	signal := p.open <= p.wantOpen
	p.mu.Unlock()
	if signal {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// settle records that message i failed with err.
func (p *publisher) settle(i int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i < len(p.done) && !p.done[i] {
		p.settleLocked(i, false, err)
	}
}

// settleLocked records message i's outcome: stored (dup: as a copy of a
// message the stream held) when err is nil, else failed.
func (p *publisher) settleLocked(i int, dup bool, err error) {
	p.done[i] = true
	p.open--
	w := p.msgs[i].weight()
	switch {
	case errors.Is(err, natsgo.ErrNoResponders):
		p.nobody[i] = true
		p.retry = append(p.retry, i)
	case err != nil:
		p.tally.fails.add(1, w, err)
	case dup:
		p.tally.duplicates += w
		p.tally.duplicateMsgs++
	default:
		p.tally.stored += w
		p.tally.storedMsgs++
	}
}

// weight is how many events m holds: 1 for an event's own message.
func (m *message) weight() int { return max(m.events, 1) }

// headerValues are the values of the headers that differ from message to
// message, in the header map every message of a batch shares: nats.go
// encodes the map into its buffer before PublishMsg returns.
type headerValues struct {
	id    []string // Nats-Msg-Id
	count []string // Flowtap-Events; nil when the batch is not packed
}

// setHeaders puts the per-message headers of msgs into header, and
// returns their values to set for each message.
func setHeaders(header natsgo.Header, msgs []message) headerValues {
	hv := headerValues{id: []string{""}}
	header[jetstream.MsgIDHeader] = hv.id
	if len(msgs) > 0 && msgs[0].count != "" {
		hv.count = []string{""}
		header[EventsHeader] = hv.count
	} else {
		delete(header, EventsHeader)
	}
	return hv
}

// set sets the headers of message m.
func (hv headerValues) set(m *message) {
	hv.id[0] = m.id
	if hv.count != nil {
		hv.count[0] = m.count
	}
}

// lateAcks is how many acknowledgements arrived after their batch ended.
func (p *publisher) lateAcks() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.late
}

// close stops receiving acknowledgements.
func (p *publisher) close() {
	if p.sub != nil {
		_ = p.sub.Unsubscribe()
	}
}

// statusHeader and noRespondersStatus are the NATS protocol's status of a
// request nobody subscribed to: here, no stream captures the subject.
const (
	statusHeader       = "Status"
	noRespondersStatus = "503"
)

// pubAckPrefix and its variants are how the stream acknowledges a stored
// message, as nats-server writes it; decodeAck recognises them without
// the cost of encoding/json, and decodes anything else in full.
var (
	pubAckPrefix    = []byte(`{"stream":"`)
	pubAckSeq       = []byte(`","seq":`)
	pubAckDuplicate = []byte(`,"duplicate":true}`)
)

// decodeAck decodes the stream's answer to a message: stored (dup: it
// held a copy already), or an error.
func decodeAck(m *natsgo.Msg) (dup bool, err error) {
	data := m.Data
	if len(data) == 0 {
		if m.Header.Get(statusHeader) == noRespondersStatus {
			return false, natsgo.ErrNoResponders
		}
		return false, fmt.Errorf("JetStream answered with status %q and no acknowledgement", m.Header.Get(statusHeader))
	}
	if ok, dup := fastAck(data); ok {
		return dup, nil
	}
	var ack struct {
		Error     *jetstream.APIError `json:"error"`
		Stream    string              `json:"stream"`
		Seq       uint64              `json:"seq"`
		Duplicate bool                `json:"duplicate"`
	}
	if err := json.Unmarshal(data, &ack); err != nil {
		return false, fmt.Errorf("JetStream acknowledgement %.80q: %w", data, err)
	}
	if ack.Error != nil {
		return false, ack.Error
	}
	if ack.Stream == "" {
		return false, errors.New("JetStream acknowledgement names no stream")
	}
	return ack.Duplicate, nil
}

// fastAck recognises the two usual acknowledgements,
// {"stream":"S","seq":N} and {"stream":"S","seq":N,"duplicate":true},
// with a stream name of printable ASCII without escapes. ok is false for
// anything else.
func fastAck(data []byte) (ok, dup bool) {
	rest, found := bytes.CutPrefix(data, pubAckPrefix)
	if !found {
		return false, false
	}
	q := bytes.IndexByte(rest, '"')
	if q <= 0 {
		return false, false
	}
	for _, c := range rest[:q] {
		if c <= ' ' || c >= 0x7f || c == '\\' { // printable ASCII, no escapes
			return false, false
		}
	}
	rest, found = bytes.CutPrefix(rest[q:], pubAckSeq)
	if !found {
		return false, false
	}
	d := 0
	for d < len(rest) && rest[d] >= '0' && rest[d] <= '9' {
		d++
	}
	if d == 0 || d > 20 {
		return false, false
	}
	switch rest = rest[d:]; {
	case len(rest) == 1 && rest[0] == '}':
		return true, false
	case bytes.Equal(rest, pubAckDuplicate):
		return true, true
	}
	return false, false
}
