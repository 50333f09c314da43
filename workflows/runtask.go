package workflows

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
)

// RunTaskInput is one batch to run as one Bacalhau task. It holds references
// (URLs, template text), never record payloads.
type RunTaskInput struct {
	// Connector and BatchID identify the batch: with the attempt number they
	// make submission idempotent.
	Connector string
	BatchID   string
	// Template is the Bacalhau job YAML, placeholders already rendered.
	Template string
	Inputs   []tasktemplate.Input `json:",omitempty"`
	// Objects are S3 objects the task reads, by reference; Submit turns them
	// into inputs (gateway URLs minted then, or s3 input sources).
	Objects  []activities.ObjectInput `json:",omitempty"`
	Delivery string                   `json:",omitempty"`
	URLTTL   time.Duration            `json:",omitempty"`
	Env      map[string]string        `json:",omitempty"`
	Labels   map[string]string        `json:",omitempty"`
	// QueueTimeout and ExecutionTimeout bound the job (defaults: the
	// template's, else tasktemplate.DefaultQueueTimeout/DefaultExecutionTimeout).
	QueueTimeout     time.Duration `json:",omitempty"`
	ExecutionTimeout time.Duration `json:",omitempty"`
	// PendingTimeout fails an attempt whose job Bacalhau never schedules. Default 2 min.
	PendingTimeout time.Duration `json:",omitempty"`
	// Retry is how often a failed task runs again.
	Retry TaskRetryPolicy
	// Budget says how this task takes part in the shared in-flight budget.
	Budget BudgetRef
	// Output asks for the task's stdout and stderr: their tails in the
	// result, and the last attempt's stderr in the failure. It is for one-off
	// runs (starter run-task), whose output is the user's own. Connectors
	// leave it off: their tasks' output may quote the records they read,
	// and what RunTask returns is history in its own and its parent's run.
	Output bool `json:",omitempty"`
}

// TaskRetryPolicy decides when a failed task runs again. Failures that a
// retry cannot fix (an invalid template, a job stopped by hand) never retry.
type TaskRetryPolicy struct {
	// MaxAttempts is the most times the task runs. Default 3; 1 disables retries.
	MaxAttempts int `json:",omitempty"`
	// InitialInterval is the wait before the second attempt. Default 5 s.
	InitialInterval time.Duration `json:",omitempty"`
	// BackoffCoefficient multiplies the wait after each attempt. Default 2.
	BackoffCoefficient float64 `json:",omitempty"`
	// MaxInterval caps the wait. Default 5 min.
	MaxInterval time.Duration `json:",omitempty"`
}

func (p TaskRetryPolicy) withDefaults() TaskRetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = 3
	}
	if p.InitialInterval <= 0 {
		p.InitialInterval = 5 * time.Second
	}
	if p.BackoffCoefficient < 1 {
		p.BackoffCoefficient = 2
	}
	if p.MaxInterval <= 0 {
		p.MaxInterval = 5 * time.Minute
	}
	return p
}

// BudgetRef points a task at the shared in-flight budget.
type BudgetRef struct {
	// Disabled runs the task without a lease.
	Disabled bool `json:",omitempty"`
	// WorkflowID of the budget. Default BudgetWorkflowIDFor(TaskQueue).
	WorkflowID string `json:",omitempty"`
	// TaskQueue where the budget runs if it has to be started. Default: this workflow's.
	TaskQueue string `json:",omitempty"`
	// Size of the budget if it has to be started (0: measured).
	Size int `json:",omitempty"`
	// AskBySignal asks for a lease with one signal to the running budget
	// (see changeLeaseBySignal). RunTask takes it from here, set by whoever
	// starts it, so that no RunTask calls workflow.GetVersion: its version
	// marker and search attribute upsert would cost two actions per batch.
	AskBySignal bool `json:",omitempty"`
}

// RunTaskResult is the outcome of a successful task.
type RunTaskResult struct {
	JobID    string
	Attempts int
	ExitCode int
	// StdoutTail and StderrTail are set only when the input asked for
	// Output.
	StdoutTail string `json:",omitempty"`
	StderrTail string `json:",omitempty"`
	// ResultURL is where the published outputs are (activities.FetchPublished).
	ResultURL string
	Outputs   []activities.OutputFile
}

// RunTaskStatus answers QueryRunTaskStatus.
type RunTaskStatus struct {
	Phase     string // waiting-for-lease | submitting | running | reading-results | backoff | done
	Attempt   int
	JobID     string
	LastError string
}

// RunTask runs one batch as one Bacalhau task. See the package documentation.
func RunTask(ctx workflow.Context, in RunTaskInput) (*RunTaskResult, error) {
	if in.Connector == "" || in.BatchID == "" || in.Template == "" {
		return nil, temporal.NewNonRetryableApplicationError("RunTask needs Connector, BatchID and Template", activities.ErrTypeInvalidTask, nil)
	}
	policy := in.Retry.withDefaults()
	status := &RunTaskStatus{}
	if err := workflow.SetQueryHandler(ctx, QueryRunTaskStatus, func() (RunTaskStatus, error) { return *status, nil }); err != nil {
		return nil, err
	}
	leases := newLeaseClient(ctx, in.Budget)
	leases.byInput = true

	var lastErr error
	wait := policy.InitialInterval
	for attempt := 1; attempt <= policy.MaxAttempts; attempt++ {
		status.Attempt = attempt
		res, err := runAttempt(ctx, in, attempt, status, leases)
		if err == nil {
			res.Attempts = attempt
			status.Phase = "done"
			return res, nil
		}
		lastErr = err
		status.LastError = err.Error()
		if ctx.Err() != nil || !retryable(err) || attempt == policy.MaxAttempts {
			break
		}
		workflow.GetLogger(ctx).Warn("Task attempt failed; retrying", "Attempt", attempt, "Wait", wait, "Error", err)
		status.Phase = "backoff"
		if err := workflow.Sleep(ctx, wait); err != nil {
			return nil, err
		}
		wait = min(time.Duration(float64(wait)*policy.BackoffCoefficient), policy.MaxInterval)
	}
	if ctx.Err() != nil {
		return nil, lastErr
	}
	msg := fmt.Sprintf("task for batch %s of %s failed after %d attempt(s): %v", in.BatchID, in.Connector, status.Attempt, lastErr)
	if ids := failedJobIDs(lastErr); in.Output && len(ids) > 0 {
		if out := readOutput(ctx, ids[len(ids)-1]); out != nil && out.StderrTail != "" {
			msg += "; stderr: " + activities.LastLine(out.StderrTail)
		}
	}
	return nil, temporal.NewNonRetryableApplicationError(msg, ErrTypeTaskRunFailed, lastErr)
}

// readOutput reads a job's stdout and stderr for a run that asked for its
// Output; nil when they cannot be read.
//
// Await and Results, which connectors' batches share with one-off runs,
// return sizes only; the text comes from this separate activity, run only
// when RunTaskInput.Output is set, so no connector's history holds task
// output (a task's stderr quotes the record it refused).
func readOutput(ctx workflow.Context, jobID string) *activities.Output {
	octx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 5},
	})
	var b *activities.Bacalhau
	var out activities.Output
	if err := workflow.ExecuteActivity(octx, b.Output, jobID).Get(ctx, &out); err != nil {
		workflow.GetLogger(ctx).Warn("Reading the task's output failed", "JobID", jobID, "Error", err)
		return nil
	}
	return &out
}

// failedJobIDs lists the jobs named by the task failures in err's chain
// (a RunTask failure wraps its last attempt's), outermost first.
func failedJobIDs(err error) []string {
	var ids []string
	for err != nil {
		var appErr *temporal.ApplicationError
		if !errors.As(err, &appErr) {
			break
		}
		var f activities.TaskFailure
		if (appErr.Type() == activities.ErrTypeTaskFailed || appErr.Type() == activities.ErrTypeNoCapacity) &&
			appErr.HasDetails() && appErr.Details(&f) == nil && f.JobID != "" {
			ids = append(ids, f.JobID)
		}
		err = appErr.Unwrap()
	}
	return ids
}

// retryable says whether another attempt of the task could succeed.
func retryable(err error) bool {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		switch appErr.Type() {
		case activities.ErrTypeInvalidTask, activities.ErrTypeRejected, activities.ErrTypeJobStopped:
			return false
		}
	}
	var canceled *temporal.CanceledError
	return !errors.As(err, &canceled)
}

func runAttempt(ctx workflow.Context, in RunTaskInput, attempt int, status *RunTaskStatus, leases *leaseClient) (res *RunTaskResult, err error) {
	leaseID := workflow.GetInfo(ctx).WorkflowExecution.ID + "#" + strconv.Itoa(attempt)
	status.Phase = "waiting-for-lease"
	status.JobID = ""
	if err := leases.acquire(ctx, leaseID, leaseTTL(in)); err != nil {
		return nil, err
	}
	defer leases.release(ctx, leaseID)

	var b *activities.Bacalhau
	status.Phase = "submitting"
	sctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: time.Minute},
	})
	var sub activities.SubmitResult
	err = workflow.ExecuteActivity(sctx, b.Submit, activities.SubmitInput{
		Template: in.Template,
		Batch: tasktemplate.Batch{
			Connector: in.Connector, ID: in.BatchID, Attempt: attempt,
			Inputs: in.Inputs, Env: in.Env, Labels: in.Labels,
			QueueTimeout: in.QueueTimeout, ExecutionTimeout: in.ExecutionTimeout,
		},
		Objects: in.Objects, Delivery: in.Delivery, URLTTL: in.URLTTL,
	}).Get(ctx, &sub)
	if err != nil {
		return nil, err
	}
	status.JobID = sub.JobID
	defer func() {
		if ctx.Err() != nil {
			stopJob(ctx, sub.JobID)
		}
	}()

	status.Phase = "running"
	actx := awaitOptions(ctx, sub.QueueTimeout, sub.ExecutionTimeout)
	var done activities.AwaitResult
	if err := workflow.ExecuteActivity(actx, b.Await, activities.AwaitInput{JobID: sub.JobID, PendingTimeout: in.PendingTimeout}).Get(ctx, &done); err != nil {
		return nil, err
	}

	status.Phase = "reading-results"
	rctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 10},
	})
	var results activities.Results
	if err := workflow.ExecuteActivity(rctx, b.Results, sub.JobID).Get(ctx, &results); err != nil {
		return nil, err
	}
	res = &RunTaskResult{JobID: sub.JobID, ExitCode: done.ExitCode, ResultURL: results.ResultURL, Outputs: results.Outputs}
	if in.Output {
		if out := readOutput(ctx, sub.JobID); out != nil {
			res.StdoutTail, res.StderrTail = out.StdoutTail, out.StderrTail
		}
	}
	return res, nil
}

// stopJob stops a job after the workflow was cancelled. Await stops the job
// itself when cancelled; this covers a cancellation that came between submit
// and await.
func stopJob(ctx workflow.Context, jobID string) {
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	dctx = workflow.WithActivityOptions(dctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 5},
	})
	var b *activities.Bacalhau
	if err := workflow.ExecuteActivity(dctx, b.StopJob, jobID).Get(dctx, nil); err != nil {
		workflow.GetLogger(ctx).Warn("Stopping job after cancellation failed", "JobID", jobID, "Error", err)
	}
}

// leaseTTL bounds one attempt: queue, execution and a margin for submit and results.
func leaseTTL(in RunTaskInput) time.Duration {
	q, e := in.QueueTimeout, in.ExecutionTimeout
	if q <= 0 {
		q = tasktemplate.DefaultQueueTimeout
	}
	if e <= 0 {
		e = tasktemplate.DefaultExecutionTimeout
	}
	return q + e + 5*time.Minute
}

// leaseClient is a holder's side of the budget protocol.
type leaseClient struct {
	ref     BudgetRef
	granted workflow.ReceiveChannel
	// byInput takes the request mode from ref.AskBySignal alone (RunTask);
	// else workflow.GetVersion decides, once per run (long-lived
	// connectors).
	byInput bool
	// keeps asks for leases the holder keeps across batches until the
	// budget recalls them (LeaseRequest.Keeps).
	keeps bool
}

func newLeaseClient(ctx workflow.Context, ref BudgetRef) *leaseClient {
	if ref.TaskQueue == "" {
		ref.TaskQueue = workflow.GetInfo(ctx).TaskQueueName
	}
	if ref.WorkflowID == "" {
		ref.WorkflowID = BudgetWorkflowIDFor(ref.TaskQueue)
	}
	return &leaseClient{ref: ref, granted: workflow.GetSignalChannel(ctx, SignalLeaseGranted)}
}

// acquire asks the budget for a lease (starting the budget if needed) and
// waits for the grant. Grants for other leases (earlier attempts) are
// handed back.
func (l *leaseClient) acquire(ctx workflow.Context, leaseID string, ttl time.Duration) error {
	if l.ref.Disabled {
		return nil
	}
	if err := l.request(ctx, leaseID, ttl); err != nil {
		return err
	}
	for {
		var g LeaseGrant
		cancelled := false
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(l.granted, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, &g) })
		sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) { cancelled = true })
		sel.Select(ctx)
		if cancelled {
			l.release(ctx, leaseID)
			return temporal.NewCanceledError("cancelled while waiting for a lease")
		}
		if g.LeaseID == leaseID {
			return nil
		}
		l.release(ctx, g.LeaseID)
	}
}

// changeLeaseBySignal versions how a lease is requested: a signal to the
// running budget (one billable action) instead of an activity that
// signals it with start (two); the activity remains for a budget that does
// not run yet. Histories from before replay with the activity alone. A
// RunTask child gets the mode in its input (BudgetRef.AskBySignal) from
// its parent, which asks GetVersion once per run.
const changeLeaseBySignal = "lease-request-by-signal"

// request asks the budget for a lease, starting the budget if needed.
func (l *leaseClient) request(ctx workflow.Context, leaseID string, ttl time.Duration) error {
	info := workflow.GetInfo(ctx)
	req := LeaseRequest{LeaseID: leaseID, HolderWorkflowID: info.WorkflowExecution.ID, HolderRunID: info.WorkflowExecution.RunID, TTL: ttl, Keeps: l.keeps}
	bySignal := l.ref.AskBySignal
	if !l.byInput {
		bySignal = workflow.GetVersion(ctx, changeLeaseBySignal, workflow.DefaultVersion, 1) == 1
	}
	if bySignal {
		err := workflow.SignalExternalWorkflow(ctx, l.ref.WorkflowID, "", SignalAcquireLease, req).Get(ctx, nil)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("requesting a lease from %s: %w", l.ref.WorkflowID, err)
		}
		// Not running (the first lease on this queue, or it was ended):
		// start it with the request.
	}
	actx := shortOptions(ctx)
	var t *activities.Temporal
	err := workflow.ExecuteActivity(actx, t.SignalWithStart, activities.SignalWithStartInput{
		WorkflowID:   l.ref.WorkflowID,
		WorkflowType: BudgetWorkflowType,
		TaskQueue:    l.ref.TaskQueue,
		SignalName:   SignalAcquireLease,
		Signal:       req,
		Input:        BudgetInput{Size: l.ref.Size},
	}).Get(ctx, nil)
	if err != nil {
		return fmt.Errorf("requesting a lease from %s: %w", l.ref.WorkflowID, err)
	}
	return nil
}

// sharedLeases lets several coroutines of one workflow hold leases at once:
// one coroutine receives every grant and hands it to the coroutine waiting
// for it (a leaseClient's acquire would hand back a grant meant for another
// coroutine).
type sharedLeases struct {
	*leaseClient
	waiting map[string]bool
	arrived map[string]bool
	// recalls are the leases the budget asked back (keeping holders).
	recalls map[string]bool
}

func newSharedLeases(ctx workflow.Context, ref BudgetRef) *sharedLeases {
	s := &sharedLeases{leaseClient: newLeaseClient(ctx, ref), waiting: map[string]bool{}, arrived: map[string]bool{}}
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var g LeaseGrant
			sel := workflow.NewSelector(ctx)
			sel.AddReceive(s.granted, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, &g) })
			sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) {})
			sel.Select(ctx)
			if ctx.Err() != nil {
				return
			}
			if s.waiting[g.LeaseID] {
				s.arrived[g.LeaseID] = true
			} else {
				s.release(ctx, g.LeaseID)
			}
		}
	})
	return s
}

// keepAcrossBatches makes the leases asked for from now on kept across
// batches (LeaseRequest.Keeps) and takes in the budget's recalls of them
// (recalled tells).
func (s *sharedLeases) keepAcrossBatches(ctx workflow.Context) {
	s.keeps, s.recalls = true, map[string]bool{}
	ch := workflow.GetSignalChannel(ctx, SignalLeaseRecall)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var r LeaseRecall
			sel := workflow.NewSelector(ctx)
			sel.AddReceive(ch, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, &r) })
			sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) {})
			sel.Select(ctx)
			if ctx.Err() != nil {
				return
			}
			s.recalls[r.LeaseID] = true
		}
	})
}

// recalled tells whether the budget asked for the lease back (and forgets
// the recall).
func (s *sharedLeases) recalled(leaseID string) bool {
	back := s.recalls[leaseID]
	delete(s.recalls, leaseID)
	return back
}

// acquire asks for a lease and waits for its grant.
func (s *sharedLeases) acquire(ctx workflow.Context, leaseID string, ttl time.Duration) error {
	if s.ref.Disabled {
		return nil
	}
	s.waiting[leaseID] = true
	defer delete(s.waiting, leaseID)
	if err := s.request(ctx, leaseID, ttl); err != nil {
		return err
	}
	if err := workflow.Await(ctx, func() bool { return s.arrived[leaseID] }); err != nil {
		s.release(ctx, leaseID)
		return temporal.NewCanceledError("cancelled while waiting for a lease")
	}
	delete(s.arrived, leaseID)
	return nil
}

// release gives a lease back, even when ctx is cancelled.
func (l *leaseClient) release(ctx workflow.Context, leaseID string) {
	if l.ref.Disabled {
		return
	}
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	err := workflow.SignalExternalWorkflow(dctx, l.ref.WorkflowID, "", SignalReleaseLease, LeaseRelease{LeaseID: leaseID}).Get(dctx, nil)
	if err != nil {
		workflow.GetLogger(ctx).Warn("Releasing lease failed; the budget reclaims it at its TTL", "LeaseID", leaseID, "Error", err)
	}
}
