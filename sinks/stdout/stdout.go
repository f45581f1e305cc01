// Package stdout is the stdout sink: it prints events on the plugin's
// standard output, which the flowtap host forwards to its own, as an
// aligned table for people, as one JSON object per line for programs, or
// through a Go text/template of the user's.
// The plugin binary is cmd/flowtap-sink-stdout.
package stdout

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"text/template"
	"time"

	"github.com/flowtap/flowtap/plugins/sdk"
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
	out    io.Writer
	bw     *bufio.Writer
	buf    []byte // one formatted event, reused
	header bool   // the table header has been written
}

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
	s.bw = bufio.NewWriterSize(s.writer(), 64<<10)
	sdk.Logger().Info("configured stdout sink", "format", format)
	return nil
}

// parseConfig validates a stdout sink config and returns the format and,
// for format "template", the parsed template. It reports every problem,
// one sdk.ConfigError per key.
func parseConfig(config []byte) (string, *template.Template, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(config, &raw); err != nil {
		return "", nil, sdk.ConfigError{Message: "config is not a JSON object: " + err.Error()}
	}
	format := FormatTable
	var tmpl *template.Template
	var errs sdk.ConfigErrors
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		switch key {
		case "format":
			var f string
			if err := json.Unmarshal(raw[key], &f); err != nil {
				errs = append(errs, sdk.ConfigError{Key: key, Message: fmt.Sprintf("must be a string, one of %q, %q, %q", FormatJSON, FormatTable, FormatTemplate)})
				continue
			}
			switch f {
			case FormatJSON, FormatTable, FormatTemplate:
				format = f
			default:
				errs = append(errs, sdk.ConfigError{Key: key, Message: fmt.Sprintf("unknown format %q (valid: %s, %s, %s)", f, FormatJSON, FormatTable, FormatTemplate)})
			}
		case "template":
			var src string
			if err := json.Unmarshal(raw[key], &src); err != nil || src == "" {
				errs = append(errs, sdk.ConfigError{Key: key, Message: "must be a non-empty string: Go text/template source, e.g. \"{{.Time}} {{.Name}} {{.Field \\\"dst\\\"}}\""})
				continue
			}
			t, err := parseTemplate(src)
			if err != nil {
				errs = append(errs, sdk.ConfigError{Key: key, Message: err.Error()})
				continue
			}
			tmpl = t
		default:
			errs = append(errs, sdk.ConfigError{Key: key, Message: "unknown key (valid keys: format, template)"})
		}
	}
	_, hasTemplate := raw["template"]
	switch {
	case format == FormatTemplate && !hasTemplate:
		errs = append(errs, sdk.ConfigError{Key: "template", Message: "missing: format \"template\" needs a template"})
	case format != FormatTemplate && hasTemplate:
		errs = append(errs, sdk.ConfigError{Key: "template", Message: fmt.Sprintf("is only used with format \"template\", not %q", format)})
	}
	if len(errs) > 0 {
		return "", nil, errs
	}
	return format, tmpl, nil
}

// Write implements sdk.Sink: it formats the batch and flushes it. If
// writing fails the batch is reported as not accepted, though part of it
// may have been printed.
func (s *Sink) Write(_ context.Context, batch []sdk.Event) error {
	if s.bw == nil {
		return fmt.Errorf("stdout sink: Write before Configure")
	}
	if s.format == FormatTable && !s.header {
		s.header = true
		s.buf = s.table.appendHeader(s.buf[:0])
		_, _ = s.bw.Write(s.buf)
	}
	for i := range batch {
		switch s.format {
		case FormatJSON:
			s.buf = appendJSONEvent(s.buf[:0], &batch[i])
		case FormatTemplate:
			var err error
			if s.buf, err = executeTemplate(s.tmpl, s.buf[:0], &batch[i]); err != nil {
				s.bw.Reset(s.writer())
				return err
			}
		default:
			s.buf = s.table.appendEvent(s.buf[:0], &batch[i])
		}
		if _, err := s.bw.Write(s.buf); err != nil {
			return s.writeFailed(err)
		}
	}
	if err := s.bw.Flush(); err != nil {
		return s.writeFailed(err)
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

// writeFailed discards what is buffered (a bufio.Writer keeps failing
// after its first error) so that a later batch can be tried afresh.
func (s *Sink) writeFailed(err error) error {
	s.bw.Reset(s.writer())
	return fmt.Errorf("write to stdout: %w", err)
}

// Close implements sdk.Sink: it flushes what is buffered.
func (s *Sink) Close(context.Context) error {
	if s.bw == nil {
		return nil
	}
	if err := s.bw.Flush(); err != nil {
		return fmt.Errorf("flush stdout: %w", err)
	}
	return nil
}
