package workflows

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
)

// TestQueueRunsABacklogWithOneActivityPerBatchAndOneLease: on the batch
// runner, 25 messages in batches of 10 cost one WaitForMessages before the
// first batch, none after a full one, one RunMessages per batch (it
// settles a successful batch: no SettleMessages) and one lease kept across
// the backlog's batches; every message is deleted once.
func TestQueueRunsABacklogWithOneActivityPerBatchAndOneLease(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(QueueConnector, workflowOptions(QueueWorkflowType))
	env.RegisterActivity(&activities.Queue{})
	env.RegisterActivity(&activities.Temporal{})
	asked := grantEveryLease(env)
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything).Return(nil)

	left := 25
	var calls []string // activities, in order
	env.OnActivity("QueueURL", mock.Anything, mock.Anything).Return("http://queue/unit", nil)
	env.OnActivity("WaitForMessages", mock.Anything, mock.Anything).Return(func(context.Context, activities.WaitMessagesInput) (bool, error) {
		calls = append(calls, "wait")
		return left > 0, nil
	}).After(5 * time.Second)
	env.OnActivity("ReceiveAndSubmit", mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.QueueSubmitInput) (*activities.QueueBatch, error) {
		n := min(left, in.MaxMessages)
		calls = append(calls, fmt.Sprintf("receive %d", n))
		if n == 0 {
			return &activities.QueueBatch{}, nil
		}
		b := &activities.QueueBatch{JobID: fmt.Sprintf("j-%d", left), QueueTimeout: time.Minute, ExecutionTimeout: time.Minute}
		for i := range n {
			b.Messages = append(b.Messages, activities.QueueMessage{ID: fmt.Sprintf("m-%d", left-i), Handle: "h"})
		}
		left -= n
		return b, nil
	})
	env.OnActivity("RunMessages", mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.QueueSubmitInput) (*activities.MessagesRun, error) {
		n := min(left, in.MaxMessages)
		calls = append(calls, fmt.Sprintf("run %d", n))
		if n == 0 {
			return &activities.MessagesRun{}, nil
		}
		r := &activities.MessagesRun{QueueBatch: activities.QueueBatch{JobID: fmt.Sprintf("j-%d", left), QueueTimeout: time.Minute, ExecutionTimeout: time.Minute}}
		for i := range n {
			r.Messages = append(r.Messages, activities.QueueMessage{ID: fmt.Sprintf("m-%d", left-i), Handle: "h"})
		}
		r.Settled = &activities.Settled{Deleted: n}
		left -= n
		return r, nil
	})
	env.OnActivity("AwaitMessages", mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.AwaitMessagesInput) (*activities.AwaitedMessages, error) {
		calls = append(calls, "await")
		assert.True(t, in.Settle, "the await settles a successful batch")
		return &activities.AwaitedMessages{AwaitResult: activities.AwaitResult{JobID: in.JobID}, Settled: &activities.Settled{Deleted: len(in.Messages)}}, nil
	})
	env.OnActivity("SettleMessages", mock.Anything, mock.Anything).Return(func(context.Context, activities.SettleInput) (*activities.Settled, error) {
		calls = append(calls, "settle")
		return &activities.Settled{}, nil
	})

	var st QueueStatus
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryQueueStatus)
		require.NoError(t, err)
		require.NoError(t, v.Get(&st))
		env.CancelWorkflow()
	}, 2*time.Minute)
	env.ExecuteWorkflow(QueueConnector, QueueInput{Config: QueueConfig{Name: "unit", Kind: KindSQS, Queue: "unit",
		VisibilityTimeout: time.Minute, MaxMessages: 10, MaxWait: time.Second, Concurrency: 1, TaskConfig: TaskConfig{Template: "Type: batch"}}})

	require.GreaterOrEqual(t, len(calls), 5)
	assert.Equal(t, []string{"wait", "run 10", "run 10", "run 5", "wait"}, calls[:5],
		"a wait only before the first batch and after the short one; one activity per batch")
	assert.NotContains(t, calls, "settle")
	assert.EqualValues(t, 1, asked.Load(), "one lease kept across the backlog's batches")
	assert.Equal(t, QueueCounters{Batches: 3, Messages: 25, Deleted: 25}, st.Counters)
}

// TestIdleQueuePollersWaitOnceAndAllRunWhenMessagesArrive: with
// concurrency 4 and an empty queue only one poller waits for messages (one
// WaitForMessages at a time, none of the others runs an activity); when
// 45 messages arrive, the pollers run them in parallel and are parked
// again once the queue is drained.
func TestIdleQueuePollersWaitOnceAndAllRunWhenMessagesArrive(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(QueueConnector, workflowOptions(QueueWorkflowType))
	env.RegisterActivity(&activities.Queue{})
	env.RegisterActivity(&activities.Temporal{})
	asked := grantEveryLease(env)
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything).Return(nil)
	var mu sync.Mutex
	left, waiting, mostWaiting, waits, running, mostRunning := 0, 0, 0, 0, 0, 0
	env.OnActivity("QueueURL", mock.Anything, mock.Anything).Return("http://queue/unit", nil)
	env.OnActivity("WaitForMessages", mock.Anything, mock.Anything).Return(func(context.Context, activities.WaitMessagesInput) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		waits++
		return left > 0, nil
	}).After(10 * time.Second)
	env.OnActivity("RunMessages", mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.QueueSubmitInput) (*activities.MessagesRun, error) {
		mu.Lock()
		n := min(left, in.MaxMessages)
		left -= n
		running++
		mostRunning = max(mostRunning, running)
		mu.Unlock()
		time.Sleep(50 * time.Millisecond) // a task: the others run meanwhile
		mu.Lock()
		running--
		mu.Unlock()
		r := &activities.MessagesRun{}
		if n > 0 {
			r.JobID, r.QueueTimeout, r.ExecutionTimeout = fmt.Sprintf("j-%d", n), time.Minute, time.Minute
			for i := range n {
				r.Messages = append(r.Messages, activities.QueueMessage{ID: fmt.Sprintf("m-%d-%d", left, i), Handle: "h"})
			}
			r.Settled = &activities.Settled{Deleted: n}
		}
		return r, nil
	})
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		if info.ActivityType.Name == "WaitForMessages" {
			mu.Lock()
			waiting++
			mostWaiting = max(mostWaiting, waiting)
			mu.Unlock()
		}
	})
	env.SetOnActivityCompletedListener(func(info *activity.Info, _ converter.EncodedValue, _ error) {
		if info.ActivityType.Name == "WaitForMessages" {
			mu.Lock()
			waiting--
			mu.Unlock()
		}
	})
	var idleWaits int
	env.RegisterDelayedCallback(func() {
		mu.Lock()
		defer mu.Unlock()
		idleWaits, left = waits, 45
	}, 10*time.Minute)
	var st QueueStatus
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryQueueStatus)
		require.NoError(t, err)
		require.NoError(t, v.Get(&st))
		env.CancelWorkflow()
	}, 15*time.Minute)
	env.ExecuteWorkflow(QueueConnector, QueueInput{Config: QueueConfig{Name: "unit", Kind: KindSQS, Queue: "unit",
		VisibilityTimeout: time.Minute, MaxMessages: 10, MaxWait: time.Second, Concurrency: 4, TaskConfig: TaskConfig{Template: "Type: batch"}}})

	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, 1, mostWaiting, "one poller waits for messages at a time")
	assert.InDelta(t, 60, idleWaits, 2, "idle: one 10-s wait after another (this mock's), nothing else")
	assert.Greater(t, mostRunning, 1, "the parked pollers ran when messages arrived")
	assert.Greater(t, asked.Load(), int64(1), "each running poller took a lease")
	assert.Equal(t, int64(45), st.Counters.Deleted)
	assert.Zero(t, left)
}
