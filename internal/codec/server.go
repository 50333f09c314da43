package codec

import (
	"crypto/subtle"
	"net/http"
	"slices"
	"strings"

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
