package activities

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestHeldVisibilityDoublesWithTheTaskAndEndsWithIt: a redelivered message
// whose task still runs is held as long as the task ran so far (at least
// the visibility), never past the task's deadline (a minute more) nor
// SQS's 12 hours.
func TestHeldVisibilityDoublesWithTheTaskAndEndsWithIt(t *testing.T) {
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	run := func(ranFor, mayRun time.Duration) runningJob {
		return runningJob{created: now.Add(-ranFor), until: now.Add(mayRun)}
	}
	assert.Equal(t, 30*time.Second, heldVisibility(run(6*time.Second, time.Hour), 30*time.Second, now), "at least the visibility")
	assert.Equal(t, 3*time.Minute, heldVisibility(run(3*time.Minute, time.Hour), 30*time.Second, now), "as long as it ran")
	assert.Equal(t, 2*time.Minute, heldVisibility(run(10*time.Minute, time.Minute), 30*time.Second, now), "no longer than it may still run, plus a minute")
	assert.Equal(t, 12*time.Hour, heldVisibility(run(20*time.Hour, 24*time.Hour), 30*time.Second, now), "SQS's limit")
	assert.Equal(t, time.Second, heldVisibility(run(time.Hour, -2*time.Minute), 30*time.Second, now), "past its deadline: released soon")
}

// TestInputUnavailableOnlyForFetchFailuresThatMayPass: an execution that
// failed preparing its inputs because the store was down is not the
// records' fault; one whose object is gone, or whose task ran, is.
func TestInputUnavailableOnlyForFetchFailuresThatMayPass(t *testing.T) {
	for msg, want := range map[string]bool{
		`preparing arguments: failed to fetch s3 input: operation error S3: GetObject, dial tcp 127.0.0.1:9000: connect: connection refused`:                                                                                                                                     true,
		`preparing arguments: failed to download http://gw/x: unexpected status 502 Bad Gateway`:                                                                                                                                                                                 true,
		`preparing arguments: failed to fetch s3 input: operation error S3: GetObject, https response error StatusCode: 404, NoSuchKey`:                                                                                                                                          false,
		`preparing arguments: failed to fetch s3 input: NoSuchBucket: the bucket does not exist`:                                                                                                                                                                                 false,
		`calculating resource usage of job: failed to fetch s3 input: operation error S3: HeadObject, exceeded maximum number of attempts, 3, https response error StatusCode: 0, RequestID: , HostID: , request send failed, Head "http://127.0.0.1:38651/b/in/x-001.log": EOF`: true,
		`calculating resource usage of job: failed to fetch s3 input: operation error S3: HeadObject, https response error StatusCode: 404, RequestID: , HostID: , api error NotFound: Not Found`:                                                                                false,
		`exit status 3`: false,
		`i am a bad node. i failed execution e-1`: false,
	} {
		assert.Equal(t, want, inputUnavailable(msg), msg)
	}
}
