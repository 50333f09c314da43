package workerapp

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
)

// heartbeatingWorkflow runs heartbeatingActivity for runFor with a 2-s
// heartbeat timeout and no retries: a missed heartbeat fails it.
func heartbeatingWorkflow(ctx workflow.Context, runFor time.Duration) (int, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		HeartbeatTimeout:    2 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	var attempt int
	err := workflow.ExecuteActivity(ctx, heartbeatingActivity, runFor).Get(ctx, &attempt)
	return attempt, err
}

// heartbeatingActivity heartbeats every 50 ms for runFor, as the
// connectors' poll loops do, and returns its attempt.
func heartbeatingActivity(ctx context.Context, runFor time.Duration) (int, error) {
	for end := time.Now().Add(runFor); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		activity.RecordHeartbeat(ctx, "working")
	}
	return int(activity.GetInfo(ctx).Attempt), nil
}

// TestQuietHeartbeats shows the worker's heartbeat interceptor on a real
// Temporal dev server: an activity done within half its heartbeat timeout
// sends no heartbeat (no billable action), and one that runs three times
// its timeout still heartbeats enough never to time out.
func TestQuietHeartbeats(t *testing.T) {
	ctx := context.Background()
	bin, err := filepath.Abs("../../bin/temporal")
	require.NoError(t, err)
	tmp, err := devstack.StartTemporal(ctx, devstack.TemporalOptions{BinPath: bin, Headless: true, Metrics: true})
	require.NoError(t, err)
	defer func() { assert.NoError(t, tmp.Stop()) }()
	c := tmp.Client()
	w := worker.New(c, "quiet", worker.Options{Interceptors: []interceptor.WorkerInterceptor{&quietHeartbeats{}}})
	w.RegisterWorkflow(heartbeatingWorkflow)
	w.RegisterActivity(heartbeatingActivity)
	require.NoError(t, w.Start())
	defer w.Stop()

	heartbeats := func(runFor time.Duration) int64 {
		before, err := tmp.Actions(ctx)
		require.NoError(t, err)
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: "quiet"}, heartbeatingWorkflow, runFor)
		require.NoError(t, err)
		var attempt int
		require.NoError(t, run.Get(ctx, &attempt), "the activity never missed its heartbeat timeout")
		assert.Equal(t, 1, attempt)
		time.Sleep(500 * time.Millisecond) // the server counts as it processes
		after, err := tmp.Actions(ctx)
		require.NoError(t, err)
		return after.Since(before)["grpc_RecordActivityTaskHeartbeat"]
	}
	assert.Zero(t, heartbeats(700*time.Millisecond), "an activity done within half its heartbeat timeout (1 s) sends none")
	// 6 s with a 2-s timeout: quiet for 1 s, then the SDK's throttle (1.6 s).
	n := heartbeats(6 * time.Second)
	assert.GreaterOrEqual(t, n, int64(2))
	assert.LessOrEqual(t, n, int64(5))
}
