// Package metrics serves a worker's Prometheus metrics — the Temporal SDK's
// and the connectors' own, both recorded through the SDK's metrics handler
// (workflows use workflow.GetMetricsHandler, which records nothing during
// replay) — with health and readiness endpoints, as samples-go's metrics
// sample does with tally.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/uber-go/tally/v4"
	tallyprom "github.com/uber-go/tally/v4/prometheus"
	"go.temporal.io/sdk/client"
	sdktally "go.temporal.io/sdk/contrib/tally"
)

// Server is a worker's metrics, health and readiness endpoint:
//
//	GET /metrics   Prometheus text format
//	GET /healthz   200 while the process serves
//	GET /readyz    200 once the worker polls its task queue, else 503
type Server struct {
	handler client.MetricsHandler
	scope   interface{ Close() error }
	srv     *http.Server
	addr    string
	ready   atomic.Bool
}

// sanitize keeps Prometheus names and label keys to [a-zA-Z0-9_] as the
// SDK's PrometheusSanitizeOptions do, but lets label values keep '-', '.',
// ':' and '/' (connector names like web-logs, shard IDs, task queues).
func sanitizeOptions() *tally.SanitizeOptions {
	return &tally.SanitizeOptions{
		NameCharacters:       sdktally.PrometheusSanitizeOptions.NameCharacters,
		KeyCharacters:        sdktally.PrometheusSanitizeOptions.KeyCharacters,
		ValueCharacters:      tally.ValidCharacters{Ranges: tally.AlphanumericRange, Characters: []rune{'_', '-', '.', ':', '/'}},
		ReplacementCharacter: tally.DefaultReplacementCharacter,
	}
}

// Listen starts serving on addr (host:port; port 0 picks a free one).
// Keep it on loopback unless a scraper elsewhere needs it.
func Listen(addr string) (*Server, error) {
	registry := prom.NewRegistry()
	reporter := tallyprom.NewReporter(tallyprom.Options{Registerer: registry, DefaultTimerType: tallyprom.HistogramTimerType})
	scope, closer := tally.NewRootScope(tally.ScopeOptions{
		CachedReporter:  reporter,
		Separator:       tallyprom.DefaultSeparator,
		SanitizeOptions: sanitizeOptions(),
	}, time.Second)
	s := &Server{handler: sdktally.NewMetricsHandler(sdktally.NewPrometheusNamingScope(scope)), scope: closer}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", reporter.HTTPHandler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.ready.Load() {
			http.Error(w, "worker not started", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		_ = closer.Close()
		return nil, fmt.Errorf("metrics: listening on %s: %w", addr, err)
	}
	s.addr = ln.Addr().String()
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }() // ends with Close

	return s, nil
}

// Handler is the metrics handler to give the Temporal client
// (client.Options.MetricsHandler): SDK and connector metrics go through it.
func (s *Server) Handler() client.MetricsHandler { return s.handler }

// Addr is the address served.
func (s *Server) Addr() string { return s.addr }

// SetReady marks the worker ready (or not) for /readyz.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// Close stops serving and flushes the scope.
func (s *Server) Close(ctx context.Context) error {
	return errors.Join(s.srv.Shutdown(ctx), s.scope.Close())
}
