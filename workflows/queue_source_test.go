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

// TestSourceQueueIsolatesAFailedBatchAndKeepsItsLeaseWhileIdle: a queue
// kind's connector runs 25 messages in batches of 10 (one activity each,
// one lease across the backlog); the batch holding a poison message fails,
// its messages are isolated (the activity names the suspect) and only the
// poison is released; then the idle poller waits in
// windows of sourceQueueIdleWait on the lease it holds, asking for no
// other.
func TestSourceQueueIsolatesAFailedBatchAndKeepsItsLeaseWhileIdle(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(SourceQueueConnector, workflowOptions("unit-connector"))
	env.RegisterActivity(&activities.SourceQueues{})
	env.RegisterActivity(&activities.Temporal{})
	asked := grantEveryLease(env)
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything).Return(nil)

	left := 25
	var calls []string
	env.OnActivity("SourceQueueBatch", mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.SourceQueueBatchInput) (*activities.MessagesRun, error) {
		assert.Equal(t, "unit", in.Source.Kind)
		n := min(left, in.MaxMessages)
		calls = append(calls, fmt.Sprintf("batch %d idle=%s", n, in.IdleWait))
		if n == 0 {
			return &activities.MessagesRun{}, nil
		}
		r := &activities.MessagesRun{QueueBatch: activities.QueueBatch{JobID: fmt.Sprintf("j-%d", left), QueueTimeout: time.Minute, ExecutionTimeout: time.Minute}}
		for i := range n {
			r.Messages = append(r.Messages, activities.QueueMessage{ID: fmt.Sprintf("m-%d", left-i), Handle: "h"})
		}
		if left == 15 { // the second batch holds the poison, m-12
			r.Suspects = []string{"m-12"}
			r.Failure = &activities.BatchFailure{Type: activities.ErrTypeTaskFailed, Message: "exit 3"}
		} else {
			r.Settled = &activities.Settled{Deleted: n}
		}
		left -= n
		return r, nil
	}).After(sourceQueueIdleWait)
	env.OnActivity("SourceQueueSingles", mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.SourceSinglesInput) (*activities.RunSinglesResult, error) {
		calls = append(calls, "isolate")
		assert.Equal(t, "j-15", in.JobID)
		assert.Equal(t, []string{"m-12"}, in.Suspects, "the activity's suspects reach the isolation")
		return &activities.RunSinglesResult{Failed: []string{"m-12"}}, nil
	})
	env.OnActivity("SourceQueueSettle", mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.SourceSettleInput) (*activities.Settled, error) {
		calls = append(calls, "settle")
		assert.True(t, in.Succeeded)
		assert.Equal(t, []string{"m-12"}, in.Release, "only the poison goes back to the queue")
		return &activities.Settled{Deleted: len(in.Messages) - 1, Released: 1}, nil
	})

	var st QueueStatus
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryQueueStatus)
		require.NoError(t, err)
		require.NoError(t, v.Get(&st))
		env.CancelWorkflow()
	}, 4*time.Minute)
	env.ExecuteWorkflow("unit-connector", SourceQueueInput{Config: SourceQueueConfig{Name: "n",
		SourceKind: SourceKind{Kind: "unit", ConnectorType: "unit-connector", IDPrefix: "unit-"}, Source: []byte(`{}`), Describe: "spool",
		Lease: time.Minute, MaxMessages: 10, MaxWait: time.Second, Concurrency: 1, TaskConfig: TaskConfig{Template: "Type: batch"}}})

	require.GreaterOrEqual(t, len(calls), 7)
	idle := fmt.Sprintf("idle=%s", sourceQueueIdleWait)
	assert.Equal(t, []string{"batch 10 " + idle, "batch 10 idle=0s", "isolate", "settle", "batch 5 idle=0s", "batch 0 " + idle, "batch 0 " + idle}, calls[:7],
		"a full batch is followed by one that does not wait for a first message (a failed full one after its isolation); a short one by waiting windows")
	assert.EqualValues(t, 2, asked.Load(), "one lease for the backlog, one after the failed batch gave its back; the idle poller keeps it")
	assert.Equal(t, QueueCounters{Batches: 3, Messages: 25, Deleted: 24, Released: 1, FailedBatches: 1}, st.Counters)
	assert.Equal(t, "spool", st.URL)
}
