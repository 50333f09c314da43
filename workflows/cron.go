package workflows

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
	"github.com/bacalhau-connect/bacalhau-connect/internal/inputgateway"
)

// CronInput starts a cron connector, or continues one (State set).
type CronInput struct {
	Config CronConfig
	State  *CronState `json:",omitempty"`
	// TicksPerRun bounds the ticks of one run before continue-as-new
	// (default 1000), besides the server's suggestion and an event bound.
	TicksPerRun int `json:",omitempty"`
}

// CronState is the connector's durable state, carried across continue-as-new.
type CronState struct {
	Cursor activities.Cursor
	Paused bool `json:",omitempty"`
	// LastScheduled is the schedule time of the last tick that ran.
	LastScheduled time.Time `json:",omitempty"`
	Counters      CronCounters
	LastBatch     *BatchRecord `json:",omitempty"`
	LastError     string       `json:",omitempty"`
	Backfills     int          `json:",omitempty"`
	// Triggered is a trigger received before continue-as-new, not yet run.
	Triggered bool `json:",omitempty"`
	// Rewound: the connector's history was reset with Temporal (temporal
	// workflow reset) in this run or an earlier one: the abandoned branch
	// may have submitted any tick's batches, so every batch looks its job
	// up before it submits.
	Rewound bool `json:",omitempty"`
}

// CronCounters count what the connector did.
type CronCounters struct {
	Ticks, Batches, Objects, DeadLettered, FailedTicks int64
}

// BatchRecord describes one batch.
type BatchRecord struct {
	ID       string
	FirstKey string
	LastKey  string
	Objects  int
	JobID    string `json:",omitempty"`
	Outcome  string // succeeded | dead-lettered | failed
}

// CronStatus answers QueryCronStatus.
type CronStatus struct {
	Name     string
	Schedule string
	Paused   bool
	Running  bool
	NextTick time.Time `json:",omitempty"`
	CronState
	DoneInWindow int
}

// BackfillRequest is the argument of UpdateBackfill.
type BackfillRequest struct {
	From, To time.Time
}

// Limits of one tick's work between continue-as-new checks.
const (
	scanBatches         = 20
	cronEventsBeforeCAN = 8000
	defaultTicksPerRun  = 1000
	// tickBatches cuts a tick that finds more work (100,000 objects in
	// batches of 100 are 1,000 batches), as does the server's suggestion
	// to continue as new (a history of large batches): the rest runs in
	// the next tick, at once, after the continue-as-new check, so no run's
	// history outgrows Temporal's limits.
	tickBatches = 500
)

// changeTickCut versions the cut of a tick at tickBatches: a run that was
// past that many batches in one tick replays without it.
const changeTickCut = "cron-tick-cut"

// Cron is a cron connector: on its schedule it scans an S3 prefix for
// objects it has not processed, cuts them into batches and runs one
// Bacalhau task per batch through RunTask, advancing its cursor only after
// a batch succeeded or was dead-lettered.
func Cron(ctx workflow.Context, in CronInput) error {
	cfg := in.Config
	if err := cfg.Validate(); err != nil {
		return temporal.NewNonRetryableApplicationError("invalid cron config: "+err.Error(), "InvalidConfig", nil)
	}
	st := in.State
	if st == nil {
		st = &CronState{Cursor: activities.Cursor{Key: cfg.Source.StartAfter}}
	}
	logger := workflow.GetLogger(ctx)
	ticksPerRun := in.TicksPerRun
	if ticksPerRun <= 0 {
		ticksPerRun = defaultTicksPerRun
	}
	ticksThisRun := 0
	st.Rewound = st.Rewound || rewoundRun(ctx)
	runner := &cronRunner{rewound: st.Rewound} // this run's batch runner
	running := false
	var nextTick time.Time

	if err := workflow.SetQueryHandler(ctx, QueryConfig, func() (CronConfig, error) { return cfg, nil }); err != nil {
		return err
	}
	if err := workflow.SetQueryHandler(ctx, QueryCronStatus, func() (CronStatus, error) {
		return CronStatus{Name: cfg.Name, Schedule: cfg.Schedule, Paused: st.Paused, Running: running,
			NextTick: nextTick, CronState: *st, DoneInWindow: len(st.Cursor.Done)}, nil
	}); err != nil {
		return err
	}
	wake := workflow.NewBufferedChannel(ctx, 1)
	poke := func() { wake.SendAsync(true) }
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateSpec,
		func(ctx workflow.Context, next CronConfig) (string, error) {
			cfg = next
			poke()
			return "updated", nil
		},
		workflow.UpdateHandlerOptions{Validator: func(next CronConfig) error {
			if next.Name != cfg.Name {
				return fmt.Errorf("name: %q cannot change to %q; apply a new connector instead", cfg.Name, next.Name)
			}
			if next.Source.Bucket != cfg.Source.Bucket || next.Source.Prefix != cfg.Source.Prefix {
				return errors.New("source.s3: bucket and prefix cannot change under a running cursor; delete and re-apply the connector")
			}
			return next.Validate()
		}},
	); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateBackfill,
		func(ctx workflow.Context, req BackfillRequest) (string, error) {
			st.Backfills++
			id := CronWorkflowID(cfg.Name) + "-backfill-" + strconv.Itoa(st.Backfills)
			cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
				WorkflowID:        id,
				ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_ABANDON,
			})
			f := workflow.ExecuteChildWorkflow(cctx, CronBackfill, CronBackfillInput{Config: cfg, Range: req, Seq: st.Backfills})
			if err := f.GetChildWorkflowExecution().Get(ctx, nil); err != nil {
				return "", fmt.Errorf("starting backfill %s: %w", id, err)
			}
			return id, nil
		},
		workflow.UpdateHandlerOptions{Validator: func(req BackfillRequest) error {
			if req.From.IsZero() || req.To.IsZero() || !req.From.Before(req.To) {
				return fmt.Errorf("backfill: --from (%s) must be before --to (%s)", req.From.Format(time.RFC3339), req.To.Format(time.RFC3339))
			}
			return nil
		}},
	); err != nil {
		return err
	}

	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateReset,
		func(ctx workflow.Context, r ResetRequest) (string, error) {
			st.Cursor = cronResetCursor(r, workflow.Now(ctx))
			st.LastError = ""
			return describeCronReset(r), nil
		},
		workflow.UpdateHandlerOptions{Validator: func(r ResetRequest) error {
			// A malformed position is refused whatever the state, so the
			// answer does not depend on whether a pause was seen yet.
			if err := validateCronReset(r, cfg.Source.Prefix); err != nil {
				return err
			}
			if !st.Paused {
				return errors.New("reset: the connector is not paused; pause it first (starter pause NAME), reset, then resume")
			}
			if running {
				return errors.New("reset: a tick is still running; wait for it to finish (starter describe NAME) and try again")
			}
			return nil
		}},
	); err != nil {
		return err
	}

	pauseCh := workflow.GetSignalChannel(ctx, SignalPause)
	resumeCh := workflow.GetSignalChannel(ctx, SignalResume)
	triggerCh := workflow.GetSignalChannel(ctx, SignalTrigger)
	triggered := st.Triggered
	drain := func() {
		for pauseCh.ReceiveAsync(nil) {
			st.Paused = true
		}
		for resumeCh.ReceiveAsync(nil) {
			st.Paused = false
		}
		for triggerCh.ReceiveAsync(nil) {
			triggered = true
		}
	}

	// After downtime: run a missed tick at once if it is inside the catch-up window.
	catchUp := false
	if sched, err := ParseSchedule(cfg.Schedule, cfg.Timezone); err == nil && !st.LastScheduled.IsZero() {
		missed := sched.Next(st.LastScheduled)
		now := workflow.Now(ctx)
		catchUp = missed.Before(now) && now.Sub(missed) <= cfg.CatchupWindow
	}

	for {
		syncConnectorState(ctx, st.Paused)
		sched, err := ParseSchedule(cfg.Schedule, cfg.Timezone)
		if err != nil {
			return temporal.NewNonRetryableApplicationError("schedule: "+err.Error(), "InvalidConfig", nil)
		}
		now := workflow.Now(ctx)
		nextTick = sched.Next(now)
		scheduled := nextTick
		fire := false
		switch {
		case triggered:
			triggered, fire, scheduled = false, true, now
		case catchUp && !st.Paused:
			catchUp, fire, scheduled = false, true, sched.Next(st.LastScheduled)
		default:
			catchUp = false
			timerCtx, cancelTimer := workflow.WithCancel(ctx)
			sel := workflow.NewSelector(ctx)
			if !st.Paused {
				sel.AddFuture(workflow.NewTimer(timerCtx, nextTick.Sub(now)), func(workflow.Future) { fire = true })
			}
			sel.AddReceive(pauseCh, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); st.Paused = true })
			sel.AddReceive(resumeCh, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); st.Paused = false })
			sel.AddReceive(triggerCh, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); triggered = true })
			sel.AddReceive(wake, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil) })
			sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) {})
			sel.Select(ctx)
			cancelTimer()
			if ctx.Err() != nil {
				return temporal.NewCanceledError("cron connector deleted")
			}
		}
		if !fire {
			continue
		}

		running = true
		st.LastScheduled = scheduled
		st.Counters.Ticks++
		ticksThisRun++
		cut, tickErr := runTick(ctx, cfg, runner, st)
		running = false
		if ctx.Err() != nil {
			return temporal.NewCanceledError("cron connector deleted")
		}
		if tickErr != nil {
			st.Counters.FailedTicks++
			st.LastError = tickErr.Error()
			logger.Warn("Tick stopped; the cursor stays at the failed batch", "Error", tickErr)
		}
		drain()
		if cut && tickErr == nil && !st.Paused {
			triggered = true // the rest of the cut tick's work, at once
		}
		// Overlap: ticks that came due while this one ran.
		if missed := sched.Next(scheduled); cfg.Overlap == OverlapBufferOne && !st.Paused && !missed.After(workflow.Now(ctx)) {
			triggered = true
		}

		info := workflow.GetInfo(ctx)
		if info.GetContinueAsNewSuggested() || info.GetCurrentHistoryLength() > cronEventsBeforeCAN || ticksThisRun >= ticksPerRun {
			st.Triggered = triggered
			return workflow.NewContinueAsNewError(ctx, Cron, CronInput{Config: cfg, State: st, TicksPerRun: in.TicksPerRun})
		}
	}
}

// runTick scans and runs batches until nothing is left to process, up to
// cfg.Concurrency batches at once. Outcomes are committed in key order: the
// cursor's key only moves over a run of finished batches, so a failure stops
// it at the failed batch while the batches after it that succeeded are kept
// in Done and not run again. After tickBatches batches it stops with cut
// set, leaving the rest to the next tick.
func runTick(ctx workflow.Context, cfg CronConfig, r *cronRunner, st *CronState) (cut bool, err error) {
	var s3 *activities.S3
	sctx := scanOptions(ctx)
	round := "t" + strconv.FormatInt(st.Counters.Ticks, 10)
	batches := 0
	for {
		var scan activities.ScanResult
		err := workflow.ExecuteActivity(sctx, s3.Scan, activities.ScanInput{
			Bucket: cfg.Source.Bucket, Prefix: cfg.Source.Prefix, Endpoint: cfg.Source.Endpoint, Region: cfg.Source.Region,
			Cursor: st.Cursor, StartTime: cfg.Source.StartTime, Lookback: cfg.Source.Lookback,
			MaxObjects: cfg.MaxObjects, MaxBytes: cfg.MaxBytes, MaxBatches: scanBatches, MaxFolderEntries: cfg.MaxFolderEntries,
		}).Get(ctx, &scan)
		if err != nil {
			return false, fmt.Errorf("scanning s3://%s/%s: %w", cfg.Source.Bucket, cfg.Source.Prefix, err)
		}
		var stopErr error
		m := connectorMetrics(ctx, KindCron, cfg.Name)
		commit := func(batch []activities.Object, rec *BatchRecord, err error) {
			st.LastBatch = rec
			switch {
			case err != nil:
				batchDone(m, false, 0, 0)
				if stopErr == nil {
					stopErr = err
				}
				return
			case stopErr == nil:
				st.Cursor = st.Cursor.Advance(batch, cfg.Source.Lookback)
				st.LastError = ""
			default:
				st.Cursor = st.Cursor.MarkDone(batch, cfg.Source.Lookback)
			}
			st.Counters.Batches++
			st.Counters.Objects += int64(len(batch))
			if rec.Outcome == "dead-lettered" {
				st.Counters.DeadLettered++
				m.Counter(MetricDeadLettered).Inc(int64(len(batch)))
			} else {
				batchDone(m, true, len(batch), 0)
			}
		}
		runBatches(ctx, cfg, r, scan.Batches, round, commit, func() bool { return stopErr != nil })
		if stopErr != nil {
			return false, stopErr
		}
		if !scan.More {
			return false, nil
		}
		batches += len(scan.Batches)
		if (batches >= tickBatches || workflow.GetInfo(ctx).GetContinueAsNewSuggested()) &&
			workflow.GetVersion(ctx, changeTickCut, workflow.DefaultVersion, 1) == 1 {
			return true, nil
		}
	}
}

// runBatches runs batches, at most cfg.Concurrency at once, and hands each
// outcome to commit in batch order. Once stop reports true, no new batch
// starts; those running finish and are committed.
func runBatches(ctx workflow.Context, cfg CronConfig, r *cronRunner, batches [][]activities.Object, round string,
	commit func([]activities.Object, *BatchRecord, error), stop func() bool) {
	type outcome struct {
		rec *BatchRecord
		err error
	}
	conc := max(1, cfg.Concurrency)
	results := make([]*outcome, len(batches))
	next, committed, running := 0, 0, 0
	sel := workflow.NewSelector(ctx)
	launch := func(i int) {
		f, set := workflow.NewFuture(ctx)
		workflow.Go(ctx, func(ctx workflow.Context) {
			rec, err := runBatch(ctx, cfg, r, batches[i], round)
			set.Set(&outcome{rec: rec, err: err}, nil)
		})
		running++
		sel.AddFuture(f, func(f workflow.Future) {
			var o *outcome
			_ = f.Get(ctx, &o)
			results[i] = o
			running--
		})
	}
	for {
		for next < len(batches) && running < conc && !stop() {
			launch(next)
			next++
		}
		if running == 0 {
			if r.on {
				r.releaseAll(ctx) // the tick's batches are done
			}
			return
		}
		sel.Select(ctx)
		for committed < next && results[committed] != nil {
			commit(batches[committed], results[committed].rec, results[committed].err)
			committed++
		}
	}
}

// batchID names a batch by its source range and the tick (or backfill)
// that cut it: deterministic on replay, new when a later tick retries it.
func batchID(cfg CronConfig, batch []activities.Object, round string) string {
	sum := sha256.Sum256([]byte("s3://" + cfg.Source.Bucket + "/" + batch[0].Key + "\x00" + batch[len(batch)-1].Key +
		"\x00" + round + "\x00" + strconv.Itoa(len(batch))))
	return round + "-" + hex.EncodeToString(sum[:])[:16]
}

// runBatch runs one batch as a RunTask child. A batch that fails every
// attempt is dead-lettered when the spec has a dead letter destination;
// otherwise its error stops the tick.
func runBatch(ctx workflow.Context, cfg CronConfig, r *cronRunner, batch []activities.Object, round string) (*BatchRecord, error) {
	id := batchID(cfg, batch, round)
	rec := &BatchRecord{ID: id, FirstKey: batch[0].Key, LastKey: batch[len(batch)-1].Key, Objects: len(batch)}
	objs := make([]activities.ObjectInput, len(batch))
	for i, o := range batch {
		objs[i] = activities.ObjectInput{Target: "/inputs/" + o.Key,
			Object: inputRef(cfg.Source, o.Key)}
	}
	var jobID string
	var failedJobs []string
	var err error
	if r.enabled(ctx) {
		jobID, failedJobs, err = r.runAttempts(ctx, cfg, id, objs)
	} else {
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
			WorkflowID: CronWorkflowID(cfg.Name) + "-" + id,
		})
		var res RunTaskResult
		// Once per run (GetVersion remembers), not per RunTask child.
		askBySignal := workflow.GetVersion(ctx, changeLeaseBySignal, workflow.DefaultVersion, 1) == 1
		err = workflow.ExecuteChildWorkflow(cctx, RunTask, RunTaskInput{
			Budget:    BudgetRef{AskBySignal: askBySignal},
			Connector: cfg.Name, BatchID: id, Template: cfg.Template, Objects: objs,
			Delivery: cfg.Delivery, URLTTL: cfg.URLTTL,
			QueueTimeout: cfg.QueueTimeout, ExecutionTimeout: cfg.ExecutionTimeout,
			Retry:  cfg.Retry,
			Labels: map[string]string{"connect-kind": KindCron},
		}).Get(ctx, &res)
		jobID, failedJobs = res.JobID, failedJobIDs(err)
	}
	if err == nil {
		rec.JobID, rec.Outcome = jobID, "succeeded"
		return rec, nil
	}
	if ctx.Err() != nil || cfg.DeadLetter == nil {
		rec.Outcome = "failed"
		return rec, fmt.Errorf("batch %s (%s … %s): %w", id, rec.FirstKey, rec.LastKey, err)
	}
	if !causedByInput(err) && workflow.GetVersion(ctx, changeCronDeadLetterInputOnly, workflow.DefaultVersion, 1) == 1 {
		// Not the objects' fault (their store was down, no node took the
		// job): the tick stops at this batch and the next tick runs it.
		rec.Outcome = "failed"
		return rec, fmt.Errorf("batch %s (%s … %s) failed for a reason its objects cannot cause; the next tick runs it again: %w", id, rec.FirstKey, rec.LastKey, err)
	}
	dl := cfg.DeadLetter
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: time.Minute},
	})
	var s3 *activities.S3
	if derr := workflow.ExecuteActivity(actx, s3.WriteDeadLetter, activities.DeadLetterInput{
		Bucket: dl.Bucket, Prefix: dl.Prefix, Endpoint: dl.Endpoint, Region: dl.Region,
		Connector: cfg.Name, BatchID: id, Source: "s3://" + cfg.Source.Bucket + "/" + cfg.Source.Prefix,
		// The error names jobs and exit codes, never task output; the
		// activity adds the failed job's stderr tail to the manifest.
		Objects: batch, Error: err.Error(), JobIDs: failedJobs,
	}).Get(ctx, nil); derr != nil {
		rec.Outcome = "failed"
		return rec, fmt.Errorf("batch %s failed (%v) and could not be dead-lettered: %w", id, err, derr)
	}
	rec.Outcome = "dead-lettered"
	workflow.GetLogger(ctx).Warn("Batch dead-lettered", "Batch", id, "Error", err)
	return rec, nil
}

// changeCronDeadLetterInputOnly: a batch is dead-lettered only when its
// failure comes from its objects (causedByInput); before it, any batch that
// failed every attempt was.
const changeCronDeadLetterInputOnly = "cron-dead-letter-input-only"

// causedByInput tells whether a failed batch's error (or one it wraps)
// says the task failed on its input or could not be built from it: only
// such batches are dead-lettered. An input the node could not fetch
// (activities.ErrTypeInputUnavailable), no capacity or a stopped job are
// not the records' fault.
func causedByInput(err error) bool {
	for err != nil {
		var appErr *temporal.ApplicationError
		if !errors.As(err, &appErr) {
			return false
		}
		switch appErr.Type() {
		case activities.ErrTypeTaskFailed, activities.ErrTypeInvalidTask:
			return true
		}
		err = appErr.Unwrap()
	}
	return false
}

func inputRef(src S3Source, key string) inputgateway.ObjectRef {
	return inputgateway.ObjectRef{Bucket: src.Bucket, Key: key, Endpoint: src.Endpoint, Region: src.Region}
}

// validateCronReset checks a reset of an S3 cursor: earliest, latest, a
// time, or a start-after key under the connector's prefix.
func validateCronReset(r ResetRequest, prefix string) error {
	switch r.To {
	case StartEarliest, StartLatest, StartTimestamp:
		return r.Validate()
	case StartKey:
		if r.Key == "" || !strings.HasPrefix(r.Key, prefix) {
			return fmt.Errorf("reset: key %q is not under the connector's prefix %q; use --to key=%sNAME", r.Key, prefix, prefix)
		}
	default:
		return fmt.Errorf("reset: %q is not a position of an S3 cursor: use earliest, latest, an RFC 3339 time or key=KEY", r.To)
	}
	return nil
}

// cronResetCursor is the cursor a reset moves to: earliest forgets what
// was processed, latest skips what was last modified before now, a time
// reprocesses what was last modified at or after it, a key processes the
// keys after it. The spec's start_time still applies.
func cronResetCursor(r ResetRequest, now time.Time) activities.Cursor {
	switch r.To {
	case StartLatest:
		return activities.Cursor{NotBefore: now}
	case StartTimestamp:
		return activities.Cursor{NotBefore: r.Time}
	case StartKey:
		return activities.Cursor{Key: r.Key}
	}
	return activities.Cursor{}
}

func describeCronReset(r ResetRequest) string {
	switch r.To {
	case StartTimestamp:
		return "objects last modified at or after " + r.Time.UTC().Format(time.RFC3339)
	case StartKey:
		return "keys after " + r.Key
	case StartLatest:
		return "objects last modified from now on"
	}
	return "every object under the prefix"
}
