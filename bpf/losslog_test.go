// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// TestLossLog pins when ring buffer loss is logged, and the lines: at once
// when it begins, at most once a minute while it goes on, once when a
// minute passed without loss. Checks once a second, as Run makes them.
func TestLossLog(t *testing.T) {
	var buf bytes.Buffer
	l := lossLog{log: hclog.New(&hclog.LoggerOptions{Output: &buf, DisableTime: true, Level: hclog.Info})}
	t0 := time.Unix(1000, 0)
	total := uint64(0)
	check := func(sec int, lost uint64) {
		total += lost
		l.observe(t0.Add(time.Duration(sec)*time.Second), lost, total)
	}
	check(0, 0)
	for s := 1; s <= 150; s++ { // 150 s of loss: 10 records a second
		check(s, 10)
	}
	for s := 151; s <= 260; s++ { // then quiet
		check(s, 0)
	}
	check(300, 5) // a new episode
	want := `[WARN]  flow records lost: the ring buffer was full (flowtap reads too slowly, or capture.ring_buffer_size is too small): lost=10 lost_total=10
[WARN]  flow records still being lost: lost=600 over=1m0s lost_total=610
[WARN]  flow records still being lost: lost=600 over=1m0s lost_total=1210
[WARN]  flow records still being lost: lost=290 over=1m0s lost_total=1500
[INFO]  flow record loss stopped: lost=1500 lost_total=1500 quiet_for=1m0s
[WARN]  flow records lost: the ring buffer was full (flowtap reads too slowly, or capture.ring_buffer_size is too small): lost=5 lost_total=1505
`
	if got := buf.String(); got != want {
		t.Errorf("log:\n%s\nwant:\n%s", got, want)
	}
	if n := strings.Count(buf.String(), "\n"); n > 6 {
		t.Errorf("%d lines for 150 s of loss", n)
	}
}
