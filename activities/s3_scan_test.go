package activities

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
)

// startBucket starts an S3 stand-in with one bucket for the test.
func startBucket(t *testing.T, bucket string) *s3.Client {
	t.Helper()
	store, err := devstack.StartS3(context.Background(), devstack.S3Options{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(store.Stop)
	c := store.Client()
	_, err = c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	require.NoError(t, err)
	return c
}

// TestScanBoundsItsAnswerAndResumesFromTheCursor lists 3,000 objects with
// long keys in batches of 1,000 (the most a spec allows): one answer of
// every batch would be several hundred KB of history per scan, so a scan
// stops at a batch boundary past maxScanResultBytes, and the next scan,
// from the advanced cursor, goes on where it stopped.
func TestScanBoundsItsAnswerAndResumesFromTheCursor(t *testing.T) {
	ctx := context.Background()
	s3c := startBucket(t, "scan")
	const objects = 3000
	long := strings.Repeat("x", 200)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := 0; i < objects; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			_, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("scan"), Key: aws.String(fmt.Sprintf("in/%s-%05d.log", long, i)),
				Body: strings.NewReader("x\n")})
			assert.NoError(t, err)
		}(i)
	}
	wg.Wait()

	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	a := NewS3(func(context.Context, string, string) (*s3.Client, error) { return s3c, nil }, nil)
	env.RegisterActivity(a)
	var cursor Cursor
	seen := map[string]bool{}
	for scans := 1; ; scans++ {
		require.Less(t, scans, 10, "the scans end")
		v, err := env.ExecuteActivity(a.Scan, ScanInput{Bucket: "scan", Prefix: "in/", Cursor: cursor, Lookback: time.Hour,
			MaxObjects: 1000, MaxBytes: 1 << 30, MaxBatches: 20})
		require.NoError(t, err)
		var res ScanResult
		require.NoError(t, v.Get(&res))
		raw, _ := json.Marshal(res)
		assert.Less(t, len(raw), maxScanResultBytes+1000*(len(long)+30+scanObjectJSONBytes), "at most one batch past the bound")
		for _, b := range res.Batches {
			for _, o := range b {
				assert.False(t, seen[o.Key], "listed once: %s", o.Key)
				seen[o.Key] = true
			}
			cursor = cursor.Advance(b, time.Hour)
		}
		if !res.More {
			assert.Greater(t, scans, 1, "3,000 long keys do not fit in one answer")
			break
		}
	}
	assert.Len(t, seen, objects)
}

// TestScanCutsBatchesBeforeAFolderOverflows: with MaxFolderEntries a batch
// ends before any folder of /inputs would hold more entries (objects or
// subfolders) than the bound, whatever MaxObjects allows.
func TestScanCutsBatchesBeforeAFolderOverflows(t *testing.T) {
	ctx := context.Background()
	s3c := startBucket(t, "folders")
	// in/a holds 5 objects; in/b/ holds 4 subfolders of one object each.
	var keys []string
	for i := 0; i < 5; i++ {
		keys = append(keys, fmt.Sprintf("in/a/%d.log", i))
	}
	for i := 0; i < 4; i++ {
		keys = append(keys, fmt.Sprintf("in/b/%d/x.log", i))
	}
	for _, k := range keys {
		_, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("folders"), Key: aws.String(k), Body: strings.NewReader("x\n")})
		require.NoError(t, err)
	}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	a := NewS3(func(context.Context, string, string) (*s3.Client, error) { return s3c, nil }, nil)
	env.RegisterActivity(a)
	scan := func(maxEntries int) [][]string {
		v, err := env.ExecuteActivity(a.Scan, ScanInput{Bucket: "folders", Prefix: "in/", Lookback: time.Hour,
			MaxObjects: 1000, MaxBytes: 1 << 30, MaxBatches: 20, MaxFolderEntries: maxEntries})
		require.NoError(t, err)
		var res ScanResult
		require.NoError(t, v.Get(&res))
		var batches [][]string
		for _, b := range res.Batches {
			var ks []string
			for _, o := range b {
				ks = append(ks, o.Key)
			}
			batches = append(batches, ks)
		}
		return batches
	}
	assert.Equal(t, [][]string{keys}, scan(0), "no bound: one batch")
	assert.Equal(t, [][]string{keys[:3], keys[3:8], keys[8:]}, scan(3),
		"in/a fills at 3; in/a's last 2 and in/b's first 3 subfolders; in/b's 4th subfolder")
	assert.Equal(t, [][]string{keys[:4], keys[4:]}, scan(4))
}

func TestFolderEntriesCountsEveryFolderOfTheTarget(t *testing.T) {
	f := NewFolderEntries(2)
	for _, k := range []string{"a/x", "a/y", "b/c/d"} {
		require.True(t, f.Fits(k), k)
		f.Add(k)
	}
	assert.True(t, f.Fits("a/x"), "an entry already there adds nothing")
	assert.True(t, f.Fits("b/c/e"), "b/c holds 1")
	assert.False(t, f.Fits("a/z"), "a is full")
	assert.False(t, f.Fits("c/z"), "/inputs holds a and b")
	assert.True(t, f.Fits("a//x"), "keys are cleaned as mount paths are")
	f.Reset()
	assert.True(t, f.Fits("c/z"))
	assert.True(t, NewFolderEntries(0).Fits("anything"), "0: no bound")
}
