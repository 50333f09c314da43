package devstack

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestS3StandInChecksSignaturesAndMethods shows the stand-in behaves as AWS
// does where the input gateway depends on it: wrong keys are refused, and a
// URL presigned for GET does not answer HEAD.
func TestS3StandInChecksSignaturesAndMethods(t *testing.T) {
	ctx := context.Background()
	s, err := StartS3(ctx, S3Options{Dir: t.TempDir()})
	require.NoError(t, err)
	defer s.Stop()
	c := s.Client()
	_, err = c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("logs")})
	require.NoError(t, err)
	_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("logs"), Key: aws.String("a/b.log"), Body: strings.NewReader("hello\n")})
	require.NoError(t, err)
	out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("logs")})
	require.NoError(t, err)
	require.Len(t, out.Contents, 1)
	assert.Equal(t, "a/b.log", *out.Contents[0].Key)

	wrong := s3.New(s3.Options{Region: s.Region(), BaseEndpoint: aws.String(s.Endpoint()), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("connect-dev", "not-the-secret", "")})
	_, err = wrong.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("logs")})
	require.Error(t, err, "a bad signature must be refused")

	presigned, err := s3.NewPresignClient(c).PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("logs"), Key: aws.String("a/b.log")},
		s3.WithPresignExpires(time.Minute))
	require.NoError(t, err)
	resp, err := http.Get(presigned.URL)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "hello\n", string(body))
	resp, err = http.Head(presigned.URL)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "HEAD on a GET-presigned URL is refused, as on AWS")
}
