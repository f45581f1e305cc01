// SPDX-License-Identifier: Apache-2.0

package supervise

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/flowtap/flowtap/events"
)

// Policy is what a sink's full queue does with one more event.
type Policy string

// Queue policies.
const (
	// Block makes the producer wait for room: nothing is dropped, and a
	// slow sink slows the whole pipeline (every sink it feeds).
	Block Policy = "block"
	// DropNewest drops the event that does not fit.
	DropNewest Policy = "drop_newest"
	// DropOldest drops the oldest queued event to make room for the new one.
	DropOldest Policy = "drop_oldest"
)

// Policies lists the queue policies, the default first. Config
// validation (package configs) and Start accept exactly these.
func Policies() []Policy { return []Policy{Block, DropNewest, DropOldest} }

// OnFailure is what the owner of a sink does once its supervisor has
// given up on it (Failed): the pipeline applies it.
type OnFailure string

// Failure policies.
const (
	// Stop stops flowtap with the sink's error (the default).
	Stop OnFailure = "stop"
	// Disable drops the failed sink, and its events; the other sinks go
	// on.
	Disable OnFailure = "disable"
)

// OnFailures lists the failure policies, the default first.
func OnFailures() []OnFailure { return []OnFailure{Stop, Disable} }

// queue is a bounded FIFO of events between the router and a sink's
// worker. push applies the policy when it is full; pop never waits.
type queue struct {
	mu      sync.Mutex
	notFull sync.Cond
	buf     []events.Event // a ring of len cap
	head, n int
	policy  Policy
	// closed: no more pushes (the run ends); disabled: the sink failed,
	// everything pushed from now on is dropped.
	closed, disabled bool
	// wake has room for one signal: the worker waits on it for events.
	wake chan struct{}
	// wakeAt is how many queued events are worth waking the worker for
	// (a full batch, or the whole queue when it is smaller).
	wakeAt int
	// idle: the worker found the queue empty with nothing to flush, and
	// sleeps until the next health check; the next push wakes it, so
	// that its flush timer runs for the new events.
	idle bool

	queued, dropped, lost *atomic.Uint64
	// onDrop, when set, is told of the events the policy dropped in a
	// push (outside the lock).
	onDrop func(n uint64)
}

func newQueue(size, batch int, policy Policy, queued, dropped, lost *atomic.Uint64) *queue {
	q := &queue{
		buf:     make([]events.Event, size),
		policy:  policy,
		wake:    make(chan struct{}, 1),
		wakeAt:  max(1, min(batch, size)),
		queued:  queued,
		dropped: dropped,
		lost:    lost,
	}
	q.notFull.L = &q.mu
	return q
}

// push adds ev, applying the policy if the queue is full.
func (q *queue) push(ev events.Event) { q.pushAll([]events.Event{ev}) }

// pushAll adds evs in order, each as push would, under one lock of the
// queue (Block waits for room as often as it needs to).
func (q *queue) pushAll(evs []events.Event) {
	var queued, dropped, lost uint64
	q.mu.Lock()
	for i := range evs {
		for q.n == len(q.buf) && q.policy == Block && !q.closed && !q.disabled {
			// The worker may be waiting for a full batch; it has one.
			q.signal()
			q.notFull.Wait()
		}
		switch {
		case q.closed || q.disabled:
			dropped++
			lost++
			continue
		case q.n == len(q.buf) && q.policy == DropNewest:
			dropped++
			continue
		case q.n == len(q.buf): // DropOldest
			q.buf[q.head] = events.Event{}
			q.head = (q.head + 1) % len(q.buf)
			q.n--
			dropped++
		}
		q.buf[(q.head+q.n)%len(q.buf)] = evs[i]
		q.n++
		queued++
	}
	n := q.n
	wakeIdle := q.idle && n > 0
	if wakeIdle {
		q.idle = false
	}
	q.mu.Unlock()
	if dropped > 0 {
		q.dropped.Add(dropped)
		q.lost.Add(lost)
		if q.onDrop != nil && dropped > lost {
			q.onDrop(dropped - lost)
		}
	}
	if queued > 0 {
		q.queued.Add(queued)
	}
	// The worker sends partial batches when its flush timer fires, so
	// waking it for fewer events than a batch would cost a goroutine
	// wake-up per push and send nothing; but an idle worker has no flush
	// timer running, and must learn of the first event.
	if n >= q.wakeAt || wakeIdle {
		q.signal()
	}
}

// sleep marks the worker idle, unless events wait (it then returns
// false, and the worker pops them). Checked and set under one lock, so
// that no push falls between the check and the mark unnoticed.
func (q *queue) sleep() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n > 0 {
		return false
	}
	q.idle = true
	return true
}

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// pop moves up to max events to the end of dst and returns it, and
// whether the queue is closed and now empty.
func (q *queue) pop(dst []events.Event, max int) ([]events.Event, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.idle = false // the worker is awake
	wasFull := q.n == len(q.buf)
	for k := 0; k < max && q.n > 0; k++ {
		dst = append(dst, q.buf[q.head])
		q.buf[q.head] = events.Event{}
		q.head = (q.head + 1) % len(q.buf)
		q.n--
	}
	if wasFull && q.n < len(q.buf) {
		q.notFull.Broadcast()
	}
	return dst, q.closed && q.n == 0
}

// len returns how many events wait.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// close ends the pushes; the worker drains what is queued.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.notFull.Broadcast()
	q.mu.Unlock()
	q.signal()
}

// disable drops everything queued and everything pushed from now on
// (counted in dropped and lost), and returns how many events were queued.
func (q *queue) disable() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.disabled = true
	n := q.n
	clear(q.buf)
	q.head, q.n = 0, 0
	q.dropped.Add(uint64(n))
	q.lost.Add(uint64(n))
	q.notFull.Broadcast()
	return n
}

// dropLog logs the events a sink's queue policy drops while it drops
// them: the first drop at once, then at most one line per interval with
// the drops since the last line, and a last line at Close for the rest.
type dropLog struct {
	log    hclog.Logger
	sink   string
	policy Policy
	every  time.Duration

	mu      sync.Mutex
	pending uint64    // dropped since the last line
	total   uint64    // dropped in all
	last    time.Time // when the last line was logged
}

// note counts n more drops and logs them if a line is due.
func (d *dropLog) note(n uint64) {
	if d.log == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pending += n
	d.total += n
	if now := time.Now(); d.last.IsZero() || now.Sub(d.last) >= d.every {
		d.emit(now)
	}
}

// flush logs the drops not logged yet.
func (d *dropLog) flush() {
	if d.log == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pending > 0 {
		d.emit(time.Now())
	}
}

func (d *dropLog) emit(now time.Time) {
	since := "start"
	if !d.last.IsZero() {
		since = now.Sub(d.last).Round(time.Millisecond).String() + " ago"
	}
	d.log.Warn("sink queue full: dropping events (queue.policy)", "sink", d.sink, "policy", string(d.policy),
		"dropped", d.pending, "since", since, "dropped_total", d.total)
	d.pending, d.last = 0, now
}
