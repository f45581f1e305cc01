// SPDX-License-Identifier: Apache-2.0

// Command jsonlines is a sink plugin for the end-to-end tests: it appends
// every event as one JSON line (the stdout sink's json shape) to the file
// named by its config's "path", so that tests running several sinks can
// tell what each received.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"

	"github.com/flowtap/flowtap/plugins/sdk"
)

type sink struct {
	f *os.File
	w *bufio.Writer
}

func (*sink) Info() sdk.Info { return sdk.Info{Name: "jsonlines", Version: "test"} }

func (s *sink) Configure(_ context.Context, config []byte) error {
	var c struct {
		Path string `json:"path"`
	}
	if err := json.Unmarshal(config, &c); err != nil {
		return sdk.ConfigError{Message: err.Error()}
	}
	if c.Path == "" {
		return sdk.ConfigError{Key: "path", Message: "required"}
	}
	f, err := os.OpenFile(c.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return sdk.ConfigError{Key: "path", Message: err.Error()}
	}
	s.f, s.w = f, bufio.NewWriter(f)
	return nil
}

type line struct {
	Timestamp int64          `json:"timestamp"`
	Event     string         `json:"event"`
	Context   map[string]any `json:"context"`
	Fields    map[string]any `json:"fields"`
}

func (s *sink) Write(_ context.Context, batch []sdk.Event) error {
	if s.w == nil {
		return errors.New("write before configure")
	}
	for i := range batch {
		ev := &batch[i]
		l := line{Timestamp: ev.Timestamp, Event: ev.Name, Fields: map[string]any{}, Context: map[string]any{
			"pid": ev.Context.PID, "comm": ev.Context.Comm, "socket_cookie": ev.Context.SocketCookie,
		}}
		for _, f := range ev.Fields {
			switch f.Value.Kind {
			case sdk.KindString:
				l.Fields[f.Name] = f.Value.Str
			case sdk.KindUint:
				l.Fields[f.Name] = f.Value.Uint
			case sdk.KindInt:
				l.Fields[f.Name] = f.Value.Int
			case sdk.KindBool:
				l.Fields[f.Name] = f.Value.Bool
			case sdk.KindStrings:
				l.Fields[f.Name] = append([]string{}, f.Value.Strings...)
			}
		}
		b, err := json.Marshal(l)
		if err != nil {
			return err
		}
		s.w.Write(append(b, '\n'))
	}
	return s.w.Flush()
}

func (s *sink) Close(context.Context) error {
	if s.f == nil {
		return nil
	}
	s.w.Flush()
	return s.f.Close()
}

func main() { sdk.Serve(&sink{}) }
