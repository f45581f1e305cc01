// SPDX-License-Identifier: Apache-2.0

package metrics

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Status is a running flowtap as its metrics endpoint shows it: what
// 'flowtap status' prints.
type Status struct {
	// URL is the endpoint asked.
	URL string `json:"url"`
	// Version and Commit are flowtap_build_info's.
	Version string `json:"version"`
	Commit  string `json:"commit"`
	// Uptime is since the process started (process_start_time_seconds).
	Uptime time.Duration `json:"uptime_ns"`
	// Readiness is /readyz's answer.
	Readiness Readiness `json:"readiness"`
	// Window is the time between the two scrapes the rates come from (0:
	// one scrape, no rates).
	Window time.Duration `json:"window_ns"`
	// Events are flowtap_events_total by event, busiest first;
	// EventsPerSecond their sum's rate over Window.
	Events          []EventRate `json:"events"`
	EventsPerSecond float64     `json:"events_per_second"`
	// RecordsLost is flowtap_records_lost_total, LostPerSecond its rate.
	RecordsLost   uint64  `json:"records_lost"`
	LostPerSecond float64 `json:"lost_per_second"`
	// FlowEntries and FlowCapacity are the flow table's, when it runs.
	FlowEntries  int `json:"flow_table_entries"`
	FlowCapacity int `json:"flow_table_capacity"`
	// Sinks are the running sinks in the order the endpoint lists them.
	Sinks []SinkState `json:"sinks"`
}

// EventRate is one event's count and rate.
type EventRate struct {
	Name      string  `json:"name"`
	Total     uint64  `json:"total"`
	PerSecond float64 `json:"per_second"`
}

// SinkState is one sink as the metrics show it.
type SinkState struct {
	Pipeline      string `json:"pipeline"`
	Sink          string `json:"sink"`
	State         string `json:"state"`
	QueueDepth    int    `json:"queue_depth"`
	QueueCapacity int    `json:"queue_capacity"`
	Acked         uint64 `json:"acked"`
	Dropped       uint64 `json:"dropped"`
	Restarts      uint64 `json:"restarts"`
}

// ErrNotFlowtap: the address answered, but not with flowtap's metrics.
var ErrNotFlowtap = errors.New("the endpoint serves no flowtap_build_info: is it flowtap's --metrics-addr?")

// Query asks the flowtap whose metrics endpoint is at addr (HOST:PORT, or
// an http:// URL) for its status: /readyz, and /metrics twice, window
// apart, for the rates (window 0: once, no rates).
func Query(ctx context.Context, client *http.Client, addr string, window time.Duration) (Status, error) {
	base := addr
	if !strings.Contains(base, "://") {
		if host, port, err := net.SplitHostPort(addr); err == nil && host == "" {
			base = net.JoinHostPort("127.0.0.1", port) // ":9464" listens on every address, localhost among them
		}
		base = "http://" + base
	}
	base = strings.TrimSuffix(base, "/")
	st := Status{URL: base, Window: window}
	first, err := scrape(ctx, client, base+PathMetrics)
	if err != nil {
		return st, err
	}
	at := time.Now()
	second := first
	if window > 0 {
		select {
		case <-time.After(window):
		case <-ctx.Done():
			return st, ctx.Err()
		}
		if second, err = scrape(ctx, client, base+PathMetrics); err != nil {
			return st, err
		}
		st.Window = time.Since(at)
	}
	if st.Readiness, err = readiness(ctx, client, base+PathReady); err != nil {
		return st, err
	}
	bi, ok := second["flowtap_build_info"]
	if !ok || len(bi.GetMetric()) == 0 {
		return st, ErrNotFlowtap
	}
	st.Version, st.Commit = label(bi.GetMetric()[0], "version"), label(bi.GetMetric()[0], "commit")
	if start := value(second, "process_start_time_seconds", nil); start > 0 {
		st.Uptime = time.Since(time.Unix(0, int64(start*1e9))).Round(time.Second)
	}
	rate := func(now, before float64) float64 {
		if st.Window <= 0 || now < before {
			return 0
		}
		return (now - before) / st.Window.Seconds()
	}
	for _, m := range second["flowtap_events_total"].GetMetric() {
		name := label(m, "event")
		now, before := m.GetCounter().GetValue(), value(first, "flowtap_events_total", map[string]string{"event": name})
		r := EventRate{Name: name, Total: uint64(now), PerSecond: rate(now, before)}
		st.Events = append(st.Events, r)
		st.EventsPerSecond += r.PerSecond
	}
	slices.SortStableFunc(st.Events, func(a, b EventRate) int {
		return cmp.Or(cmp.Compare(b.PerSecond, a.PerSecond), cmp.Compare(b.Total, a.Total))
	})
	lost := value(second, "flowtap_records_lost_total", nil)
	st.RecordsLost, st.LostPerSecond = uint64(lost), rate(lost, value(first, "flowtap_records_lost_total", nil))
	st.FlowEntries = int(value(second, "flowtap_flow_table_entries", nil))
	st.FlowCapacity = int(value(second, "flowtap_flow_table_capacity", nil))
	for _, m := range second["flowtap_sink_up"].GetMetric() {
		id := map[string]string{"pipeline": label(m, "pipeline"), "sink": label(m, "sink")}
		k := SinkState{Pipeline: id["pipeline"], Sink: id["sink"],
			QueueDepth:    int(value(second, "flowtap_sink_queue_depth", id)),
			QueueCapacity: int(value(second, "flowtap_sink_queue_capacity", id)),
			Restarts:      uint64(value(second, "flowtap_sink_restarts_total", id)),
			Acked:         uint64(value(second, "flowtap_sink_events_total", with(id, "state", "acked"))),
			Dropped:       uint64(value(second, "flowtap_sink_events_total", with(id, "state", "dropped"))),
		}
		for _, s := range second["flowtap_sink_state"].GetMetric() {
			if label(s, "pipeline") == k.Pipeline && label(s, "sink") == k.Sink && s.GetGauge().GetValue() == 1 {
				k.State = label(s, "state")
			}
		}
		st.Sinks = append(st.Sinks, k)
	}
	return st, nil
}

// scrape reads one exposition of the metrics in the text format.
func scrape(ctx context.Context, client *http.Client, url string) (map[string]*dto.MetricFamily, error) {
	body, code, err := get(ctx, client, url, "text/plain;version=0.0.4")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d %s", url, code, http.StatusText(code))
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w: %w", url, ErrNotFlowtap, err)
	}
	return fams, nil
}

// readiness reads /readyz, whose 503 is an answer, not an error.
func readiness(ctx context.Context, client *http.Client, url string) (Readiness, error) {
	var r Readiness
	body, code, err := get(ctx, client, url, "application/json")
	if err != nil {
		return r, err
	}
	if code != http.StatusOK && code != http.StatusServiceUnavailable {
		return r, fmt.Errorf("GET %s: %d %s", url, code, http.StatusText(code))
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return r, fmt.Errorf("GET %s: %w", url, err)
	}
	return r, nil
}

func get(ctx context.Context, client *http.Client, url, accept string) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", accept)
	resp, err := client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("ask flowtap: %w (is it running with --metrics-addr?)", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, 0, fmt.Errorf("GET %s: %w", url, err)
	}
	return body, resp.StatusCode, nil
}

// value is the value of the sample of family name whose labels include
// want (nil: the first sample), 0 when there is none.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	for _, m := range fams[name].GetMetric() {
		match := true
		for k, v := range want {
			match = match && label(m, k) == v
		}
		if !match {
			continue
		}
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue()
		case m.GetUntyped() != nil:
			return m.GetUntyped().GetValue()
		}
	}
	return 0
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func with(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for a, b := range m {
		out[a] = b
	}
	return out
}
