package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
)

// ShardInput starts (or continues) one shard's consumer.
type ShardInput struct {
	Config KinesisConfig
	Shard  string
	// Position is the checkpoint (the last sequence number processed) or,
	// before the first batch, the start position.
	Position activities.ShardPosition
	Batches  int64 `json:",omitempty"`
	Records  int64 `json:",omitempty"`
	// Attempts of the current batch (or range) so far.
	Attempts int `json:",omitempty"`
	// Ranges are the parts of a failed batch still to run, in order, left
	// by bisection (or a retried batch's records); the first is current.
	Ranges       []SeqRange `json:",omitempty"`
	DeadLettered int64      `json:",omitempty"`
	Paused       bool       `json:",omitempty"`
}

// SeqRange is the records of a shard after From up to Until (a sequence
// number, inclusive).
type SeqRange struct {
	From  activities.ShardPosition
	Until string
	// Split marks a part cut by bisection (it gets one attempt while it
	// holds several records).
	Split bool `json:",omitempty"`
}

// ShardStatus answers QueryShardStatus on a shard consumer and is what it
// reports to its connector.
type ShardStatus struct {
	Shard string
	// Checkpoint is the last sequence number processed ("" before the first).
	Checkpoint     string   `json:",omitempty"`
	Parents        []string `json:",omitempty"`
	Batches        int64
	Records        int64
	DeadLettered   int64      `json:",omitempty"`
	Bisecting      []SeqRange `json:",omitempty"`
	Paused         bool       `json:",omitempty"`
	LastJob        string     `json:",omitempty"`
	LastError      string     `json:",omitempty"`
	LastDeadLetter string     `json:",omitempty"`
	// LastReset is the ID of the last reset this consumer applied.
	LastReset string `json:",omitempty"`
	// MillisBehind is how far the last read was behind the shard's tip
	// (while paused: how long the oldest waiting record has waited, when
	// the connector's watcher last looked).
	MillisBehind int64 `json:",omitempty"`
	// BehindSince (while paused) is the arrival time of the oldest record
	// waiting after the checkpoint, as the connector's watcher saw it;
	// zero when none waits or none is known.
	BehindSince time.Time `json:",omitempty"`
	// Finished: the shard is closed and every record of it is processed.
	Finished bool `json:",omitempty"`
	Phase    string
	Reported time.Time `json:",omitempty"`
	// Seq orders the reports of one consumer run sent at the same
	// workflow time (the stream engine numbers them; 0 before).
	Seq int64 `json:",omitempty"`
	// Watched: the consumer waits for its connector's wake when idle;
	// WaitsAt is the position it waits at (while idle or paused).
	Watched bool                      `json:",omitempty"`
	WaitsAt *activities.ShardPosition `json:",omitempty"`
}

// Behind is how far the shard is behind at now: while paused, how long
// its oldest waiting record has waited; otherwise how far its last read
// was behind the shard's tip.
func (s ShardStatus) Behind(now time.Time) time.Duration {
	if s.Paused && !s.BehindSince.IsZero() {
		return max(0, now.Sub(s.BehindSince))
	}
	return time.Duration(s.MillisBehind) * time.Millisecond
}

// ShardControl is what the connector tells a shard consumer.
type ShardControl struct {
	// Op is pause, resume, reset or config.
	Op     string
	Reset  *ResetRequest  `json:",omitempty"`
	Config *KinesisConfig `json:",omitempty"`
}

// shardBatchesPerRun bounds one run's history before continue-as-new.
const shardBatchesPerRun = 100

// ShardConsumer consumes one shard, with the Kafka partition consumer's
// invariants: loop { wait for records (no lease); lease; read after the
// checkpoint and submit the batch (records never in history); await the
// job; on success the checkpoint moves to the batch's last sequence
// number }. A failed batch runs again over exactly the same records; after
// the retry policy's attempts a batch the task fails on is bisected and
// the failing records go to the dead letter (or the shard is blocked,
// never skipping). When the shard is closed (split or merged) and read to
// its end, the consumer reports itself finished to its connector, which
// then starts the shard's children, and ends.
func ShardConsumer(ctx workflow.Context, in ShardInput) error {
	s := &shardConsumer{cfg: in.Config, in: in, pos: in.Position, ranges: append([]SeqRange(nil), in.Ranges...), attempts: in.Attempts,
		st: &ShardStatus{Shard: in.Shard, Checkpoint: in.Position.After, Batches: in.Batches, Records: in.Records,
			DeadLettered: in.DeadLettered, Paused: in.Paused, Phase: "starting", Bisecting: in.Ranges}}
	if err := workflow.SetQueryHandler(ctx, QueryShardStatus, func() (ShardStatus, error) { return *s.st, nil }); err != nil {
		return err
	}
	s.controls = workflow.GetSignalChannel(ctx, SignalShardControl)
	s.dirty = true
	if err := s.run(ctx); !errors.Is(err, errHandedOff) {
		return err
	}
	return nil
}

// shardConsumer is one run of a ShardConsumer.
type shardConsumer struct {
	cfg      KinesisConfig
	in       ShardInput
	pos      activities.ShardPosition
	st       *ShardStatus
	controls workflow.ReceiveChannel
	// ranges left by bisection or a failed batch (first is current);
	// attempts of it; jobs are its failed jobs.
	ranges     []SeqRange
	attempts   int
	jobs       []string
	lastReport time.Time
	// dirty: the status changed since the last report; reported is the
	// phase the last report carried.
	dirty    bool
	reported string
	k        *activities.Kinesis
	b        *activities.Bacalhau
}

func (s *shardConsumer) run(ctx workflow.Context) error {
	leases := newLeaseClient(ctx, BudgetRef{})
	wctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		HeartbeatTimeout:    10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second},
	})
	for run := 0; run < shardBatchesPerRun && !workflow.GetInfo(ctx).GetContinueAsNewSuggested(); {
		if err := s.applyControls(ctx); err != nil {
			return err
		}
		cfg := s.cfg
		from, until, batchID := s.pos, "", ""
		if len(s.ranges) > 0 {
			from, until = s.ranges[0].From, s.ranges[0].Until
			batchID = activities.ShardRangeID(cfg.streamName(), s.in.Shard, from.After, until)
		} else {
			s.st.Phase = "idle"
			if s.dirty || s.reported != "idle" {
				s.report(ctx, true) // caught up: the connector sees the final state
			}
			w, interrupted, err := s.waitForRecords(ctx, wctx)
			if err != nil {
				if ctx.Err() != nil {
					return temporal.NewCanceledError("shard consumer cancelled")
				}
				return fmt.Errorf("shard %s: waiting for records: %w", s.in.Shard, err)
			}
			if interrupted {
				continue
			}
			if w.ShardEnd {
				return s.finish(ctx)
			}
			if !w.Has {
				run++
				continue
			}
		}
		leaseID := workflow.GetInfo(ctx).WorkflowExecution.ID + "@" + from.After + "#" + fmt.Sprint(s.attempts+1)
		s.st.Phase = "waiting-for-lease"
		if err := leases.acquire(ctx, leaseID, cfg.MaxWait+leaseTTL(RunTaskInput{QueueTimeout: cfg.QueueTimeout, ExecutionTimeout: cfg.ExecutionTimeout})); err != nil {
			return err
		}
		s.st.Phase = "reading"
		rctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			StartToCloseTimeout: cfg.MaxWait + time.Minute,
			HeartbeatTimeout:    cfg.MaxWait + 30*time.Second,
			RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: time.Minute},
		})
		sub := activities.ShardSubmitInput{
			Read: activities.ShardRead{KinesisStreamRef: cfg.streamRef(), Shard: s.in.Shard, ShardPosition: from, Until: until,
				MaxRecords: cfg.MaxRecords, MaxBytes: cfg.MaxBytes, MaxWait: cfg.MaxWait},
			BatchID: batchID, StreamJob: cfg.streamJob(s.attempts + 1),
		}
		var batch activities.ShardBatchResult
		err := workflow.ExecuteActivity(rctx, s.k.ReadShardAndSubmit, sub).Get(ctx, &batch)
		if err != nil {
			leases.release(ctx, leaseID)
			s.st.LastError = err.Error()
			return fmt.Errorf("shard %s after %q: %w", s.in.Shard, from.After, err)
		}
		s.st.MillisBehind = batch.MillisBehind
		if batch.Count == 0 {
			leases.release(ctx, leaseID)
			if len(s.ranges) > 0 && batch.RangeDone {
				s.advance(ctx, until, true)
			} else if len(s.ranges) == 0 && batch.ShardEnd {
				return s.finish(ctx)
			}
			continue
		}
		if len(s.ranges) == 0 {
			// A retry re-reads exactly these records.
			s.ranges = []SeqRange{{From: from, Until: batch.Last}}
		}
		s.st.LastJob = batch.JobID
		if batch.Rejected != "" {
			err = temporal.NewNonRetryableApplicationError(batch.Rejected, activities.ErrTypeInvalidTask, nil)
		}
		var task time.Duration
		if batch.Rejected == "" {
			s.st.Phase = "running"
			actx := awaitOptions(ctx, batch.QueueTimeout, batch.ExecutionTimeout)
			started := workflow.Now(ctx)
			err = workflow.ExecuteActivity(actx, s.b.Await, activities.AwaitInput{JobID: batch.JobID}).Get(ctx, nil)
			task = workflow.Now(ctx).Sub(started)
		}
		leases.release(ctx, leaseID)
		if ctx.Err() != nil {
			if batch.JobID != "" {
				stopJob(ctx, batch.JobID)
			}
			return temporal.NewCanceledError("shard consumer cancelled")
		}
		m := connectorMetrics(ctx, KindKinesis, cfg.Name)
		batchDone(m, err == nil, batch.Count, task)
		m.WithTags(map[string]string{"shard": s.in.Shard}).Gauge(MetricShardBehind).Update(float64(batch.MillisBehind))
		if err != nil {
			if err := s.failed(ctx, batch, from, err); err != nil {
				return err
			}
			continue
		}
		done := batch.RangeDone || batch.Last == s.ranges[0].Until
		if !done {
			// The read stopped short of the range's end: the rest stays to run.
			s.ranges[0].From = activities.ShardPosition{After: batch.Last}
		}
		s.st.Batches++
		s.st.Records += int64(batch.Count)
		s.st.LastError = ""
		run++
		next := batch.Last
		if done {
			next = s.ranges[0].Until
		}
		s.advance(ctx, next, done)
	}
	return workflow.NewContinueAsNewError(ctx, ShardConsumer, s.next())
}

// waitForRecords polls for records after the checkpoint; a control from
// the connector interrupts the wait so it applies at once.
func (s *shardConsumer) waitForRecords(ctx, wctx workflow.Context) (w activities.ShardWait, interrupted bool, err error) {
	actx, cancel := workflow.WithCancel(wctx)
	defer cancel()
	f := workflow.ExecuteActivity(actx, s.k.WaitForShardRecords, activities.WaitShardInput{
		KinesisStreamRef: s.cfg.streamRef(), Shard: s.in.Shard, ShardPosition: s.pos, Timeout: 30 * time.Second,
	})
	sel := workflow.NewSelector(ctx)
	sel.AddFuture(f, func(f workflow.Future) { err = f.Get(ctx, &w) })
	sel.AddReceive(s.controls, func(workflow.ReceiveChannel, bool) { interrupted = true })
	sel.Select(ctx)
	if interrupted {
		cancel()
		_ = f.Get(ctx, nil)
		return w, true, nil
	}
	return w, false, err
}

// finish reports the shard done (closed, every record processed) and ends.
func (s *shardConsumer) finish(ctx workflow.Context) error {
	s.st.Phase, s.st.Finished, s.st.MillisBehind = "finished", true, 0
	// The connector starts the shard's children on this report: make sure
	// it arrived before ending (a signal sent in the last workflow task is
	// not guaranteed to be).
	if err := s.report(ctx, true).Get(ctx, nil); err != nil {
		return fmt.Errorf("shard %s: telling connector %s it finished: %w", s.in.Shard, s.cfg.Name, err)
	}
	workflow.GetLogger(ctx).Info("Shard closed and fully processed", "Shard", s.in.Shard, "Checkpoint", s.st.Checkpoint)
	return nil
}

// next is the input of the run that continues this one.
func (s *shardConsumer) next() ShardInput {
	return ShardInput{Config: s.cfg, Shard: s.in.Shard, Position: s.pos, Batches: s.st.Batches, Records: s.st.Records,
		Attempts: s.attempts, Ranges: s.ranges, DeadLettered: s.st.DeadLettered, Paused: s.st.Paused}
}

// advance moves the checkpoint to the sequence number last after a batch;
// rangeDone drops the current range.
func (s *shardConsumer) advance(ctx workflow.Context, last string, rangeDone bool) {
	s.pos = activities.ShardPosition{After: last}
	s.st.Checkpoint = last
	if len(s.ranges) > 0 && rangeDone {
		s.ranges = s.ranges[1:]
	}
	s.st.Bisecting = s.ranges
	s.attempts, s.jobs = 0, nil
	s.report(ctx, len(s.ranges) > 0)
}

// failed decides what follows a failed batch (or range) read from `from`:
// another attempt after a backoff, a bisection, a dead letter, or (with
// nowhere to put the records) retries until it passes.
func (s *shardConsumer) failed(ctx workflow.Context, batch activities.ShardBatchResult, from activities.ShardPosition, err error) error {
	s.attempts++
	if batch.JobID != "" {
		s.jobs = append(s.jobs, batch.JobID)
	}
	s.st.LastError = err.Error()
	policy := s.cfg.Retry.withDefaults()
	expired := s.cfg.MaxRecordAge > 0 && !batch.FirstTime.IsZero() && workflow.Now(ctx).Sub(batch.FirstTime) > s.cfg.MaxRecordAge
	cur := s.ranges[0]
	step := nextStreamStep(policy, s.cfg.Bisect, s.cfg.DeadLetterS3 != nil, streamFailure{err: err, attempts: s.attempts,
		single: batch.Count <= 1, splitRange: cur.Split && batch.Count > 1,
		rejected: batch.Rejected != "", expired: expired})
	switch step {
	case stepBisect:
		until := cur.Until
		if activities.SeqLess(until, batch.Last) {
			until = batch.Last
		}
		halves := []SeqRange{{From: from, Until: batch.Mid, Split: true}, {From: activities.ShardPosition{After: batch.Mid}, Until: until, Split: true}}
		s.ranges = append(halves, s.ranges[1:]...)
		s.st.Bisecting = s.ranges
		s.attempts, s.jobs = 0, nil
		workflow.GetLogger(ctx).Warn("Batch failed; bisecting it to isolate the failing records", "First", batch.First, "Last", batch.Last, "Error", err)
		s.st.Phase = "bisecting"
		s.report(ctx, true)
		return nil
	case stepDeadLetter:
		return s.deadLetter(ctx, from, batch.Last)
	case stepBlocked:
		s.st.Phase = "blocked"
		s.st.LastError = fmt.Sprintf("records %s..%s fail every attempt and the connector has no on_failure.dead_letter: retrying until they pass (last error: %v)", batch.First, batch.Last, err)
		s.report(ctx, true)
	}
	wait := retryBackoff(policy, s.attempts)
	connectorMetrics(ctx, KindKinesis, s.cfg.Name).Counter(MetricRetries).Inc(1)
	workflow.GetLogger(ctx).Warn("Batch failed; it runs again over the same records", "First", batch.First, "Last", batch.Last, "Attempt", s.attempts, "Wait", wait, "Error", err)
	if s.st.Phase != "blocked" {
		s.st.Phase = "backoff"
	}
	s.report(ctx, false)
	return workflow.Sleep(ctx, wait)
}

// deadLetter sends the records after from up to last to the connector's
// dead letter with the error, then moves the checkpoint past them.
func (s *shardConsumer) deadLetter(ctx workflow.Context, from activities.ShardPosition, last string) error {
	s.st.Phase = "dead-lettering"
	in := activities.DeadLetterShardInput{
		Read:      activities.ShardRead{KinesisStreamRef: s.cfg.streamRef(), Shard: s.in.Shard, ShardPosition: from, Until: last, MaxWait: s.cfg.MaxWait},
		Connector: s.cfg.Name, Error: s.st.LastError, JobIDs: s.jobs, S3: s3Prefix(s.cfg.DeadLetterS3),
	}
	dctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: s.cfg.MaxWait + time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: time.Minute},
	})
	var res activities.DeadLettered
	if err := workflow.ExecuteActivity(dctx, s.k.DeadLetterShardRecords, in).Get(ctx, &res); err != nil {
		return fmt.Errorf("shard %s: dead-lettering records up to %s: %w", s.in.Shard, last, err)
	}
	workflow.GetLogger(ctx).Warn("Records dead-lettered", "Last", last, "Count", res.Count, "Where", res.Where)
	s.st.DeadLettered += int64(res.Count)
	connectorMetrics(ctx, KindKinesis, s.cfg.Name).Counter(MetricDeadLettered).Inc(int64(res.Count))
	s.st.LastDeadLetter = res.Where
	next := last
	if len(s.ranges) > 0 && activities.SeqLess(next, s.ranges[0].Until) {
		next = s.ranges[0].Until
	}
	s.advance(ctx, next, true)
	return nil
}

// applyControls applies the connector's controls that arrived, in order;
// while paused it waits for more (or cancellation).
func (s *shardConsumer) applyControls(ctx workflow.Context) error {
	for {
		var ctl ShardControl
		if s.st.Paused {
			s.st.Phase = "paused"
			s.report(ctx, true)
			sel := workflow.NewSelector(ctx)
			sel.AddReceive(s.controls, func(ch workflow.ReceiveChannel, _ bool) { ch.Receive(ctx, &ctl) })
			sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) {})
			sel.Select(ctx)
			if ctx.Err() != nil {
				return temporal.NewCanceledError("shard consumer cancelled")
			}
		} else if !s.controls.ReceiveAsync(&ctl) {
			return nil
		}
		switch ctl.Op {
		case ControlPause:
			s.st.Paused = true
		case ControlResume:
			s.st.Paused = false
			s.st.Phase = "resuming"
			s.report(ctx, true)
		case ControlConfig:
			if ctl.Config != nil {
				s.cfg = *ctl.Config
			}
		case ControlReset:
			if ctl.Reset != nil {
				s.reset(ctx, *ctl.Reset)
			}
		case ControlHandoff:
			// Between batches: nothing is in flight. The connector starts
			// the shard's stream engine consumer from this state.
			if err := workflow.SignalExternalWorkflow(ctx, KinesisWorkflowID(s.cfg.Name), "", SignalShardHandoff, s.next()).Get(ctx, nil); err != nil {
				return fmt.Errorf("shard %s: handing off to connector %s: %w", s.in.Shard, s.cfg.Name, err)
			}
			workflow.GetLogger(ctx).Info("Handed off to the stream engine", "Checkpoint", s.st.Checkpoint)
			return errHandedOff
		}
	}
}

// reset moves the checkpoint of a paused consumer to the shard's start
// (earliest), the time of the reset (latest) or a time, and forgets the
// batch in progress.
func (s *shardConsumer) reset(ctx workflow.Context, r ResetRequest) {
	if !s.st.Paused {
		s.st.LastError = "reset ignored: the consumer was not paused"
		return
	}
	switch r.To {
	case StartEarliest:
		s.pos = activities.ShardPosition{Start: activities.ShardStartTrimHorizon}
	case StartLatest:
		s.pos = activities.ShardPosition{Start: activities.ShardStartAtTimestamp, StartTime: workflow.Now(ctx)}
	case StartTimestamp:
		s.pos = activities.ShardPosition{Start: activities.ShardStartAtTimestamp, StartTime: r.Time}
	default:
		s.st.LastError = fmt.Sprintf("reset to %q is not supported for Kinesis: use earliest, latest or timestamp", r.To)
		return
	}
	workflow.GetLogger(ctx).Info("Checkpoint reset", "From", s.st.Checkpoint, "To", r.To)
	s.ranges, s.st.Bisecting = nil, nil
	s.st.Checkpoint = ""
	s.attempts, s.jobs = 0, nil
	s.st.LastError = ""
	s.st.LastReset = r.ID
}

// report sends the status to the connector when it changed: at once when
// forced, else at most every reportEvery. The future is ready at once when
// nothing was sent.
func (s *shardConsumer) report(ctx workflow.Context, force bool) workflow.Future {
	s.dirty = true
	now := workflow.Now(ctx)
	if !force && now.Sub(s.lastReport) < reportEvery {
		f, set := workflow.NewFuture(ctx)
		set.Set(nil, nil)
		return f
	}
	s.lastReport, s.dirty, s.reported = now, false, s.st.Phase
	s.st.Reported = now
	return workflow.SignalExternalWorkflow(ctx, KinesisWorkflowID(s.cfg.Name), "", SignalShardStatus, *s.st)
}
