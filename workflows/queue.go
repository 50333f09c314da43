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

// QueueInput starts (or continues) a queue connector.
type QueueInput struct {
	Config QueueConfig
	// URL is the resolved queue URL (empty: resolve, or for sns create or
	// adopt the subscribed queue, first).
	URL      string         `json:",omitempty"`
	Counters QueueCounters  `json:",omitempty"`
	Paused   bool           `json:",omitempty"`
	SNS      *SNSQueueState `json:",omitempty"`
}

// SNSQueueState is what an sns connector set up.
type SNSQueueState = activities.Subscribed

// QueueCounters count a queue connector's work.
type QueueCounters struct {
	Batches, Messages, Deleted, Released, Duplicates, FailedBatches int64
}

// QueueStatus answers QueryQueueStatus.
type QueueStatus struct {
	Name, Kind, URL string
	Paused          bool
	InFlight        int
	Counters        QueueCounters
	LastJob         string         `json:",omitempty"`
	LastError       string         `json:",omitempty"`
	SNS             *SNSQueueState `json:",omitempty"`
}

// queueBatchesPerRun bounds one run's history before continue-as-new.
const queueBatchesPerRun = 200

// QueueConnector polls an SQS queue (for kind sns: a queue it subscribes to
// the topic) with Concurrency pollers. Each: wait for messages (no lease);
// take a lease; receive a batch and submit its task (one activity; bodies
// never in history); await the task while keeping the messages invisible;
// delete them on success (except those the task's failure report lists),
// or let them reappear at once on failure, for the queue's redrive policy
// to count. Pause and resume apply between batches.
func QueueConnector(ctx workflow.Context, in QueueInput) error {
	cfg := in.Config
	if err := cfg.Validate(); err != nil {
		return temporal.NewNonRetryableApplicationError("invalid queue config: "+err.Error(), "InvalidConfig", nil)
	}
	st := &QueueStatus{Name: cfg.Name, Kind: cfg.Kind, URL: in.URL, Paused: in.Paused, Counters: in.Counters, SNS: in.SNS}
	if err := workflow.SetQueryHandler(ctx, QueryConfig, func() (QueueConfig, error) { return cfg, nil }); err != nil {
		return err
	}
	if err := workflow.SetQueryHandler(ctx, QueryQueueStatus, func() (QueueStatus, error) { return *st, nil }); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateSpec, func(ctx workflow.Context, next QueueConfig) (string, error) {
		cfg = next
		return "updated", nil
	}, workflow.UpdateHandlerOptions{Validator: func(next QueueConfig) error {
		if err := next.Validate(); err != nil {
			return err
		}
		if next.Name != cfg.Name || next.Kind != cfg.Kind || next.Queue != cfg.Queue || next.Endpoint != cfg.Endpoint {
			return fmt.Errorf("name, kind, queue and endpoint cannot change (%s %s %s): delete the connector and apply a new one", cfg.Name, cfg.Kind, cfg.Queue)
		}
		return nil
	}}); err != nil {
		return err
	}
	var q *activities.Queue
	ref := activities.QueueRef{Queue: cfg.Queue, Region: cfg.Region, Endpoint: cfg.Endpoint}
	if st.URL == "" {
		sctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			StartToCloseTimeout: 30 * time.Second,
			RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: time.Minute},
		})
		if cfg.Kind == KindSNS {
			var sub activities.Subscribed
			if err := workflow.ExecuteActivity(sctx, q.EnsureSubscription, activities.SubscribeInput{QueueRef: ref, Connector: cfg.Name,
				TopicARN: cfg.SNS.TopicARN, RawDelivery: cfg.SNS.RawDelivery, FilterPolicy: cfg.SNS.FilterPolicy}).Get(ctx, &sub); err != nil {
				return fmt.Errorf("subscribing a queue to %s: %w", cfg.SNS.TopicARN, err)
			}
			st.URL, st.SNS = sub.QueueURL, &sub
		} else if err := workflow.ExecuteActivity(sctx, q.QueueURL, ref).Get(ctx, &st.URL); err != nil {
			return fmt.Errorf("resolving queue %s: %w", cfg.Queue, err)
		}
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

	// Fewer activities per batch (GetVersion: a run begun before replays
	// without): a poller whose last batch was full receives again without
	// waiting for messages first, and a successful batch is settled by the
	// activity that awaited it.
	fewer := workflow.GetVersion(ctx, changeQueueFewerActivities, workflow.DefaultVersion, 1) == 1
	runner := workflow.GetVersion(ctx, changeQueueBatchRunner, workflow.DefaultVersion, 1) == 1
	leases := newSharedLeases(ctx, BudgetRef{})
	if runner {
		leases.keepAcrossBatches(ctx)
	}
	pollers := &queuePollers{cfg: func() QueueConfig { return cfg }, ref: ref, st: st, leases: leases}
	batches := 0
	stopping := false
	var fatal error
	wg := workflow.NewWaitGroup(ctx)
	for i := 0; i < cfg.Concurrency; i++ {
		wg.Add(1)
		poller := i
		workflow.Go(ctx, func(ctx workflow.Context) {
			defer wg.Done()
			if runner {
				err := pollers.run(ctx, poller, func() bool { return stopping || fatal != nil }, func() {
					batches++
					if batches >= queueBatchesPerRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
						stopping = true
					}
				})
				if err != nil && fatal == nil {
					fatal = err
				}
				return
			}
			full := false // the last batch had MaxMessages: more are likely waiting
			for round := 0; !stopping && fatal == nil && ctx.Err() == nil; round++ {
				if err := workflow.Await(ctx, func() bool { return !st.Paused || stopping }); err != nil || stopping {
					return
				}
				info := workflow.GetInfo(ctx).WorkflowExecution
				leaseID := info.ID + "/" + info.RunID + "#" + strconv.Itoa(poller) + "@" + strconv.Itoa(round)
				var done bool
				var err error
				done, full, err = queueRound(ctx, cfg, ref, st, leases, leaseID, fewer, fewer && full)
				if err != nil {
					fatal = err
					return
				}
				if done {
					batches++
					if batches >= queueBatchesPerRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
						stopping = true
					}
				}
			}
		})
	}
	// Pollers stop between batches; then the run continues as new.
	if err := workflow.Await(ctx, func() bool { return stopping || fatal != nil }); err != nil {
		// Cancelled (starter delete): the pollers stop as their activities
		// are cancelled and give back the leases they keep across batches
		// (before, the run ended first and the leases stayed with the
		// budget until a recall or their TTL).
		dctx, cancel := workflow.NewDisconnectedContext(ctx)
		defer cancel()
		if workflow.GetVersion(dctx, changeQueueCancelReleases, workflow.DefaultVersion, 1) == 1 {
			wg.Wait(dctx)
		}
		return temporal.NewCanceledError("queue connector cancelled")
	}
	wg.Wait(ctx)
	if fatal != nil {
		return fatal
	}
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return err
	}
	return workflow.NewContinueAsNewError(ctx, QueueConnector, QueueInput{Config: cfg, URL: st.URL, Counters: st.Counters, Paused: st.Paused, SNS: st.SNS})
}

// changeQueueCancelReleases versions a cancelled queue connector's wait for
// its pollers to give their leases back.
const changeQueueCancelReleases = "queue-cancel-releases"

// changeQueueFewerActivities versions the queue poller's round: no
// WaitForMessages after a full batch, and a successful batch settled by
// AwaitMessages instead of a SettleMessages activity of its own.
const changeQueueFewerActivities = "queue-fewer-activities"

// queueRound runs one poller round; done is true when a batch ran, full
// when it held MaxMessages. With settleInAwait the await activity settles
// a successful batch; with backlog the round receives without waiting for
// messages first.
func queueRound(ctx workflow.Context, cfg QueueConfig, ref activities.QueueRef, st *QueueStatus, leases *sharedLeases, leaseID string,
	settleInAwait, backlog bool) (done, full bool, err error) {
	var q *activities.Queue
	if !backlog {
		wctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			StartToCloseTimeout: time.Minute,
			HeartbeatTimeout:    10 * time.Second,
			RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second},
		})
		var has bool
		if err := workflow.ExecuteActivity(wctx, q.WaitForMessages, activities.WaitMessagesInput{QueueRef: ref, URL: st.URL, Timeout: 20 * time.Second}).Get(ctx, &has); err != nil {
			if ctx.Err() != nil {
				return false, false, nil
			}
			return false, false, fmt.Errorf("waiting for messages on %s: %w", st.URL, err)
		}
		if !has || st.Paused {
			return false, false, nil // paused while waiting: no new batch
		}
	}
	if err := leases.acquire(ctx, leaseID, cfg.MaxWait+leaseTTL(RunTaskInput{QueueTimeout: cfg.QueueTimeout, ExecutionTimeout: cfg.ExecutionTimeout})); err != nil {
		return false, false, err
	}
	defer leases.release(ctx, leaseID)
	rctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: cfg.MaxWait + 2*time.Minute,
		HeartbeatTimeout:    cfg.MaxWait + 30*time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: time.Minute},
	})
	var batch activities.QueueBatch
	err = workflow.ExecuteActivity(rctx, q.ReceiveAndSubmit, activities.QueueSubmitInput{QueueRef: ref, URL: st.URL, Connector: cfg.Name,
		MaxMessages: cfg.MaxMessages, MaxWait: cfg.MaxWait, MaxBytes: MaxInlineBatchBytes, Visibility: cfg.VisibilityTimeout,
		Template: cfg.Template, Unwrap: cfg.SNS != nil && !cfg.SNS.RawDelivery && !cfg.SNS.Envelope,
		QueueTimeout: cfg.QueueTimeout, ExecutionTimeout: cfg.ExecutionTimeout}).Get(ctx, &batch)
	if err != nil {
		if ctx.Err() != nil {
			return false, false, nil
		}
		st.LastError = err.Error()
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.NonRetryable() {
			return false, false, err
		}
		return false, false, nil
	}
	st.Counters.Duplicates += int64(batch.Duplicates)
	if batch.JobID == "" {
		return false, false, nil
	}
	full = len(batch.Messages) >= cfg.MaxMessages
	st.InFlight++
	st.LastJob = batch.JobID
	actx := awaitOptions(ctx, batch.QueueTimeout, batch.ExecutionTimeout)
	started := workflow.Now(ctx)
	var awaited activities.AwaitedMessages
	awaitErr := workflow.ExecuteActivity(actx, q.AwaitMessages, activities.AwaitMessagesInput{QueueRef: ref, URL: st.URL, JobID: batch.JobID,
		Messages: batch.Messages, Visibility: cfg.VisibilityTimeout, Settle: settleInAwait}).Get(ctx, &awaited)
	st.InFlight--
	task := workflow.Now(ctx).Sub(started)
	if ctx.Err() != nil {
		stopJob(ctx, batch.JobID)
		return false, false, nil
	}
	return finishQueueBatch(ctx, cfg, ref, st, batch, awaitErr, awaited.Settled, task), full, nil
}

// finishQueueBatch settles a batch whose job ended (awaitErr: how it
// failed): the messages a batch the task failed on as a whole fails on
// are isolated (RunSingles), so one poison message does not hold back the
// others; the
// messages are deleted or released (settled: already done by the await)
// and the counters move. It returns false when cancelled first.
func finishQueueBatch(ctx workflow.Context, cfg QueueConfig, ref activities.QueueRef, st *QueueStatus, batch activities.QueueBatch,
	awaitErr error, settledByAwait *activities.Settled, task time.Duration) bool {
	var q *activities.Queue
	settle := activities.SettleInput{QueueRef: ref, URL: st.URL, JobID: batch.JobID, Messages: batch.Messages, Succeeded: awaitErr == nil}
	if awaitErr != nil {
		st.LastError = awaitErr.Error()
		st.Counters.FailedBatches++
		var appErr *temporal.ApplicationError
		if len(batch.Messages) > 1 && errors.As(awaitErr, &appErr) && appErr.Type() == activities.ErrTypeTaskFailed {
			// The task failed on its input: isolate the messages it fails
			// on (RunSingles bisects), so one poison message does not hold
			// back the others.
			workflow.GetLogger(ctx).Warn("Batch failed; isolating the messages it fails on", "JobID", batch.JobID, "Error", awaitErr)
			sctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
				StartToCloseTimeout: time.Duration(len(batch.Messages)) * (batch.QueueTimeout + batch.ExecutionTimeout + time.Minute),
				HeartbeatTimeout:    30 * time.Second, // each single's await heartbeats; a killed worker is noticed in 30 s
				RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: time.Minute},
			})
			var singles activities.RunSinglesResult
			if err := workflow.ExecuteActivity(sctx, q.RunSingles, activities.RunSinglesInput{QueueRef: ref, URL: st.URL, Connector: cfg.Name,
				JobID: batch.JobID, Messages: batch.Messages, Visibility: cfg.VisibilityTimeout, Template: cfg.Template,
				QueueTimeout: cfg.QueueTimeout, ExecutionTimeout: cfg.ExecutionTimeout, Suspects: batch.Suspects}).Get(ctx, &singles); err == nil {
				settle.Succeeded, settle.Release = true, singles.Failed
				if len(singles.Failed) == 0 {
					settle.Release = nil
					settle.JobID = ""
				}
			} else if ctx.Err() != nil {
				return false
			}
		} else {
			workflow.GetLogger(ctx).Warn("Batch failed; its messages reappear for the queue's redrive policy", "JobID", batch.JobID, "Error", awaitErr)
		}
	}
	var settled activities.Settled
	if settledByAwait != nil {
		settled = *settledByAwait // settled by AwaitMessages
	} else if err := workflow.ExecuteActivity(shortOptions(ctx), q.SettleMessages, settle).Get(ctx, &settled); err != nil {
		// The messages reappear after their timeout; redeliveries find the job.
		st.LastError = err.Error()
	}
	batchDone(connectorMetrics(ctx, cfg.Kind, cfg.Name), awaitErr == nil, int(settled.Deleted), task)
	st.Counters.Batches++
	st.Counters.Messages += int64(len(batch.Messages))
	st.Counters.Deleted += int64(settled.Deleted)
	st.Counters.Released += int64(settled.Released)
	if awaitErr == nil {
		st.LastError = ""
	}
	return true
}
