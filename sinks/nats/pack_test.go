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
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowtap/flowtap/plugins/sdk"
	"github.com/flowtap/flowtap/plugins/sdk/sdktest"
	"github.com/flowtap/flowtap/sinks/internal/jsonl"
)

// unpack returns the JSON lines of the events a message holds, without
// their newlines: one for a message of one event, as many as its
// Flowtap-Events header says for a packed one (checked against its
// body, which must end with a newline).
func unpack(header natsgo.Header, data []byte) ([][]byte, error) {
	count := header.Get(EventsHeader)
	if count == "" {
		return [][]byte{data}, nil
	}
	n, err := strconv.Atoi(count)
	if err != nil || n < 1 {
		return nil, fmt.Errorf("%s %q is not a count of events", EventsHeader, count)
	}
	if ct := header.Get(contentTypeHeader); ct != PackedContentType {
		return nil, fmt.Errorf("packed message of content type %q, want %q", ct, PackedContentType)
	}
	body, ok := bytes.CutSuffix(data, []byte("\n"))
	if !ok {
		return nil, errors.New("packed body does not end with a newline")
	}
	lines := bytes.Split(body, []byte("\n"))
	if len(lines) != n {
		return nil, fmt.Errorf("%s says %d events, the body holds %d lines", EventsHeader, n, len(lines))
	}
	return lines, nil
}

// packedSink returns a sink configured with cfg but connected to nothing
// (as when flowtap validates a config), for format's tests.
func packedSink(t *testing.T, cfg map[string]any) *Sink {
	t.Helper()
	sdktest.SetValidateOnly(t)
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := New()
	if err := s.Configure(t.Context(), raw); err != nil {
		t.Fatal(err)
	}
	return s
}

// mixedEvents are n flow events of hosts web-1 and web-2, begins and
// ends, interleaved: four subjects under flowtap.{host}.{event}.
func mixedEvents(n int) []sdk.Event {
	evs := flowEvents(1, n)
	for i := range evs {
		evs[i].Context.HostName = []string{"web-1", "web-1", "web-2"}[i%3]
	}
	return evs
}

// TestPackGrouping checks how a batch packs: each message holds events
// of one subject, at most events_per_message, in their order; its body
// is their JSON lines as the jsonl package writes them; messages come in
// the order of their first event; and every event is in exactly one.
func TestPackGrouping(t *testing.T) {
	for _, per := range []int{2, 3, 16, 1000} {
		t.Run(fmt.Sprintf("events_per_message=%d", per), func(t *testing.T) {
			s := packedSink(t, map[string]any{"servers": []string{deadServer}, "subject": "flowtap.{host}.{event}", "events_per_message": per})
			evs := mixedEvents(100)
			if err := s.format(evs); err != nil {
				t.Fatal(err)
			}
			next := map[string]int{} // per subject: the index of its next event
			var want [][]int         // per subject, in order: the events' indices
			subjects := map[string]int{}
			for i := range evs {
				subj := "flowtap." + evs[i].Context.HostName + "." + evs[i].Name
				k, ok := subjects[subj]
				if !ok {
					k = len(want)
					subjects[subj] = k
					want = append(want, nil)
				}
				want[k] = append(want[k], i)
			}
			if len(subjects) != 4 {
				t.Fatalf("%d subjects, want 4", len(subjects))
			}
			total, lastFirst := 0, -1
			for j, m := range s.msgs {
				if m.events < 1 || m.events > per || m.count != strconv.Itoa(m.events) {
					t.Errorf("message %d: %d events, count %q, want 1 to %d", j, m.events, m.count, per)
				}
				k, ok := subjects[m.subject]
				if !ok {
					t.Fatalf("message %d on %q", j, m.subject)
				}
				var body []byte
				for _, i := range want[k][next[m.subject] : next[m.subject]+m.events] {
					body = jsonl.Append(body, &evs[i])
				}
				first := want[k][next[m.subject]]
				next[m.subject] += m.events
				if !bytes.Equal(m.body, body) {
					t.Errorf("message %d:\n got %s\nwant %s", j, m.body, body)
				}
				if m.id != MsgID(m.body) {
					t.Errorf("message %d: id %q, want %q", j, m.id, MsgID(m.body))
				}
				if first < lastFirst {
					t.Errorf("message %d starts with event %d, after a message starting with %d", j, first, lastFirst)
				}
				lastFirst = first
				total += m.events
			}
			if total != len(evs) {
				t.Errorf("the messages hold %d events, want %d", total, len(evs))
			}
			// Full messages but the last of each subject.
			for subj, k := range subjects {
				if got, wantN := next[subj], len(want[k]); got != wantN {
					t.Errorf("%s: %d events packed, want %d", subj, got, wantN)
				}
			}
			if wantMsgs := packedCount(want, per); len(s.msgs) != wantMsgs {
				t.Errorf("%d messages, want %d", len(s.msgs), wantMsgs)
			}
		})
	}
}

// packedCount is how many messages the subjects' events take, per to a
// message.
func packedCount(bySubject [][]int, per int) int {
	n := 0
	for _, evs := range bySubject {
		n += (len(evs) + per - 1) / per
	}
	return n
}

// TestPackByteBound checks max_message_bytes: a message's body stays
// within it, and an event larger than it travels alone.
func TestPackByteBound(t *testing.T) {
	s := packedSink(t, map[string]any{"servers": []string{deadServer}, "subject": "flowtap", "events_per_message": 100, "max_message_bytes": 1024})
	evs := flowEvents(1, 20)
	line := len(jsonl.Append(nil, &evs[0]))
	big := make([]string, 40)
	for i := range big {
		big[i] = strings.Repeat("x", 40) + ".example.com"
	}
	evs[7].Fields = append(slices.Clone(evs[7].Fields), sdktest.F("dst_dns_all", big))
	if err := s.format(evs); err != nil {
		t.Fatal(err)
	}
	perMsg := 1024 / line
	t.Logf("lines of %d bytes: %d a message; %d messages", line, perMsg, len(s.msgs))
	total := 0
	for j, m := range s.msgs {
		switch {
		case bytes.Contains(m.body, []byte("dst_dns_all")):
			if m.events != 1 || len(m.body) <= 1024 {
				t.Errorf("message %d holds the large event with %d others, %d bytes", j, m.events-1, len(m.body))
			}
		case len(m.body) > 1024:
			t.Errorf("message %d: %d bytes, more than max_message_bytes", j, len(m.body))
		case m.events > perMsg:
			t.Errorf("message %d: %d events of %d bytes", j, m.events, line)
		}
		total += m.events
	}
	if total != len(evs) {
		t.Errorf("%d events packed, want %d", total, len(evs))
	}
}

// TestPackDeterministic: the messages of a batch are a function of the
// batch alone. The same events, formatted again by the same sink after
// other batches, or by a new sink (a restarted plugin), in other memory,
// give the same messages, so a resent batch has the same Nats-Msg-Ids.
func TestPackDeterministic(t *testing.T) {
	cfg := map[string]any{"servers": []string{deadServer}, "subject": "flowtap.{host}.{event}", "events_per_message": 16}
	s := packedSink(t, cfg)
	batch := mixedEvents(500)
	if err := s.format(batch); err != nil {
		t.Fatal(err)
	}
	want := snapshot(s.msgs)
	for _, other := range [][]sdk.Event{mixedEvents(7), flowEvents(1000, 300), nil} {
		if len(other) > 0 {
			if err := s.format(other); err != nil {
				t.Fatal(err)
			}
		}
	}
	again := packedSink(t, cfg)
	for _, sk := range []*Sink{s, again} {
		if err := sk.format(mixedEvents(500)); err != nil {
			t.Fatal(err)
		}
		if got := snapshot(sk.msgs); !slices.Equal(got, want) {
			t.Fatalf("the batch formatted again gives other messages:\n got %v\nwant %v", got, want)
		}
	}
}

// snapshot is each message's subject, count and id.
func snapshot(msgs []message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.subject + " " + m.count + " " + m.id
	}
	return out
}

// TestPackedMessagesInTheStream writes packed messages into a stream and
// reads them back: subject, headers and body.
func TestPackedMessagesInTheStream(t *testing.T) {
	ts := startServer(t, nil)
	str := ts.addStream("FLOWTAP", "flowtap.>")
	h := configured(t, map[string]any{"servers": []string{ts.url()}, "subject": "flowtap.{host}.{event}", "stream": "FLOWTAP",
		"events_per_message": 8, "headers": map[string]string{"X-Env": "test"}})
	evs := mixedEvents(60)
	if err := h.Write(evs...); err != nil {
		t.Fatal(err)
	}
	pc := newPackedCheck(evs)
	msgs := streamMsgs(t, str)
	for _, m := range msgs {
		if m.Header.Get("X-Env") != "test" {
			t.Errorf("message on %s: headers %v", m.Subject, m.Header)
		}
		pc.check(t, m.Subject, m.Header, m.Data)
	}
	if len(pc.seen) != len(evs) || len(msgs) != packedCount([][]int{make([]int, 20), make([]int, 10), make([]int, 10), make([]int, 20)}, 8) {
		t.Errorf("%d events in %d messages, want %d events", len(pc.seen), len(msgs), len(evs))
	}
	pc.once(t)
}

// packedCheck checks the messages a sink packed from a batch of events:
// headers, subjects, each line as the jsonl package writes the event, the
// events of a subject in their order, every event once.
type packedCheck struct {
	byTimestamp map[int64]*sdk.Event
	seen        map[int64]int    // events by timestamp: how many times
	last        map[string]int64 // per subject: the last timestamp
}

func newPackedCheck(evs []sdk.Event) *packedCheck {
	pc := &packedCheck{byTimestamp: map[int64]*sdk.Event{}, seen: map[int64]int{}, last: map[string]int64{}}
	for i := range evs {
		pc.byTimestamp[evs[i].Timestamp] = &evs[i]
	}
	return pc
}

// check checks one message and returns how many events it holds.
func (pc *packedCheck) check(t *testing.T, subject string, header natsgo.Header, data []byte) int {
	t.Helper()
	if header.Get(jetstream.MsgIDHeader) != MsgID(data) {
		t.Errorf("message on %s: headers %v", subject, header)
	}
	lines, err := unpack(header, data)
	if err != nil {
		t.Fatalf("message on %s: %v", subject, err)
	}
	for _, l := range lines {
		var ev storedEvent
		if err := json.Unmarshal(l, &ev); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		orig := pc.byTimestamp[ev.Timestamp]
		if orig == nil {
			t.Fatalf("unknown event %s", l)
		}
		if want := jsonl.Append(nil, orig); string(l)+"\n" != string(want) {
			t.Errorf("line:\n got %s\nwant %s", l, want)
		}
		if want := "flowtap." + orig.Context.HostName + "." + orig.Name; subject != want {
			t.Errorf("event %d on %s, want %s", ev.Timestamp, subject, want)
		}
		if ev.Timestamp <= pc.last[subject] {
			t.Errorf("on %s, event %d after %d", subject, ev.Timestamp, pc.last[subject])
		}
		pc.last[subject] = ev.Timestamp
		pc.seen[ev.Timestamp]++
	}
	return len(lines)
}

// once checks that no event came more than once.
func (pc *packedCheck) once(t *testing.T) {
	t.Helper()
	for ts, n := range pc.seen {
		if n != 1 {
			t.Errorf("event %d stored %d times", ts, n)
		}
	}
}

// streamEventCounts reads every message of an R1 test stream and counts
// each event it holds by timestamp.
func streamEventCounts(t *testing.T, str jetstream.Stream) map[int64]int {
	t.Helper()
	seen := map[int64]int{}
	for _, m := range streamMsgs(t, str) {
		lines, err := unpack(m.Header, m.Data)
		if err != nil {
			t.Fatalf("message on %s: %v", m.Subject, err)
		}
		for _, l := range lines {
			var ev storedEvent
			if err := json.Unmarshal(l, &ev); err != nil {
				t.Fatalf("line %q: %v", l, err)
			}
			seen[ev.Timestamp]++
		}
	}
	return seen
}

// TestPackedResentBatchStoredOnce interrupts a Write of a packed batch
// by stopping the server while it publishes, so that some of its
// messages are stored and others not; once the server is back, the same
// batch written again, by a new sink (as flowtap's supervisor resends it
// to a restarted plugin), packs into the same messages: the stream drops
// those it has by their Nats-Msg-Id and stores the rest, and holds every
// event exactly once.
func TestPackedResentBatchStoredOnce(t *testing.T) {
	ts := startServer(t, nil)
	str := ts.addStream("FLOWTAP", "flowtap.>")
	cfg := map[string]any{"servers": []string{ts.url()}, "subject": "flowtap.{host}.{event}", "stream": "FLOWTAP",
		"events_per_message": 16, "max_in_flight": 2, "timeout": "2s"}
	batch := mixedEvents(40_000)
	h := configured(t, cfg)
	written := make(chan error, 1)
	go func() { written <- h.Write(batch...) }()
	// Stop the server once some messages are stored.
	js := ts.jetStream()
	var stored uint64
	deadline := time.Now().Add(30 * time.Second)
	for stored == 0 {
		info, err := js.Stream(t.Context(), "FLOWTAP")
		if err == nil {
			stored = info.CachedInfo().State.Msgs
		}
		if time.Now().After(deadline) {
			t.Fatal("no message stored within 30s")
		}
		time.Sleep(2 * time.Millisecond)
	}
	ts.stop()
	err := <-written
	if err == nil {
		t.Fatal("the Write survived the server's stop: it was not interrupted")
	}
	t.Logf("interrupted after %d messages stored: %v", stored, err)
	ts.start()

	h2 := configured(t, cfg)
	for attempt := 0; ; attempt++ {
		if err = h2.Write(batch...); err == nil {
			break
		}
		if attempt == 20 {
			t.Fatalf("Write with the server back: %v", err)
		}
	}
	seen := streamEventCounts(t, str)
	missing, doubled := 0, 0
	for i := range batch {
		switch seen[batch[i].Timestamp] {
		case 0:
			missing++
		case 1:
		default:
			doubled++
		}
	}
	if missing > 0 || doubled > 0 || len(seen) != len(batch) {
		t.Errorf("of %d events, %d missing, %d stored more than once, %d in all", len(batch), missing, doubled, len(seen))
	}
	if err := h2.Close(); err != nil {
		t.Error(err)
	}
}

// TestPackedFailureCountsEvents: a failed batch of packed messages says
// how many events were not stored, and in how many messages, with a hint
// for messages larger than the stream takes.
func TestPackedFailureCountsEvents(t *testing.T) {
	ts := startServer(t, nil)
	ts.addStream("FLOWTAP", "flowtap.>")
	h := configured(t, map[string]any{"servers": []string{ts.url()}, "subject": "flowtap.{event}", "stream": "FLOWTAP", "timeout": "2s",
		"events_per_message": 4})
	if _, err := ts.jetStream().UpdateStream(t.Context(), jetstream.StreamConfig{Name: "FLOWTAP", Subjects: []string{"flowtap.>"},
		Storage: jetstream.FileStorage, MaxMsgSize: 1024}); err != nil {
		t.Fatal(err)
	}
	// Begins and ends, 5 each: 4 messages of 4, 4, 1 and 1 events, of
	// which the stream takes the last two, of one event each.
	err := h.Write(flowEvents(1, 10)...)
	want := "publish 10 events to NATS JetStream: 8 of 10 not stored (in 2 of 4 packed messages): 8: nats: API error"
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "lower max_message_bytes") {
		t.Fatalf("Write = %v, want %q and a hint", err, want)
	}
}

// TestPackedMessageSizeChecks: at start, a packed message must fit
// within the server's max_payload and the stream's max_msg_size, or the
// sink refuses to start, saying which bound to change.
func TestPackedMessageSizeChecks(t *testing.T) {
	ts := startServer(t, func(o *server.Options) { o.MaxPayload = 64 << 10 })
	ts.addStream("FLOWTAP", "flowtap.>")
	if _, err := ts.jetStream().CreateStream(context.Background(), jetstream.StreamConfig{Name: "SMALL", Subjects: []string{"small.>"},
		Storage: jetstream.FileStorage, MaxMsgSize: 16 << 10}); err != nil {
		t.Fatal(err)
	}
	base := map[string]any{"servers": []string{ts.url()}, "subject": "flowtap.{event}", "events_per_message": 64}
	with := func(kv ...any) map[string]any {
		cfg := map[string]any{}
		for k, v := range base {
			cfg[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			cfg[kv[i].(string)] = kv[i+1]
		}
		return cfg
	}
	for _, tc := range []struct {
		name string
		cfg  map[string]any
		want string // "" when Configure succeeds
	}{
		{"default beyond max_payload", with(), "max_message_bytes: 524288, plus up to "},
		{"fits max_payload", with("max_message_bytes", 60<<10), ""},
		{"one event a message ignores max_message_bytes", with("events_per_message", 1), ""},
		{"beyond the stream's max_msg_size", with("subject", "small.{event}", "stream", "SMALL", "max_message_bytes", 32<<10),
			`max_message_bytes: 32768, plus up to `},
		{"beyond the capturing stream's max_msg_size", with("subject", "small.{event}", "max_message_bytes", 32<<10),
			`is more than stream "SMALL" takes in a message (its max_msg_size, 16384)`},
		{"fits the stream", with("subject", "small.{event}", "stream", "SMALL", "max_message_bytes", 8<<10), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := sdktest.New(t, New())
			err := h.Configure(tc.cfg)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Configure:\n got %v\nwant %q", err, tc.want)
			}
			if err != nil {
				t.Log(err)
			}
			_ = h.Close()
		})
	}
}

// TestPackedCoreNATS packs on core NATS (jetstream: false): a subscriber
// gets each subject's events as JSON lines, at most events_per_message a
// message, with the packing headers and a Nats-Msg-Id of the body, every
// event once and each subject's in order; with the server gone, a Write
// fails.
func TestPackedCoreNATS(t *testing.T) {
	ts := startServer(t, func(o *server.Options) { o.JetStream = false })
	got := coreSubscriber(t, ts.url())
	h := configured(t, map[string]any{"servers": []string{ts.url()}, "subject": "flowtap.{host}.{event}", "jetstream": false,
		"events_per_message": 8, "timeout": "500ms"})
	evs := mixedEvents(60)
	if err := h.Write(evs...); err != nil {
		t.Fatal(err)
	}
	pc := newPackedCheck(evs)
	want := packedCount([][]int{make([]int, 20), make([]int, 10), make([]int, 10), make([]int, 20)}, 8)
	timeout := time.After(5 * time.Second)
	for i := range want {
		var m *natsgo.Msg
		select {
		case m = <-got:
		case <-timeout:
			t.Fatalf("received %d of %d messages", i, want)
		}
		if m.Header.Get(EventsHeader) == "" {
			t.Errorf("message %d on %s is not packed: headers %v", i, m.Subject, m.Header)
		}
		if n := pc.check(t, m.Subject, m.Header, m.Data); n > 8 {
			t.Errorf("message %d holds %d events, more than events_per_message", i, n)
		}
	}
	select {
	case m := <-got:
		t.Errorf("a message more than the %d expected, on %s", want, m.Subject)
	case <-time.After(200 * time.Millisecond):
	}
	if len(pc.seen) != len(evs) {
		t.Errorf("%d of %d events received", len(pc.seen), len(evs))
	}
	pc.once(t)
	ts.stop()
	if err := h.Write(mixedEvents(3)...); err == nil {
		t.Error("a packed Write with the server down succeeded on core NATS")
	}
}
