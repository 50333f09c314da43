package inputgateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Server is the gateway's HTTP server. Listen binds it first, so the public
// URL can be derived from the bound address before the Gateway exists.
type Server struct {
	l    net.Listener
	srv  *http.Server
	done chan struct{}
}

// Listen binds addr (host:port; port 0 picks a free one).
func Listen(addr string) (*Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("gateway: listening on %s: %w", addr, err)
	}
	return &Server{l: l, done: make(chan struct{})}, nil
}

// URL is http://ADDR of the bound address.
func (s *Server) URL() string { return "http://" + s.l.Addr().String() }

// Serve answers with h in the background until Stop.
func (s *Server) Serve(h http.Handler) {
	s.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(s.l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err // only a failed listener ends Serve early; requests then fail visibly
		}
	}()
}

// Stop shuts the server down.
func (s *Server) Stop() error {
	if s.srv == nil {
		return s.l.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}
