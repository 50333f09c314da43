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

// PartitionInput starts (or continues) one partition's consumer.
type PartitionInput struct {
	Config    KafkaConfig
	Partition int32
	// Checkpoint is the next offset to process; -1 resolves the spec's start.
	Checkpoint int64
	Batches    int64 `json:",omitempty"`
	Records    int64 `json:",omitempty"`
	// Attempts of the current batch (or range) so far.
	Attempts int `json:",omitempty"`
	// Ranges are the parts of a failed batch still to run, in offset order,
	// left by bisection; the first is the current one.
	Ranges       []OffsetRange `json:",omitempty"`
	DeadLettered int64         `json:",omitempty"`
	Paused       bool          `json:",omitempty"`
}

// OffsetRange is the offsets From..Until (inclusive) of a partition.
type OffsetRange struct {
	From, Until int64
}

// PartitionStatus answers QueryPartitionStatus on a partition consumer and
// is what it reports to its connector.
type PartitionStatus struct {
	Partition  int32
	Checkpoint int64
	// End is the partition's end offset as last seen; Lag = End - Checkpoint.
	End          int64 `json:",omitempty"`
	Lag          int64 `json:",omitempty"`
	Batches      int64
	Records      int64
	Skipped      int64
	DeadLettered int64         `json:",omitempty"`
	Bisecting    []OffsetRange `json:",omitempty"`
	Paused       bool          `json:",omitempty"`
	LastJob      string        `json:",omitempty"`
	LastError    string        `json:",omitempty"`
	// LastDeadLetter says where the last dead-lettered records went.
	LastDeadLetter string `json:",omitempty"`
	// LastReset is the ID of the last reset this consumer applied.
	LastReset string `json:",omitempty"`
	Phase     string
	// Watched: the consumer waits for its connector's wake signal when
	// idle (the connector's watcher polls for it).
	Watched bool `json:",omitempty"`
	// Seq orders the reports of one consumer run sent at the same
	// workflow time (the stream engine numbers them; 0 before).
	Seq int64 `json:",omitempty"`
	// Reported is the workflow time of this report.
	Reported time.Time `json:",omitempty"`
}

// partitionBatchesPerRun bounds one run's history before continue-as-new.
const partitionBatchesPerRun = 100

// changeReportIdle versions the idle report a consumer sends when its last
// report (after its last batch) carried another phase: histories from
// before it replay without that signal.
const changeReportIdle = "partition-report-idle"

// reportEvery throttles a consumer's status reports to its connector.
const reportEvery = 2 * time.Second

// consumerVersion marks consumers with controls, status reports, bisection
// and dead letters; runs begun before them replay without.
const consumerVersion = "kafka-consumer-controls"

// PartitionConsumer consumes one partition: loop { lease; read from the
// checkpoint and submit the batch (one activity, records never in
// history); await the job; on success advance the checkpoint and mirror it
// to the consumer group }. A failed batch runs again over exactly the same
// offsets, up to the retry policy's attempts; then, when the task failed on
// its input, the batch is bisected until the failing records are isolated,
// and those go to the dead letter (or, without one, are retried until they
// pass: never skipped). At most one batch per partition is in flight.
// Controls from the connector (pause, resume, reset, config) apply between
// batches, in the order sent.
func PartitionConsumer(ctx workflow.Context, in PartitionInput) error {
	c := &consumer{cfg: in.Config, in: in, st: &PartitionStatus{Partition: in.Partition, Checkpoint: in.Checkpoint,
		Batches: in.Batches, Records: in.Records, DeadLettered: in.DeadLettered, Paused: in.Paused, Phase: "starting"}}
	if err := workflow.SetQueryHandler(ctx, QueryPartitionStatus, func() (PartitionStatus, error) { return *c.st, nil }); err != nil {
		return err
	}
	c.legacy = workflow.GetVersion(ctx, consumerVersion, workflow.DefaultVersion, 1) == workflow.DefaultVersion
	c.controls = workflow.GetSignalChannel(ctx, SignalPartitionControl)
	c.ranges = append([]OffsetRange(nil), in.Ranges...)
	c.attempts = in.Attempts
	c.dirty = true // the first idle moment reports, so the connector knows every consumer
	if err := c.run(ctx); !errors.Is(err, errHandedOff) {
		return err
	}
	return nil
}

// errHandedOff ends a consumer of the older types that handed its state
// to its connector (ControlHandoff).
var errHandedOff = errors.New("handed off to the stream engine")

// consumer is one run of a PartitionConsumer.
type consumer struct {
	cfg      KafkaConfig
	in       PartitionInput
	st       *PartitionStatus
	legacy   bool
	controls workflow.ReceiveChannel
	// ranges left by bisection (first is current); attempts of the current
	// batch; until fixes the end of a retried open batch; jobs are the
	// failed jobs of the current batch.
	ranges     []OffsetRange
	attempts   int
	until      int64
	jobs       []string
	lastReport time.Time
	// dirty is set when the status changed since the last report.
	dirty bool
	// reported is the phase of the last report sent.
	reported string
	// k and b name the activities (nil receivers: methods as names).
	k *activities.Kafka
	b *activities.Bacalhau
}

func (c *consumer) run(ctx workflow.Context) error {
	short := shortOptions(ctx)
	if c.st.Checkpoint < 0 {
		start := activities.StartInput{TopicRef: c.cfg.topicRef(), Partition: c.in.Partition, Start: c.cfg.Start, StartTime: c.cfg.StartTime}
		if c.cfg.Start == StartOffsets {
			start.Offset = c.cfg.StartOffsets[c.in.Partition]
		}
		if err := workflow.ExecuteActivity(short, c.k.ResolveStart, start).Get(ctx, &c.st.Checkpoint); err != nil {
			return fmt.Errorf("resolving the start of partition %d: %w", c.in.Partition, err)
		}
	}
	leases := newLeaseClient(ctx, BudgetRef{})
	c.until = -1
	wctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		HeartbeatTimeout:    10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second},
	})
	for run := 0; run < partitionBatchesPerRun && !workflow.GetInfo(ctx).GetContinueAsNewSuggested(); {
		if !c.legacy {
			if err := c.applyControls(ctx); err != nil {
				return err
			}
		}
		cfg := c.cfg
		from, until, batchID := c.st.Checkpoint, c.until, ""
		if len(c.ranges) > 0 {
			from, until = c.ranges[0].From, c.ranges[0].Until
			batchID = activities.StreamRangeID(cfg.Topic, c.in.Partition, from, until)
		} else if c.attempts == 0 {
			c.st.Phase = "idle"
			if c.dirty {
				c.report(ctx, true) // caught up: the connector sees the final state
			} else if c.reported != "idle" && workflow.GetVersion(ctx, changeReportIdle, workflow.DefaultVersion, 1) == 1 {
				// The last report (after the last batch) said running.
				c.report(ctx, true)
			}
			has, interrupted, err := c.waitForRecords(ctx, wctx)
			if err != nil {
				if ctx.Err() != nil {
					return temporal.NewCanceledError("partition consumer cancelled")
				}
				return fmt.Errorf("partition %d: waiting for records: %w", c.in.Partition, err)
			}
			if interrupted {
				continue // a control arrived: apply it now
			}
			if !has {
				run++ // idle rounds count too: history stays bounded
				continue
			}
		}
		leaseID := workflow.GetInfo(ctx).WorkflowExecution.ID + "@" + strconv.FormatInt(from, 10) + "#" + strconv.Itoa(c.attempts+1)
		c.st.Phase = "waiting-for-lease"
		if err := leases.acquire(ctx, leaseID, cfg.MaxWait+leaseTTL(RunTaskInput{QueueTimeout: cfg.QueueTimeout, ExecutionTimeout: cfg.ExecutionTimeout})); err != nil {
			return err
		}
		c.st.Phase = "reading"
		rctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			StartToCloseTimeout: cfg.MaxWait + time.Minute,
			HeartbeatTimeout:    cfg.MaxWait + 30*time.Second,
			RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: time.Minute},
		})
		sub := activities.StreamSubmitInput{
			Read: activities.KafkaRead{KafkaCluster: cfg.cluster(), Topic: cfg.Topic, Partition: c.in.Partition, From: from,
				MaxRecords: cfg.MaxRecords, MaxBytes: cfg.MaxBytes, MaxWait: cfg.MaxWait, OnOutOfRange: cfg.OnOffsetOutOfRange, Until: until},
			BatchID: batchID, StreamJob: cfg.streamJob(c.attempts + 1),
		}
		var batch activities.SubmittedKafkaBatch
		err := workflow.ExecuteActivity(rctx, c.k.ReadAndSubmit, sub).Get(ctx, &batch)
		if err != nil {
			leases.release(ctx, leaseID)
			c.st.LastError = err.Error()
			return fmt.Errorf("partition %d at offset %d: %w", c.in.Partition, from, err)
		}
		c.st.End = max(c.st.End, batch.End)
		if batch.Count == 0 {
			leases.release(ctx, leaseID)
			if len(c.ranges) > 0 && batch.RangeDone { // a bisected range with nothing left in it
				c.advance(ctx, until+1, true)
			}
			continue
		}
		if len(c.ranges) == 0 {
			c.until = batch.Last // a retry re-reads exactly these offsets
		}
		c.st.LastJob = batch.JobID
		if batch.Rejected != "" {
			err = temporal.NewNonRetryableApplicationError(batch.Rejected, activities.ErrTypeInvalidTask, nil)
		}
		var task time.Duration
		if batch.Rejected == "" {
			c.st.Phase = "running"
			actx := awaitOptions(ctx, batch.QueueTimeout, batch.ExecutionTimeout)
			started := workflow.Now(ctx)
			err = workflow.ExecuteActivity(actx, c.b.Await, activities.AwaitInput{JobID: batch.JobID}).Get(ctx, nil)
			task = workflow.Now(ctx).Sub(started)
		}
		leases.release(ctx, leaseID)
		if ctx.Err() != nil {
			if batch.JobID != "" {
				stopJob(ctx, batch.JobID)
			}
			return temporal.NewCanceledError("partition consumer cancelled")
		}
		m := connectorMetrics(ctx, KindKafka, cfg.Name)
		batchDone(m, err == nil, batch.Count, task)
		if err != nil {
			if err := c.failed(ctx, batch, from, until, err); err != nil {
				return err
			}
			continue
		}
		// Success: the checkpoint moves past the batch (or range), then the
		// group mirrors it.
		next, done := batch.Last+1, true
		if len(c.ranges) > 0 {
			if batch.RangeDone {
				next = until + 1
			} else {
				// The read stopped short of the range's end: the rest of
				// the range stays to run.
				c.ranges[0].From, done = next, false
			}
		}
		c.st.Batches++
		c.st.Records += int64(batch.Count)
		c.st.Skipped += batch.Skipped
		c.st.LastError = ""
		run++
		c.advance(ctx, next, done)
		m.WithTags(map[string]string{"partition": itoa32(c.in.Partition)}).Gauge(MetricPartitionLag).Update(float64(c.st.Lag))
	}
	return workflow.NewContinueAsNewError(ctx, PartitionConsumer, c.next())
}

// waitForRecords long-polls for records past the checkpoint; a control
// from the connector interrupts the wait so it applies at once.
func (c *consumer) waitForRecords(ctx, wctx workflow.Context) (has, interrupted bool, err error) {
	actx, cancel := workflow.WithCancel(wctx)
	defer cancel()
	f := workflow.ExecuteActivity(actx, c.k.WaitForRecords, activities.WaitInput{
		TopicRef: c.cfg.topicRef(), Partition: c.in.Partition, From: c.st.Checkpoint, Timeout: 30 * time.Second,
	})
	sel := workflow.NewSelector(ctx)
	sel.AddFuture(f, func(f workflow.Future) { err = f.Get(ctx, &has) })
	if !c.legacy {
		// Left in the channel for applyControls.
		sel.AddReceive(c.controls, func(workflow.ReceiveChannel, bool) { interrupted = true })
	}
	sel.Select(ctx)
	if interrupted {
		cancel()
		_ = f.Get(ctx, nil)
		return false, true, nil
	}
	return has, false, err
}

// next is the input of the run that continues this one.
func (c *consumer) next() PartitionInput {
	in := PartitionInput{Config: c.cfg, Partition: c.in.Partition, Checkpoint: c.st.Checkpoint, Batches: c.st.Batches,
		Records: c.st.Records, Attempts: c.attempts, DeadLettered: c.st.DeadLettered, Paused: c.st.Paused, Ranges: c.ranges}
	if !c.legacy && len(c.ranges) == 0 && c.attempts > 0 && c.until >= 0 {
		// A retried batch keeps its offsets across continue-as-new.
		in.Ranges = []OffsetRange{{From: c.st.Checkpoint, Until: c.until}}
	}
	return in
}

// advance moves the checkpoint to next after a batch, and mirrors it to
// the consumer group; rangeDone drops the current bisected range.
func (c *consumer) advance(ctx workflow.Context, next int64, rangeDone bool) {
	c.st.Checkpoint = next
	c.st.Lag = max(0, c.st.End-next)
	if len(c.ranges) > 0 && rangeDone {
		c.ranges = c.ranges[1:]
	}
	c.st.Bisecting = c.ranges
	c.attempts, c.until, c.jobs = 0, -1, nil
	c.commit(ctx)
	c.report(ctx, len(c.ranges) > 0)
}

func (c *consumer) commit(ctx workflow.Context) {
	if err := workflow.ExecuteActivity(shortOptions(ctx), c.k.CommitOffset, activities.CommitInput{
		TopicRef: c.cfg.topicRef(), Group: c.cfg.Group, Partition: c.in.Partition, Offset: c.st.Checkpoint,
	}).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Warn("Mirroring the checkpoint to the group failed; the next batch mirrors it", "Error", err)
	}
}

// failed decides what follows a failed batch (or range) from..until that
// held batch.First..batch.Last: another attempt after a backoff, a
// bisection, a dead letter, or (with nowhere to put the records) retries
// until it passes.
func (c *consumer) failed(ctx workflow.Context, batch activities.SubmittedKafkaBatch, from, until int64, err error) error {
	c.attempts++
	if batch.JobID != "" {
		c.jobs = append(c.jobs, batch.JobID)
	}
	c.st.LastError = err.Error()
	policy := c.cfg.Retry.withDefaults()
	lo, hi := batch.First, batch.Last
	expired := c.cfg.MaxRecordAge > 0 && !batch.FirstTime.IsZero() && workflow.Now(ctx).Sub(batch.FirstTime) > c.cfg.MaxRecordAge
	step := nextStreamStep(policy, c.cfg.Bisect, c.cfg.hasDeadLetter(), streamFailure{err: err, attempts: c.attempts, single: hi <= lo,
		splitRange: len(c.ranges) > 0 && hi > lo, rejected: batch.Rejected != "", expired: expired})
	if !c.legacy && step != stepRetry {
		if step == stepBisect {
			mid := lo + (hi-lo)/2
			halves := []OffsetRange{{From: from, Until: mid}, {From: mid + 1, Until: max(hi, until)}}
			if len(c.ranges) > 0 {
				c.ranges = append(halves, c.ranges[1:]...)
			} else {
				c.ranges = halves
			}
			c.st.Bisecting = c.ranges
			c.attempts, c.until, c.jobs = 0, -1, nil
			workflow.GetLogger(ctx).Warn("Batch failed; bisecting it to isolate the failing records", "First", lo, "Last", hi, "Error", err)
			c.st.Phase = "bisecting"
			c.report(ctx, true)
			return nil
		}
		if step == stepDeadLetter {
			return c.deadLetter(ctx, lo, hi)
		}
		c.st.Phase = "blocked"
		c.st.LastError = fmt.Sprintf("offsets %d..%d fail every attempt and the connector has no on_failure.dead_letter: retrying until they pass (last error: %v)", lo, hi, err)
		c.report(ctx, true)
	}
	wait := retryBackoff(policy, c.attempts)
	connectorMetrics(ctx, KindKafka, c.cfg.Name).Counter(MetricRetries).Inc(1)
	workflow.GetLogger(ctx).Warn("Batch failed; it runs again over the same offsets", "First", lo, "Last", hi, "Attempt", c.attempts, "Wait", wait, "Error", err)
	if c.st.Phase != "blocked" {
		c.st.Phase = "backoff"
	}
	c.report(ctx, false)
	return workflow.Sleep(ctx, wait)
}

// deadLetter sends the records lo..hi to the connector's dead letter with
// the error, then moves the checkpoint past them.
func (c *consumer) deadLetter(ctx workflow.Context, lo, hi int64) error {
	c.st.Phase = "dead-lettering"
	in := activities.DeadLetterRecordsInput{
		Read: activities.KafkaRead{KafkaCluster: c.cfg.cluster(), Topic: c.cfg.Topic, Partition: c.in.Partition,
			From: lo, Until: hi, MaxWait: c.cfg.MaxWait, OnOutOfRange: c.cfg.OnOffsetOutOfRange},
		Connector: c.cfg.Name, Error: c.st.LastError, JobIDs: c.jobs,
		Topic: c.cfg.DeadLetterTopic, S3: s3Prefix(c.cfg.DeadLetterS3),
	}
	dctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: c.cfg.MaxWait + time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: time.Minute},
	})
	var res activities.DeadLettered
	if err := workflow.ExecuteActivity(dctx, c.k.DeadLetterRecords, in).Get(ctx, &res); err != nil {
		return fmt.Errorf("partition %d: dead-lettering offsets %d..%d: %w", c.in.Partition, lo, hi, err)
	}
	workflow.GetLogger(ctx).Warn("Records dead-lettered", "First", lo, "Last", hi, "Count", res.Count, "Where", res.Where)
	c.st.DeadLettered += int64(res.Count)
	connectorMetrics(ctx, KindKafka, c.cfg.Name).Counter(MetricDeadLettered).Inc(int64(res.Count))
	c.st.LastDeadLetter = res.Where
	next := hi + 1
	if len(c.ranges) > 0 {
		next = max(next, c.ranges[0].Until+1)
	}
	c.advance(ctx, next, true)
	return nil
}

// applyControls applies the connector's controls that arrived, in order;
// while paused it waits for more (or cancellation).
func (c *consumer) applyControls(ctx workflow.Context) error {
	for {
		var ctl PartitionControl
		if c.st.Paused {
			c.st.Phase = "paused"
			c.report(ctx, true)
			sel := workflow.NewSelector(ctx)
			sel.AddReceive(c.controls, func(ch workflow.ReceiveChannel, _ bool) { ch.Receive(ctx, &ctl) })
			sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) {})
			sel.Select(ctx)
			if ctx.Err() != nil {
				return temporal.NewCanceledError("partition consumer cancelled")
			}
		} else if !c.controls.ReceiveAsync(&ctl) {
			return nil
		}
		switch ctl.Op {
		case ControlPause:
			c.st.Paused = true
		case ControlResume:
			c.st.Paused = false
			c.st.Phase = "resuming"
			c.report(ctx, true)
		case ControlConfig:
			if ctl.Config != nil {
				c.cfg = *ctl.Config
			}
		case ControlReset:
			if ctl.Reset != nil {
				if err := c.reset(ctx, *ctl.Reset); err != nil {
					return err
				}
			}
		case ControlHandoff:
			// Between batches: nothing is in flight. The connector starts
			// the partition's stream engine consumer from this state.
			if err := workflow.SignalExternalWorkflow(ctx, KafkaWorkflowID(c.cfg.Name), "", SignalPartitionHandoff, c.next()).Get(ctx, nil); err != nil {
				return fmt.Errorf("partition %d: handing off to connector %s: %w", c.in.Partition, c.cfg.Name, err)
			}
			workflow.GetLogger(ctx).Info("Handed off to the stream engine", "Checkpoint", c.st.Checkpoint)
			return errHandedOff
		}
	}
}

// reset moves the checkpoint of a paused consumer and forgets the batch in
// progress.
func (c *consumer) reset(ctx workflow.Context, r ResetRequest) error {
	if !c.st.Paused {
		c.st.LastError = "reset ignored: the consumer was not paused"
		return nil
	}
	var to int64
	switch r.To {
	case StartOffsets:
		o, ok := r.Offsets[c.in.Partition]
		if !ok {
			c.st.LastReset = r.ID // not listed: its checkpoint stays
			return nil
		}
		to = o
	default:
		start := activities.StartInput{TopicRef: c.cfg.topicRef(), Partition: c.in.Partition, Start: r.To, StartTime: r.Time}
		if err := workflow.ExecuteActivity(shortOptions(ctx), c.k.ResolveStart, start).Get(ctx, &to); err != nil {
			return fmt.Errorf("partition %d: resolving reset position %s: %w", c.in.Partition, r.To, err)
		}
	}
	workflow.GetLogger(ctx).Info("Checkpoint reset", "From", c.st.Checkpoint, "To", to)
	c.ranges, c.st.Bisecting = nil, nil
	c.st.Checkpoint = to
	c.attempts, c.until, c.jobs = 0, -1, nil
	c.st.LastError = ""
	c.st.LastReset = r.ID
	c.commit(ctx)
	return nil
}

// report sends the status to the connector when it changed: at once when
// forced, else at most every reportEvery.
func (c *consumer) report(ctx workflow.Context, force bool) {
	c.dirty = true
	if c.legacy {
		return
	}
	now := workflow.Now(ctx)
	if !force && now.Sub(c.lastReport) < reportEvery {
		return
	}
	c.lastReport, c.dirty, c.reported = now, false, c.st.Phase
	c.st.Reported = now
	c.st.Lag = max(0, c.st.End-c.st.Checkpoint)
	workflow.SignalExternalWorkflow(ctx, KafkaWorkflowID(c.cfg.Name), "", SignalPartitionStatus, *c.st)
}
