package workflows

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
)

// TestQueueSkipsTheWaitAfterAFullBatchAndSettlesInTheAwait: 25 messages in
// batches of 10 cost one WaitForMessages before the first batch, none
// after a full one, and no SettleMessages activity (AwaitMessages settles
// a successful batch); every message is deleted once.
func TestQueueSkipsTheWaitAfterAFullBatchAndSettlesInTheAwait(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(QueueConnector, workflowOptions(QueueWorkflowType))
	env.RegisterActivity(&activities.Queue{})
	env.RegisterActivity(&activities.Temporal{})
	grantEveryLease(env)
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

	require.GreaterOrEqual(t, len(calls), 8)
	assert.Equal(t, []string{"wait", "receive 10", "await", "receive 10", "await", "receive 5", "await", "wait"}, calls[:8],
		"a wait only before the first batch and after the short one")
	assert.NotContains(t, calls, "settle")
	assert.Equal(t, QueueCounters{Batches: 3, Messages: 25, Deleted: 25}, st.Counters)
}
