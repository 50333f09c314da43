package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
)

func newRunTaskEnv(t *testing.T) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(RunTask, workflowOptions(RunTaskWorkflowType))
	env.RegisterActivity(&activities.Bacalhau{})
	env.RegisterActivity(&activities.Temporal{})
	return env
}

func taskInput() RunTaskInput {
	return RunTaskInput{
		Connector: "unit", BatchID: "b1", Template: "Type: batch",
		Retry:  TaskRetryPolicy{MaxAttempts: 3, InitialInterval: time.Second},
		Budget: BudgetRef{Disabled: true},
	}
}

func okResults(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity("Results", mock.Anything, mock.Anything).Return(&activities.Results{ResultURL: "http://r/x.tar.gz", StdoutBytes: 3}, nil)
}

func taskFailed(msg string) error {
	return temporal.NewNonRetryableApplicationError(msg, activities.ErrTypeTaskFailed, nil, activities.TaskFailure{JobID: "j", ExitCode: 2, Message: msg, StderrBytes: 40})
}

func TestRunTaskRetriesAFailedTaskAsANewAttempt(t *testing.T) {
	env := newRunTaskEnv(t)
	var attempts []int
	env.OnActivity("Submit", mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.SubmitInput) (*activities.SubmitResult, error) {
			attempts = append(attempts, in.Batch.Attempt)
			return &activities.SubmitResult{JobID: "job-" + string(rune('0'+in.Batch.Attempt)), QueueTimeout: time.Minute, ExecutionTimeout: time.Minute}, nil
		})
	env.OnActivity("Await", mock.Anything, mock.Anything).Return(nil, taskFailed("boom")).Twice()
	env.OnActivity("Await", mock.Anything, mock.Anything).Return(&activities.AwaitResult{JobID: "job-3"}, nil).Once()
	okResults(env)

	env.ExecuteWorkflow(RunTask, taskInput())
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var res RunTaskResult
	require.NoError(t, env.GetWorkflowResult(&res))
	assert.Equal(t, 3, res.Attempts)
	assert.Equal(t, "job-3", res.JobID)
	assert.Equal(t, []int{1, 2, 3}, attempts, "each attempt is a new batch identity")
}

func TestRunTaskGivesUpAfterMaxAttempts(t *testing.T) {
	env := newRunTaskEnv(t)
	env.OnActivity("Submit", mock.Anything, mock.Anything).Return(&activities.SubmitResult{JobID: "j", QueueTimeout: time.Minute, ExecutionTimeout: time.Minute}, nil)
	env.OnActivity("Await", mock.Anything, mock.Anything).Return(nil, taskFailed("exit 2: bad input")).Times(2)
	in := taskInput()
	in.Retry.MaxAttempts = 2
	env.ExecuteWorkflow(RunTask, in)
	err := env.GetWorkflowError()
	require.Error(t, err)
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(err, &appErr))
	assert.Equal(t, ErrTypeTaskRunFailed, appErr.Type())
	assert.Contains(t, err.Error(), "failed after 2 attempt(s)")
	assert.Contains(t, err.Error(), "bad input")
	env.AssertExpectations(t)
}

func TestRunTaskDoesNotRetryAnInvalidTask(t *testing.T) {
	env := newRunTaskEnv(t)
	env.OnActivity("Submit", mock.Anything, mock.Anything).Return(nil,
		temporal.NewNonRetryableApplicationError("Tasks[0].Engine.Type: unknown engine", activities.ErrTypeInvalidTask, nil)).Once()
	env.ExecuteWorkflow(RunTask, taskInput())
	err := env.GetWorkflowError()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "after 1 attempt(s)")
	assert.Contains(t, err.Error(), "unknown engine")
	env.AssertExpectations(t)
}

func TestRunTaskStopsTheJobWhenCancelled(t *testing.T) {
	env := newRunTaskEnv(t)
	env.OnActivity("Submit", mock.Anything, mock.Anything).Return(&activities.SubmitResult{JobID: "j-run", QueueTimeout: time.Minute, ExecutionTimeout: time.Minute}, nil)
	env.OnActivity("Await", mock.Anything, mock.Anything).Return(
		func(ctx context.Context, _ activities.AwaitInput) (*activities.AwaitResult, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		})
	stopped := ""
	env.OnActivity("StopJob", mock.Anything, mock.Anything).Return(func(_ context.Context, id string) error {
		stopped = id
		return nil
	})
	env.SetTestTimeout(30 * time.Second)
	env.RegisterDelayedCallback(env.CancelWorkflow, 100*time.Millisecond)
	env.ExecuteWorkflow(RunTask, taskInput())
	err := env.GetWorkflowError()
	var canceled *temporal.CanceledError
	require.True(t, errors.As(err, &canceled), "got %v", err)
	assert.Equal(t, "j-run", stopped)
}

// TestRunTaskTakesAndReleasesALease: the lease is asked for with one signal
// to the running budget (its parent said so: AskBySignal); a stale grant is
// handed back; the lease is released after the task.
func TestRunTaskTakesAndReleasesALease(t *testing.T) {
	env := newRunTaskEnv(t)
	var requested LeaseRequest
	env.OnSignalExternalWorkflow(mock.Anything, "budget-unit", "", SignalAcquireLease, mock.Anything).Return(
		func(_, _, _, _ string, arg any) error {
			requested = arg.(LeaseRequest)
			grantStaleThen(env, requested.LeaseID)
			return nil
		})
	released := runWithLease(t, env, true)
	assert.Equal(t, "default-test-workflow-id#1", requested.LeaseID)
	assert.Equal(t, "default-test-workflow-id", requested.HolderWorkflowID)
	assert.Greater(t, requested.TTL, 2*time.Minute)
	assert.Equal(t, []string{"stale#1", requested.LeaseID}, released, "a stale grant is handed back; the lease is released after the task")
}

// TestRunTaskStartsTheBudgetWhenItDoesNotRun: when the signal finds no
// budget, the request starts it (signal with start); a RunTask started
// without AskBySignal (by code from before it) goes there at once.
func TestRunTaskStartsTheBudgetWhenItDoesNotRun(t *testing.T) {
	for _, bySignal := range []bool{true, false} {
		t.Run(fmt.Sprintf("AskBySignal=%v", bySignal), func(t *testing.T) {
			env := newRunTaskEnv(t)
			signalled := false
			env.OnSignalExternalWorkflow(mock.Anything, "budget-unit", "", SignalAcquireLease, mock.Anything).Return(
				func(_, _, _, _ string, _ any) error {
					signalled = true
					return errors.New("unknown external workflow execution")
				})
			var requested LeaseRequest
			env.OnActivity("SignalWithStart", mock.Anything, mock.Anything).Return(
				func(_ context.Context, s activities.SignalWithStartInput) error {
					assert.Equal(t, "budget-unit", s.WorkflowID)
					assert.Equal(t, BudgetWorkflowType, s.WorkflowType)
					assert.Equal(t, SignalAcquireLease, s.SignalName)
					raw, err := json.Marshal(s.Signal) // arrives as a decoded map
					require.NoError(t, err)
					require.NoError(t, json.Unmarshal(raw, &requested))
					grantStaleThen(env, requested.LeaseID)
					return nil
				})
			released := runWithLease(t, env, bySignal)
			assert.Equal(t, bySignal, signalled)
			assert.Equal(t, "default-test-workflow-id#1", requested.LeaseID)
			assert.Equal(t, []string{"stale#1", requested.LeaseID}, released)
		})
	}
}

// grantStaleThen plays the budget: a stale grant first, then leaseID's.
func grantStaleThen(env *testsuite.TestWorkflowEnvironment, leaseID string) {
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalLeaseGranted, LeaseGrant{LeaseID: "stale#1"})
		env.SignalWorkflow(SignalLeaseGranted, LeaseGrant{LeaseID: leaseID})
	}, time.Second)
}

// runWithLease runs a task under budget-unit and returns the leases
// released, in order.
func runWithLease(t *testing.T, env *testsuite.TestWorkflowEnvironment, askBySignal bool) []string {
	in := taskInput()
	in.Budget = BudgetRef{WorkflowID: "budget-unit", AskBySignal: askBySignal}
	var released []string
	env.OnSignalExternalWorkflow(mock.Anything, "budget-unit", "", SignalReleaseLease, mock.Anything).Return(
		func(_, _, _, _ string, arg interface{}) error {
			released = append(released, arg.(LeaseRelease).LeaseID)
			return nil
		})
	submitted := false
	env.OnActivity("Submit", mock.Anything, mock.Anything).Return(
		func(context.Context, activities.SubmitInput) (*activities.SubmitResult, error) {
			submitted = true
			return &activities.SubmitResult{JobID: "j", QueueTimeout: time.Minute, ExecutionTimeout: time.Minute}, nil
		})
	env.OnActivity("Await", mock.Anything, mock.Anything).Return(&activities.AwaitResult{JobID: "j"}, nil)
	okResults(env)

	env.ExecuteWorkflow(RunTask, in)
	require.NoError(t, env.GetWorkflowError())
	assert.True(t, submitted)
	return released
}

// TestRunTaskReadsTheOutputOnlyWhenAsked: a connector's RunTask (cron)
// never reads its task's output into history; a one-off run (starter
// run-task) asks for it and gets the tails, and the last stderr line in
// its failure.
func TestRunTaskReadsTheOutputOnlyWhenAsked(t *testing.T) {
	output := func(env *testsuite.TestWorkflowEnvironment, reads *int) {
		env.OnActivity("Output", mock.Anything, mock.Anything).Return(func(_ context.Context, id string) (*activities.Output, error) {
			*reads++
			return &activities.Output{JobID: id, StdoutTail: "{}\n", StderrTail: "reading\ncannot process record: secret line\n"}, nil
		})
	}
	for _, asked := range []bool{false, true} {
		env := newRunTaskEnv(t)
		reads := 0
		output(env, &reads)
		env.OnActivity("Submit", mock.Anything, mock.Anything).Return(&activities.SubmitResult{JobID: "j", QueueTimeout: time.Minute, ExecutionTimeout: time.Minute}, nil)
		env.OnActivity("Await", mock.Anything, mock.Anything).Return(&activities.AwaitResult{JobID: "j"}, nil)
		okResults(env)
		in := taskInput()
		in.Output = asked
		env.ExecuteWorkflow(RunTask, in)
		require.NoError(t, env.GetWorkflowError())
		var res RunTaskResult
		require.NoError(t, env.GetWorkflowResult(&res))
		if asked {
			assert.Equal(t, 1, reads)
			assert.Equal(t, "{}\n", res.StdoutTail)
		} else {
			assert.Zero(t, reads, "a connector's run reads no output")
			assert.Empty(t, res.StdoutTail+res.StderrTail)
		}

		env = newRunTaskEnv(t)
		reads = 0
		output(env, &reads)
		env.OnActivity("Submit", mock.Anything, mock.Anything).Return(&activities.SubmitResult{JobID: "j", QueueTimeout: time.Minute, ExecutionTimeout: time.Minute}, nil)
		env.OnActivity("Await", mock.Anything, mock.Anything).Return(nil, taskFailed("task of job j exited 3 (stderr 40 bytes: bacalhau job logs j)"))
		in.Retry.MaxAttempts = 1
		env.ExecuteWorkflow(RunTask, in)
		err := env.GetWorkflowError()
		require.Error(t, err)
		assert.Contains(t, err.Error(), "bacalhau job logs j")
		if asked {
			assert.Equal(t, 1, reads)
			assert.Contains(t, err.Error(), "; stderr: cannot process record: secret line")
		} else {
			assert.Zero(t, reads)
			assert.NotContains(t, err.Error(), "secret line")
		}
	}
}

func TestFailedJobIDsFollowsTheChain(t *testing.T) {
	inner := taskFailed("exit 2")
	outer := temporal.NewNonRetryableApplicationError("failed after 1 attempt(s)", ErrTypeTaskRunFailed, inner)
	assert.Equal(t, []string{"j"}, failedJobIDs(outer))
	assert.Empty(t, failedJobIDs(errors.New("plain")))
	assert.Empty(t, failedJobIDs(nil))
}
