package workflows

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
)

// The stream engine: one consumer loop for every stream source (a Kafka
// partition, a Kinesis shard). What differs between sources is behind
// streamSource; the invariants of DESIGN.md (checkpoint only after
// success, batch identity from positions, idempotent submit, no records in
// history) and the retry/bisect/dead-letter decision live here once.
//
// A batch is one activity (RunBatch: read, submit, await), so a batch in
// steady state costs a lease round trip and that activity; the wait for
// records is skipped while a backlog lasts, the group commit rides on the
// next batch or wait, and status goes to the connector when the phase
// changes (throttled to one report per streamReportBusy otherwise).

// StreamRange is a part of a unit's records still to run: the records read
// from From up to the record Until (inclusive). Split marks a part cut by
// bisection: it gets one attempt while it holds several records.
//
// Done marks a range whose batch already passed while an earlier one was
// still in flight (several batches in flight): the checkpoint moves past
// it without running it again.
//
// ID, when set, is the range's batch identity instead of its offsets': a
// batch read open whose job is awaited apart keeps the identity it was
// submitted under.
type StreamRange[P, S any] struct {
	From  P
	Until S
	Split bool   `json:",omitempty"`
	Done  bool   `json:",omitempty"`
	ID    string `json:",omitempty"`
}

// StreamState is what a stream consumer carries across continue-as-new
// (and what a consumer moved from the older workflow types starts from).
type StreamState[P, S any] struct {
	// Checkpoint is where the next batch reads from.
	Checkpoint P
	// Ranges are the parts of a failed batch still to run, in order, left
	// by bisection, a retried batch or batches in flight together (those
	// that passed are Done); the first is the current one.
	Ranges []StreamRange[P, S] `json:",omitempty"`
	// Attempts of the current range so far.
	Attempts                                int   `json:",omitempty"`
	Batches, Records, Skipped, DeadLettered int64 `json:",omitempty"`
	Paused                                  bool  `json:",omitempty"`
	// Backlog: the last batch left records behind it; the next batch runs
	// without waiting for records first.
	Backlog bool `json:",omitempty"`
	// Epoch is set when the connector starts the consumer (not when it
	// moves one from the older types): its batches' identities differ from
	// those of an earlier consumer of the same name. Generation counts the
	// resets (starter reset) that moved the checkpoint since: batches after
	// one get identities of their own too. Records read again run again.
	Epoch      string `json:",omitempty"`
	Generation int    `json:",omitempty"`
	// Indexed: the batches of this epoch and generation run their jobs in
	// namespaces of their own (activities.StreamJob.Indexed). Set when a
	// connector starts the consumer or a reset moves it, so every identity
	// of an epoch and generation is indexed or none is.
	Indexed bool `json:",omitempty"`
	// Rewound: the consumer's history was reset with Temporal (temporal
	// workflow reset) in this run or an earlier one: the abandoned branch
	// may have submitted jobs under any identity, so every batch looks its
	// identity up before it submits.
	Rewound bool `json:",omitempty"`
}

// streamProgress is the engine's part of a consumer's status; a source
// adds its own (end offset, millis behind) and shapes it as its status
// type.
type streamProgress struct {
	Phase                              string
	LastJob, LastError, LastDeadLetter string
	LastReset                          string
	Finished                           bool
	Reported                           time.Time
	// Seq numbers the reports of this run (two may share a time).
	Seq int64
}

// StreamWake is the payload of SignalStreamWake: the checkpoint (as the
// source writes it) the consumer was idle at when its records arrived; a
// wake for another checkpoint is stale and ignored.
type StreamWake struct {
	Checkpoint string
}

// streamControl is what a connector tells its stream consumers; it has
// the JSON shape of PartitionControl and ShardControl.
type streamControl[C any] struct {
	Op     string
	Reset  *ResetRequest `json:",omitempty"`
	Config *C            `json:",omitempty"`
}

// streamRead is the batch the engine asks a source to run.
type streamRead[P, S any] struct {
	From P
	// Until bounds the read (a range); nil reads an open batch.
	Until *S
	// BatchID is the range's identity ("" for an open batch: the source
	// derives it from From).
	BatchID string
	Attempt int
	// Checkpoint is the consumer's checkpoint when the batch starts (From,
	// unless batches run ahead of it): what the source may mirror.
	Checkpoint P
	// WaitSince is when the previous batch's read closed, when no record
	// read now can be older: the batch fills until WaitSince + max_wait
	// (zero: for max_wait from the read's start).
	WaitSince time.Time
	// MayLeave: the batch (an open one, or a range reaching the end last
	// seen) may return Awaiting, its job still running, when records behind
	// it are due (sources that cannot, ignore it).
	MayLeave bool
	// Epoch is the batch identity's epoch (StreamJob.Epoch).
	Epoch string
	// Unseen: the records were never dispatched under this identity; the
	// activity's first attempt need not look it up (StreamJob.Unseen).
	Unseen bool
	// Indexed: the identity's job runs in a namespace of its own
	// (StreamJob.Indexed).
	Indexed bool
}

// job adds the read's epoch, unseen and indexed marks to how its batch runs.
func (r streamRead[P, S]) job(j activities.StreamJob) activities.StreamJob {
	j.Epoch, j.Unseen, j.Indexed = r.Epoch, r.Unseen, r.Indexed
	return j
}

// streamBatch is what a source's batch activity did, in the engine's
// terms: positions of the first, middle and last record, never records.
type streamBatch[S any] struct {
	JobID            string
	First, Mid, Last S
	Count            int
	Skipped          int64
	// RangeDone: a bounded read covered its whole range; End: the unit is
	// closed and read to its end (Kinesis).
	RangeDone, End bool
	// Backlog: records were waiting past this batch.
	Backlog   bool
	FirstTime time.Time
	Rejected  string
	// Failure is the job's verdict when its task failed.
	Failure *activities.BatchFailure
	// BatchID is the identity the job runs under; ReadClosed when the
	// read closed (zero when an earlier attempt's job was found).
	BatchID    string
	ReadClosed time.Time
	// Awaiting: the job still runs, records behind the batch are due; the
	// engine awaits it as a batch in flight and runs the next beside it.
	Awaiting bool
	// Unseen: no job existed under the batch's identity.
	Unseen bool
}

// streamSettings are the config fields the engine reads.
type streamSettings struct {
	Name string
	// MaxInFlight bounds the batches of the unit in flight at once (0: 1).
	MaxInFlight int
	StreamBatching
	TaskConfig
	HasDeadLetter bool
}

// streamSource is one unit (partition, shard) of a stream source family:
// the activities and position arithmetic the engine runs it with. C is
// the connector's config, P a read position, S a record's position.
type streamSource[C, P, S any] interface {
	// kind names the source in metrics ("kafka", "kinesis"); unit names
	// the partition or shard in messages.
	kind() string
	unit() string
	settings() streamSettings
	setConfig(C)
	// controlSignal is the signal its connector sends controls on.
	controlSignal() string
	// watched: when idle, the consumer waits for its connector's wake
	// signal (SignalStreamWake) instead of running a wait activity.
	watched() bool
	// begin resolves the starting position when the state has none.
	begin(ctx workflow.Context, st *StreamState[P, S]) error
	// wait long-polls for records after from (the future's value is read
	// by waited): has records, or the unit is closed and fully read.
	wait(ctx workflow.Context, from P) workflow.Future
	waited(ctx workflow.Context, f workflow.Future) (has, end bool, err error)
	// start runs one batch (read, submit, await) as one activity; ran
	// reads its outcome.
	start(ctx workflow.Context, r streamRead[P, S]) workflow.Future
	ran(ctx workflow.Context, f workflow.Future) (streamBatch[S], error)
	// cut bounds a batch read ahead, from `from`: the last record position
	// it may hold (at most n records), when records are known to be there;
	// ok false when the source cannot cut batches ahead (one in flight).
	cut(from P, n int) (until S, ok bool)
	// after is the read position that follows the record s; less orders
	// records; label writes a position for IDs and logs; rangeID is a
	// range's batch identity.
	after(s S) P
	less(a, b S) bool
	label(p P) string
	rangeID(r StreamRange[P, S]) string
	// mid is the record that ends the first half of a failed batch.
	mid(b streamBatch[S]) S
	// deadLetter sends the records read from `from` up to last to the
	// dead letter.
	deadLetter(ctx workflow.Context, from P, last S, errText string, jobs []string) (activities.DeadLettered, error)
	// reset moves the checkpoint of a paused consumer (moved), leaves it
	// where it is (the reset does not name this unit), or says why it
	// refused.
	reset(ctx workflow.Context, r ResetRequest, st *StreamState[P, S]) (moved bool, refused string, err error)
	// paused is called when the consumer pauses (Kafka mirrors its
	// checkpoint to the group).
	paused(ctx workflow.Context, st *StreamState[P, S])
	// observe updates the unit's gauges (lag, millis behind) after a batch.
	observe(m client.MetricsHandler, st *StreamState[P, S])
	// status is the consumer's status as its connector and the CLI read it.
	status(st *StreamState[P, S], p streamProgress) any
	// report sends a status to the connector.
	report(ctx workflow.Context, status any) workflow.Future
	// continueAsNew continues the consumer with its state.
	continueAsNew(ctx workflow.Context, st StreamState[P, S]) error
}

// streamBatchesPerRun bounds one run's history before continue-as-new.
const streamBatchesPerRun = 100

// streamReportBusy throttles the reports of a busy consumer: its phase
// changes are reported at once, its progress at most this often (the
// status query of the consumer itself is always current).
const streamReportBusy = 30 * time.Second

// streamWaitTimeout is how long one wait for records long-polls.
const streamWaitTimeout = time.Minute

// streamWakePrompt: a consumer woken this soon after it went idle was
// woken for records that were there already (the watcher saw them on its
// first polls), so they may have waited since the last read closed.
const streamWakePrompt = time.Second

// streamLeaseTurn bounds how long a consumer keeps a lease across the
// batches of a backlog before it gives it back and asks again.
const streamLeaseTurn = 5 * time.Minute

// streamEngine is one run of a stream consumer.
type streamEngine[C, P, S any] struct {
	src      streamSource[C, P, S]
	st       StreamState[P, S]
	pr       streamProgress
	controls workflow.ReceiveChannel
	jobs     []string
	// leases is the budget's client; lease the lease held across batches
	// ("" none) since leaseSince, for at most turn; recalls are the
	// budget's requests to give it back.
	leases     *leaseClient
	lease      string
	leaseSince time.Time
	turn       time.Duration
	recalls    workflow.ReceiveChannel
	// wakes are the connector's wake signals (watched consumers).
	wakes workflow.ReceiveChannel
	// lastReport and reported (its phase); dirty: changed since.
	lastReport time.Time
	reported   string
	dirty      bool
	// lastClose is when the last batch's read closed (zero: unknown).
	lastClose time.Time
	// unseen: a batch of new records (an open batch, or a range cut ahead)
	// found no job under its identity in this run. Every dispatch before
	// it, in this run or before (a moved connector, an earlier run's
	// flights, which the state carries), started at or before it, so the
	// batches of new records after it are unseen: they skip the lookup.
	unseen bool
}

// runStream runs a stream consumer until it continues as new, finishes
// (a closed unit read to its end) or is cancelled.
func runStream[C, P, S any](ctx workflow.Context, src streamSource[C, P, S], st StreamState[P, S]) error {
	e := &streamEngine[C, P, S]{src: src, st: st, pr: streamProgress{Phase: "starting"}, dirty: true}
	e.st.Ranges = append([]StreamRange[P, S](nil), st.Ranges...)
	if err := workflow.SetQueryHandler(ctx, QueryPartitionStatus, func() (any, error) { return src.status(&e.st, e.pr), nil }); err != nil {
		return err
	}
	e.controls = workflow.GetSignalChannel(ctx, src.controlSignal())
	e.wakes = workflow.GetSignalChannel(ctx, SignalStreamWake)
	if rewoundRun(ctx) {
		e.st.Rewound = true
	}
	if err := src.begin(ctx, &e.st); err != nil {
		return err
	}
	return e.run(ctx)
}

func (e *streamEngine[C, P, S]) run(ctx workflow.Context) error {
	// A new workflow type: leases are asked for by signal, no version gate,
	// and kept across the batches of a backlog.
	e.leases = newLeaseClient(ctx, BudgetRef{AskBySignal: true})
	e.leases.byInput, e.leases.keeps = true, true
	e.recalls = workflow.GetSignalChannel(ctx, SignalLeaseRecall)
	defer e.returnLease(ctx)
	for run := 0; run < streamBatchesPerRun && !workflow.GetInfo(ctx).GetContinueAsNewSuggested(); {
		if e.controls.Len() > 0 {
			e.returnLease(ctx) // controls apply between batches, with no lease held
		}
		if err := e.applyControls(ctx); err != nil {
			return err
		}
		if len(e.st.Ranges) > 0 && e.st.Ranges[0].Done {
			// Passed while an earlier batch was in flight.
			e.advance(ctx, e.src.after(e.st.Ranges[0].Until), true)
			continue
		}
		cfg := e.src.settings()
		if len(e.st.Ranges) == 0 && e.st.Backlog && cfg.MaxInFlight > 1 {
			if _, ok := e.src.cut(e.st.Checkpoint, cfg.MaxRecords); ok {
				n, err := e.flights(ctx, streamBatchesPerRun-run, nil)
				if err != nil {
					return err
				}
				run += n
				continue
			}
		}
		read := streamRead[P, S]{From: e.st.Checkpoint, Checkpoint: e.st.Checkpoint, Attempt: e.st.Attempts + 1, Epoch: e.st.epoch(),
			Indexed: e.st.Indexed}
		// overdue: records may have waited since the last read closed (no
		// idle wait, or a wake that came at once or within max_wait).
		overdue := true
		if len(e.st.Ranges) > 0 {
			r := e.st.Ranges[0]
			read.From, read.Checkpoint, read.Until, read.BatchID = r.From, r.From, &r.Until, e.src.rangeID(r)
			if r.ID != "" {
				read.BatchID = r.ID
			}
		} else if !e.st.Backlog {
			idleSince := workflow.Now(ctx)
			e.returnLease(ctx)
			e.pr.Phase = "idle"
			if e.dirty || e.reported != "idle" || e.src.watched() {
				// Caught up: the connector sees the final state (and, when
				// it watches for this consumer, where it waits).
				e.report(ctx, true)
			}
			has, end, interrupted, err := e.wait(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return temporal.NewCanceledError("stream consumer cancelled")
				}
				return fmt.Errorf("%s: waiting for records: %w", e.src.unit(), err)
			}
			if interrupted {
				continue // a control arrived: apply it now
			}
			if end {
				return e.finish(ctx)
			}
			if !has {
				run++ // idle rounds count too: history stays bounded
				continue
			}
			now := workflow.Now(ctx)
			overdue = now.Sub(idleSince) <= streamWakePrompt || now.Sub(e.lastClose) < cfg.MaxWait
		}
		// Records after the last read's close may have waited since then:
		// the open batch fills only until that close + max_wait. After a
		// real idle spell the records are new: it fills for max_wait.
		if read.Until == nil && !e.lastClose.IsZero() && overdue {
			read.WaitSince = e.lastClose
		}
		read.MayLeave = read.Until == nil
		read.Unseen = read.Until == nil && e.newUnseen()
		if err := e.takeLease(ctx, read); err != nil {
			return err
		}
		e.pr.Phase = "running"
		started := workflow.Now(ctx)
		b, err := e.src.ran(ctx, e.src.start(ctx, read))
		task := workflow.Now(ctx).Sub(started)
		if ctx.Err() != nil {
			return temporal.NewCanceledError("stream consumer cancelled")
		}
		if err != nil {
			e.pr.LastError = err.Error()
			return fmt.Errorf("%s after %s: %w", e.src.unit(), e.src.label(read.From), err)
		}
		if b.ReadClosed.After(e.lastClose) {
			e.lastClose = b.ReadClosed
		}
		if read.Until == nil && b.Unseen {
			e.unseen = true
		}
		if b.Awaiting {
			// Records behind the batch are due while its job runs: the job
			// is awaited as a batch in flight under its identity, the next
			// batches run beside it.
			n, err := e.flights(ctx, streamBatchesPerRun-run, &adoptedFlight[P, S]{
				r: StreamRange[P, S]{From: read.From, Until: b.Last, ID: b.BatchID}, attempt: read.Attempt, started: started})
			if err != nil {
				return err
			}
			run += n
			continue
		}
		e.st.Backlog = b.Count > 0 && b.Backlog
		// The lease goes on to the next batch only while a backlog lasts,
		// the batch passed, the budget did not recall it and the turn is
		// not over.
		if !e.st.Backlog || b.Rejected != "" || b.Failure != nil || e.recalled() || workflow.Now(ctx).Sub(e.leaseSince) >= e.turn {
			e.returnLease(ctx)
		}
		m := connectorMetrics(ctx, e.src.kind(), cfg.Name)
		if b.Count == 0 {
			if len(e.st.Ranges) > 0 && b.RangeDone {
				// Nothing is left in the range: it is done.
				e.advance(ctx, e.src.after(e.st.Ranges[0].Until), true)
			} else if len(e.st.Ranges) == 0 && b.End {
				return e.finish(ctx)
			}
			e.src.observe(m, &e.st)
			continue
		}
		if len(e.st.Ranges) == 0 {
			// A retry re-reads exactly these records.
			e.st.Ranges = []StreamRange[P, S]{{From: read.From, Until: b.Last}}
		}
		e.pr.LastJob = b.JobID
		var failure error
		switch {
		case b.Rejected != "":
			failure = temporal.NewNonRetryableApplicationError(b.Rejected, activities.ErrTypeInvalidTask, nil)
		case b.Failure != nil:
			failure = b.Failure.Error()
		}
		batchDone(m, failure == nil, b.Count, task)
		if failure != nil {
			if err := e.failed(ctx, b, read.From, failure); err != nil {
				return err
			}
			continue
		}
		cur := e.st.Ranges[0]
		done := b.RangeDone || !e.src.less(b.Last, cur.Until)
		next := e.src.after(b.Last)
		if done {
			next = e.src.after(cur.Until)
		} else {
			// The read stopped short of the range's end: the rest stays to run.
			e.st.Ranges[0].From, e.st.Ranges[0].ID = next, ""
		}
		e.st.Batches++
		e.st.Records += int64(b.Count)
		e.st.Skipped += b.Skipped
		e.pr.LastError = ""
		run++
		if done {
			e.advance(ctx, next, true)
		} else {
			e.report(ctx, false)
		}
		e.src.observe(m, &e.st)
	}
	e.returnLease(ctx)
	return e.src.continueAsNew(ctx, e.st)
}

// consumerEpoch is the epoch of a consumer a connector run starts: a
// digest of the connector run's original ID (which a Temporal reset of the
// run keeps), so a connector deleted and applied again starts consumers
// whose batches are new.
func consumerEpoch(ctx workflow.Context) string {
	info := workflow.GetInfo(ctx)
	id := info.OriginalRunID
	if id == "" {
		id = info.WorkflowExecution.RunID
	}
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:6])
}

// rewoundRun tells whether this run was made by a Temporal reset (it keeps
// its original run's ID; continue-as-new starts a new one).
func rewoundRun(ctx workflow.Context) bool {
	info := workflow.GetInfo(ctx)
	return info.OriginalRunID != "" && info.OriginalRunID != info.WorkflowExecution.RunID
}

// indexedJobs tells whether a consumer a connector starts now runs its
// jobs in namespaces of their own (StreamState.Indexed): connectors from
// before replay without it.
func indexedJobs(ctx workflow.Context) bool {
	return workflow.GetVersion(ctx, changeIndexedJobs, workflow.DefaultVersion, 1) == 1
}

// changeIndexedJobs: consumers a connector starts run their jobs in
// namespaces of their own.
const changeIndexedJobs = "indexed-jobs"

// epoch is the batch identities' epoch: the consumer's, and its resets.
func (st *StreamState[P, S]) epoch() string {
	if st.Generation == 0 {
		return st.Epoch
	}
	return st.Epoch + "r" + strconv.Itoa(st.Generation)
}

// newUnseen tells whether a batch of new records may skip looking its
// identity up (streamEngine.unseen), unless the history was rewound.
func (e *streamEngine[C, P, S]) newUnseen() bool {
	return e.unseen && !e.st.Rewound
}

// takeLease makes sure a lease is held for the batch: the one kept from
// the last batch, or a new one from the budget.
func (e *streamEngine[C, P, S]) takeLease(ctx workflow.Context, read streamRead[P, S]) error {
	if e.lease != "" {
		return nil
	}
	ttl := e.leaseTTL()
	id := workflow.GetInfo(ctx).WorkflowExecution.ID + "@" + e.src.label(read.From) + "#" + fmt.Sprint(read.Attempt)
	e.pr.Phase = "waiting-for-lease"
	if err := e.leases.acquire(ctx, id, ttl); err != nil {
		return err
	}
	// A turn ends well before the budget would take the lease back.
	e.lease, e.leaseSince, e.turn = id, workflow.Now(ctx), min(ttl/2, streamLeaseTurn)
	return nil
}

// leaseTTL is how long a batch's lease lives at the budget.
func (e *streamEngine[C, P, S]) leaseTTL() time.Duration {
	cfg := e.src.settings()
	return cfg.MaxWait + leaseTTL(RunTaskInput{QueueTimeout: cfg.QueueTimeout, ExecutionTimeout: cfg.ExecutionTimeout})
}

// recalled tells whether the budget asked for the held lease back.
func (e *streamEngine[C, P, S]) recalled() bool {
	back := false
	var r LeaseRecall
	for e.recalls.ReceiveAsync(&r) {
		back = back || r.LeaseID == e.lease
	}
	return back
}

// returnLease gives the held lease back, if any (also when ctx is
// cancelled).
func (e *streamEngine[C, P, S]) returnLease(ctx workflow.Context) {
	if e.lease == "" {
		return
	}
	e.leases.release(ctx, e.lease)
	e.lease = ""
}

// wait long-polls for records after the checkpoint; a control from the
// connector interrupts the wait so it applies at once (it is left in the
// channel for applyControls).
func (e *streamEngine[C, P, S]) wait(ctx workflow.Context) (has, end, interrupted bool, err error) {
	if e.src.watched() {
		return e.waitForWake(ctx)
	}
	wctx, cancel := workflow.WithCancel(workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: streamWaitTimeout + 30*time.Second,
		HeartbeatTimeout:    awaitHeartbeat,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second},
	}))
	defer cancel()
	f := e.src.wait(wctx, e.st.Checkpoint)
	sel := workflow.NewSelector(ctx)
	sel.AddFuture(f, func(f workflow.Future) { has, end, err = e.src.waited(ctx, f) })
	sel.AddReceive(e.controls, func(workflow.ReceiveChannel, bool) { interrupted = true })
	sel.Select(ctx)
	if interrupted {
		cancel()
		_ = f.Get(ctx, nil)
		return false, false, true, nil
	}
	return has, end, false, err
}

// waitForWake waits, with no activity and no timer, for the connector's
// wake signal for this checkpoint, or a control.
func (e *streamEngine[C, P, S]) waitForWake(ctx workflow.Context) (has, end, interrupted bool, err error) {
	at := e.src.label(e.st.Checkpoint)
	for !has && !interrupted {
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(e.wakes, func(c workflow.ReceiveChannel, _ bool) {
			var w StreamWake
			c.Receive(ctx, &w)
			has = w.Checkpoint == at
		})
		sel.AddReceive(e.controls, func(workflow.ReceiveChannel, bool) { interrupted = true })
		sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) {})
		sel.Select(ctx)
		if ctx.Err() != nil {
			return false, false, false, ctx.Err()
		}
	}
	return has, false, interrupted, nil
}

// advance moves the checkpoint to next after a batch or range;
// rangeDone drops the current range.
func (e *streamEngine[C, P, S]) advance(ctx workflow.Context, next P, rangeDone bool) {
	e.st.Checkpoint = next
	if len(e.st.Ranges) > 0 && rangeDone {
		e.st.Ranges = e.st.Ranges[1:]
	}
	e.st.Attempts, e.jobs = 0, nil
	if len(e.st.Ranges) == 0 {
		e.st.Ranges = nil
	}
	e.report(ctx, len(e.st.Ranges) > 0)
}

// failed decides what follows a failed batch (or range) read from `from`:
// another attempt after a backoff, a bisection, a dead letter, or (with
// nowhere to put the records) retries until it passes.
func (e *streamEngine[C, P, S]) failed(ctx workflow.Context, b streamBatch[S], from P, err error) error {
	e.st.Attempts++
	if b.JobID != "" {
		e.jobs = append(e.jobs, b.JobID)
	}
	e.pr.LastError = err.Error()
	cfg := e.src.settings()
	policy := cfg.Retry.withDefaults()
	expired := cfg.MaxRecordAge > 0 && !b.FirstTime.IsZero() && workflow.Now(ctx).Sub(b.FirstTime) > cfg.MaxRecordAge
	cur := e.st.Ranges[0]
	step := nextStreamStep(policy, cfg.Bisect, cfg.HasDeadLetter, streamFailure{err: err, attempts: e.st.Attempts,
		single: b.Count <= 1, splitRange: cur.Split && b.Count > 1, rejected: b.Rejected != "", expired: expired})
	first, last := e.src.label(from), fmt.Sprint(b.Last)
	switch step {
	case stepBisect:
		until := cur.Until
		if e.src.less(until, b.Last) {
			until = b.Last
		}
		mid := e.src.mid(b)
		halves := []StreamRange[P, S]{{From: from, Until: mid, Split: true}, {From: e.src.after(mid), Until: until, Split: true}}
		e.st.Ranges = append(halves, e.st.Ranges[1:]...)
		e.st.Attempts, e.jobs = 0, nil
		workflow.GetLogger(ctx).Warn("Batch failed; bisecting it to isolate the failing records", "From", first, "Last", last, "Error", err)
		e.pr.Phase = "bisecting"
		e.report(ctx, true)
		return nil
	case stepDeadLetter:
		return e.deadLetter(ctx, from, b.Last, b.RangeDone)
	case stepBlocked:
		e.pr.Phase = "blocked"
		e.pr.LastError = fmt.Sprintf("records %s..%s fail every attempt and the connector has no on_failure.dead_letter: retrying until they pass (last error: %v)", first, last, err)
		e.report(ctx, true)
	}
	wait := retryBackoff(policy, e.st.Attempts)
	connectorMetrics(ctx, e.src.kind(), cfg.Name).Counter(MetricRetries).Inc(1)
	workflow.GetLogger(ctx).Warn("Batch failed; it runs again over the same records", "From", first, "Last", last, "Attempt", e.st.Attempts, "Wait", wait, "Error", err)
	if e.pr.Phase != "blocked" {
		e.pr.Phase = "backoff"
	}
	e.report(ctx, false)
	return workflow.Sleep(ctx, wait)
}

// deadLetter sends the records read from `from` up to last to the dead
// letter with the error, then moves the checkpoint past them; the rest of
// the current range, when the read stopped short of it (rangeDone false),
// stays to run.
func (e *streamEngine[C, P, S]) deadLetter(ctx workflow.Context, from P, last S, rangeDone bool) error {
	e.pr.Phase = "dead-lettering"
	res, err := e.src.deadLetter(ctx, from, last, e.pr.LastError, e.jobs)
	if err != nil {
		return fmt.Errorf("%s: dead-lettering records up to %v: %w", e.src.unit(), last, err)
	}
	workflow.GetLogger(ctx).Warn("Records dead-lettered", "Last", last, "Count", res.Count, "Where", res.Where)
	e.st.DeadLettered += int64(res.Count)
	connectorMetrics(ctx, e.src.kind(), e.src.settings().Name).Counter(MetricDeadLettered).Inc(int64(res.Count))
	e.pr.LastDeadLetter = res.Where
	if cur := &e.st.Ranges[0]; !rangeDone && e.src.less(last, cur.Until) {
		cur.From, cur.ID = e.src.after(last), ""
		e.advance(ctx, cur.From, false)
		return nil
	}
	e.advance(ctx, e.src.after(e.st.Ranges[0].Until), true)
	return nil
}

// finish reports the unit done (closed, every record processed) and ends.
func (e *streamEngine[C, P, S]) finish(ctx workflow.Context) error {
	e.pr.Phase, e.pr.Finished = "finished", true
	// The connector starts the unit's children on this report: make sure
	// it arrived before ending.
	if err := e.report(ctx, true).Get(ctx, nil); err != nil {
		return fmt.Errorf("%s: telling connector %s it finished: %w", e.src.unit(), e.src.settings().Name, err)
	}
	workflow.GetLogger(ctx).Info("Closed and fully processed", "Unit", e.src.unit())
	return nil
}

// applyControls applies the connector's controls that arrived, in order;
// while paused it waits for more (or cancellation).
func (e *streamEngine[C, P, S]) applyControls(ctx workflow.Context) error {
	for {
		var ctl streamControl[C]
		if e.st.Paused {
			if e.pr.Phase != "paused" {
				e.src.paused(ctx, &e.st)
			}
			e.pr.Phase = "paused"
			e.report(ctx, true)
			sel := workflow.NewSelector(ctx)
			sel.AddReceive(e.controls, func(ch workflow.ReceiveChannel, _ bool) { ch.Receive(ctx, &ctl) })
			sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) {})
			sel.Select(ctx)
			if ctx.Err() != nil {
				return temporal.NewCanceledError("stream consumer cancelled")
			}
		} else if !e.controls.ReceiveAsync(&ctl) {
			return nil
		}
		switch ctl.Op {
		case ControlPause:
			e.st.Paused = true
		case ControlResume:
			e.st.Paused = false
			e.pr.Phase = "resuming"
			e.report(ctx, true)
		case ControlConfig:
			if ctl.Config != nil {
				e.src.setConfig(*ctl.Config)
			}
		case ControlReset:
			if ctl.Reset == nil {
				continue
			}
			if !e.st.Paused {
				e.pr.LastError = "reset ignored: the consumer was not paused"
				continue
			}
			moved, refused, err := e.src.reset(ctx, *ctl.Reset, &e.st)
			if err != nil {
				return err
			}
			if refused != "" {
				e.pr.LastError = refused
				continue
			}
			if moved {
				if v := workflow.GetVersion(ctx, changeStreamResetGeneration, workflow.DefaultVersion, 2); v >= 1 {
					// Records read again run again, under new identities
					// (indexed since version 2: none of them ran before).
					e.st.Generation++
					e.st.Indexed = e.st.Indexed || v >= 2
				}
				e.unseen = false
				workflow.GetLogger(ctx).Info("Checkpoint reset", "To", e.src.label(e.st.Checkpoint))
				e.st.Ranges, e.st.Attempts, e.jobs, e.st.Backlog = nil, 0, nil, false
				e.pr.LastError = ""
			}
			e.pr.LastReset = ctl.Reset.ID
		}
	}
}

// report sends the status to the connector: at once when forced (a phase
// change), else at most every streamReportBusy. The future is ready at once
// when nothing was sent.
func (e *streamEngine[C, P, S]) report(ctx workflow.Context, force bool) workflow.Future {
	e.dirty = true
	now := workflow.Now(ctx)
	if !force && now.Sub(e.lastReport) < streamReportBusy {
		f, set := workflow.NewFuture(ctx)
		set.Set(nil, nil)
		return f
	}
	e.lastReport, e.dirty, e.reported = now, false, e.pr.Phase
	e.pr.Reported = now
	e.pr.Seq++
	return e.src.report(ctx, e.src.status(&e.st, e.pr))
}

// changeStreamResetGeneration: a reset starts a new generation of batch
// identities (v1), and a moving reset indexes its jobs (v2).
const changeStreamResetGeneration = "stream-reset-generation"
