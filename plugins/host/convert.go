// SPDX-License-Identifier: Apache-2.0

package host

import (
	"fmt"
	"math"

	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/plugins/host/internal/encode"
)

// batchEncoder turns a batch of events into the messages of the Write
// stream: each a proto.Batch's events in the event encoding
// (plugins/internal/wire/README.md), at most limit bytes long. A batch that does
// not fit in one message is split between events. Once warm, encoding a
// batch allocates nothing: the encoder caches event shapes and names, and
// the message buffers are reused from batch to batch.
type batchEncoder struct {
	enc encode.Encoder
	// parts are the encoded messages of the current batch; first[i] is
	// the index of part i's first event. bufs keeps every buffer made so
	// far, for reuse.
	parts [][]byte
	first []int
	bufs  [][]byte
	names [64]cachedName
}

// cachedName is one entry of a direct-mapped cache of event names by ID.
type cachedName struct {
	id   events.ID
	name string
}

// tooLargeError is an event that does not fit in a message on its own.
type tooLargeError struct {
	index int    // in the batch
	name  string // the event's name
	size  int    // its encoded size, header included
	limit int
}

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("event %d of the batch (%s) encodes to %d bytes, more than the %d bytes one message may hold",
		e.index, e.name, e.size, e.limit)
}

func (e *tooLargeError) Unwrap() error { return ErrTooLarge }

// encode encodes batch into c.parts, each at most limit bytes. name gives
// the wire name of an event ID. If an event is too large for a message of
// its own, it returns a *tooLargeError and no parts.
func (c *batchEncoder) encode(batch []events.Event, limit int, name func(events.ID) string) error {
	c.parts, c.first = c.parts[:0], c.first[:0]
	c.start(0)
	for i := range batch {
		ev := &batch[i]
		evName := c.name(ev.ID, name)
		if c.enc.AppendPayload(limit, uint32(ev.ID), evName, ev.Timestamp, &ev.Context, ev.Payload) {
			continue
		}
		if c.enc.Count() > 0 {
			c.finish()
			c.start(i)
			if c.enc.AppendPayload(limit, uint32(ev.ID), evName, ev.Timestamp, &ev.Context, ev.Payload) {
				continue
			}
		}
		// Measure it alone, for the error; then drop the buffer, which
		// may be huge.
		c.enc.Start(nil)
		c.enc.AppendPayload(math.MaxInt, uint32(ev.ID), evName, ev.Timestamp, &ev.Context, ev.Payload)
		size := c.enc.Len()
		c.enc.Finish()
		c.parts, c.first = c.parts[:0], c.first[:0]
		return &tooLargeError{index: i, name: evName, size: size, limit: limit}
	}
	c.finish()
	return nil
}

// start begins the next part, whose first event is batch[first].
func (c *batchEncoder) start(first int) {
	k := len(c.parts)
	if k == len(c.bufs) {
		c.bufs = append(c.bufs, nil)
	}
	c.enc.Start(c.bufs[k])
	c.first = append(c.first, first)
}

// finish completes the current part.
func (c *batchEncoder) finish() {
	k := len(c.parts)
	c.bufs[k] = c.enc.Finish()
	c.parts = append(c.parts, c.bufs[k])
}

// keptBuffers is how many message buffers the encoder keeps between
// batches: a batch split into many messages should not keep all of them
// alive for good.
const keptBuffers = 4

// release drops the references to the parts, once sent, and all but a
// few buffers.
func (c *batchEncoder) release() {
	clear(c.parts)
	c.parts = c.parts[:0]
	if len(c.bufs) > keptBuffers {
		clear(c.bufs[keptBuffers:])
		c.bufs = c.bufs[:keptBuffers]
	}
}

// name is name(id), cached.
func (c *batchEncoder) name(id events.ID, name func(events.ID) string) string {
	e := &c.names[int(id)%len(c.names)]
	if e.name == "" || e.id != id {
		e.id, e.name = id, name(id)
	}
	return e.name
}
