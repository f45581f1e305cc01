// SPDX-License-Identifier: Apache-2.0

package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/flowtap/flowtap/internal/buildinfo"
	"github.com/flowtap/flowtap/pipeline"
)

// The endpoints' paths.
const (
	PathMetrics = "/metrics"
	PathHealth  = "/healthz"
	PathReady   = "/readyz"
)

// Readiness is the JSON body of /readyz.
type Readiness struct {
	// Status is "ready" or "not ready".
	Status string `json:"status"`
	// Phase is the run's (pipeline.Phase): starting, running, stopping,
	// stopped.
	Phase string `json:"phase"`
	// NotReady lists what is not ready; empty when ready.
	NotReady []pipeline.NotReady `json:"not_ready,omitempty"`
}

// Handler serves the endpoints for the run mon watches: /metrics (flowtap's
// metrics, Go's runtime metrics and the process's), /healthz, /readyz and
// a short index at /. Scrape errors are logged to log.
func Handler(mon *pipeline.Monitor, build buildinfo.Info, log hclog.Logger) (http.Handler, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newCollector(mon, build),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+PathMetrics, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      promLogger{log},
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET "+PathHealth, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET "+PathReady, func(w http.ResponseWriter, _ *http.Request) {
		s := mon.Snapshot()
		r := Readiness{Status: "ready", Phase: s.Phase.String(), NotReady: s.NotReady()}
		code := http.StatusOK
		if len(r.NotReady) > 0 {
			r.Status, code = "not ready", http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(r)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "flowtap %s\n%s  Prometheus metrics\n%s  200 while the process is alive\n%s   200 when the capture is attached and every sink is up, else 503 with a JSON body naming what is not\n",
			build.Version, PathMetrics, PathHealth, PathReady)
	})
	return mux, nil
}

// promLogger hands promhttp's errors to the log.
type promLogger struct{ log hclog.Logger }

func (l promLogger) Println(v ...any) { l.log.Warn("metrics: " + fmt.Sprint(v...)) }

// Server serves a Handler on an address.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	done chan error
}

// Listen binds addr (HOST:PORT) at once, so a taken port fails flowtap's
// start, and serves h on it in the background until Close.
func Listen(addr string, h http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	s := &Server{ln: ln, done: make(chan error, 1), srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}}
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	return s, nil
}

// Addr is the address the server listens on (with the port the kernel
// chose for port 0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the server: requests in progress get until ctx ends.
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if serr := <-s.done; err == nil {
		err = serr
	}
	return err
}
