package webhook

import (
	"bytes"
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"time"

	"github.com/flowtap/flowtap/plugins/sdk"
)

// Defaults of the optional keys.
const (
	DefaultBatchSize      = 500
	DefaultTimeout        = 10 * time.Second
	DefaultMaxAttempts    = 3
	DefaultInitialBackoff = 500 * time.Millisecond
	DefaultMaxBackoff     = 10 * time.Second
)

// Config is the webhook sink's configuration, as it appears in the
// pipeline file under the sink's "config".
type Config struct {
	// URL receives the POSTs (http or https; required).
	URL string `json:"url"`
	// Headers are added to every request, e.g. an Authorization header.
	Headers map[string]string `json:"headers"`
	// BatchSize is the most events in one POST; a larger batch from
	// flowtap is posted in several. Default 500.
	BatchSize int `json:"batch_size"`
	// Timeout bounds one request (a Go duration). Default "10s".
	Timeout string `json:"timeout"`
	// Retry governs retries of a failed POST.
	Retry RetryConfig `json:"retry"`
	// TLS configures https.
	TLS TLSConfig `json:"tls"`
}

// RetryConfig is the retry policy of one POST: attempts, and the
// exponential wait between them.
type RetryConfig struct {
	MaxAttempts    int    `json:"max_attempts"`
	InitialBackoff string `json:"initial_backoff"`
	MaxBackoff     string `json:"max_backoff"`
}

// TLSConfig configures the client side of https.
type TLSConfig struct {
	// CAFile is a PEM bundle of the CAs to trust instead of the system's.
	CAFile string `json:"ca_file"`
	// CertFile and KeyFile are a client certificate and its key (PEM),
	// for servers that require one. Both or neither.
	CertFile string `json:"cert_file"`
	KeyFile  string `json:"key_file"`
	// InsecureSkipVerify turns server certificate checks off. For tests
	// only.
	InsecureSkipVerify bool `json:"insecure_skip_verify"`
	// ServerName overrides the name the server certificate is checked
	// against.
	ServerName string `json:"server_name"`
}

// settings are a validated Config.
type settings struct {
	url            string
	headers        http.Header
	batchSize      int
	timeout        time.Duration
	maxAttempts    int
	initialBackoff time.Duration
	maxBackoff     time.Duration
	tls            *tls.Config
}

// parseConfig validates config, reporting every problem by key.
func parseConfig(config []byte) (*settings, error) {
	dec := json.NewDecoder(bytes.NewReader(config))
	dec.DisallowUnknownFields()
	var cfg Config
	if err := dec.Decode(&cfg); err != nil {
		return nil, sdk.ConfigError{Message: "config: " + err.Error() + " (valid keys: url, headers, batch_size, timeout, retry, tls)"}
	}
	var errs sdk.ConfigErrors
	bad := func(key, format string, args ...any) {
		errs = append(errs, sdk.ConfigError{Key: key, Message: fmt.Sprintf(format, args...)})
	}
	st := &settings{
		batchSize: cmp.Or(cfg.BatchSize, DefaultBatchSize), timeout: DefaultTimeout,
		maxAttempts:    cmp.Or(cfg.Retry.MaxAttempts, DefaultMaxAttempts),
		initialBackoff: DefaultInitialBackoff, maxBackoff: DefaultMaxBackoff,
		headers: http.Header{},
	}
	if cfg.URL == "" {
		bad("url", "missing: set the URL to POST events to")
	} else if u, err := url.Parse(cfg.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("url", "%q is not an http or https URL", cfg.URL)
	} else {
		st.url = cfg.URL
	}
	for k, v := range cfg.Headers {
		st.headers.Set(k, v)
	}
	if cfg.BatchSize < 0 {
		bad("batch_size", "must be 1 or more, not %d", cfg.BatchSize)
	}
	if cfg.Retry.MaxAttempts < 0 {
		bad("retry.max_attempts", "must be 1 or more, not %d", cfg.Retry.MaxAttempts)
	}
	duration := func(key, s string, dst *time.Duration) {
		if s == "" {
			return
		}
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			bad(key, "must be a positive duration such as \"5s\", not %q", s)
			return
		}
		*dst = d
	}
	duration("timeout", cfg.Timeout, &st.timeout)
	duration("retry.initial_backoff", cfg.Retry.InitialBackoff, &st.initialBackoff)
	duration("retry.max_backoff", cfg.Retry.MaxBackoff, &st.maxBackoff)
	st.maxBackoff = max(st.maxBackoff, st.initialBackoff)

	t := cfg.TLS
	st.tls = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.InsecureSkipVerify, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		pool := x509.NewCertPool()
		switch {
		case err != nil:
			bad("tls.ca_file", "%v", err)
		case !pool.AppendCertsFromPEM(pem):
			bad("tls.ca_file", "%s holds no PEM certificate", t.CAFile)
		default:
			st.tls.RootCAs = pool
		}
	}
	switch {
	case (t.CertFile == "") != (t.KeyFile == ""):
		bad("tls.cert_file", "set both tls.cert_file and tls.key_file, or neither")
	case t.CertFile != "":
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			bad("tls.cert_file", "load client certificate: %v", err)
		} else {
			st.tls.Certificates = []tls.Certificate{cert}
		}
	}
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b sdk.ConfigError) int { return cmp.Compare(a.Key, b.Key) })
		return nil, errs
	}
	return st, nil
}
