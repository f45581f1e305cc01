// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"time"

	"github.com/hashicorp/go-hclog"
)

// lossLogEvery is the most often loss is logged while it goes on, and
// the quiet spell after which it counts as over.
const lossLogEvery = time.Minute

// lossLog says when ring buffer loss begins, goes on and ends, without a
// line per check of the kernel's counter (once a second while the ring is
// read): the first growth after a quiet spell is logged at once (WARN);
// further growth at most once per lossLogEvery, as one WARN line with what
// was lost since the last line; and lossLogEvery without loss ends the
// episode with one INFO line and its total. The flowtap_records_lost
// events carry every gap to the sinks regardless.
type lossLog struct {
	log hclog.Logger
	// losing: an episode is on. lastLine is when it last logged,
	// lastLoss when the counter last grew.
	losing             bool
	lastLine, lastLoss time.Time
	// pending is what was lost since the last line; episode what the
	// episode lost in all.
	pending, episode uint64
}

// observe takes one check of the counter at now: lost records since the
// previous check (0: none), total the counter.
func (l *lossLog) observe(now time.Time, lost, total uint64) {
	if lost > 0 {
		l.lastLoss = now
		l.episode += lost
		if !l.losing {
			l.losing, l.lastLine = true, now
			l.log.Warn("flow records lost: the ring buffer was full (flowtap reads too slowly, or capture.ring_buffer_size is too small)",
				"lost", lost, "lost_total", total)
			return
		}
		l.pending += lost
	}
	if !l.losing {
		return
	}
	if l.pending > 0 && now.Sub(l.lastLine) >= lossLogEvery {
		l.log.Warn("flow records still being lost", "lost", l.pending, "over", now.Sub(l.lastLine).Round(time.Second).String(), "lost_total", total)
		l.pending, l.lastLine = 0, now
	}
	if now.Sub(l.lastLoss) >= lossLogEvery {
		l.log.Info("flow record loss stopped", "lost", l.episode, "lost_total", total, "quiet_for", now.Sub(l.lastLoss).Round(time.Second).String())
		*l = lossLog{log: l.log}
	}
}
