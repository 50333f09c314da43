package workflows

import (
	"context"
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

// TestKinesisConnectorStartsAChildShardOnlyAfterItsParentsFinished: of a
// closed shard s0 (split into s2 and s3) and an open shard s1, the
// consumers of s0 and s1 start at once; s2 and s3 start only when s0
// reports itself finished, and s4 (a merge of s3 and s1) only when both of
// its parents did.
// newKinesisConnectorEnv is a test environment for KinesisConnector with
// its consumer workflow and activities registered.
func newKinesisConnectorEnv() *testsuite.TestWorkflowEnvironment {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(KinesisConnector, workflowOptions(KinesisConnectorWorkflowType))
	env.RegisterWorkflowWithOptions(ShardConsumer, workflowOptions(ShardConsumerWorkflowType))
	env.RegisterWorkflowWithOptions(KinesisStreamConsumer, workflowOptions(KinesisStreamConsumerWorkflowType))
	env.RegisterActivity(&activities.Kinesis{})
	return env
}

func TestKinesisConnectorStartsAChildShardOnlyAfterItsParentsFinished(t *testing.T) {
	env := newKinesisConnectorEnv()
	env.OnActivity("ListShards", mock.Anything, mock.Anything).Return([]activities.Shard{
		{ID: "s0", Closed: true}, {ID: "s1", Closed: true},
		{ID: "s2", Parent: "s0"}, {ID: "s3", Parent: "s0", Closed: true},
		{ID: "s4", Parent: "s3", AdjacentParent: "s1"},
	}, nil)
	env.OnRequestCancelExternalWorkflow(mock.Anything, mock.Anything, mock.Anything).Return(nil)
	var mu sync.Mutex
	started := map[string]time.Duration{}
	epochs := map[string]bool{}
	begin := env.Now()
	env.OnWorkflow(KinesisStreamConsumerWorkflowType, mock.Anything, mock.Anything).Return(func(ctx workflow.Context, in KinesisStreamInput) error {
		mu.Lock()
		defer mu.Unlock()
		started[in.Shard] = workflow.Now(ctx).Sub(begin)
		epochs[in.State.Epoch] = true
		return nil
	})
	finish := func(at time.Duration, shard string) {
		env.RegisterDelayedCallback(func() {
			env.SignalWorkflow(SignalShardStatus, ShardStatus{Shard: shard, Finished: true, Phase: "finished", Records: 10})
		}, at)
	}
	finish(time.Minute, "s0")
	finish(2*time.Minute, "s3")
	finish(3*time.Minute, "s1")
	var st KinesisConnectorStatus
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryShardStatus)
		require.NoError(t, err)
		require.NoError(t, v.Get(&st))
		env.CancelWorkflow()
	}, 4*time.Minute)
	cfg := KinesisConfig{Name: "unit", Stream: "s", Start: KinesisTrimHorizon,
		StreamBatching: StreamBatching{MaxRecords: 10, MaxBytes: 1 << 18, MaxWait: time.Second, Mode: ModeInline},
		TaskConfig:     TaskConfig{Template: "Type: batch"}}
	env.ExecuteWorkflow(KinesisConnectorWorkflowType, KinesisConnectorInput{Config: cfg})
	require.True(t, env.IsWorkflowCompleted())
	require.ErrorContains(t, env.GetWorkflowError(), "canceled")

	mu.Lock()
	defer mu.Unlock()
	assert.Len(t, epochs, 1, "the consumers a connector run starts share its epoch")
	assert.NotContains(t, epochs, "", "a consumer the connector starts has an epoch: its batches are not those of an earlier connector of the same name")
	assert.Less(t, started["s0"], time.Second, "a shard without parents starts at once")
	assert.Less(t, started["s1"], time.Second)
	for _, s := range []string{"s2", "s3"} {
		assert.GreaterOrEqual(t, started[s], time.Minute, "%s waits for s0", s)
		assert.Less(t, started[s], time.Minute+time.Second, "%s starts as soon as s0 finished", s)
	}
	assert.GreaterOrEqual(t, started["s4"], 3*time.Minute, "s4 waits for both parents")
	require.Len(t, st.Shards, 5)
	assert.Equal(t, []string{"s3", "s1"}, st.Shards[4].Parents)
	assert.EqualValues(t, 30, st.Records)
}

// TestKinesisConnectorKeepsTheNewerOfReportsArrivingOutOfOrder: a shard's
// "idle" report overtook its earlier "running" one; the connector's status
// keeps the idle one.
func TestKinesisConnectorKeepsTheNewerOfReportsArrivingOutOfOrder(t *testing.T) {
	env := newKinesisConnectorEnv()
	env.OnActivity("ListShards", mock.Anything, mock.Anything).Return([]activities.Shard{{ID: "s0"}}, nil)
	env.OnRequestCancelExternalWorkflow(mock.Anything, mock.Anything, mock.Anything).Return(nil)
	env.OnWorkflow(KinesisStreamConsumerWorkflowType, mock.Anything, mock.Anything).Return(nil)
	at := env.Now()
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalShardStatus, ShardStatus{Shard: "s0", Phase: "idle", Records: 20, Reported: at.Add(2 * time.Second)})
	}, 10*time.Second)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalShardStatus, ShardStatus{Shard: "s0", Phase: "running", Records: 20, Reported: at.Add(time.Second)})
	}, 11*time.Second)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalShardStatus, ShardStatus{Shard: "s0", Phase: "running", Records: 30, Reported: at.Add(3 * time.Second)})
	}, 12*time.Second)
	var stale, fresh KinesisConnectorStatus
	query := func(into *KinesisConnectorStatus) {
		v, err := env.QueryWorkflow(QueryShardStatus)
		require.NoError(t, err)
		require.NoError(t, v.Get(into))
	}
	env.RegisterDelayedCallback(func() { query(&stale) }, 11*time.Second+time.Millisecond)
	env.RegisterDelayedCallback(func() { query(&fresh); env.CancelWorkflow() }, 13*time.Second)
	cfg := KinesisConfig{Name: "unit", Stream: "s", Start: KinesisTrimHorizon,
		StreamBatching: StreamBatching{MaxRecords: 10, MaxBytes: 1 << 18, MaxWait: time.Second, Mode: ModeInline},
		TaskConfig:     TaskConfig{Template: "Type: batch"}}
	env.ExecuteWorkflow(KinesisConnectorWorkflowType, KinesisConnectorInput{Config: cfg})

	require.Len(t, stale.Shards, 1)
	assert.Equal(t, "idle", stale.Shards[0].Phase, "the stale running report did not overwrite the newer idle one")
	require.Len(t, fresh.Shards, 1)
	assert.Equal(t, "running", fresh.Shards[0].Phase, "a later report still replaces it")
	assert.EqualValues(t, 30, fresh.Records)
}

// TestKinesisConnectorMovesOlderConsumersOntoTheEngine: a connector run on
// the engine code whose input lists started shards (from an older run)
// tells the unfinished ones to hand off and continues each on
// KinesisStreamConsumer from its handed-over position and ranges; a
// finished shard is left alone.
func TestKinesisConnectorMovesOlderConsumersOntoTheEngine(t *testing.T) {
	env := newKinesisConnectorEnv()
	env.OnActivity("ListShards", mock.Anything, mock.Anything).Return([]activities.Shard{{ID: "s0", Closed: true}, {ID: "s1"}}, nil)
	env.OnRequestCancelExternalWorkflow(mock.Anything, mock.Anything, mock.Anything).Return(nil)
	var mu sync.Mutex
	var handoffs []string
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, mock.Anything, SignalShardControl, mock.Anything).Return(
		func(_, id, _, _ string, arg any) error {
			if c, ok := arg.(ShardControl); ok && c.Op == ControlHandoff {
				mu.Lock()
				handoffs = append(handoffs, id)
				mu.Unlock()
			}
			return nil
		})
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything).Return(nil)
	var moved []KinesisStreamInput
	env.OnWorkflow(KinesisStreamConsumerWorkflowType, mock.Anything, mock.Anything).Return(func(_ workflow.Context, in KinesisStreamInput) error {
		mu.Lock()
		moved = append(moved, in)
		mu.Unlock()
		return nil
	})
	cfg := KinesisConfig{Name: "unit", Stream: "s", Start: KinesisTrimHorizon,
		StreamBatching: StreamBatching{MaxRecords: 10, MaxBytes: 1 << 18, MaxWait: time.Second, Mode: ModeInline},
		TaskConfig:     TaskConfig{Template: "Type: batch"}}
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalShardHandoff, ShardInput{Config: cfg, Shard: "s1", Position: activities.ShardPosition{After: "1005"},
			Records: 6, Attempts: 1, Ranges: []SeqRange{{From: activities.ShardPosition{After: "1005"}, Until: "1009"}}})
	}, 2*time.Second)
	env.RegisterDelayedCallback(env.CancelWorkflow, time.Minute)
	env.ExecuteWorkflow(KinesisConnectorWorkflowType, KinesisConnectorInput{Config: cfg,
		Shards: []KinesisShard{{Shard: activities.Shard{ID: "s0", Closed: true}, Started: true, Finished: true}, {Shard: activities.Shard{ID: "s1"}, Started: true}}})
	require.ErrorContains(t, env.GetWorkflowError(), "canceled")

	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{ShardWorkflowID("unit", "s1")}, handoffs, "only the unfinished shard hands off")
	require.Len(t, moved, 1)
	assert.Equal(t, "s1", moved[0].Shard)
	assert.Equal(t, StreamState[activities.ShardPosition, string]{Checkpoint: activities.ShardPosition{After: "1005"}, Records: 6, Attempts: 1,
		Ranges: []StreamRange[activities.ShardPosition, string]{{From: activities.ShardPosition{After: "1005"}, Until: "1009"}}}, moved[0].State)
}

// TestKinesisConnectorWatchesIdleShardsAndWakesTheOneWithRecords: the
// shard consumers of a connector on this code wait for its watcher; the
// connector lists shards once (the watcher looks for new ones), watches
// the idle shards at the positions they reported, and wakes only the shard
// the watcher saw records on, naming the position it waits at.
func TestKinesisConnectorWatchesIdleShardsAndWakesTheOneWithRecords(t *testing.T) {
	var mu sync.Mutex
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(KinesisConnector, workflowOptions(KinesisConnectorWorkflowType))
	// A stand-in consumer under the engine consumer's name takes the wakes.
	var wakes []string
	var consumers []KinesisStreamInput
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context, in KinesisStreamInput) error {
		mu.Lock()
		consumers = append(consumers, in)
		mu.Unlock()
		end, over := workflow.NewTimer(ctx, 11*time.Minute), false
		for !over {
			sel := workflow.NewSelector(ctx)
			sel.AddFuture(end, func(workflow.Future) { over = true })
			sel.AddReceive(workflow.GetSignalChannel(ctx, SignalStreamWake), func(c workflow.ReceiveChannel, _ bool) {
				var wk StreamWake
				c.Receive(ctx, &wk)
				mu.Lock()
				wakes = append(wakes, in.Shard+"@"+wk.Checkpoint)
				mu.Unlock()
			})
			sel.Select(ctx)
		}
		return nil
	}, workflowOptions(KinesisStreamConsumerWorkflowType))
	env.RegisterActivity(&activities.Kinesis{})
	listed := 0
	env.OnActivity("ListShards", mock.Anything, mock.Anything).Return(func(context.Context, activities.KinesisStreamRef) ([]activities.Shard, error) {
		mu.Lock()
		defer mu.Unlock()
		listed++
		return []activities.Shard{{ID: "s0"}, {ID: "s1"}}, nil
	})
	arrived := false
	var watches []activities.WatchShardsInput
	env.OnActivity("WatchShards", mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.WatchShardsInput) (*activities.ShardsWatched, error) {
		mu.Lock()
		defer mu.Unlock()
		watches = append(watches, in)
		for _, s := range in.Idle {
			if s.Shard == "s1" && arrived {
				return &activities.ShardsWatched{Ready: []string{"s1"}}, nil
			}
		}
		return &activities.ShardsWatched{}, nil
	}).After(time.Minute)
	env.OnRequestCancelExternalWorkflow(mock.Anything, mock.Anything, mock.Anything).Return(nil)
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything).Return(nil)
	at := env.Now()
	s0At, s1At := activities.ShardPosition{After: "100"}, activities.ShardPosition{Start: activities.ShardStartTrimHorizon}
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalShardStatus, ShardStatus{Shard: "s0", Phase: "idle", Watched: true, WaitsAt: &s0At, Reported: at.Add(time.Second), Seq: 1})
		env.SignalWorkflow(SignalShardStatus, ShardStatus{Shard: "s1", Phase: "idle", Watched: true, WaitsAt: &s1At, Reported: at.Add(time.Second), Seq: 1})
	}, time.Second)
	env.RegisterDelayedCallback(func() {
		mu.Lock()
		arrived = true
		mu.Unlock()
	}, 3*time.Minute)
	env.RegisterDelayedCallback(env.CancelWorkflow, 10*time.Minute)
	cfg := KinesisConfig{Name: "unit", Stream: "s", Start: KinesisTrimHorizon,
		StreamBatching: StreamBatching{MaxRecords: 10, MaxBytes: 1 << 18, MaxWait: time.Second, Mode: ModeInline},
		TaskConfig:     TaskConfig{Template: "Type: batch"}}
	env.ExecuteWorkflow(KinesisConnectorWorkflowType, KinesisConnectorInput{Config: cfg})
	require.ErrorContains(t, env.GetWorkflowError(), "canceled")

	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, 1, listed, "shards listed once: the watcher looks for new ones")
	require.Len(t, consumers, 2)
	assert.True(t, consumers[0].Watched && consumers[1].Watched, "consumers wait for the watcher's wake")
	assert.Equal(t, []string{"s1@start"}, wakes, "only s1 is woken, at the position it waits at")
	require.NotEmpty(t, watches)
	last := watches[len(watches)-1]
	assert.Equal(t, []activities.ShardAt{{Shard: "s0", ShardPosition: s0At}}, last.Idle, "after the wake only s0 is watched")
	assert.Equal(t, []string{"s0", "s1"}, last.Known)
	assert.LessOrEqual(t, len(watches), 12, "about one watch a minute here (the mock's timeout)")
}
