package workflows

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
)

// BudgetInput configures the budget and carries its state across
// continue-as-new.
type BudgetInput struct {
	// Size is how many leases may be held at once. 0: follow the Bacalhau
	// network: activities.Capacity.SuggestedBudget of the connected compute
	// nodes, measured again whenever a node joins or leaves.
	Size int
	// State is carried across continue-as-new; leave it empty.
	State *BudgetState `json:",omitempty"`
}

// BudgetState is the budget's durable state.
type BudgetState struct {
	Size    int
	Holders []Lease
	Waiting []LeaseRequest
	// HighWater is the most leases ever held at once.
	HighWater int
	Granted   int64
	Expired   int64
	Recalled  int64 `json:",omitempty"`
	// Fixed: the size was set (BudgetInput.Size, a resize) and does not
	// follow the network.
	Fixed bool `json:",omitempty"`
	// Network is the last measurement of the compute nodes, and when it
	// was taken.
	Network    *activities.Capacity `json:",omitempty"`
	MeasuredAt time.Time            `json:",omitempty"`
}

// LeaseRequest asks for one lease.
type LeaseRequest struct {
	// LeaseID identifies the lease; requesting the same ID twice is harmless.
	LeaseID string
	// Holder is the workflow that receives SignalLeaseGranted.
	HolderWorkflowID string
	HolderRunID      string
	// TTL bounds how long the lease may be held; after it the budget takes
	// the lease back (its holder is assumed dead).
	TTL time.Duration
	// Keeps: the holder keeps the lease across consecutive batches (a
	// stream consumer with a backlog) and gives it back when it goes idle,
	// after a turn shorter than TTL, or when the budget recalls it because
	// others wait.
	Keeps bool `json:",omitempty"`
}

// Lease is a granted LeaseRequest.
type Lease struct {
	LeaseRequest
	Granted time.Time
	Expires time.Time
	// Recalled: the holder was asked to give it back.
	Recalled bool `json:",omitempty"`
}

// LeaseRecall is the payload of SignalLeaseRecall.
type LeaseRecall struct{ LeaseID string }

// LeaseGrant is the payload of SignalLeaseGranted.
type LeaseGrant struct{ LeaseID string }

// LeaseRelease is the payload of SignalReleaseLease.
type LeaseRelease struct{ LeaseID string }

// BudgetStatus is the answer to QueryBudgetStatus.
type BudgetStatus struct {
	Size      int
	InFlight  int
	Waiting   int
	HighWater int
	Granted   int64
	Expired   int64
	// Recalled counts leases taken back from holders that keep them.
	Recalled int64 `json:",omitempty"`
	Holders  []string
	// FollowsNetwork: the size is the network's suggested budget, measured
	// again as compute nodes join and leave (false: a size was set).
	FollowsNetwork bool
	// Network is the last measurement of the connected compute nodes (nil
	// before the first), taken at MeasuredAt.
	Network    *activities.Capacity `json:",omitempty"`
	MeasuredAt time.Time            `json:",omitempty"`
}

// budgetEventsBeforeContinue bounds the budget's history even when the server
// does not suggest continue-as-new yet.
const budgetEventsBeforeContinue = 5000

// Budget is the singleton that caps in-flight Bacalhau jobs. See the package
// documentation.
func Budget(ctx workflow.Context, in BudgetInput) error {
	logger := workflow.GetLogger(ctx)
	st := in.State
	if st == nil {
		st = &BudgetState{}
	}
	follows := workflow.GetVersion(ctx, changeFollowsNetwork, workflow.DefaultVersion, 1) == 1
	if in.Size > 0 {
		st.Size = in.Size
		st.Fixed = true
	}
	if st.Size <= 0 {
		actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			StartToCloseTimeout: 30 * time.Second,
			RetryPolicy:         &temporal.RetryPolicy{MaximumInterval: 30 * time.Second},
		})
		var b *activities.Bacalhau
		var capacity activities.Capacity
		if err := workflow.ExecuteActivity(actx, b.Capacity, 0.0).Get(ctx, &capacity); err != nil {
			return fmt.Errorf("measuring Bacalhau capacity: %w", err)
		}
		st.Size = capacity.SuggestedBudget
		if follows {
			st.Network, st.MeasuredAt = &capacity, workflow.Now(ctx)
		}
		logger.Info("Budget sized from node capacity", "Size", st.Size, "RunAtOnce", capacity.RunAtOnce, "Nodes", capacity.ComputeNodes)
	}

	if err := workflow.SetQueryHandler(ctx, QueryBudgetStatus, func() (BudgetStatus, error) {
		s := BudgetStatus{Size: st.Size, InFlight: len(st.Holders), Waiting: len(st.Waiting),
			HighWater: st.HighWater, Granted: st.Granted, Expired: st.Expired, Recalled: st.Recalled,
			FollowsNetwork: follows && !st.Fixed, Network: st.Network, MeasuredAt: st.MeasuredAt}
		for _, h := range st.Holders {
			s.Holders = append(s.Holders, h.LeaseID)
		}
		return s, nil
	}); err != nil {
		return err
	}
	// wake lets handlers make the main loop take another pass.
	wake := workflow.NewBufferedChannel(ctx, 1)
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateBudgetResize,
		func(ctx workflow.Context, size int) (int, error) {
			if size == 0 {
				// Follow the network again: its last measurement now, the
				// watch (started by the main loop) from then on.
				st.Fixed = false
				if st.Network != nil {
					st.Size = st.Network.SuggestedBudget
				}
			} else {
				st.Size, st.Fixed = size, true
			}
			wake.SendAsync(true)
			return st.Size, nil
		},
		workflow.UpdateHandlerOptions{Validator: func(size int) error {
			if size == 0 && !follows {
				return errors.New("this budget run predates following the network; it does from its next run (continue-as-new) on")
			}
			if size < 0 {
				return errors.New("size must be at least 1, or 0 to follow the network")
			}
			return nil
		}},
	); err != nil {
		return err
	}

	oneTimer := workflow.GetVersion(ctx, changeOneExpiryTimer, workflow.DefaultVersion, 1) == 1
	var expiry expiryTimer
	acquireCh := workflow.GetSignalChannel(ctx, SignalAcquireLease)
	releaseCh := workflow.GetSignalChannel(ctx, SignalReleaseLease)
	var pendingGrants []workflow.Future
	var network networkWatch

	onAcquire := func(req LeaseRequest) {
		if i := slices.IndexFunc(st.Holders, func(l Lease) bool { return l.LeaseID == req.LeaseID }); i >= 0 {
			// A repeated request (e.g. a retried activity): grant again.
			pendingGrants = append(pendingGrants, grant(ctx, st.Holders[i].LeaseRequest, st))
			return
		}
		if slices.ContainsFunc(st.Waiting, func(w LeaseRequest) bool { return w.LeaseID == req.LeaseID }) {
			return
		}
		st.Waiting = append(st.Waiting, req)
	}
	onRelease := func(rel LeaseRelease) {
		st.Holders = slices.DeleteFunc(st.Holders, func(l Lease) bool { return l.LeaseID == rel.LeaseID })
		st.Waiting = slices.DeleteFunc(st.Waiting, func(w LeaseRequest) bool { return w.LeaseID == rel.LeaseID })
	}

	for {
		// Reclaim expired leases, then grant while there is room.
		now := workflow.Now(ctx)
		st.Holders = slices.DeleteFunc(st.Holders, func(l Lease) bool {
			if now.Before(l.Expires) {
				return false
			}
			logger.Warn("Lease expired; holder presumed gone", "LeaseID", l.LeaseID, "Holder", l.HolderWorkflowID)
			st.Expired++
			return true
		})
		for len(st.Holders) < st.Size && len(st.Waiting) > 0 {
			req := st.Waiting[0]
			st.Waiting = st.Waiting[1:]
			ttl := req.TTL
			if ttl <= 0 {
				ttl = time.Hour
			}
			st.Holders = append(st.Holders, Lease{LeaseRequest: req, Granted: now, Expires: now.Add(ttl)})
			st.Granted++
			st.HighWater = max(st.HighWater, len(st.Holders))
			pendingGrants = append(pendingGrants, grant(ctx, req, st))
		}
		// Requests wait and every lease is held: holders that keep theirs
		// across batches give one back after their batch, oldest first, as
		// many as wait. (Only holders that asked with Keeps are recalled:
		// histories from before replay without a recall.)
		for owed := len(st.Waiting); owed > 0 && len(st.Holders) >= st.Size; owed-- {
			i := -1
			for j, l := range st.Holders {
				if l.Keeps && !l.Recalled && (i < 0 || l.Granted.Before(st.Holders[i].Granted)) {
					i = j
				}
			}
			if i < 0 {
				break
			}
			st.Holders[i].Recalled = true
			st.Recalled++
			pendingGrants = append(pendingGrants, recall(ctx, st.Holders[i].LeaseRequest, st))
		}

		if follows {
			network.keep(ctx, !st.Fixed, st.Network)
		}

		info := workflow.GetInfo(ctx)
		if len(pendingGrants) == 0 && (info.GetContinueAsNewSuggested() || info.GetCurrentHistoryLength() > budgetEventsBeforeContinue) {
			// Drain what arrived so nothing is lost across continue-as-new.
			for {
				var req LeaseRequest
				if !acquireCh.ReceiveAsync(&req) {
					break
				}
				onAcquire(req)
			}
			for {
				var rel LeaseRelease
				if !releaseCh.ReceiveAsync(&rel) {
					break
				}
				onRelease(rel)
			}
			if len(pendingGrants) == 0 {
				network.stop()
				return workflow.NewContinueAsNewError(ctx, Budget, BudgetInput{State: st})
			}
		}

		sel := workflow.NewSelector(ctx)
		sel.AddReceive(acquireCh, func(c workflow.ReceiveChannel, _ bool) {
			var req LeaseRequest
			c.Receive(ctx, &req)
			onAcquire(req)
		})
		sel.AddReceive(releaseCh, func(c workflow.ReceiveChannel, _ bool) {
			var rel LeaseRelease
			c.Receive(ctx, &rel)
			onRelease(rel)
		})
		sel.AddReceive(wake, func(c workflow.ReceiveChannel, _ bool) { c.ReceiveAsync(nil) })
		network.addTo(ctx, sel, func(c *activities.Capacity, err error) {
			if err != nil {
				if ctx.Err() == nil {
					logger.Warn("Watching the Bacalhau network failed; the budget keeps its size", "Error", err)
				}
				return
			}
			st.Network, st.MeasuredAt = c, workflow.Now(ctx)
			if !st.Fixed {
				logger.Info("Budget follows the network", "Size", c.SuggestedBudget, "Was", st.Size, "RunAtOnce", c.RunAtOnce, "Nodes", c.ComputeNodes)
				st.Size = c.SuggestedBudget
			}
		})
		for _, f := range pendingGrants {
			sel.AddFuture(f, func(f workflow.Future) {
				pendingGrants = slices.DeleteFunc(pendingGrants, func(p workflow.Future) bool { return p == f })
			})
		}
		if oneTimer {
			expiry.arm(ctx, sel, st.Holders, now)
			sel.Select(ctx)
		} else {
			// Wake up for the next expiry.
			next := time.Hour
			for _, l := range st.Holders {
				next = min(next, max(l.Expires.Sub(now), time.Second))
			}
			timerCtx, cancelTimer := workflow.WithCancel(ctx)
			sel.AddFuture(workflow.NewTimer(timerCtx, next), func(workflow.Future) {})
			sel.Select(ctx)
			cancelTimer()
		}
		if err := ctx.Err(); err != nil {
			return temporal.NewCanceledError("budget cancelled")
		}
	}
}

// changeFollowsNetwork versions the budget's network watch: a budget
// without a set size measures the compute nodes again whenever one joins or
// leaves (WatchCapacity). Histories from before measured once, at start.
const changeFollowsNetwork = "budget-follows-network"

// networkWatch runs the budget's WatchCapacity activity.
type networkWatch struct {
	f      workflow.Future
	cancel workflow.CancelFunc
	// retry: the last watch ended in an error; the next starts when this
	// timer fires, not at once.
	retry workflow.Future
}

// capacityWatchHeartbeat is WatchCapacity's heartbeat timeout: a watch on
// a worker that died starts again on another within it.
const capacityWatchHeartbeat = time.Minute

// keep starts the watch when the budget follows the network and none runs,
// and stops it when the budget no longer follows.
func (w *networkWatch) keep(ctx workflow.Context, follow bool, known *activities.Capacity) {
	switch {
	case !follow:
		w.stop()
	case w.f == nil && w.retry == nil:
		wctx, cancel := workflow.WithCancel(ctx)
		wctx = workflow.WithActivityOptions(wctx, workflow.ActivityOptions{
			StartToCloseTimeout: 365 * 24 * time.Hour,
			HeartbeatTimeout:    capacityWatchHeartbeat,
			WaitForCancellation: false,
			RetryPolicy:         &temporal.RetryPolicy{MaximumInterval: 30 * time.Second},
		})
		var b *activities.Bacalhau
		w.f = workflow.ExecuteActivity(wctx, b.WatchCapacity, activities.WatchCapacityInput{Known: known})
		w.cancel = cancel
	}
}

// stop cancels a running watch.
func (w *networkWatch) stop() {
	if w.cancel != nil {
		w.cancel()
	}
	w.f, w.cancel = nil, nil
}

// addTo adds the running watch to sel: done gets its measurement. A
// watch that failed (not merely cancelled) starts again a minute later.
func (w *networkWatch) addTo(ctx workflow.Context, sel workflow.Selector, done func(*activities.Capacity, error)) {
	if w.f != nil {
		f := w.f
		sel.AddFuture(f, func(workflow.Future) {
			var c activities.Capacity
			err := f.Get(ctx, &c)
			w.f, w.cancel = nil, nil
			if err != nil {
				if ctx.Err() == nil && !temporal.IsCanceledError(err) {
					w.retry = workflow.NewTimer(ctx, time.Minute)
				}
				done(nil, err)
				return
			}
			done(&c, nil)
		})
	}
	if w.retry != nil {
		sel.AddFuture(w.retry, func(workflow.Future) { w.retry = nil })
	}
}

// changeOneExpiryTimer versions the budget's expiry timer: one timer at a
// time, started only when a lease would expire before it fires (a timer
// is a billable action; the first version started one at every signal,
// three per batch). Histories from before replay with a timer per pass.
const changeOneExpiryTimer = "budget-one-expiry-timer"

// expiryTimer wakes the budget when its earliest lease may have expired.
type expiryTimer struct {
	timer  workflow.Future
	at     time.Time
	cancel workflow.CancelFunc
}

// arm adds the timer to sel, first starting one when no timer runs or a
// holder expires before it fires. With no holder nothing can expire and
// no timer runs. A timer that fires early (its lease was released) only
// makes the loop take a pass and arm the next.
func (e *expiryTimer) arm(ctx workflow.Context, sel workflow.Selector, holders []Lease, now time.Time) {
	if len(holders) == 0 {
		return
	}
	wake := holders[0].Expires
	for _, l := range holders[1:] {
		if l.Expires.Before(wake) {
			wake = l.Expires
		}
	}
	if wake.Before(now.Add(time.Second)) {
		wake = now.Add(time.Second)
	}
	if e.timer == nil || wake.Before(e.at) {
		if e.cancel != nil {
			e.cancel()
		}
		tctx, cancel := workflow.WithCancel(ctx)
		e.timer, e.at, e.cancel = workflow.NewTimer(tctx, wake.Sub(now)), wake, cancel
	}
	sel.AddFuture(e.timer, func(workflow.Future) { e.timer, e.cancel = nil, nil })
}

// recall asks a holder to give its lease back. A holder that is gone (its
// workflow closed without releasing, e.g. a connector cancelled while it
// kept leases across batches) has nothing to give back: its lease is
// released then, as grant does (GetVersion budget-recall-releases-gone;
// before, such a lease blocked the waiters until its TTL ran out).
func recall(ctx workflow.Context, req LeaseRequest, st *BudgetState) workflow.Future {
	releaseGone := workflow.GetVersion(ctx, changeRecallReleasesGone, workflow.DefaultVersion, 1) == 1
	f, set := workflow.NewFuture(ctx)
	sig := workflow.SignalExternalWorkflow(ctx, req.HolderWorkflowID, req.HolderRunID, SignalLeaseRecall, LeaseRecall{LeaseID: req.LeaseID})
	workflow.Go(ctx, func(ctx workflow.Context) {
		if err := sig.Get(ctx, nil); err != nil {
			if releaseGone {
				workflow.GetLogger(ctx).Warn("Lease holder gone at a recall; lease released", "LeaseID", req.LeaseID, "Error", err)
				st.Holders = slices.DeleteFunc(st.Holders, func(l Lease) bool { return l.LeaseID == req.LeaseID })
			} else {
				workflow.GetLogger(ctx).Warn("Lease holder unreachable for a recall", "LeaseID", req.LeaseID, "Error", err)
			}
		}
		set.Set(nil, nil)
	})
	return f
}

// changeRecallReleasesGone versions recall's release of a gone holder's
// lease.
const changeRecallReleasesGone = "budget-recall-releases-gone"

// grant signals the holder; if the holder is gone, the lease is released.
func grant(ctx workflow.Context, req LeaseRequest, st *BudgetState) workflow.Future {
	f, set := workflow.NewFuture(ctx)
	sig := workflow.SignalExternalWorkflow(ctx, req.HolderWorkflowID, req.HolderRunID, SignalLeaseGranted, LeaseGrant{LeaseID: req.LeaseID})
	workflow.Go(ctx, func(ctx workflow.Context) {
		if err := sig.Get(ctx, nil); err != nil {
			workflow.GetLogger(ctx).Warn("Lease holder unreachable; lease released", "LeaseID", req.LeaseID, "Error", err)
			st.Holders = slices.DeleteFunc(st.Holders, func(l Lease) bool { return l.LeaseID == req.LeaseID })
		}
		set.Set(nil, nil)
	})
	return f
}
