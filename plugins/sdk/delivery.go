// SPDX-License-Identifier: Apache-2.0

package sdk

import (
	"context"
	"errors"
	"sync/atomic"
)

// PartialWriteError is what Write returns when the batch failed but some
// of its events may already have reached the sink's destination: earlier
// requests of it succeeded, or a request failed without saying whether it
// was taken (a timeout, a connection lost after sending). flowtap sends
// the whole batch again, and counts MaybeDelivered of its events as
// possible duplicates (the duplicates_resent counter), so that what the
// destination holds twice is accounted for. Return a plain error when
// nothing of the batch can have arrived.
type PartialWriteError struct {
	// MaybeDelivered is how many events of the batch may have arrived.
	MaybeDelivered int
	// Err is why the batch failed.
	Err error
}

// Error returns Err's message.
func (e *PartialWriteError) Error() string {
	if e.Err == nil {
		return "write partly failed"
	}
	return e.Err.Error()
}

// Unwrap returns Err.
func (e *PartialWriteError) Unwrap() error { return e.Err }

// maybeDelivered returns how many events of a batch of n err says may have
// arrived: PartialWriteError's count, at most n; 0 for other errors.
func maybeDelivered(err error, n int) int {
	var pe *PartialWriteError
	if errors.As(err, &pe) {
		return max(0, min(pe.MaybeDelivered, n))
	}
	return 0
}

// dupKey carries a Write's duplicate count in its context.
type dupKey struct{}

// NoteDuplicates records, from within Write (with Write's ctx), that n
// events of the batch may have reached the destination more than once:
// the sink retried a request whose first attempt failed without saying
// whether it was taken. flowtap adds them to the sink's duplicates_resent
// counter. Outside Write it does nothing.
func NoteDuplicates(ctx context.Context, n int) {
	if c, ok := ctx.Value(dupKey{}).(*atomic.Int64); ok && n > 0 {
		c.Add(int64(n))
	}
}

// withDuplicates returns ctx carrying a fresh duplicate count.
func withDuplicates(ctx context.Context) (context.Context, *atomic.Int64) {
	c := new(atomic.Int64)
	return context.WithValue(ctx, dupKey{}, c), c
}
