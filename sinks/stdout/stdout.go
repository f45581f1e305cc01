// SPDX-License-Identifier: Apache-2.0

// Package stdout is the stdout sink: it prints events on the plugin's
// standard output, which the flowtap host forwards to its own, as an
// aligned table for people, as one JSON object per line for programs, or
// through a Go text/template of the user's.
// The plugin binary is cmd/flowtap-sink-stdout.
package stdout

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/template"
	"time"

	"github.com/flowtap/flowtap/plugins/sdk"
	"github.com/flowtap/flowtap/sinks/internal/jsonl"
	"github.com/flowtap/flowtap/sinks/internal/sinkconf"
)

// Version is the stdout sink's version, reported in its Info.
const Version = "0.1.0"

// Output formats, the values of the "format" key.
const (
	FormatTable    = "table"
	FormatJSON     = "json"
	FormatTemplate = "template"
)

// Sink is the stdout sink. Create it with New.
type Sink struct {
	format string
	table  tableFormatter
	tmpl   *template.Template // format "template"

	// out is where output goes; nil means sdk.Output(): the host's
	// standard output.
	out io.Writer
	// w is the writer output goes to, set by Configure.
	w io.Writer
	// buf holds formatted events until they are written: at the end of a
	// batch, or once it holds flushBytes. It is reused from batch to
	// batch; line is one event's template output.
	buf, line []byte
	json      jsonl.Encoder // the json format's encoder and its caches
	header    bool          // the table header has been written
}

// flushBytes is how much formatted output the sink collects before it
// writes, within a batch: one write for most batches, at line boundaries.
const flushBytes = 64 << 10

// Interface guard: Sink is a flowtap sink.
var _ sdk.Sink = (*Sink)(nil)

// New returns an unconfigured stdout sink; Configure sets the format.
func New() *Sink {
	return &Sink{format: FormatTable, table: tableFormatter{loc: time.Local}}
}

// Info implements sdk.Sink.
func (s *Sink) Info() sdk.Info { return sdk.Info{Name: "stdout", Version: Version} }

// Configure implements sdk.Sink. The config is a JSON object with the
// optional keys "format": "table" (the default), "json" or "template",
// and "template": the Go text/template source that format "template"
// executes for each event (see TemplateEvent).
func (s *Sink) Configure(_ context.Context, config []byte) error {
	format, tmpl, err := parseConfig(config)
	if err != nil {
		return err
	}
	s.format, s.tmpl = format, tmpl
	s.w = s.writer()
	sdk.Logger().Info("configured stdout sink", "format", format)
	return nil
}

// Config is the stdout sink's configuration, as it appears in the
// pipeline file under the sink's "config".
type Config struct {
	// Format is "table" (the default), "json" or "template".
	Format string `json:"format"`
	// Template is the Go text/template source that format "template"
	// executes for each event (see TemplateEvent).
	Template string `json:"template"`
}

// CheckConfig reports every problem of a stdout sink config: what flowtap
// checks in its own process before any plugin starts (flowtap config
// validate). With format "template", samples are the events the
// pipeline selects, one of each, with zero values: the template is
// executed on each, so that one naming what an event lacks fails now, not
// at its first event.
func CheckConfig(config []byte, samples []sdk.Event) error {
	_, tmpl, err := parseConfig(config)
	if err != nil || tmpl == nil {
		return err
	}
	var out []byte
	for i := range samples {
		if out, err = executeTemplate(tmpl, out[:0], &samples[i]); err != nil {
			return sdk.ConfigErrors{{Key: "template", Message: fmt.Sprintf("%v (use {{.Field \"name\"}} for a field some events lack: it gives \"\" for them)", err)}}
		}
	}
	return nil
}

// parseConfig validates a stdout sink config and returns the format and,
// for format "template", the parsed template. It reports every problem,
// one sdk.ConfigError per key.
func parseConfig(config []byte) (string, *template.Template, error) {
	cfg := Config{Format: FormatTable}
	var tmpl *template.Template
	var p sinkconf.Problems
	hasTemplate := false
	err := p.DecodeEach(config, &cfg, func(key string, raw json.RawMessage, err error) {
		switch key {
		case "format":
			if string(raw) == "null" {
				cfg.Format = "" // null is no format, not the default
			}
			switch {
			case err != nil:
				p.Add(key, "must be a string, one of %q, %q, %q", FormatJSON, FormatTable, FormatTemplate)
			case cfg.Format != FormatJSON && cfg.Format != FormatTable && cfg.Format != FormatTemplate:
				p.Add(key, "unknown format %q (valid: %s, %s, %s)", cfg.Format, FormatJSON, FormatTable, FormatTemplate)
				cfg.Format = FormatTable
			}
		case "template":
			hasTemplate = true
			if err != nil || cfg.Template == "" {
				p.Add(key, "must be a non-empty string: Go text/template source, e.g. \"{{.Time}} {{.Name}} {{.Field \\\"dst\\\"}}\"")
				return
			}
			t, err := parseTemplate(cfg.Template)
			if err != nil {
				p.Add(key, "%s", err.Error())
				return
			}
			tmpl = t
		}
	})
	if err != nil {
		return "", nil, err
	}
	switch {
	case cfg.Format == FormatTemplate && !hasTemplate:
		p.Add("template", "missing: format \"template\" needs a template")
	case cfg.Format != FormatTemplate && hasTemplate:
		p.Add("template", "is only used with format \"template\", not %q", cfg.Format)
	}
	if err := p.Err(); err != nil {
		return "", nil, err
	}
	return cfg.Format, tmpl, nil
}

// Write implements sdk.Sink: it formats the batch and writes it. If
// writing fails the batch is reported as not accepted, though part of it
// may have been printed.
func (s *Sink) Write(_ context.Context, batch []sdk.Event) error {
	if s.w == nil {
		return fmt.Errorf("stdout sink: Write before Configure")
	}
	b := s.buf[:0]
	if s.format == FormatTable && !s.header {
		s.header = true
		b = s.table.appendHeader(b)
	}
	for i := range batch {
		switch s.format {
		case FormatJSON:
			b = s.json.Append(b, &batch[i])
		case FormatTemplate:
			var err error
			if s.line, err = executeTemplate(s.tmpl, s.line[:0], &batch[i]); err != nil {
				s.buf = b[:0]
				return err
			}
			b = append(b, s.line...)
		default:
			b = s.table.appendEvent(b, &batch[i])
		}
		if len(b) >= flushBytes {
			if err := s.flush(b); err != nil {
				return err
			}
			b = b[:0]
		}
	}
	return s.flush(b)
}

// flush writes b, which becomes the sink's buffer for reuse.
func (s *Sink) flush(b []byte) error {
	s.buf = b[:0]
	if len(b) == 0 {
		return nil
	}
	if _, err := s.w.Write(b); err != nil {
		return fmt.Errorf("write to stdout: %w", err)
	}
	return nil
}

// writer returns where output goes.
func (s *Sink) writer() io.Writer {
	if s.out != nil {
		return s.out
	}
	return sdk.Output()
}

// Close implements sdk.Sink. Every Write has written all of its batch,
// so there is nothing left to flush.
func (s *Sink) Close(context.Context) error { return nil }
