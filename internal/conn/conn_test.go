package conn

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv2 "github.com/bacalhau-project/bacalhau/pkg/publicapi/client/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/bacalhau-connect/bacalhau-connect/internal/testenv"
)

func TestTemporalSettingsAreCheckedNamingTheFlag(t *testing.T) {
	t.Setenv("TEMPORAL_API_KEY", "")
	for _, tc := range []struct {
		name string
		t    Temporal
		want string
	}{
		{"half an mTLS pair", Temporal{CertPath: "c.pem"}, "--tls-cert-path and --tls-key-path go together"},
		{"not a boolean", Temporal{TLS: "maybe"}, `--tls: "maybe" is not true or false`},
		{"missing CA", Temporal{CAPath: "/nonexistent/ca.pem"}, "--tls-ca-path"},
		{"missing API key file", Temporal{APIKeyFile: "/nonexistent/key"}, "--api-key-file"},
		{"missing codec key", Temporal{CodecKeyFile: "/nonexistent/codec.key"}, "--codec-key-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.t.ClientOptions(client.Options{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	opts, err := (&Temporal{Address: "a:1", Namespace: "ns"}).ClientOptions(client.Options{})
	require.NoError(t, err)
	assert.Nil(t, opts.ConnectionOptions.TLS, "plain by default")
	assert.Nil(t, opts.DataConverter)
	assert.Equal(t, "a:1", opts.HostPort)
	assert.Equal(t, "ns", opts.Namespace)
}

func TestCodecKeyFileEncryptsPayloadsAndFailures(t *testing.T) {
	key := filepath.Join(t.TempDir(), "codec.key")
	require.NoError(t, os.WriteFile(key, []byte(strings.Repeat("ab", 32)), 0o600))
	opts, err := (&Temporal{CodecKeyFile: key}).ClientOptions(client.Options{})
	require.NoError(t, err)
	require.NotNil(t, opts.DataConverter)
	require.NotNil(t, opts.FailureConverter)
	p, err := opts.DataConverter.ToPayload("CANARY")
	require.NoError(t, err)
	assert.Equal(t, "binary/encrypted", string(p.Metadata[converter.MetadataEncoding]))
	assert.NotContains(t, string(p.Data), "CANARY")
	f := opts.FailureConverter.ErrorToFailure(assert.AnError)
	assert.NotContains(t, f.Message, assert.AnError.Error(), "the message travels in the encoded attributes")
	assert.NotNil(t, f.EncodedAttributes)
}

// recordingServer is a gRPC server over mTLS that records the metadata and
// the client certificate of every call and answers Unavailable.
type recordingServer struct {
	mu      sync.Mutex
	auth    []string
	certCNs []string
}

func (s *recordingServer) handle(_ any, stream grpc.ServerStream) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	s.mu.Lock()
	defer s.mu.Unlock()
	s.auth = append(s.auth, md.Get("authorization")...)
	if p, ok := peer.FromContext(stream.Context()); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.VerifiedChains) > 0 {
			s.certCNs = append(s.certCNs, info.State.VerifiedChains[0][0].Subject.CommonName)
		}
	}
	return status.Error(codes.Unavailable, "recording only")
}

func TestTemporalClientPresentsItsCertificateAndAPIKey(t *testing.T) {
	dir := t.TempDir()
	pki, err := testenv.NewPKI(dir)
	require.NoError(t, err)
	rec := &recordingServer{}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(pki.ServerTLS(true, "h2"))), grpc.UnknownServiceHandler(rec.handle))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()
	keyFile := filepath.Join(dir, "api.key")
	require.NoError(t, os.WriteFile(keyFile, []byte("cloud-key-123\n"), 0o600))

	tc := Temporal{Address: ln.Addr().String(), Namespace: "default", CAPath: pki.CAFile,
		CertPath: pki.ClientCertFile, KeyPath: pki.ClientKeyFile, APIKeyFile: keyFile}
	opts, err := tc.ClientOptions(client.Options{})
	require.NoError(t, err)
	require.NotNil(t, opts.ConnectionOptions.TLS)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.DialContext(ctx, opts)
	if err == nil {
		c.Close()
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	require.NotEmpty(t, rec.auth, "the server saw calls")
	assert.Equal(t, "Bearer cloud-key-123", rec.auth[0])
	assert.Contains(t, rec.certCNs, "client")
}

func TestBacalhauClientUsesTLSAndSendsItsAPIKey(t *testing.T) {
	dir := t.TempDir()
	pki, err := testenv.NewPKI(dir)
	require.NoError(t, err)
	var mu sync.Mutex
	var auth []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"Status":"OK"}`))
	}))
	srv.TLS = pki.ServerTLS(false)
	srv.StartTLS()
	defer srv.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "https://"))
	t.Setenv("BACALHAU_API_KEY", "bac-key")

	b := Bacalhau{Host: "127.0.0.1", Port: port, TLS: "true", Insecure: "false", CACert: pki.CAFile}
	addr, opts, err := b.Client()
	require.NoError(t, err)
	assert.Equal(t, "https://127.0.0.1:"+port, addr)
	_, err = clientv2.New(addr, opts...).Agent().Alive(context.Background())
	require.NoError(t, err)
	mu.Lock()
	assert.Equal(t, []string{"Bearer bac-key"}, auth)
	mu.Unlock()

	for _, tc := range []struct {
		b    Bacalhau
		want string
	}{
		{Bacalhau{Host: "h", Port: "x", TLS: "false", Insecure: "false"}, "--bacalhau-port"},
		{Bacalhau{Host: "h", Port: "1", TLS: "yes please", Insecure: "false"}, "--bacalhau-tls"},
		{Bacalhau{Host: "h", Port: "1", TLS: "true", Insecure: "false", CACert: "/nonexistent"}, "--bacalhau-ca-cert"},
	} {
		_, _, err := tc.b.Client()
		require.Error(t, err)
		assert.Contains(t, err.Error(), tc.want)
	}
}
