package workflows

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
)

// TestShardConsumerBisectsAPoisonRecordToTheDeadLetterAndFinishesAClosedShard
// runs a ShardConsumer over a fake closed shard of records with sequence
// numbers 1000..1059 whose task fails on 1037: every other record succeeds
// exactly once, 1037 alone is dead-lettered after bisection, and at the
// shard's end the consumer reports itself finished and ends.
func TestShardConsumerBisectsAPoisonRecordToTheDeadLetterAndFinishesAClosedShard(t *testing.T) {
	bothConsumers(t, testShardConsumerBisects)
}

func testShardConsumerBisects(t *testing.T, engine bool) {
	const first, last, poison = 1000, 1059, 1037
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(ShardConsumer, workflowOptions(ShardConsumerWorkflowType))
	env.RegisterWorkflowWithOptions(KinesisStreamConsumer, workflowOptions(KinesisStreamConsumerWorkflowType))
	env.RegisterActivity(&activities.Kinesis{})
	env.RegisterActivity(&activities.Bacalhau{})
	env.RegisterActivity(&activities.Temporal{})
	var mu sync.Mutex
	var reports []ShardStatus
	grantEveryLease(env) // the budget grants every lease at once
	env.OnSignalExternalWorkflow(mock.Anything, KinesisWorkflowID("unit"), mock.Anything, SignalShardStatus, mock.Anything).Return(
		func(_, _, _, _ string, arg interface{}) error {
			mu.Lock()
			defer mu.Unlock()
			reports = append(reports, arg.(ShardStatus))
			return nil
		})
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything).Return(nil)
	next := func(after string) int {
		if after == "" {
			return first
		}
		n, _ := strconv.Atoi(after)
		return n + 1
	}
	env.OnActivity("WaitForShardRecords", mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.WaitShardInput) (*activities.ShardWait, error) {
		if next(in.After) > last {
			return &activities.ShardWait{ShardEnd: true}, nil
		}
		return &activities.ShardWait{Has: true}, nil
	})
	jobs := map[string][2]int{}
	seen := map[int]int{}
	var dead [][2]int
	readAndSubmit := func(_ context.Context, in activities.ShardSubmitInput) (*activities.ShardBatchResult, error) {
		mu.Lock()
		defer mu.Unlock()
		lo := next(in.Read.After)
		hi := min(lo+in.Read.MaxRecords-1, last)
		if in.Read.Until != "" {
			u, _ := strconv.Atoi(in.Read.Until)
			hi = min(hi, u)
		}
		if lo > hi {
			return &activities.ShardBatchResult{ShardEnd: lo > last, RangeDone: in.Read.Until != ""}, nil
		}
		id := fmt.Sprintf("job-%d-%d-%d", lo, hi, in.Attempt)
		jobs[id] = [2]int{lo, hi}
		return &activities.ShardBatchResult{JobID: id, First: strconv.Itoa(lo), Mid: strconv.Itoa(lo + (hi-lo)/2), Last: strconv.Itoa(hi),
			Count: hi - lo + 1, ShardEnd: hi == last, RangeDone: in.Read.Until != "" && strconv.Itoa(hi) == in.Read.Until}, nil
	}
	await := func(_ context.Context, in activities.AwaitInput) (*activities.AwaitResult, error) {
		mu.Lock()
		defer mu.Unlock()
		r := jobs[in.JobID]
		if r[0] <= poison && poison <= r[1] {
			return nil, temporal.NewNonRetryableApplicationError("exit 3", activities.ErrTypeTaskFailed, nil)
		}
		for s := r[0]; s <= r[1]; s++ {
			seen[s]++
		}
		return &activities.AwaitResult{JobID: in.JobID}, nil
	}
	env.OnActivity("ReadShardAndSubmit", mock.Anything, mock.Anything).Return(readAndSubmit)
	env.OnActivity("Await", mock.Anything, mock.Anything).Return(await)
	env.OnActivity("RunShardBatch", mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.ShardSubmitInput) (*activities.ShardBatchRun, error) {
		b, err := readAndSubmit(ctx, in)
		if err != nil {
			return nil, err
		}
		out := &activities.ShardBatchRun{ShardBatchResult: *b}
		if b.Count > 0 && b.JobID != "" {
			if _, err := await(ctx, activities.AwaitInput{JobID: b.JobID}); err != nil {
				var appErr *temporal.ApplicationError
				require.ErrorAs(t, err, &appErr)
				out.Failure = &activities.BatchFailure{Type: appErr.Type(), Message: appErr.Error()}
			}
		}
		return out, nil
	})
	env.OnActivity("DeadLetterShardRecords", mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.DeadLetterShardInput) (*activities.DeadLettered, error) {
		mu.Lock()
		defer mu.Unlock()
		u, _ := strconv.Atoi(in.Read.Until)
		dead = append(dead, [2]int{next(in.Read.After), u})
		return &activities.DeadLettered{Count: u - next(in.Read.After) + 1, Where: "s3://dlq/x"}, nil
	})

	cfg := KinesisConfig{Name: "unit", Stream: "s", Start: KinesisTrimHorizon,
		StreamBatching: StreamBatching{MaxRecords: 20, MaxBytes: 1 << 20, MaxWait: time.Second, Mode: ModeInline, Bisect: true,
			DeadLetterS3: &S3Location{Bucket: "dlq"}},
		TaskConfig: TaskConfig{Template: "Type: batch", Retry: TaskRetryPolicy{MaxAttempts: 2, InitialInterval: time.Second}}}
	start := activities.ShardPosition{Start: activities.ShardStartTrimHorizon}
	if engine {
		env.ExecuteWorkflow(KinesisStreamConsumerWorkflowType, KinesisStreamInput{Config: cfg, Shard: "shardId-0",
			State: StreamState[activities.ShardPosition, string]{Checkpoint: start}})
	} else {
		env.ExecuteWorkflow(ShardConsumerWorkflowType, ShardInput{Config: cfg, Shard: "shardId-0", Position: start})
	}
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())

	assert.Equal(t, [][2]int{{poison, poison}}, dead, "only the poison record is dead-lettered")
	for s := first; s <= last; s++ {
		if s == poison {
			assert.Zero(t, seen[s])
			continue
		}
		assert.Equal(t, 1, seen[s], "record %d processed once", s)
	}
	require.NotEmpty(t, reports)
	final := reports[len(reports)-1]
	assert.True(t, final.Finished, "the last report says finished")
	assert.Equal(t, strconv.Itoa(last), final.Checkpoint)
	assert.EqualValues(t, 59, final.Records)
	assert.EqualValues(t, 1, final.DeadLettered)
}
