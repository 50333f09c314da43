package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
)

// Cron on the batch runner (GetVersion changeCronBatchRunner, decided once
// per run): a batch is one RunJob activity per attempt (submit and await)
// in the cron workflow itself instead of a RunTask child (a workflow start,
// three activities and a lease round trip per batch), with the retry
// policy applied here, and leases kept across the batches of a tick (given
// back when the tick's batches are done, when the budget recalls them, on
// failure or after a turn).

// changeCronBatchRunner versions cron batches onto the batch runner.
const changeCronBatchRunner = "cron-batch-runner"

// cronRunner is one cron (or backfill) run's batch runner.
type cronRunner struct {
	decided, on bool
	// unseen: a batch's first submit need not look its job up (set for
	// runs on this code whose history was never reset: each batch
	// identity, its round and attempt, is dispatched once per history).
	unseen, rewound bool
	leases          *sharedLeases
	// free are leases kept for the next batch of the tick.
	free []heldLease
}

// enabled tells whether this run's batches run on the runner (asked once).
func (r *cronRunner) enabled(ctx workflow.Context) bool {
	if !r.decided {
		r.decided = true
		r.on = workflow.GetVersion(ctx, changeCronBatchRunner, workflow.DefaultVersion, 1) == 1
		if r.on {
			r.leases = newSharedLeases(ctx, BudgetRef{AskBySignal: true})
			r.leases.byInput = true
			r.leases.keepAcrossBatches(ctx)
			// Asked whatever rewound says: a reset run replays the markers
			// of the run it was made from.
			v := workflow.GetVersion(ctx, changeCronUnseenJobs, workflow.DefaultVersion, 1)
			r.unseen = v == 1 && !r.rewound
		}
	}
	return r.on
}

// changeCronUnseenJobs: a batch attempt's first run submits without
// looking its job up (each attempt is dispatched once per history).
const changeCronUnseenJobs = "cron-unseen-jobs"

// runAttempts runs a batch's attempts as the retry policy says and returns
// the job that passed, or the jobs that failed and the last error.
func (r *cronRunner) runAttempts(ctx workflow.Context, cfg CronConfig, id string, objs []activities.ObjectInput) (jobID string, failed []string, err error) {
	policy := cfg.Retry.withDefaults()
	wait := policy.InitialInterval
	attempt := 1
	for ; ; attempt++ {
		var run *activities.JobRun
		run, err = r.runOnce(ctx, cfg, id, objs, attempt)
		if err == nil && run.Failure == nil {
			return run.JobID, failed, nil
		}
		if err == nil {
			failed = append(failed, run.JobID)
			err = run.Failure.Error()
		}
		if ctx.Err() != nil || !retryable(err) || attempt >= policy.MaxAttempts {
			break
		}
		workflow.GetLogger(ctx).Warn("Task attempt failed; retrying", "Batch", id, "Attempt", attempt, "Wait", wait, "Error", err)
		if serr := workflow.Sleep(ctx, wait); serr != nil {
			return "", failed, serr
		}
		wait = min(time.Duration(float64(wait)*policy.BackoffCoefficient), policy.MaxInterval)
	}
	if ctx.Err() != nil {
		return "", failed, err
	}
	return "", failed, temporal.NewNonRetryableApplicationError(
		fmt.Sprintf("task for batch %s of %s failed after %d attempt(s): %v", id, cfg.Name, attempt, err), ErrTypeTaskRunFailed, err)
}

// runOnce runs one attempt under a lease (one kept from an earlier batch,
// or a new one).
func (r *cronRunner) runOnce(ctx workflow.Context, cfg CronConfig, id string, objs []activities.ObjectInput, attempt int) (*activities.JobRun, error) {
	ttl := leaseTTL(RunTaskInput{QueueTimeout: cfg.QueueTimeout, ExecutionTimeout: cfg.ExecutionTimeout})
	var l heldLease
	for len(r.free) > 0 && l.id == "" {
		n := len(r.free)
		l, r.free = r.free[n-1], r.free[:n-1]
		if r.leases.recalled(l.id) {
			r.leases.release(ctx, l.id) // the budget asked for it back meanwhile
			l = heldLease{}
		}
	}
	if l.id == "" {
		l = heldLease{id: fmt.Sprintf("%s@%s#%d", workflow.GetInfo(ctx).WorkflowExecution.ID, id, attempt), since: workflow.Now(ctx)}
		if err := r.leases.acquire(ctx, l.id, ttl); err != nil {
			return nil, err
		}
	}
	var b *activities.Bacalhau
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: ttl,
		HeartbeatTimeout:    awaitHeartbeat,
		WaitForCancellation: true, // a cancelled batch stops its job
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: time.Minute},
	})
	var run activities.JobRun
	err := workflow.ExecuteActivity(actx, b.RunJob, activities.JobRunInput{SubmitInput: activities.SubmitInput{
		Template: cfg.Template,
		Batch: tasktemplate.Batch{Connector: cfg.Name, ID: id, Attempt: attempt, Labels: map[string]string{"connect-kind": KindCron},
			QueueTimeout: cfg.QueueTimeout, ExecutionTimeout: cfg.ExecutionTimeout},
		Objects: objs, Delivery: cfg.Delivery, URLTTL: cfg.URLTTL, Unseen: r.unseen,
	}}).Get(ctx, &run)
	if err == nil && run.Failure == nil && !r.leases.recalled(l.id) && workflow.Now(ctx).Sub(l.since) < min(ttl/2, streamLeaseTurn) {
		r.free = append(r.free, l) // for the tick's next batch
	} else {
		r.leases.release(ctx, l.id)
	}
	if err != nil {
		return nil, err
	}
	return &run, nil
}

// releaseAll gives back the leases kept for a tick's batches.
func (r *cronRunner) releaseAll(ctx workflow.Context) {
	for _, l := range r.free {
		r.leases.release(ctx, l.id)
	}
	r.free = nil
}
