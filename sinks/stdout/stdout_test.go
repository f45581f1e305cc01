// SPDX-License-Identifier: Apache-2.0

package stdout

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/flowtap/flowtap/internal/testutil"
	"github.com/flowtap/flowtap/plugins/sdk"
)

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		config string
		format string
		errs   sdk.ConfigErrors
	}{
		{config: `{}`, format: FormatTable},
		{config: `null`, format: FormatTable},
		{config: `{"format":"table"}`, format: FormatTable},
		{config: `{"format":"json"}`, format: FormatJSON},
		{config: `{"format":"xml"}`, errs: sdk.ConfigErrors{{Key: "format", Message: `unknown format "xml" (valid: json, table, template)`}}},
		{config: `{"format":1}`, errs: sdk.ConfigErrors{{Key: "format", Message: `must be a string, one of "json", "table", "template"`}}},
		{config: `{"format":null}`, errs: sdk.ConfigErrors{{Key: "format", Message: `unknown format "" (valid: json, table, template)`}}},
		{config: `{"format":"template","template":"{{.Name}}"}`, format: FormatTemplate},
		{config: `{"format":"template"}`, errs: sdk.ConfigErrors{{Key: "template", Message: `missing: format "template" needs a template`}}},
		{config: `{"template":"{{.Name}}"}`, errs: sdk.ConfigErrors{{Key: "template", Message: `is only used with format "template", not "table"`}}},
		{config: `{"format":"template","template":"{{.Name"}`, errs: sdk.ConfigErrors{{Key: "template", Message: `parse: template: stdout:1: unclosed action`}}},
		{config: `{"format":"yaml","colour":true,"width":80}`, errs: sdk.ConfigErrors{
			{Key: "colour", Message: "unknown key (valid keys: format, template)"},
			{Key: "format", Message: `unknown format "yaml" (valid: json, table, template)`},
			{Key: "width", Message: "unknown key (valid keys: format, template)"},
		}},
	} {
		format, _, err := parseConfig([]byte(tc.config))
		if tc.errs == nil {
			if err != nil || format != tc.format {
				t.Errorf("parseConfig(%s) = %q, %v; want %q", tc.config, format, err, tc.format)
			}
			continue
		}
		var errs sdk.ConfigErrors
		if !errors.As(err, &errs) {
			t.Errorf("parseConfig(%s) error %v is not sdk.ConfigErrors", tc.config, err)
			continue
		}
		if len(errs) != len(tc.errs) {
			t.Errorf("parseConfig(%s) = %v, want %v", tc.config, errs, tc.errs)
			continue
		}
		for i := range errs {
			if errs[i] != tc.errs[i] {
				t.Errorf("parseConfig(%s)[%d] = %v, want %v", tc.config, i, errs[i], tc.errs[i])
			}
		}
	}
	var one sdk.ConfigError
	if _, _, err := parseConfig([]byte(`[1]`)); !errors.As(err, &one) || one.Key != "" {
		t.Errorf("parseConfig([1]) = %v, want a key-less ConfigError", err)
	}
}

func TestWriteFlushesEveryBatch(t *testing.T) {
	var out bytes.Buffer
	s := New()
	s.out = &out
	if err := s.Configure(t.Context(), []byte(`{"format":"json"}`)); err != nil {
		t.Fatal(err)
	}
	batch := []sdk.Event{testutil.SDKFlowBegin(), testutil.SDKFlowBegin()}
	if err := s.Write(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); n != 2 {
		t.Fatalf("after Write: %d lines on stdout, want 2 (not flushed?)", n)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestTableHeaderOnce(t *testing.T) {
	var out bytes.Buffer
	s := New()
	s.out = &out
	if err := s.Configure(t.Context(), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := s.Write(t.Context(), []sdk.Event{testutil.SDKFlowBegin()}); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "TIME ") || strings.Count(out.String(), "TIME") != 1 {
		t.Errorf("want one header and 3 events, got:\n%s", out.String())
	}
}

func TestWriteErrorIsNotSticky(t *testing.T) {
	w := &failingWriter{fail: true}
	s := New()
	s.out = w
	if err := s.Configure(t.Context(), []byte(`{"format":"json"}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(t.Context(), []sdk.Event{testutil.SDKFlowBegin()}); err == nil {
		t.Fatal("Write to a failing stdout succeeded")
	}
	w.fail = false
	if err := s.Write(t.Context(), []sdk.Event{testutil.SDKFlowBegin()}); err != nil {
		t.Fatalf("Write after stdout recovered: %v", err)
	}
	if n := strings.Count(w.buf.String(), "\n"); n != 1 {
		t.Errorf("%d lines written after recovery, want 1", n)
	}
}

func TestWriteBeforeConfigure(t *testing.T) {
	if err := New().Write(t.Context(), []sdk.Event{testutil.SDKFlowBegin()}); err == nil {
		t.Error("Write before Configure succeeded")
	}
	if err := New().Close(t.Context()); err != nil {
		t.Errorf("Close without Configure: %v", err)
	}
}

// TestStdoutLookedUpAtWrite checks that the sink writes to os.Stdout as it
// is when writing, as go-plugin replaces it after the handshake.
func TestStdoutLookedUpAtWrite(t *testing.T) {
	s := New()
	if err := s.Configure(t.Context(), []byte(`{"format":"json"}`)); err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	orig := os.Stdout
	os.Stdout = w
	err = s.Write(t.Context(), []sdk.Event{testutil.SDKFlowBegin()})
	os.Stdout = orig
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, err := got.ReadFrom(r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got.String(), `"event":"net_flow_tcp_begin"`) {
		t.Errorf("replaced stdout got %q", got.String())
	}
}

type failingWriter struct {
	fail bool
	buf  bytes.Buffer
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.fail {
		return 0, errors.New("broken pipe")
	}
	return w.buf.Write(p)
}

func TestTemplateFormat(t *testing.T) {
	var out bytes.Buffer
	s := New()
	s.out = &out
	tmpl := `{{.Time.UTC.Format "15:04:05"}} {{.Name}} {{.Context.Comm}}[{{.Context.PID}}] -> {{.Field "dst"}}:{{.Field "dst_port"}} dns={{join (.Field "dst_dns") ","}} {{.Field "nope"}}|`
	if err := s.Configure(t.Context(), []byte(`{"format":"template","template":`+strconv.Quote(tmpl)+`}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(t.Context(), []sdk.Event{testutil.SDKFlowBegin()}); err != nil {
		t.Fatal(err)
	}
	want := "22:13:20 net_flow_tcp_begin curl[1234] -> 93.184.216.34:443 dns=example.com,www.example.com |\n"
	if out.String() != want {
		t.Errorf("template output\n got %q\nwant %q", out.String(), want)
	}
	// A template failing on an event fails the batch, naming the event.
	s2 := New()
	s2.out = &out
	if err := s2.Configure(t.Context(), []byte(`{"format":"template","template":"{{.Nope}}"}`)); err != nil {
		t.Fatal(err)
	}
	if err := s2.Write(t.Context(), []sdk.Event{testutil.SDKFlowBegin()}); err == nil || !strings.Contains(err.Error(), "net_flow_tcp_begin") {
		t.Errorf("Write with a failing template = %v", err)
	}
}
