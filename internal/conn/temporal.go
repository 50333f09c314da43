// Package conn builds the worker's and the starter's connections from flags
// with environment fallbacks: Temporal (address, namespace, TLS or mTLS, API
// key, payload codec) and the Bacalhau API (TLS, API key). Secrets come by
// reference (files, environment variables), never as workflow inputs.
package conn

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strconv"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/bacalhau-connect/bacalhau-connect/internal/codec"
)

// FlagSet is what both the standard library's and cobra's (pflag) flag
// sets offer.
type FlagSet interface {
	StringVar(p *string, name, value, usage string)
}

// Temporal says how to reach Temporal. Flag and environment names follow
// the temporal CLI's.
type Temporal struct {
	Address, Namespace string
	// TLS is "true" or "false"; empty turns TLS on when any TLS setting or
	// an API key is given.
	TLS string
	// CertPath and KeyPath are the client certificate of mTLS.
	CertPath, KeyPath string
	// CAPath is the server's CA (default: the system roots).
	CAPath string
	// ServerName overrides the name the server's certificate is checked
	// against.
	ServerName string
	// APIKeyFile holds the API key (Temporal Cloud); TEMPORAL_API_KEY is
	// read when it is empty.
	APIKeyFile string
	// CodecKeyFile holds the AES-256 key of the payload codec; empty: no
	// encryption.
	CodecKeyFile string
}

// EnvOr is the value of the environment variable name, or def when it is
// unset or empty: the default of every flag that has an environment name.
func EnvOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Register adds the Temporal flags, with their environment defaults.
func (t *Temporal) Register(fs FlagSet, defaultNamespace string) {
	fs.StringVar(&t.Address, "temporal-address", EnvOr("TEMPORAL_ADDRESS", "127.0.0.1:7233"), "Temporal frontend host:port [TEMPORAL_ADDRESS]")
	fs.StringVar(&t.Namespace, "namespace", EnvOr("TEMPORAL_NAMESPACE", defaultNamespace), "Temporal namespace [TEMPORAL_NAMESPACE]")
	fs.StringVar(&t.TLS, "tls", EnvOr("TEMPORAL_TLS", ""), "connect to Temporal over TLS: true or false (default: true when a TLS setting or an API key is given) [TEMPORAL_TLS]")
	fs.StringVar(&t.CertPath, "tls-cert-path", EnvOr("TEMPORAL_TLS_CLIENT_CERT_PATH", ""), "client certificate (PEM) for mTLS [TEMPORAL_TLS_CLIENT_CERT_PATH]")
	fs.StringVar(&t.KeyPath, "tls-key-path", EnvOr("TEMPORAL_TLS_CLIENT_KEY_PATH", ""), "client private key (PEM) for mTLS [TEMPORAL_TLS_CLIENT_KEY_PATH]")
	fs.StringVar(&t.CAPath, "tls-ca-path", EnvOr("TEMPORAL_TLS_SERVER_CA_CERT_PATH", ""), "CA certificate (PEM) of the Temporal server, default the system roots [TEMPORAL_TLS_SERVER_CA_CERT_PATH]")
	fs.StringVar(&t.ServerName, "tls-server-name", EnvOr("TEMPORAL_TLS_SERVER_NAME", ""), "server name to verify the Temporal certificate against [TEMPORAL_TLS_SERVER_NAME]")
	fs.StringVar(&t.APIKeyFile, "api-key-file", EnvOr("TEMPORAL_API_KEY_FILE", ""), "file holding the Temporal API key; else TEMPORAL_API_KEY is read [TEMPORAL_API_KEY_FILE]")
	fs.StringVar(&t.CodecKeyFile, "codec-key-file", EnvOr("CONNECT_CODEC_KEY_FILE", ""), "file holding the AES-256 key that encrypts every payload in history (base64, hex or 32 raw bytes); every worker and starter needs the same [CONNECT_CODEC_KEY_FILE]")
}

// ClientOptions returns the SDK client options; opts holds the caller's
// other settings (logger, metrics handler).
func (t *Temporal) ClientOptions(opts client.Options) (client.Options, error) {
	opts.HostPort, opts.Namespace = t.Address, t.Namespace
	tlsCfg, err := t.tlsConfig()
	if err != nil {
		return opts, err
	}
	opts.ConnectionOptions.TLS = tlsCfg
	key, err := t.apiKey()
	if err != nil {
		return opts, err
	}
	if key != "" {
		opts.Credentials = client.NewAPIKeyStaticCredentials(key)
	}
	if t.CodecKeyFile != "" {
		c, err := codec.LoadKeyFile(t.CodecKeyFile)
		if err != nil {
			return opts, fmt.Errorf("--codec-key-file: %w", err)
		}
		dc := converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), c)
		opts.DataConverter = dc
		// Error messages and stack traces (a task's stderr may quote a
		// record) travel encoded too.
		opts.FailureConverter = temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{
			DataConverter: dc, EncodeCommonAttributes: true,
		})
	}
	return opts, nil
}

func (t *Temporal) apiKey() (string, error) {
	if t.APIKeyFile == "" {
		return os.Getenv("TEMPORAL_API_KEY"), nil
	}
	raw, err := os.ReadFile(t.APIKeyFile)
	if err != nil {
		return "", fmt.Errorf("--api-key-file: %w", err)
	}
	return string(trimSpace(raw)), nil
}

func (t *Temporal) tlsConfig() (*tls.Config, error) {
	on := t.CertPath != "" || t.KeyPath != "" || t.CAPath != "" || t.ServerName != "" || t.APIKeyFile != "" || os.Getenv("TEMPORAL_API_KEY") != ""
	if t.TLS != "" {
		v, err := strconv.ParseBool(t.TLS)
		if err != nil {
			return nil, fmt.Errorf("--tls: %q is not true or false", t.TLS)
		}
		on = v
	}
	if !on {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if (t.CertPath == "") != (t.KeyPath == "") {
		return nil, fmt.Errorf("--tls-cert-path and --tls-key-path go together (mTLS needs both the certificate and its key)")
	}
	if t.CertPath != "" {
		cert, err := tls.LoadX509KeyPair(t.CertPath, t.KeyPath)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert-path/--tls-key-path: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if t.CAPath != "" {
		pool, err := loadCAs(t.CAPath)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca-path: %w", err)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

func loadCAs(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", path)
	}
	return pool, nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}
