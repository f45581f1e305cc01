// SPDX-License-Identifier: Apache-2.0

// Command flaky is a sink plugin for the supervisor's tests. It accepts
// batches and, as its JSON config says:
//
//   - "sleep_ms": sleeps this long in every Write (a slow sink);
//   - "reject": rejects the first this many batches it gets (per process);
//   - "exit_after": exits with status 3 on its this-many-th batch, before
//     acknowledging it (a crash);
//   - "hang_after": never returns from its this-many-th batch (a hang);
//   - "once_file": with exit_after or hang_after, only fails if this file
//     does not exist yet, and creates it: the restarted plugin works;
//   - "reject_while": rejects every batch while this file exists;
//   - "count_file": appends, per accepted batch, a line with its event
//     count and the timestamps of its first and last event.
//   - "closed_file": Close creates this file (the plugin was closed, not
//     killed).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/flowtap/flowtap/plugins/sdk"
)

type flaky struct {
	SleepMS     int    `json:"sleep_ms"`
	Reject      int    `json:"reject"`
	ExitAfter   int    `json:"exit_after"`
	HangAfter   int    `json:"hang_after"`
	OnceFile    string `json:"once_file"`
	CountFile   string `json:"count_file"`
	RejectWhile string `json:"reject_while"`
	ClosedFile  string `json:"closed_file"`
	batches     int
	count       *os.File
}

func (f *flaky) Info() sdk.Info { return sdk.Info{Name: "flaky", Version: "test"} }

func (f *flaky) Configure(_ context.Context, config []byte) error {
	if err := json.Unmarshal(config, f); err != nil {
		return sdk.ConfigError{Message: err.Error()}
	}
	if f.CountFile != "" {
		c, err := os.OpenFile(f.CountFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return sdk.ConfigError{Key: "count_file", Message: err.Error()}
		}
		f.count = c
	}
	return nil
}

// failNow reports whether the once-only failure should happen.
func (f *flaky) failNow() bool {
	if f.OnceFile == "" {
		return true
	}
	if _, err := os.Stat(f.OnceFile); err == nil {
		return false
	}
	_ = os.WriteFile(f.OnceFile, nil, 0o644)
	return true
}

func (f *flaky) Write(ctx context.Context, batch []sdk.Event) error {
	f.batches++
	if f.SleepMS > 0 {
		time.Sleep(time.Duration(f.SleepMS) * time.Millisecond)
	}
	if f.batches == f.ExitAfter && f.failNow() {
		os.Exit(3)
	}
	if f.batches == f.HangAfter && f.failNow() {
		select {} // hang, also past ctx: a sink that ignores its context
	}
	if f.batches <= f.Reject {
		return errors.New("rejected on purpose")
	}
	if f.RejectWhile != "" {
		if _, err := os.Stat(f.RejectWhile); err == nil {
			return errors.New("rejected while " + f.RejectWhile + " exists")
		}
	}
	if f.count != nil {
		_, err := fmt.Fprintf(f.count, "%d %d %d\n", len(batch), batch[0].Timestamp, batch[len(batch)-1].Timestamp)
		return err
	}
	return nil
}

func (f *flaky) Close(context.Context) error {
	if f.ClosedFile != "" {
		_ = os.WriteFile(f.ClosedFile, nil, 0o644)
	}
	if f.count != nil {
		return f.count.Close()
	}
	return nil
}

func main() { sdk.Serve(&flaky{}) }
