// SPDX-License-Identifier: Apache-2.0

package webhook

import (
	"cmp"
	"crypto/tls"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/flowtap/flowtap/plugins/sdk"

	"github.com/flowtap/flowtap/sinks/internal/sinkconf"
)

// Defaults of the optional keys.
const (
	DefaultBatchSize = 500
	// DefaultTimeout: with the default attempts and backoffs a request
	// gives up after 16.5 s at worst (3 × 5 s + 0.5 s + 1 s), well within
	// flowtap's 30 s acknowledgement timeout.
	DefaultTimeout        = 5 * time.Second
	DefaultMaxAttempts    = 3
	DefaultInitialBackoff = 500 * time.Millisecond
	DefaultMaxBackoff     = 10 * time.Second
)

// Config is the webhook sink's configuration, as it appears in the
// pipeline file under the sink's "config".
type Config struct {
	// URL receives the POSTs (http or https; required).
	URL string `json:"url"`
	// Headers are added to every request, e.g. an Authorization header:
	// secret, as they may carry credentials.
	Headers map[string]string `json:"headers" sinkconf:"secret"`
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
	insecure       bool // tls.insecure_skip_verify
}

// worstCase is the longest one request may take with its retries: every
// attempt timing out, and every backoff between them.
func (st *settings) worstCase() time.Duration {
	d := time.Duration(st.maxAttempts) * st.timeout
	wait := st.initialBackoff
	for range st.maxAttempts - 1 {
		d += wait
		wait = min(wait*2, st.maxBackoff)
	}
	return d
}

// redactURL hides the password of a URL with user information, for
// logs and errors.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		if i := strings.LastIndexByte(s, '@'); i >= 0 {
			return "…" + s[i:]
		}
		return s
	}
	return u.Redacted()
}

// CheckConfig reports every problem of a webhook sink config without
// contacting the endpoint: what flowtap checks in its own process before
// any plugin starts (flowtap config validate).
func CheckConfig(config []byte) error {
	_, err := parseConfig(config)
	return err
}

// parseConfig validates config, reporting every problem by key.
func parseConfig(config []byte) (*settings, error) {
	var cfg Config
	if err := sinkconf.Decode(config, &cfg); err != nil {
		return nil, err
	}
	var p sinkconf.Problems
	st := &settings{
		batchSize: cmp.Or(cfg.BatchSize, DefaultBatchSize), timeout: DefaultTimeout,
		maxAttempts:    cmp.Or(cfg.Retry.MaxAttempts, DefaultMaxAttempts),
		initialBackoff: DefaultInitialBackoff, maxBackoff: DefaultMaxBackoff,
		headers: http.Header{},
	}
	if cfg.URL == "" {
		p.Add("url", "missing: set the URL to POST events to")
	} else if u, err := url.Parse(cfg.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.Add("url", "%q is not an http or https URL", redactURL(cfg.URL))
	} else {
		st.url = cfg.URL
	}
	for k, v := range cfg.Headers {
		st.headers.Set(k, v)
	}
	if cfg.BatchSize < 0 {
		p.Add("batch_size", "must be 1 or more, not %d", cfg.BatchSize)
	}
	if cfg.Retry.MaxAttempts < 0 {
		p.Add("retry.max_attempts", "must be 1 or more, not %d", cfg.Retry.MaxAttempts)
	}
	p.Duration("timeout", cfg.Timeout, &st.timeout)
	p.Duration("retry.initial_backoff", cfg.Retry.InitialBackoff, &st.initialBackoff)
	p.Duration("retry.max_backoff", cfg.Retry.MaxBackoff, &st.maxBackoff)
	st.maxBackoff = max(st.maxBackoff, st.initialBackoff)
	if !p.Has("timeout") && !p.Has("retry.max_attempts") && !p.Has("retry.initial_backoff") && !p.Has("retry.max_backoff") {
		if worst, ack := st.worstCase(), sdk.AckTimeout(); worst >= ack {
			p.Add("timeout", "a request may take %s with its retries (timeout %s × retry.max_attempts %d, plus backoffs), not below flowtap's acknowledgement timeout of %s, after which flowtap counts the plugin as hung and restarts it: lower timeout, retry.max_attempts or retry.max_backoff",
				worst, st.timeout, st.maxAttempts, ack)
		}
	}

	t := cfg.TLS
	st.tls = p.TLS("tls", sinkconf.TLSFiles{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile, ServerName: t.ServerName})
	st.tls.InsecureSkipVerify = t.InsecureSkipVerify
	st.insecure = t.InsecureSkipVerify
	if err := p.Err(); err != nil {
		return nil, err
	}
	return st, nil
}
