// SPDX-License-Identifier: Apache-2.0

// Package sinkconf holds what the built-in sinks' configuration parsers
// share: strict decoding of the JSON config into one tagged struct per
// sink, the keys (and which of them are secret) derived from its tags, a
// list of problems by key, durations, and the files of a TLS client. A
// third-party sink needs none of it: it is only the built-in sinks' way of
// being configured, documented and reporting problems alike.
//
// A config struct's fields carry a json tag (the key) and, for a value
// that must never be shown (a password, a token, headers that carry
// credentials), the tag sinkconf:"secret".
package sinkconf

import (
	"bytes"
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/flowtap/flowtap/plugins/sdk"
)

// Decode decodes the JSON object config into dst (a pointer to a struct
// with json tags), rejecting keys dst does not have. The error is one
// key-less sdk.ConfigError listing dst's top-level keys, e.g. "url,
// headers, timeout".
func Decode(config []byte, dst any) error {
	dec := json.NewDecoder(bytes.NewReader(config))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return sdk.ConfigError{Message: "config: " + err.Error() + " (valid keys: " + ValidKeys(dst) + ")"}
	}
	return nil
}

// DecodeEach decodes the JSON object config into dst (a pointer to a
// struct with json tags) key by key, in key order, so that a sink reports
// a problem per key: each known key's value is unmarshalled into its
// field, and check is called with the key, its raw value and the
// unmarshalling error (nil when the value fit) to judge it. A key dst does
// not have is a problem "unknown key (valid keys: ...)", listing dst's
// keys sorted. A config that is not a JSON object is the error, a
// key-less sdk.ConfigError, and nothing is decoded.
func (p *Problems) DecodeEach(config []byte, dst any, check func(key string, raw json.RawMessage, err error)) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(config, &raw); err != nil {
		return sdk.ConfigError{Message: "config is not a JSON object: " + err.Error()}
	}
	fields := fieldsByKey(reflect.TypeOf(dst).Elem())
	v := reflect.ValueOf(dst).Elem()
	for _, key := range slices.Sorted(maps.Keys(raw)) {
		i, known := fields[key]
		if !known {
			keys := slices.Sorted(maps.Keys(fields))
			p.Add(key, "unknown key (valid keys: %s)", strings.Join(keys, ", "))
			continue
		}
		check(key, raw[key], json.Unmarshal(raw[key], v.Field(i).Addr().Interface()))
	}
	return nil
}

// Has reports whether a problem with key was recorded.
func (p *Problems) Has(key string) bool {
	return slices.ContainsFunc(p.errs, func(e sdk.ConfigError) bool { return e.Key == key })
}

// Key is one configuration key of a sink, as its config struct declares it.
type Key struct {
	// Name is the key's path, e.g. "retry.max_attempts".
	Name string
	// Type is the JSON type of its value: string, number, bool, list or
	// map.
	Type string
	// Secret marks a value that must never be shown.
	Secret bool
}

// Keys lists the keys of config (a config struct or a pointer to one),
// in field order; a nested struct's keys follow its own, joined with
// ".".
func Keys(config any) []Key {
	return appendKeys(nil, "", derefType(reflect.TypeOf(config)))
}

// ValidKeys lists the top-level keys of config, in field order, for error
// messages: "url, headers, batch_size".
func ValidKeys(config any) string {
	t := derefType(reflect.TypeOf(config))
	var names []string
	for i := range t.NumField() {
		if k := jsonKey(t.Field(i)); k != "" {
			names = append(names, k)
		}
	}
	return strings.Join(names, ", ")
}

// Secrets lists the keys of config that are secret.
func Secrets(config any) []string {
	var out []string
	for _, k := range Keys(config) {
		if k.Secret {
			out = append(out, k.Name)
		}
	}
	return out
}

func appendKeys(out []Key, prefix string, t reflect.Type) []Key {
	for i := range t.NumField() {
		f := t.Field(i)
		name := jsonKey(f)
		if name == "" {
			continue
		}
		ft := derefType(f.Type)
		if ft.Kind() == reflect.Struct {
			out = appendKeys(out, prefix+name+".", ft)
			continue
		}
		out = append(out, Key{Name: prefix + name, Type: jsonType(ft), Secret: f.Tag.Get("sinkconf") == "secret"})
	}
	return out
}

// fieldsByKey maps the top-level keys of struct t to their field index.
func fieldsByKey(t reflect.Type) map[string]int {
	out := map[string]int{}
	for i := range t.NumField() {
		if k := jsonKey(t.Field(i)); k != "" {
			out[k] = i
		}
	}
	return out
}

// jsonKey is the key of f: its json tag's name; "" for a field that is
// not a key.
func jsonKey(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	return name
}

func derefType(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// jsonType names the JSON type a value of t takes.
func jsonType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "bool"
	case reflect.Slice, reflect.Array:
		return "list"
	case reflect.Map:
		return "map"
	}
	return "number"
}

// Problems collects configuration problems, one per key, so that a sink
// reports all of them at once. The zero value is ready to use.
type Problems struct {
	errs sdk.ConfigErrors
}

// Add records a problem with key; the message is fmt.Sprintf(format, args...).
func (p *Problems) Add(key, format string, args ...any) {
	p.errs = append(p.errs, sdk.ConfigError{Key: key, Message: fmt.Sprintf(format, args...)})
}

// Err returns the problems sorted by key (an sdk.ConfigErrors), or nil
// when there are none.
func (p *Problems) Err() error {
	if len(p.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(p.errs, func(a, b sdk.ConfigError) int { return cmp.Compare(a.Key, b.Key) })
	return p.errs
}

// Duration parses s, the value of key, into *dst when s is set; a value
// that is not a positive Go duration is a problem. An empty s leaves *dst
// (the default) as it is.
func (p *Problems) Duration(key, s string, dst *time.Duration) {
	if s == "" {
		return
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		p.Add(key, "must be a positive duration such as \"5s\", not %q", s)
		return
	}
	*dst = d
}

// TLSFiles are the settings of a TLS client that name files, as a sink's
// "tls" key holds them.
type TLSFiles struct {
	// CAFile is a PEM bundle of the CAs to trust instead of the system's.
	CAFile string
	// CertFile and KeyFile are a client certificate and its key (PEM).
	// Both or neither.
	CertFile, KeyFile string
	// ServerName overrides the name the server certificate is checked
	// against.
	ServerName string
}

// TLS returns the client TLS configuration of f (TLS 1.2 or later),
// reading the files it names; a file that cannot be read or holds no
// certificate is a problem of its key, named under prefix (e.g.
// "tls.ca_file" for prefix "tls").
func (p *Problems) TLS(prefix string, f TLSFiles) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		pool := x509.NewCertPool()
		switch {
		case err != nil:
			p.Add(prefix+".ca_file", "%v", err)
		case !pool.AppendCertsFromPEM(pem):
			p.Add(prefix+".ca_file", "%s holds no PEM certificate", f.CAFile)
		default:
			cfg.RootCAs = pool
		}
	}
	switch {
	case (f.CertFile == "") != (f.KeyFile == ""):
		p.Add(prefix+".cert_file", "set both %[1]s.cert_file and %[1]s.key_file, or neither", prefix)
	case f.CertFile != "":
		cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			p.Add(prefix+".cert_file", "load client certificate: %v", err)
		} else {
			cfg.Certificates = []tls.Certificate{cert}
		}
	}
	return cfg
}
