// SPDX-License-Identifier: Apache-2.0

package sdktest_test

import (
	"context"
	"errors"
	"testing"

	"github.com/flowtap/flowtap/plugins/sdk"
	"github.com/flowtap/flowtap/plugins/sdk/sdktest"
)

// memSink keeps copies of what it gets; "bad" in its config is refused,
// an event named "reject" fails its batch.
type memSink struct {
	got    []sdk.Event
	closed bool
}

func (m *memSink) Info() sdk.Info { return sdk.Info{Name: "mem", Version: "1"} }
func (m *memSink) Configure(_ context.Context, config []byte) error {
	if string(config) == `{"bad":1}` {
		return sdk.ConfigErrors{{Key: "bad", Message: "no"}}
	}
	return nil
}
func (m *memSink) Write(_ context.Context, batch []sdk.Event) error {
	for _, ev := range batch {
		if ev.Name == "reject" {
			return errors.New("nope")
		}
		ev.Fields = append([]sdk.Field(nil), ev.Fields...)
		m.got = append(m.got, ev)
	}
	return nil
}
func (m *memSink) Close(context.Context) error { m.closed = true; return nil }

func TestHarness(t *testing.T) {
	m := &memSink{}
	h := sdktest.New(t, m)
	info, err := h.Info()
	if err != nil || info != (sdk.Info{Name: "mem", Version: "1"}) {
		t.Fatalf("Info = %+v, %v", info, err)
	}
	var errs sdk.ConfigErrors
	if err := h.Configure(map[string]any{"bad": 1}); !errors.As(err, &errs) || errs[0].Key != "bad" {
		t.Fatalf("Configure(bad) = %v", err)
	}
	// Configure is once only: a fresh harness for the rest.
	m = &memSink{}
	h = sdktest.New(t, m)
	if err := h.Configure(nil); err != nil {
		t.Fatal(err)
	}
	ev := sdktest.Event("net_flow_tcp_begin", sdktest.F("dst", "192.0.2.1"), sdktest.F("dst_port", uint16(443)),
		sdktest.F("ok", true), sdktest.F("n", -3), sdktest.F("dst_dns", []string{"a", "b"}))
	if err := h.Write(ev, ev); err != nil {
		t.Fatal(err)
	}
	if err := h.Write(sdktest.Event("reject")); !errors.Is(err, sdktest.ErrRejected) {
		t.Errorf("Write(reject) = %v, want ErrRejected", err)
	}
	if err := h.Close(); err != nil || !m.closed {
		t.Fatalf("Close = %v, closed %v", err, m.closed)
	}
	if len(m.got) != 2 {
		t.Fatalf("sink got %d events, want 2", len(m.got))
	}
	if v, _ := m.got[1].Field("dst_port"); v.Kind != sdk.KindUint || v.Uint != 443 {
		t.Errorf("dst_port = %+v", v)
	}
	if v, _ := m.got[0].Field("dst_dns"); len(v.Strings) != 2 || v.Strings[1] != "b" {
		t.Errorf("dst_dns = %+v", v)
	}
	if m.got[0].Context.Comm != "curl" || m.got[0].Name != "net_flow_tcp_begin" {
		t.Errorf("event = %+v", m.got[0])
	}
}
