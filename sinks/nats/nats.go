// SPDX-License-Identifier: Apache-2.0

// Package nats is the NATS sink: it publishes each event as one message,
// the stdout sink's JSON object, on a subject that may name the event and
// its host ("flowtap.{host}.{event}"). Through JetStream (the default),
// also into a replicated stream on a cluster, a batch is
// acknowledged to flowtap only once the stream has stored every message
// of it; each message carries a Nats-Msg-Id derived from its content, so
// the copies flowtap resends after a failure are dropped by the stream.
// On core NATS (jetstream: false) the sink only flushes the connection:
// nothing confirms that anyone received a message. The plugin binary is
// cmd/flowtap-sink-nats.
package nats

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowtap/flowtap/plugins/sdk"
	"github.com/flowtap/flowtap/sinks/internal/jsonl"
)

// Version is the NATS sink's version, reported in its Info.
const Version = "0.1.0"

// closeTimeout bounds Close: draining the connection, then closing it.
const closeTimeout = 5 * time.Second

// reconnectPoll is how often Write looks whether a lost connection is
// back, while it waits for it.
const reconnectPoll = 10 * time.Millisecond

// Sink is the NATS sink. Create it with New.
type Sink struct {
	st       *settings
	nc       *natsgo.Conn
	js       jetstream.JetStream // for the stream's checks
	pub      *publisher          // publishes through JetStream
	closed   chan struct{}       // closed once the connection is closed
	subjects map[subjectKey]string
	header   natsgo.Header // the static headers, and Nats-Msg-Id
	// data and msgs are the formatted batch, reused from batch to batch:
	// nats.go copies a message before PublishMsg returns.
	data []byte
	msgs []message
	// keys formats the events' JSON, exactly as jsonl.Append, reusing
	// what it rendered for earlier events.
	keys jsonl.Encoder
	// pack groups the events into packed messages (events_per_message
	// above 1).
	pack   packer
	totals totals
	// failing is set while batches fail, so that the cause is logged
	// once when it begins and once when it ends.
	failing bool
}

// subjectKey is what a subject depends on: the event's host and name.
type subjectKey struct{ host, event string }

// totals count the sink's events, and the messages that carried them,
// over its life (one plugin process), logged at Close. Without packing a
// message is an event.
type totals struct {
	batches       uint64 // batches written successfully
	failed        uint64 // batches that failed
	stored        uint64 // events the stream stored
	duplicates    uint64 // events the stream already held (resent copies)
	refused       uint64 // events the stream refused or did not acknowledge in time
	storedMsgs    uint64 // messages the stream stored
	duplicateMsgs uint64 // messages the stream already held
	refusedMsgs   uint64 // messages refused or not acknowledged in time
}

// Interface guard: Sink is a flowtap sink.
var _ sdk.Sink = (*Sink)(nil)

// New returns an unconfigured NATS sink.
func New() *Sink { return &Sink{} }

// Info implements sdk.Sink.
func (s *Sink) Info() sdk.Info { return sdk.Info{Name: "nats", Version: Version} }

// Configure implements sdk.Sink: it validates every key, reporting all
// problems at once, connects to the servers and, with JetStream, checks
// that a stream captures the subject (creating it if told to). With
// sdk.ValidateOnly it only validates the config and reads the files it
// names: it connects to nothing.
func (s *Sink) Configure(ctx context.Context, config []byte) error {
	st, err := parseConfig(config)
	if err != nil {
		return err
	}
	s.st = st
	s.subjects = map[subjectKey]string{}
	s.header = maps.Clone(st.headers)
	s.pack = packer{perMessage: st.perMessage, maxBytes: st.maxMessageBytes}
	if st.perMessage > 1 {
		s.header.Set(contentTypeHeader, PackedContentType)
	}
	if sdk.ValidateOnly() {
		return nil
	}
	if err := s.connect(); err != nil {
		return err
	}
	if err := s.checkMaxPayload(); err != nil {
		s.nc.Close()
		return err
	}
	if st.jetstream {
		if err := s.checkStream(ctx); err != nil {
			s.nc.Close()
			return err
		}
	}
	sdk.Logger().Info("configured NATS sink", "server", s.nc.ConnectedUrlRedacted(), "subject", st.subject,
		"jetstream", st.jetstream, "stream", st.stream, "timeout", st.timeout, "max_in_flight", st.maxInFlight,
		"events_per_message", st.perMessage, "auth", cmp.Or(st.authName, "none"))
	return nil
}

// packedSize is the most bytes a packed message may take, headers
// included; 0 without packing (a message is as large as its event).
func (s *Sink) packedSize() int {
	if s.st.perMessage <= 1 {
		return 0
	}
	return s.st.maxMessageBytes + headerSize(s.header, s.st.perMessage)
}

// checkMaxPayload checks that a packed message fits within the largest
// message the server takes (its max_payload, which it announces when a
// client connects): the sink refuses to start rather than fail every
// batch later. The limit is not clamped to the server's, so that the
// messages a batch packs into never depend on the server connected to.
func (s *Sink) checkMaxPayload() error {
	size, most := s.packedSize(), s.nc.MaxPayload()
	if size == 0 || most <= 0 || int64(size) <= most {
		return nil
	}
	hdr := size - s.st.maxMessageBytes
	return sdk.ConfigError{Key: "max_message_bytes", Message: fmt.Sprintf(
		"%d, plus up to %d bytes of headers, is more than the %d bytes the server %s takes in a message (its max_payload): set max_message_bytes to at most %d, or raise max_payload on every server",
		s.st.maxMessageBytes, hdr, most, s.nc.ConnectedUrlRedacted(), most-int64(hdr))}
}

// checkMaxMsgSize checks that a packed message fits within the stream's
// max_msg_size, if it has one.
func (s *Sink) checkMaxMsgSize(name string, cfg *jetstream.StreamConfig) error {
	size := s.packedSize()
	if size == 0 || cfg.MaxMsgSize <= 0 || size <= int(cfg.MaxMsgSize) {
		return nil
	}
	hdr := size - s.st.maxMessageBytes
	return sdk.ConfigError{Key: "max_message_bytes", Message: fmt.Sprintf(
		"%d, plus up to %d bytes of headers, is more than stream %q takes in a message (its max_msg_size, %d): set max_message_bytes to at most %d, or raise the stream's limit (nats stream edit %s --max-msg-size %d)",
		s.st.maxMessageBytes, hdr, name, cfg.MaxMsgSize, int(cfg.MaxMsgSize)-hdr, name, size)}
}

// connect connects to one of the servers, failing when none answers
// within the connect timeout; later the connection reconnects by itself,
// for ever, logging each change.
func (s *Sink) connect() error {
	st, log := s.st, sdk.Logger()
	s.closed = make(chan struct{})
	closed := s.closed
	opts := []natsgo.Option{
		natsgo.Name("flowtap-sink-nats"),
		natsgo.Timeout(st.connectTimeout),
		natsgo.MaxReconnects(-1), // flowtap's supervisor decides when to give up
		natsgo.ReconnectWait(time.Second),
		natsgo.ReconnectBufSize(reconnectBufSize),
		natsgo.DrainTimeout(closeTimeout),
		natsgo.DisconnectErrHandler(func(nc *natsgo.Conn, err error) {
			if err != nil {
				log.Warn("disconnected from NATS; reconnecting", "error", err)
			}
		}),
		natsgo.ReconnectHandler(func(nc *natsgo.Conn) {
			log.Info("reconnected to NATS", "server", nc.ConnectedUrlRedacted())
		}),
		natsgo.ReconnectErrHandler(func(_ *natsgo.Conn, err error) {
			log.Debug("NATS reconnect attempt failed", "error", err)
		}),
		natsgo.ClosedHandler(func(*natsgo.Conn) {
			log.Debug("NATS connection closed")
			close(closed)
		}),
		natsgo.ErrorHandler(func(_ *natsgo.Conn, _ *natsgo.Subscription, err error) {
			log.Warn("NATS error", "error", err)
		}),
	}
	if st.auth != nil {
		opts = append(opts, st.auth)
	}
	if st.tls != nil {
		opts = append(opts, natsgo.Secure(st.tls))
	}
	nc, err := natsgo.Connect(strings.Join(st.servers, ","), opts...)
	if err != nil {
		return sdk.ConfigError{Key: "servers", Message: connectError(st, err)}
	}
	s.nc = nc
	if st.jetstream {
		s.js, err = jetstream.New(nc, jetstream.WithDefaultTimeout(st.timeout))
		if err == nil {
			s.pub, err = newPublisher(nc, st.maxInFlight)
		}
		if err != nil {
			nc.Close()
			return fmt.Errorf("set up JetStream: %w", err)
		}
	}
	return nil
}

// connectError says why no connection could be made, with a hint.
func connectError(st *settings, err error) string {
	hint := "check that nats-server runs there and that this host reaches it"
	switch {
	case errors.Is(err, natsgo.ErrAuthorization), errors.Is(err, natsgo.ErrAuthExpired):
		hint = "the server refused the credentials: check user/password, token, creds_file or nkey_seed_file"
	case errors.Is(err, natsgo.ErrSecureConnRequired):
		hint = "the server requires TLS: use tls:// URLs, and tls.ca_file for a private CA"
	case errors.Is(err, natsgo.ErrSecureConnWanted):
		hint = "the server does not offer TLS: use nats:// URLs and no tls settings, or enable TLS on the server"
	case isTLSError(err):
		hint = "TLS failed: check tls.ca_file (the CA that signed the server's certificate), tls.server_name and the client certificate"
	}
	return fmt.Sprintf("connect to %s (within %s each): %v: %s", strings.Join(st.servers, ", "), st.connectTimeout, err, hint)
}

// isTLSError reports whether err comes from the TLS handshake: a server
// certificate that does not verify (unknown CA, wrong name, expired), or
// an alert or a record the peer sent that is not TLS.
func isTLSError(err error) bool {
	var (
		verify  *tls.CertificateVerificationError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
		alert   tls.AlertError
		record  tls.RecordHeaderError
	)
	return errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &host) ||
		errors.As(err, &invalid) || errors.As(err, &alert) || errors.As(err, &record)
}

// pattern is the subject with EventToken and HostToken as the wildcard
// "*": every subject the sink may publish on.
func (st *settings) pattern() string {
	return strings.NewReplacer(EventToken, "*", HostToken, "*").Replace(st.subject)
}

// checkStream checks that a stream captures every subject the sink
// publishes on: the named stream (created if it is missing and
// create_stream is set), or, without a name, any stream.
func (s *Sink) checkStream(ctx context.Context) error {
	st, log := s.st, sdk.Logger()
	ctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	pattern := st.pattern()
	if st.stream == "" {
		name, err := s.js.StreamNameBySubject(ctx, pattern)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return sdk.ConfigError{Key: "subject", Message: fmt.Sprintf(
				"no JetStream stream captures %s: create one (nats stream add FLOWTAP --subjects '%s'), or name one in stream with create_stream: true, or set jetstream: false for core NATS",
				pattern, pattern)}
		}
		if err != nil {
			return jetStreamError(err)
		}
		if s.st.perMessage > 1 {
			str, err := s.js.Stream(ctx, name)
			if err != nil {
				return jetStreamError(err)
			}
			if err := s.checkMaxMsgSize(name, &str.CachedInfo().Config); err != nil {
				return err
			}
		}
		log.Info("a JetStream stream captures the subject", "stream", name, "subject", pattern)
		return nil
	}
	str, err := s.js.Stream(ctx, st.stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if !st.createStream {
			return sdk.ConfigError{Key: "stream", Message: fmt.Sprintf(
				"stream %q does not exist: create it (nats stream add %s --subjects '%s'), or set create_stream: true",
				st.stream, st.stream, pattern)}
		}
		str, err = s.createStream(ctx, pattern)
	}
	if err != nil {
		return jetStreamError(err)
	}
	cfg := str.CachedInfo().Config
	subjects := cfg.Subjects
	if len(subjects) == 0 {
		subjects = []string{cfg.Name} // a stream without subjects captures its name
	}
	if !captured(pattern, subjects) {
		return sdk.ConfigError{Key: "stream", Message: fmt.Sprintf(
			"stream %q captures %s, not every subject of %s: add it to the stream's subjects (nats stream edit %s --subjects ...), or change subject",
			st.stream, strings.Join(subjects, ", "), pattern, st.stream)}
	}
	if err := s.checkMaxMsgSize(st.stream, &cfg); err != nil {
		return err
	}
	log.Info("JetStream stream captures the subject", "stream", st.stream, "subject", pattern, "duplicate_window", cfg.Duplicates)
	return nil
}

// createStream creates the configured stream capturing pattern; one
// created meanwhile by someone else (another flowtap) is taken as it is.
func (s *Sink) createStream(ctx context.Context, pattern string) (jetstream.Stream, error) {
	st := s.st
	str, err := s.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        st.stream,
		Description: "flowtap events, created by flowtap-sink-nats",
		Subjects:    []string{pattern},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     st.discard,
		Replicas:    st.replicas,
		MaxAge:      st.maxAge,
		MaxBytes:    cmp.Or(st.maxBytes, -1),
		Duplicates:  st.duplicateWindow,
	})
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return s.js.Stream(ctx, st.stream)
	}
	if err != nil {
		return nil, sdk.ConfigError{Key: "stream", Message: fmt.Sprintf("create stream %q: %v", st.stream, err)}
	}
	sdk.Logger().Info("created JetStream stream", "stream", st.stream, "subject", pattern, "replicas", st.replicas,
		"max_age", st.maxAge, "max_bytes", st.maxBytes, "discard", st.discard, "duplicate_window", st.duplicateWindow)
	return str, nil
}

// jetStreamError explains a failed JetStream API call. No responder to
// the API means that no server of the account runs JetStream.
func jetStreamError(err error) error {
	if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) ||
		errors.Is(err, natsgo.ErrNoResponders) {
		return sdk.ConfigError{Key: "jetstream", Message: fmt.Sprintf(
			"%v: enable JetStream on the server (nats-server -js) and for this account, or set jetstream: false to publish on core NATS", err)}
	}
	var cerr sdk.ConfigError
	if errors.As(err, &cerr) {
		return cerr
	}
	return fmt.Errorf("JetStream API: %w", err)
}

// captured reports whether every subject matching pattern (which may
// hold "*" tokens) matches one of filters.
func captured(pattern string, filters []string) bool {
	for _, f := range filters {
		if subjectSubset(pattern, f) {
			return true
		}
	}
	return false
}

// subjectSubset reports whether every subject that pattern matches also
// matches filter. pattern's tokens are literals or "*"; filter's may also
// end with ">".
func subjectSubset(pattern, filter string) bool {
	p, f := strings.Split(pattern, "."), strings.Split(filter, ".")
	for i, ft := range f {
		if ft == ">" {
			return i == len(f)-1 && len(p) > i
		}
		if i >= len(p) || (ft != "*" && ft != p[i]) {
			return false
		}
	}
	return len(p) == len(f)
}

// Write implements sdk.Sink: it publishes every event of the batch as one
// message and waits, at most timeout, until JetStream has acknowledged
// each (or, on core NATS, until the server has answered a flush). An
// error says how many messages failed and why; flowtap then sends the
// batch again, and the stream drops the copies it already holds.
func (s *Sink) Write(ctx context.Context, batch []sdk.Event) error {
	if s.st == nil || s.nc == nil {
		return errors.New("nats sink: Write before Configure")
	}
	deadline := time.Now().Add(s.st.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := s.waitConnected(ctx, deadline); err != nil {
		return s.failed(fmt.Errorf("publish %d events to NATS: %w", len(batch), err))
	}
	if err := s.format(batch); err != nil {
		return fmt.Errorf("publish %d events to NATS: %w", len(batch), err)
	}
	if !s.st.jetstream {
		return s.publishCore(len(batch), deadline)
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	return s.publishJetStream(ctx, len(batch))
}

// waitConnected waits until the connection is up, at most until deadline:
// publishing while it reconnects would only fill its buffer with messages
// that are then likely to time out, and be sent twice.
func (s *Sink) waitConnected(ctx context.Context, deadline time.Time) error {
	if s.nc.IsConnected() {
		return nil
	}
	start := time.Now()
	t := time.NewTicker(reconnectPoll)
	defer t.Stop()
	for !s.nc.IsConnected() {
		if s.nc.IsClosed() {
			return fmt.Errorf("connection closed: %w", natsgo.ErrConnectionClosed)
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("not connected to any server after waiting %s (%s): %v", time.Since(start).Round(time.Millisecond), s.nc.Status(), s.nc.LastError())
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("waiting for the connection: %w", ctx.Err())
		}
	}
	return nil
}

// format formats batch into s.msgs: each event's JSON, on its subject,
// with its Nats-Msg-Id; or, packed, the events' JSON lines grouped into
// messages by subject. The bodies share one buffer, and the ids one
// string.
func (s *Sink) format(batch []sdk.Event) error {
	if s.st.perMessage > 1 {
		if err := s.formatPacked(batch); err != nil {
			return err
		}
	} else if err := s.formatSingle(batch); err != nil {
		return err
	}
	ids := make([]byte, 0, len(s.msgs)*msgIDLen)
	for i := range s.msgs {
		ids = appendMsgID(ids, s.msgs[i].body)
	}
	all := string(ids)
	for i := range s.msgs {
		s.msgs[i].id = all[i*msgIDLen : (i+1)*msgIDLen]
	}
	return nil
}

// formatSingle formats each event of batch as a message of its own, its
// body the event's JSON object.
func (s *Sink) formatSingle(batch []sdk.Event) error {
	data := s.data[:0]
	s.msgs = s.msgs[:0]
	for i := range batch {
		ev := &batch[i]
		subject, err := s.subject(ev)
		if err != nil {
			return err
		}
		start := len(data)
		data = s.keys.Append(data, ev)
		data = data[:len(data)-1] // without the newline
		s.msgs = append(s.msgs, message{subject: subject, body: data[start:len(data):len(data)], events: 1})
	}
	if cap(data) > cap(s.data) {
		// The buffer grew: the bodies point into the new one.
		s.data = data
	}
	return nil
}

// formatPacked formats batch into packed messages: the events of one
// subject, in their order, up to events_per_message a message and
// max_message_bytes of JSON lines (see packer).
func (s *Sink) formatPacked(batch []sdk.Event) error {
	p := &s.pack
	p.lines, p.ends, p.subjs = p.lines[:0], p.ends[:0], p.subjs[:0]
	for i := range batch {
		ev := &batch[i]
		subject, err := s.subject(ev)
		if err != nil {
			return err
		}
		p.lines = s.keys.Append(p.lines, ev)
		p.ends = append(p.ends, len(p.lines))
		p.subjs = append(p.subjs, subject)
	}
	s.msgs = p.group(s.msgs)
	s.data = p.bodies(s.msgs, s.data)
	clear(p.subjs) // the subjects stay in the messages while they live
	return nil
}

// msgIDLen is the length of a Nats-Msg-Id: 128 bits in unpadded base64.
const msgIDLen = 22

// MsgID is the Nats-Msg-Id of a message whose body is the event's JSON:
// the first 128 bits of its SHA-256, in unpadded base64url (22
// characters). The same event resent by flowtap has the same JSON, and so
// the same id.
func MsgID(body []byte) string {
	return string(appendMsgID(nil, body))
}

// appendMsgID appends body's MsgID to b.
func appendMsgID(b, body []byte) []byte {
	sum := sha256.Sum256(body)
	return base64.RawURLEncoding.AppendEncode(b, sum[:16])
}

// subject returns the subject of ev: the configured one with its host
// and event name in place of HostToken and EventToken.
func (s *Sink) subject(ev *sdk.Event) (string, error) {
	key := subjectKey{ev.Context.HostName, ev.Name}
	if subj, ok := s.subjects[key]; ok {
		return subj, nil
	}
	subj := s.st.subject
	if strings.Contains(subj, EventToken) {
		err := checkToken(ev.Name)
		if err == nil && strings.Contains(ev.Name, ".") {
			err = errors.New("it holds a dot")
		}
		if err != nil {
			return "", fmt.Errorf("event name %q cannot stand for %s in subject %q: %w", ev.Name, EventToken, subj, err)
		}
		subj = strings.ReplaceAll(subj, EventToken, ev.Name)
	}
	subj = strings.ReplaceAll(subj, HostToken, HostSubjectToken(ev.Context.HostName))
	if len(s.subjects) >= maxSubjects {
		clear(s.subjects) // a bound, for a sink fed by ever new host names
	}
	s.subjects[key] = subj
	return subj, nil
}

// maxSubjects bounds the cache of subjects.
const maxSubjects = 4096

// HostSubjectToken is the subject token that stands for host name h in
// place of HostToken: h with each character a token cannot hold (dot,
// wildcard, white space, control character) replaced by "_", or "_" for
// an unknown (empty) host name. "web-1.example.com" becomes
// "web-1_example_com"; the message's JSON keeps the name as it is.
func HostSubjectToken(h string) string {
	if h == "" {
		return "_"
	}
	if !strings.ContainsFunc(h, badTokenRune) {
		return h
	}
	b := []byte(h)
	for i, c := range b {
		if badTokenRune(rune(c)) { // never a byte of a multi-byte character
			b[i] = '_'
		}
	}
	return string(b)
}

// badTokenRune reports whether r cannot be part of a subject token.
func badTokenRune(r rune) bool {
	return r <= ' ' || r == 0x7f || r == '.' || r == '*' || r == '>'
}

// publishCore publishes the formatted batch of n events on core NATS
// and flushes the connection.
func (s *Sink) publishCore(n int, deadline time.Time) error {
	msgs := s.msgs
	hv := setHeaders(s.header, msgs)
	var m natsgo.Msg
	for i := range msgs {
		hv.set(&msgs[i])
		m = natsgo.Msg{Subject: msgs[i].subject, Header: s.header, Data: msgs[i].body}
		if err := s.nc.PublishMsg(&m); err != nil {
			left := 0
			for j := i; j < len(msgs); j++ {
				left += msgs[j].weight()
			}
			return s.failed(fmt.Errorf("publish %d events to NATS: %d of %d not published%s: %w", n, left, n, s.inMessages(len(msgs)-i, len(msgs)), err))
		}
	}
	wait := time.Until(deadline)
	if wait <= 0 {
		return s.failed(fmt.Errorf("publish %d events to NATS: no time left to flush within %s", n, s.st.timeout))
	}
	if err := s.nc.FlushTimeout(wait); err != nil {
		return s.failed(fmt.Errorf("publish %d events to NATS: flush: %w", n, err))
	}
	s.succeeded()
	return nil
}

// publishJetStream publishes the formatted batch through JetStream, at
// most max_in_flight messages unacknowledged at a time, and waits for
// every acknowledgement, until ctx ends.
func (s *Sink) publishJetStream(ctx context.Context, n int) error {
	// After a failed batch, and until one succeeds, a batch nobody
	// receives fails at once: the first rode out a short outage (a leader
	// election) for up to timeout, and flowtap's backoff paces the rest.
	t := s.pub.send(ctx, s.msgs, s.header, !s.failing)
	s.totals.stored += uint64(t.stored)
	s.totals.duplicates += uint64(t.duplicates)
	s.totals.storedMsgs += uint64(t.storedMsgs)
	s.totals.duplicateMsgs += uint64(t.duplicateMsgs)
	if t.duplicates > 0 {
		sdk.Logger().Debug("the stream already held some events of the batch (a batch sent again)", "duplicates", t.duplicates, "events", n)
	}
	if t.fails.n > 0 {
		s.totals.refused += uint64(t.fails.n)
		s.totals.refusedMsgs += uint64(t.fails.msgs)
		return s.failed(fmt.Errorf("publish %d events to NATS JetStream: %d of %d not stored%s: %s",
			n, t.fails.n, n, s.inMessages(t.fails.msgs, len(s.msgs)), t.fails.describe(s.hint)))
	}
	s.succeeded()
	return nil
}

// inMessages says, for packed messages, in how many of how many messages
// the events were: " (in 2 of 40 messages)"; "" without packing.
func (s *Sink) inMessages(k, of int) string {
	if s.st.perMessage <= 1 {
		return ""
	}
	return fmt.Sprintf(" (in %d of %d packed messages)", k, of)
}

// failed counts a failed batch and logs the failure when it begins a
// series; it returns err.
func (s *Sink) failed(err error) error {
	s.totals.failed++
	if !s.failing {
		s.failing = true
		sdk.Logger().Error("NATS does not take the events; flowtap will send them again", "error", err)
	}
	return err
}

// succeeded counts a batch written, and logs the end of a series of
// failures.
func (s *Sink) succeeded() {
	s.totals.batches++
	if s.failing {
		s.failing = false
		sdk.Logger().Info("NATS takes the events again", "stored", s.totals.stored, "failed_batches", s.totals.failed)
	}
}

// errNoAck is the failure of a message whose acknowledgement did not come
// in time.
var errNoAck = errors.New("no acknowledgement in time")

// JetStream error codes the sink explains (nats-server's errors.json).
const (
	errCodeStoreFailed           jetstream.ErrorCode = 10077 // a stream limit with discard new
	errCodeInsufficientResources jetstream.ErrorCode = 10023 // the server's storage is full
)

// hint says what to do about a failed message's error, or "".
func (s *Sink) hint(err error) string {
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeStoreFailed:
		return fmt.Sprintf("the stream is full and, with discard new, refuses new messages: raise its max_bytes or max_msgs, shorten its max_age, or let it drop the oldest with nats stream edit %s --discard old", cmp.Or(s.st.stream, "STREAM"))
	case errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeInsufficientResources:
		return "the server's JetStream storage is full: raise max_file_store on the servers, or free disk space"
	case errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum && s.st.perMessage > 1:
		return "a packed message is larger than the stream's max_msg_size: lower max_message_bytes, or raise the stream's max_msg_size"
	case errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum:
		return "an event is larger than the stream's max_msg_size: raise it"
	case errors.Is(err, natsgo.ErrNoResponders):
		return "no server takes the subject: the stream has no leader (a cluster lost its quorum), was deleted, or JetStream is not available"
	case errors.Is(err, errNoAck):
		return "the stream may have no leader (a node failed, or a cluster lost its quorum), or it is overloaded"
	}
	return ""
}

// failures counts failed events (and the messages that held them) by
// cause.
type failures struct {
	n      int // events
	msgs   int // messages
	causes []string
	counts map[string]int   // events by cause
	errs   map[string]error // the first error of each cause
}

// add counts msgs messages of n events in all failed with err.
func (f *failures) add(msgs, n int, err error) {
	if f.counts == nil {
		f.counts, f.errs = map[string]int{}, map[string]error{}
	}
	msg := err.Error()
	if _, ok := f.counts[msg]; !ok {
		f.causes = append(f.causes, msg)
		f.errs[msg] = err
	}
	f.counts[msg] += n
	f.n += n
	f.msgs += msgs
}

// String lists the causes with their counts, the first few only.
func (f failures) String() string { return f.describe(nil) }

// describe lists the causes with their counts, the first few only, each
// followed by its hint, if hint gives one.
func (f failures) describe(hint func(error) string) string {
	const most = 3
	var b strings.Builder
	for i, c := range f.causes {
		if i == most {
			fmt.Fprintf(&b, "; and %d other causes", len(f.causes)-most)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%d: %s", f.counts[c], c)
		if hint != nil {
			if h := hint(f.errs[c]); h != "" {
				fmt.Fprintf(&b, ": %s", h)
			}
		}
	}
	return b.String()
}

// Close implements sdk.Sink: it drains the connection (publishing what is
// buffered), at most closeTimeout, then closes it. Every acknowledged
// batch was stored (or flushed) within its Write, so nothing is lost here.
func (s *Sink) Close(ctx context.Context) error {
	if s.nc == nil {
		return nil
	}
	nc := s.nc
	s.nc = nil
	t := s.totals
	if s.pub != nil {
		// stored, duplicates and not_stored count events; the *_messages
		// the messages that held them (the same without packing).
		sdk.Logger().Info("NATS sink totals", "batches", t.batches, "failed_batches", t.failed, "stored", t.stored,
			"duplicates", t.duplicates, "not_stored", t.refused, "stored_messages", t.storedMsgs,
			"duplicate_messages", t.duplicateMsgs, "not_stored_messages", t.refusedMsgs, "late_acks", s.pub.lateAcks())
		s.pub.close()
	} else {
		sdk.Logger().Info("NATS sink totals", "batches", t.batches, "failed_batches", t.failed)
	}
	ctx, cancel := context.WithTimeout(ctx, closeTimeout)
	defer cancel()
	err := nc.Drain()
	if errors.Is(err, natsgo.ErrConnectionReconnecting) || errors.Is(err, natsgo.ErrConnectionClosed) {
		err = nil // Drain has closed it: nothing to flush on a lost connection
	}
	select {
	case <-s.closed:
	case <-ctx.Done():
		nc.Close()
		err = fmt.Errorf("drain did not finish within %s: %w", closeTimeout, ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("close NATS connection: %w", err)
	}
	return nil
}
