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
