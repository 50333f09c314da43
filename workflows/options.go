package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Activity options shared by the workflows.

// scanHeartbeat is how long an S3 scan may go without listing a page.
// The chaos suite found the earlier minute too long: after a kill -9 of
// the worker running a cron scan, the connector sat idle for that minute.
const scanHeartbeat = 20 * time.Second

// scanOptions are for S3 scans: long listings that heartbeat per page.
// A page answers within seconds, so a scan whose worker died is retried
// on another after scanHeartbeat, not after a long listing's whole time.
func scanOptions(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Minute,
		HeartbeatTimeout:    scanHeartbeat,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: time.Minute, MaximumAttempts: 10},
	})
}

// awaitOptions are for awaiting a Bacalhau job, which may queue and then
// run for its full timeouts. Cancellation is waited for: Await stops the job.
// The heartbeat timeout is how long a killed worker's await goes unnoticed;
// with quiet heartbeats (none in the first half) a task shorter than 10 s
// sends none, so a short timeout costs nothing on short tasks.
func awaitOptions(ctx workflow.Context, queue, execution time.Duration) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: queue + execution + 2*time.Minute,
		HeartbeatTimeout:    awaitHeartbeat,
		WaitForCancellation: true,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second},
	})
}

// shortOptions are for quick calls to Temporal, Kafka administration and
// the like, retried without limit while they fail transiently.
func shortOptions(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second},
	})
}

// awaitHeartbeat bounds how long an await on a killed worker holds its
// batch (the chaos suite allows 45 s for any kind to move again).
const awaitHeartbeat = 20 * time.Second
