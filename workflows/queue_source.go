package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
)

// SourceQueueConfig is the resolved configuration of a connector of a
// queue kind written against the public source.Queue interface (Google
// Cloud Pub/Sub, kinds from outside this repository), as `starter apply`
// produces it from a spec. It holds no secrets.
type SourceQueueConfig struct {
	Name string
	// SourceKind names the kind's workflow (fields promoted; a queue kind
	// has no consumer type).
	SourceKind
	// Source is the kind's own configuration, decoded and checked from the
	// spec's source section; the worker opens the queue from it.
	Source json.RawMessage
	// Describe says what the connector reads ("subscription …").
	Describe string `json:",omitempty"`
	// Lease is how long a received message stays leased between
	// extensions while its task runs.
	Lease time.Duration
	// MaxMessages and MaxWait bound one batch (MaxWait from its first
	// message).
	MaxMessages int
	MaxWait     time.Duration
	// Concurrency is how many batches run at once.
	Concurrency int
	// TaskConfig is what runs per batch (fields promoted). There is no
	// retry: a failed batch's messages are released and the queue's
	// dead-letter policy counts their deliveries.
	TaskConfig
}

// Validate checks what a running connector relies on; internal/spec's
// validation is a superset, with YAML paths.
func (c SourceQueueConfig) Validate() error {
	var errs []error
	if c.Name == "" || c.Kind == "" || c.ConnectorType == "" || c.IDPrefix == "" || len(c.Source) == 0 {
		errs = append(errs, errors.New("name, kind, workflow names and the source configuration are required"))
	}
	if c.MaxMessages < 1 || c.MaxMessages > MaxQueueMessages || c.MaxWait <= 0 {
		errs = append(errs, fmt.Errorf("batch: max_messages must be 1 to %d and max_wait positive", MaxQueueMessages))
	}
	if c.Lease < time.Second {
		errs = append(errs, errors.New("the source's lease must be at least 1s"))
	}
	if c.Concurrency < 1 || c.Concurrency > MaxQueueConcurrency {
		errs = append(errs, fmt.Errorf("batch.concurrency: use 1 to %d", MaxQueueConcurrency))
	}
	if c.Template == "" {
		errs = append(errs, errors.New("task.template: required"))
	}
	return errors.Join(errs...)
}

func (c SourceQueueConfig) ref() activities.SourceRef {
	return activities.SourceRef{Kind: c.Kind, Config: c.Source}
}

// SourceQueueInput starts (or continues) a connector of a queue kind.
type SourceQueueInput struct {
	Config   SourceQueueConfig
	Counters QueueCounters `json:",omitempty"`
	Paused   bool          `json:",omitempty"`
}

// sourceQueueIdleWait bounds one wait for a first message while the queue
// is idle. The waiting poller holds a lease (the source has no cheap way to
// tell whether messages wait, and a message received must run), so this
// is also how long a budget's recall may wait for it.
const sourceQueueIdleWait = 30 * time.Second

// SourceQueueConnector runs a queue kind's connector with Concurrency
// pollers, on the batch runner the SQS connector has: each batch is one
// SourceQueueBatch activity (receive, submit, await while extending the
// leases, ack a success); the messages a batch whose task failed as a
// whole fails on are isolated by bisection, and those that fail alone are
// released for the queue's dead-letter policy. While the queue is idle
// only poller 0 waits, in windows of sourceQueueIdleWait. Status:
// QueryQueueStatus; pause and resume apply between batches.
func SourceQueueConnector(ctx workflow.Context, in SourceQueueInput) error {
	cfg := in.Config
	if err := cfg.Validate(); err != nil {
		return temporal.NewNonRetryableApplicationError("invalid queue config: "+err.Error(), "InvalidConfig", nil)
	}
	st := &QueueStatus{Name: cfg.Name, Kind: cfg.Kind, URL: cfg.Describe, Paused: in.Paused, Counters: in.Counters}
	if err := workflow.SetQueryHandler(ctx, QueryConfig, func() (SourceQueueConfig, error) { return cfg, nil }); err != nil {
		return err
	}
	if err := workflow.SetQueryHandler(ctx, QueryQueueStatus, func() (QueueStatus, error) { return *st, nil }); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateSpec, func(ctx workflow.Context, next SourceQueueConfig) (string, error) {
		cfg = next
		return "updated", nil
	}, workflow.UpdateHandlerOptions{Validator: func(next SourceQueueConfig) error {
		if err := next.Validate(); err != nil {
			return err
		}
		if next.Name != cfg.Name || next.SourceKind != cfg.SourceKind || string(next.Source) != string(cfg.Source) {
			return fmt.Errorf("name, kind and source cannot change (%s, %s %s): delete the connector and apply a new one", cfg.Name, cfg.Kind, cfg.Describe)
		}
		return nil
	}}); err != nil {
		return err
	}
	pauseCh := workflow.GetSignalChannel(ctx, SignalPause)
	resumeCh := workflow.GetSignalChannel(ctx, SignalResume)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			sel := workflow.NewSelector(ctx)
			sel.AddReceive(pauseCh, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); st.Paused = true })
			sel.AddReceive(resumeCh, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); st.Paused = false })
			sel.Select(ctx)
			if ctx.Err() != nil {
				return
			}
			syncConnectorState(ctx, st.Paused)
		}
	})

	leases := newSharedLeases(ctx, BudgetRef{})
	leases.keepAcrossBatches(ctx)
	pollers := &sourcePollers{cfg: func() SourceQueueConfig { return cfg }, st: st, leases: leases}
	batches := 0
	stopping := false
	var fatal error
	wg := workflow.NewWaitGroup(ctx)
	for i := 0; i < cfg.Concurrency; i++ {
		wg.Add(1)
		poller := i
		workflow.Go(ctx, func(ctx workflow.Context) {
			defer wg.Done()
			err := pollers.run(ctx, poller, func() bool { return stopping || fatal != nil }, func() {
				batches++
				if batches >= queueBatchesPerRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
					stopping = true
				}
			})
			if err != nil && fatal == nil {
				fatal = err
			}
		})
	}
	if err := workflow.Await(ctx, func() bool { return stopping || fatal != nil }); err != nil {
		// Cancelled (starter delete): the pollers stop as their activities
		// are cancelled and give their leases back.
		dctx, cancel := workflow.NewDisconnectedContext(ctx)
		defer cancel()
		wg.Wait(dctx)
		return temporal.NewCanceledError("queue connector cancelled")
	}
	wg.Wait(ctx)
	if fatal != nil {
		return fatal
	}
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return err
	}
	return workflow.NewContinueAsNewError(ctx, workflow.GetInfo(ctx).WorkflowType.Name,
		SourceQueueInput{Config: cfg, Counters: st.Counters, Paused: st.Paused})
}

// sourcePollers are a queue kind connector's pollers.
type sourcePollers struct {
	cfg    func() SourceQueueConfig
	st     *QueueStatus
	leases *sharedLeases
	// hot: the last batch was full, so messages are likely waiting: every
	// poller receives. Else only poller 0 waits for them.
	hot bool
}

// run is one poller's loop; it returns when stop says so, or with the
// error that stops the connector. done is called after each batch.
func (p *sourcePollers) run(ctx workflow.Context, poller int, stop func() bool, done func()) error {
	var lease heldLease // kept across the batches of a backlog, and by poller 0 while it waits
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
		ttl := sourceQueueIdleWait + cfg.MaxWait + leaseTTL(RunTaskInput{QueueTimeout: cfg.QueueTimeout, ExecutionTimeout: cfg.ExecutionTimeout})
		if lease.id == "" {
			info := workflow.GetInfo(ctx).WorkflowExecution
			id := info.ID + "/" + info.RunID + "#" + strconv.Itoa(poller) + "@" + strconv.Itoa(round)
			if err := p.leases.acquire(ctx, id, ttl); err != nil {
				return err
			}
			lease = heldLease{id: id, since: workflow.Now(ctx)}
		}
		run, ran, err := p.batch(ctx, cfg, !p.hot, stop)
		if err != nil {
			return err
		}
		full := ran && len(run.Messages) >= cfg.MaxMessages
		p.hot = full
		failed := run != nil && run.Failure != nil
		keep := (full || poller == 0) && !failed && !p.leases.recalled(lease.id) && workflow.Now(ctx).Sub(lease.since) < min(ttl/2, streamLeaseTurn)
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

// batch runs one batch (SourceQueueBatch) and settles what its activity
// did not; idle lets it wait for a first message, a wait a pause or stop
// cancels. ran is false when nothing arrived (or the connector was
// cancelled).
func (p *sourcePollers) batch(ctx workflow.Context, cfg SourceQueueConfig, idle bool, stop func() bool) (*activities.MessagesRun, bool, error) {
	var q *activities.SourceQueues
	in := activities.SourceQueueBatchInput{Source: cfg.ref(), Connector: cfg.Name, MaxMessages: cfg.MaxMessages, MaxBytes: MaxInlineBatchBytes,
		MaxWait: cfg.MaxWait, Lease: cfg.Lease, Template: cfg.Template, QueueTimeout: cfg.QueueTimeout, ExecutionTimeout: cfg.ExecutionTimeout}
	if idle {
		in.IdleWait = sourceQueueIdleWait
	}
	rctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: in.IdleWait + cfg.MaxWait + cfg.QueueTimeout + cfg.ExecutionTimeout + 3*time.Minute,
		HeartbeatTimeout:    cfg.MaxWait + awaitHeartbeat,
		WaitForCancellation: true, // a cancelled activity runs a batch in hand to its end: wait for it
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: time.Minute},
	})
	p.st.InFlight++
	started := workflow.Now(ctx)
	var run activities.MessagesRun
	actx, cancel := workflow.WithCancel(rctx)
	defer cancel()
	f := workflow.ExecuteActivity(actx, q.SourceQueueBatch, in)
	if idle {
		// A pause, or the run ending, cancels a wait for messages: the
		// activity stops receiving, and runs what it holds already.
		if err := workflow.Await(ctx, func() bool { return f.IsReady() || p.st.Paused || stop() }); err == nil && !f.IsReady() {
			cancel()
		}
	}
	err := f.Get(ctx, &run)
	p.st.InFlight--
	task := workflow.Now(ctx).Sub(started)
	if ctx.Err() != nil {
		return nil, false, nil
	}
	if temporal.IsCanceledError(err) {
		return &run, false, nil // a wait cancelled before anything arrived
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
	if run.SettleError != "" {
		p.st.LastError = run.SettleError
	}
	if !p.finish(ctx, cfg, run, task) {
		return nil, false, nil
	}
	return &run, true, nil
}

// finish settles a batch whose job ended, as finishQueueBatch does for
// SQS: the messages a batch failed on are isolated by bisection (so one
// poison message does not hold back the others; a message whose own task
// failed on an earlier delivery runs alone at once), and the counters
// move. It returns false when cancelled first.
func (p *sourcePollers) finish(ctx workflow.Context, cfg SourceQueueConfig, run activities.MessagesRun, task time.Duration) bool {
	var q *activities.SourceQueues
	batch, st := run.QueueBatch, p.st
	failure := run.Failure.Error()
	settle := activities.SourceSettleInput{Source: cfg.ref(), JobID: batch.JobID, Messages: batch.Messages, Succeeded: failure == nil}
	if failure != nil {
		st.LastError = failure.Error()
		st.Counters.FailedBatches++
		var appErr *temporal.ApplicationError
		if len(batch.Messages) > 1 && errors.As(failure, &appErr) && appErr.Type() == activities.ErrTypeTaskFailed {
			workflow.GetLogger(ctx).Warn("Batch failed; isolating the messages it fails on", "JobID", batch.JobID, "Error", failure)
			sctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
				StartToCloseTimeout: time.Duration(len(batch.Messages)) * (batch.QueueTimeout + batch.ExecutionTimeout + time.Minute),
				HeartbeatTimeout:    30 * time.Second,
				RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: time.Minute},
			})
			var singles activities.RunSinglesResult
			if err := workflow.ExecuteActivity(sctx, q.SourceQueueSingles, activities.SourceSinglesInput{Source: cfg.ref(),
				RunSinglesInput: activities.RunSinglesInput{Connector: cfg.Name, JobID: batch.JobID, Messages: batch.Messages,
					Visibility: cfg.Lease, Template: cfg.Template, QueueTimeout: cfg.QueueTimeout, ExecutionTimeout: cfg.ExecutionTimeout,
					Suspects: batch.Suspects}}).Get(ctx, &singles); err == nil {
				settle.Succeeded, settle.Release = true, singles.Failed
				if len(singles.Failed) == 0 {
					settle.Release = nil
					settle.JobID = ""
				}
			} else if ctx.Err() != nil {
				return false
			}
		} else {
			workflow.GetLogger(ctx).Warn("Batch failed; its messages go back for the queue's dead-letter policy", "JobID", batch.JobID, "Error", failure)
		}
	}
	var settled activities.Settled
	if run.Settled != nil {
		settled = *run.Settled // settled by the batch's activity
	} else if err := workflow.ExecuteActivity(shortOptions(ctx), q.SourceQueueSettle, settle).Get(ctx, &settled); err != nil {
		// The messages go back after their lease; redeliveries find the job.
		st.LastError = err.Error()
	}
	batchDone(connectorMetrics(ctx, cfg.Kind, cfg.Name), failure == nil, settled.Deleted, task)
	st.Counters.Batches++
	st.Counters.Messages += int64(len(batch.Messages))
	st.Counters.Deleted += int64(settled.Deleted)
	st.Counters.Released += int64(settled.Released)
	if failure == nil {
		st.LastError = ""
	}
	return true
}
