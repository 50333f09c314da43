package workflows

import (
	"context"
	"fmt"
	"slices"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/interceptor"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
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

// TestWatchedKafkaConsumerWaitsForItsConnectorsWakeWithoutActivities: a
// consumer of a watching connector reports where it waits when idle and
// then waits for the wake signal with no activity and no timer; a wake for
// another checkpoint is stale and ignored; the wake for its checkpoint runs
// the batch.
func TestWatchedKafkaConsumerWaitsForItsConnectorsWakeWithoutActivities(t *testing.T) {
	h := newPartitionHarness(t, 0)
	h.engine = true
	var mu sync.Mutex
	started := map[string]int{}
	h.env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		mu.Lock()
		defer mu.Unlock()
		started[info.ActivityType.Name]++
	})
	var idle, final PartitionStatus
	h.env.RegisterDelayedCallback(func() {
		idle = h.status()
		h.env.SignalWorkflow(SignalStreamWake, StreamWake{Checkpoint: "3"}) // stale: it waits at 0
	}, time.Hour)
	h.env.RegisterDelayedCallback(func() {
		h.mu.Lock()
		h.end = 5 // records arrive; the connector's watcher saw them
		h.mu.Unlock()
		h.env.SignalWorkflow(SignalStreamWake, StreamWake{Checkpoint: "0"})
	}, 2*time.Hour)
	h.env.RegisterDelayedCallback(func() { final = h.status(); h.env.CancelWorkflow() }, 3*time.Hour)
	h.env.ExecuteWorkflow(KafkaStreamConsumer, KafkaStreamInput{Config: unitKafkaConfig(), Partition: 0, Watched: true,
		State: StreamState[int64, int64]{Checkpoint: 0}})

	assert.Equal(t, "idle", idle.Phase)
	assert.True(t, idle.Watched)
	assert.Equal(t, int64(0), idle.Checkpoint)
	mu.Lock()
	defer mu.Unlock()
	assert.Zero(t, started["WaitForRecords"], "a watched consumer never polls")
	assert.Equal(t, 1, started["RunBatch"], "one batch, after the wake for its checkpoint (the stale wake ran none)")
	assert.Equal(t, int64(5), final.Checkpoint)
	h.mu.Lock()
	defer h.mu.Unlock()
	var waits []int64
	for _, r := range h.reports {
		if r.Phase == "idle" && r.Watched {
			waits = append(waits, r.Checkpoint)
		}
	}
	assert.Contains(t, waits, int64(0))
	assert.Contains(t, waits, int64(5), "after the batch it reports the new checkpoint it waits at")
}

// TestKafkaConnectorWatchesIdlePartitionsAndWakesTheOneWithRecords: a
// connector on the watcher code lists its partitions once (no discovery
// round every 10 s), runs one watch over the checkpoints its idle consumers
// reported (two reports of one consumer that arrive out of order are put
// back in order by their sequence number), and when the watch finds records
// past partition 1's checkpoint it wakes that consumer only, naming the
// checkpoint it waits at.
func TestKafkaConnectorWatchesIdlePartitionsAndWakesTheOneWithRecords(t *testing.T) {
	var mu sync.Mutex
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(KafkaConnector, workflowOptions(KafkaConnectorWorkflowType))
	// A stand-in consumer under the engine consumer's name takes the wake
	// signals (a child of the connector, so they reach it, not a mock).
	var wakes []string
	var consumers []KafkaStreamInput
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context, in KafkaStreamInput) error {
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
				wakes = append(wakes, fmt.Sprintf("%d@%s", in.Partition, wk.Checkpoint))
				mu.Unlock()
			})
			sel.Select(ctx)
		}
		return nil
	}, workflowOptions(KafkaStreamConsumerWorkflowType))
	env.RegisterActivity(&activities.Kafka{})
	listed := 0
	env.OnActivity("Partitions", mock.Anything, mock.Anything).Return(func(context.Context, activities.TopicRef) ([]int32, error) {
		mu.Lock()
		defer mu.Unlock()
		listed++
		return []int32{0, 1}, nil
	})
	arrived := false
	var watches []activities.WatchInput
	env.OnActivity("WatchPartitions", mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.WatchInput) (*activities.Watched, error) {
		mu.Lock()
		defer mu.Unlock()
		watches = append(watches, in)
		for _, p := range in.Idle {
			if p.Partition == 1 && arrived {
				return &activities.Watched{Ready: []int32{1}}, nil
			}
		}
		return &activities.Watched{}, nil
	}).After(time.Minute)
	env.OnRequestCancelExternalWorkflow(mock.Anything, mock.Anything, mock.Anything).Return(nil)
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything).Return(nil)
	cfg := unitKafkaConfig()
	cfg.MaxBytes = MaxInlineBatchBytes
	at := env.Now()
	env.RegisterDelayedCallback(func() {
		// Two reports of one workflow task (same time) arrive out of
		// order: the sequence number keeps the later (idle) one.
		env.SignalWorkflow(SignalPartitionStatus, PartitionStatus{Partition: 0, Checkpoint: 10, Phase: "idle", Watched: true, Reported: at.Add(time.Second), Seq: 2})
		env.SignalWorkflow(SignalPartitionStatus, PartitionStatus{Partition: 0, Checkpoint: 10, Phase: "resuming", Watched: true, Reported: at.Add(time.Second), Seq: 1})
		env.SignalWorkflow(SignalPartitionStatus, PartitionStatus{Partition: 1, Checkpoint: 20, Phase: "idle", Watched: true, Reported: at.Add(time.Second), Seq: 1})
	}, time.Second)
	env.RegisterDelayedCallback(func() {
		mu.Lock()
		arrived = true
		mu.Unlock()
	}, 3*time.Minute)
	env.RegisterDelayedCallback(env.CancelWorkflow, 10*time.Minute)
	env.ExecuteWorkflow(KafkaConnectorWorkflowType, KafkaConnectorInput{Config: cfg})
	require.ErrorContains(t, env.GetWorkflowError(), "canceled")

	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, 1, listed, "partitions listed once: the watcher looks for new ones")
	require.Len(t, consumers, 2)
	assert.True(t, consumers[0].Watched && consumers[1].Watched, "consumers wait for the watcher's wake")
	assert.Equal(t, []string{"1@20"}, wakes, "only partition 1 is woken, at the checkpoint it waits at")
	require.NotEmpty(t, watches)
	last := watches[len(watches)-1]
	assert.Equal(t, []activities.PartitionAt{{Partition: 0, From: 10}}, last.Idle, "after the wake only partition 0 is watched")
	assert.Equal(t, "g", last.Group)
	assert.Equal(t, 2, last.Known)
	t.Logf("%d watches in 10 minutes", len(watches))
	assert.LessOrEqual(t, len(watches), 12, "about one watch a minute here (the mock's timeout), restarted when the idle set changed")
}

// TestKafkaConnectorRestartsItsWatchOnceForReportsThatArriveTogether:
// twenty partitions going idle at once (their reports taken in by one
// workflow task) change the watch once, not twenty times.
func TestKafkaConnectorRestartsItsWatchOnceForReportsThatArriveTogether(t *testing.T) {
	var mu sync.Mutex
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(KafkaConnector, workflowOptions(KafkaConnectorWorkflowType))
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context, in KafkaStreamInput) error {
		return workflow.Sleep(ctx, 11*time.Minute) // a consumer that outlives the test
	}, workflowOptions(KafkaStreamConsumerWorkflowType))
	env.RegisterActivity(&activities.Kafka{})
	const partitions = 20
	env.OnActivity("Partitions", mock.Anything, mock.Anything).Return(func(context.Context, activities.TopicRef) ([]int32, error) {
		var ps []int32
		for p := range partitions {
			ps = append(ps, int32(p))
		}
		return ps, nil
	}).After(10 * time.Second) // the reports arrive meanwhile and wait together
	// Count the watches the connector schedules (also those cancelled
	// before they start).
	var watched [][]activities.PartitionAt
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{&activityCounter{onSchedule: func(name string, args []any) {
		if name != "WatchPartitions" {
			return
		}
		mu.Lock()
		watched = append(watched, args[0].(activities.WatchInput).Idle)
		mu.Unlock()
	}}}})
	env.OnActivity("WatchPartitions", mock.Anything, mock.Anything).Return(&activities.Watched{}, nil).After(5 * time.Minute)
	env.OnRequestCancelExternalWorkflow(mock.Anything, mock.Anything, mock.Anything).Return(nil)
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything).Return(nil)
	cfg := unitKafkaConfig()
	cfg.MaxBytes = MaxInlineBatchBytes
	at := env.Now()
	env.RegisterDelayedCallback(func() {
		for p := range partitions {
			env.SignalWorkflow(SignalPartitionStatus, PartitionStatus{Partition: int32(p), Checkpoint: 7, Phase: "idle", Watched: true, Reported: at.Add(time.Second), Seq: 1})
		}
	}, time.Second)
	env.RegisterDelayedCallback(env.CancelWorkflow, 3*time.Minute)
	env.ExecuteWorkflow(KafkaConnectorWorkflowType, KafkaConnectorInput{Config: cfg})
	require.ErrorContains(t, env.GetWorkflowError(), "canceled")

	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, watched)
	assert.Len(t, watched[len(watched)-1], partitions, "the last watch covers every idle partition")
	assert.LessOrEqual(t, len(watched), 2, "one watch before the reports, one after: %d", len(watched))
}

// activityCounter is a worker interceptor that reports every activity a
// workflow schedules, by name, with its arguments.
type activityCounter struct {
	interceptor.WorkerInterceptorBase
	onSchedule func(name string, args []any)
}

func (c *activityCounter) InterceptWorkflow(ctx workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	return &activityCounterInbound{WorkflowInboundInterceptorBase: interceptor.WorkflowInboundInterceptorBase{Next: next}, c: c}
}

type activityCounterInbound struct {
	interceptor.WorkflowInboundInterceptorBase
	c *activityCounter
}

func (i *activityCounterInbound) Init(outbound interceptor.WorkflowOutboundInterceptor) error {
	return i.Next.Init(&activityCounterOutbound{WorkflowOutboundInterceptorBase: interceptor.WorkflowOutboundInterceptorBase{Next: outbound}, c: i.c})
}

type activityCounterOutbound struct {
	interceptor.WorkflowOutboundInterceptorBase
	c *activityCounter
}

func (o *activityCounterOutbound) ExecuteActivity(ctx workflow.Context, activityType string, args ...any) workflow.Future {
	o.c.onSchedule(activityType, args)
	return o.Next.ExecuteActivity(ctx, activityType, args...)
}

// succeededOnce counts, per offset, the successful batches that held it.
func (h *partitionHarness) succeededOnce() map[int64]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := map[int64]int{}
	for _, r := range h.succeeded {
		for o := r.From; o <= r.Until; o++ {
			n[o]++
		}
	}
	return n
}

// TestKafkaStreamConsumerRunsTwoBatchesInFlightAndCheckpointsInOffsetOrder:
// with max_in_flight 2 a backlog runs two batches at once, each on its own
// bounded range and lease; every second batch finishes before the one
// before it, and the checkpoint (mirrored to the group as the next batch
// starts) never passes a batch that has not succeeded.
func TestKafkaStreamConsumerRunsTwoBatchesInFlightAndCheckpointsInOffsetOrder(t *testing.T) {
	h := newPartitionHarness(t, 100)
	h.engine = true
	var running, most atomic.Int64
	var violations []string
	var order []int64
	h.onRunBatch = func(in activities.KafkaBatchInput) {
		mirror := in.Read.From
		if in.Mirror != nil {
			mirror = *in.Mirror
		}
		h.mu.Lock()
		done := map[int64]bool{}
		for _, r := range h.succeeded {
			for o := r.From; o <= r.Until; o++ {
				done[o] = true
			}
		}
		for o := int64(0); o < mirror; o++ {
			if !done[o] {
				violations = append(violations, fmt.Sprintf("checkpoint %d mirrored before offset %d succeeded", mirror, o))
				break
			}
		}
		h.mu.Unlock()
		n := running.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		// The first of each pair is slow: the second finishes first.
		if (in.Read.From/10)%2 == 0 {
			time.Sleep(150 * time.Millisecond)
		} else {
			time.Sleep(10 * time.Millisecond)
		}
		running.Add(-1)
		h.mu.Lock()
		order = append(order, in.Read.From)
		h.mu.Unlock()
	}
	cfg := unitKafkaConfig()
	cfg.MaxInFlight = 2
	var st PartitionStatus
	h.env.RegisterDelayedCallback(func() { st = h.status(); h.env.CancelWorkflow() }, 15*time.Minute)
	h.run(cfg, 0)

	assert.Empty(t, violations)
	assert.Equal(t, int64(100), st.Checkpoint)
	assert.Equal(t, int64(10), st.Batches)
	assert.Equal(t, int64(100), st.Records)
	assert.Equal(t, int64(2), most.Load(), "two batches in flight at once")
	seen := h.succeededOnce()
	assert.Len(t, seen, 100)
	for o, n := range seen {
		assert.Equal(t, 1, n, "offset %d in one successful batch", o)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	assert.False(t, slices.IsSorted(order), "a second batch finished before the first: %v", order)
	for i := 1; i < len(h.committed); i++ {
		assert.LessOrEqual(t, h.committed[i-1], h.committed[i], "group commits in offset order: %v", h.committed)
	}
	assert.Equal(t, int64(100), h.committed[len(h.committed)-1], "the group ends at the checkpoint")
}

// TestKafkaStreamConsumerWithBatchesInFlightBisectsAPoisonRecord: a
// poison record in the second of two batches in flight: the first passes,
// the second is retried, bisected and its poison record dead-lettered,
// the batch after it (which passed meanwhile) is not run again.
func TestKafkaStreamConsumerWithBatchesInFlightBisectsAPoisonRecord(t *testing.T) {
	h := newPartitionHarness(t, 40, 15)
	h.engine = true
	h.onRunBatch = func(in activities.KafkaBatchInput) {
		if in.Read.From == 10 && in.Read.Until == 19 {
			time.Sleep(100 * time.Millisecond) // the batch after it lands first
		}
	}
	cfg := unitKafkaConfig()
	cfg.MaxInFlight = 3
	var st PartitionStatus
	h.env.RegisterDelayedCallback(func() { st = h.status(); h.env.CancelWorkflow() }, 15*time.Minute)
	h.run(cfg, 0)

	assert.Equal(t, int64(40), st.Checkpoint)
	assert.Equal(t, int64(1), st.DeadLettered)
	assert.Empty(t, st.Bisecting)
	seen := h.succeededOnce()
	assert.Len(t, seen, 39, "every record but the poison one passed")
	for o, n := range seen {
		assert.Equal(t, 1, n, "offset %d in one successful batch", o)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	assert.Equal(t, []OffsetRange{{From: 15, Until: 15}}, h.dead)
}

// TestKafkaStreamConsumerRunsTheNextBatchBesideAJobThatOutlastsMaxWait: an
// open batch whose job still runs when records behind it are due returns
// Awaiting; its job is awaited apart under its own identity (found, not
// submitted again) while the records behind it run as the next batch, and
// the checkpoint still moves in offset order.
func TestKafkaStreamConsumerRunsTheNextBatchBesideAJobThatOutlastsMaxWait(t *testing.T) {
	h := newPartitionHarness(t, 30)
	h.engine = true
	h.leaveRunning = func(in activities.KafkaBatchInput) bool { return in.Read.From == 0 }
	var awaitedApart atomic.Int64
	h.onRunBatch = func(in activities.KafkaBatchInput) {
		if in.BatchID == "open@0" {
			awaitedApart.Add(1)
			time.Sleep(100 * time.Millisecond) // the batch beside it lands first
		}
	}
	cfg := unitKafkaConfig()
	cfg.MaxInFlight = 2
	var st PartitionStatus
	h.env.RegisterDelayedCallback(func() { st = h.status(); h.env.CancelWorkflow() }, 15*time.Minute)
	h.run(cfg, 0)

	assert.Equal(t, int64(30), st.Checkpoint)
	assert.Equal(t, int64(3), st.Batches)
	assert.Equal(t, int64(30), st.Records)
	assert.Equal(t, int64(1), awaitedApart.Load(), "the first batch's job awaited once, apart")
	seen := h.succeededOnce()
	assert.Len(t, seen, 30)
	for o, n := range seen {
		assert.Equal(t, 1, n, "offset %d in one successful batch", o)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	submitted := 0
	for _, r := range h.jobs {
		if r.From == 0 {
			submitted++
		}
	}
	assert.Equal(t, 1, submitted, "the first batch submitted once: %v", h.jobs)
	for i := 1; i < len(h.committed); i++ {
		assert.LessOrEqual(t, h.committed[i-1], h.committed[i], "group commits in offset order: %v", h.committed)
	}
	require.NotEmpty(t, h.openReads)
	assert.True(t, h.openReads[0].WaitSince.IsZero(), "the first read fills for max_wait")
}

// TestKafkaStreamConsumerRetriesAFailedJobAwaitedApartUnderItsIdentity: a
// job awaited apart that fails is found again under its identity as the
// range's first attempt, retried, bisected and its poison record
// dead-lettered; nothing else runs twice.
func TestKafkaStreamConsumerRetriesAFailedJobAwaitedApartUnderItsIdentity(t *testing.T) {
	h := newPartitionHarness(t, 30, 4)
	h.engine = true
	h.leaveRunning = func(in activities.KafkaBatchInput) bool { return in.Read.From == 0 }
	var apartAttempts []int
	h.onRunBatch = func(in activities.KafkaBatchInput) {
		if in.BatchID == "open@0" {
			h.mu.Lock()
			apartAttempts = append(apartAttempts, in.Attempt)
			h.mu.Unlock()
		}
	}
	cfg := unitKafkaConfig()
	cfg.MaxInFlight = 2
	var st PartitionStatus
	h.env.RegisterDelayedCallback(func() { st = h.status(); h.env.CancelWorkflow() }, 15*time.Minute)
	h.run(cfg, 0)

	assert.Equal(t, int64(30), st.Checkpoint)
	assert.Equal(t, int64(1), st.DeadLettered)
	seen := h.succeededOnce()
	assert.Len(t, seen, 29, "every record but the poison one passed")
	for o, n := range seen {
		assert.Equal(t, 1, n, "offset %d in one successful batch", o)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	assert.Equal(t, []OffsetRange{{From: 4, Until: 4}}, h.dead)
	assert.Equal(t, []int{1, 1, 2}, apartAttempts, "awaited apart, found again as attempt 1, then attempt 2 under the same identity")
	ranFirst := 0
	for _, r := range h.jobs {
		if r == (OffsetRange{From: 0, Until: 9}) {
			ranFirst++
		}
	}
	assert.Equal(t, 2, ranFirst, "max_attempts 2: the batch's job ran twice before bisection: %v", h.jobs)
}

// TestKafkaStreamConsumerLooksUpOnlyBatchesThatMayHaveRunBefore: the first
// batch of a run looks its identity up (an earlier consumer or run may have
// submitted it); once one batch of new records found nothing, the batches
// of new records after it skip the lookup (Bacalhau v1.7 reads every job it
// keeps to answer one), while a retried range always looks. A reset moves
// the identities to a new epoch: records read again run again, in new jobs,
// instead of finding the jobs that ran them before.
func TestKafkaStreamConsumerLooksUpOnlyBatchesThatMayHaveRunBefore(t *testing.T) {
	h := newPartitionHarness(t, 30, 15)
	h.engine, h.identities, h.epoch = true, map[string]string{}, "e1"
	var mu sync.Mutex
	var inputs []activities.KafkaBatchInput
	h.onRunBatch = func(in activities.KafkaBatchInput) {
		mu.Lock()
		defer mu.Unlock()
		inputs = append(inputs, in)
	}
	var before, final PartitionStatus
	h.env.RegisterDelayedCallback(func() {
		before = h.status()
		h.env.SignalWorkflow(SignalPartitionControl, PartitionControl{Op: ControlPause})
	}, 3*time.Minute)
	h.env.RegisterDelayedCallback(func() {
		h.env.SignalWorkflow(SignalPartitionControl, PartitionControl{Op: ControlReset, Reset: &ResetRequest{To: StartOffsets, Offsets: map[int32]int64{0: 0}, ID: "again"}})
		h.env.SignalWorkflow(SignalPartitionControl, PartitionControl{Op: ControlResume})
	}, 4*time.Minute)
	h.env.RegisterDelayedCallback(func() { final = h.status(); h.env.CancelWorkflow() }, 8*time.Minute)
	h.run(unitKafkaConfig(), 0)

	assert.Equal(t, int64(30), before.Checkpoint)
	assert.Equal(t, int64(30), final.Checkpoint)
	assert.Equal(t, "again", final.LastReset)
	mu.Lock()
	defer mu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, in := range inputs {
		retry := in.Read.Until >= 0
		firstOfEpoch := in.Read.From == 0 && !retry
		assert.Equal(t, !retry && !firstOfEpoch, in.Unseen, "batch from %d (until %d, attempt %d, epoch %s)", in.Read.From, in.Read.Until, in.Attempt, in.Epoch)
	}
	assert.Contains(t, h.looked, int64(10), "the failed batch's retry looked its identity up")
	assert.Equal(t, 2, countOf(h.looked, 0), "the first batch, and the first after the reset, looked")
	epochs := map[string]bool{}
	for _, in := range inputs {
		epochs[in.Epoch] = true
	}
	assert.Equal(t, map[string]bool{"e1": true, "e1r1": true}, epochs, "the reset moved the identities to an epoch of their own")
	for _, in := range inputs {
		// The consumer began unindexed (as one started before indexing);
		// the identities after the reset are new, so they are indexed.
		assert.Equal(t, in.Epoch == "e1r1", in.Indexed, "batch from %d in epoch %s", in.Read.From, in.Epoch)
	}
	assert.Empty(t, h.found, "no batch found a job: after the reset the records ran again, in new jobs")
	assert.Equal(t, []OffsetRange{{15, 15}, {15, 15}}, h.dead, "the poison record, once per pass")
}

func countOf[T comparable](s []T, v T) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}
