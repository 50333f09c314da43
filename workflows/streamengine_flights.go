package workflows

import (
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Several batches in flight (a Kafka partition with max_in_flight > 1).
//
// While a backlog is known, the engine cuts the records ahead of the
// checkpoint into bounded ranges of at most max_records offsets and runs
// each as its own batch activity under its own lease from the budget.
// Ranges are cut only below the end last seen, so every read fills without
// waiting, and a range's batch identity comes from its offsets: a retried
// activity or a replayed workflow runs the same range under the same
// identity and finds the job it submitted. The checkpoint moves strictly in
// offset order: a range that passes before an earlier one waits for it.
//
// Anything but a full pass (a failed or rejected task, a read that stopped
// short of its range, a control, the end of a run) stops new ranges. The
// flights left are awaited, and what remains goes to the state's Ranges in
// offset order, those that passed marked Done, for the one-batch-at-a-time
// loop to finish (retry, bisection, dead letter) before ranges are cut
// again. A range that passed is never run twice; a failed one is run
// again under its identity, so its first attempt's job counts as attempt 1.
//
// Configs from before max_in_flight have MaxInFlight 0 and never reach
// this code: histories recorded before it replay unchanged.

// streamFlight is a batch in flight: its range, identity and attempt, its
// activity and lease.
type streamFlight[P, S any] struct {
	r       StreamRange[P, S]
	id      string
	attempt int
	f       workflow.Future
	lease   heldLease
	started time.Time
	settled bool
	b       streamBatch[S]
	// cut: a range of new records cut ahead (not a job awaited again).
	cut bool
}

// await starts the flight's batch activity again to await the job it
// submitted (found under its identity).
func (fl *streamFlight[P, S]) await(ctx workflow.Context, src interface {
	start(ctx workflow.Context, r streamRead[P, S]) workflow.Future
}, checkpoint P, epoch string, indexed bool) {
	fl.f = src.start(ctx, streamRead[P, S]{From: fl.r.From, Until: &fl.r.Until, BatchID: fl.id, Attempt: fl.attempt, Checkpoint: checkpoint,
		Epoch: epoch, Indexed: indexed})
	fl.settled = false
}

// heldLease is a lease a consumer holds, since when, and whether the
// budget asked for it back.
type heldLease struct {
	id       string
	since    time.Time
	recalled bool
}

// passed tells whether the flight's batch passed and covered its range.
func (f *streamFlight[P, S]) passed(less func(a, b S) bool) bool {
	b := f.b
	if !f.settled || b.Rejected != "" || b.Failure != nil {
		return false
	}
	if b.Count == 0 {
		return b.RangeDone
	}
	return b.RangeDone || !less(b.Last, f.r.Until)
}

// adoptedFlight is an open batch whose job still runs (its activity
// returned Awaiting): the first flight, awaited under its identity and
// attempt with the lease the consumer holds.
type adoptedFlight[P, S any] struct {
	r       StreamRange[P, S]
	attempt int
	started time.Time
}

// flights runs batches of the backlog several at a time, at most limit,
// and returns how many it ran. adopt, when set, is the first flight.
func (e *streamEngine[C, P, S]) flights(ctx workflow.Context, limit int, adopt *adoptedFlight[P, S]) (int, error) {
	cfg := e.src.settings()
	ttl := e.leaseTTL()
	turn := min(ttl/2, streamLeaseTurn)
	var (
		flying  []*streamFlight[P, S]
		free    []heldLease
		asked   string // requested from the budget, not granted yet
		next    = e.st.Checkpoint
		batches int
		stop    bool
	)
	if adopt != nil {
		r := adopt.r
		fl := &streamFlight[P, S]{r: r, id: r.ID, attempt: adopt.attempt, lease: heldLease{id: e.lease, since: e.leaseSince}, started: adopt.started}
		fl.await(ctx, e.src, e.st.Checkpoint, e.st.epoch(), e.st.Indexed)
		flying = append(flying, fl)
		next = e.src.after(r.Until)
		e.lease = ""
	}
	if e.lease != "" {
		free = append(free, heldLease{id: e.lease, since: e.leaseSince})
		e.lease = ""
	}
	defer func() {
		// Leases not handed on are given back (also when cancelled).
		for _, l := range free {
			e.leases.release(ctx, l.id)
		}
		for _, f := range flying {
			if f.lease.id != "" {
				e.leases.release(ctx, f.lease.id)
			}
		}
		if asked != "" {
			e.leases.release(ctx, asked)
		}
	}()
	e.pr.Phase = "running"
	m := connectorMetrics(ctx, e.src.kind(), cfg.Name)
	// Flights that landed behind a running one wait for it but do not
	// count against max_in_flight: it bounds the jobs running.
	running := func() int {
		n := 0
		for _, f := range flying {
			if !f.settled {
				n++
			}
		}
		return n
	}
	for {
		for !stop && batches+len(flying) < limit && running() < cfg.MaxInFlight && !workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			until, ok := e.src.cut(next, cfg.MaxRecords)
			if !ok {
				break
			}
			if len(free) == 0 {
				if asked == "" {
					id := workflow.GetInfo(ctx).WorkflowExecution.ID + "@" + e.src.label(next) + "~"
					if err := e.leases.request(ctx, id, ttl); err != nil {
						return batches, err
					}
					asked = id
				}
				break
			}
			r := StreamRange[P, S]{From: next, Until: until}
			fl := &streamFlight[P, S]{r: r, id: e.src.rangeID(r), attempt: 1, lease: free[0], started: workflow.Now(ctx), cut: true}
			free = free[1:]
			// The range that reaches the end last seen may hand its job over
			// when records behind it are due, like an open batch.
			_, known := e.src.cut(e.src.after(until), 1)
			fl.f = e.src.start(ctx, streamRead[P, S]{From: r.From, Until: &r.Until, BatchID: fl.id, Attempt: 1, Checkpoint: e.st.Checkpoint,
				MayLeave: !known, Epoch: e.st.epoch(), Unseen: e.newUnseen(), Indexed: e.st.Indexed})
			flying = append(flying, fl)
			next = e.src.after(until)
		}
		if len(flying) == 0 && (stop || asked == "") {
			break
		}
		if stop && running() == 0 {
			break
		}
		var runErr error
		sel := workflow.NewSelector(ctx)
		for _, fl := range flying {
			if fl.settled {
				continue
			}
			sel.AddFuture(fl.f, func(f workflow.Future) {
				fl.b, runErr = e.src.ran(ctx, f)
				fl.settled = true
				if runErr != nil {
					return
				}
				if fl.b.ReadClosed.After(e.lastClose) {
					e.lastClose = fl.b.ReadClosed
				}
				if fl.cut && fl.b.Unseen {
					e.unseen = true
				}
				if fl.b.Awaiting {
					// Records behind it are due (the end moved): its job is
					// awaited again, ranges are cut behind it.
					fl.await(ctx, e.src, e.st.Checkpoint, e.st.epoch(), e.st.Indexed)
					return
				}
				if !e.land(ctx, fl, m) {
					stop = true
				}
				// The lease goes on to the next range while the backlog
				// lasts, the batch passed, the budget did not recall it and
				// its turn is not over.
				l := fl.lease
				fl.lease = heldLease{}
				if !stop && fl.passed(e.src.less) && fl.b.Backlog && !l.recalled && workflow.Now(ctx).Sub(l.since) < turn {
					free = append(free, l)
				} else {
					e.leases.release(ctx, l.id)
				}
			})
		}
		sel.AddReceive(e.leases.granted, func(c workflow.ReceiveChannel, _ bool) {
			var g LeaseGrant
			c.Receive(ctx, &g)
			if g.LeaseID == asked && asked != "" {
				free = append(free, heldLease{id: asked, since: workflow.Now(ctx)})
				asked = ""
				return
			}
			e.leases.release(ctx, g.LeaseID) // a stale grant (an earlier request)
		})
		sel.AddReceive(e.recalls, func(c workflow.ReceiveChannel, _ bool) {
			var r LeaseRecall
			c.Receive(ctx, &r)
			for i := range free {
				if free[i].id == r.LeaseID {
					e.leases.release(ctx, r.LeaseID)
					free = append(free[:i], free[i+1:]...)
					return
				}
			}
			for _, fl := range flying {
				if fl.lease.id == r.LeaseID {
					fl.lease.recalled = true
				}
			}
		})
		if !stop {
			// A control stops new ranges; it applies once the flights land.
			sel.AddReceive(e.controls, func(workflow.ReceiveChannel, bool) { stop = true })
		}
		sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) {})
		sel.Select(ctx)
		if ctx.Err() != nil {
			// The batch activities stop their jobs as they are cancelled.
			for _, f := range flying {
				if !f.settled {
					_ = f.f.Get(ctx, nil)
				}
			}
			return batches, temporal.NewCanceledError("stream consumer cancelled")
		}
		if runErr != nil {
			e.pr.LastError = runErr.Error()
			return batches, runErr
		}
		// The checkpoint moves past the leading ranges that passed.
		moved := false
		for len(flying) > 0 && flying[0].passed(e.src.less) {
			e.st.Checkpoint = e.src.after(flying[0].r.Until)
			flying = flying[1:]
			batches++
			moved = true
		}
		if moved {
			e.st.Attempts, e.jobs = 0, nil
			e.report(ctx, false)
			e.src.observe(m, &e.st)
		}
	}
	// What is left (behind a range that did not pass) runs one at a time.
	for _, fl := range flying {
		b := fl.b
		switch {
		case fl.passed(e.src.less):
			e.st.Ranges = append(e.st.Ranges, StreamRange[P, S]{From: fl.r.From, Until: fl.r.Until, Done: true})
			batches++
		case b.Count > 0 && b.Rejected == "" && b.Failure == nil:
			// Passed, but the read stopped short of the range's end.
			e.st.Ranges = append(e.st.Ranges, StreamRange[P, S]{From: fl.r.From, Until: b.Last, Done: true},
				StreamRange[P, S]{From: e.src.after(b.Last), Until: fl.r.Until})
			batches++
		default:
			e.st.Ranges = append(e.st.Ranges, fl.r)
		}
	}
	flying = nil
	_, e.st.Backlog = e.src.cut(e.st.Checkpoint, 1)
	if len(e.st.Ranges) == 0 && e.st.Backlog && len(free) > 0 && !free[0].recalled {
		// Kept for the next batch, as the one-at-a-time loop keeps it.
		e.lease, e.leaseSince, e.turn = free[0].id, free[0].since, turn
		free = free[1:]
	}
	return batches, nil
}

// land counts a flight that settled and tells whether it passed its whole
// range. A failed batch is counted when the one-at-a-time loop runs it
// again (it finds the same job).
func (e *streamEngine[C, P, S]) land(ctx workflow.Context, fl *streamFlight[P, S], m client.MetricsHandler) bool {
	b := fl.b
	if b.Rejected != "" || b.Failure != nil {
		return false
	}
	if b.Count == 0 {
		return b.RangeDone
	}
	batchDone(m, true, b.Count, workflow.Now(ctx).Sub(fl.started))
	e.pr.LastJob, e.pr.LastError = b.JobID, ""
	e.st.Batches++
	e.st.Records += int64(b.Count)
	e.st.Skipped += b.Skipped
	return fl.passed(e.src.less)
}
