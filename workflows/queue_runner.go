package workflows

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
)

// The queue connector on the batch runner (GetVersion
// changeQueueBatchRunner): what the stream engine does for a partition,
// for a queue's pollers.
//
//   - One activity per batch: RunMessages receives, submits, awaits (keeping
//     the messages invisible) and settles a successful batch; a retried
//     attempt resumes the job it submitted (the batch rides in its
//     heartbeat details).
//   - Leases kept across batches while the queue has a backlog (the last
//     batch was full), given back when it drains, when the budget recalls
//     them (others wait) or after a turn.
//   - Idle costs next to nothing: while the queue is empty only poller 0
//     waits for messages (one long WaitForMessages, quiet heartbeats); the
//     other pollers wait in the workflow, with no activity and no timer,
//     until poller 0 sees messages or a batch comes back full.

// changeQueueBatchRunner versions the queue pollers onto the batch runner.
const changeQueueBatchRunner = "queue-batch-runner"

// queueIdleWait bounds one wait for messages of an idle queue.
const queueIdleWait = 10 * time.Minute

// queuePollers are a queue connector's pollers on the batch runner.
type queuePollers struct {
	cfg    func() QueueConfig
	ref    activities.QueueRef
	st     *QueueStatus
	leases *sharedLeases
	// hot: messages are known to wait (poller 0 saw them, or the last batch
	// was full): every poller receives. Else only poller 0 waits for them.
	hot bool
}

// run is one poller's loop; it returns when stop says so, or with the
// error that stops the connector. done is called after each batch.
func (p *queuePollers) run(ctx workflow.Context, poller int, stop func() bool, done func()) error {
	var lease heldLease // kept across the batches of a backlog
	defer func() {
		if lease.id != "" {
			p.leases.release(ctx, lease.id)
		}
	}()
	for round := 0; !stop() && ctx.Err() == nil; round++ {
		if lease.id != "" && (p.st.Paused || !p.hot && poller > 0) {
			p.leases.release(ctx, lease.id) // paused, or parked: no lease held
			lease = heldLease{}
		}
		if err := workflow.Await(ctx, func() bool { return !p.st.Paused && (p.hot || poller == 0) || stop() }); err != nil || stop() {
			return nil
		}
		cfg := p.cfg()
		if !p.hot {
			if lease.id != "" {
				p.leases.release(ctx, lease.id) // idle: no lease held
				lease = heldLease{}
			}
			has, err := p.wait(ctx, stop)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			if !has || p.st.Paused {
				continue
			}
			p.hot = true
		}
		ttl := cfg.MaxWait + leaseTTL(RunTaskInput{QueueTimeout: cfg.QueueTimeout, ExecutionTimeout: cfg.ExecutionTimeout})
		if lease.id == "" {
			info := workflow.GetInfo(ctx).WorkflowExecution
			id := info.ID + "/" + info.RunID + "#" + strconv.Itoa(poller) + "@" + strconv.Itoa(round)
			if err := p.leases.acquire(ctx, id, ttl); err != nil {
				return err
			}
			lease = heldLease{id: id, since: workflow.Now(ctx)}
		}
		run, ran, err := p.batch(ctx, cfg)
		if err != nil {
			return err
		}
		full := ran && len(run.Messages) >= cfg.MaxMessages
		if !full {
			p.hot = false // drained for now: poller 0 waits for more
		}
		keep := full && run.Failure == nil && !p.leases.recalled(lease.id) && workflow.Now(ctx).Sub(lease.since) < min(ttl/2, streamLeaseTurn)
		if !keep {
			p.leases.release(ctx, lease.id)
			lease = heldLease{}
		}
		if ran {
			done()
		}
	}
	return nil
}

// wait waits for messages on an idle queue (poller 0), holding no lease;
// a pause or the connector stopping (continue-as-new) cancels the wait.
func (p *queuePollers) wait(ctx workflow.Context, stop func() bool) (bool, error) {
	var q *activities.Queue
	wctx, cancel := workflow.WithCancel(ctx)
	defer cancel()
	wctx = workflow.WithActivityOptions(wctx, workflow.ActivityOptions{
		StartToCloseTimeout: queueIdleWait + time.Minute,
		HeartbeatTimeout:    watchHeartbeat,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second},
	})
	f := workflow.ExecuteActivity(wctx, q.WaitForMessages, activities.WaitMessagesInput{QueueRef: p.ref, URL: p.st.URL, Timeout: queueIdleWait})
	if err := workflow.Await(ctx, func() bool { return f.IsReady() || p.st.Paused || stop() }); err != nil {
		return false, err
	}
	if !f.IsReady() {
		cancel()
		_ = f.Get(ctx, nil)
		return false, nil
	}
	var has bool
	if err := f.Get(ctx, &has); err != nil {
		return false, fmt.Errorf("waiting for messages on %s: %w", p.st.URL, err)
	}
	return has, nil
}

// batch runs one batch (RunMessages) and settles what its activity did not;
// ran is false when nothing arrived (or the connector was cancelled).
func (p *queuePollers) batch(ctx workflow.Context, cfg QueueConfig) (*activities.MessagesRun, bool, error) {
	var q *activities.Queue
	rctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: cfg.MaxWait + cfg.QueueTimeout + cfg.ExecutionTimeout + 3*time.Minute,
		HeartbeatTimeout:    cfg.MaxWait + awaitHeartbeat,
		WaitForCancellation: true, // a cancelled batch stops its job
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: time.Minute},
	})
	p.st.InFlight++
	started := workflow.Now(ctx)
	var run activities.MessagesRun
	err := workflow.ExecuteActivity(rctx, q.RunMessages, activities.QueueSubmitInput{QueueRef: p.ref, URL: p.st.URL, Connector: cfg.Name,
		MaxMessages: cfg.MaxMessages, MaxWait: cfg.MaxWait, MaxBytes: MaxInlineBatchBytes, Visibility: cfg.VisibilityTimeout,
		Template: cfg.Template, Unwrap: cfg.SNS != nil && !cfg.SNS.RawDelivery && !cfg.SNS.Envelope,
		QueueTimeout: cfg.QueueTimeout, ExecutionTimeout: cfg.ExecutionTimeout}).Get(ctx, &run)
	p.st.InFlight--
	task := workflow.Now(ctx).Sub(started)
	if ctx.Err() != nil {
		return nil, false, nil
	}
	if err != nil {
		p.st.LastError = err.Error()
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.NonRetryable() {
			return nil, false, err
		}
		return &run, false, nil
	}
	p.st.Counters.Duplicates += int64(run.Duplicates)
	if run.JobID == "" {
		return &run, false, nil
	}
	p.st.LastJob = run.JobID
	settled := run.Settled
	if run.SettleError != "" {
		p.st.LastError = run.SettleError
	}
	if !finishQueueBatch(ctx, cfg, p.ref, p.st, run.QueueBatch, run.Failure.Error(), settled, task) {
		return nil, false, nil
	}
	return &run, true, nil
}
