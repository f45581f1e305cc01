// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/flowtap/flowtap/plugins/sdk"
	"github.com/flowtap/flowtap/plugins/sdk/sdktest"
)

// TestCounter runs the sink behind the real sink protocol, in this
// process, with the SDK's test harness.
func TestCounter(t *testing.T) {
	c := &counter{}
	h := sdktest.New(t, c)
	if info, err := h.Info(); err != nil || info.Name != "count" {
		t.Fatalf("Info = %+v, %v", info, err)
	}
	if err := h.Configure(map[string]any{"every": 2}); err != nil {
		t.Fatal(err)
	}
	begin := sdktest.Event("net_flow_tcp_begin", sdktest.F("dst_port", uint(443)))
	end := sdktest.Event("net_flow_tcp_end", sdktest.F("dst_port", uint(22)))
	if err := h.Write(begin, end, begin); err != nil {
		t.Fatal(err)
	}
	if c.seen != 3 || c.byName["net_flow_tcp_begin"] != 2 || c.byPort["22"] != 1 {
		t.Errorf("counts: %d %v %v", c.seen, c.byName, c.byPort)
	}
}

func TestCounterConfigErrors(t *testing.T) {
	h := sdktest.New(t, &counter{})
	err := h.Configure(map[string]any{"every": -1, "colour": "red"})
	var errs sdk.ConfigErrors
	if !errors.As(err, &errs) || len(errs) != 2 || errs[0].Key != "colour" || !strings.Contains(errs[1].Message, "0 or more") {
		t.Errorf("Configure = %v", err)
	}
}
