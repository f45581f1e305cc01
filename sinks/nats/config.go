// SPDX-License-Identifier: Apache-2.0

package nats

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowtap/flowtap/sinks/internal/sinkconf"
)

// Defaults of the optional keys.
const (
	DefaultTimeout         = 10 * time.Second
	DefaultConnectTimeout  = 5 * time.Second
	DefaultMaxInFlight     = 1024
	DefaultMaxAge          = 24 * time.Hour
	DefaultDuplicateWindow = 2 * time.Minute
	// DefaultEventsPerMessage is one event per message: no packing.
	DefaultEventsPerMessage = 1
	// DefaultMaxMessageBytes bounds a packed message's body: half of
	// nats-server's default max_payload (1 MiB), leaving room for the
	// headers and for servers whose limit is a little lower.
	DefaultMaxMessageBytes = 512 << 10
)

// MaxEventsPerMessage is the most events a packed message may hold.
const MaxEventsPerMessage = 4096

// Bounds of "max_message_bytes": a packed message's body at least 1 KiB
// and at most 64 MiB, nats-server's own ceiling for max_payload.
const (
	MinMaxMessageBytes = 1 << 10
	MaxMaxMessageBytes = 64 << 20
)

// MaxTimeout bounds "timeout": flowtap counts a plugin that has not
// acknowledged a batch within 30 s as hung and kills it, so a Write must
// end, with its error, well before that.
const MaxTimeout = 25 * time.Second

// EventToken is the placeholder in "subject" that each event's name
// replaces.
const EventToken = "{event}"

// HostToken is the placeholder in "subject" that each event's host name
// replaces (as HostSubjectToken spells it).
const HostToken = "{host}"

// MaxReplicas is the most replicas a JetStream stream can have.
const MaxReplicas = 5

// reconnectBufSize bounds what the connection buffers while it is
// reconnecting (nats.go's default): Write waits for the connection before
// it publishes, so only a batch cut off in the middle lands there.
const reconnectBufSize = 8 << 20

// Config is the NATS sink's configuration, as it appears in the pipeline
// file under the sink's "config".
type Config struct {
	// Servers are the NATS servers to connect to, nats:// or tls:// URLs
	// (required). The client picks one and fails over to the others.
	Servers []string `json:"servers"`
	// Subject is the subject each event is published on (required).
	// "{event}", standing for a whole token, is replaced by the event's
	// name, and "{host}" by its host name: "flowtap.{host}.{event}"
	// publishes the net_flow_tcp_end events of host web-1 on
	// "flowtap.web-1.net_flow_tcp_end".
	Subject string `json:"subject"`
	// JetStream publishes through JetStream and waits for every
	// message's acknowledgement (the default, nil, is true). false
	// publishes on core NATS, which acknowledges nothing.
	JetStream *bool `json:"jetstream"`
	// Stream names the stream that must capture the subject; checked at
	// start. Optional: without it, some stream must capture it.
	Stream string `json:"stream"`
	// CreateStream creates Stream, capturing the subject, when it does
	// not exist, with Replicas, MaxAge, MaxBytes, Discard and
	// DuplicateWindow. An existing stream is never changed.
	CreateStream bool `json:"create_stream"`
	// Replicas is how many servers of a cluster store each message of a
	// created stream, 1 to 5 (default 1). With create_stream only.
	Replicas int `json:"replicas"`
	// MaxAge is how long a created stream keeps a message (Go duration;
	// default "24h"). With create_stream only.
	MaxAge string `json:"max_age"`
	// MaxBytes bounds a created stream's size; the oldest messages go
	// first. 0 (the default) is no bound. With create_stream only.
	MaxBytes int64 `json:"max_bytes"`
	// Discard says what a created stream does at its MaxBytes: "old"
	// (the default) drops the oldest messages, "new" refuses new ones,
	// and the sink's writes fail. With create_stream only.
	Discard string `json:"discard"`
	// DuplicateWindow is how long a created stream remembers message
	// ids to drop resent copies (Go duration; default "2m"). With
	// create_stream only.
	DuplicateWindow string `json:"duplicate_window"`
	// Timeout bounds one Write: waiting for the connection, publishing
	// and every acknowledgement (Go duration; default "10s", at most
	// "25s").
	Timeout string `json:"timeout"`
	// ConnectTimeout bounds the connection to each server at start (Go
	// duration; default "5s").
	ConnectTimeout string `json:"connect_timeout"`
	// MaxInFlight bounds the messages published and not yet acknowledged
	// (JetStream only; default 1024).
	MaxInFlight int `json:"max_in_flight"`
	// EventsPerMessage packs up to this many events of one subject into
	// one message, as JSON lines (default 1: a message per event, each
	// body one JSON object). Packing spares the servers their cost per
	// message; see the README's "Packed messages".
	EventsPerMessage int `json:"events_per_message"`
	// MaxMessageBytes bounds the body of a packed message (default 512
	// KiB); an event larger than it travels alone. With
	// events_per_message above 1 only. At start it must fit, with the
	// headers, within the server's max_payload and the stream's
	// max_msg_size.
	MaxMessageBytes int `json:"max_message_bytes"`
	// User and Password authenticate with a user name and password.
	User     string `json:"user"`
	Password string `json:"password" sinkconf:"secret"`
	// Token authenticates with a token.
	Token string `json:"token" sinkconf:"secret"`
	// CredsFile authenticates with a credentials file (a user JWT and its
	// NKey seed, as nsc writes it).
	CredsFile string `json:"creds_file" sinkconf:"secret"`
	// NkeySeedFile authenticates with an NKey: a file holding the seed.
	NkeySeedFile string `json:"nkey_seed_file" sinkconf:"secret"`
	// TLS configures tls:// connections (and makes TLS required when set).
	TLS TLSConfig `json:"tls"`
	// Headers are added to every message.
	Headers map[string]string `json:"headers" sinkconf:"secret"`
}

// TLSConfig configures the client side of TLS.
type TLSConfig struct {
	// CAFile is a PEM bundle of the CAs to trust instead of the system's.
	CAFile string `json:"ca_file"`
	// CertFile and KeyFile are a client certificate and its key (PEM),
	// for servers that verify clients. Both or neither.
	CertFile string `json:"cert_file"`
	KeyFile  string `json:"key_file"`
	// ServerName overrides the name the server certificate is checked
	// against (default: the host of the server URL).
	ServerName string `json:"server_name"`
}

// settings are a validated Config.
type settings struct {
	servers         []string
	subject         string // with EventToken, if any
	jetstream       bool
	stream          string
	createStream    bool
	replicas        int
	maxAge          time.Duration
	maxBytes        int64
	discard         jetstream.DiscardPolicy
	duplicateWindow time.Duration
	timeout         time.Duration
	connectTimeout  time.Duration
	maxInFlight     int
	perMessage      int           // events per message; 1: no packing
	maxMessageBytes int           // with perMessage > 1: bound of a packed body
	auth            natsgo.Option // nil: no authentication
	authName        string        // which method, for the log
	tls             *tls.Config   // nil: TLS only where a URL says tls://
	headers         natsgo.Header
}

// CheckConfig reports every problem of a NATS sink config without
// connecting: what flowtap checks in its own process before any plugin
// starts (flowtap config validate).
func CheckConfig(config []byte) error {
	_, err := parseConfig(config)
	return err
}

// parseConfig validates config, reporting every problem by key. It reads
// the files the config names, and connects to nothing.
func parseConfig(config []byte) (*settings, error) {
	var cfg Config
	if err := sinkconf.Decode(config, &cfg); err != nil {
		return nil, err
	}
	var p sinkconf.Problems
	st := &settings{
		jetstream: cfg.JetStream == nil || *cfg.JetStream,
		stream:    cfg.Stream, createStream: cfg.CreateStream, maxBytes: cfg.MaxBytes,
		replicas: cmp.Or(cfg.Replicas, 1), maxAge: DefaultMaxAge, duplicateWindow: DefaultDuplicateWindow,
		timeout: DefaultTimeout, connectTimeout: DefaultConnectTimeout,
		maxInFlight:     cmp.Or(cfg.MaxInFlight, DefaultMaxInFlight),
		perMessage:      cmp.Or(cfg.EventsPerMessage, DefaultEventsPerMessage),
		maxMessageBytes: cmp.Or(cfg.MaxMessageBytes, DefaultMaxMessageBytes),
	}
	st.servers = parseServers(&p, cfg.Servers)
	if err := checkSubject(cfg.Subject); err != nil {
		p.Add("subject", "%v", err)
	} else {
		st.subject = cfg.Subject
	}
	parseStream(&p, &cfg, st)
	p.Duration("timeout", cfg.Timeout, &st.timeout)
	if st.timeout > MaxTimeout {
		p.Add("timeout", "must be at most %s, not %s: flowtap counts a sink that has not acknowledged a batch within 30s as hung", MaxTimeout, cfg.Timeout)
	}
	p.Duration("connect_timeout", cfg.ConnectTimeout, &st.connectTimeout)
	if cfg.MaxInFlight < 0 {
		p.Add("max_in_flight", "must be 1 or more, not %d", cfg.MaxInFlight)
	}
	parsePacking(&p, &cfg)
	parseAuth(&p, &cfg, st)
	t := cfg.TLS
	if t != (TLSConfig{}) {
		st.tls = p.TLS("tls", sinkconf.TLSFiles{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile, ServerName: t.ServerName})
	}
	st.headers = parseHeaders(&p, cfg.Headers, st.perMessage > 1)
	if err := p.Err(); err != nil {
		return nil, err
	}
	return st, nil
}

// parseServers checks the server URLs.
func parseServers(p *sinkconf.Problems, servers []string) []string {
	if len(servers) == 0 {
		p.Add("servers", "missing: list the NATS servers to publish to, e.g. [nats://127.0.0.1:4222]")
		return nil
	}
	for i, s := range servers {
		key := fmt.Sprintf("servers[%d]", i)
		u, err := url.Parse(s)
		switch {
		case err != nil || u.Host == "" || u.Hostname() == "":
			p.Add(key, "%q is not a URL such as nats://host:4222 or tls://host:4222", s)
		case u.Scheme != "nats" && u.Scheme != "tls":
			p.Add(key, "%q: scheme %q is not nats or tls", s, u.Scheme)
		case u.User != nil:
			p.Add(key, "%q holds credentials: set them in user and password, or token, instead", u.Redacted())
		case u.Path != "" && u.Path != "/" || u.RawQuery != "":
			p.Add(key, "%q: a server URL has no path or query", s)
		}
	}
	return servers
}

// checkSubject checks the subject template: tokens separated by dots,
// none empty, no wildcards or white space, and EventToken and HostToken,
// if present, each standing for a whole token.
func checkSubject(subject string) error {
	if subject == "" {
		return fmt.Errorf("missing: set the subject to publish on, e.g. \"flowtap.%s\"", EventToken)
	}
	for tok := range strings.SplitSeq(subject, ".") {
		if tok == EventToken || tok == HostToken {
			continue
		}
		for _, ph := range []string{EventToken, HostToken} {
			if strings.Contains(tok, ph) {
				return fmt.Errorf("%q: %s must be a whole token (between dots), as in \"flowtap.%s.%s\"", subject, ph, HostToken, EventToken)
			}
		}
		if err := checkToken(tok); err != nil {
			return fmt.Errorf("%q: %w", subject, err)
		}
	}
	return nil
}

// checkToken checks one token of a subject to publish on.
func checkToken(tok string) error {
	switch {
	case tok == "":
		return fmt.Errorf("empty token (a leading, trailing or doubled dot)")
	case tok == "*" || tok == ">":
		return fmt.Errorf("wildcard %q: a message is published on one subject (use %s for one subject per event)", tok, EventToken)
	}
	for _, r := range tok {
		if r <= ' ' || r == 0x7f || r == '*' || r == '>' {
			return fmt.Errorf("token %q has %q: tokens have no white space, control characters or wildcards", tok, r)
		}
	}
	return nil
}

// parseStream checks the stream keys.
func parseStream(p *sinkconf.Problems, cfg *Config, st *settings) {
	if cfg.Stream != "" && strings.ContainsAny(cfg.Stream, ".*> \t\r\n/\\") {
		p.Add("stream", "%q is not a stream name: no dots, wildcards, slashes or white space", cfg.Stream)
	}
	if !st.jetstream && (cfg.Stream != "" || cfg.CreateStream) {
		p.Add("jetstream", "false (core NATS) does not go with stream or create_stream: streams are JetStream's")
	}
	if cfg.CreateStream && cfg.Stream == "" {
		p.Add("create_stream", "name the stream to create in stream")
	}
	if !cfg.CreateStream {
		for key, set := range map[string]bool{"replicas": cfg.Replicas != 0, "max_age": cfg.MaxAge != "", "max_bytes": cfg.MaxBytes != 0,
			"discard": cfg.Discard != "", "duplicate_window": cfg.DuplicateWindow != ""} {
			if set {
				p.Add(key, "applies to a stream the sink creates: set create_stream: true (an existing stream is never changed)")
			}
		}
	}
	p.Duration("max_age", cfg.MaxAge, &st.maxAge)
	p.Duration("duplicate_window", cfg.DuplicateWindow, &st.duplicateWindow)
	if cfg.MaxBytes < 0 {
		p.Add("max_bytes", "must be 0 (no bound) or more, not %d", cfg.MaxBytes)
	}
	if cfg.Replicas < 0 || cfg.Replicas > MaxReplicas {
		p.Add("replicas", "must be 1 to %d, not %d (3 survives the loss of one server)", MaxReplicas, cfg.Replicas)
	}
	switch cfg.Discard {
	case "", "old":
		st.discard = jetstream.DiscardOld
	case "new":
		st.discard = jetstream.DiscardNew
	default:
		p.Add("discard", "%q is not old or new: old drops the oldest messages when the stream is full, new refuses new ones", cfg.Discard)
	}
	if st.duplicateWindow > st.maxAge {
		p.Add("duplicate_window", "%s is longer than max_age %s", st.duplicateWindow, st.maxAge)
	}
}

// parsePacking checks events_per_message and max_message_bytes.
func parsePacking(p *sinkconf.Problems, cfg *Config) {
	if n := cfg.EventsPerMessage; n < 0 || n > MaxEventsPerMessage {
		p.Add("events_per_message", "must be 1 (a message per event) to %d (events of one subject packed into a message), not %d", MaxEventsPerMessage, n)
	}
	if cfg.MaxMessageBytes == 0 {
		return
	}
	if cfg.EventsPerMessage <= 1 {
		p.Add("max_message_bytes", "applies to packed messages: set events_per_message above 1 (a message of one event is as large as the event)")
	}
	if b := cfg.MaxMessageBytes; b < MinMaxMessageBytes || b > MaxMaxMessageBytes {
		p.Add("max_message_bytes", "must be %d to %d (and within the server's max_payload), not %d", MinMaxMessageBytes, MaxMaxMessageBytes, b)
	}
}

// parseAuth checks that at most one authentication method is set and
// prepares it, reading the files it names.
func parseAuth(p *sinkconf.Problems, cfg *Config, st *settings) {
	var methods []string // the key of each method set
	if cfg.User != "" || cfg.Password != "" {
		methods = append(methods, "user")
		if cfg.User == "" || cfg.Password == "" {
			p.Add("user", "set both user and password, or neither")
		}
		st.auth, st.authName = natsgo.UserInfo(cfg.User, cfg.Password), "user/password"
	}
	if cfg.Token != "" {
		methods = append(methods, "token")
		st.auth, st.authName = natsgo.Token(cfg.Token), "token"
	}
	if cfg.CredsFile != "" {
		methods = append(methods, "creds_file")
		if err := checkCredsFile(cfg.CredsFile); err != nil {
			p.Add("creds_file", "%v", err)
		}
		st.auth, st.authName = natsgo.UserCredentials(cfg.CredsFile), "creds_file"
	}
	if cfg.NkeySeedFile != "" {
		methods = append(methods, "nkey_seed_file")
		opt, err := natsgo.NkeyOptionFromSeed(cfg.NkeySeedFile)
		if err != nil {
			p.Add("nkey_seed_file", "%s: %v (want a file holding an NKey user seed, SU...)", cfg.NkeySeedFile, err)
		}
		st.auth, st.authName = opt, "nkey_seed_file"
	}
	if len(methods) > 1 {
		first := methods[0]
		if first == "user" {
			first = "user/password"
		}
		for _, key := range methods[1:] {
			p.Add(key, "%s is set too: use at most one authentication method: user and password, token, creds_file or nkey_seed_file", first)
		}
	}
}

// checkCredsFile checks that path holds a user JWT and an NKey seed, as
// nats.go reads it when it connects.
func checkCredsFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	tok, err := jwt.ParseDecoratedJWT(data)
	if err == nil {
		_, err = jwt.DecodeUserClaims(tok)
	}
	if err != nil {
		return fmt.Errorf("%s holds no user JWT: %w", path, err)
	}
	if _, err := jwt.ParseDecoratedUserNKey(data); err != nil {
		return fmt.Errorf("%s holds no NKey seed: %w", path, err)
	}
	return nil
}

// parseHeaders checks the static headers. Nats-Msg-Id is the sink's own,
// and so, when packed, are Flowtap-Events and Content-Type.
func parseHeaders(p *sinkconf.Problems, headers map[string]string, packed bool) natsgo.Header {
	h := natsgo.Header{}
	for k, v := range headers {
		key := "headers." + k
		switch {
		case k == "" || strings.ContainsFunc(k, func(r rune) bool { return r <= ' ' || r == ':' || r == 0x7f }):
			p.Add(key, "%q is not a header name: no colon, white space or control characters", k)
		case strings.EqualFold(k, jetstream.MsgIDHeader):
			p.Add(key, "the sink sets %s itself, from each event's content", jetstream.MsgIDHeader)
		case packed && (strings.EqualFold(k, EventsHeader) || strings.EqualFold(k, contentTypeHeader)):
			p.Add(key, "the sink sets %s itself on packed messages (events_per_message above 1)", k)
		case strings.ContainsAny(v, "\r\n"):
			p.Add(key, "a header value has no line break")
		default:
			h.Set(k, v)
		}
	}
	return h
}
