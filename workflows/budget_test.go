package workflows

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
)

type budgetHarness struct {
	t       *testing.T
	env     *testsuite.TestWorkflowEnvironment
	granted []string // lease IDs granted, in order
}

func newBudgetHarness(t *testing.T, goneHolders ...string) *budgetHarness {
	var suite testsuite.WorkflowTestSuite
	h := &budgetHarness{t: t, env: suite.NewTestWorkflowEnvironment()}
	h.env.RegisterWorkflowWithOptions(Budget, workflowOptions(BudgetWorkflowType))
	h.env.RegisterActivity(&activities.Bacalhau{})
	h.env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, mock.Anything, SignalLeaseGranted, mock.Anything).Return(
		func(_, workflowID, _, _ string, arg interface{}) error {
			for _, g := range goneHolders {
				if g == workflowID {
					return errors.New("workflow not found")
				}
			}
			h.granted = append(h.granted, arg.(LeaseGrant).LeaseID)
			return nil
		})
	return h
}

// grantEveryLease plays a budget that grants every lease at once to the
// workflow under test. Register it before any catch-all
// OnSignalExternalWorkflow: the first matching mock answers.
func grantEveryLease(env *testsuite.TestWorkflowEnvironment) *atomic.Int64 {
	var asked atomic.Int64
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, mock.Anything, SignalAcquireLease, mock.Anything).Return(
		func(_, _, _, _ string, arg any) error {
			asked.Add(1)
			id := arg.(LeaseRequest).LeaseID
			env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalLeaseGranted, LeaseGrant{LeaseID: id}) }, 0)
			return nil
		})
	return &asked
}

func (h *budgetHarness) at(d time.Duration, f func()) { h.env.RegisterDelayedCallback(f, d) }

func (h *budgetHarness) acquire(id string, ttl time.Duration) {
	h.env.SignalWorkflow(SignalAcquireLease, LeaseRequest{LeaseID: id, HolderWorkflowID: "holder-" + id, TTL: ttl})
}

func (h *budgetHarness) release(id string) {
	h.env.SignalWorkflow(SignalReleaseLease, LeaseRelease{LeaseID: id})
}

func (h *budgetHarness) status() BudgetStatus {
	v, err := h.env.QueryWorkflow(QueryBudgetStatus)
	require.NoError(h.t, err)
	var st BudgetStatus
	require.NoError(h.t, v.Get(&st))
	return st
}

func TestBudgetGrantsUpToItsSizeAndQueuesTheRest(t *testing.T) {
	h := newBudgetHarness(t)
	var afterAcquire, afterRelease, afterDuplicate BudgetStatus
	h.at(time.Second, func() {
		h.acquire("a", time.Hour)
		h.acquire("b", time.Hour)
		h.acquire("c", time.Hour)
	})
	h.at(2*time.Second, func() {
		afterAcquire = h.status()
		h.release("a")
	})
	h.at(3*time.Second, func() {
		afterRelease = h.status()
		h.acquire("b", time.Hour) // a retried request for a held lease
	})
	h.at(4*time.Second, func() {
		afterDuplicate = h.status()
		h.env.CancelWorkflow()
	})
	h.env.ExecuteWorkflow(Budget, BudgetInput{Size: 2})

	assert.Equal(t, BudgetStatus{Size: 2, InFlight: 2, Waiting: 1, HighWater: 2, Granted: 2, Holders: []string{"a", "b"}}, afterAcquire)
	assert.Equal(t, BudgetStatus{Size: 2, InFlight: 2, Waiting: 0, HighWater: 2, Granted: 3, Holders: []string{"b", "c"}}, afterRelease)
	assert.Equal(t, afterRelease, afterDuplicate, "a duplicate request changes nothing")
	// a and b are granted in one workflow task: the test environment sends
	// their grants from goroutines of its own, in either order.
	require.Len(t, h.granted, 4)
	assert.ElementsMatch(t, []string{"a", "b"}, h.granted[:2])
	assert.Equal(t, []string{"c", "b"}, h.granted[2:], "a duplicate request is granted again")
}

func TestBudgetReclaimsExpiredLeases(t *testing.T) {
	h := newBudgetHarness(t)
	var before, after BudgetStatus
	h.at(time.Second, func() {
		h.acquire("dead", time.Minute) // its holder never releases it
		h.acquire("next", time.Hour)
	})
	h.at(30*time.Second, func() { before = h.status() })
	h.at(2*time.Minute, func() {
		after = h.status()
		h.env.CancelWorkflow()
	})
	h.env.ExecuteWorkflow(Budget, BudgetInput{Size: 1})
	assert.Equal(t, []string{"dead"}, before.Holders)
	assert.Equal(t, 1, before.Waiting)
	assert.Equal(t, []string{"next"}, after.Holders)
	assert.Equal(t, int64(1), after.Expired)
}

// TestBudgetStartsOneExpiryTimerNotOnePerSignal: timers are billable
// actions, so the budget keeps one expiry timer instead of one per signal;
// a lease that expires before the running timer fires still gets a timer
// of its own and is reclaimed on time.
func TestBudgetStartsOneExpiryTimerNotOnePerSignal(t *testing.T) {
	h := newBudgetHarness(t)
	timers := 0
	h.env.SetOnTimerScheduledListener(func(string, time.Duration) { timers++ })
	for i := range 20 {
		id := fmt.Sprintf("lease-%d", i)
		h.at(time.Duration(i+1)*time.Second, func() { h.acquire(id, time.Hour) })
		h.at(time.Duration(i+1)*time.Second+500*time.Millisecond, func() { h.release(id) })
	}
	var st BudgetStatus
	h.at(30*time.Second, func() {
		h.acquire("long", time.Hour)
		h.acquire("short", time.Minute) // expires before the long lease's timer fires; never released
	})
	h.at(95*time.Second, func() {
		st = h.status()
		h.env.CancelWorkflow()
	})
	h.env.ExecuteWorkflow(Budget, BudgetInput{Size: 2})
	assert.Equal(t, []string{"long"}, st.Holders, "the short lease was reclaimed at its expiry")
	assert.Equal(t, int64(1), st.Expired)
	assert.Equal(t, int64(22), st.Granted)
	// One for the first lease (kept across the 20 batches), one for the
	// long lease, one for the short one, one after it expired.
	assert.LessOrEqual(t, timers, 4, "20 leases taken and released start one timer, not one per signal")
}

// TestBudgetServesFiftyConsumersOfABudgetOfFiveFairly: 50 consumers, each
// taking a lease for a 1-s batch and asking again right after releasing
// it, on a budget of 5: over 10 minutes every consumer progresses, none
// waits more than a round of the others (grants are first come, first
// served), and no more than 5 leases are ever held.
func TestBudgetServesFiftyConsumersOfABudgetOfFiveFairly(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(Budget, workflowOptions(BudgetWorkflowType))
	const consumers, size = 50, 5
	// The test environment runs each external signal's mock on a
	// goroutine of its own: the counts are shared.
	var mu sync.Mutex
	grants := map[string]int{}
	round := map[string]int{}
	stopped := false
	ask := func(holder string) {
		mu.Lock()
		round[holder]++
		n := round[holder]
		mu.Unlock()
		env.SignalWorkflow(SignalAcquireLease, LeaseRequest{LeaseID: fmt.Sprintf("%s#%d", holder, n), HolderWorkflowID: holder, TTL: time.Hour})
	}
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, mock.Anything, SignalLeaseGranted, mock.Anything).Return(
		func(_, holder, _, _ string, arg any) error {
			mu.Lock()
			grants[holder]++
			mu.Unlock()
			id := arg.(LeaseGrant).LeaseID
			env.RegisterDelayedCallback(func() { // the batch runs 1 s, then the consumer releases and asks again
				env.SignalWorkflow(SignalReleaseLease, LeaseRelease{LeaseID: id})
				if !stopped {
					ask(holder)
				}
			}, time.Second)
			return nil
		})
	for i := range consumers {
		holder := fmt.Sprintf("consumer-%02d", i)
		env.RegisterDelayedCallback(func() { ask(holder) }, time.Duration(i)*10*time.Millisecond)
	}
	var st BudgetStatus
	env.RegisterDelayedCallback(func() { stopped = true }, 10*time.Minute)
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryBudgetStatus)
		require.NoError(t, err)
		require.NoError(t, v.Get(&st))
		env.CancelWorkflow()
	}, 10*time.Minute+10*time.Second)
	env.ExecuteWorkflow(Budget, BudgetInput{Size: size})

	require.Len(t, grants, consumers, "every consumer got leases")
	least, most := 1<<30, 0
	for _, n := range grants {
		least, most = min(least, n), max(most, n)
	}
	t.Logf("grants per consumer: %d to %d (%d in all)", least, most, st.Granted)
	// 5 leases of 1-s batches over 600 s: ~3,000 grants, ~60 each.
	assert.GreaterOrEqual(t, least, 50, "no consumer starves")
	assert.LessOrEqual(t, most-least, 2, "grants are shared evenly")
	assert.Equal(t, size, st.HighWater, "never more than the budget's size at once")
}

func TestBudgetReleasesALeaseWhoseHolderIsGone(t *testing.T) {
	h := newBudgetHarness(t, "holder-gone")
	var st BudgetStatus
	h.at(time.Second, func() {
		h.acquire("gone", time.Hour)
		h.acquire("alive", time.Hour)
	})
	h.at(5*time.Second, func() {
		st = h.status()
		h.env.CancelWorkflow()
	})
	h.env.ExecuteWorkflow(Budget, BudgetInput{Size: 1})
	assert.Equal(t, []string{"alive"}, st.Holders)
	assert.Equal(t, []string{"alive"}, h.granted)
}

func TestBudgetMeasuresItsSizeWhenNoneIsGiven(t *testing.T) {
	h := newBudgetHarness(t)
	h.env.OnActivity("Capacity", mock.Anything, mock.Anything).Return(&activities.Capacity{ComputeNodes: 1, RunAtOnce: 3, SuggestedBudget: 5}, nil)
	h.env.OnActivity("WatchCapacity", mock.Anything, mock.Anything).After(time.Hour).Return(nil, errors.New("cancelled"))
	var st BudgetStatus
	h.at(time.Second, func() {
		st = h.status()
		h.env.CancelWorkflow()
	})
	h.env.ExecuteWorkflow(Budget, BudgetInput{})
	assert.Equal(t, 5, st.Size)
}

// TestBudgetFollowsTheNetworkUntilASizeIsSet: a budget without a size
// takes the network's suggested budget, again when a node joins and when
// one leaves (WatchCapacity returns the new measurement); a resize fixes
// the size and stops the watch, a resize to 0 follows the network again.
func TestBudgetFollowsTheNetworkUntilASizeIsSet(t *testing.T) {
	h := newBudgetHarness(t)
	one := &activities.Capacity{ComputeNodes: 1, RunAtOnce: 2, SuggestedBudget: 3, Nodes: []activities.NodeCapacity{{ID: "n1", CPU: 1, RunAtOnce: 2}}}
	three := &activities.Capacity{ComputeNodes: 3, RunAtOnce: 6, SuggestedBudget: 9}
	two := &activities.Capacity{ComputeNodes: 2, RunAtOnce: 4, SuggestedBudget: 6}
	h.env.OnActivity("Capacity", mock.Anything, mock.Anything).Return(one, nil)
	var watches []*activities.Capacity // what each watch knew
	var mu sync.Mutex
	h.env.OnActivity("WatchCapacity", mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.WatchCapacityInput) (*activities.Capacity, error) {
			mu.Lock()
			watches = append(watches, in.Known)
			n := len(watches)
			mu.Unlock()
			switch n {
			case 1:
				return three, nil // a node joined
			case 2:
				return two, nil // one left
			}
			time.Sleep(50 * time.Millisecond)
			return nil, temporalCanceled()
		})
	var afterJoinLeave, fixed, following BudgetStatus
	h.at(10*time.Second, func() {
		afterJoinLeave = h.status()
		h.env.UpdateWorkflow(UpdateBudgetResize, "fix", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { t.Error(err) }, OnAccept: func() {}, OnComplete: func(interface{}, error) {}}, 4)
	})
	h.at(11*time.Second, func() {
		fixed = h.status()
		h.env.UpdateWorkflow(UpdateBudgetResize, "follow", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { t.Error(err) }, OnAccept: func() {}, OnComplete: func(interface{}, error) {}}, 0)
	})
	h.at(12*time.Second, func() {
		following = h.status()
		h.env.CancelWorkflow()
	})
	h.env.ExecuteWorkflow(Budget, BudgetInput{})

	assert.Equal(t, 6, afterJoinLeave.Size, "the size follows the join (9) and then the leave (6)")
	assert.True(t, afterJoinLeave.FollowsNetwork)
	require.NotNil(t, afterJoinLeave.Network)
	assert.Equal(t, 2, afterJoinLeave.Network.ComputeNodes)
	require.GreaterOrEqual(t, len(watches), 3)
	assert.Equal(t, one, watches[0], "the first watch knows the first measurement")
	assert.Equal(t, three, watches[1], "each next watch knows the last measurement")
	assert.Equal(t, two, watches[2])
	assert.Equal(t, 4, fixed.Size)
	assert.False(t, fixed.FollowsNetwork)
	assert.Equal(t, 6, following.Size, "a resize to 0 takes the last measurement")
	assert.True(t, following.FollowsNetwork)
}

func TestBudgetResizeIsValidated(t *testing.T) {
	h := newBudgetHarness(t)
	var rejected, accepted error
	var st BudgetStatus
	h.at(time.Second, func() {
		h.env.UpdateWorkflow(UpdateBudgetResize, "bad", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { rejected = err }, OnAccept: func() {}, OnComplete: func(interface{}, error) {},
		}, -1)
		h.env.UpdateWorkflow(UpdateBudgetResize, "good", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { accepted = err }, OnAccept: func() {}, OnComplete: func(interface{}, error) {},
		}, 7)
	})
	h.at(2*time.Second, func() {
		st = h.status()
		h.env.CancelWorkflow()
	})
	h.env.ExecuteWorkflow(Budget, BudgetInput{Size: 2})
	require.Error(t, rejected)
	assert.Contains(t, rejected.Error(), "0 to follow the network")
	assert.Contains(t, rejected.Error(), "at least 1")
	assert.NoError(t, accepted)
	assert.Equal(t, 7, st.Size)
}

// TestBudgetRecallsKeptLeasesSoFiftyKeepersOfABudgetOfFiveAllProgress: 50
// consumers with a backlog keep their lease across 1-s batches (Keeps)
// and give it back only when recalled (then ask again at the back of the
// queue). The budget recalls the oldest holders while others wait: every
// consumer gets turns, evenly, and without contention a keeper's batches
// cost no signal at all.
func TestBudgetRecallsKeptLeasesSoFiftyKeepersOfABudgetOfFiveAllProgress(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(Budget, workflowOptions(BudgetWorkflowType))
	const consumers, size = 50, 5
	batches := map[string]int{}
	held := map[string]string{} // holder → lease it holds
	round := map[string]int{}
	recalls := 0
	stopped := false
	// The SDK runs signal-external mocks on goroutines of their own: every
	// map access holds mu (never across an env call).
	var mu sync.Mutex
	ask := func(holder string) {
		mu.Lock()
		round[holder]++
		id := fmt.Sprintf("%s#%d", holder, round[holder])
		mu.Unlock()
		env.SignalWorkflow(SignalAcquireLease, LeaseRequest{LeaseID: id, HolderWorkflowID: holder, TTL: time.Hour, Keeps: true})
	}
	// runBatch runs one 1-s batch on the held lease; a recall seen by then
	// gives the lease back (and the consumer, still with a backlog, asks
	// again); else the next batch runs on the same lease.
	var runBatch func(holder string)
	recalled := map[string]bool{}
	runBatch = func(holder string) {
		env.RegisterDelayedCallback(func() {
			mu.Lock()
			batches[holder]++
			lease, give := held[holder], recalled[held[holder]] || stopped
			if give {
				held[holder] = ""
			}
			stop := stopped
			mu.Unlock()
			if give {
				env.SignalWorkflow(SignalReleaseLease, LeaseRelease{LeaseID: lease})
				if !stop {
					ask(holder)
				}
				return
			}
			runBatch(holder)
		}, time.Second)
	}
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, mock.Anything, SignalLeaseGranted, mock.Anything).Return(
		func(_, holder, _, _ string, arg any) error {
			mu.Lock()
			held[holder] = arg.(LeaseGrant).LeaseID
			mu.Unlock()
			runBatch(holder)
			return nil
		})
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, mock.Anything, SignalLeaseRecall, mock.Anything).Return(
		func(_, _, _, _ string, arg any) error {
			mu.Lock()
			recalls++
			recalled[arg.(LeaseRecall).LeaseID] = true
			mu.Unlock()
			return nil
		})
	for i := range consumers {
		holder := fmt.Sprintf("consumer-%02d", i)
		env.RegisterDelayedCallback(func() { ask(holder) }, time.Duration(i)*10*time.Millisecond)
	}
	var st BudgetStatus
	env.RegisterDelayedCallback(func() { mu.Lock(); stopped = true; mu.Unlock() }, 10*time.Minute)
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryBudgetStatus)
		require.NoError(t, err)
		require.NoError(t, v.Get(&st))
		env.CancelWorkflow()
	}, 10*time.Minute+10*time.Second)
	env.ExecuteWorkflow(Budget, BudgetInput{Size: size})

	require.Len(t, batches, consumers, "every consumer ran batches")
	least, most := 1<<30, 0
	for _, n := range batches {
		least, most = min(least, n), max(most, n)
	}
	t.Logf("batches per consumer: %d to %d; %d grants, %d recalls", least, most, st.Granted, recalls)
	assert.GreaterOrEqual(t, least, 50, "no consumer starves")
	assert.LessOrEqual(t, most-least, 3, "turns are shared evenly")
	assert.Equal(t, size, st.HighWater, "never more than the budget's size at once")
	assert.EqualValues(t, recalls, st.Recalled)
}

// TestBudgetRecallsNothingWithoutContention: five keepers on a budget of
// five keep their leases; nothing waits, so nothing is recalled.
func TestBudgetRecallsNothingWithoutContention(t *testing.T) {
	h := newBudgetHarness(t)
	recalls := 0
	h.env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, mock.Anything, SignalLeaseRecall, mock.Anything).Return(
		func(_, _, _, _ string, _ any) error { recalls++; return nil })
	var st BudgetStatus
	h.at(time.Second, func() {
		for i := range 5 {
			h.env.SignalWorkflow(SignalAcquireLease, LeaseRequest{LeaseID: fmt.Sprint("k", i), HolderWorkflowID: fmt.Sprint("h", i), TTL: time.Hour, Keeps: true})
		}
	})
	h.at(10*time.Minute, func() { st = h.status(); h.env.CancelWorkflow() })
	h.env.ExecuteWorkflow(Budget, BudgetInput{Size: 5})
	assert.Zero(t, recalls)
	assert.Equal(t, 5, st.InFlight)
}

// TestBudgetReleasesAKeptLeaseWhoseHolderIsGoneAtARecall: a connector
// cancelled while it kept a lease across batches never gave it back; when
// another request waits, the budget recalls it, the recall finds the
// holder gone, and the lease goes to the waiter at once instead of at its
// TTL (the hang BenchmarkSQS ran into).
func TestBudgetReleasesAKeptLeaseWhoseHolderIsGoneAtARecall(t *testing.T) {
	h := newBudgetHarness(t)
	h.env.OnSignalExternalWorkflow(mock.Anything, "closed", mock.Anything, SignalLeaseRecall, mock.Anything).Return(
		func(_, _, _, _ string, _ any) error { return errors.New("workflow execution already completed") })
	var st BudgetStatus
	h.at(time.Second, func() {
		h.env.SignalWorkflow(SignalAcquireLease, LeaseRequest{LeaseID: "kept", HolderWorkflowID: "closed", TTL: time.Hour, Keeps: true})
	})
	h.at(2*time.Second, func() { h.acquire("waiter", time.Hour) })
	h.at(10*time.Second, func() { st = h.status(); h.env.CancelWorkflow() })
	h.env.ExecuteWorkflow(Budget, BudgetInput{Size: 1})
	assert.Equal(t, []string{"waiter"}, st.Holders, "the gone holder's lease was released at the recall")
	assert.Equal(t, []string{"kept", "waiter"}, h.granted)
	assert.Zero(t, st.Expired, "not by its TTL")
}

func temporalCanceled() error { return temporal.NewCanceledError("watch cancelled") }
