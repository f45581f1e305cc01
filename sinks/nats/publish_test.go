// SPDX-License-Identifier: Apache-2.0

package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestDecodeAck(t *testing.T) {
	for _, tc := range []struct {
		name   string
		data   string
		status string
		dup    bool
		err    string // "" for stored
	}{
		{"stored", `{"stream":"FLOWTAP","seq":42}`, "", false, ""},
		{"duplicate", `{"stream":"FLOWTAP","seq":42,"duplicate":true}`, "", true, ""},
		{"with a domain", `{"stream":"FLOWTAP","domain":"hub","seq":42}`, "", false, ""},
		{"spaced duplicate", `{"stream":"FLOWTAP", "seq":42, "duplicate": true}`, "", true, ""},
		{"escaped stream name", `{"stream":"A\"B","seq":1}`, "", false, ""},
		{"refused", `{"error":{"code":503,"err_code":10077,"description":"maximum bytes exceeded"},"stream":"FLOWTAP","seq":0}`, "", false,
			"nats: API error: code=503 err_code=10077 description=maximum bytes exceeded"},
		{"no stream", `{"seq":1}`, "", false, "names no stream"},
		{"not JSON", `garbage`, "", false, "JetStream acknowledgement"},
		{"no responders", ``, "503", false, natsgo.ErrNoResponders.Error()},
		{"other status", ``, "408", false, `status "408"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &natsgo.Msg{Data: []byte(tc.data), Header: natsgo.Header{}}
			if tc.status != "" {
				m.Header.Set(statusHeader, tc.status)
			}
			dup, err := decodeAck(m)
			if tc.err == "" && (err != nil || dup != tc.dup) || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("decodeAck(%q) = %v, %v; want dup %v, error %q", tc.data, dup, err, tc.dup, tc.err)
			}
		})
	}
	// A refusal keeps its type: the sink explains it by its error code.
	_, err := decodeAck(&natsgo.Msg{Data: []byte(`{"error":{"code":503,"err_code":10077,"description":"x"},"stream":"S","seq":0}`)})
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != errCodeStoreFailed {
		t.Errorf("refusal decoded as %T %v", err, err)
	}
}

// FuzzFastAck checks the short cut of decodeAck against encoding/json:
// whatever fastAck accepts is a stored acknowledgement that encoding/json
// reads the same way.
func FuzzFastAck(f *testing.F) {
	for _, s := range []string{`{"stream":"FLOWTAP","seq":42}`, `{"stream":"FLOWTAP","seq":42,"duplicate":true}`,
		`{"stream":"F","seq":1,"duplicate":false}`, `{"stream":"","seq":1}`, `{"stream":"F","seq":}`, `{"stream":"F\u0041","seq":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ok, dup := fastAck(data)
		if !ok {
			return
		}
		var ack struct {
			Error     *jetstream.APIError `json:"error"`
			Stream    string              `json:"stream"`
			Seq       uint64              `json:"seq"`
			Duplicate bool                `json:"duplicate"`
		}
		if err := json.Unmarshal(data, &ack); err != nil || ack.Error != nil || ack.Stream == "" || ack.Duplicate != dup {
			t.Errorf("fastAck(%q) = stored, duplicate %v; encoding/json: %+v, %v", data, dup, ack, err)
		}
	})
}

func TestHostSubjectToken(t *testing.T) {
	for host, want := range map[string]string{
		"web-1":             "web-1",
		"db-1.example.com":  "db-1_example_com",
		"":                  "_",
		"a b*c>d\te\x7f":    "a_b_c_d_e_",
		"höst-ü":            "höst-ü",
		"under_score.dot.x": "under_score_dot_x",
	} {
		if got := HostSubjectToken(host); got != want {
			t.Errorf("HostSubjectToken(%q) = %q, want %q", host, got, want)
		}
		if err := checkToken(HostSubjectToken(host)); err != nil {
			t.Errorf("HostSubjectToken(%q) is no token: %v", host, err)
		}
	}
}

// TestUnansweredRetryFailsAsNobodyReceivedIt: a batch whose messages
// nobody received, published again and still unanswered when the batch's
// time ends, fails as nobody received them (the cause), not as "no
// acknowledgement in time" (the deadline that cut the last attempt short);
// a message that was never answered at all keeps the deadline.
func TestUnansweredRetryFailsAsNobodyReceivedIt(t *testing.T) {
	p := &publisher{window: 8, wake: make(chan struct{}, 1)}
	msgs := []message{{events: 4}, {}, {events: 2}}
	p.begin(msgs)
	p.mu.Lock()
	p.open = 3
	p.settleLocked(0, false, natsgo.ErrNoResponders)
	p.settleLocked(2, false, natsgo.ErrNoResponders)
	p.mu.Unlock()
	if todo := p.takeRetries(); len(todo) != 2 {
		t.Fatalf("retries %v, want messages 0 and 2", todo)
	}
	// Published again; the batch's time ends before any answer, to them
	// or to message 1.
	tl := p.end(fmt.Errorf("%w: %w", errNoAck, context.DeadlineExceeded))
	if tl.fails.msgs != 3 || tl.fails.n != 7 {
		t.Fatalf("fails %d messages, %d events; want 3 and 7", tl.fails.msgs, tl.fails.n)
	}
	if got, want := tl.fails.counts[natsgo.ErrNoResponders.Error()], 6; got != want {
		t.Errorf("%d events failed as nobody received them, want %d: %s", got, want, tl.fails)
	}
	if got := tl.fails.n - tl.fails.counts[natsgo.ErrNoResponders.Error()]; got != 1 || !strings.Contains(tl.fails.String(), "no acknowledgement in time") {
		t.Errorf("the message never answered: %d events, %s", got, tl.fails)
	}
}
