package workflows

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
)

func newCronEnv(t *testing.T) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(Cron, workflowOptions(CronWorkflowType))
	env.RegisterWorkflowWithOptions(RunTask, workflowOptions(RunTaskWorkflowType))
	env.RegisterActivity(&activities.S3{})
	env.RegisterActivity(&activities.Bacalhau{})
	env.RegisterActivity(&activities.Temporal{})
	grantEveryLease(env)
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything).Return(nil)
	return env
}

func unitCronConfig() CronConfig {
	return CronConfig{Name: "unit", Schedule: "@every 1m", Source: S3Source{Bucket: "b", Lookback: time.Hour},
		MaxObjects: 10, MaxBytes: 1 << 20, TaskConfig: TaskConfig{Template: "Type: batch"}, Overlap: OverlapSkip, CatchupWindow: time.Hour}
}

func (h *cronHarness) status() CronStatus {
	v, err := h.env.QueryWorkflow(QueryCronStatus)
	require.NoError(h.t, err)
	var st CronStatus
	require.NoError(h.t, v.Get(&st))
	return st
}

type cronHarness struct {
	t     *testing.T
	env   *testsuite.TestWorkflowEnvironment
	scans int
}

// newCronHarnessWithBatches scans one batch per key once, then nothing.
func newCronHarnessWithBatches(t *testing.T, keys ...string) *cronHarness {
	h := &cronHarness{t: t, env: newCronEnv(t)}
	var batches [][]activities.Object
	for _, k := range keys {
		batches = append(batches, h.objects(k))
	}
	h.env.OnActivity("Scan", mock.Anything, mock.Anything).Return(&activities.ScanResult{Batches: batches}, nil).Once()
	h.env.OnActivity("Scan", mock.Anything, mock.Anything).Return(&activities.ScanResult{}, nil)
	return h
}

// objects are one-byte objects modified now, one per key.
func (h *cronHarness) objects(keys ...string) []activities.Object {
	var out []activities.Object
	for _, k := range keys {
		out = append(out, activities.Object{Key: k, Size: 1, LastModified: h.env.Now()})
	}
	return out
}

// newCronHarness scans nothing new: only the tick logic runs.
func newCronHarness(t *testing.T) *cronHarness {
	h := &cronHarness{t: t, env: newCronEnv(t)}
	h.env.OnActivity("Scan", mock.Anything, mock.Anything).Return(
		func(context.Context, activities.ScanInput) (*activities.ScanResult, error) {
			h.scans++
			return &activities.ScanResult{}, nil
		})
	return h
}

func TestCronCatchesUpAMissedTickInsideTheWindow(t *testing.T) {
	h := newCronHarness(t)
	var st CronStatus
	h.env.RegisterDelayedCallback(func() { st = h.status(); h.env.CancelWorkflow() }, 10*time.Second)
	start := h.env.Now()
	h.env.ExecuteWorkflow(Cron, CronInput{Config: unitCronConfig(), State: &CronState{LastScheduled: start.Add(-5 * time.Minute)}})
	assert.Equal(t, int64(1), st.Counters.Ticks, "the missed tick runs at once")
}

func TestCronSkipsAMissedTickOutsideTheWindow(t *testing.T) {
	h := newCronHarness(t)
	cfg := unitCronConfig()
	cfg.CatchupWindow = time.Minute
	var st CronStatus
	h.env.RegisterDelayedCallback(func() { st = h.status(); h.env.CancelWorkflow() }, 10*time.Second)
	h.env.ExecuteWorkflow(Cron, CronInput{Config: cfg, State: &CronState{LastScheduled: h.env.Now().Add(-time.Hour)}})
	assert.Zero(t, st.Counters.Ticks)
}

func TestCronPauseHoldsTicksAndTriggerRunsOne(t *testing.T) {
	h := newCronHarness(t)
	var paused, triggered, resumed CronStatus
	h.env.RegisterDelayedCallback(func() { h.env.SignalWorkflow(SignalPause, nil) }, 90*time.Second) // after 1 tick
	h.env.RegisterDelayedCallback(func() { paused = h.status() }, 10*time.Minute)                    // no tick while paused
	h.env.RegisterDelayedCallback(func() { h.env.SignalWorkflow(SignalTrigger, nil) }, 10*time.Minute+time.Second)
	h.env.RegisterDelayedCallback(func() { triggered = h.status() }, 11*time.Minute)
	h.env.RegisterDelayedCallback(func() { h.env.SignalWorkflow(SignalResume, nil) }, 11*time.Minute+time.Second)
	h.env.RegisterDelayedCallback(func() { resumed = h.status(); h.env.CancelWorkflow() }, 14*time.Minute+30*time.Second)
	h.env.ExecuteWorkflow(Cron, CronInput{Config: unitCronConfig()})
	assert.Equal(t, int64(1), paused.Counters.Ticks)
	assert.True(t, paused.Paused)
	assert.Equal(t, int64(2), triggered.Counters.Ticks, "trigger runs a tick even when paused")
	assert.True(t, triggered.Paused)
	assert.False(t, resumed.Paused)
	assert.Equal(t, int64(5), resumed.Counters.Ticks, "ticks resume on the schedule")
}

func TestCronStopsAtAFailedBatchWithoutDeadLetter(t *testing.T) {
	h := newCronHarnessWithBatches(t, "a", "b", "c")
	objs := h.objects
	// Batch "b" fails every attempt, the others succeed.
	h.env.OnActivity("RunJob", mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.JobRunInput) (*activities.JobRun, error) {
			// Each batch attempt is a new identity, dispatched once: its
			// first submit need not look it up.
			assert.True(t, in.Unseen, "batch %s attempt %d", in.Batch.ID, in.Batch.Attempt)
			run := &activities.JobRun{JobID: "j-" + in.Objects[0].Object.Key}
			if in.Objects[0].Object.Key == "b" {
				run.Failure = &activities.BatchFailure{Type: activities.ErrTypeTaskFailed, Message: assert.AnError.Error()}
			}
			return run, nil
		})
	cfg := unitCronConfig()
	cfg.Concurrency = 3
	var st CronStatus
	h.env.RegisterDelayedCallback(func() { h.env.SignalWorkflow(SignalTrigger, nil) }, time.Second)
	h.env.RegisterDelayedCallback(func() { st = h.status(); h.env.CancelWorkflow() }, 30*time.Second)
	h.env.ExecuteWorkflow(Cron, CronInput{Config: cfg})
	assert.Equal(t, "a", st.Cursor.Key, "the key stops before the failed batch")
	assert.Equal(t, int64(2), st.Counters.Batches, "a and c succeeded")
	assert.Contains(t, st.LastError, "assert.AnError")
	assert.True(t, st.Cursor.Candidate(objs("b")[0], time.Time{}, time.Hour), "b runs again next tick")
	assert.False(t, st.Cursor.Candidate(objs("c")[0], time.Time{}, time.Hour), "c does not")
}

// TestCronDeadLettersOnlyBatchesTheirObjectsFail: with a dead letter set,
// a batch the task fails on is dead-lettered, but one whose inputs the node
// could not fetch (their store down) stops the tick at it, undead-lettered,
// and runs again at the next tick.
func TestCronDeadLettersOnlyBatchesTheirObjectsFail(t *testing.T) {
	h := newCronHarnessWithBatches(t, "a", "b", "c")
	objs := h.objects
	// Batch "a" fails on its objects; "b" cannot fetch them; "c" passes.
	h.env.OnActivity("RunJob", mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.JobRunInput) (*activities.JobRun, error) {
			run := &activities.JobRun{JobID: "j-" + in.Objects[0].Object.Key}
			switch in.Objects[0].Object.Key {
			case "a":
				run.Failure = &activities.BatchFailure{Type: activities.ErrTypeTaskFailed, Message: "exit 3"}
			case "b":
				run.Failure = &activities.BatchFailure{Type: activities.ErrTypeInputUnavailable, Message: "connection refused"}
			}
			return run, nil
		})
	var dead []string
	h.env.OnActivity("WriteDeadLetter", mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.DeadLetterInput) (string, error) {
			dead = append(dead, in.Objects[0].Key)
			return "s3://dlq/cron/" + in.BatchID, nil
		})
	cfg := unitCronConfig()
	cfg.Concurrency = 3
	cfg.DeadLetter = &S3Location{Bucket: "dlq", Prefix: "cron/"}
	var st CronStatus
	h.env.RegisterDelayedCallback(func() { h.env.SignalWorkflow(SignalTrigger, nil) }, time.Second)
	h.env.RegisterDelayedCallback(func() { st = h.status(); h.env.CancelWorkflow() }, 5*time.Minute)
	h.env.ExecuteWorkflow(Cron, CronInput{Config: cfg})
	assert.Equal(t, []string{"a"}, dead, "only the batch its task failed on")
	assert.Equal(t, int64(1), st.Counters.DeadLettered)
	assert.Equal(t, "a", st.Cursor.Key, "the key stops before the batch that could not fetch its objects")
	assert.Contains(t, st.LastError, "the next tick runs it again")
	assert.True(t, st.Cursor.Candidate(objs("b")[0], time.Time{}, time.Hour), "b runs again next tick")
}

func TestCronContinuesAsNewWithItsState(t *testing.T) {
	h := newCronHarness(t)
	cfg := unitCronConfig()
	cfg.Schedule = "@every 1s"
	h.env.ExecuteWorkflow(Cron, CronInput{Config: cfg, State: &CronState{Cursor: activities.Cursor{Key: "k"}}, TicksPerRun: 5})
	require.True(t, h.env.IsWorkflowCompleted())
	err := h.env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(err, &can), "want continue-as-new, got %v", err)
	assert.Equal(t, CronWorkflowType, can.WorkflowType.Name)
	var next CronInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.NotNil(t, next.State)
	assert.Equal(t, "k", next.State.Cursor.Key, "the cursor is carried")
	assert.Equal(t, int64(h.scans), next.State.Counters.Ticks, "counters are carried")
	assert.Equal(t, 5, h.scans)
	assert.Equal(t, 5, next.TicksPerRun)
}

// updateCron sends an update to the test workflow; its outcome lands in
// *errp and, decoded, in result (the callbacks may run after the call).
func updateCron(h *cronHarness, name string, arg any, errp *error, result any) {
	h.env.UpdateWorkflow(name, "", &testsuite.TestUpdateCallback{
		OnReject: func(e error) { *errp = e },
		OnAccept: func() {},
		OnComplete: func(v interface{}, e error) {
			*errp = e
			if e == nil && result != nil {
				raw, err := converter.GetDefaultDataConverter().ToPayload(v)
				require.NoError(h.t, err)
				require.NoError(h.t, converter.GetDefaultDataConverter().FromPayload(raw, result))
			}
		},
	}, arg)
}

func TestCronResetMovesTheCursorOnlyWhilePaused(t *testing.T) {
	h := newCronHarness(t)
	var notPaused, badWhileRunning, badKey, offsets, keyErr, latestErr error
	var described string
	var afterKey, afterLatest CronStatus
	start := h.env.Now()
	h.env.RegisterDelayedCallback(func() {
		updateCron(h, UpdateReset, ResetRequest{To: StartEarliest}, &notPaused, nil)
		updateCron(h, UpdateReset, ResetRequest{To: StartOffsets, Offsets: map[int32]int64{0: 5}}, &badWhileRunning, nil)
	}, 10*time.Second)
	h.env.RegisterDelayedCallback(func() { h.env.SignalWorkflow(SignalPause, nil) }, 15*time.Second)
	h.env.RegisterDelayedCallback(func() {
		updateCron(h, UpdateReset, ResetRequest{To: StartKey, Key: "elsewhere/x"}, &badKey, nil)
		updateCron(h, UpdateReset, ResetRequest{To: StartOffsets, Offsets: map[int32]int64{0: 1}}, &offsets, nil)
		updateCron(h, UpdateReset, ResetRequest{To: StartKey, Key: "logs/b"}, &keyErr, &described)
	}, 20*time.Second)
	h.env.RegisterDelayedCallback(func() { afterKey = h.status() }, 25*time.Second)
	h.env.RegisterDelayedCallback(func() {
		updateCron(h, UpdateReset, ResetRequest{To: StartLatest}, &latestErr, nil)
	}, 30*time.Second)
	h.env.RegisterDelayedCallback(func() { afterLatest = h.status(); h.env.CancelWorkflow() }, 35*time.Second)
	cfg := unitCronConfig()
	cfg.Source.Prefix = "logs/"
	h.env.ExecuteWorkflow(Cron, CronInput{Config: cfg, State: &CronState{Cursor: activities.Cursor{Key: "logs/z", Time: start}}})

	require.Error(t, notPaused)
	assert.Contains(t, notPaused.Error(), "not paused")
	require.Error(t, badWhileRunning, "a malformed position is refused whatever the state")
	assert.Contains(t, badWhileRunning.Error(), "not a position of an S3 cursor")
	require.Error(t, badKey)
	assert.Contains(t, badKey.Error(), `not under the connector's prefix "logs/"`)
	require.Error(t, offsets)
	assert.Contains(t, offsets.Error(), "not a position of an S3 cursor")
	require.NoError(t, keyErr)
	assert.Equal(t, "keys after logs/b", described)
	assert.Equal(t, activities.Cursor{Key: "logs/b"}, afterKey.Cursor)
	require.NoError(t, latestErr)
	assert.Equal(t, start.Add(30*time.Second).UTC(), afterLatest.Cursor.NotBefore.UTC())
	assert.Empty(t, afterLatest.Cursor.Key)
}

func TestCronKeepsItsConnectorStateSearchAttributeCurrent(t *testing.T) {
	h := newCronHarness(t)
	registered := func(string) bool { return true }
	require.NoError(t, h.env.SetTypedSearchAttributesOnStart(ConnectorSearchAttributes("unit", "cron", "s3://b/", registered)))
	var states []string
	h.env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(args mock.Arguments) {
		v, _ := args.Get(0).(temporal.SearchAttributes).GetKeyword(connectorStateKey)
		states = append(states, v)
	}).Return(nil)
	h.env.RegisterDelayedCallback(func() { h.env.SignalWorkflow(SignalPause, nil) }, 10*time.Second)
	h.env.RegisterDelayedCallback(func() { h.env.SignalWorkflow(SignalResume, nil) }, 20*time.Second)
	h.env.RegisterDelayedCallback(func() { h.env.CancelWorkflow() }, 30*time.Second)
	h.env.ExecuteWorkflow(Cron, CronInput{Config: unitCronConfig()})
	assert.Equal(t, []string{ConnectorStatePaused, ConnectorStateActive}, states)
}

func TestCronWithoutTheStateAttributeUpsertsNothing(t *testing.T) {
	h := newCronHarness(t)
	upserts := 0
	h.env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(mock.Arguments) { upserts++ }).Return(nil).Maybe()
	h.env.RegisterDelayedCallback(func() { h.env.SignalWorkflow(SignalPause, nil) }, 10*time.Second)
	h.env.RegisterDelayedCallback(func() { h.env.CancelWorkflow() }, 20*time.Second)
	h.env.ExecuteWorkflow(Cron, CronInput{Config: unitCronConfig()})
	assert.Zero(t, upserts, "a connector started without ConnectorState (unregistered, or before the attribute) upserts nothing")
}

func TestCronCutsALargeTickAndRunsTheRestAtOnce(t *testing.T) {
	h := &cronHarness{t: t, env: newCronEnv(t)}
	const objects = 2*tickBatches + 100
	listed := make([]activities.Object, objects)
	for i := range listed {
		listed[i] = activities.Object{Key: fmt.Sprintf("in/%05d", i), Size: 1, LastModified: h.env.Now()}
	}
	// Scan as the activity does: the candidates after the cursor, in
	// batches of one, at most MaxBatches of them.
	h.env.OnActivity("Scan", mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.ScanInput) (*activities.ScanResult, error) {
			res := &activities.ScanResult{}
			for _, o := range listed {
				if !in.Cursor.Candidate(o, time.Time{}, in.Lookback) {
					continue
				}
				if len(res.Batches) == in.MaxBatches {
					res.More = true
					break
				}
				res.Batches = append(res.Batches, []activities.Object{o})
			}
			return res, nil
		})
	runs := 0
	h.env.OnActivity("RunJob", mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.JobRunInput) (*activities.JobRun, error) {
			runs++
			return &activities.JobRun{JobID: "j-" + in.Batch.ID}, nil
		})
	cfg := unitCronConfig()
	cfg.Schedule = "@every 1h"
	cfg.Concurrency = 8
	var st CronStatus
	h.env.RegisterDelayedCallback(func() { h.env.SignalWorkflow(SignalTrigger, nil) }, time.Second)
	h.env.RegisterDelayedCallback(func() { st = h.status(); h.env.CancelWorkflow() }, 30*time.Minute)
	h.env.ExecuteWorkflow(Cron, CronInput{Config: cfg})
	assert.Equal(t, int64(3), st.Counters.Ticks, "one trigger, cut twice: the rest ran at once, not an hour later")
	assert.Equal(t, int64(objects), st.Counters.Objects)
	assert.Equal(t, objects, runs, "every object once")
	assert.Equal(t, listed[objects-1].Key, st.Cursor.Key)
}
