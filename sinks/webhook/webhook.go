// SPDX-License-Identifier: Apache-2.0

// Package webhook is the webhook sink: it POSTs events as JSON to an HTTP
// endpoint, in batches, retrying failed requests with exponential
// backoff, with custom headers and TLS settings. The plugin binary is
// cmd/flowtap-sink-webhook.
//
// Each request's body is a JSON array of events, each in the stdout
// sink's json format; Content-Type is application/json. A batch is
// acknowledged to flowtap only once every POST of it got a 2xx answer.
package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/flowtap/flowtap/plugins/sdk"
	"github.com/flowtap/flowtap/sinks/internal/jsonl"
)

// Version is the webhook sink's version, reported in its Info.
const Version = "0.1.0"

// Sink is the webhook sink. Create it with New.
type Sink struct {
	st       *settings
	client   *http.Client
	shownURL string // st.url with its password redacted, for logs and errors
	body     []byte
	json     jsonl.Encoder // formats the events, with its caches
	// sleep waits between attempts; tests shorten it.
	sleep func(ctx context.Context, d time.Duration) error
}

// Interface guard: Sink is a flowtap sink.
var _ sdk.Sink = (*Sink)(nil)

// New returns an unconfigured webhook sink.
func New() *Sink { return &Sink{sleep: sleepCtx} }

// Info implements sdk.Sink.
func (s *Sink) Info() sdk.Info { return sdk.Info{Name: "webhook", Version: Version} }

// Configure implements sdk.Sink: it validates every key and reporting all
// problems at once, and prepares the HTTP client. It does not contact the
// endpoint.
func (s *Sink) Configure(_ context.Context, config []byte) error {
	st, err := parseConfig(config)
	if err != nil {
		return err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = st.tls
	s.st = st
	s.client = &http.Client{Transport: transport, Timeout: st.timeout}
	s.shownURL = redactURL(st.url)
	if st.insecure {
		// Said at every start, so that it is never forgotten.
		sdk.Logger().Warn("tls.insecure_skip_verify is set: the server's certificate is not checked, so anyone on the path can read and change the events (for tests only)",
			"url", s.shownURL)
	}
	sdk.Logger().Info("configured webhook sink", "url", s.shownURL, "batch_size", st.batchSize,
		"timeout", st.timeout, "max_attempts", st.maxAttempts)
	return nil
}

// Write implements sdk.Sink: it posts the batch in requests of at most
// batch_size events, each retried until it succeeds or its attempts run
// out. An error means some part of the batch was not accepted by the
// endpoint. flowtap then sends the whole batch again, so when earlier
// parts were accepted, or a request failed without saying whether the
// endpoint took it, the error is an sdk.PartialWriteError counting those
// events: flowtap reports them as possible duplicates. A request retried
// after such an unclear failure, and then accepted, may also have
// reached the endpoint twice: sdk.NoteDuplicates counts it.
func (s *Sink) Write(ctx context.Context, batch []sdk.Event) error {
	if s.st == nil {
		return errors.New("webhook sink: Write before Configure")
	}
	delivered := 0 // events of requests accepted
	for start := 0; start < len(batch); start += s.st.batchSize {
		part := batch[start:min(start+s.st.batchSize, len(batch))]
		s.body = append(s.body[:0], '[')
		for i := range part {
			if i > 0 {
				s.body = append(s.body, ',')
			}
			line := s.json.Append(s.body, &part[i])
			s.body = line[:len(line)-1] // without the newline
		}
		s.body = append(s.body, ']')
		unclear, err := s.post(ctx, len(part))
		if err != nil {
			// Each unclear attempt may have left a copy of the part; the
			// resend adds one more.
			sdk.NoteDuplicates(ctx, max(unclear-1, 0)*len(part))
			if maybe := delivered + min(unclear, 1)*len(part); maybe > 0 {
				return &sdk.PartialWriteError{MaybeDelivered: maybe, Err: err}
			}
			return err
		}
		// Each unclear attempt before the one accepted may have been
		// taken too.
		sdk.NoteDuplicates(ctx, unclear*len(part))
		delivered += len(part)
	}
	return nil
}

// post sends s.body, with retries. It returns how many attempts failed
// without saying whether the endpoint took the request (a timeout, a
// connection lost after sending).
func (s *Sink) post(ctx context.Context, n int) (unclear int, err error) {
	wait := s.st.initialBackoff
	for attempt := 1; attempt <= s.st.maxAttempts; attempt++ {
		var retry, maybe bool
		retry, maybe, err = s.postOnce(ctx)
		if err == nil {
			return unclear, nil
		}
		if maybe {
			unclear++
		}
		if !retry || attempt == s.st.maxAttempts {
			break
		}
		sdk.Logger().Warn("webhook POST failed; retrying", "url", s.shownURL, "attempt", attempt, "in", wait, "error", err)
		if serr := s.sleep(ctx, wait); serr != nil {
			return unclear, fmt.Errorf("post %d events to %s: %w (gave up waiting to retry: %w)", n, s.shownURL, err, serr)
		}
		wait = min(wait*2, s.st.maxBackoff)
	}
	return unclear, fmt.Errorf("post %d events to %s: %w", n, s.shownURL, err)
}

// postOnce makes one request; retry says whether another attempt may
// succeed (network errors, 408, 429 and 5xx answers), maybe whether the
// endpoint may have taken the request although it failed (no answer came
// after it was sent).
func (s *Sink) postOnce(ctx context.Context) (retry, maybe bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.st.url, bytes.NewReader(s.body))
	if err != nil {
		return false, false, err
	}
	for k, v := range s.st.headers {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "flowtap-sink-webhook/"+Version)
	resp, err := s.client.Do(req)
	if err != nil {
		// A connection that could not be made carried nothing; any
		// other failure may have come after the request arrived.
		var op *net.OpError
		sent := !(errors.As(err, &op) && op.Op == "dial")
		return ctx.Err() == nil, sent, err
	}
	defer resp.Body.Close()
	// Read a little of the answer, for the error, and let the connection
	// be reused.
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return false, false, nil
	}
	err = fmt.Errorf("server answered %s: %s", resp.Status, bytes.TrimSpace(msg))
	switch c := resp.StatusCode; {
	case c == http.StatusRequestTimeout, c == http.StatusTooManyRequests, c >= 500:
		return true, false, err
	}
	return false, false, fmt.Errorf("%w (status %s is not retried)", err, strconv.Itoa(resp.StatusCode))
}

// Close implements sdk.Sink. Every batch was posted within its Write, so
// there is nothing to flush.
func (s *Sink) Close(context.Context) error {
	if s.client != nil {
		s.client.CloseIdleConnections()
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
