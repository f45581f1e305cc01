// SPDX-License-Identifier: Apache-2.0

package supervise

import "github.com/flowtap/flowtap/events"

// Enqueue offers one event, as EnqueueBatch does a batch: the tests feed
// the queue event by event.
func (s *Delivery) Enqueue(ev events.Event) { s.q.push(ev) }
