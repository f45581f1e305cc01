// SPDX-License-Identifier: Apache-2.0

package sdk

import (
	"time"

	"github.com/hashicorp/go-hclog"
)

// durationText is the logger Serve hands to sinks: it writes JSON lines
// for the host, where a time.Duration would be a number of nanoseconds
// (5000000000, which the host's text log then prints as 5e+09); it writes
// each duration as Go prints it ("5s") instead.
type durationText struct{ hclog.Logger }

func (l durationText) Log(level hclog.Level, msg string, args ...any) {
	l.Logger.Log(level, msg, durationsAsText(args)...)
}
func (l durationText) Trace(msg string, args ...any) { l.Logger.Trace(msg, durationsAsText(args)...) }
func (l durationText) Debug(msg string, args ...any) { l.Logger.Debug(msg, durationsAsText(args)...) }
func (l durationText) Info(msg string, args ...any)  { l.Logger.Info(msg, durationsAsText(args)...) }
func (l durationText) Warn(msg string, args ...any)  { l.Logger.Warn(msg, durationsAsText(args)...) }
func (l durationText) Error(msg string, args ...any) { l.Logger.Error(msg, durationsAsText(args)...) }

func (l durationText) With(args ...any) hclog.Logger {
	return durationText{l.Logger.With(durationsAsText(args)...)}
}
func (l durationText) Named(name string) hclog.Logger { return durationText{l.Logger.Named(name)} }
func (l durationText) ResetNamed(name string) hclog.Logger {
	return durationText{l.Logger.ResetNamed(name)}
}

// durationsAsText returns args with every time.Duration value as its
// String; args itself is not changed.
func durationsAsText(args []any) []any {
	var out []any
	for i := 1; i < len(args); i += 2 {
		if d, ok := args[i].(time.Duration); ok {
			if out == nil {
				out = append([]any(nil), args...)
			}
			out[i] = d.String()
		}
	}
	if out == nil {
		return args
	}
	return out
}
