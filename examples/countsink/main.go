// SPDX-License-Identifier: Apache-2.0

// Command flowtap-sink-count is an example of a third-party flowtap sink,
// built as a module of its own against plugins/sdk alone: it counts events
// by name and by destination port, logs the totals every "every" events
// and when it is closed, and prints them as one JSON object to flowtap's
// standard output at the end.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/flowtap/flowtap/plugins/sdk"
)

// counter is the sink. The SDK calls it one method at a time, so it needs
// no locking.
type counter struct {
	every  int
	seen   int
	byName map[string]int
	byPort map[string]int
}

// Interface guard: counter is a flowtap sink.
var _ sdk.Sink = (*counter)(nil)

func (c *counter) Info() sdk.Info { return sdk.Info{Name: "count", Version: "1.0.0"} }

// Configure takes one optional key, "every": log the totals every this
// many events (0, the default: only at Close).
func (c *counter) Configure(_ context.Context, config []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(config, &raw); err != nil {
		return sdk.ConfigError{Message: "config is not a JSON object: " + err.Error()}
	}
	var errs sdk.ConfigErrors
	for _, key := range slices.Sorted(maps.Keys(raw)) {
		switch key {
		case "every":
			if err := json.Unmarshal(raw[key], &c.every); err != nil || c.every < 0 {
				errs = append(errs, sdk.ConfigError{Key: key, Message: fmt.Sprintf("must be a whole number, 0 or more, not %s", raw[key])})
			}
		default:
			errs = append(errs, sdk.ConfigError{Key: key, Message: "unknown key (valid keys: every)"})
		}
	}
	if len(errs) > 0 {
		return errs
	}
	c.byName, c.byPort = map[string]int{}, map[string]int{}
	return nil
}

// Write counts the batch. Names and strings are safe to keep; the batch's
// slices are not (the SDK reuses them), and this sink keeps none.
func (c *counter) Write(_ context.Context, batch []sdk.Event) error {
	for i := range batch {
		ev := &batch[i]
		c.byName[ev.Name]++
		if v, ok := ev.Field("dst_port"); ok && v.Kind == sdk.KindUint {
			c.byPort[strconv.FormatUint(v.Uint, 10)]++
		}
		c.seen++
		if c.every > 0 && c.seen%c.every == 0 {
			sdk.Logger().Info("event counts", "events", c.seen, "by_name", fmt.Sprint(c.byName))
		}
	}
	return nil
}

// Close logs and prints the totals.
func (c *counter) Close(context.Context) error {
	sdk.Logger().Info("final event counts", "events", c.seen, "by_name", fmt.Sprint(c.byName))
	out, err := json.Marshal(map[string]any{"events": c.seen, "by_name": c.byName, "by_dst_port": c.byPort})
	if err != nil {
		return fmt.Errorf("encode totals: %w", err)
	}
	if _, err := sdk.Output().Write(append(out, '\n')); err != nil {
		return fmt.Errorf("print totals: %w", err)
	}
	return nil
}

func main() { sdk.Serve(&counter{}) }
