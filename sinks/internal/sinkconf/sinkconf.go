// Package sinkconf holds what the built-in sinks' configuration parsers
// share: strict decoding of the JSON config, a list of problems by key,
// durations, and the files of a TLS client. A third-party sink needs none
// of it: it is only the built-in sinks' way of reporting problems alike.
package sinkconf

import (
	"bytes"
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/flowtap/flowtap/plugins/sdk"
)

// Decode decodes the JSON object config into dst (a pointer to a struct
// with json tags), rejecting keys dst does not have. The error is an
// sdk.ConfigError listing validKeys, e.g. "url, headers, timeout".
func Decode(config []byte, dst any, validKeys string) error {
	dec := json.NewDecoder(bytes.NewReader(config))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return sdk.ConfigError{Message: "config: " + err.Error() + " (valid keys: " + validKeys + ")"}
	}
	return nil
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
