package workflows

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
)

// partitionHarness runs a PartitionConsumer over a fake partition of
// offsets 0..end-1 whose task fails on the offsets in poison.
type partitionHarness struct {
	t   *testing.T
	env *testsuite.TestWorkflowEnvironment
	end int64
	// tooBig, when >= 0, is an offset too large for an inline job: a batch
	// holding it is rejected before any job.
	tooBig int64
	// recordTime, when set, is every record's timestamp.
	recordTime time.Time
	// rangeLimit, when > 0, cuts reads of a bisected range short (as a slow
	// broker would).
	rangeLimit int64

	mu        sync.Mutex
	poison    map[int64]bool
	jobs      map[string]OffsetRange
	succeeded []OffsetRange
	failed    []OffsetRange
	dead      []OffsetRange
	committed []int64
	// reports are the status reports sent to the connector, in order.
	reports []PartitionStatus
	// engine runs KafkaStreamConsumer instead of PartitionConsumer.
	engine bool
	// leasesAsked counts lease requests.
	leasesAsked *atomic.Int64
	// onRunBatch, when set, is called as each RunBatch starts.
	onRunBatch func(activities.KafkaBatchInput)
	// leaveRunning, when set, tells whether an open RunBatch allowed to
	// (ReturnWhenDue) returns Awaiting, its job left running; apart maps
	// the batch identities (and attempts) of such jobs to their job IDs,
	// for the RunBatch that awaits them; openReads are the open reads.
	leaveRunning func(activities.KafkaBatchInput) bool
	apart        map[string]string
	openReads    []activities.KafkaRead
	// identities, when set, makes RunBatch keep the jobs it submits by
	// batch identity (ID, epoch, attempt) and find them again as Bacalhau's
	// label lookup does, unless the batch comes Unseen; looked lists the
	// From of every lookup, found those that found a job; epoch is the
	// consumer's.
	identities map[string]string
	looked     []int64
	found      []int64
	epoch      string
}

// bothConsumers runs a test against the stream engine's consumer and the
// older PartitionConsumer (kept while running ones move): both keep the
// same promises.
func bothConsumers(t *testing.T, test func(t *testing.T, engine bool)) {
	t.Run("engine", func(t *testing.T) { test(t, true) })
	t.Run("older", func(t *testing.T) { test(t, false) })
}

// run runs the consumer under test from checkpoint.
func (h *partitionHarness) run(cfg KafkaConfig, checkpoint int64) {
	if h.engine {
		h.env.ExecuteWorkflow(KafkaStreamConsumer, KafkaStreamInput{Config: cfg, Partition: 0, State: StreamState[int64, int64]{Checkpoint: checkpoint, Epoch: h.epoch}})
		return
	}
	h.env.ExecuteWorkflow(PartitionConsumer, PartitionInput{Config: cfg, Partition: 0, Checkpoint: checkpoint})
}

func (h *partitionHarness) commit(offset int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.committed = append(h.committed, offset)
}

func newPartitionHarness(t *testing.T, end int64, poison ...int64) *partitionHarness {
	var suite testsuite.WorkflowTestSuite
	h := &partitionHarness{t: t, env: suite.NewTestWorkflowEnvironment(), end: end, poison: map[int64]bool{}, jobs: map[string]OffsetRange{}, tooBig: -1,
		apart: map[string]string{}}
	for _, p := range poison {
		h.poison[p] = true
	}
	env := h.env
	env.RegisterWorkflowWithOptions(PartitionConsumer, workflowOptions(PartitionConsumerWorkflowType))
	env.RegisterWorkflowWithOptions(KafkaStreamConsumer, workflowOptions(KafkaStreamConsumerWorkflowType))
	env.RegisterActivity(&activities.Kafka{})
	env.RegisterActivity(&activities.Bacalhau{})
	env.RegisterActivity(&activities.Temporal{})
	h.leasesAsked = grantEveryLease(env) // the budget grants every lease at once
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything).Return(
		func(_, _, _, signal string, arg any) error {
			if st, ok := arg.(PartitionStatus); ok && signal == SignalPartitionStatus {
				h.mu.Lock()
				h.reports = append(h.reports, st)
				h.mu.Unlock()
			}
			return nil
		})
	env.OnActivity("WaitForRecords", mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.WaitInput) (bool, error) {
		if in.Group != "" {
			h.commit(in.From)
		}
		return in.From < h.end, nil
	}).After(10 * time.Second) // idle rounds take time, as they do for real
	readAndSubmit := func(_ context.Context, in activities.StreamSubmitInput) (*activities.SubmittedKafkaBatch, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		last := min(in.Read.From+int64(in.Read.MaxRecords)-1, h.end-1)
		if in.Read.Until >= 0 {
			last = min(last, in.Read.Until)
			if h.rangeLimit > 0 {
				last = min(last, in.Read.From+h.rangeLimit-1)
			}
		}
		if last < in.Read.From {
			return &activities.SubmittedKafkaBatch{First: -1, Last: in.Read.From - 1}, nil
		}
		if h.tooBig >= in.Read.From && h.tooBig <= last {
			return &activities.SubmittedKafkaBatch{First: in.Read.From, Last: last, Count: int(last - in.Read.From + 1), End: h.end,
				RangeDone: in.Read.Until >= 0 && last == in.Read.Until, Rejected: "too large for an inline job"}, nil
		}
		id := fmt.Sprintf("job-%d-%d-%d", in.Read.From, last, in.Attempt)
		h.jobs[id] = OffsetRange{From: in.Read.From, Until: last}
		return &activities.SubmittedKafkaBatch{JobID: id, First: in.Read.From, Last: last, Count: int(last - in.Read.From + 1), End: h.end,
			RangeDone: in.Read.Until >= 0 && last == in.Read.Until, FirstTime: h.recordTime}, nil
	}
	await := func(_ context.Context, in activities.AwaitInput) (*activities.AwaitResult, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		r := h.jobs[in.JobID]
		for o := r.From; o <= r.Until; o++ {
			if h.poison[o] {
				h.failed = append(h.failed, r)
				return nil, temporal.NewNonRetryableApplicationError("exit 3: cannot parse record", activities.ErrTypeTaskFailed, nil)
			}
		}
		h.succeeded = append(h.succeeded, r)
		return &activities.AwaitResult{JobID: in.JobID}, nil
	}
	env.OnActivity("ReadAndSubmit", mock.Anything, mock.Anything).Return(readAndSubmit)
	env.OnActivity("Await", mock.Anything, mock.Anything).Return(await)
	env.OnActivity("RunBatch", mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.KafkaBatchInput) (*activities.KafkaBatchRun, error) {
		if in.Group != "" {
			mirror := in.Read.From
			if in.Mirror != nil {
				mirror = *in.Mirror
			}
			h.commit(mirror)
		}
		if h.onRunBatch != nil {
			h.onRunBatch(in)
		}
		h.mu.Lock()
		job, found := h.apart[fmt.Sprintf("%s#%d", in.BatchID, in.Attempt)]
		identity := in.BatchID
		if identity == "" {
			identity = activities.StreamBatchID(in.Read.Topic, in.Read.Partition, in.Read.From)
		}
		identity = fmt.Sprintf("%s~%s#%d", identity, in.Epoch, in.Attempt)
		if h.identities != nil && !in.Unseen {
			h.looked = append(h.looked, in.Read.From)
			if job, found = h.identities[identity]; found {
				h.found = append(h.found, in.Read.From)
			}
		}
		r := h.jobs[job]
		if in.Read.Until < 0 {
			h.openReads = append(h.openReads, in.Read)
		}
		h.mu.Unlock()
		var b *activities.SubmittedKafkaBatch
		if found {
			// An earlier batch's job, found by its identity.
			b = &activities.SubmittedKafkaBatch{JobID: job, First: r.From, Last: r.Until, Count: int(r.Until - r.From + 1), Reused: true, BatchID: in.BatchID}
		} else {
			var err error
			if b, err = readAndSubmit(ctx, in.StreamSubmitInput); err != nil {
				return nil, err
			}
			b.ReadClosed, b.Unseen = time.Now(), true
			if h.identities != nil && b.JobID != "" {
				h.mu.Lock()
				h.identities[identity] = b.JobID
				h.mu.Unlock()
			}
		}
		out := &activities.KafkaBatchRun{SubmittedKafkaBatch: *b}
		if !found && in.ReturnWhenDue && b.JobID != "" && h.leaveRunning != nil && h.leaveRunning(in) {
			id := fmt.Sprintf("open@%d", in.Read.From)
			h.mu.Lock()
			h.apart[fmt.Sprintf("%s#%d", id, in.Attempt)] = b.JobID
			h.mu.Unlock()
			out.BatchID, out.Awaiting = id, true
			return out, nil
		}
		if b.Count > 0 && b.JobID != "" {
			if _, err := await(ctx, activities.AwaitInput{JobID: b.JobID}); err != nil {
				var appErr *temporal.ApplicationError
				require.ErrorAs(t, err, &appErr)
				out.Failure = &activities.BatchFailure{Type: appErr.Type(), Message: appErr.Error()}
			}
		}
		return out, nil
	})
	env.OnActivity("DeadLetterRecords", mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.DeadLetterRecordsInput) (*activities.DeadLettered, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.dead = append(h.dead, OffsetRange{From: in.Read.From, Until: in.Read.Until})
		return &activities.DeadLettered{Count: int(in.Read.Until - in.Read.From + 1), Where: in.Topic}, nil
	})
	env.OnActivity("CommitOffset", mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.CommitInput) error {
		h.commit(in.Offset)
		return nil
	})
	env.OnActivity("ResolveStart", mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.StartInput) (int64, error) {
		if in.Start == StartLatest {
			return h.end, nil
		}
		return 0, nil
	})
	return h
}

func unitKafkaConfig() KafkaConfig {
	return KafkaConfig{Name: "unit", Brokers: []string{"127.0.0.1:9092"}, Topic: "t", Group: "g", Start: StartEarliest,
		StreamBatching: StreamBatching{MaxRecords: 10, MaxBytes: 1 << 20, MaxWait: time.Second, Mode: ModeInline, Bisect: true}, DeadLetterTopic: "dlq",
		TaskConfig: TaskConfig{Template: "Type: batch", Retry: TaskRetryPolicy{MaxAttempts: 2, InitialInterval: time.Second}}}
}

func (h *partitionHarness) status() PartitionStatus {
	v, err := h.env.QueryWorkflow(QueryPartitionStatus)
	require.NoError(h.t, err)
	var st PartitionStatus
	require.NoError(h.t, v.Get(&st))
	return st
}

func TestPartitionConsumerBisectsAPoisonRecordToTheDeadLetter(t *testing.T) {
	bothConsumers(t, func(t *testing.T, engine bool) {
		h := newPartitionHarness(t, 10, 6)
		h.engine = engine
		var st PartitionStatus
		h.env.RegisterDelayedCallback(func() { st = h.status(); h.env.CancelWorkflow() }, 10*time.Minute)
		h.run(unitKafkaConfig(), 0)

		assert.Equal(t, []OffsetRange{{6, 6}}, h.dead, "only the poison record is dead-lettered")
		assert.Equal(t, int64(10), st.Checkpoint, "the partition moved past it")
		assert.Equal(t, int64(1), st.DeadLettered)
		// Every other record ran in exactly one successful task, in order.
		var done []int64
		for _, r := range h.succeeded {
			for o := r.From; o <= r.Until; o++ {
				done = append(done, o)
			}
		}
		assert.Equal(t, []int64{0, 1, 2, 3, 4, 5, 7, 8, 9}, done)
		// The whole batch had its two attempts before it was split; each split
		// range had one; the single record had two.
		assert.Equal(t, []OffsetRange{{0, 9}, {0, 9}, {5, 9}, {5, 7}, {5, 6}, {6, 6}, {6, 6}}, h.failed)
		assert.Equal(t, int64(10), h.committed[len(h.committed)-1])
	})
}

func TestPartitionConsumerWithoutDeadLetterNeverSkipsAPoisonRecord(t *testing.T) {
	bothConsumers(t, func(t *testing.T, engine bool) {
		h := newPartitionHarness(t, 10, 6)
		h.engine = engine
		cfg := unitKafkaConfig()
		cfg.DeadLetterTopic = ""
		var st PartitionStatus
		h.env.RegisterDelayedCallback(func() { st = h.status(); h.env.CancelWorkflow() }, 10*time.Minute)
		h.run(cfg, 0)

		assert.Empty(t, h.dead)
		assert.Equal(t, int64(6), st.Checkpoint, "the checkpoint waits at the poison record")
		assert.Equal(t, "blocked", st.Phase)
		assert.Contains(t, st.LastError, "no on_failure.dead_letter")
	})
}

func TestPartitionConsumerPausesResetsAndResumes(t *testing.T) {
	bothConsumers(t, func(t *testing.T, engine bool) {
		h := newPartitionHarness(t, 10)
		h.engine = engine
		var paused, reset PartitionStatus
		h.env.RegisterDelayedCallback(func() {
			h.env.SignalWorkflow(SignalPartitionControl, PartitionControl{Op: ControlPause})
		}, time.Minute)
		h.env.RegisterDelayedCallback(func() {
			paused = h.status()
			h.env.SignalWorkflow(SignalPartitionControl, PartitionControl{Op: ControlReset, Reset: &ResetRequest{To: StartOffsets, Offsets: map[int32]int64{0: 4}, ID: "r1"}})
		}, 2*time.Minute)
		h.env.RegisterDelayedCallback(func() {
			reset = h.status()
			h.env.SignalWorkflow(SignalPartitionControl, PartitionControl{Op: ControlResume})
		}, 3*time.Minute)
		var final PartitionStatus
		h.env.RegisterDelayedCallback(func() { final = h.status(); h.env.CancelWorkflow() }, 10*time.Minute)
		h.run(unitKafkaConfig(), 0)

		assert.True(t, paused.Paused)
		assert.Equal(t, "paused", paused.Phase)
		assert.Equal(t, int64(10), paused.Checkpoint)
		assert.Equal(t, int64(4), reset.Checkpoint, "reset moved the checkpoint back")
		assert.Empty(t, paused.LastReset)
		assert.Equal(t, "r1", reset.LastReset, "the consumer reports the reset it applied")
		assert.False(t, final.Paused)
		assert.Equal(t, int64(10), final.Checkpoint, "after resume it consumed 4..9 again")
		assert.Equal(t, int64(16), final.Records)
	})
}

func TestPartitionConsumerNeverSkipsTheRestOfAShortRangeRead(t *testing.T) {
	bothConsumers(t, func(t *testing.T, engine bool) {
		h := newPartitionHarness(t, 10, 6)
		h.engine = engine
		h.rangeLimit = 1
		var st PartitionStatus
		h.env.RegisterDelayedCallback(func() { st = h.status(); h.env.CancelWorkflow() }, 10*time.Minute)
		h.run(unitKafkaConfig(), 0)

		assert.Equal(t, []OffsetRange{{6, 6}}, h.dead)
		assert.Equal(t, int64(10), st.Checkpoint)
		var done []int64
		for _, r := range h.succeeded {
			for o := r.From; o <= r.Until; o++ {
				done = append(done, o)
			}
		}
		assert.Equal(t, []int64{0, 1, 2, 3, 4, 5, 7, 8, 9}, done, "every record but the poison one, once, in order")
	})
}

func TestPartitionConsumerStopsRetryingRecordsOlderThanMaxRecordAge(t *testing.T) {
	bothConsumers(t, func(t *testing.T, engine bool) {
		h := newPartitionHarness(t, 10, 6)
		h.engine = engine
		h.recordTime = h.env.Now().Add(-2 * time.Hour)
		cfg := unitKafkaConfig()
		cfg.Retry.MaxAttempts = 5
		cfg.MaxRecordAge = time.Hour
		h.env.RegisterDelayedCallback(func() { h.env.CancelWorkflow() }, 10*time.Minute)
		h.run(cfg, 0)

		assert.Equal(t, []OffsetRange{{6, 6}}, h.dead)
		assert.Equal(t, []OffsetRange{{0, 9}, {5, 9}, {5, 7}, {5, 6}, {6, 6}}, h.failed, "one attempt each, not five: the records are too old")
	})
}

func TestPartitionConsumerDeadLettersARecordTooLargeForAJob(t *testing.T) {
	bothConsumers(t, func(t *testing.T, engine bool) {
		h := newPartitionHarness(t, 10)
		h.engine = engine
		h.tooBig = 3
		var st PartitionStatus
		h.env.RegisterDelayedCallback(func() { st = h.status(); h.env.CancelWorkflow() }, 10*time.Minute)
		h.run(unitKafkaConfig(), 0)

		assert.Equal(t, []OffsetRange{{3, 3}}, h.dead, "the record no job can carry is dead-lettered")
		assert.Empty(t, h.failed, "no job ran for a rejected batch")
		assert.Equal(t, int64(10), st.Checkpoint)
		var done []int64
		for _, r := range h.succeeded {
			for o := r.From; o <= r.Until; o++ {
				done = append(done, o)
			}
		}
		assert.Equal(t, []int64{0, 1, 2, 4, 5, 6, 7, 8, 9}, done)
	})
}

// TestPartitionConsumerReportsIdleAfterItsLastBatch: the report after the
// last batch (phase running, not throttled) is followed by an idle one, so
// the connector does not keep showing the partition running.
func TestPartitionConsumerReportsIdleAfterItsLastBatch(t *testing.T) {
	bothConsumers(t, func(t *testing.T, engine bool) {
		h := newPartitionHarness(t, 10)
		h.engine = engine
		h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 2*time.Minute)
		h.run(unitKafkaConfig(), -1)
		h.mu.Lock()
		defer h.mu.Unlock()
		// (The mock records signals from goroutines: their order here is not
		// the send order, so look for the final state itself.)
		idleAtEnd := false
		for _, r := range h.reports {
			idleAtEnd = idleAtEnd || (r.Phase == "idle" && r.Checkpoint == 10)
		}
		assert.True(t, idleAtEnd, "an idle report at checkpoint 10 among %+v", h.reports)
	})
}
