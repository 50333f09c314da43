package activities

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/bacalhau-project/bacalhau/pkg/bacerrors"
	"github.com/bacalhau-project/bacalhau/pkg/models"
	"github.com/bacalhau-project/bacalhau/pkg/publicapi/apimodels"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
)

// fakeJobs is a scripted jobsAPI: unit tests of error handling only; the
// end-to-end suite runs these activities against a real Bacalhau node.
type fakeJobs struct {
	mu     sync.Mutex
	gets   []func() (*models.Job, error) // consumed in order; the last repeats
	execs  []*models.Execution
	listed []*models.Job
	// lists: the namespace of every list request ("" for all).
	lists   []string
	putErr  error
	puts    int
	stopped []string
}

func (f *fakeJobs) Put(context.Context, *apimodels.PutJobRequest) (*apimodels.PutJobResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.puts++
	if f.putErr != nil {
		return nil, f.putErr
	}
	return &apimodels.PutJobResponse{JobID: "j-new"}, nil
}

func (f *fakeJobs) Get(context.Context, *apimodels.GetJobRequest) (*apimodels.GetJobResponse, error) {
	f.mu.Lock()
	next := f.gets[0]
	if len(f.gets) > 1 {
		f.gets = f.gets[1:]
	}
	f.mu.Unlock()
	job, err := next()
	if err != nil {
		return nil, err
	}
	return &apimodels.GetJobResponse{Job: job}, nil
}

// List behaves like Bacalhau v1.7.0: a NextToken even on the last page, then an empty page.
func (f *fakeJobs) List(_ context.Context, r *apimodels.ListJobsRequest) (*apimodels.ListJobsResponse, error) {
	f.mu.Lock()
	f.lists = append(f.lists, r.Namespace)
	f.mu.Unlock()
	if r.NextToken != "" {
		return &apimodels.ListJobsResponse{BaseListResponse: apimodels.BaseListResponse{NextToken: "again"}}, nil
	}
	return &apimodels.ListJobsResponse{Items: f.listed, BaseListResponse: apimodels.BaseListResponse{NextToken: "page-2"}}, nil
}

func (f *fakeJobs) Executions(context.Context, *apimodels.ListJobExecutionsRequest) (*apimodels.ListJobExecutionsResponse, error) {
	return &apimodels.ListJobExecutionsResponse{Items: f.execs}, nil
}

func (f *fakeJobs) Results(context.Context, *apimodels.ListJobResultsRequest) (*apimodels.ListJobResultsResponse, error) {
	return &apimodels.ListJobResultsResponse{}, nil
}

func (f *fakeJobs) Stop(_ context.Context, r *apimodels.StopJobRequest) (*apimodels.StopJobResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = append(f.stopped, r.JobID)
	return &apimodels.StopJobResponse{}, nil
}

func job(state models.JobStateType, created time.Time, msg string) func() (*models.Job, error) {
	return func() (*models.Job, error) {
		return &models.Job{ID: "j1", CreateTime: created.UnixNano(), State: models.State[models.JobStateType]{StateType: state, Message: msg}}, nil
	}
}

func fail(err error) func() (*models.Job, error) {
	return func() (*models.Job, error) { return nil, err }
}

func runActivity(t *testing.T, f *fakeJobs, fn any, arg any) (any, error) {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	b := &Bacalhau{jobs: f, pollMin: time.Millisecond, pollMax: 5 * time.Millisecond}
	env.RegisterActivity(b)
	var method any
	switch fn {
	case "Await":
		method = b.Await
	case "Submit":
		method = b.Submit
	}
	v, err := env.ExecuteActivity(method, arg)
	return v, err
}

func appErrType(t *testing.T, err error) string {
	t.Helper()
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(err, &appErr), "want an ApplicationError, got %v", err)
	return appErr.Type()
}

func TestAwaitStopsAJobPendingPastItsDeadline(t *testing.T) {
	f := &fakeJobs{gets: []func() (*models.Job, error){job(models.JobStateTypePending, time.Now().Add(-time.Hour), "")}}
	_, err := runActivity(t, f, "Await", AwaitInput{JobID: "j1", PendingTimeout: time.Minute})
	require.Error(t, err)
	assert.Equal(t, ErrTypePendingTimeout, appErrType(t, err))
	assert.Contains(t, err.Error(), "still Pending")
	assert.Equal(t, []string{"j1"}, f.stopped)
}

func TestAwaitKeepsPollingThroughTransientErrors(t *testing.T) {
	unavailable := bacerrors.New("server error").WithHTTPStatusCode(http.StatusServiceUnavailable)
	f := &fakeJobs{
		gets: []func() (*models.Job, error){
			fail(unavailable), fail(errors.New("connection reset")),
			job(models.JobStateTypeRunning, time.Now(), ""),
			job(models.JobStateTypeCompleted, time.Now(), ""),
		},
		execs: []*models.Execution{{ID: "e1", ComputeState: models.State[models.ExecutionStateType]{StateType: models.ExecutionStateCompleted},
			RunOutput: &models.RunCommandResult{STDOUT: "{}\n"}}},
	}
	v, err := runActivity(t, f, "Await", AwaitInput{JobID: "j1"})
	require.NoError(t, err)
	var res AwaitResult
	require.NoError(t, v.(interface{ Get(any) error }).Get(&res))
	assert.Equal(t, "e1", res.ExecutionID)
	assert.Empty(t, f.stopped)
}

func TestAwaitFailsAtOnceWhenBacalhauRejectsTheRequest(t *testing.T) {
	f := &fakeJobs{gets: []func() (*models.Job, error){fail(bacerrors.New("job not found").WithHTTPStatusCode(http.StatusNotFound))}}
	_, err := runActivity(t, f, "Await", AwaitInput{JobID: "j1"})
	require.Error(t, err)
	assert.Equal(t, ErrTypeRejected, appErrType(t, err))
}

func TestAwaitTellsCapacityFromTaskFailure(t *testing.T) {
	noNodes := "not enough nodes to run job. requested: 1, available: 1, suitable: 0."
	f := &fakeJobs{gets: []func() (*models.Job, error){job(models.JobStateTypeFailed, time.Now(), noNodes)}}
	_, err := runActivity(t, f, "Await", AwaitInput{JobID: "j1"})
	assert.Equal(t, ErrTypeNoCapacity, appErrType(t, err), "a job that never ran is a capacity problem")

	f = &fakeJobs{
		gets: []func() (*models.Job, error){job(models.JobStateTypeFailed, time.Now(), noNodes)},
		execs: []*models.Execution{{ID: "e1", ComputeState: models.State[models.ExecutionStateType]{
			StateType: models.ExecutionStateFailed, Message: "unable to find the entrypoint"}}},
	}
	_, err = runActivity(t, f, "Await", AwaitInput{JobID: "j1"})
	assert.Equal(t, ErrTypeTaskFailed, appErrType(t, err), "executions failed: the task is at fault, not capacity")
	assert.Contains(t, err.Error(), "unable to find the entrypoint")
}

// dockerTemplate is a minimal job template for Submit tests (no node
// runs it).
const dockerTemplate = `
Type: batch
Tasks:
  - Name: main
    Engine: {Type: docker, Params: {Image: alpine}}
`

func TestSubmitClassifiesPutErrors(t *testing.T) {
	in := SubmitInput{Template: dockerTemplate}
	in.Batch.Connector, in.Batch.ID = "c", "b"

	f := &fakeJobs{putErr: bacerrors.New("unavailable").WithHTTPStatusCode(http.StatusBadGateway)}
	_, err := runActivity(t, f, "Submit", in)
	require.Error(t, err)
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		assert.False(t, appErr.NonRetryable(), "5xx is retryable")
	}

	f = &fakeJobs{putErr: bacerrors.New("bad job").WithHTTPStatusCode(http.StatusBadRequest)}
	_, err = runActivity(t, f, "Submit", in)
	assert.Equal(t, ErrTypeRejected, appErrType(t, err))

	f = &fakeJobs{listed: []*models.Job{{ID: "j-old", CreateTime: 2}, {ID: "j-older", CreateTime: 1}}}
	v, err := runActivity(t, f, "Submit", in)
	require.NoError(t, err)
	var res SubmitResult
	require.NoError(t, v.(interface{ Get(any) error }).Get(&res))
	assert.Equal(t, SubmitResult{JobID: "j-older", Reused: true, QueueTimeout: 10 * time.Minute, ExecutionTimeout: 5 * time.Minute}, res)
	assert.Zero(t, f.puts, "an existing job for the batch means no new submission")
}

func TestSubmitLooksInTheIdentitysNamespaceOrNotAtAllWhenUnseen(t *testing.T) {
	in := SubmitInput{Template: dockerTemplate}
	in.Batch.Connector, in.Batch.ID, in.Batch.Attempt = "c", "b", 1
	key := tasktemplate.Key("c", "b", 1)
	older := []*models.Job{{ID: "j-older", CreateTime: 1}}

	f := &fakeJobs{listed: older}
	_, err := runActivity(t, f, "Submit", in)
	require.NoError(t, err)
	assert.Equal(t, []string{"", ""}, f.lists, "an unindexed identity is looked up across every namespace (two pages)")
	assert.Zero(t, f.puts)

	in.Batch.Indexed = true
	f = &fakeJobs{listed: older}
	_, err = runActivity(t, f, "Submit", in)
	require.NoError(t, err)
	assert.Equal(t, []string{tasktemplate.Namespace(key), tasktemplate.Namespace(key)}, f.lists, "an indexed identity only in its own namespace")
	assert.Zero(t, f.puts)

	f = &fakeJobs{listed: older}
	owned := in
	owned.Template = "Namespace: team-a\n" + dockerTemplate
	_, err = runActivity(t, f, "Submit", owned)
	require.NoError(t, err)
	assert.Equal(t, []string{"team-a", "team-a"}, f.lists, "a template's own namespace is kept, and looked in")

	in.Unseen = true
	f = &fakeJobs{listed: older}
	_, err = runActivity(t, f, "Submit", in)
	require.NoError(t, err)
	assert.Empty(t, f.lists, "the first attempt of an unseen identity does not look")
	assert.Equal(t, 1, f.puts)
}

func TestPollDelayGrowsWithTheWait(t *testing.T) {
	b := &Bacalhau{pollMin: 50 * time.Millisecond, pollMax: 2 * time.Second}
	assert.Equal(t, 50*time.Millisecond, b.pollDelay(0))
	assert.Equal(t, 500*time.Millisecond, b.pollDelay(10*time.Second))
	assert.Equal(t, 2*time.Second, b.pollDelay(time.Hour))
}

func TestAwaitEndsAJobWaitingAgainAfterItsExecutionsFailed(t *testing.T) {
	failedExec := func(id string) *models.Execution {
		return &models.Execution{ID: id,
			ComputeState: models.State[models.ExecutionStateType]{StateType: models.ExecutionStateFailed, Message: "HEAD 403"},
			DesiredState: models.State[models.ExecutionDesiredStateType]{StateType: models.ExecutionDesiredStateStopped}}
	}
	f := &fakeJobs{
		gets:  []func() (*models.Job, error){job(models.JobStateTypePending, time.Now(), "")},
		execs: []*models.Execution{failedExec("e1")},
	}
	// One failed execution: Bacalhau retries it; keep waiting (until the pending deadline here).
	_, err := runActivity(t, f, "Await", AwaitInput{JobID: "j1", PendingTimeout: 50 * time.Millisecond})
	assert.Equal(t, ErrTypePendingTimeout, appErrType(t, err))

	f.execs = append(f.execs, failedExec("e2"))
	f.stopped = nil
	_, err = runActivity(t, f, "Await", AwaitInput{JobID: "j1", PendingTimeout: time.Hour})
	assert.Equal(t, ErrTypeTaskFailed, appErrType(t, err))
	assert.Contains(t, err.Error(), "HEAD 403")
	assert.Equal(t, []string{"j1"}, f.stopped)
}

func TestAwaitKeepsItsVerdictOnAJobItStoppedBeforeACrash(t *testing.T) {
	f := &fakeJobs{gets: []func() (*models.Job, error){job(models.JobStateTypeStopped, time.Now(), stopExecutionsFailed)}}
	_, err := runActivity(t, f, "Await", AwaitInput{JobID: "j1"})
	assert.Equal(t, ErrTypeTaskFailed, appErrType(t, err), "a task failure, retryable by the task policy")

	f = &fakeJobs{gets: []func() (*models.Job, error){job(models.JobStateTypeStopped, time.Now(), "stopped by an operator")}}
	_, err = runActivity(t, f, "Await", AwaitInput{JobID: "j1"})
	assert.Equal(t, ErrTypeJobStopped, appErrType(t, err))
}

// TestAwaitNeverQuotesTheTaskOutput: a task's stderr may quote the record it
// failed on, and Await's result and errors are workflow history: they name
// the job, the exit code and the output's size, never its text.
func TestAwaitNeverQuotesTheTaskOutput(t *testing.T) {
	const record = "user=alice card=4111-1111-1111-1111"
	exec := func(state models.ExecutionStateType, exit int) []*models.Execution {
		return []*models.Execution{{ID: "e1", ComputeState: models.State[models.ExecutionStateType]{StateType: state},
			RunOutput: &models.RunCommandResult{ExitCode: exit, STDOUT: "processed " + record + "\n", STDERR: "cannot process record: " + record + "\n"}}}
	}
	failure := func(err error) TaskFailure {
		t.Helper()
		var appErr *temporal.ApplicationError
		require.True(t, errors.As(err, &appErr))
		var f TaskFailure
		require.NoError(t, appErr.Details(&f))
		return f
	}

	// Exit 3.
	f := &fakeJobs{gets: []func() (*models.Job, error){job(models.JobStateTypeCompleted, time.Now(), "")}, execs: exec(models.ExecutionStateCompleted, 3)}
	_, err := runActivity(t, f, "Await", AwaitInput{JobID: "j1"})
	require.Error(t, err)
	assert.Equal(t, ErrTypeTaskFailed, appErrType(t, err))
	assert.NotContains(t, err.Error(), record)
	assert.Contains(t, err.Error(), "task of job j1 exited 3 (stderr 59 bytes: bacalhau job logs j1)")
	got := failure(err)
	assert.Equal(t, TaskFailure{JobID: "j1", ExitCode: 3, Message: "task of job j1 exited 3", StderrBytes: 59}, got)

	// A failed job.
	f = &fakeJobs{gets: []func() (*models.Job, error){job(models.JobStateTypeFailed, time.Now(), "execution failed")}, execs: exec(models.ExecutionStateFailed, 1)}
	_, err = runActivity(t, f, "Await", AwaitInput{JobID: "j1"})
	require.Error(t, err)
	assert.NotContains(t, err.Error(), record)
	assert.Contains(t, err.Error(), "(stderr 59 bytes: bacalhau job logs j1)")
	assert.NotContains(t, fmt.Sprintf("%+v", failure(err)), record)

	// Success: sizes only.
	f = &fakeJobs{gets: []func() (*models.Job, error){job(models.JobStateTypeCompleted, time.Now(), "")}, execs: exec(models.ExecutionStateCompleted, 0)}
	v, err := runActivity(t, f, "Await", AwaitInput{JobID: "j1"})
	require.NoError(t, err)
	var res AwaitResult
	require.NoError(t, v.(interface{ Get(any) error }).Get(&res))
	assert.Equal(t, AwaitResult{JobID: "j1", ExecutionID: "e1", StdoutBytes: 46, StderrBytes: 59}, res)
}
