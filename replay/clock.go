// SPDX-License-Identifier: Apache-2.0

package replay

// Ticker is a flow tracker's clock as a Clock drives it; *derive.Tracker
// implements it.
type Ticker interface {
	// NextDeadline returns when Tick has something to do next.
	NextDeadline() (int64, bool)
	// Tick advances the tracker's clock to now.
	Tick(now int64)
}

// Clock advances a flow tracker along a capture's timestamps instead of
// the wall clock: SYN timeouts, close grace and idle eviction happen in
// capture time, so a capture replayed in a second derives what a live
// agent derived over its whole duration. It ticks exactly at each
// deadline the capture's time passes (a live agent ticks every 250 ms and
// so reports expiries up to that much later).
type Clock struct {
	t   Ticker
	now int64
}

// NewClock returns a Clock for t.
func NewClock(t Ticker) *Clock { return &Clock{t: t} }

// Advance moves the clock to ts, ticking at every deadline up to it, in
// order. Call it before handing the tracker an event stamped ts. The clock
// never runs back: an earlier ts changes nothing.
func (c *Clock) Advance(ts int64) {
	if ts <= c.now {
		return
	}
	c.now = ts
	// A Tick at a deadline clears everything due by then, so each round
	// moves the next deadline strictly later: the loop ends after at most
	// as many rounds as the tracker holds deadlines.
	last, ticked := int64(0), false
	for {
		next, ok := c.t.NextDeadline()
		if !ok || next > ts || ticked && next <= last {
			return
		}
		c.t.Tick(next)
		last, ticked = next, true
	}
}
