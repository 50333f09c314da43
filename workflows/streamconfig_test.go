package workflows

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"go.temporal.io/sdk/temporal"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
)

func TestNextStreamStepIsolatesOnlyWhatTheRecordsCause(t *testing.T) {
	policy := TaskRetryPolicy{MaxAttempts: 3}.withDefaults()
	taskFailed := temporal.NewApplicationError("task exited 3", activities.ErrTypeTaskFailed)
	tooBig := temporal.NewNonRetryableApplicationError("too big", activities.ErrTypeInvalidTask, nil)
	nodeDown := errors.New("no node")
	cases := []struct {
		name          string
		bisect, dlq   bool
		failure       streamFailure
		want          streamStep
		wantExplained string
	}{
		{"first failure retries", true, true, streamFailure{err: taskFailed, attempts: 1}, stepRetry, "attempts left"},
		{"attempts spent: bisect", true, true, streamFailure{err: taskFailed, attempts: 3}, stepBisect, "several records"},
		{"attempts spent, one record: dead letter", true, true, streamFailure{err: taskFailed, attempts: 3, single: true}, stepDeadLetter, "nothing to split"},
		{"no bisect: dead letter the batch", false, true, streamFailure{err: taskFailed, attempts: 3}, stepDeadLetter, "bisect off"},
		{"no dead letter: blocked", true, false, streamFailure{err: taskFailed, attempts: 3, single: true}, stepBlocked, "never skipped"},
		{"a split range bisects at once", true, true, streamFailure{err: taskFailed, attempts: 1, splitRange: true}, stepBisect, "one attempt per split range"},
		{"rejected bisects at once", true, true, streamFailure{err: tooBig, attempts: 1, rejected: true}, stepBisect, "too large for a job"},
		{"expired records skip the retries", true, true, streamFailure{err: nodeDown, attempts: 1, expired: true}, stepBisect, "max_record_age"},
		{"infrastructure failures always retry", true, true, streamFailure{err: nodeDown, attempts: 10}, stepRetry, "records did not cause it"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, nextStreamStep(policy, tc.bisect, tc.dlq, tc.failure), tc.wantExplained)
		})
	}
}

func TestRetryBackoffGrowsToItsCap(t *testing.T) {
	policy := TaskRetryPolicy{InitialInterval: time.Second, MaxInterval: 10 * time.Second}.withDefaults()
	assert.Equal(t, time.Second, retryBackoff(policy, 1))
	assert.Equal(t, 2*time.Second, retryBackoff(policy, 2))
	assert.Equal(t, 8*time.Second, retryBackoff(policy, 4))
	assert.Equal(t, 10*time.Second, retryBackoff(policy, 5))
	assert.Equal(t, 10*time.Second, retryBackoff(policy, 1000))
}
