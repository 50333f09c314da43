package workflows

import (
	"context"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
)

// TestKafkaStreamConsumerRunsABacklogWithOneActivityPerBatch: a backlog of
// 100 records in batches of 10 costs one RunBatch per batch and no other
// activity between them (no wait while the read saw more records, the group
// commit rides on the next batch), and at most a few status reports.
func TestKafkaStreamConsumerRunsABacklogWithOneActivityPerBatch(t *testing.T) {
	h := newPartitionHarness(t, 100)
	h.engine = true
	var mu sync.Mutex
	started := map[string]int{}
	var waitedFrom []activities.WaitInput
	h.env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, args converter.EncodedValues) {
		mu.Lock()
		defer mu.Unlock()
		started[info.ActivityType.Name]++
		if info.ActivityType.Name == "WaitForRecords" {
			var in activities.WaitInput
			require.NoError(t, args.Get(&in))
			waitedFrom = append(waitedFrom, in)
		}
	})
	var st PartitionStatus
	h.env.RegisterDelayedCallback(func() { st = h.status(); h.env.CancelWorkflow() }, 15*time.Second)
	h.run(unitKafkaConfig(), 0)

	assert.Equal(t, int64(100), st.Checkpoint)
	assert.Equal(t, "idle", st.Phase)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, 10, started["RunBatch"], "one activity per batch")
	assert.Equal(t, 2, started["WaitForRecords"], "a wait before the backlog and one after it, none between batches")
	assert.Zero(t, started["CommitOffset"]+started["ReadAndSubmit"]+started["Await"])
	assert.EqualValues(t, 1, h.leasesAsked.Load(), "one lease kept across the backlog's batches")
	h.mu.Lock()
	defer h.mu.Unlock()
	assert.LessOrEqual(t, len(h.reports), 3, "reports: idle, then the idle after the backlog (progress throttled): %+v", h.reports)
	require.Len(t, waitedFrom, 2)
	assert.Equal(t, activities.WaitInput{TopicRef: unitKafkaConfig().topicRef(), From: 100, Timeout: streamWaitTimeout, Group: "g"}, waitedFrom[1],
		"the wait after the backlog mirrors the last checkpoint into the group")
}

// TestKafkaConnectorMovesOlderConsumersOntoTheEngine: a connector run that
// starts on the engine code with consumers of the older type (its input
// from an older run) tells each to hand off, and starts each partition's
// KafkaStreamConsumer from the state handed over: checkpoint, bisection
// ranges and attempts, with the connector's pause.
func TestKafkaConnectorMovesOlderConsumersOntoTheEngine(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(KafkaConnector, workflowOptions(KafkaConnectorWorkflowType))
	env.RegisterWorkflowWithOptions(PartitionConsumer, workflowOptions(PartitionConsumerWorkflowType))
	env.RegisterWorkflowWithOptions(KafkaStreamConsumer, workflowOptions(KafkaStreamConsumerWorkflowType))
	env.RegisterActivity(&activities.Kafka{})
	env.OnActivity("Partitions", mock.Anything, mock.Anything).Return([]int32{0, 1}, nil)
	env.OnRequestCancelExternalWorkflow(mock.Anything, mock.Anything, mock.Anything).Return(nil)
	var mu sync.Mutex
	var handoffs []string
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, mock.Anything, SignalPartitionControl, mock.Anything).Return(
		func(_, id, _, _ string, arg any) error {
			if c, ok := arg.(PartitionControl); ok && c.Op == ControlHandoff {
				mu.Lock()
				handoffs = append(handoffs, id)
				mu.Unlock()
			}
			return nil
		})
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything).Return(nil)
	moved := map[int32]KafkaStreamInput{}
	env.OnWorkflow(KafkaStreamConsumerWorkflowType, mock.Anything, mock.Anything).Return(func(ctx workflow.Context, in KafkaStreamInput) error {
		mu.Lock()
		moved[in.Partition] = in
		mu.Unlock()
		return nil
	})
	env.OnWorkflow(PartitionConsumerWorkflowType, mock.Anything, mock.Anything).Return(func(workflow.Context, PartitionInput) error {
		t.Error("no consumer of the older type is started")
		return nil
	})
	cfg := unitKafkaConfig()
	cfg.MaxBytes = MaxInlineBatchBytes
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPause, nil) }, time.Second)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalPartitionHandoff, PartitionInput{Config: cfg, Partition: 0, Checkpoint: 42, Batches: 4, Records: 40})
	}, 2*time.Second)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalPartitionHandoff, PartitionInput{Config: cfg, Partition: 1, Checkpoint: 7, Attempts: 1,
			Ranges: []OffsetRange{{From: 7, Until: 9}, {From: 10, Until: 12}}})
	}, 3*time.Second)
	var st KafkaConnectorStatus
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryPartitionStatus)
		require.NoError(t, err)
		require.NoError(t, v.Get(&st))
		env.CancelWorkflow()
	}, time.Minute)
	env.ExecuteWorkflow(KafkaConnectorWorkflowType, KafkaConnectorInput{Config: cfg, Started: []int32{0, 1}})
	require.ErrorContains(t, env.GetWorkflowError(), "canceled")

	mu.Lock()
	defer mu.Unlock()
	assert.ElementsMatch(t, []string{PartitionWorkflowID("unit", "t", 0), PartitionWorkflowID("unit", "t", 1)}, handoffs)
	require.Len(t, moved, 2)
	assert.Equal(t, StreamState[int64, int64]{Checkpoint: 42, Batches: 4, Records: 40, Paused: true}, moved[0].State)
	assert.Equal(t, StreamState[int64, int64]{Checkpoint: 7, Attempts: 1, Paused: true,
		Ranges: []StreamRange[int64, int64]{{From: 7, Until: 9, Split: true}, {From: 10, Until: 12, Split: true}}}, moved[1].State)
	assert.Equal(t, []int32{0, 1}, st.Started)
	assert.True(t, st.Paused)
}
