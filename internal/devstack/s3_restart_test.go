package devstack

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestS3RestartServesClientsThatWereBusy: a client whose connection was
// busy when the stand-in stopped (a slow download) reaches the restarted
// gateway on its next request. versitygw alone leaves such a connection to
// the stopped gateway, which answers 500 on it forever (the chaos suite's
// cron connector dead-lettered every batch after an S3 restart that way);
// the front cuts it at Stop, as an outage does.
func TestS3RestartServesClientsThatWereBusy(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := StartS3(ctx, S3Options{Dir: dir})
	require.NoError(t, err)
	c := s.Client()
	_, err = c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("logs")})
	require.NoError(t, err)
	for i := range 5 {
		_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("logs"), Key: aws.String(fmt.Sprintf("cron/%d", i)), Body: strings.NewReader("hello\n")})
		require.NoError(t, err)
	}
	_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("logs"), Key: aws.String("big"), Body: strings.NewReader(strings.Repeat("x", 20<<20))})
	require.NoError(t, err)
	slow, restarted := make(chan error, 1), make(chan struct{})
	go func() { // reads 1 KiB every 100 ms until the restart: busy through the stop
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("logs"), Key: aws.String("big")})
		if err != nil {
			slow <- err
			return
		}
		defer func() { _ = out.Body.Close() }()
		buf := make([]byte, 1024)
		for range 150 {
			if _, err := out.Body.Read(buf); err != nil {
				slow <- err
				return
			}
			select {
			case <-restarted: // then as fast as it comes
			case <-time.After(100 * time.Millisecond):
			}
		}
		_, err = io.Copy(io.Discard, out.Body)
		slow <- err
	}()
	time.Sleep(300 * time.Millisecond)
	port, err := strconv.Atoi(s.Endpoint()[strings.LastIndex(s.Endpoint(), ":")+1:])
	require.NoError(t, err)
	start := time.Now()
	s.Stop()
	assert.Less(t, time.Since(start), 5*time.Second, "no connection holds the shutdown")

	s, err = StartS3(ctx, S3Options{Dir: dir, Port: port})
	require.NoError(t, err)
	defer s.Stop()
	close(restarted)
	assert.Error(t, <-slow, "the download in flight at the stop was cut, as by an outage")
	for i := range 5 {
		key := aws.String(fmt.Sprintf("cron/%d", i))
		_, err = c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("logs"), Key: key})
		require.NoError(t, err, "the busy client reaches the restarted gateway")
		_, err = s.Client().HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("logs"), Key: key})
		require.NoError(t, err)
	}
}
