package inputgateway

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
)

// TestGatewayOverVersitygw runs the gateway against the S3 stand-in, which
// checks signatures and methods as AWS does.
func TestGatewayOverVersitygw(t *testing.T) {
	ctx := context.Background()
	store, err := devstack.StartS3(ctx, devstack.S3Options{Dir: t.TempDir()})
	require.NoError(t, err)
	defer store.Stop()
	c := store.Client()
	_, err = c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("logs")})
	require.NoError(t, err)
	body := strings.Repeat("GET /index.html 200\n", 100)
	_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("logs"), Key: aws.String("2026/11/27/a.log"), Body: strings.NewReader(body)})
	require.NoError(t, err)

	srv, err := Listen("127.0.0.1:0")
	require.NoError(t, err)
	defer func() { _ = srv.Stop() }()
	g, err := New(Options{
		Secret: []byte(strings.Repeat("s", 32)), PublicURL: srv.URL(),
		Clients: func(context.Context, string, string) (*s3.Client, error) { return c, nil },
	})
	require.NoError(t, err)
	srv.Serve(g)

	ref := ObjectRef{Bucket: "logs", Key: "2026/11/27/a.log", Endpoint: store.Endpoint(), Region: store.Region()}
	u, err := g.URL(ref, "web", time.Minute)
	require.NoError(t, err)

	// HEAD: answered from metadata, as Bacalhau's urlDownload needs.
	resp, err := http.Head(u)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, int64(len(body)), resp.ContentLength)

	// GET: 307 to a presigned URL, which S3 honours.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = noFollow.Get(u)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusTemporaryRedirect, resp.StatusCode)
	assert.True(t, strings.HasPrefix(resp.Header.Get("Location"), store.Endpoint()+"/logs/2026/11/27/a.log?"), resp.Header.Get("Location"))
	resp, err = http.Get(u)
	require.NoError(t, err)
	got, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	assert.Equal(t, body, string(got))

	// Tampered: 403 with the reason.
	assertForbidden(t, u[:len(u)-3]+"abc", "signature does not match")
	// Expired: 403 with the reason.
	g.signer.now = func() time.Time { return time.Now().Add(-2 * time.Minute) }
	old, err := g.URL(ref, "web", time.Minute)
	require.NoError(t, err)
	g.signer.now = time.Now
	assertForbidden(t, old, "capability token expired")
	// A missing object: 404.
	missing, err := g.URL(ObjectRef{Bucket: "logs", Key: "nope.log", Endpoint: store.Endpoint(), Region: store.Region()}, "web", time.Minute)
	require.NoError(t, err)
	resp, err = http.Head(missing)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func assertForbidden(t *testing.T, u, reason string) {
	t.Helper()
	for _, method := range []string{http.MethodHead, http.MethodGet} {
		req, err := http.NewRequest(method, u, nil)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		msg, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, method)
		if method == http.MethodGet {
			assert.Contains(t, string(msg), reason)
		}
	}
}
