package codec

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/converter"
)

// ServerOptions configures the codec server's handler.
type ServerOptions struct {
	// AllowOrigins are the web origins (e.g. the Temporal UI's
	// http://127.0.0.1:8233) whose browsers may call the server; "*"
	// allows any (a local dev stack only).
	AllowOrigins []string
	// AuthToken, when set, is required as "Authorization: Bearer TOKEN"
	// (the temporal CLI's --codec-auth; a UI behind single sign-on passes
	// its user's token instead when the proxy in front checks it).
	AuthToken string
}

// NewHandler serves POST /encode and /decode (any path prefix, the
// namespace in X-Namespace) as the Temporal UI and CLI expect, with CORS
// for the allowed origins and the optional token check.
func NewHandler(c converter.PayloadCodec, opts ServerOptions) http.Handler {
	inner := converter.NewPayloadCodecHTTPHandler(c)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if origin := r.Header.Get("Origin"); origin != "" && (slices.Contains(opts.AllowOrigins, origin) || slices.Contains(opts.AllowOrigins, "*")) {
			w.Header().Set("Access-Control-Allow-Origin", origin)
			w.Header().Set("Access-Control-Allow-Credentials", "true")
			w.Header().Set("Access-Control-Allow-Headers", "Content-Type,X-Namespace,Authorization")
			w.Header().Set("Access-Control-Allow-Methods", "POST,OPTIONS")
			w.Header().Add("Vary", "Origin")
		}
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusOK)
			return
		}
		if opts.AuthToken != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(opts.AuthToken)) != 1 {
				http.Error(w, "codec server: missing or wrong Authorization bearer token", http.StatusUnauthorized)
				return
			}
		}
		inner.ServeHTTP(w, r)
	})
}

// Server is a running codec server: NewHandler on a listening socket.
type Server struct {
	// URL is the address the Temporal UI and CLI use as codec endpoint.
	URL string
	srv *http.Server
	ln  net.Listener
}

// Listen opens addr (host:port; port 0 picks one) for a codec server of c.
// Call Serve to answer requests.
func Listen(addr string, c converter.PayloadCodec, opts ServerOptions) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("codec server: listen on %s: %w", addr, err)
	}
	return &Server{
		URL: "http://" + ln.Addr().String(),
		srv: &http.Server{Handler: NewHandler(c, opts), ReadHeaderTimeout: 10 * time.Second},
		ln:  ln,
	}, nil
}

// Serve answers requests until ctx is done, then shuts down, giving
// requests in flight five seconds.
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(sctx)
	})
	defer stop()
	if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("codec server: %w", err)
	}
	return nil
}
