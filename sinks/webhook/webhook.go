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
	st     *settings
	client *http.Client
	body   []byte
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
	sdk.Logger().Info("configured webhook sink", "url", st.url, "batch_size", st.batchSize,
		"timeout", st.timeout, "max_attempts", st.maxAttempts)
	return nil
}

// Write implements sdk.Sink: it posts the batch in requests of at most
// batch_size events, each retried until it succeeds or its attempts run
// out. An error means some part of the batch was not accepted by the
// endpoint (earlier parts may have been: flowtap's resend can then
// deliver them twice).
func (s *Sink) Write(ctx context.Context, batch []sdk.Event) error {
	if s.st == nil {
		return errors.New("webhook sink: Write before Configure")
	}
	for start := 0; start < len(batch); start += s.st.batchSize {
		part := batch[start:min(start+s.st.batchSize, len(batch))]
		s.body = append(s.body[:0], '[')
		for i := range part {
			if i > 0 {
				s.body = append(s.body, ',')
			}
			line := jsonl.Append(s.body, &part[i])
			s.body = line[:len(line)-1] // without the newline
		}
		s.body = append(s.body, ']')
		if err := s.post(ctx, len(part)); err != nil {
			return err
		}
	}
	return nil
}

// post sends s.body, with retries.
func (s *Sink) post(ctx context.Context, n int) error {
	wait := s.st.initialBackoff
	var err error
	for attempt := 1; attempt <= s.st.maxAttempts; attempt++ {
		var retry bool
		retry, err = s.postOnce(ctx)
		if err == nil {
			return nil
		}
		if !retry || attempt == s.st.maxAttempts {
			break
		}
		sdk.Logger().Warn("webhook POST failed; retrying", "url", s.st.url, "attempt", attempt, "in", wait, "error", err)
		if serr := s.sleep(ctx, wait); serr != nil {
			return fmt.Errorf("post %d events to %s: %w (gave up waiting to retry: %w)", n, s.st.url, err, serr)
		}
		wait = min(wait*2, s.st.maxBackoff)
	}
	return fmt.Errorf("post %d events to %s: %w", n, s.st.url, err)
}

// postOnce makes one request; retry says whether another attempt may
// succeed (network errors, 408, 429 and 5xx answers).
func (s *Sink) postOnce(ctx context.Context) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.st.url, bytes.NewReader(s.body))
	if err != nil {
		return false, err
	}
	for k, v := range s.st.headers {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "flowtap-sink-webhook/"+Version)
	resp, err := s.client.Do(req)
	if err != nil {
		return ctx.Err() == nil, err
	}
	defer resp.Body.Close()
	// Read a little of the answer, for the error, and let the connection
	// be reused.
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return false, nil
	}
	err = fmt.Errorf("server answered %s: %s", resp.Status, bytes.TrimSpace(msg))
	switch c := resp.StatusCode; {
	case c == http.StatusRequestTimeout, c == http.StatusTooManyRequests, c >= 500:
		return true, err
	}
	return false, fmt.Errorf("%w (status %s is not retried)", err, strconv.Itoa(resp.StatusCode))
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
