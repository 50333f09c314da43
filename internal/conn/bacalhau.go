package conn

import (
	"fmt"
	"net/http"
	"os"
	"strconv"

	clientv2 "github.com/bacalhau-project/bacalhau/pkg/publicapi/client/v2"
)

// Bacalhau says how to reach the Bacalhau API. Environment names follow
// the bacalhau CLI's.
type Bacalhau struct {
	Host, Port string
	// TLS and Insecure are "true" or "false".
	TLS, Insecure string
	// CACert is the API's CA certificate (PEM; default the system roots).
	CACert string
	// APIKeyFile holds the API key; BACALHAU_API_KEY is read when empty.
	APIKeyFile string
}

// Register adds the Bacalhau flags, with their environment defaults.
func (b *Bacalhau) Register(fs FlagSet) {
	fs.StringVar(&b.Host, "bacalhau-host", EnvOr("BACALHAU_API_HOST", "127.0.0.1"), "Bacalhau API host [BACALHAU_API_HOST]")
	fs.StringVar(&b.Port, "bacalhau-port", EnvOr("BACALHAU_API_PORT", "1234"), "Bacalhau API port [BACALHAU_API_PORT]")
	fs.StringVar(&b.TLS, "bacalhau-tls", EnvOr("BACALHAU_API_TLS_USETLS", "false"), "call the Bacalhau API over TLS: true or false [BACALHAU_API_TLS_USETLS]")
	fs.StringVar(&b.CACert, "bacalhau-ca-cert", EnvOr("BACALHAU_API_TLS_CACERT", ""), "CA certificate (PEM) of the Bacalhau API, default the system roots [BACALHAU_API_TLS_CACERT]")
	fs.StringVar(&b.Insecure, "bacalhau-insecure", EnvOr("BACALHAU_API_TLS_INSECURE", "false"), "TLS without verifying the certificate (tests only) [BACALHAU_API_TLS_INSECURE]")
	fs.StringVar(&b.APIKeyFile, "bacalhau-api-key-file", EnvOr("BACALHAU_API_KEY_FILE", ""), "file holding the Bacalhau API key; else BACALHAU_API_KEY is read [BACALHAU_API_KEY_FILE]")
}

// Client returns the API's base URL and the client options: TLS, CA, and
// the API key as a bearer token.
func (b *Bacalhau) Client() (string, []clientv2.OptionFn, error) {
	if _, err := strconv.Atoi(b.Port); err != nil {
		return "", nil, fmt.Errorf("--bacalhau-port: %q is not a port number", b.Port)
	}
	useTLS, err := strconv.ParseBool(b.TLS)
	if err != nil {
		return "", nil, fmt.Errorf("--bacalhau-tls: %q is not true or false", b.TLS)
	}
	insecure, err := strconv.ParseBool(b.Insecure)
	if err != nil {
		return "", nil, fmt.Errorf("--bacalhau-insecure: %q is not true or false", b.Insecure)
	}
	scheme := "http"
	var opts []clientv2.OptionFn
	if useTLS || insecure || b.CACert != "" {
		scheme = "https"
		opts = append(opts, clientv2.WithTLS(true), clientv2.WithInsecureTLS(insecure))
		if b.CACert != "" {
			// The client panics on an unreadable CA file: check it here.
			if _, err := loadCAs(b.CACert); err != nil {
				return "", nil, fmt.Errorf("--bacalhau-ca-cert: %w", err)
			}
			opts = append(opts, clientv2.WithCACertificate(b.CACert))
		}
	}
	key := os.Getenv("BACALHAU_API_KEY")
	if b.APIKeyFile != "" {
		raw, err := os.ReadFile(b.APIKeyFile)
		if err != nil {
			return "", nil, fmt.Errorf("--bacalhau-api-key-file: %w", err)
		}
		key = string(trimSpace(raw))
	}
	if key != "" {
		opts = append(opts, clientv2.WithHeaders(http.Header{"Authorization": []string{"Bearer " + key}}))
	}
	return scheme + "://" + b.Host + ":" + b.Port, opts, nil
}
